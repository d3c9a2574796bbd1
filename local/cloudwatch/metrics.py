"""An in-memory CloudWatch metrics stand-in, fed by the EMF documents the agent prints.

The agent Lambda writes its metrics (`agent.contract.METRICS`) as CloudWatch Embedded Metric
Format (EMF) lines on stdout (`lambdas/agent/telemetry.py`, through Powertools). CloudWatch
Logs turns each such line into datapoints; this module does the same locally so alarms can
be evaluated without an AWS account (`local/cloudwatch/alarms.py`):

    store = MetricStore()
    store.add_emf_lines(captured_stdout.splitlines())
    store.series("Bulwark", "Upstream429", {"Model": "claude-sonnet-4-6"}, "Sum", 60,
                 start, end)            # [(period start, value or None), ...]

CloudWatch semantics kept here:
- A metric is identified by namespace, name and the *exact* set of dimensions: the metric
  with dimensions {Model: m} is a different metric from the one with no dimensions, and a
  query for {Model: m} does not aggregate {Model: m, Service: s}.
- Every dimension set listed under one `CloudWatchMetrics` directive yields the metric under
  that set (an empty set `[]` yields the metric with no dimensions).
- A metric value may be a number or a list of numbers; each list element is one datapoint.
- Statistics per period: Sum, Average, Minimum, Maximum, SampleCount and percentiles
  "pNN" / "pNN.N" by nearest rank (the value at rank ceil(p/100 * n) of the sorted values).
  CloudWatch computes percentiles from its own sketches, so they can differ slightly from
  nearest rank on large samples; on small samples nearest rank is what it reports.
- Units are kept on each datapoint but never converted (CloudWatch does not either).

Each datapoint keeps its EMF `StorageResolution` (1 or 60, default 60); this store itself
does not aggregate by it (datapoints keep their full timestamp, periods of any length are
accepted): `local.cloudwatch.api.LocalCloudWatch` reads standard-resolution metrics at no
finer than 60 s, as CloudWatch does. Not modelled: retention and the two-week timestamp window.
"""

from __future__ import annotations

import bisect
import json
import math
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from local.stats import nearest_rank

__all__ = ["Datapoint", "MetricStore", "EmfError", "STATISTICS", "parse_statistic",
           "points_from_emf", "emf_documents"]

#: the plain statistics `MetricStore.series` accepts (plus percentiles "p0".."p100")
STATISTICS = ("Sum", "Average", "Minimum", "Maximum", "SampleCount")
_STAT_BY_LOWER = {s.lower(): s for s in STATISTICS}
_PERCENTILE = re.compile(r"^[pP](\d{1,3}(?:\.\d+)?)$")

Dimensions = tuple[tuple[str, str], ...]


class EmfError(ValueError):
    """An EMF document that declares metrics but cannot be turned into datapoints."""


@dataclass(frozen=True)
class Datapoint:
    """One observation: `timestamp` in epoch seconds, `dimensions` as sorted (name, value) pairs
    (use `Datapoint.of` to build one from a dict)."""

    timestamp: float
    namespace: str
    name: str
    dimensions: Dimensions
    value: float
    unit: str = "None"
    #: EMF/PutMetricData StorageResolution: 1 (high resolution) or 60 (standard)
    resolution: int = 60

    @classmethod
    def of(cls, timestamp: float, namespace: str, name: str, value: float,
           dimensions: Mapping[str, str] | None = None, unit: str = "None",
           resolution: int = 60) -> Datapoint:
        return cls(float(timestamp), namespace, name, _dims_key(dimensions), float(value), unit,
                   resolution)


def parse_statistic(statistic: str) -> tuple[str, float | None]:
    """("Sum", None) for a plain statistic, ("p", 99.0) for "p99"; ValueError otherwise."""
    if not isinstance(statistic, str):
        raise ValueError(f"statistic must be a string, got {statistic!r}")
    plain = _STAT_BY_LOWER.get(statistic.lower())
    if plain is not None:
        return plain, None
    match = _PERCENTILE.match(statistic)
    if match:
        p = float(match.group(1))
        if 0 <= p <= 100:
            return "p", p
    raise ValueError(f"unsupported statistic {statistic!r}: use one of {', '.join(STATISTICS)} "
                     "or a percentile such as p50, p99, p99.9")


def _dims_key(dimensions: Mapping[str, str] | Iterable[tuple[str, str]] | None) -> Dimensions:
    if not dimensions:
        return ()
    pairs = dimensions.items() if isinstance(dimensions, Mapping) else dimensions
    key = tuple(sorted((str(k), str(v)) for k, v in pairs))
    names = [k for k, _ in key]
    if len(set(names)) != len(names):
        raise ValueError(f"dimension names repeat: {names}")
    return key


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _statistic(values: list[float], kind: str, percentile: float | None) -> float:
    if kind == "Sum":
        return math.fsum(values)
    if kind == "Average":
        return math.fsum(values) / len(values)
    if kind == "Minimum":
        return min(values)
    if kind == "Maximum":
        return max(values)
    if kind == "SampleCount":
        return float(len(values))
    return nearest_rank(values, percentile)


@dataclass
class _Series:
    timestamps: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    units: set[str] = field(default_factory=set)
    ordered: bool = True

    def append(self, timestamp: float, value: float, unit: str) -> None:
        if self.timestamps and timestamp < self.timestamps[-1]:
            self.ordered = False
        self.timestamps.append(timestamp)
        self.values.append(value)
        self.units.add(unit)

    def sort(self) -> None:
        if not self.ordered:
            pairs = sorted(zip(self.timestamps, self.values), key=lambda p: p[0])
            self.timestamps = [t for t, _ in pairs]
            self.values = [v for _, v in pairs]
            self.ordered = True


def points_from_emf(doc: dict) -> list[Datapoint]:
    """The datapoints of one EMF document (see `MetricStore.add_emf` for what is rejected)."""
    if not isinstance(doc, dict):
        raise EmfError(f"an EMF document is a JSON object, got {type(doc).__name__}")
    meta = doc.get("_aws")
    if not isinstance(meta, dict) or not isinstance(meta.get("CloudWatchMetrics"), list):
        raise EmfError("not an EMF document: no _aws.CloudWatchMetrics list")
    stamp = meta.get("Timestamp")
    if not _is_number(stamp):
        raise EmfError(f"EMF _aws.Timestamp must be epoch milliseconds, got {stamp!r}")
    timestamp = stamp / 1000.0
    points: list[Datapoint] = []
    for directive in meta["CloudWatchMetrics"]:
        if not isinstance(directive, dict):
            raise EmfError(f"EMF CloudWatchMetrics entry is not an object: {directive!r}")
        namespace = directive.get("Namespace")
        if not isinstance(namespace, str) or not namespace:
            raise EmfError(f"EMF directive without a Namespace: {directive!r}")
        dimension_sets = directive.get("Dimensions", [[]])
        if not isinstance(dimension_sets, list) or not dimension_sets:
            dimension_sets = [[]]
        keys: list[Dimensions] = []
        for names in dimension_sets:
            if not isinstance(names, list):
                raise EmfError(f"EMF Dimensions must be a list of lists, got {names!r}")
            pairs = []
            for name in names:
                value = doc.get(name)
                if not isinstance(name, str) or value is None or isinstance(value,
                                                                            (dict, list)):
                    raise EmfError(f"EMF dimension {name!r} has no scalar value in the "
                                   "document")
                pairs.append((name, str(value)))
            keys.append(_dims_key(pairs))
        for metric in directive.get("Metrics", []):
            if not isinstance(metric, dict) or not isinstance(metric.get("Name"), str):
                raise EmfError(f"EMF metric definition without a Name: {metric!r}")
            name = metric["Name"]
            unit = metric.get("Unit") or "None"
            resolution = metric.get("StorageResolution", 60)
            if resolution not in (1, 60):
                raise EmfError(f"EMF metric {name!r}: StorageResolution must be 1 or 60, got "
                               f"{resolution!r}")
            raw = doc.get(name)
            if raw is None:
                continue
            values = raw if isinstance(raw, list) else [raw]
            if not all(_is_number(v) for v in values):
                raise EmfError(f"EMF metric {name!r} must be a number or a list of numbers, "
                               f"got {raw!r}")
            for dims in keys:
                for value in values:
                    points.append(Datapoint(timestamp, namespace, name, dims, float(value),
                                            unit, resolution))
    return points


def emf_documents(lines: Iterable[str | bytes]) -> Iterable[dict]:
    """The EMF-looking documents among `lines`: JSON objects (after any log prefix before the
    first `{`) with an `_aws.CloudWatchMetrics` entry; other lines are skipped."""
    for line in lines:
        if not isinstance(line, str):
            line = line.decode("utf-8", "replace")
        brace = line.find("{")
        if brace < 0:
            continue
        try:
            doc = json.loads(line[brace:])
        except ValueError:
            continue
        if isinstance(doc, dict) and isinstance(doc.get("_aws"), dict) \
                and "CloudWatchMetrics" in doc["_aws"]:
            yield doc


class MetricStore:
    """Thread-safe in-memory metric store with CloudWatch-style per-period statistics.

    Datapoints are kept per metric (namespace, name, exact dimensions) in arrival order and
    sorted lazily on the first query after an out-of-order add, so adding is O(1) and a
    `series` call is O(periods * log n + datapoints in range).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str, Dimensions], _Series] = {}
        self.rejected_lines = 0  # EMF-looking lines `add_emf_lines` could not parse

    # --- input ----------------------------------------------------------------------------
    def add(self, point: Datapoint) -> None:
        if not _is_number(point.value):
            raise ValueError(f"datapoint value must be a finite number, got {point.value!r}")
        if not _is_number(point.timestamp):
            raise ValueError(f"datapoint timestamp must be a finite number, got "
                             f"{point.timestamp!r}")
        key = (point.namespace, point.name, _dims_key(point.dimensions))
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = _Series()
            series.append(float(point.timestamp), float(point.value), point.unit)

    def add_emf(self, doc: dict) -> int:
        """Add one EMF document; returns the number of datapoints added.

        Raises `EmfError` when the document is not EMF (no `_aws.CloudWatchMetrics`) or is
        malformed: no numeric `_aws.Timestamp` (epoch milliseconds), a directive without a
        `Namespace`, a dimension it names missing from the document, or a declared metric
        whose value is not a number or a list of numbers. A declared metric absent from the
        document is skipped, as CloudWatch does. Nothing is added when the document is bad.
        """
        points = points_from_emf(doc)
        with self._lock:
            for point in points:
                key = (point.namespace, point.name, point.dimensions)
                series = self._series.get(key)
                if series is None:
                    series = self._series[key] = _Series()
                series.append(point.timestamp, point.value, point.unit)
        return len(points)

    def add_emf_lines(self, lines: Iterable[str]) -> int:
        """Add every EMF document among `lines` (e.g. a Lambda's stdout); returns datapoints
        added. Lines that are not JSON objects or not EMF are skipped; text before the first
        `{` (a log prefix) is ignored. EMF documents that are malformed are skipped too and
        counted in `rejected_lines`."""
        added = 0
        for doc in emf_documents(lines):
            try:
                added += self.add_emf(doc)
            except EmfError:
                with self._lock:
                    self.rejected_lines += 1
        return added

    # --- queries --------------------------------------------------------------------------
    def names(self) -> set[tuple[str, str]]:
        """Every (namespace, metric name) with at least one datapoint."""
        with self._lock:
            return {(ns, name) for ns, name, _ in self._series}

    def dimension_sets(self, namespace: str, name: str) -> list[dict[str, str]]:
        """The distinct dimension sets a metric has datapoints under."""
        with self._lock:
            return [dict(dims) for ns, n, dims in self._series if ns == namespace and n == name]

    def datapoints(self, namespace: str, name: str,
                   dimensions: Mapping[str, str] | None = None) -> list[tuple[float, float]]:
        """The raw (timestamp, value) datapoints of one metric, oldest first."""
        with self._lock:
            series = self._series.get((namespace, name, _dims_key(dimensions)))
            if series is None:
                return []
            series.sort()
            return list(zip(series.timestamps, series.values))

    def __len__(self) -> int:
        with self._lock:
            return sum(len(s.values) for s in self._series.values())

    def series(self, namespace: str, name: str, dimensions: Mapping[str, str] | None,
               statistic: str, period_s: int, start: float,
               end: float) -> list[tuple[float, float | None]]:
        """One (period start, value) per period, periods [start + k*period_s, ... + period_s)
        for every period start in [start, end); value None for a period without datapoints.

        Periods are anchored at `start` exactly (pass a multiple of `period_s` to get
        CloudWatch's epoch-aligned periods). `dimensions` must match the stored set exactly;
        None or {} selects the metric without dimensions.
        """
        kind, percentile = parse_statistic(statistic)
        if not (isinstance(period_s, (int, float)) and period_s > 0):
            raise ValueError(f"period_s must be > 0, got {period_s!r}")
        if end <= start:
            return []
        count = math.ceil((end - start) / period_s)
        starts = [start + k * period_s for k in range(count)]
        key = (namespace, name, _dims_key(dimensions))
        with self._lock:
            series = self._series.get(key)
            if series is None:
                return [(s, None) for s in starts]
            series.sort()
            timestamps, values = series.timestamps, series.values
            out: list[tuple[float, float | None]] = []
            lo = bisect.bisect_left(timestamps, start)
            for s in starts:
                hi = bisect.bisect_left(timestamps, s + period_s, lo)
                if hi > lo:
                    out.append((s, _statistic(values[lo:hi], kind, percentile)))
                else:
                    out.append((s, None))
                lo = hi
            return out
