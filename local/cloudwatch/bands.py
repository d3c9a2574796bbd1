"""The local stand-in for CloudWatch anomaly detection: a band per period from the metric's own
history, so band alarms and band graphs can be replayed without AWS.

    bands = seasonal_bands(values, period_s=300, k=3)   # [(lower, upper) or None, ...]

This is an approximation, documented as one: CloudWatch's model is not published (it trains
on up to two weeks of the metric and models daily and weekly seasonality and trend). Here,
for the point at index i:

- the baseline is the median of the same time of day on each of the previous `days` days
  (the point's slot and its `neighbours` slots either side, so a baseline of 14 days of
  5-minute periods draws on up to 14 x 3 = 42 values);
- the spread is the larger of 1.4826 x the median absolute deviation of those values (a
  standard deviation for normal noise) and their standard deviation (which keeps sparse
  series honest: a failure rate that is 0 most periods has a MAD of 0, yet an occasional
  failure is normal), floored at `min_spread_fraction` of the baseline's size and at
  `min_spread` so a flat history does not make every wiggle an anomaly;
- the band is baseline +/- k x spread;
- with fewer than `min_days` days of history for that slot there is no band (None): a new
  deployment's band alarms stay quiet until there is history, as CloudWatch's do while the
  model trains. Missing values (None) in the history are skipped.

Only earlier days feed a point's band: a step in today's data is judged against what the
previous days did at that time, so it stands out instead of widening its own band.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import median, pstdev

__all__ = ["DAY_S", "seasonal_bands"]

DAY_S = 86_400
_MAD_TO_SD = 1.4826


def seasonal_bands(values: Sequence[float | None], period_s: int, k: float, *,
                   days: int = 14, neighbours: int = 1, min_days: int = 1,
                   min_spread: float = 1e-9, min_spread_fraction: float = 0.05
                   ) -> list[tuple[float, float] | None]:
    """One band (lower, upper) per point of `values` (consecutive periods of `period_s`
    seconds, oldest first), or None where the history is too short (see the module doc)."""
    if period_s <= 0 or DAY_S % period_s:
        raise ValueError(f"period_s must divide a day (86400 s), got {period_s!r}")
    if k <= 0:
        raise ValueError(f"k (standard deviations) must be > 0, got {k!r}")
    per_day = DAY_S // period_s
    out: list[tuple[float, float] | None] = []
    for i in range(len(values)):
        history: list[float] = []
        days_seen = 0
        for d in range(1, days + 1):
            centre = i - d * per_day
            if centre + neighbours < 0:
                break
            window = [values[j] for j in range(centre - neighbours, centre + neighbours + 1)
                      if 0 <= j < len(values) and values[j] is not None]
            if window:
                days_seen += 1
                history += window
        if days_seen < min_days or not history:
            out.append(None)
            continue
        baseline = median(history)
        spread = max(_MAD_TO_SD * median(abs(v - baseline) for v in history),
                     pstdev(history), min_spread, min_spread_fraction * abs(baseline))
        out.append((baseline - k * spread, baseline + k * spread))
    return out
