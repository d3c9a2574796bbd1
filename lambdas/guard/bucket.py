"""Distributed token bucket on one DynamoDB item (GCRA, one conditional write per acquire).

The bucket maths and the update forms are pure functions in `guard.gcra`; this module is the
store side: it predicts the form from the item it saw last (every write returns it: `ALL_NEW` on
success, `ALL_OLD` when the condition fails), sends one conditional UpdateItem, and turns a
refused condition into the exact `retry_after` (or, when the prediction was wrong and the
request fits, a retry with the right forms). There is no read before a write.

Scheduled reservations: `try_acquire(..., max_wait_s=W)` books the earliest start within W
seconds at which every dimension fits, charged as of that start, in the same single write; the
caller sleeps until `grant.start_at` and sends. With `max_wait_s=0` (the default) the start is
now, and the forms are the classic ones. First come, first served: a caller books behind
everything booked before it, except where a credited refund frees capacity that a later caller
takes.

Guarantee (per dimension, every window of W seconds, all callers' clocks in sync): reservations
counted at their start minus credited refunds <= B + r * W, with B the burst size (one capacity
unless `burst_fraction` is set). A caller whose clock is off by e seconds can take up to r * |e|
more, once (see docs/guard/bucket.md, "Clock skew").

Scale: every acquire and every settle is one write to one partition key. DynamoDB serves about
1,000 writes/s per partition key, so one bucket sustains about 500 Claude calls/s (acquire +
settle), i.e. 30,000 requests/min; shard the bucket_id beyond that. A refused conditional write
costs a write too: booking ahead (fifo) instead of polling keeps refusals rare.

Where the parts are: the item's attributes and encoding in `guard.bucket_item`, the maths and
update forms in `guard.gcra`, the limits learned from the headers in `guard.learned_limits`,
the headers themselves in `guard.ratelimit_headers`, this client's view of the item and its
booking timing in `guard.bucket_view`, the DynamoDB I/O in `guard.bucket_store` (any
`BucketStore` can stand in), `Grant` and `Settlement` in `guard.grants`; every name is
re-exported here. What stays is `TokenBucket`, one class over one item: acquire, settle and
release, cool-down, lowering to the server's remaining, live tenant shares and learned
limits all go through its one write path (version pin, capacity conditions, counters) and
its lock, which is why this file is longer than ~450 lines.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import threading
import time
from typing import Any, Callable, Iterable, Mapping

from . import fair, gcra, learned_limits, shares
from .bucket_store import (  # noqa: F401 - default_client, ensure_table: re-exported for callers
    REFUSED,
    WRITTEN,
    BucketStore,
    DynamoDBStore,
    default_client,
    ensure_table,
)
from .bucket_view import (  # noqa: F401 - the booking constants, re-exported for callers
    BOOKING_VIEW_MAX_AGE_FLOOR_S,
    BOOKING_VIEW_MAX_ROUND_TRIPS,
    CONTENTION_MEMORY_S,
    BucketView,
)
from .grants import BucketRequestError, Grant, Settlement, check_amount
from .learned_limits import LIMIT_LEARNED_METRIC, METRICS_NAMESPACE  # noqa: F401 - re-exported
from .limits import WINDOW_S, Limits
from .outcomes import COOL_DOWN, QUOTA, STORE_UNAVAILABLE  # noqa: F401 - COOL_DOWN: guard.bucket names every reason it returns
from .ratelimit_headers import parse_limits, parse_remaining

log = logging.getLogger(__name__)

#: Attribute names and encoding live with the maths (one home); re-exported for callers.
PARTITION_KEY = gcra.PARTITION_KEY
COOL_UNTIL = gcra.COOL_UNTIL

#: A refusal may come from the last item seen, without a write, only if seen this recently
#: (seconds): within it, other callers' refunds can delay a caller by at most this long.
LOCAL_REFUSAL_MAX_AGE_S = 1.0

#: What a bucket write is for (`TokenBucket.writes_by_purpose`).
WRITE_PURPOSES = ("acquire", "settle", "cool_down", "lower", "learn")
#: The writes pinned to the bucket's live shares version (`guard.shares`).
_PINNED = ("acquire", "settle")


class TokenBucket:
    """A token bucket per (organisation, model) shared by every caller through one DynamoDB item.

    `table_name`: a table with string partition key `pk` (see `ensure_table`).
    `bucket_id`: the item's key, e.g. "anthropic#claude-sonnet-4". `limits`: a `Limits`.
    `dynamodb`: a boto3 DynamoDB *client* (injected in tests); `store`: where the item lives
    instead (a `guard.bucket_store.BucketStore`; default: the table through `dynamodb`);
    `clock`: epoch seconds.
    `clamp_margin_s`: seconds an idle dimension is charged beyond exact GCRA (see `guard.gcra`).
    `max_slack_s`: most of a store round trip a booking is placed after the earliest start
    seen, so that bookings other callers make during one round trip still pass its condition
    (seconds; the slack used is the observed p99 store round trip, capped at this, plus one
    request's cost); 0: no slack at all, also after a lost race (for a bucket whose burst is
    about one request, where a gap cannot be used by a later booking).
    `learn_up_to`: {dimension: capacity per minute}: the most `observe_headers` raises that
    dimension to when the server's `anthropic-ratelimit-*-limit` shows more than the bucket has
    (a tier upgrade); None (the default) never raises. The capacity in force is kept on the
    item (`guard.gcra.LEARNED`) and every caller adopts it; a configured capacity that changes
    voids what was learned over the old one.
    """

    def __init__(self, table_name: str, bucket_id: str, limits: Limits, dynamodb=None, *,
                 clock: Callable[[], float] = time.time, clamp_margin_s: float = 1.0,
                 max_attempts: int = 4, max_slack_s: float = 0.5,
                 learn_up_to: Mapping[str, float] | None = None,
                 store: BucketStore | None = None) -> None:
        if not isinstance(table_name, str) or not table_name:
            raise ValueError(f"table_name must be a non-empty string, got {table_name!r}")
        if not isinstance(bucket_id, str) or not bucket_id:
            raise ValueError(f"bucket_id must be a non-empty string, got {bucket_id!r}")
        if not isinstance(limits, Limits):
            raise TypeError(f"limits must be a guard.Limits, got {type(limits).__name__}")
        if not 0 <= clamp_margin_s < WINDOW_S / 2:
            raise ValueError(f"clamp_margin_s must be in [0, {WINDOW_S / 2}), got {clamp_margin_s}")
        if not 0 <= max_slack_s <= 1.0:
            raise ValueError(f"max_slack_s must be in [0, 1], got {max_slack_s}")
        self.table_name = table_name
        self.bucket_id = bucket_id
        self.limits = limits
        self.store = store if store is not None else DynamoDBStore(table_name, bucket_id, dynamodb)
        self._clock = clock
        self._max_attempts = max_attempts
        self._configured = limits.capacities()
        #: what this client knows of the item: the last one seen, the capacities in force
        self.view = BucketView(self._configured, limits.burst_tolerance_s, clock,
                               clamp_margin_s, max_slack_s)
        self._learn_up_to = learned_limits.check_ceilings(learn_up_to, self._configured)
        self._lock = threading.Lock()
        self._store_failures = 0
        #: DynamoDB writes made by this instance by purpose: "acquire" (try_acquire), "settle"
        #: (settle and release), "cool_down" and "lower" (observe_headers), for benchmarks
        self.writes_by_purpose = dict.fromkeys(WRITE_PURPOSES, 0)
        self.granted_acquires = 0  # grants this instance handed out
        self.settles = 0  # settle and release calls made on this instance
        self.store_reads = 0  # DynamoDB reads made by this instance, for benchmarks
        self.forgone_refunds = 0  # refunds not credited because bookings were pending

    #: Live tenant shares (`set_shares`): the version every acquire and settle write is
    #: pinned to (None: not live, no pin), and the deployed shares (version 0).
    _shares_version: int | None = None
    _deployed_tenants: Mapping | None = None

    # -- public API ------------------------------------------------------------------------

    @property
    def store_calls(self) -> int:
        """DynamoDB writes made by this instance, every purpose (for benchmarks)."""
        return sum(self.writes_by_purpose.values())

    @property
    def dynamodb(self):
        """The default store's boto3 DynamoDB client (created on first use)."""
        return self.store.client

    def try_acquire(self, requests: int = 1, input_tokens: int = 0, output_tokens: int = 0, *,
                    max_wait_s: float = 0.0, tenant: str | None = None,
                    priority: str = "interactive", ticket: float | None = None) -> Grant:
        """Reserve `requests`, `input_tokens` and `output_tokens` (reserve max_tokens) or refuse.

        `max_wait_s` (0-60 s): book the earliest start within this many seconds at which every
        dimension fits (`grant.start_at`; send no earlier), in one conditional write. 0 grants
        only a start of now, as before. A refusal's `retry_after` is the exact wait to the
        earliest start, whatever `max_wait_s` was.

        Tenants (`Limits(tenants=...)`, see `guard.fair`): `tenant` names whose share the call
        uses (None: the "default" tenant); `priority` "interactive" (default) or "background"
        (books at most 0.5 s ahead by itself, deeper only through the background reserve). A
        refusal for the tenant's share (reason "fair_share"), or for a queue longer than the
        wait ("quota"), carries `grant.ticket`, its place in the tenant's queue: pass it back as
        `ticket` after `retry_after` and it is admitted when the queue reaches it, without
        queueing again. A tenant's caps refuse with reason "tenant_cap" (no ticket).

        Never blocks and never raises for store trouble: a DynamoDB error refuses with reason
        "store_unavailable". Raises `BucketRequestError` for negative or non-integer amounts,
        for a reservation larger than a capacity (it could never be granted), for a
        `max_wait_s` outside 0-60 s, an unknown tenant or priority and a ticket that is not a
        time.
        """
        if isinstance(max_wait_s, bool) or not isinstance(max_wait_s, (int, float)) \
                or not 0 <= max_wait_s <= WINDOW_S:
            raise BucketRequestError(f"max_wait_s must be between 0 and {WINDOW_S:g} seconds "
                                     f"(longer waits go through the overflow policy), got "
                                     f"{max_wait_s!r}")
        reserved = self.limits.reservation(
            check_amount("requests", requests), check_amount("input_tokens", input_tokens),
            check_amount("output_tokens", output_tokens))
        problem = self.limits.never_fits(requests, input_tokens, output_tokens)
        if problem:
            raise BucketRequestError(problem)
        try:
            cap_key = fair.tenant_key(self.limits, tenant)
            fair.check_priority(priority)
        except ValueError as err:
            raise BucketRequestError(str(err)) from None
        if ticket is not None and (isinstance(ticket, bool) or not isinstance(
                ticket, (int, float)) or not math.isfinite(ticket)):
            raise BucketRequestError(f"ticket must be a time from a refusal's grant.ticket, "
                                     f"got {ticket!r}")
        costs = {dim: self.shape.seconds(dim, amount) for dim, amount in reserved.items()
                 if amount > 0}
        calls = reads = 0
        now = self._clock()
        acquired_at = now
        seen, seen_at = self.view.snapshot_with_age()
        if max_wait_s > 0 and now - seen_at > self.view.booking_view_max_age():
            reads = 1
            if self._read_state() is not None:  # else book from the old view
                seen, seen_at = self.view.snapshot_with_age()
                now = self._clock()

        def refused(wait: float, reason: str | None, held: float | None = ticket) -> Grant:
            if priority == fair.BACKGROUND and max_wait_s > fair.BACKGROUND_HORIZON_S:
                wait = fair.background_retry(self.shape, costs, self.view.snapshot(),
                                             self._clock(), wait)
            return Grant(False, wait, reason, reserved, store_calls=calls,
                         acquired_at=acquired_at, bucket_id=self.bucket_id,
                         returned_at=self._clock(), store_reads=reads, tenant=cap_key,
                         priority=priority, ticket=held)

        key, allowed, horizon, held = fair.lane(self.limits, self.shape, priority, cap_key,
                                                costs, seen, now, max_wait_s, ticket)
        wait, reason = self.shape.refusal(costs, seen, now)
        # The last item seen may refuse without a write, but only while it is fresh: other
        # callers' refunds are invisible to it, so an older view goes to the store.
        if wait > allowed and now - seen_at <= LOCAL_REFUSAL_MAX_AGE_S:
            retry = fair.queue_refusal_wait(seen, wait, allowed, key, reason, held, now,
                                            max_wait_s)
            if retry is not None:
                return refused(retry, reason)
        if not costs and wait <= 0:  # nothing to charge (all amounts zero): nothing to write
            return Grant(True, 0.0, None, reserved, self.shape.used_percent(seen, now),
                         store_calls=0, acquired_at=acquired_at, bucket_id=self.bucket_id,
                         returned_at=now, store_reads=reads)
        lost_by = 0.0  # how far the queue head moved past the last attempt's view (seconds)
        for attempt in range(self._max_attempts):
            # in the capacities in force: an item just returned may have switched them
            costs = {dim: self.shape.seconds(dim, amount) for dim, amount in reserved.items()
                     if amount > 0}
            key, allowed, horizon, held = fair.lane(self.limits, self.shape, priority, cap_key,
                                                    costs, seen, now, max_wait_s, ticket)
            wait, reason = self.shape.refusal(costs, seen, now)
            start = self.view.booking_start(costs, seen, now, allowed, now - seen_at, lost_by)
            decision = None
            # the queue is longer than the wait allowed (a stale view asks the store first)
            if wait > allowed and (attempt > 0 or now - seen_at <= LOCAL_REFUSAL_MAX_AGE_S):
                retry = fair.queue_refusal_wait(seen, wait, allowed, key, reason, held, now,
                                                max_wait_s)
                if retry is not None:
                    return refused(retry, reason)
                start = self.view.booking_start(costs, seen, now, WINDOW_S, now - seen_at, lost_by)
                decision = fair.queue_ticket(self.limits, key, costs, seen, start, now,
                                             max(0.01, wait - allowed))
            elif key is not None:
                queued = self.shape.earliest_start(costs, seen, now) > now
                decision = fair.decide(self.limits, key, cap_key, costs, reserved, seen, start,
                                       now, horizon, queued, held)
                if decision.outcome == fair.REFUSE:
                    return refused(decision.wait, decision.reason)
            if decision is not None and decision.outcome == fair.TICKET:
                update = gcra.Update()
            else:
                update = gcra.acquire_update(self.shape, costs, seen, start, now,
                                             self.view.idle_margin(costs, start, now))
            if decision is not None:
                fair.terms(update, key, cap_key, decision, seen, start, now, horizon,
                           self.view.idle_margin(costs, start, now), self.limits, held)
            calls += 1
            outcome, item, raw = self._write(update, "acquire")
            if outcome == REFUSED and not raw:  # no old item returned: the state was read
                reads += 1
            if outcome == STORE_UNAVAILABLE:
                return Grant(False, self._store_backoff(), STORE_UNAVAILABLE, reserved,
                             store_calls=calls, acquired_at=acquired_at,
                             bucket_id=self.bucket_id, returned_at=self._clock(),
                             store_reads=reads)
            if outcome == WRITTEN and decision is not None \
                    and decision.outcome == fair.TICKET:
                issued = item.get(fair.TENANTS, {}).get(key, {}).get(fair.V, start)
                if decision.form == "ticket_at":  # a place behind a queue too long to book
                    return refused(decision.wait, QUOTA, issued)
                due = decision.wait if decision.form == "ticket_share" else 0.01
                return refused(max(due, issued - decision.window - start), fair.FAIR_SHARE,
                               issued)
            if outcome == WRITTEN:
                with self._lock:
                    self.granted_acquires += 1
                written = {dim: raw[gcra.TAT_PREFIX + dim]["N"] for dim in costs
                           if gcra.TAT_PREFIX + dim in raw}
                return Grant(True, 0.0, None, reserved, self.shape.used_percent(item, start),
                             store_calls=calls, acquired_at=acquired_at,
                             bucket_id=self.bucket_id, returned_at=self._clock(),
                             start_at=start, queue_s=max(0.0, start - acquired_at),
                             first_attempt=calls == 1, _written=written, store_reads=reads,
                             tenant=cap_key, priority=priority,
                             _cap_written=_cap_tats(raw, cap_key))
            head_seen = self.shape.earliest_start(costs, seen, -math.inf)
            self.view.note_lost_race()
            lost_by = 0.0 if head_seen == -math.inf else min(  # (nothing seen: no race lost)
                WINDOW_S, max(0.0, self.shape.earliest_start(costs, item, -math.inf)
                              - head_seen))
            seen, seen_at = item, self._clock()
            now = seen_at
            # the prediction was wrong: decide again from the item just returned
        # Only reachable when other writers change the item between every attempt.
        return refused(0.01, QUOTA)

    def settle(self, grant: Grant, input_tokens: int, output_tokens: int, *,
               cache_creation_tokens: int = 0, cache_read_tokens: int = 0) -> Settlement:
        """Correct a grant's reservation to actual usage (tokens) in one write.

        Unused reservation comes back when that cannot undo a pending booking (see
        `guard.gcra`; otherwise it is forgone: `Settlement.forgone`); usage beyond it is
        charged and carried as debt, down to a level of minus one capacity. Cache reads count
        only when `limits.counts_cache_reads`. A store error returns
        `Settlement(settled=False, reason="store_unavailable")`.
        """
        self._check_grant(grant, "settle")
        actual = self.limits.usage(
            check_amount("input_tokens", input_tokens),
            check_amount("output_tokens", output_tokens),
            check_amount("cache_creation_tokens", cache_creation_tokens),
            check_amount("cache_read_tokens", cache_read_tokens))
        self._mark_settled(grant)
        adjustment = {dim: actual[dim] - grant.reserved.get(dim, 0.0) for dim in actual}
        return self._apply(grant, adjustment)

    def release(self, grant: Grant) -> Settlement:
        """Give a grant back unused (its request was never sent): the whole reservation, the
        request included, in one write, under the same refund rule as `settle`."""
        self._check_grant(grant, "release")
        self._mark_settled(grant)
        adjustment = {dim: -amount for dim, amount in grant.reserved.items() if amount}
        return self._apply(grant, adjustment)

    def cool_down(self, seconds: float) -> float:
        """Make every caller's `try_acquire` refuse with reason "cool_down" for `seconds`, and
        every booking start after it.

        Extends, never shortens, a cool-down already in place. Returns the epoch second it
        ends (as far as this call knows); a store error is logged and returns 0.0.
        """
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
                or not 0 < seconds < math.inf:
            raise BucketRequestError(f"cool_down needs a positive number of seconds, got "
                                     f"{seconds!r}")
        until = self._clock() + float(seconds)
        outcome, item, _ = self._write(gcra.cool_down_update(until), "cool_down")
        if outcome == STORE_UNAVAILABLE:
            return 0.0
        return item.get(COOL_UNTIL, until) if outcome == REFUSED else until

    def cool_down_until(self) -> float | None:
        """The shared cool-down's end as the store has it now (epoch seconds, 0.0 for none),
        with one strongly consistent GetItem of the bucket's state; None when the store cannot
        be read. A caller that booked a start reads it one round trip before the start, so a
        cool-down set after it booked keeps it from sending into the cool-down. The state read
        also becomes this client's view of the bucket, so its next booking starts from a fresh
        queue instead of one extrapolated across its wait."""
        item = self._read_state()
        return None if item is None else item.get(COOL_UNTIL, 0.0)

    def observe_headers(self, headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict:
        """Lower the bucket to what the server's `anthropic-ratelimit-*-remaining` says is left.

        Never raises the level. Token counts are rounded to thousands by the server, so a
        dimension is lowered only when this bucket shows more than 1,000 tokens (1 request)
        above the server's figure. Returns {dimension: new level} for the dimensions lowered.
        With `learn_up_to`, a higher `anthropic-ratelimit-*-limit` first raises the capacity
        (`learn_limits`).
        """
        if self._learn_up_to is not None:
            self.learn_limits(headers)
        remaining = parse_remaining(headers, self.view.capacities)
        if not remaining:
            return {}
        lowered: dict[str, float] = {}
        seen = self.view.snapshot()
        for _ in range(2):
            now = self._clock()
            targets = {dim: level for dim, (level, tolerance) in remaining.items()
                       if self.shape.level(dim, seen, now) > level + tolerance}
            if not targets:
                break
            outcome, item, _ = self._write(gcra.lower_update(self.shape, targets, now, seen),
                                           "lower")
            if outcome == WRITTEN:
                lowered.update(targets)
                break
            if outcome == STORE_UNAVAILABLE:
                break
            seen = item
        if lowered:
            log.info("bucket lowered to the server's remaining quota",
                     extra={"bucket_id": self.bucket_id, "lowered": lowered})
        return lowered

    def set_shares(self, tenants: Mapping[str, Any], version: int) -> bool:
        """Use the tenant shares `tenants` (name -> TenantShare: weights and caps) from the
        limits config version `version` on, agreed with every other caller through the bucket
        item (`guard.shares`): every acquire and settle write is pinned to the version from
        now on; the first one that finds the item older switches it (rescaling the changed
        caps), one that finds it newer adopts the item's shares. A version not newer than the
        one in force is ignored (returns False). LimitsError for shares this bucket cannot
        enforce (a cap on a dimension it does not have)."""
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise ValueError(f"version must be a whole number >= 0, got {version!r}")
        limits = dataclasses.replace(self.limits, tenants=dict(tenants))
        with self._lock:
            if self._shares_version is not None and version <= self._shares_version:
                return False
            if self._shares_version is None:
                self._deployed_tenants = self.limits.tenants
            self.limits, self._shares_version = limits, version
        return True

    @property
    def shares_version(self) -> int | None:
        """The live shares version in force (None: shares are not live)."""
        return self._shares_version

    def _reconcile_shares(self, item: dict, raw: dict) -> tuple[dict, dict]:
        """A pinned write was refused: adopt the item's newer shares, or switch the item from
        its older ones to this bucket's (one write). Returns the item to decide from next."""
        for _ in range(self._max_attempts):
            theirs, mine = shares.version_of(item), self._shares_version
            if mine is None or theirs == mine:
                break
            if theirs > mine:
                try:
                    limits = dataclasses.replace(self.limits, tenants=shares.decode(item))
                except ValueError as err:
                    log.error("bucket item's shares v%s are bad (keeping v%s): %s", theirs,
                              mine, err, extra={"bucket_id": self.bucket_id})
                    break
                with self._lock:
                    self.limits, self._shares_version = limits, theirs
                log.info("tenant shares adopted from the bucket item",
                         extra={"bucket_id": self.bucket_id, "version": theirs})
                break
            try:
                old = shares.decode(item) or self._deployed_tenants or {}
            except ValueError:
                old = self._deployed_tenants or {}
            update = shares.switch_update(item, old, self.limits.tenants, mine, self._clock(),
                                          self.limits.burst_tolerance_s)
            outcome, new_item, new_raw = self._write(update, "shares")
            if outcome == STORE_UNAVAILABLE:
                break
            item, raw = new_item, new_raw
            if outcome == WRITTEN:
                log.info("tenant shares switched on the bucket item",
                         extra={"bucket_id": self.bucket_id, "from": theirs, "to": mine})
                break
        return item, raw

    def learn_limits(self, headers: Mapping[str, str] | Iterable[tuple[str, str]]
                     ) -> dict[str, float]:
        """Raise each dimension whose `anthropic-ratelimit-*-limit` header shows more than the
        capacity in force to that limit, at most its `learn_up_to` ceiling, and switch back to
        the configured capacity a dimension whose learned entry was made over another
        configuration. One conditional write (`guard.gcra.learn_update`); an audit line
        and the `LimitLearned` metric per dimension raised. Returns {dimension: new capacity
        per minute} for the dimensions switched (empty without `learn_up_to`)."""
        if self._learn_up_to is None:
            return {}
        limits = parse_limits(headers, self._configured)
        switched = self._switch(
            lambda seen, configured, now: learned_limits.planned_changes(
                configured, self._learn_up_to, limits, seen), stamp=False, keep_used=True)
        for dim, (old, new, configured) in switched.items():
            self._audit_learned(dim, old, new, configured)
        return {dim: new for dim, (_, new, _) in switched.items()}

    def switch_capacities(self, plan: Callable[[Mapping, Mapping[str, float], float],
                                               Mapping[str, tuple[float, float, float]]],
                          *, keep_used: bool = True) -> dict[str, float]:
        """Switch dimensions to the capacities `plan(item seen, configured capacities, now)`
        returns ({dimension: (capacity in force, new, configured)}, per minute; empty: none),
        each entry stamped with `now` (`guard.learned_limits.SWITCHED_AT`), in one conditional
        write (`keep_used`: as `learned_limits.learn_update`), planned again from the item a
        lost race returns. Returns {dimension: new capacity per minute} switched (empty when
        none, or on a store error)."""
        switched = self._switch(plan, stamp=True, keep_used=keep_used)
        return {dim: new for dim, (_, new, _) in switched.items()}

    def _switch(self, plan: Callable[[Mapping, Mapping[str, float], float],
                                     Mapping[str, tuple[float, float, float]]],
                *, stamp: bool, keep_used: bool) -> Mapping[str, tuple[float, float, float]]:
        """The capacity switch `plan` returns, written in one conditional write and planned
        again from the item a lost race returns; the changes written (empty when none, or on
        a store error)."""
        for _ in range(self._max_attempts):
            seen, now = self.view.snapshot(), self._clock()
            changes = plan(seen, self._configured, now)
            if not changes:
                return {}
            outcome, _, _ = self._write(learned_limits.learn_update(
                changes, seen, now, stamp=stamp, keep_used=keep_used), "learn")
            if outcome == STORE_UNAVAILABLE:
                return {}
            if outcome == WRITTEN:
                return changes
        return {}

    def _audit_learned(self, dim: str, old: float, new: float, configured: float) -> None:
        """One audit line per dimension switched (`guard.learned_limits.audit_record`) and a
        warning in the log."""
        record = learned_limits.audit_record(
            self.bucket_id, dim, old, new, configured, self._learn_up_to.get(dim, configured),
            self._clock())
        log.warning("bucket capacity switched: %s %s -> %s per minute", self.bucket_id, dim,
                    new, extra={"bucket_id": self.bucket_id, "dimension": dim,
                                "old_per_minute": old, "new_per_minute": new})
        print(json.dumps(record), flush=True)

    def level(self, dimension: str) -> float | None:
        """This client's last-seen level of `dimension` (tokens or requests), for reporting."""
        return self.shape.level(dimension, self.view.snapshot(), self._clock())

    @property
    def shape(self) -> gcra.Shape:
        """The bucket's geometry in the capacities in force (configured or learned)."""
        return self.view.shape

    def round_trip_s(self) -> float:
        """About one store round trip (seconds): see `BucketView.round_trip_s`."""
        return self.view.round_trip_s()

    # -- helpers -----------------------------------------------------------------------------

    def _read_state(self) -> dict[str, float] | None:
        """One strongly consistent read of the bucket's state attributes, remembered as this
        client's view; None on a store error."""
        with self._lock:
            self.store_reads += 1
        raw = self.store.read_state()
        if raw is None:
            return None
        item = gcra.decode(raw)
        self.view.remember(item)
        return item

    def _check_grant(self, grant: Grant, verb: str) -> None:
        if not isinstance(grant, Grant) or not grant.granted:
            raise BucketRequestError(f"{verb} needs a granted Grant from try_acquire")
        if grant.bucket_id != self.bucket_id:
            raise BucketRequestError(
                f"grant belongs to bucket {grant.bucket_id!r}, not {self.bucket_id!r}")

    def _mark_settled(self, grant: Grant) -> None:
        with self._lock:
            grant.mark_settled()
            self.settles += 1

    def _apply(self, grant: Grant, adjustment: dict[str, float]) -> Settlement:
        """One write moving each dimension by `adjustment` (tokens; negative = refund)."""
        if not any(amount != 0 for amount in adjustment.values()):
            return Settlement(True, None, adjustment, 0)
        seen = self.view.snapshot()
        calls = 0
        for _ in range(self._max_attempts):
            now = self._clock()
            deltas = {dim: self.shape.seconds(dim, amount) for dim, amount in
                      adjustment.items() if amount != 0}
            reserved = {dim: self.shape.seconds(dim, amount) for dim, amount in
                        grant.reserved.items()}
            plan = gcra.settle_update(self.shape, deltas, seen, now, grant.written_tats,
                                      grant.acquired_at, reserved)
            self._settle_caps(plan.update, grant, adjustment, seen, now)
            forgone = {dim: seconds * self.view.capacities[dim] / WINDOW_S
                       for dim, seconds in plan.forgone.items()}
            if plan.update.empty:  # every refund forgone: nothing to write
                self._count_forgone(forgone)
                return Settlement(True, None, adjustment, calls, forgone)
            calls += 1
            outcome, item, _ = self._write(plan.update, "settle")
            if outcome == WRITTEN:
                self._count_forgone(forgone)
                return Settlement(True, None, adjustment, calls, forgone)
            if outcome == STORE_UNAVAILABLE:
                return Settlement(False, STORE_UNAVAILABLE, adjustment, calls)
            seen = item
        return Settlement(False, "contention", adjustment, calls)

    def _settle_caps(self, update: gcra.Update, grant: Grant, adjustment: dict[str, float],
                     seen: Mapping, now: float) -> None:
        """Add to `update` the same correction on the grant's tenant caps, under the same
        refund rule with the tenant's own pending mark (`guard.fair`)."""
        shape = fair.cap_shape(self.limits, grant.tenant)
        entry = seen.get(fair.TENANTS, {}).get(grant.tenant)
        if shape is None or entry is None:
            return
        deltas = {dim: shape.seconds(dim, amount) for dim, amount in adjustment.items()
                  if amount and dim in shape.capacities}
        if not deltas:
            return
        fields = {**{dim: (fair.TENANTS, grant.tenant, name)
                     for dim, name in fair.CAP_FIELDS.items()},
                  gcra.BOOKED_UNTIL: (fair.TENANTS, grant.tenant, fair.BK)}
        gcra.settle_update(shape, deltas, fair.cap_view(entry), now, grant.cap_written_tats,
                           update=update, attr_of=lambda key: update.path(*fields[key]),
                           lowerable=False)

    def _count_forgone(self, forgone: dict[str, float]) -> None:
        if forgone:
            with self._lock:
                self.forgone_refunds += 1

    def _store_backoff(self) -> float:
        with self._lock:
            self._store_failures += 1
            failures = self._store_failures
        return min(5.0, 0.1 * 2 ** (failures - 1))

    def _write(self, update: gcra.Update,
               purpose: str) -> tuple[str, dict[str, float], dict]:
        """Send one UpdateItem (`purpose`: one of WRITE_PURPOSES, or "shares"). Returns ("written", new
        item, raw attributes), ("refused", old item, raw) or ("store_unavailable", {}, {})."""

        with self._lock:  # "shares" (a switch of live shares) appears once one is made
            self.writes_by_purpose[purpose] = self.writes_by_purpose.get(purpose, 0) + 1
            capacities = dict(self.view.capacities)
        learning = self._learn_up_to is not None or gcra.LEARNED in self.view.snapshot()
        pinned = purpose in _PINNED and self._shares_version is not None
        if pinned:
            shares.pin(update, self._shares_version)
        if learning and purpose in ("acquire", "settle", "lower"):
            gcra.limit_conditions(update, self._configured, capacities)
        sent_at = time.monotonic()
        outcome, raw = self.store.update(update)
        if outcome == STORE_UNAVAILABLE:
            return STORE_UNAVAILABLE, {}, {}
        if outcome == REFUSED:
            if raw is None:
                # A store without ReturnValuesOnConditionCheckFailure: one state read
                # instead of retrying from an empty view
                self.view.note_round_trip(time.monotonic() - sent_at)
                item = self._read_state() or {}
                if pinned and shares.version_of(item) != self._shares_version:
                    item, _ = self._reconcile_shares(item, {})
                return REFUSED, item, {}
            item = gcra.decode(raw)
            self.view.remember(item, time.monotonic() - sent_at)
            if pinned and shares.version_of(item) != self._shares_version:
                item, raw = self._reconcile_shares(item, raw)
            return REFUSED, item, raw
        with self._lock:
            self._store_failures = 0
        item = gcra.decode(raw)
        self.view.remember(item, time.monotonic() - sent_at)
        return WRITTEN, item, raw


def _cap_tats(raw: Mapping, tenant: str | None) -> dict[str, str]:
    """A tenant's cap tats as the grant's write left them (DynamoDB number strings)."""
    entry = raw.get(fair.TENANTS, {}).get("M", {}).get(tenant, {}).get("M", {}) \
        if tenant is not None else {}
    return {dim: entry[name]["N"] for dim, name in fair.CAP_FIELDS.items() if name in entry}
