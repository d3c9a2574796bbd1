"""GCRA maths and the conditional-update forms of the bucket item: pure functions, no I/O.

One bucket item holds, per enforced dimension (requests, input tokens, output tokens, Bedrock's
combined tokens), a theoretical arrival time `tat` in epoch seconds, plus `cool_until` (shared
cool-down) and `booked_until` (the latest start any caller booked). With capacity C (the
per-minute limit) and refill r = C / 60 per second, the level at time t is

    level(t) = min(B, (t + tau - tat) * r)      B = tau * r, the burst size (tokens)

where `tau` is the burst tolerance in seconds: 60 (a burst of one whole capacity) unless the
model has a smaller `burst_fraction`. Charging n tokens moves `tat` forward by n / r seconds.

A reservation starts at a time `s >= now` (a booking when s > now) and is charged as of `s`
in every dimension, in one conditional UpdateItem:

* busy dimension (tat >= s): `SET tat = tat + cost` under `tat BETWEEN s AND s + tau - cost`.
  Exact GCRA as of s.
* idle dimension (tat < s, full at s): `SET tat = s + margin + cost` under `tat <= s + margin`.
  It charges at most `margin` seconds more than exact GCRA; the two forms overlap on
  [s, s + margin], so a slightly stale view still picks a form whose condition holds.
* `cool_until <= s`: a start is never inside a cool-down.
* a booking (s > now) raises `booked_until` to s (`booked_until <= s`, SET) or leaves it where
  it is (`booked_until >= s`): DynamoDB has no max(), so the form is predicted like the others.

The earliest start at which `cost` fits in a dimension is `tat + cost - tau` (the union of the
busy and idle regions), so the earliest start of a request is the largest of now, cool_until
and that per dimension.

Refunds never lower `tat` below what pending bookings need. A booking charged from a full
bucket (idle form) skipped the refill that was capped away before it; a refund lowering `tat`
afterwards would hand that capacity out a second time. So a refund is credited either as an
exact undo of the grant's own charge (the dimension's `tat` unchanged since the grant wrote it:
nothing was stacked on top) or, when no booking is pending (`booked_until <= now`), with the
classic forms; otherwise it is forgone and the reservation stands.

A lowering to the server's `remaining` (`lower_update`) stamps `lowered_at_<dimension>` with its
time. The server's figure already counts what the calls in flight actually used, so the refund
of a grant written before that stamp would hand the same capacity out a second time: it is
forgone in that dimension (every credited refund carries the condition `lowered_at_<dimension>
< the grant's acquire time`). Output may be counted by the server as it is produced, after the
lowering: a grant that predates an output lowering is charged its actual output instead of
refunded. Both hold whether the server counts output at the start (`max_tokens` reserved) or as
produced: each errs on the side of admitting less.

The item's attribute names and encoding (`cell`, `decode`, `Update`) are in `guard.bucket_item`,
the forms of the limits learned from the server's headers in `guard.learned_limits`; both are
re-exported here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping

from .bucket_item import (  # noqa: F401 - the item's names and encoding, re-exported for callers
    BOOKED_UNTIL,
    CAPACITY,
    CONFIGURED,
    COOL_UNTIL,
    DIMENSIONS,
    LEARNED,
    LOWERED_PREFIX,
    PARTITION_KEY,
    STATE_ATTRIBUTES,
    TAT_PREFIX,
    TENANTS,
    Update,
    cell,
    decode,
)
from .learned_limits import (  # noqa: F401 - the learned-limit forms, re-exported for callers
    learn_update,
    learned_capacities,
    limit_conditions,
)
from .limits import OUTPUT_TOKENS, WINDOW_S

#: `booked_until` is kept in whole steps of this many seconds (rounded up: a bound on every
#: pending start), so concurrent bookings in one step write the same value and never race.
BOOKED_STEP_S = 5.0

#: Seconds an idle dimension is charged beyond exact GCRA by a booking (a start after now):
#: bookings made together start up to a few seconds apart, and the dimension stays busy (its
#: linear form) for the bookings that follow within this time (see `TokenBucket`).
BOOKING_MARGIN_S = BOOKED_STEP_S

#: Largest debt a bucket carries: its level never goes below minus one capacity.
DEBT_FLOOR_WINDOWS = 1.0


@dataclass(frozen=True)
class Shape:
    """The bucket's geometry: capacity per dimension (per minute) and burst tolerance
    (seconds, 0 < tolerance <= 60)."""

    capacities: Mapping[str, float]
    tolerance_s: float = WINDOW_S

    def seconds(self, dim: str, amount: float) -> float:
        """Tokens (or requests) -> seconds of refill in dimension `dim`."""
        return amount * WINDOW_S / self.capacities[dim]

    def tolerance(self, cost_s: float) -> float:
        """Burst tolerance for a charge of `cost_s` seconds: a charge larger than the burst
        fits alone, from a bucket that has refilled to it (never more than one capacity)."""
        return min(WINDOW_S, max(self.tolerance_s, cost_s))

    def level(self, dim: str, item: Mapping[str, float], at: float) -> float:
        """Level of `dim` at time `at` (tokens; negative while in debt)."""
        tat = item.get(dim)
        burst = self.tolerance_s * self.capacities[dim] / WINDOW_S
        if tat is None:
            return burst
        return min(burst, (at + self.tolerance_s - tat) * self.capacities[dim] / WINDOW_S)

    def earliest_start(self, costs: Mapping[str, float], item: Mapping[str, float],
                       now: float) -> float:
        """Earliest time >= now at which every dimension's `cost` (seconds) fits and no
        cool-down is in force (epoch seconds)."""
        start = max(now, item.get(COOL_UNTIL, now))
        for dim, cost in costs.items():
            tat = item.get(dim)
            if tat is not None:
                start = max(start, tat + cost - self.tolerance(cost))
        return start

    def refusal(self, costs: Mapping[str, float], item: Mapping[str, float],
                now: float) -> tuple[float, str | None]:
        """Exact wait (seconds) before `costs` fit, and why ("quota" or "cool_down")."""
        quota_start = self.earliest_start(costs, {k: v for k, v in item.items()
                                                  if k != COOL_UNTIL}, now)
        cool_wait = item.get(COOL_UNTIL, 0.0) - now
        quota_wait = quota_start - now
        if cool_wait > 0:
            return max(cool_wait, quota_wait), "cool_down"
        if quota_wait > 0:
            return quota_wait, "quota"
        return 0.0, None

    def used_percent(self, item: Mapping[str, float], at: float) -> float:
        """The fullest dimension as of `at`, 0-100 (a booked tat beyond the window counts
        as full)."""
        used = [min(100.0, max(0.0, item[dim] - at) / self.tolerance_s * 100)
                for dim in self.capacities if dim in item]
        return round(max(used, default=0.0), 2)


def acquire_update(shape: Shape, costs: Mapping[str, float], seen: Mapping[str, float],
                   start: float, now: float, margin_s: float) -> Update:
    """The conditional write reserving `costs` (seconds per dimension) as of `start`."""
    update = Update()
    cool = update.name(COOL_UNTIL)
    start_down = update.value(cell(start, "down"))
    update.conditions.append(f"(attribute_not_exists({cool}) OR {cool} <= {start_down})")
    charge_forms(update, shape, costs, seen, start, margin_s,
                 lambda dim: update.name(TAT_PREFIX + dim))
    if start > now:  # a booking: booked_until = max(booked_until, start), in whole steps
        booked = update.name(BOOKED_UNTIL)
        mark = math.ceil(start / BOOKED_STEP_S) * BOOKED_STEP_S
        mark_cell = update.value(cell(mark, "up"))
        if seen.get(BOOKED_UNTIL, -math.inf) < mark:
            update.conditions.append(f"(attribute_not_exists({booked}) OR {booked} <= {mark_cell})")
            update.sets.append(f"{booked} = {mark_cell}")
        else:
            update.conditions.append(f"{booked} >= {mark_cell}")
    return update


def idle_tat(shape: Shape, cost: float, start: float, margin_s: float) -> float:
    """The tat an idle dimension is given when `cost` (seconds) is charged as of `start`."""
    return start + max(0.0, min(margin_s, shape.tolerance(cost) - cost)) + cost


def charge_forms(update: Update, shape: Shape, costs: Mapping[str, float],
                 seen: Mapping[str, float], start: float, margin_s: float,
                 attr_of: Callable[[str], str]) -> None:
    """Charge `costs` (seconds per dimension) as of `start`, each dimension in the form its
    `seen` tat predicts (`attr_of(dim)`: the attribute's placeholder or document path)."""
    for dim, cost in costs.items():
        attr = attr_of(dim)
        tolerance = shape.tolerance(cost)
        tat = seen.get(dim)
        if tat is not None and tat >= start:  # busy: exact, linear
            lo = update.value(cell(start, "up"))
            hi = update.value(cell(start + tolerance - cost, "down"))
            update.conditions.append(f"{attr} BETWEEN {lo} AND {hi}")
            update.sets.append(f"{attr} = {attr} + {update.value(cell(cost, 'up'))}")
        else:  # idle (or never seen): from k, at most `margin` above exact
            k = idle_tat(shape, cost, start, margin_s) - cost
            k_cell = update.value(cell(k, "down"))
            update.conditions.append(f"(attribute_not_exists({attr}) OR {attr} <= {k_cell})")
            update.sets.append(f"{attr} = {update.value(cell(k + cost, 'up'))}")


@dataclass
class SettlePlan:
    """The write correcting a grant, and what it credits or forgoes (seconds per dimension)."""

    update: Update
    credited: dict[str, float] = field(default_factory=dict)
    forgone: dict[str, float] = field(default_factory=dict)


def settle_update(shape: Shape, deltas: Mapping[str, float], seen: Mapping[str, float],
                  now: float, written: Mapping[str, str],
                  granted_at: float | None = None,
                  reserved: Mapping[str, float] | None = None, *,
                  update: Update | None = None,
                  attr_of: Callable[[str], str] | None = None,
                  lowerable: bool = True) -> SettlePlan:
    """The write moving each dimension by `deltas` (seconds; negative = refund) for a grant
    whose own write left `written` (tat per dimension, as the DynamoDB number string), that
    was acquired at `granted_at` (epoch seconds, before its write; None: unknown, so a refund
    is credited only in a dimension never lowered) and reserved `reserved` (seconds per
    dimension).

    In a dimension lowered after the grant, the lowering already set the server's view: input
    and requests were counted by the server at the start, so a refund is forgone; output may be
    counted as produced (after the lowering), so the actual output (delta + reserved) is
    charged instead of the refund.

    `update`: add to this write instead of a new one; `attr_of(key)`: the placeholder (or
    document path) of a key of `seen` (a dimension, "booked_until", "lowered_at_<dim>"), for
    state kept elsewhere than the item's top level (a tenant's caps); `lowerable`: False for
    state the server's headers never lower (no `lowered_at` to check)."""
    plan = SettlePlan(update if update is not None else Update())
    update = plan.update
    if attr_of is None:
        def attr_of(key: str) -> str:
            return update.name(TAT_PREFIX + key if key in DIMENSIONS else key)
    cap = now + WINDOW_S * (1 + DEBT_FLOOR_WINDOWS)  # tat at a level of -capacity
    no_booking_pending = seen.get(BOOKED_UNTIL, -math.inf) <= now
    booking_checked = False
    for dim, delta in deltas.items():
        tat = seen.get(dim)
        lowered = LOWERED_PREFIX + dim
        if lowered in seen and (granted_at is None or seen[lowered] >= granted_at):
            if dim == OUTPUT_TOKENS and delta < 0:
                plan.forgone[dim] = -delta
                delta += (reserved or {}).get(dim, -delta)  # the actual output, >= 0
                if delta <= 0:
                    continue
            elif delta < 0:
                plan.forgone[dim] = -delta
                continue
        if delta < 0:  # refund
            refund = -delta
            # Only what lies above "full now" can be credited: tat - now at most (a little less,
            # so the rounded condition holds on the tat seen). More would fill past full.
            credit = min(refund, tat - now - 2e-6) if tat is not None else 0.0
            if credit <= 0:
                continue  # the dimension is full already: a refund adds nothing, no write
            own = written.get(dim)
            if lowerable and (no_booking_pending or (own is not None and tat == float(own))):
                low = attr_of(lowered)
                update.conditions.append(
                    f"attribute_not_exists({low})" if granted_at is None else
                    f"(attribute_not_exists({low}) OR {low} < "
                    f"{update.value(cell(granted_at, 'down'))})")
            if no_booking_pending:
                # classic GCRA refund; robust to other callers' charges (tat only grows)
                attr = attr_of(dim)
                if not booking_checked:
                    booked = attr_of(BOOKED_UNTIL)
                    update.conditions.append(
                        f"(attribute_not_exists({booked}) OR {booked} <= "
                        f"{update.value(cell(now, 'down'))})")
                    booking_checked = True
                update.conditions.append(
                    f"{attr} >= {update.value(cell(now + credit, 'up'))}")
                update.sets.append(f"{attr} = {attr} - {update.value(cell(credit, 'down'))}")
                plan.credited[dim] = credit
            elif own is not None and tat == float(own):
                # exact undo of the grant's own charge: nothing was stacked on top of it
                attr = attr_of(dim)
                update.conditions.append(f"{attr} = {update.value(own)}")
                update.sets.append(f"{attr} = {update.value(cell(float(own) - refund, 'up'))}")
                plan.credited[dim] = refund
            else:
                plan.forgone[dim] = refund  # would erase a pending booking's charge
            continue
        debt = delta
        attr = attr_of(dim)
        if tat is not None and now <= tat <= cap - debt:
            update.conditions.append(
                f"{attr} BETWEEN {update.value(cell(now, 'up'))} AND "
                f"{update.value(cell(cap - debt, 'down'))}")
            update.sets.append(f"{attr} = {attr} + {update.value(cell(debt, 'up'))}")
        elif tat is not None and tat > cap - debt:  # debt floor: minus one capacity
            update.conditions.append(f"{attr} > {update.value(cell(cap - debt, 'down'))}")
            update.sets.append(f"{attr} = {update.value(cell(cap, 'up'))}")
        else:  # idle: the debt starts from a full bucket
            now_cell = update.value(cell(now, "down"))
            update.conditions.append(f"(attribute_not_exists({attr}) OR {attr} < {now_cell})")
            update.sets.append(f"{attr} = {update.value(cell(now + min(debt, cap - now), 'up'))}")
        plan.credited[dim] = delta
    return plan


def cool_down_update(until: float) -> Update:
    """Extend (never shorten) the shared cool-down to `until` (epoch seconds)."""
    update = Update()
    attr, value = update.name(COOL_UNTIL), update.value(cell(until, "up"))
    update.sets.append(f"{attr} = {value}")
    update.conditions.append(f"(attribute_not_exists({attr}) OR {attr} < {value})")
    return update


def lower_update(shape: Shape, targets: Mapping[str, float], now: float,
                 seen: Mapping[str, float] | None = None) -> Update:
    """Lower each dimension to the level in `targets` (tokens) as of `now`; never raises one.

    Stamps `lowered_at_<dimension>` = max(its value, now), predicted from `seen` like
    `booked_until`, so refunds of grants written before the lowering are forgone."""
    seen = seen or {}
    update = Update()
    for dim, level in targets.items():
        low = update.name(LOWERED_PREFIX + dim)
        now_cell = update.value(cell(now, "up"))
        if seen.get(LOWERED_PREFIX + dim, -math.inf) <= now:
            update.conditions.append(f"(attribute_not_exists({low}) OR {low} <= {now_cell})")
            update.sets.append(f"{low} = {now_cell}")
        else:
            update.conditions.append(f"{low} >= {now_cell}")
        attr = update.name(TAT_PREFIX + dim)
        # tat at which the level is exactly `level`; rounded up = a little lower level
        value = update.value(cell(now + shape.tolerance_s - shape.seconds(dim, level), "up"))
        update.sets.append(f"{attr} = {value}")
        update.conditions.append(f"(attribute_not_exists({attr}) OR {attr} < {value})")
    return update
