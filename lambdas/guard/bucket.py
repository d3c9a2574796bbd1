"""Distributed token bucket on one DynamoDB item (GCRA, one conditional write per acquire).

State: for each enforced dimension (requests, input tokens, output tokens, or Bedrock's combined
tokens) the item holds a theoretical arrival time `tat_<dimension>` in epoch seconds. With
capacity C (the per-minute limit) and refill r = C / 60 per second, the bucket's level at time
`now` is

    level = min(C, (now + 60 - tat) * r)        (tokens; negative while in debt)

so charging `n` tokens moves `tat` forward by `n / r` seconds. The update is linear, which is
what DynamoDB's UpdateExpression can do:

* busy dimension (tat >= now): `SET tat = tat + :cost` under `tat >= :now AND tat <= :now + 60
  - :cost`. Exact GCRA.
* idle dimension (tat < now, the bucket is full): `SET tat = :k + :cost` under `tat <= :k` with
  `k = now + margin`. It charges at most `margin` seconds more than exact GCRA and, because the
  two forms overlap on [now, now + margin], a slightly stale view of the item still picks a form
  whose condition holds.

The form per dimension is predicted from the item this client saw last (every write returns
it: `ALL_NEW` on success, `ALL_OLD` when the condition fails), so there is no read before the
write. A refused condition yields the current item, from which the exact `retry_after` follows
(or, when the prediction was wrong and the request fits, one retry with the right forms).

Guarantee (per dimension, every window of W seconds, all callers' clocks in sync): admitted
reservations minus refunds <= C + r * W. A caller whose clock is off by e seconds can take up
to r * |e| more, once (see README, "Clock skew").

Scale: every acquire and every settle is one write to one partition key. DynamoDB serves about
1,000 writes/s per partition key, so one bucket sustains about 500 Claude calls/s (acquire +
settle), i.e. 30,000 requests/min; shard the bucket_id beyond that.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from .limits import INPUT_TOKENS, OUTPUT_TOKENS, REQUESTS, WINDOW_S, Limits

log = logging.getLogger(__name__)

PARTITION_KEY = "pk"
COOL_UNTIL = "cool_until"
_TAT_PREFIX = "tat_"

#: Largest debt a bucket carries: its level never goes below minus one capacity.
_DEBT_FLOOR_WINDOWS = 1.0

#: anthropic-ratelimit-<name>-remaining header name -> dimension; token values are rounded to
#: the nearest thousand, so only a difference larger than this tolerance is acted on.
_HEADER_DIMENSIONS = {
    "requests": (REQUESTS, 1.0),
    "input-tokens": (INPUT_TOKENS, 1000.0),
    "output-tokens": (OUTPUT_TOKENS, 1000.0),
}

#: A refusal may come from the last item seen, without a write, only if seen this recently
#: (seconds): within it, other callers' refunds can delay a caller by at most this long.
LOCAL_REFUSAL_MAX_AGE_S = 1.0

QUOTA = "quota"
COOL_DOWN = "cool_down"
STORE_UNAVAILABLE = "store_unavailable"


class BucketRequestError(ValueError):
    """A request the bucket can never serve (bad amount, or more than a capacity)."""


@dataclass
class Grant:
    """Outcome of `TokenBucket.try_acquire`.

    `granted` is True when the reservation was recorded. Otherwise `retry_after` (seconds) says
    when it may succeed and `reason` is "quota", "cool_down" or "store_unavailable".
    `reserved` maps each dimension to what was reserved (requests or tokens);
    `quota_used_percent` is the fullest dimension after the acquire (from the item written);
    `store_calls` counts the DynamoDB calls this acquire made. `acquired_at` and
    `returned_at` are the bucket clock (epoch seconds) when `try_acquire` started and returned;
    `start_at` is when the reservation's capacity starts (epoch seconds; `returned_at` for a grant
    that may be used at once).
    """

    granted: bool
    retry_after: float
    reason: str | None
    reserved: dict[str, float] = field(default_factory=dict)
    quota_used_percent: float | None = None
    store_calls: int = 0
    acquired_at: float = 0.0
    bucket_id: str = ""
    returned_at: float = 0.0
    start_at: float = 0.0
    _settled: bool = field(default=False, repr=False)
    _returned_mono: float | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.returned_at:
            self.returned_at = self.acquired_at
        if not self.start_at:
            self.start_at = self.returned_at


@dataclass
class Settlement:
    """Outcome of `TokenBucket.settle`: `adjustment` per dimension (tokens; negative = refund)."""

    settled: bool
    reason: str | None
    adjustment: dict[str, float]
    store_calls: int


def _cell(value: float, rounding: str) -> str:
    """Encode seconds as a DynamoDB number with microsecond precision, rounded `up` or `down`
    so that every rounding errs on the side of admitting less."""
    scaled = value * 1_000_000
    micros = math.ceil(scaled) if rounding == "up" else math.floor(scaled)
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), 1_000_000)
    return f"{sign}{whole}.{frac:06d}"


def _check_amount(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BucketRequestError(f"{name} must be a whole number, got {type(value).__name__} "
                                 f"{value!r}")
    if value < 0:
        raise BucketRequestError(f"{name} must not be negative, got {value}")
    return value


class _Update:
    """One conditional UpdateItem under construction."""

    def __init__(self) -> None:
        self.sets: list[str] = []
        self.conditions: list[str] = []
        self.names: dict[str, str] = {}
        self.values: dict[str, dict[str, str]] = {}

    def name(self, attribute: str) -> str:
        placeholder = f"#a{len(self.names)}"
        self.names[placeholder] = attribute
        return placeholder

    def value(self, number: str) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = {"N": number}
        return placeholder

    def request(self, table: str, key: str) -> dict[str, Any]:
        req: dict[str, Any] = {
            "TableName": table,
            "Key": {PARTITION_KEY: {"S": key}},
            "UpdateExpression": "SET " + ", ".join(self.sets),
            "ExpressionAttributeNames": self.names,
            "ReturnValues": "ALL_NEW",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        if self.conditions:
            req["ConditionExpression"] = " AND ".join(self.conditions)
        if self.values:
            req["ExpressionAttributeValues"] = self.values
        return req


def _default_client():
    import boto3
    from botocore.config import Config

    # Short timeouts and one SDK retry: the guard answers "store_unavailable" quickly instead
    # of holding a Claude call hostage to a slow table.
    return boto3.client("dynamodb", config=Config(
        connect_timeout=1, read_timeout=2, retries={"mode": "standard", "total_max_attempts": 2}))


class TokenBucket:
    """A token bucket per (organisation, model) shared by every caller through one DynamoDB item.

    `table_name`: a table with string partition key `pk` (see `ensure_table`).
    `bucket_id`: the item's key, e.g. "anthropic#claude-sonnet-4". `limits`: a `Limits`.
    `dynamodb`: a boto3 DynamoDB *client* (injected in tests); `clock`: epoch seconds.
    `clamp_margin_s`: seconds an idle dimension is charged beyond exact GCRA (see module doc).
    """

    def __init__(self, table_name: str, bucket_id: str, limits: Limits, dynamodb=None, *,
                 clock: Callable[[], float] = time.time, clamp_margin_s: float = 1.0,
                 max_attempts: int = 4) -> None:
        if not isinstance(table_name, str) or not table_name:
            raise ValueError(f"table_name must be a non-empty string, got {table_name!r}")
        if not isinstance(bucket_id, str) or not bucket_id:
            raise ValueError(f"bucket_id must be a non-empty string, got {bucket_id!r}")
        if not isinstance(limits, Limits):
            raise TypeError(f"limits must be a guard.Limits, got {type(limits).__name__}")
        if not 0 <= clamp_margin_s < WINDOW_S / 2:
            raise ValueError(f"clamp_margin_s must be in [0, {WINDOW_S / 2}), got {clamp_margin_s}")
        self.table_name = table_name
        self.bucket_id = bucket_id
        self.limits = limits
        self._dynamodb = dynamodb
        self._clock = clock
        self._margin = float(clamp_margin_s)
        self._max_attempts = max_attempts
        self._capacity = limits.capacities()
        self._lock = threading.Lock()
        self._seen: dict[str, float] = {}  # last item seen: attribute -> seconds
        self._seen_at = float("-inf")  # when it was seen (clock seconds)
        self._store_failures = 0
        self.store_calls = 0  # DynamoDB calls made by this instance, for benchmarks

    # -- public API ------------------------------------------------------------------------

    @property
    def dynamodb(self):
        if self._dynamodb is None:
            self._dynamodb = _default_client()
        return self._dynamodb

    def try_acquire(self, requests: int = 1, input_tokens: int = 0,
                    output_tokens: int = 0) -> Grant:
        """Reserve `requests`, `input_tokens` and `output_tokens` (reserve max_tokens) or refuse.

        Never blocks and never raises for store trouble: a DynamoDB error refuses with reason
        "store_unavailable". Raises `BucketRequestError` for negative or non-integer amounts
        and for a reservation larger than a capacity (it could never be granted).
        """
        reserved = self.limits.reservation(
            _check_amount("requests", requests), _check_amount("input_tokens", input_tokens),
            _check_amount("output_tokens", output_tokens))
        for dim, amount in reserved.items():
            if amount > self._capacity[dim]:
                raise BucketRequestError(
                    f"{dim} reservation of {amount:g} exceeds the bucket capacity of "
                    f"{self._capacity[dim]:g} per minute: it can never be granted")
        costs = {dim: self._seconds(dim, amount) for dim, amount in reserved.items() if amount > 0}
        calls = 0
        now = self._clock()
        seen, seen_at = self._snapshot_with_age()
        wait, reason = self._refusal(costs, seen, now)
        # The last item seen may refuse without a write, but only while it is fresh: other
        # callers' refunds are invisible to it, so an older view goes to the store.
        if wait > 0 and now - seen_at <= LOCAL_REFUSAL_MAX_AGE_S:
            return Grant(False, wait, reason, reserved, store_calls=0, acquired_at=now,
                         bucket_id=self.bucket_id)
        if not costs and wait <= 0:  # nothing to charge (all amounts zero): nothing to write
            return Grant(True, 0.0, None, reserved, self._used_percent(seen, now),
                         store_calls=0, acquired_at=now, bucket_id=self.bucket_id)
        for _ in range(self._max_attempts):
            update = self._acquire_update(costs, seen, now)
            calls += 1
            outcome, item = self._write(update)
            if outcome == STORE_UNAVAILABLE:
                return Grant(False, self._store_backoff(), STORE_UNAVAILABLE, reserved,
                             store_calls=calls, acquired_at=now, bucket_id=self.bucket_id)
            if outcome == "written":
                return Grant(True, 0.0, None, reserved, self._used_percent(item, now),
                             store_calls=calls, acquired_at=now, bucket_id=self.bucket_id,
                             returned_at=self._clock())
            seen = item
            wait, reason = self._refusal(costs, item, now)
            if wait > 0:
                return Grant(False, wait, reason, reserved, store_calls=calls, acquired_at=now,
                             bucket_id=self.bucket_id)
            now = self._clock()  # the prediction was wrong but it fits: retry with the item
        # Only reachable when other writers change the item between every attempt.
        return Grant(False, 0.01, QUOTA, reserved, store_calls=calls, acquired_at=now,
                     bucket_id=self.bucket_id)

    def settle(self, grant: Grant, input_tokens: int, output_tokens: int, *,
               cache_creation_tokens: int = 0, cache_read_tokens: int = 0) -> Settlement:
        """Correct a grant's reservation to actual usage (tokens) in one write.

        Unused reservation comes back; usage beyond it is charged and carried as debt, down to
        a level of minus one capacity. Cache reads count only when `limits.counts_cache_reads`.
        A store error returns `Settlement(settled=False, reason="store_unavailable")`.
        """
        if not isinstance(grant, Grant) or not grant.granted:
            raise BucketRequestError("settle needs a granted Grant from try_acquire")
        if grant.bucket_id != self.bucket_id:
            raise BucketRequestError(
                f"grant belongs to bucket {grant.bucket_id!r}, not {self.bucket_id!r}")
        actual = self.limits.usage(
            _check_amount("input_tokens", input_tokens),
            _check_amount("output_tokens", output_tokens),
            _check_amount("cache_creation_tokens", cache_creation_tokens),
            _check_amount("cache_read_tokens", cache_read_tokens))
        with self._lock:
            if grant._settled:
                raise BucketRequestError("this grant was already settled")
            grant._settled = True
        adjustment = {dim: actual[dim] - grant.reserved.get(dim, 0.0) for dim in actual}
        return self._apply(adjustment)

    def _apply(self, adjustment: dict[str, float]) -> Settlement:
        """One write moving each dimension by `adjustment` (tokens; negative = refund)."""
        deltas = {dim: self._seconds(dim, amount) for dim, amount in adjustment.items()
                  if amount != 0}
        if not deltas:
            return Settlement(True, None, adjustment, 0)
        seen = self._snapshot()
        calls = 0
        for _ in range(self._max_attempts):
            now = self._clock()
            update = self._settle_update(deltas, seen, now)
            calls += 1
            outcome, item = self._write(update)
            if outcome == "written":
                return Settlement(True, None, adjustment, calls)
            if outcome == STORE_UNAVAILABLE:
                return Settlement(False, STORE_UNAVAILABLE, adjustment, calls)
            seen = item
        return Settlement(False, "contention", adjustment, calls)

    def release(self, grant: Grant) -> Settlement:
        """Give a grant back unused (its request was never sent): the whole reservation, the
        request included, in one write. The grant is settled by it."""
        if not isinstance(grant, Grant) or not grant.granted:
            raise BucketRequestError("release needs a granted Grant from try_acquire")
        if grant.bucket_id != self.bucket_id:
            raise BucketRequestError(
                f"grant belongs to bucket {grant.bucket_id!r}, not {self.bucket_id!r}")
        with self._lock:
            if grant._settled:
                raise BucketRequestError("this grant was already settled")
            grant._settled = True
        adjustment = {dim: -amount for dim, amount in grant.reserved.items() if amount}
        return self._apply(adjustment)

    def cool_down(self, seconds: float) -> float:
        """Make every caller's `try_acquire` refuse with reason "cool_down" for `seconds`.

        Extends, never shortens, a cool-down already in place. Returns the epoch second it
        ends (as far as this call knows); a store error is logged and returns 0.0.
        """
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
                or not 0 < seconds < math.inf:
            raise BucketRequestError(f"cool_down needs a positive number of seconds, got "
                                     f"{seconds!r}")
        until = self._clock() + float(seconds)
        update = _Update()
        attr, value = update.name(COOL_UNTIL), update.value(_cell(until, "up"))
        update.sets.append(f"{attr} = {value}")
        update.conditions.append(f"(attribute_not_exists({attr}) OR {attr} < {value})")
        outcome, item = self._write(update)
        if outcome == STORE_UNAVAILABLE:
            return 0.0
        return item.get(COOL_UNTIL, until) if outcome == "refused" else until

    def observe_headers(self, headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict:
        """Lower the bucket to what the server's `anthropic-ratelimit-*-remaining` says is left.

        Never raises the bucket. Token counts are rounded to thousands by the server, so a
        dimension is lowered only when this bucket shows more than 1,000 tokens (1 request)
        above the server's figure. Returns {dimension: new level} for the dimensions lowered.
        """
        remaining = self._parse_remaining(headers)
        if not remaining:
            return {}
        lowered: dict[str, float] = {}
        seen = self._snapshot()
        for _ in range(2):
            now = self._clock()
            update = _Update()
            targets = {}
            for dim, (level, tolerance) in remaining.items():
                if self._level(dim, seen, now) <= level + tolerance:
                    continue
                targets[dim] = level
                attr = update.name(_TAT_PREFIX + dim)
                # tat at which the level is exactly `level`; rounded up = a little lower level
                value = update.value(_cell(now + WINDOW_S - self._seconds(dim, level), "up"))
                update.sets.append(f"{attr} = {value}")
                update.conditions.append(f"(attribute_not_exists({attr}) OR {attr} < {value})")
            if not targets:
                break
            outcome, item = self._write(update)
            if outcome == "written":
                lowered.update(targets)
                break
            if outcome == STORE_UNAVAILABLE:
                break
            seen = item
        if lowered:
            log.info("bucket lowered to the server's remaining quota",
                     extra={"bucket_id": self.bucket_id, "lowered": lowered})
        return lowered

    def level(self, dimension: str) -> float | None:
        """This client's last-seen level of `dimension` (tokens or requests), for reporting."""
        return self._level(dimension, self._snapshot(), self._clock())

    # -- forms of the conditional update -----------------------------------------------------

    def _acquire_update(self, costs: dict[str, float], seen: dict[str, float],
                        now: float) -> _Update:
        update = _Update()
        now_cell = update.value(_cell(now, "down"))
        cool = update.name(COOL_UNTIL)
        update.conditions.append(f"(attribute_not_exists({cool}) OR {cool} <= {now_cell})")
        for dim, cost in costs.items():
            attr = update.name(_TAT_PREFIX + dim)
            tat = seen.get(dim)
            if tat is not None and tat >= now:  # busy: exact, linear
                lo = update.value(_cell(now, "up"))
                hi = update.value(_cell(now + WINDOW_S - cost, "down"))
                update.conditions.append(f"{attr} BETWEEN {lo} AND {hi}")
                update.sets.append(f"{attr} = {attr} + {update.value(_cell(cost, 'up'))}")
            else:  # idle (or never seen): start from k, at most `margin` above exact
                k = now + min(self._margin, WINDOW_S - cost)
                k_cell = update.value(_cell(k, "down"))
                update.conditions.append(f"(attribute_not_exists({attr}) OR {attr} <= {k_cell})")
                update.sets.append(f"{attr} = {update.value(_cell(k + cost, 'up'))}")
        return update

    def _settle_update(self, deltas: dict[str, float], seen: dict[str, float],
                       now: float) -> _Update:
        update = _Update()
        cap = now + WINDOW_S * (1 + _DEBT_FLOOR_WINDOWS)  # tat at a level of -capacity
        for dim, delta in deltas.items():
            attr = update.name(_TAT_PREFIX + dim)
            tat = seen.get(dim)
            if delta < 0:  # refund
                refund = -delta
                lo = update.value(_cell(now + refund, "up"))
                if tat is not None and tat >= now + refund:
                    update.conditions.append(f"{attr} >= {lo}")
                    update.sets.append(f"{attr} = {attr} - {update.value(_cell(refund, 'down'))}")
                else:  # the refund fills the bucket: it is full at tat = now
                    update.conditions.append(f"(attribute_not_exists({attr}) OR {attr} < {lo})")
                    update.sets.append(f"{attr} = {update.value(_cell(now, 'up'))}")
                continue
            debt = delta
            if tat is not None and now <= tat <= cap - debt:
                update.conditions.append(
                    f"{attr} BETWEEN {update.value(_cell(now, 'up'))} AND "
                    f"{update.value(_cell(cap - debt, 'down'))}")
                update.sets.append(f"{attr} = {attr} + {update.value(_cell(debt, 'up'))}")
            elif tat is not None and tat > cap - debt:  # debt floor: minus one capacity
                update.conditions.append(f"{attr} > {update.value(_cell(cap - debt, 'down'))}")
                update.sets.append(f"{attr} = {update.value(_cell(cap, 'up'))}")
            else:  # idle: the debt starts from a full bucket
                now_cell = update.value(_cell(now, "down"))
                update.conditions.append(
                    f"(attribute_not_exists({attr}) OR {attr} < {now_cell})")
                update.sets.append(
                    f"{attr} = {update.value(_cell(now + min(debt, cap - now), 'up'))}")
        return update

    # -- helpers -----------------------------------------------------------------------------

    def _seconds(self, dim: str, amount: float) -> float:
        """Tokens (or requests) -> seconds of refill in dimension `dim`."""
        return amount * WINDOW_S / self._capacity[dim]

    def _level(self, dim: str, seen: dict[str, float], now: float) -> float:
        tat = seen.get(dim)
        capacity = self._capacity[dim]
        if tat is None:
            return capacity
        return min(capacity, (now + WINDOW_S - tat) * capacity / WINDOW_S)

    def _refusal(self, costs: dict[str, float], item: dict[str, float],
                 now: float) -> tuple[float, str | None]:
        """Exact wait (seconds) before `costs` fit in `item`, and why; (0, None) if they fit."""
        quota_wait = 0.0
        for dim, cost in costs.items():
            tat = item.get(dim)
            if tat is not None:
                quota_wait = max(quota_wait, max(tat, now) + cost - (now + WINDOW_S))
        cool_wait = item.get(COOL_UNTIL, 0.0) - now
        if cool_wait > 0:
            return max(cool_wait, quota_wait), COOL_DOWN
        if quota_wait > 0:
            return quota_wait, QUOTA
        return 0.0, None

    def _used_percent(self, item: dict[str, float], now: float) -> float:
        used = [max(0.0, item[dim] - now) / WINDOW_S * 100 for dim in self._capacity
                if dim in item]
        return round(max(used, default=0.0), 2)

    def _snapshot(self) -> dict[str, float]:
        with self._lock:
            return dict(self._seen)

    def _snapshot_with_age(self) -> tuple[dict[str, float], float]:
        with self._lock:
            return dict(self._seen), self._seen_at

    def _remember(self, item: dict[str, float]) -> None:
        with self._lock:
            self._seen = item
            self._seen_at = self._clock()

    def _store_backoff(self) -> float:
        with self._lock:
            self._store_failures += 1
            failures = self._store_failures
        return min(5.0, 0.1 * 2 ** (failures - 1))

    def _write(self, update: _Update) -> tuple[str, dict[str, float]]:
        """Send one UpdateItem. Returns ("written", new item), ("refused", old item) or
        ("store_unavailable", {})."""
        from botocore.exceptions import BotoCoreError, ClientError

        self.store_calls += 1
        try:
            response = self.dynamodb.update_item(**update.request(self.table_name,
                                                                  self.bucket_id))
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            if code == "ConditionalCheckFailedException":
                item = _decode(err.response.get("Item", {}))
                self._remember(item)
                return "refused", item
            log.warning("token bucket store error: %s", code or err,
                        extra={"bucket_id": self.bucket_id, "table": self.table_name})
            return STORE_UNAVAILABLE, {}
        except BotoCoreError as err:
            log.warning("token bucket store unreachable: %s", err,
                        extra={"bucket_id": self.bucket_id, "table": self.table_name})
            return STORE_UNAVAILABLE, {}
        with self._lock:
            self._store_failures = 0
        item = _decode(response.get("Attributes", {}))
        self._remember(item)
        return "written", item

    def _parse_remaining(self, headers) -> dict[str, tuple[float, float]]:
        pairs = headers.items() if hasattr(headers, "items") else headers
        remaining: dict[str, tuple[float, float]] = {}
        for raw_name, raw_value in pairs:
            name = str(raw_name).lower()
            if not (name.startswith("anthropic-ratelimit-") and name.endswith("-remaining")):
                continue
            kind = name[len("anthropic-ratelimit-"):-len("-remaining")]
            if kind not in _HEADER_DIMENSIONS:
                continue
            dim, tolerance = _HEADER_DIMENSIONS[kind]
            if dim not in self._capacity:
                continue
            try:
                value = float(raw_value)
            except (TypeError, ValueError):
                log.warning("ignoring unparsable rate-limit header %s: %r", raw_name, raw_value)
                continue
            if value >= 0 and math.isfinite(value):
                remaining[dim] = (value, tolerance)
        return remaining


def _decode(item: Mapping[str, Mapping[str, str]]) -> dict[str, float]:
    """DynamoDB item -> {dimension or "cool_until": seconds}."""
    decoded: dict[str, float] = {}
    for attribute, cell in item.items():
        if "N" not in cell:
            continue
        if attribute.startswith(_TAT_PREFIX):
            decoded[attribute[len(_TAT_PREFIX):]] = float(cell["N"])
        elif attribute == COOL_UNTIL:
            decoded[COOL_UNTIL] = float(cell["N"])
    return decoded


def ensure_table(dynamodb, name: str) -> None:
    """Create the bucket table if it is missing (the schema the stack deploys) and wait for it.

    `dynamodb` is a boto3 DynamoDB client. String partition key `pk`, on-demand billing.
    """
    try:
        dynamodb.create_table(
            TableName=name,
            AttributeDefinitions=[{"AttributeName": PARTITION_KEY, "AttributeType": "S"}],
            KeySchema=[{"AttributeName": PARTITION_KEY, "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
    except dynamodb.exceptions.ResourceInUseException:
        pass
    dynamodb.get_waiter("table_exists").wait(TableName=name,
                                             WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})
