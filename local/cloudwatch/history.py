"""Synthetic metric histories with daily seasonality and noise, replayed into local CloudWatch:
the days of data a learned band (`local.cloudwatch.bands`) or a baseline needs before a
scenario can show a breach.

    points = seasonal_points("Bulwark", "CostUSD", {"Tenant": "acme"}, peak=0.40,
                             start=t0, end=t0 + 14 * DAY_S, period_s=300, rng=random.Random(1))
    replay_history(cloudwatch, points)   # a LocalCloudWatch (PutMetricData) or a MetricStore

    replay_seasonal_history(cloudwatch, {"CostUSD": 0.40, "Requests": 20},
                            {"Tenant": "acme"}, start=t0, days=14, seed=1)

The shape: `daily_factor` is 1 at noon UTC and `night` (a third by default) at midnight, a
cosine between them; each period's value is `peak x daily_factor x N(1, noise)`, floored at
0, timestamped one second into its period (so it falls in that period at any period length
that divides it). Every value of one period of one call moves by the same noise draw when
`shared_noise` is on (requests and spend rise and fall together, as they do).

Writing fourteen days of 5-minute periods is 4,032 datapoints per metric: through
`LocalCloudWatch.put` that is PutMetricData on local AWS (a few calls of 1000 datums); when
only the alarm evaluation reads the history, write into a `MetricStore` (or
`LocalCloudWatch.raw`) and skip moto.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping

from local.cloudwatch.bands import DAY_S
from local.cloudwatch.metrics import Datapoint

__all__ = ["daily_factor", "replay_history", "replay_seasonal_history", "seasonal_points"]


def daily_factor(t: float, night: float = 1 / 3) -> float:
    """Demand at epoch second `t` relative to the noon (UTC) peak: `night` at midnight, 1 at
    noon, a cosine between."""
    if not 0 <= night <= 1:
        raise ValueError(f"night must be a share of the peak in [0, 1], got {night!r}")
    phase = 2 * math.pi * (t % DAY_S) / DAY_S
    return night + (1 - night) * (1 - math.cos(phase)) / 2


def _check_range(start: float, end: float, period_s: int) -> None:
    if not isinstance(period_s, int) or isinstance(period_s, bool) or period_s <= 0:
        raise ValueError(f"period_s must be a positive integer of seconds, got {period_s!r}")
    if not end > start:
        raise ValueError(f"end ({end!r}) must be after start ({start!r})")


def seasonal_points(namespace: str, name: str, dimensions: Mapping[str, str] | None, *,
                    peak: float, start: float, end: float, period_s: int = 300,
                    noise: float = 0.05, night: float = 1 / 3,
                    rng: random.Random | None = None, unit: str = "None") -> list[Datapoint]:
    """One datapoint per period of `period_s` seconds in [start, end) (epoch seconds): the
    noon `peak` (in the metric's own unit per period) times `daily_factor`, times normal
    noise of relative standard deviation `noise`, never below 0."""
    _check_range(start, end, period_s)
    if not peak >= 0 or not noise >= 0:
        raise ValueError(f"peak and noise must be >= 0, got peak={peak!r}, noise={noise!r}")
    rng = rng or random.Random(0)
    return [Datapoint.of(t + 1, namespace, name,
                         max(0.0, peak * daily_factor(t, night) * rng.gauss(1, noise)),
                         dimensions, unit)
            for t in range(int(start), int(end), period_s)]


def replay_history(target, points: Iterable[Datapoint]) -> int:
    """Write `points` into `target`: a `LocalCloudWatch` (PutMetricData on local AWS, its
    `put`) or a `MetricStore` (its `add`). Returns how many were written."""
    if hasattr(target, "put"):
        return target.put(points)
    if not hasattr(target, "add"):
        raise TypeError(f"replay_history writes into a LocalCloudWatch or a MetricStore, got "
                        f"{type(target).__name__}")
    count = 0
    for point in points:
        target.add(point)
        count += 1
    return count


def replay_seasonal_history(target, peaks: Mapping[str, float],
                            dimensions: Mapping[str, str] | None, *, start: float,
                            days: float = 14, period_s: int = 300, noise: float = 0.05,
                            night: float = 1 / 3, seed: int = 1,
                            namespace: str | None = None,
                            units: Mapping[str, str] | None = None) -> int:
    """`days` of history from `start` (epoch seconds) for each metric in `peaks` (metric name
    -> its noon value per period) under `dimensions`, replayed into `target` (see
    `replay_history`). One seeded noise draw per period is shared by every metric, so their
    ratios (cost per request, ...) stay steady. `namespace` defaults to the kit's
    (`agent.contract.NAMESPACE`); `units` maps a metric name to its unit. Returns the
    datapoints written."""
    if namespace is None:
        from agent.contract import NAMESPACE as namespace
    end = start + days * DAY_S
    _check_range(start, end, period_s)
    rng = random.Random(seed)
    points: list[Datapoint] = []
    for t in range(int(start), int(end), period_s):
        factor = max(0.0, daily_factor(t, night) * rng.gauss(1, noise))
        points += [Datapoint.of(t + 1, namespace, name, peak * factor, dimensions,
                                (units or {}).get(name, "None"))
                   for name, peak in peaks.items()]
    return replay_history(target, points)
