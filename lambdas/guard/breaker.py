"""A circuit breaker per capacity pool, shared by every caller through one DynamoDB item.

States: "closed" (the pool is used), "open" (the pool is skipped for `open_s` seconds after it
opened) and "half_open" (one caller holds a probe lease of `probe_s` seconds and sends one real
request; its success closes the breaker, its failure opens it again). `failure_threshold`
consecutive failures (529s, 5xx, timeouts, connection errors: the caller decides what counts)
open it; a success while closed resets the count.

The decisions are pure functions of the last item seen (`decide`, `opens_after`); the store side
sends one conditional UpdateItem per state change (open, take the probe, close) and one per
counted failure, each returning the item (`ALL_NEW`, or `ALL_OLD` when the condition fails) so a
lost race updates the view without a read. A healthy pool costs no writes: a success is written
only when the view holds failures or a non-closed state. Views older than `view_ttl_s` are read
again (one eventually consistent GetItem), so every caller sees an open breaker within about
`view_ttl_s` seconds of it opening.

A store error never blocks traffic: the breaker is advisory (the pool's own bucket still guards
its quota), so an unreadable breaker allows and the failure is logged.

Item (same table as the buckets, partition key `pk` = "breaker#<pool id>"): `st` (state),
`fails` (consecutive failures), `opened` (epoch seconds it opened), `probe` (epoch seconds the
probe lease ends).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from .bucket_store import default_client
from .gcra import PARTITION_KEY

log = logging.getLogger(__name__)

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
STATES = (CLOSED, OPEN, HALF_OPEN)
KEY_PREFIX = "breaker#"


@dataclass(frozen=True)
class View:
    """The breaker item as last seen. `opened` and `probe_until`: epoch seconds."""

    state: str = CLOSED
    failures: int = 0
    opened: float = 0.0
    probe_until: float = 0.0

    @classmethod
    def of(cls, item: dict[str, Any] | None) -> "View":
        """From a DynamoDB item in the low-level encoding (missing item: closed)."""
        if not item:
            return cls()
        state = item.get("st", {}).get("S", CLOSED)
        return cls(state=state if state in STATES else CLOSED,
                   failures=int(item.get("fails", {}).get("N", "0")),
                   opened=float(item.get("opened", {}).get("N", "0")),
                   probe_until=float(item.get("probe", {}).get("N", "0")))


@dataclass(frozen=True)
class Decision:
    """`allowed`: send to this pool now. `probe`: this caller holds the half-open probe (report
    its outcome). `retry_after`: seconds until the pool may be tried again (0.0 if allowed)."""

    allowed: bool
    probe: bool = False
    retry_after: float = 0.0


def decide(view: View, now: float, open_s: float) -> str:
    """"allow", "probe" (take the probe lease, then send) or "skip", from `view` at `now`
    (epoch seconds)."""
    if view.state == CLOSED:
        return "allow"
    if view.state == OPEN:
        return "probe" if now >= view.opened + open_s else "skip"
    return "probe" if now >= view.probe_until else "skip"  # half-open: an expired lease is free


def skip_for(view: View, now: float, open_s: float) -> float:
    """Seconds until a skipped pool may be probed (>= 0)."""
    until = view.opened + open_s if view.state == OPEN else view.probe_until
    return max(0.0, until - now)


def opens_after(view: View, failure_threshold: int) -> bool:
    """Whether the failure just counted into `view` opens a closed breaker."""
    return view.state == CLOSED and view.failures >= failure_threshold


class CircuitBreaker:
    """The shared breaker of one pool.

    `table_name`: the bucket table (`guard.ensure_table`); `pool_id`: the pool's name (the item
    key is "breaker#<pool_id>"). `failure_threshold`: consecutive failures that open it.
    `open_s`: seconds it stays open before a probe; `probe_s`: seconds a probe lease lasts (a
    prober that dies frees it after this). `view_ttl_s`: seconds a view is trusted before it is
    read again. `clock`: epoch seconds. `dynamodb`: a boto3 DynamoDB client (injected in tests).
    """

    def __init__(self, table_name: str, pool_id: str, dynamodb=None, *,
                 failure_threshold: int = 3, open_s: float = 5.0, probe_s: float = 10.0,
                 view_ttl_s: float = 1.0, clock: Callable[[], float] = time.time) -> None:
        if not isinstance(pool_id, str) or not pool_id:
            raise ValueError(f"pool_id must be a non-empty string, got {pool_id!r}")
        if isinstance(failure_threshold, bool) or not isinstance(failure_threshold, int) \
                or failure_threshold < 1:
            raise ValueError(f"failure_threshold must be a positive integer, got "
                             f"{failure_threshold!r}")
        for name, value in (("open_s", open_s), ("probe_s", probe_s), ("view_ttl_s", view_ttl_s)):
            if not isinstance(value, (int, float)) or not 0 < value <= 3600:
                raise ValueError(f"{name} must be seconds in (0, 3600], got {value!r}")
        self.table_name = table_name
        self.pool_id = pool_id
        self.key = {PARTITION_KEY: {"S": KEY_PREFIX + pool_id}}
        self.failure_threshold = failure_threshold
        self.open_s = float(open_s)
        self.probe_s = float(probe_s)
        self.view_ttl_s = float(view_ttl_s)
        self._dynamodb = dynamodb
        self._clock = clock
        self._lock = threading.Lock()
        self._view = View()
        self._seen_at = float("-inf")
        #: writes by purpose ("failure", "open", "probe", "close") and reads, for benchmarks
        self.writes: dict[str, int] = dict.fromkeys(("failure", "open", "probe", "close"), 0)
        self.reads = 0

    @property
    def client(self):
        if self._dynamodb is None:
            self._dynamodb = default_client()
        return self._dynamodb

    # -- views -----------------------------------------------------------------------------------

    def view(self) -> View:
        """The breaker's state, read again when the cached view is older than `view_ttl_s`."""
        now = self._clock()
        with self._lock:
            if now - self._seen_at < self.view_ttl_s:
                return self._view
        try:
            item = self.client.get_item(TableName=self.table_name, Key=self.key).get("Item")
        except Exception as err:  # noqa: BLE001 - advisory: an unreadable breaker allows
            log.warning("breaker %s unreadable (%s): treated as closed", self.pool_id, err)
            return View()
        self.reads += 1
        return self._seen(item, now)

    def _seen(self, item: dict | None, now: float | None = None) -> View:
        view = View.of(item)
        with self._lock:
            self._view, self._seen_at = view, self._clock() if now is None else now
        return view

    @property
    def seen_open(self) -> bool:
        """True when the last view this caller holds is open or half-open (no read)."""
        return self._view.state != CLOSED

    # -- decisions ---------------------------------------------------------------------------------

    def allow(self) -> Decision:
        """May this caller send to the pool now? Takes the probe lease (one conditional write)
        when the breaker is open and due for a probe."""
        now = self._clock()
        view = self.view()
        verdict = decide(view, now, self.open_s)
        if verdict == "allow":
            return Decision(True)
        if verdict == "skip":
            return Decision(False, retry_after=skip_for(view, now, self.open_s))
        # Only one caller wins the lease: the condition pins the state this view saw.
        condition, values = self._pinned(view)
        view = self._write("probe", "SET st = :half, probe = :until", condition,
                           {**values, ":half": {"S": HALF_OPEN},
                            ":until": {"N": repr(now + self.probe_s)}})
        if view is None:
            return Decision(True)  # store error: advisory, allow
        if view.state == HALF_OPEN and view.probe_until == now + self.probe_s:
            return Decision(True, probe=True)
        return Decision(False, retry_after=skip_for(view, now, self.open_s) or self.view_ttl_s)

    def record_success(self, decision: Decision | None = None) -> None:
        """The pool answered: a probe's success closes the breaker; a success while closed
        resets the failure count (no write when there is nothing to reset)."""
        view = self._view
        probe = decision is not None and decision.probe
        if not probe and view.state == CLOSED and view.failures == 0:
            return
        if probe:
            condition, values = "st = :half", {":half": {"S": HALF_OPEN}}
        else:  # only a probe closes an open breaker; a late success resets the count
            condition, values = "attribute_not_exists(st) OR st = :closed", {}
        self._write("close", "SET st = :closed, fails = :zero REMOVE opened, probe", condition,
                    {**values, ":closed": {"S": CLOSED}, ":zero": {"N": "0"}})

    def record_failure(self, decision: Decision | None = None) -> None:
        """The pool failed (529, 5xx, timeout): a probe's failure opens the breaker again; else
        the failure is counted and the `failure_threshold`-th consecutive one opens it."""
        now = self._clock()
        open_update = "SET st = :open, opened = :now, fails = :zero REMOVE probe"
        open_values = {":open": {"S": OPEN}, ":now": {"N": repr(now)}, ":zero": {"N": "0"}}
        if decision is not None and decision.probe:
            self._write("open", open_update, "st = :half",
                        {**open_values, ":half": {"S": HALF_OPEN}})
            return
        view = self._write("failure", "SET fails = if_not_exists(fails, :zero) + :one", None,
                           {":zero": {"N": "0"}, ":one": {"N": "1"}})
        if view is not None and opens_after(view, self.failure_threshold):
            self._write("open", open_update, "attribute_not_exists(st) OR st = :closed",
                        {**open_values, ":closed": {"S": CLOSED}})

    # -- store ---------------------------------------------------------------------------------------

    @staticmethod
    def _pinned(view: View) -> tuple[str, dict]:
        if view.state == OPEN:
            return "st = :seen AND opened = :opened", {":seen": {"S": OPEN},
                                                        ":opened": {"N": repr(view.opened)}}
        return "st = :seen AND probe = :probe", {":seen": {"S": HALF_OPEN},
                                                 ":probe": {"N": repr(view.probe_until)}}

    def _write(self, purpose: str, update: str, condition: str | None,
               values: dict) -> View | None:
        """One UpdateItem; the item after it (or, when the condition fails, as it was);
        None on a store error (logged)."""
        request: dict[str, Any] = {"TableName": self.table_name, "Key": self.key,
                                   "UpdateExpression": update,
                                   "ExpressionAttributeValues": values, "ReturnValues": "ALL_NEW"}
        if condition:
            request["ConditionExpression"] = condition
            request["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        self.writes[purpose] += 1
        try:
            return self._seen(self.client.update_item(**request).get("Attributes"))
        except Exception as err:  # noqa: BLE001 - classified below
            if type(err).__name__ == "ConditionalCheckFailedException":
                return self._seen(getattr(err, "response", {}).get("Item"))
            log.warning("breaker %s: %s write failed (%s)", self.pool_id, purpose, err)
            return None
