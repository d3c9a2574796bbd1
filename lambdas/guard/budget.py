"""Spend budgets that concurrent callers cannot race past: reserve the most a call can cost,
settle to what it cost, in one conditional write each.

    ledger = BudgetLedger(table_name)
    hold = ledger.reserve({"tenant:acme": Budget(usd_per_day=50), "deployment": Budget(...)},
                          usd_micros=prices.max_cost_micros(estimate, max_tokens),
                          tokens=estimate + max_tokens)
    ...call Claude...
    ledger.settle(hold, usd_micros=prices.cost_micros(usage), tokens=...)

Windows are UTC calendar windows: the day (00:00 UTC) and the month (the 1st, 00:00 UTC). A
call is charged to the day and month of its reservation, whenever it settles.

Store: one item per month in the bucket table, `pk = "budget#YYYY-MM"`, holding every scope
(a tenant, the deployment, a model's daily token quota) of that month, so a call that counts
against several scopes is still one write. Per scope `s` (attribute names `s|<counter>`):

    day            the UTC day the day counters are for ("YYYY-MM-DD")
    d_used, d_open the day's spend plus open reservations, and the open part (micro-USD)
    m_used, m_open the same for the month (micro-USD)
    t_used, t_open the day's tokens, spent plus open, and the open part (tokens)

and one attribute `r|<id>` per open reservation: {d: day, u: micro-USD, t: tokens,
at: reserved at, until: lease end (epoch s), s: [scopes]}. A reservation is written only when
`used + amount <= limit` holds in the store (the condition), so spent plus open never exceeds a
limit; settling moves `open` to actual spend. An actual cost above the reservation (an input
estimate that was too low) is charged in full.

Crashed callers: a reservation not settled by its lease end (`until`) expires into spend at its
maximum. The next acquire that sees it folds it in (removes `r|<id>`, drops it from `open` and
leaves it in `used`) in the same write; the late caller's settle then finds it gone and changes
nothing, so the reservation's maximum stands as its cost (never less than actual).

Refusals: "budget" when the window's spend alone leaves no room (`retry_after` = the next
window's start, seconds); "budget_reserved" when open reservations are in the way
(`retry_after` = when the oldest open reservation's lease ends, the latest it can free). A
refusal is decided from a consistent read, never a write: only a reservation that fits is
written.

Scale: every budgeted acquire and settle is one write to the month's item, about 1,000 writes/s
per partition key, i.e. ~500 budgeted calls/s for the deployment.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Mapping

from . import gcra
from .prices import MICROS_PER_USD

log = logging.getLogger(__name__)

PARTITION_KEY = "pk"
ITEM_PREFIX = "budget#"
RESERVATION_PREFIX = "r|"
#: The scope every call counts against (the deployment-wide budget).
DEPLOYMENT = "deployment"
#: A model's tokens-per-day scope is this prefix and the model id.
MODEL_SCOPE_PREFIX = "model:"
BUDGET, BUDGET_RESERVED = "budget", "budget_reserved"
STORE_UNAVAILABLE = "store_unavailable"
#: What a tenant's refused call does: refuse it, call the cheaper model, or queue it on the
#: batch lane (half price).
ACTIONS = ("reject", "degrade", "batch")
#: Windows a budget limits: USD per UTC day, USD per UTC month, tokens per UTC day.
WINDOWS = ("usd_per_day", "usd_per_month", "tokens_per_day")
#: Counters per window: (used, open) attribute suffixes.
_COUNTERS = {"usd_per_day": ("d_used", "d_open"), "usd_per_month": ("m_used", "m_open"),
             "tokens_per_day": ("t_used", "t_open")}
_DAY_COUNTERS = ("d_used", "d_open", "t_used", "t_open")
#: Default lease of a reservation (seconds): past it, an unsettled reservation is spent at its
#: maximum. Longer than the longest Lambda invocation (900 s).
DEFAULT_LEASE_S = 960.0
#: Expired reservations folded into one acquire's write at most.
MAX_FOLDS = 8
#: A view this fresh (seconds) may refuse a spent window without a read.
LOCAL_REFUSAL_MAX_AGE_S = 1.0


class BudgetError(ValueError):
    """A budget that cannot be enforced (the message names the field)."""


def _limit(name: str, value: object, *, whole: bool = False) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BudgetError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if not 0 <= value < math.inf:
        raise BudgetError(f"{name} must be a finite number >= 0 (0 blocks all calls), got "
                          f"{value!r}")
    if whole:
        if value != int(value):
            raise BudgetError(f"{name} must be a whole number of tokens, got {value!r}")
        return int(value)
    return float(value)


@dataclass(frozen=True)
class Budget:
    """Spend limits of one scope (a tenant, or the deployment): `usd_per_day` and
    `usd_per_month` (USD per UTC day and UTC month) and `tokens_per_day` (tokens per UTC day:
    input + cache write + output). None: no limit; 0: blocked.

    `action`: what a call refused for budget does: "reject", "degrade" (call `degrade_to`, a
    cheaper model, if its maximum cost fits) or "batch" (queue on the batch lane)."""

    usd_per_day: float | None = None
    usd_per_month: float | None = None
    tokens_per_day: int | None = None
    action: str = "reject"
    degrade_to: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "usd_per_day", _limit("usd_per_day", self.usd_per_day))
        object.__setattr__(self, "usd_per_month", _limit("usd_per_month", self.usd_per_month))
        object.__setattr__(self, "tokens_per_day",
                           _limit("tokens_per_day", self.tokens_per_day, whole=True))
        if self.action not in ACTIONS:
            raise BudgetError(f"action must be one of {', '.join(ACTIONS)}, got "
                              f"{self.action!r}")
        if self.action == "degrade" and not (isinstance(self.degrade_to, str)
                                             and self.degrade_to):
            raise BudgetError("degrade_to must name the cheaper model when action is "
                              "'degrade'")

    def limits_micros(self) -> dict[str, int]:
        """The limits this budget sets, per window, in the ledger's units (micro-USD or
        tokens)."""
        limits = {}
        for window in WINDOWS:
            value = getattr(self, window)
            if value is not None:
                limits[window] = (value if window == "tokens_per_day"
                                  else int(round(value * MICROS_PER_USD)))
        return limits

    @property
    def unlimited(self) -> bool:
        return all(getattr(self, window) is None for window in WINDOWS)

    @classmethod
    def decode(cls, raw: Mapping[str, Any]) -> "Budget":
        """From a `budget` object (cdk.json, the MODELS/BUDGETS environment, a config item);
        BudgetError naming the key for an unknown key or a bad value. `currency` may be
        given and must be "USD"."""
        if not isinstance(raw, Mapping):
            raise BudgetError(f"a budget must be an object, got {type(raw).__name__}")
        known = {*WINDOWS, "action", "degrade_to", "currency"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise BudgetError(f"{unknown[0]} is not a budget key (known: "
                              f"{', '.join(sorted(known))})")
        currency = raw.get("currency", "USD")
        if currency != "USD":
            raise BudgetError(f"currency must be 'USD' (prices are USD per million tokens), "
                              f"got {currency!r}")
        return cls(**{key: value for key, value in raw.items() if key != "currency"})

    def encode(self) -> dict[str, Any]:
        """The `budget` object `decode` reads (limits that are set, the action)."""
        out: dict[str, Any] = {w: getattr(self, w) for w in WINDOWS
                               if getattr(self, w) is not None}
        out["action"] = self.action
        if self.degrade_to:
            out["degrade_to"] = self.degrade_to
        return out


# -- UTC windows ---------------------------------------------------------------------------

def _utc(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, timezone.utc)


def day_of(epoch_s: float) -> str:
    """The UTC day ("YYYY-MM-DD") of an epoch second."""
    return _utc(epoch_s).strftime("%Y-%m-%d")


def month_of(epoch_s: float) -> str:
    """The UTC month ("YYYY-MM") of an epoch second."""
    return _utc(epoch_s).strftime("%Y-%m")


def next_day_start(epoch_s: float) -> float:
    """Epoch seconds of the next 00:00 UTC."""
    day = _utc(epoch_s).replace(hour=0, minute=0, second=0, microsecond=0)
    return (day + timedelta(days=1)).timestamp()


def next_month_start(epoch_s: float) -> float:
    """Epoch seconds of the next 1st of a month, 00:00 UTC."""
    t = _utc(epoch_s)
    year, month = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
    return datetime(year, month, 1, tzinfo=timezone.utc).timestamp()


def month_fraction(epoch_s: float) -> float:
    """How much of its UTC month has passed at `epoch_s` (0-1): projects month-end spend."""
    t = _utc(epoch_s)
    start = datetime(t.year, t.month, 1, tzinfo=timezone.utc).timestamp()
    return (epoch_s - start) / (next_month_start(epoch_s) - start)


def item_key(month: str) -> str:
    return ITEM_PREFIX + month


# -- the view of a month's item ------------------------------------------------------------

@dataclass(frozen=True)
class Open:
    """One open reservation as the store holds it (micro-USD, tokens, epoch seconds)."""

    rid: str
    day: str
    usd: int
    tokens: int
    at: float
    until: float
    scopes: tuple[str, ...]


class View:
    """A month item decoded: counters per scope and the open reservations."""

    def __init__(self, item: Mapping[str, Any] | None = None) -> None:
        item = item or {}
        self.counters: dict[str, dict[str, Any]] = {}
        self.open: dict[str, Open] = {}
        for attribute, value in item.items():
            if attribute == PARTITION_KEY:
                continue
            if attribute.startswith(RESERVATION_PREFIX):
                rid = attribute[len(RESERVATION_PREFIX):]
                self.open[rid] = Open(rid, value["d"], int(value["u"]), int(value["t"]),
                                      float(value["at"]), float(value["until"]),
                                      tuple(value.get("s", ())))
            elif "|" in attribute:
                scope, counter = attribute.rsplit("|", 1)
                self.counters.setdefault(scope, {})[counter] = (
                    value if counter == "day" else int(value))

    def day(self, scope: str) -> str | None:
        return self.counters.get(scope, {}).get("day")

    def used_open(self, scope: str, window: str, today: str) -> tuple[int, int]:
        """(spent + open, open) of `scope` in `window` as of `today` (day windows of another
        day count as empty)."""
        counters = self.counters.get(scope, {})
        used, opened = _COUNTERS[window]
        if window != "usd_per_month" and counters.get("day") != today:
            return 0, 0
        return counters.get(used, 0), counters.get(opened, 0)


def _amount(window: str, usd: int, tokens: int) -> int:
    return tokens if window == "tokens_per_day" else usd


def assess(view: View, budgets: Mapping[str, Budget], usd: int, tokens: int,
           now: float) -> tuple[str, float, str, str] | None:
    """Whether a reservation of `usd` (micro-USD) and `tokens` fits every scope's limits in
    `view` at `now`: None when it fits, else (reason, retry_after seconds, scope, window).

    "budget" (the window's spend alone leaves no room; retry at the next window's start) wins
    over "budget_reserved" (open reservations are in the way; retry when the oldest one's lease
    ends)."""
    today = day_of(now)
    spent_out: list[tuple[float, str, str]] = []
    reserved_out: list[tuple[float, str, str]] = []
    for scope, budget in budgets.items():
        for window, limit in budget.limits_micros().items():
            amount = _amount(window, usd, tokens)
            used, _ = view.used_open(scope, window, today)
            if used + amount <= limit:
                continue
            # open reservations past their lease are spent at their maximum: they free nothing
            live = [r for r in view.open.values() if scope in r.scopes and r.until >= now
                    and (window == "usd_per_month" or r.day == today)]
            if used - sum(_amount(window, r.usd, r.tokens) for r in live) + amount > limit:
                start = next_month_start(now) if window == "usd_per_month" else \
                    next_day_start(now)
                spent_out.append((start - now, scope, window))
            else:
                oldest = min(live, key=lambda r: r.at)
                reserved_out.append((max(0.05, oldest.until - now), scope, window))
    if spent_out:
        wait, scope, window = max(spent_out)
        return BUDGET, wait, scope, window
    if reserved_out:
        wait, scope, window = min(reserved_out)
        return BUDGET_RESERVED, wait, scope, window
    return None


def used_percent(view: View, budgets: Mapping[str, Budget],
                 now: float) -> dict[str, dict[str, float]]:
    """Per scope and window: spent plus open as a percentage of the limit (a limit of 0
    reads 100)."""
    today = day_of(now)
    out: dict[str, dict[str, float]] = {}
    for scope, budget in budgets.items():
        for window, limit in budget.limits_micros().items():
            used, _ = view.used_open(scope, window, today)
            out.setdefault(scope, {})[window] = 100.0 * used / limit if limit else 100.0
    return out


# -- one conditional UpdateItem --------------------------------------------------------------

class _Write(gcra.Update):
    """An UpdateItem under construction: SET additions summed per attribute, assignments,
    REMOVEs and ANDed conditions, with placeholders for every name (`n`) and value (`v`, any
    type the boto3 serializer takes)."""

    def __init__(self) -> None:
        super().__init__()
        self.adds: dict[str, int] = {}        # attribute -> delta, starting from 0 if missing
        self.assign: dict[str, Any] = {}      # attribute -> value
        self.removes: list[str] = []

    def n(self, attribute: str) -> str:
        return self.name(attribute)

    def v(self, value: Any) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = value
        return placeholder

    def add(self, attribute: str, delta: int) -> None:
        self.adds[attribute] = self.adds.get(attribute, 0) + delta

    def request(self, table: str, key: str) -> dict[str, Any]:
        from boto3.dynamodb.types import TypeSerializer

        sets = [f"{self.n(a)} = {self.v(value)}" for a, value in self.assign.items()]
        zero = None
        for attribute, delta in self.adds.items():
            if attribute in self.assign:
                continue
            zero = zero or self.v(0)
            sets.append(f"{self.n(attribute)} = if_not_exists({self.n(attribute)}, {zero}) + "
                        f"{self.v(delta)}")
        expression = "SET " + ", ".join(sets)
        if self.removes:
            expression += " REMOVE " + ", ".join(self.n(a) for a in self.removes)
        serialize = TypeSerializer().serialize
        request: dict[str, Any] = {
            "TableName": table, "Key": {PARTITION_KEY: {"S": key}},
            "UpdateExpression": expression, "ExpressionAttributeNames": self.names,
            "ExpressionAttributeValues": {k: serialize(v) for k, v in self.values.items()},
            "ReturnValues": "ALL_NEW", "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
        if self.conditions:
            request["ConditionExpression"] = " AND ".join(f"({c})" for c in self.conditions)
        return request


def _attr(scope: str, counter: str) -> str:
    return f"{scope}|{counter}"


def _day_condition(write: _Write, scope: str, day: str) -> None:
    write.conditions.append(f"{write.n(_attr(scope, 'day'))} = {write.v(day)}")


def _fold(write: _Write, view: View, reservation: Open, usd: int, tokens: int) -> None:
    """Close `reservation`: drop it from `open` everywhere and move used by (actual - reserved)
    with actual = `usd`, `tokens`; its day counters only where the scope is still on its day."""
    attribute = RESERVATION_PREFIX + reservation.rid
    write.removes.append(attribute)
    write.conditions.append(f"attribute_exists({write.n(attribute)})")
    for scope in reservation.scopes:
        write.add(_attr(scope, "m_used"), usd - reservation.usd)
        write.add(_attr(scope, "m_open"), -reservation.usd)
        if view.day(scope) == reservation.day:
            _day_condition(write, scope, reservation.day)
            write.add(_attr(scope, "d_used"), usd - reservation.usd)
            write.add(_attr(scope, "d_open"), -reservation.usd)
            write.add(_attr(scope, "t_used"), tokens - reservation.tokens)
            write.add(_attr(scope, "t_open"), -reservation.tokens)
        else:  # the scope moved on to a later day: that day's counters are gone
            write.conditions.append(f"{write.n(_attr(scope, 'day'))} <> "
                                    f"{write.v(reservation.day)}")


def reserve_write(view: View, budgets: Mapping[str, Budget], rid: str, usd: int, tokens: int,
                  now: float, lease_s: float) -> _Write:
    """The one write that reserves `usd` (micro-USD) and `tokens` in every scope of `budgets`
    under each limit, folding in the expired reservations `view` shows (at most MAX_FOLDS)."""
    write = _Write()
    today = day_of(now)
    scopes = tuple(budgets)
    new_day = {scope for scope in scopes if view.day(scope) != today}
    for reservation in sorted(view.open.values(), key=lambda r: r.until)[:MAX_FOLDS]:
        if reservation.until >= now:
            break
        touches_new_day = any(s in new_day and reservation.day == today
                              for s in reservation.scopes)
        if not touches_new_day:
            _fold(write, view, reservation, reservation.usd, reservation.tokens)
    for scope, budget in budgets.items():
        limits = budget.limits_micros()
        day = write.n(_attr(scope, "day"))
        if scope in new_day:
            write.assign[_attr(scope, "day")] = today
            for counter in _DAY_COUNTERS:
                write.assign[_attr(scope, counter)] = tokens if counter[0] == "t" else usd
            write.conditions.append(f"attribute_not_exists({day}) OR {day} < {write.v(today)}")
        else:
            _day_condition(write, scope, today)
            for counter in _DAY_COUNTERS:
                write.add(_attr(scope, counter), tokens if counter[0] == "t" else usd)
        write.add(_attr(scope, "m_used"), usd)
        write.add(_attr(scope, "m_open"), usd)
        for window, limit in limits.items():
            used = _attr(scope, _COUNTERS[window][0])
            room = limit - _amount(window, usd, tokens)
            if scope in new_day and window != "usd_per_month":
                continue  # the fresh day's counter is the amount itself: fits (checked first)
            name = write.n(used)
            write.conditions.append(f"attribute_not_exists({name}) OR {name} <= "
                                    f"{write.v(room)}")
    write.assign[RESERVATION_PREFIX + rid] = {
        "d": today, "u": usd, "t": tokens, "at": _decimal(now), "until": _decimal(now + lease_s),
        "s": list(scopes)}
    return write


def charge_write(view: View, scopes: Iterable[str], usd: int, tokens: int,
                 now: float) -> _Write:
    """The one write that adds spend already made (`usd` micro-USD, `tokens`) to the UTC day
    and month of `now` in every scope: no limit condition (the money is spent), only the day
    each scope is on, so a concurrent day change makes it retry on the fresh view."""
    write = _Write()
    today = day_of(now)
    for scope in scopes:
        day = write.n(_attr(scope, "day"))
        if view.day(scope) == today:
            _day_condition(write, scope, today)
            write.add(_attr(scope, "d_used"), usd)
            write.add(_attr(scope, "t_used"), tokens)
        else:  # the scope's first spend of the day: its day counters start afresh
            write.assign[_attr(scope, "day")] = today
            for counter in _DAY_COUNTERS:
                write.assign[_attr(scope, counter)] = (
                    0 if counter.endswith("open") else tokens if counter[0] == "t" else usd)
            write.conditions.append(f"attribute_not_exists({day}) OR {day} < {write.v(today)}")
        write.add(_attr(scope, "m_used"), usd)
    return write


def _decimal(seconds: float):
    from decimal import Decimal

    return Decimal(str(round(seconds, 3)))


# -- the ledger -----------------------------------------------------------------------------

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
            from .bucket import default_client

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
            write = _Write()
            _fold(write, view, reservation, usd_micros, tokens)
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

    def _send(self, key: str, write: _Write, purpose: str,
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


def scopes_for(tenant: str | None, model: str | None, budgets: Mapping[str, Budget],
               deployment: Budget | None, model_tokens_per_day: Mapping[str, int]
               ) -> dict[str, Budget]:
    """The scopes a call counts against: its tenant's budget (`tenant:<name>`), the
    deployment's (`deployment`) and its model's daily token quota (`model:<id>`), each only
    when configured."""
    scopes: dict[str, Budget] = {}
    if tenant is not None and tenant in budgets:
        scopes[f"tenant:{tenant}"] = budgets[tenant]
    if deployment is not None:
        scopes[DEPLOYMENT] = deployment
    if model is not None and model in model_tokens_per_day:
        scopes[MODEL_SCOPE_PREFIX + model] = Budget(tokens_per_day=model_tokens_per_day[model])
    return scopes


def scope_names(tenants: Iterable[str]) -> list[str]:
    """Scope names of `tenants` (as `scopes_for` names them)."""
    return [f"tenant:{t}" for t in tenants]
