"""A distributed counting semaphore on one DynamoDB item: leases that expire.

A semaphore `name` with `limit` slots is the item `pk = "lease#<name>"` of the bucket table (the
`lease#` prefix keeps it apart from the token buckets), with one map attribute per slot,
`s0` ... `s<limit-1>`: `{"o": owner token, "e": expiry}`. A slot is free when its attribute is
absent or its expiry has passed: a holder that crashed loses its slot when the lease expires
(checked in code at every acquire; DynamoDB TTL deletes late and is not relied on).

One conditional write each way:
- acquire: `SET s<i> = :lease` if `s<i>` is absent or expired, with
  `ReturnValuesOnConditionCheckFailure=ALL_OLD`. The slot is the one the caller's last view of
  the item shows free (chosen at random among the free ones, so callers with the same view
  spread out). A refused write returns the whole item: when it shows another free slot, that
  one is tried (a lost race, bounded by `max_attempts`); when every slot is held, the refusal
  carries the earliest expiry among the holders, which is when a waiter tries again (not on a
  timer: before it, no slot can free up other than by a release).
- release: `REMOVE s<i>` if `s<i>` still carries this lease's owner token, so a lease that
  expired and was taken by another caller is left alone.
A store that does not return the old item on a refused condition gets one consistent read
instead, so the caller never guesses.

The maths (choosing a slot, the earliest expiry, the request shapes) are pure functions; the
class adds the store, an injected boto3 DynamoDB client and clock.

Clock: epoch seconds shared by all callers. A caller whose clock runs e seconds ahead may take
a slot e seconds before its holder's lease expires (keep ttls well above the expected skew).
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Mapping

log = logging.getLogger(__name__)

#: Partition key of the bucket table (the same schema as `guard.ensure_table`).
PARTITION_KEY = "pk"
#: Every semaphore item's key starts with this: the IAM statement names these keys exactly.
KEY_PREFIX = "lease#"
#: Most slots a semaphore may have (one small map attribute each, in one item).
MAX_LIMIT = 1000
#: Longest lease (seconds): a holder that needs longer renews by acquiring again.
MAX_TTL_S = 12 * 3600.0

FULL = "full"
STORE_UNAVAILABLE = "store_unavailable"

OWNER, EXPIRES = "o", "e"


def lease_key(name: str) -> str:
    """The item key of semaphore `name`."""
    return KEY_PREFIX + name


def slot_name(index: int) -> str:
    return f"s{index}"


def decode(item: Mapping[str, Any] | None) -> dict[int, tuple[str, float]]:
    """A DynamoDB item (attribute-value form) -> {slot index: (owner, expiry epoch s)}.

    Attributes that are not well-formed slots are ignored (they hold nothing)."""
    slots: dict[int, tuple[str, float]] = {}
    for name, value in (item or {}).items():
        if not (name.startswith("s") and name[1:].isdigit()):
            continue
        fields = value.get("M") if isinstance(value, Mapping) else None
        try:
            owner = fields[OWNER]["S"]
            expires = float(fields[EXPIRES]["N"])
        except (TypeError, KeyError, ValueError):
            continue
        slots[int(name[1:])] = (owner, expires)
    return slots


def free_slots(view: Mapping[int, tuple[str, float]], limit: int, now: float) -> list[int]:
    """Slot indexes below `limit` that `view` shows absent or expired at `now` (epoch s)."""
    return [i for i in range(limit) if i not in view or view[i][1] <= now]


def earliest_expiry(view: Mapping[int, tuple[str, float]], limit: int) -> float | None:
    """The soonest expiry (epoch s) among the slots below `limit` that `view` shows held."""
    expiries = [view[i][1] for i in range(limit) if i in view]
    return min(expiries) if expiries else None


def acquire_request(table: str, key: str, slot: int, owner: str, expires: float,
                    now: float) -> dict:
    """The UpdateItem that takes `slot` until `expires` (epoch s) if it is free at `now`."""
    return {
        "TableName": table,
        "Key": {PARTITION_KEY: {"S": key}},
        "UpdateExpression": "SET #slot = :lease",
        "ConditionExpression": "attribute_not_exists(#slot) OR #slot.#expires <= :now",
        "ExpressionAttributeNames": {"#slot": slot_name(slot), "#expires": EXPIRES},
        "ExpressionAttributeValues": {
            ":lease": {"M": {OWNER: {"S": owner}, EXPIRES: {"N": f"{expires:.3f}"}}},
            ":now": {"N": f"{now:.3f}"}},
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }


def release_request(table: str, key: str, slot: int, owner: str) -> dict:
    """The UpdateItem that frees `slot` if `owner` still holds it."""
    return {
        "TableName": table,
        "Key": {PARTITION_KEY: {"S": key}},
        "UpdateExpression": "REMOVE #slot",
        "ConditionExpression": "#slot.#owner = :owner",
        "ExpressionAttributeNames": {"#slot": slot_name(slot), "#owner": OWNER},
        "ExpressionAttributeValues": {":owner": {"S": owner}},
    }


@dataclass(frozen=True)
class Lease:
    """A held slot: `expires_at` in epoch seconds."""

    key: str
    slot: int
    owner: str
    expires_at: float


@dataclass(frozen=True)
class LeaseAttempt:
    """The outcome of an acquire.

    `granted` with `lease`; otherwise `reason` ("full": every slot is held, or
    "store_unavailable") and `retry_at` (epoch s: the earliest expiry the refusal revealed, or
    the store backoff's end) with `retry_after` = seconds from the attempt to it.
    `store_calls`: DynamoDB requests made (writes and the fallback read)."""

    granted: bool
    lease: Lease | None = None
    reason: str | None = None
    retry_at: float | None = None
    retry_after: float = 0.0
    store_calls: int = 0


class LeaseSemaphore:
    """At most `limit` concurrent leases on `name`, shared by every caller through one item.

    `table_name`: the bucket table (string partition key `pk`). `dynamodb`: a boto3 DynamoDB
    client. `clock`: epoch seconds. `rng`: slot choice. `max_attempts`: writes per acquire
    when races are lost to other callers.
    """

    def __init__(self, table_name: str, name: str, limit: int, dynamodb=None, *,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None,
                 max_attempts: int = 3) -> None:
        if not isinstance(table_name, str) or not table_name:
            raise ValueError(f"table_name must be a non-empty string, got {table_name!r}")
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be a whole number from 1 to {MAX_LIMIT}, got "
                             f"{limit!r}")
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) \
                or max_attempts < 1:
            raise ValueError(f"max_attempts must be a whole number >= 1, got {max_attempts!r}")
        self.table_name, self.name, self.limit = table_name, name, limit
        self.key = lease_key(name)
        self._dynamodb = dynamodb
        self._clock = clock
        self._rng = rng or random.Random()
        self._max_attempts = max_attempts
        self._lock = threading.Lock()
        self._view: dict[int, tuple[str, float]] = {}  # the item as last seen
        self._store_failures = 0
        self.store_calls = 0  # DynamoDB requests made by this instance (for tests, benches)

    @property
    def dynamodb(self):
        if self._dynamodb is None:
            import boto3

            self._dynamodb = boto3.client("dynamodb")
        return self._dynamodb

    def try_acquire(self, ttl_s: float) -> LeaseAttempt:
        """Take a slot for `ttl_s` seconds, or refuse with when to try again. Never blocks and
        never raises for store trouble (reason "store_unavailable")."""
        ttl_s = _ttl(ttl_s)
        calls = 0
        with self._lock:
            view = dict(self._view)
        now = self._clock()
        for _ in range(self._max_attempts):
            free = free_slots(view, self.limit, now)
            if not free:
                break
            slot = self._rng.choice(free)
            owner = uuid.uuid4().hex
            expires = now + ttl_s
            calls += 1
            outcome, item = self._send(acquire_request(self.table_name, self.key, slot, owner,
                                                       expires, now))
            if outcome == STORE_UNAVAILABLE:
                return self._backoff(now, calls)
            if outcome == "written":
                with self._lock:
                    self._view[slot] = (owner, expires)
                    self._store_failures = 0
                return LeaseAttempt(True, Lease(self.key, slot, owner, expires),
                                    store_calls=calls)
            if item is None:  # a store that returns no old item: one consistent read
                calls += 1
                outcome, item = self._read()
                if outcome == STORE_UNAVAILABLE:
                    return self._backoff(now, calls)
            view = decode(item)
            with self._lock:
                self._view = dict(view)
            now = self._clock()
        retry_at = earliest_expiry(view, self.limit)
        if retry_at is None or retry_at <= now:
            # every attempt lost a race for a slot that was free: try again at once
            retry_at = now
        return LeaseAttempt(False, reason=FULL, retry_at=retry_at,
                            retry_after=max(0.0, retry_at - now), store_calls=calls)

    def acquire(self, ttl_s: float, *, max_wait_s: float,
                sleep: Callable[[float], None] = time.sleep) -> LeaseAttempt:
        """`try_acquire`, waiting while the next try falls within `max_wait_s` seconds: each
        wait ends at the earliest expiry the last refusal revealed. Returns the last attempt
        (a refusal when the wait would run past `max_wait_s`)."""
        if isinstance(max_wait_s, bool) or not isinstance(max_wait_s, (int, float)) \
                or not max_wait_s >= 0 or math.isinf(max_wait_s):
            raise ValueError(f"max_wait_s must be a finite number >= 0, got {max_wait_s!r}")
        give_up_at = self._clock() + max_wait_s
        calls = 0
        while True:
            attempt = self.try_acquire(ttl_s)
            calls += attempt.store_calls
            if attempt.granted or attempt.retry_at is None or attempt.retry_at > give_up_at:
                return _with_calls(attempt, calls)
            wait = attempt.retry_at - self._clock()
            if wait > 0:
                sleep(wait)

    def release(self, lease: Lease) -> bool:
        """Free `lease`'s slot; False when it had expired and another caller holds the slot,
        or the store could not be reached (the lease then frees itself at its expiry)."""
        if lease.key != self.key:
            raise ValueError(f"lease of {lease.key!r} released on {self.key!r}")
        outcome, item = self._send(release_request(self.table_name, self.key, lease.slot,
                                                   lease.owner), old_item=False)
        with self._lock:
            if self._view.get(lease.slot, ("", 0.0))[0] == lease.owner or outcome == "written":
                self._view.pop(lease.slot, None)
        return outcome == "written"

    # -- store ------------------------------------------------------------------------------

    def _send(self, request: dict, *, old_item: bool = True) -> tuple[str, dict | None]:
        """("written", None), ("refused", old item or None) or ("store_unavailable", None)."""
        from botocore.exceptions import BotoCoreError, ClientError

        self.store_calls += 1
        try:
            self.dynamodb.update_item(**request)
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            if code == "ConditionalCheckFailedException":
                return "refused", err.response.get("Item") if old_item else None
            log.warning("lease store error: %s", code or err, extra={"lease": self.key})
            return STORE_UNAVAILABLE, None
        except BotoCoreError as err:
            log.warning("lease store unreachable: %s", err, extra={"lease": self.key})
            return STORE_UNAVAILABLE, None
        return "written", None

    def _read(self) -> tuple[str, dict | None]:
        from botocore.exceptions import BotoCoreError, ClientError

        self.store_calls += 1
        try:
            response = self.dynamodb.get_item(TableName=self.table_name, ConsistentRead=True,
                                              Key={PARTITION_KEY: {"S": self.key}})
        except (ClientError, BotoCoreError) as err:
            log.warning("lease store read failed: %s", err, extra={"lease": self.key})
            return STORE_UNAVAILABLE, None
        return "read", response.get("Item", {})

    def _backoff(self, now: float, calls: int) -> LeaseAttempt:
        with self._lock:
            self._store_failures += 1
            wait = min(5.0, 0.1 * 2 ** (self._store_failures - 1))
        return LeaseAttempt(False, reason=STORE_UNAVAILABLE, retry_at=now + wait,
                            retry_after=wait, store_calls=calls)


def _ttl(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not 0 < value <= MAX_TTL_S:
        raise ValueError(f"ttl_s must be a number of seconds in (0, {MAX_TTL_S:g}], got "
                         f"{value!r}")
    return float(value)


def _with_calls(attempt: LeaseAttempt, calls: int) -> LeaseAttempt:
    from dataclasses import replace

    return replace(attempt, store_calls=calls)
