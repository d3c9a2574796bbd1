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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .limits import INPUT_TOKENS, OUTPUT_TOKENS, REQUESTS, TOKENS, WINDOW_S

PARTITION_KEY = "pk"
COOL_UNTIL = "cool_until"
BOOKED_UNTIL = "booked_until"
TAT_PREFIX = "tat_"
LOWERED_PREFIX = "lowered_at_"
#: One map attribute with each tenant's fair-share state (see `guard.fair`).
TENANTS = "tenants"
#: One map attribute with the limits learned from the server's headers, per dimension: "c",
#: the capacity in force (per minute; every `tat` of that dimension is in its seconds) and
#: "f", the configured capacity it replaced (an entry for another configuration is void).
LEARNED = "learned"
CAPACITY, CONFIGURED = "c", "f"

#: Every attribute of a bucket item: its key and its rate-limit state. A booked caller reads
#: exactly these (a projection; IAM allows no other attribute of the bucket table).
DIMENSIONS = (REQUESTS, INPUT_TOKENS, OUTPUT_TOKENS, TOKENS)
STATE_ATTRIBUTES = (PARTITION_KEY, COOL_UNTIL, BOOKED_UNTIL) + tuple(
    TAT_PREFIX + dim for dim in DIMENSIONS) + tuple(
    LOWERED_PREFIX + dim for dim in DIMENSIONS) + (TENANTS, LEARNED)

#: `booked_until` is kept in whole steps of this many seconds (rounded up: a bound on every
#: pending start), so concurrent bookings in one step write the same value and never race.
BOOKED_STEP_S = 5.0

#: Seconds an idle dimension is charged beyond exact GCRA by a booking (a start after now):
#: bookings made together start up to a few seconds apart, and the dimension stays busy (its
#: linear form) for the bookings that follow within this time (see `TokenBucket`).
BOOKING_MARGIN_S = BOOKED_STEP_S

#: Largest debt a bucket carries: its level never goes below minus one capacity.
DEBT_FLOOR_WINDOWS = 1.0


def cell(value: float, rounding: str) -> str:
    """Encode seconds as a DynamoDB number with microsecond precision, rounded `up` or `down`
    so that every rounding errs on the side of admitting less."""
    scaled = value * 1_000_000
    micros = math.ceil(scaled) if rounding == "up" else math.floor(scaled)
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), 1_000_000)
    return f"{sign}{whole}.{frac:06d}"


def decode(item: Mapping[str, Mapping[str, str]]) -> dict[str, float]:
    """DynamoDB item -> {dimension, "cool_until", "booked_until" or "lowered_at_<dimension>":
    seconds; "tenants": {tenant: {field: seconds}}}."""
    decoded: dict[str, Any] = {}
    for attribute, value in item.items():
        if attribute in (TENANTS, LEARNED) and "M" in value:
            decoded[attribute] = {name: {field: float(number["N"]) for field, number
                                       in entry.get("M", {}).items() if "N" in number}
                                for name, entry in value["M"].items()}
            continue
        if "N" not in value:
            continue
        if attribute.startswith(TAT_PREFIX):
            decoded[attribute[len(TAT_PREFIX):]] = float(value["N"])
        elif attribute in (COOL_UNTIL, BOOKED_UNTIL) or attribute.startswith(LOWERED_PREFIX):
            decoded[attribute] = float(value["N"])
    return decoded


class Update:
    """One conditional UpdateItem under construction."""

    def __init__(self) -> None:
        self.sets: list[str] = []
        self.conditions: list[str] = []
        self.names: dict[str, str] = {}
        self.values: dict[str, dict[str, str]] = {}

    def name(self, attribute: str) -> str:
        for placeholder, existing in self.names.items():
            if existing == attribute:
                return placeholder
        placeholder = f"#a{len(self.names)}"
        self.names[placeholder] = attribute
        return placeholder

    def path(self, *attributes: str) -> str:
        """A document path (`#a1.#a2`) to a map entry: a placeholder per part."""
        return ".".join(self.name(attribute) for attribute in attributes)

    def value(self, number: str) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = {"N": number}
        return placeholder

    def map_value(self, entries: Mapping[str, Any]) -> str:
        """A map value: {name: DynamoDB number string, or a nested mapping of them}."""
        def encode(entry):
            if isinstance(entry, Mapping):
                return {"M": {key: encode(value) for key, value in entry.items()}}
            return {"N": entry}

        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = encode(entries)
        return placeholder

    @property
    def empty(self) -> bool:
        return not self.sets

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


def learned_capacities(configured: Mapping[str, float],
                       seen: Mapping) -> dict[str, float]:
    """The capacity per dimension (per minute) the item holds for a caller configured with
    `configured`: a learned entry made over the same configured capacity, else the
    configured one."""
    learned = seen.get(LEARNED, {})
    return {dim: learned[dim][CAPACITY] if learned.get(dim, {}).get(CONFIGURED) == capacity
            and learned[dim].get(CAPACITY, 0) > 0 else capacity
            for dim, capacity in configured.items()}


def limit_conditions(update: Update, configured: Mapping[str, float],
                     capacities: Mapping[str, float]) -> None:
    """Conditions naming the capacities a write was computed with: it holds only while the
    item has the same (a learned entry with that capacity, or no entry for this
    configuration), so callers with an old and a new limit never write over each other."""
    for dim, capacity in capacities.items():
        entry = update.path(LEARNED, dim)
        if capacity == configured[dim]:
            update.conditions.append(
                f"(attribute_not_exists({entry}) OR {update.path(LEARNED, dim, CONFIGURED)} <> "
                f"{update.value(_number(configured[dim]))} OR "
                f"{update.path(LEARNED, dim, CAPACITY)} = {update.value(_number(capacity))})")
        else:
            update.conditions.append(
                f"{update.path(LEARNED, dim, CAPACITY)} = {update.value(_number(capacity))} AND "
                f"{update.path(LEARNED, dim, CONFIGURED)} = "
                f"{update.value(_number(configured[dim]))}")


def _number(value: float) -> str:
    return repr(float(value))


def learn_update(changes: Mapping[str, tuple[float, float, float]], seen: Mapping,
                 now: float) -> Update:
    """Switch dimensions to a new capacity: `changes` maps a dimension to (the capacity in
    force, the new one, the configured one), per minute. One conditional write: the
    condition names the capacity in force, and each `tat` is rescaled so that what was used
    stays used (`tat - now` shrinks by old / new); the `tat` seen is a floor in the
    condition, so a booking made meanwhile is rescaled too little, never too much."""
    update = Update()
    learned = seen.get(LEARNED)
    entries = {dim: {CAPACITY: _number(new), CONFIGURED: _number(configured)}
               for dim, (_, new, configured) in changes.items()}
    if learned is None:
        top = update.name(LEARNED)
        update.conditions.append(f"attribute_not_exists({top})")
        update.sets.append(f"{top} = {update.map_value(entries)}")
    else:
        for dim, (old, _, configured) in changes.items():
            if dim in learned and learned[dim].get(CONFIGURED) == configured:
                update.conditions.append(f"{update.path(LEARNED, dim, CAPACITY)} = "
                                         f"{update.value(_number(old))}")
            elif dim in learned:  # an entry for another configuration: replaced
                update.conditions.append(f"{update.path(LEARNED, dim, CONFIGURED)} = "
                                         f"{update.value(_number(learned[dim][CONFIGURED]))}")
            else:
                update.conditions.append(f"attribute_not_exists({update.path(LEARNED, dim)})")
            update.sets.append(f"{update.path(LEARNED, dim)} = "
                               f"{update.map_value(entries[dim])}")
    for dim, (old, new, _) in changes.items():
        tat = seen.get(dim)
        if tat is None or tat <= now:
            continue  # full now: full at either capacity
        attr = update.name(TAT_PREFIX + dim)
        update.conditions.append(f"{attr} >= {update.value(cell(tat, 'down'))}")
        shrink = (tat - now) * (1 - old / new)  # negative when lowering: tat grows
        update.sets.append(f"{attr} = {attr} - {update.value(cell(shrink, 'down'))}")
    return update


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
