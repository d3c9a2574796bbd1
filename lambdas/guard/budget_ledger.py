"""`BudgetLedger`: budget reservations in the bucket table, one conditional write each.
It reads and writes the month's item (DynamoDB, an injected boto3 client) and keeps the last
view of it; what to write and whether a reservation fits are decided without I/O by
`budget_writes` and `budget_view`."""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Mapping

from .budget_limits import BudgetError
from .budget_view import (BUDGET, BUDGET_RESERVED, PARTITION_KEY, Open, View, assess, item_key,
                          used_percent)
from .budget_windows import day_of, month_of
from .budget_writes import BudgetWrite, charge_write, reserve_write, settle_write

if TYPE_CHECKING:
    from .budget_limits import Budget

#: Records go to the `guard.budget` logger, the package's budget API.
log = logging.getLogger("guard.budget")

STORE_UNAVAILABLE = "store_unavailable"
#: Default lease of a reservation (seconds): past it, an unsettled reservation is spent at its
#: maximum. Longer than the longest Lambda invocation (900 s).
DEFAULT_LEASE_S = 960.0
#: A view this fresh (seconds) may refuse a spent window without a read.
LOCAL_REFUSAL_MAX_AGE_S = 1.0


@dataclass
class Hold:
    """Outcome of `BudgetLedger.reserve`. Granted: `rid` names the reservation (in the item
    `key`), `usd_micros` and `tokens` what it holds, `day` the UTC day it is charged to.
    Refused: `reason` ("budget", "budget_reserved" or "store_unavailable"), `retry_after`
    (seconds), `scope` and `window` that refused. `used_percent`: scope -> window -> percent
    used (spent + open) as the store had it. `store_calls` / `store_reads`: writes and reads
    made."""

    granted: bool
    reason: str | None = None
    retry_after: float = 0.0
    scope: str | None = None
    window: str | None = None
    rid: str = ""
    key: str = ""
    day: str = ""
    usd_micros: int = 0
    tokens: int = 0
    scopes: tuple[str, ...] = ()
    used_percent: dict[str, dict[str, float]] = field(default_factory=dict)
    store_calls: int = 0
    store_reads: int = 0
    _settled: bool = field(default=False, repr=False)


@dataclass
class BudgetSettlement:
    """Outcome of `BudgetLedger.settle`: `settled` False with `reason` "expired" (the lease
    ran out and the reservation was spent at its maximum), "store_unavailable" or
    "contention"; `store_calls` writes made."""

    settled: bool
    reason: str | None
    store_calls: int


class BudgetLedger:
    """Budget reservations in the bucket table (`table_name`, partition key `pk`).

    `dynamodb`: a boto3 DynamoDB client (built on first use when None); `clock`: epoch
    seconds; `lease_s`: seconds an unsettled reservation holds before it is spent at its
    maximum."""

    def __init__(self, table_name: str, dynamodb=None, *,
                 clock: Callable[[], float] = time.time, lease_s: float = DEFAULT_LEASE_S,
                 max_attempts: int = 4) -> None:
        if not isinstance(table_name, str) or not table_name:
            raise ValueError(f"table_name must be a non-empty string, got {table_name!r}")
        if not 0 < lease_s < math.inf:
            raise ValueError(f"lease_s must be a positive number of seconds, got {lease_s!r}")
        self.table_name = table_name
        self._dynamodb = dynamodb
        self._clock = clock
        self.lease_s = float(lease_s)
        self._max_attempts = max_attempts
        self._lock = threading.Lock()
        self._views: dict[str, tuple[View, float]] = {}  # item key -> (view, seen at)
        #: writes made by purpose, for benchmarks
        self.writes = {"reserve": 0, "settle": 0}
        self.reads = 0

    @property
    def dynamodb(self):
        if self._dynamodb is None:
            from .bucket_store import default_client

            self._dynamodb = default_client()
        return self._dynamodb

    def reserve(self, budgets: Mapping[str, Budget], usd_micros: int, tokens: int, *,
                lease_s: float | None = None) -> Hold:
        """Reserve `usd_micros` (micro-USD) and `tokens` against every scope in `budgets`
        (scope name -> Budget), or refuse. Never raises for store trouble (reason
        "store_unavailable": a store error never grants)."""
        for name, value in (("usd_micros", usd_micros), ("tokens", tokens)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise BudgetError(f"{name} must be a whole number >= 0, got {value!r}")
        if not budgets:
            return Hold(True)
        now = self._clock()
        key = item_key(month_of(now))
        hold = Hold(False, key=key, usd_micros=usd_micros, tokens=tokens,
                    scopes=tuple(budgets))
        view, seen_at = self._view(key)
        read = seen_at == -math.inf  # never seen: a read (no write capacity) beats a guess
        if read:
            view = self._read(key, hold)
            if view is None:
                return self._unavailable(hold)
            seen_at = now = self._clock()
        verdict = assess(view, budgets, usd_micros, tokens, now)
        if verdict is not None and not read and not (
                verdict[0] == BUDGET and now - seen_at <= LOCAL_REFUSAL_MAX_AGE_S):
            view = self._read(key, hold)  # refuse only on what the store holds now
            if view is None:
                return self._unavailable(hold)
            now = self._clock()
            verdict = assess(view, budgets, usd_micros, tokens, now)
        for _ in range(self._max_attempts):
            if verdict is not None:
                hold.reason, hold.retry_after, hold.scope, hold.window = verdict
                hold.used_percent = used_percent(view, budgets, now)
                return hold
            rid = uuid.uuid4().hex
            write = reserve_write(view, budgets, rid, usd_micros, tokens, now,
                                  self.lease_s if lease_s is None else lease_s)
            outcome, view = self._send(key, write, "reserve", hold)
            if outcome == STORE_UNAVAILABLE:
                return self._unavailable(hold)
            if outcome == "written":
                hold.granted, hold.rid, hold.day = True, rid, day_of(now)
                hold.used_percent = used_percent(view, budgets, now)
                return hold
            now = self._clock()
            verdict = assess(view, budgets, usd_micros, tokens, now)
        hold.reason, hold.retry_after = BUDGET_RESERVED, 0.05
        return hold

    def settle(self, hold: Hold, usd_micros: int, tokens: int) -> BudgetSettlement:
        """Replace a granted hold's reservation with the actual cost (`usd_micros`,
        `tokens`), in one write. Settling twice raises BudgetError."""
        if not isinstance(hold, Hold) or not hold.granted:
            raise BudgetError("settle needs a granted Hold from reserve")
        with self._lock:
            if hold._settled:
                raise BudgetError("this hold was already settled")
            hold._settled = True
        if not hold.rid:  # nothing was reserved (no budgets)
            return BudgetSettlement(True, None, 0)
        view, _ = self._view(hold.key)
        reservation = Open(hold.rid, hold.day, hold.usd_micros, hold.tokens, 0.0, 0.0,
                           hold.scopes)
        calls = 0
        for _ in range(self._max_attempts):
            write = settle_write(view, reservation, usd_micros, tokens)
            calls += 1
            outcome, view = self._send(hold.key, write, "settle", None)
            if outcome == "written":
                return BudgetSettlement(True, None, calls)
            if outcome == STORE_UNAVAILABLE:
                return BudgetSettlement(False, STORE_UNAVAILABLE, calls)
            if hold.rid not in view.open:
                log.info("budget reservation %s expired before its settle: spent at its "
                         "maximum", hold.rid)
                return BudgetSettlement(False, "expired", calls)
        return BudgetSettlement(False, "contention", calls)

    def charge(self, scopes: Iterable[str], usd_micros: int, tokens: int) -> BudgetSettlement:
        """Add spend made without a reservation (`usd_micros` micro-USD, `tokens`; e.g. a
        batch item answered at the batch price) to `scopes` (scope names) in the current UTC
        day and month, in one write (another on a day change). Never refused for the limits:
        later reservations see it. Not settled: reason "store_unavailable" or
        "contention"."""
        for name, value in (("usd_micros", usd_micros), ("tokens", tokens)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise BudgetError(f"{name} must be a whole number >= 0, got {value!r}")
        scopes = tuple(scopes)
        if not scopes:
            return BudgetSettlement(True, None, 0)
        now = self._clock()
        key = item_key(month_of(now))
        view, _ = self._view(key)
        calls = 0
        for _ in range(self._max_attempts):
            calls += 1
            outcome, view = self._send(key, charge_write(view, scopes, usd_micros, tokens, now),
                                       "charge", None)
            if outcome == "written":
                return BudgetSettlement(True, None, calls)
            if outcome == STORE_UNAVAILABLE:
                return BudgetSettlement(False, STORE_UNAVAILABLE, calls)
        return BudgetSettlement(False, "contention", calls)

    def release(self, hold: Hold) -> BudgetSettlement:
        """Give a granted hold back unused (its request was never sent)."""
        return self.settle(hold, 0, 0)

    def snapshot(self, month: str | None = None) -> View:
        """The month's item (`month` "YYYY-MM", default the current one) read consistently;
        an empty view when the store cannot be read."""
        key = item_key(month or month_of(self._clock()))
        return self._read(key, None) or View()

    # -- store ------------------------------------------------------------------------------

    def _view(self, key: str) -> tuple[View, float]:
        with self._lock:
            return self._views.get(key, (View(), -math.inf))

    def _remember(self, key: str, view: View) -> None:
        with self._lock:
            self._views[key] = (view, self._clock())

    def _unavailable(self, hold: Hold) -> Hold:
        hold.granted, hold.reason, hold.retry_after = False, STORE_UNAVAILABLE, 0.5
        return hold

    def _read(self, key: str, hold: Hold | None) -> View | None:
        from boto3.dynamodb.types import TypeDeserializer
        from botocore.exceptions import BotoCoreError, ClientError

        with self._lock:
            self.reads += 1
        if hold is not None:
            hold.store_reads += 1
        try:
            item = self.dynamodb.get_item(TableName=self.table_name,
                                          Key={PARTITION_KEY: {"S": key}},
                                          ConsistentRead=True).get("Item", {})
        except (BotoCoreError, ClientError) as err:
            log.warning("budget read failed: %s", err)
            return None
        deserialize = TypeDeserializer().deserialize
        view = View({k: deserialize(v) for k, v in item.items()})
        self._remember(key, view)
        return view

    def _send(self, key: str, write: BudgetWrite, purpose: str,
              hold: Hold | None) -> tuple[str, View]:
        """One UpdateItem: ("written", new view), ("refused", old view) or
        ("store_unavailable", empty view)."""
        from boto3.dynamodb.types import TypeDeserializer
        from botocore.exceptions import BotoCoreError, ClientError

        with self._lock:
            self.writes[purpose] = self.writes.get(purpose, 0) + 1
        if hold is not None:
            hold.store_calls += 1
        deserialize = TypeDeserializer().deserialize
        try:
            response = self.dynamodb.update_item(**write.request(self.table_name, key))
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raw = err.response.get("Item")
                if raw is None:  # a store that does not return the old item: read it
                    view = self._read(key, hold)
                    return ("refused", view) if view is not None else (STORE_UNAVAILABLE,
                                                                       View())
                view = View({k: deserialize(v) for k, v in raw.items()})
                self._remember(key, view)
                return "refused", view
            log.warning("budget store error: %s", err)
            return STORE_UNAVAILABLE, View()
        except BotoCoreError as err:
            log.warning("budget store unreachable: %s", err)
            return STORE_UNAVAILABLE, View()
        view = View({k: deserialize(v) for k, v in response.get("Attributes", {}).items()})
        self._remember(key, view)
        return "written", view

