"""Percentiles, in one place for the demo's report, local CloudWatch and the benchmarks.

Both take values in any unit and return one of them (same unit); `q` is a percent, 0-100.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The value at rank round(q/100 x (n - 1)) of the sorted values (0.0 when there are none):
    what the report and the benchmarks print as p50 / p99."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def nearest_rank(values: Sequence[float], q: float) -> float:
    """CloudWatch's pNN: the smallest value with at least q % of the values at or below it
    (nearest rank; `values` must not be empty)."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100.0 * len(ordered))) - 1]
