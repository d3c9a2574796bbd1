"""The headroom a Bedrock `flex` pool learns: lowered when flex is shed, probed back up.

Bedrock's on-demand quota for a model is shared by its service tiers; `flex` is served best
effort, on capacity the other tiers leave spare, and throttled more readily. A 429 from a flex
pool therefore says that Bedrock is shedding flex work now, not that the pool's quota is used:
its configured limits cannot tell the guard how much flex will be served. So a flex pool's
bucket learns it, on the bucket item where every caller adopts it (the `learned` entries of
`guard.learned_limits`, stamped with the time of each switch):

- `shed_plan`: a 429 from a flex pool lowers every dimension's capacity in force to
  `SHED_FACTOR` of itself, never below `MIN_FRACTION` of the configured capacity; a 429 for a
  request booked before the last switch lowers nothing more (it was booked at the old
  capacity), so a burst of refusals halves the capacity once, not once per refusal;
- `probe_plan`: once `HOLD_S` seconds passed since the last switch, a successful flex call
  raises each lowered dimension by `PROBE_STEP` of the configured capacity, up to it, and the
  next probe is due `HOLD_S` later; a flex pool that is no longer shed is back at its configured
  capacity after (1 - capacity in force / configured) / PROBE_STEP probes.

A shed keeps the share of the capacity that was in use (each `tat` stays: at the lower
capacity less is free than before, never more; the requests refused upstream free no room);
a probe keeps what was used used (`learn_update` rescales each `tat`), so raising the
capacity frees only the step. Both plans are pure; `shed` and `probe` send the
write (`TokenBucket.switch_capacities`, one conditional UpdateItem, none while nothing is due).
"""

from __future__ import annotations

import logging
from typing import Mapping

from .bucket import TokenBucket
from .learned_limits import SWITCHED_AT, learned_capacities

log = logging.getLogger(__name__)

#: A flex 429 multiplies each capacity in force by this.
SHED_FACTOR = 0.5
#: The least capacity a flex pool is lowered to, as a fraction of its configured capacity.
MIN_FRACTION = 0.1
#: Seconds after a switch before the capacity is probed up (and between probes).
HOLD_S = 10.0
#: A probe raises a lowered capacity by this fraction of the configured capacity.
PROBE_STEP = 0.1

Changes = dict[str, tuple[float, float, float]]


def _switched_at(seen: Mapping) -> float:
    """When the item's capacities last switched (epoch seconds; -inf: never)."""
    stamps = [entry.get(SWITCHED_AT) for entry in seen.get("learned", {}).values()]
    return max((s for s in stamps if s is not None), default=float("-inf"))


def shed_plan(seen: Mapping, configured: Mapping[str, float], now: float,
              booked_at: float) -> Changes:
    """The switch after a flex 429 for a request booked at `booked_at` (epoch seconds), from
    the item `seen`: {dimension: (capacity in force, lowered, configured)} per minute; empty
    when the item switched since that booking or every dimension is at its floor."""
    if _switched_at(seen) >= booked_at:
        return {}
    in_force = learned_capacities(configured, seen)
    changes = {}
    for dim, capacity in configured.items():
        lowered = max(MIN_FRACTION * capacity, SHED_FACTOR * in_force[dim])
        if lowered < in_force[dim]:
            changes[dim] = (in_force[dim], lowered, capacity)
    return changes


def probe_plan(seen: Mapping, configured: Mapping[str, float], now: float) -> Changes:
    """The probe up due at `now` (epoch seconds) from the item `seen`: each lowered dimension
    raised by `PROBE_STEP` of its configured capacity, at most to it; empty while the last
    switch is less than `HOLD_S` old or nothing is lowered."""
    if now - _switched_at(seen) < HOLD_S:
        return {}
    in_force = learned_capacities(configured, seen)
    return {dim: (in_force[dim], min(capacity, in_force[dim] + PROBE_STEP * capacity),
                  capacity)
            for dim, capacity in configured.items() if in_force[dim] < capacity}


def shed(bucket: TokenBucket, booked_at: float) -> dict[str, float]:
    """Lower a flex pool's bucket after a 429 for the request booked at `booked_at` (the
    grant's `acquired_at`, epoch seconds). Returns {dimension: new capacity per minute}."""
    switched = bucket.switch_capacities(
        lambda seen, configured, now: shed_plan(seen, configured, now, booked_at),
        keep_used=False)
    if switched:
        log.warning("flex pool %s shed by the provider: capacity lowered to %s per minute",
                    bucket.bucket_id, switched)
    return switched


def probe(bucket: TokenBucket) -> dict[str, float]:
    """Raise a flex pool's lowered bucket a step when a probe is due, planned from the item
    this client last saw (no read; no write while none is due). Returns {dimension: new
    capacity per minute}."""
    return bucket.switch_capacities(probe_plan)
