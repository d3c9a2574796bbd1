"""Limits learned from the server's headers: the `learned` map on the bucket item.

When the server's `anthropic-ratelimit-*-limit` shows more than a dimension's capacity (a tier
upgrade), the bucket may raise that capacity, up to a ceiling per dimension (`learn_up_to`).
The capacity in force is kept on the item, per dimension: "c", the capacity (per minute; every
`tat` of that dimension is in its seconds) and "f", the configured capacity it replaced (an
entry for another configuration is void). This module holds the pure parts: the conditional
forms (`learn_update` switches capacities in one write, `limit_conditions` pins a write to the
capacities it was computed with), which dimensions to switch (`planned_changes`), the
ceilings' check and the audit record. `TokenBucket.learn_limits` sends the write.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from .bucket_item import CAPACITY, CONFIGURED, LEARNED, TAT_PREFIX, Update, cell

#: A learned entry's field: when its capacity was last switched (epoch seconds), kept by
#: switches that adapt a capacity over time (`guard.flex_headroom`).
SWITCHED_AT = "t"
#: The metric (and audit line) of a capacity switched from the server's headers.
LIMIT_LEARNED_METRIC = "LimitLearned"
METRICS_NAMESPACE = "Bulwark"


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
                 now: float, *, stamp: bool = False, keep_used: bool = True) -> Update:
    """Switch dimensions to a new capacity: `changes` maps a dimension to (the capacity in
    force, the new one, the configured one), per minute. One conditional write: the
    condition names the capacity in force, and each `tat` is rescaled so that what was used
    stays used (`tat - now` shrinks by old / new); the `tat` seen is a floor in the
    condition, so a booking made meanwhile is rescaled too little, never too much. `stamp`:
    each entry also keeps `now` as SWITCHED_AT (when its capacity last changed).
    `keep_used=False` leaves each `tat` as it is, so the bucket keeps the share of its
    capacity that was used (a lower capacity: less is free than before, never more)."""
    update = Update()
    learned = seen.get(LEARNED)
    entries = {dim: {CAPACITY: _number(new), CONFIGURED: _number(configured),
                     **({SWITCHED_AT: _number(now)} if stamp else {})}
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
        if not keep_used or tat is None or tat <= now:
            continue  # full now: full at either capacity
        attr = update.name(TAT_PREFIX + dim)
        update.conditions.append(f"{attr} >= {update.value(cell(tat, 'down'))}")
        shrink = (tat - now) * (1 - old / new)  # negative when lowering: tat grows
        update.sets.append(f"{attr} = {attr} - {update.value(cell(shrink, 'down'))}")
    return update


def check_ceilings(learn_up_to: Mapping[str, float] | None,
                   configured: Mapping[str, float]) -> dict[str, float] | None:
    """`learn_up_to` ({dimension: capacity per minute}) checked against the `configured`
    capacities (per minute): a dimension of the bucket, a ceiling at least its configured
    capacity. None stays None (never learn). TypeError or ValueError naming the problem."""
    if learn_up_to is None:
        return None
    if not isinstance(learn_up_to, Mapping):
        raise TypeError(f"learn_up_to must map a dimension to a capacity per minute, got "
                        f"{type(learn_up_to).__name__}")
    ceilings = {}
    for dim, ceiling in learn_up_to.items():
        if dim not in configured:
            raise ValueError(f"learn_up_to names {dim!r}, not a dimension of this bucket "
                             f"({', '.join(sorted(configured))})")
        if isinstance(ceiling, bool) or not isinstance(ceiling, (int, float)) \
                or not configured[dim] <= ceiling < math.inf:
            raise ValueError(f"learn_up_to[{dim!r}] must be a capacity per minute at least "
                             f"the configured {configured[dim]:g}, got {ceiling!r}")
        ceilings[dim] = float(ceiling)
    return ceilings


def planned_changes(configured: Mapping[str, float], ceilings: Mapping[str, float],
                    header_limits: Mapping[str, float], seen: Mapping
                    ) -> dict[str, tuple[float, float, float]]:
    """The dimensions to switch, as `learn_update` takes them: {dimension: (capacity in force,
    new capacity, configured capacity)}, all per minute. A dimension is raised to its
    `header_limits` figure (at most its ceiling) when that is more than the capacity in force
    on the item `seen`; one whose learned entry was made over another configuration goes back
    to its configured capacity."""
    in_force = learned_capacities(configured, seen)
    learned = seen.get(LEARNED, {})
    changes = {}
    for dim, capacity in configured.items():
        entry = learned.get(dim)
        target = min(header_limits.get(dim, 0.0), ceilings.get(dim, capacity))
        if target > in_force[dim]:
            changes[dim] = (in_force[dim], target, capacity)
        elif entry is not None and entry.get(CONFIGURED) != capacity:
            changes[dim] = (entry.get(CAPACITY, capacity), capacity, capacity)
    return changes


def audit_record(bucket_id: str, dim: str, old: float, new: float, configured: float,
                 ceiling: float, at: float) -> dict[str, Any]:
    """The audit line of one dimension switched (capacities per minute; `at` in epoch
    seconds): a structured log record that is also the `LimitLearned` metric (CloudWatch
    embedded metric format: dimensions Model and Dimension; the bucket id stands for the
    model)."""
    return {"message": "bucket capacity switched from the server's rate-limit headers",
            "bucket_id": bucket_id, "Model": bucket_id, "Dimension": dim,
            "old_per_minute": old, "new_per_minute": new,
            "configured_per_minute": configured,
            "ceiling_per_minute": ceiling,
            LIMIT_LEARNED_METRIC: 1,
            "_aws": {"Timestamp": int(at * 1000), "CloudWatchMetrics": [{
                "Namespace": METRICS_NAMESPACE, "Dimensions": [["Model", "Dimension"]],
                "Metrics": [{"Name": LIMIT_LEARNED_METRIC, "Unit": "Count"}]}]}}
