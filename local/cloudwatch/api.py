"""Local CloudWatch: a run's EMF ingested with PutMetricData into local AWS, read back with
GetMetricData, and what local AWS (moto 5.2) does not do, done here, in one place.

    cloudwatch = LocalCloudWatch(aws.client("cloudwatch"))
    cloudwatch.put_emf_lines(open("out/demo/emf.jsonl"))     # as Lambda's log ingestion does
    cloudwatch.get_metric_data(queries, start, end)          # CloudWatch's MetricDataQueries
    cloudwatch.series("Bulwark", "Requests", {"Model": m}, "Sum", 60, start, end)

Ingestion: every EMF document becomes PutMetricData calls (one per namespace, up to 1000
datums each) with the metric's name, dimensions (one datum per dimension set of the
directive), unit, timestamp and `StorageResolution` (1 for a high-resolution metric, else
60). The raw values are also kept here, as CloudWatch keeps them behind its API.

Reading (`get_metric_data`, the shape of CloudWatch's GetMetricData: `Id`, `MetricStat` or
`Expression`, `Label`, `ReturnData`, `Period`):

- A MetricStat with a plain statistic (Sum, Average, Minimum, Maximum, SampleCount) is read
  from local AWS with GetMetricData.
- What moto 5.2 does not do is done here: percentile statistics (pNN, moto answers none),
  metric math (moto returns an empty series for any expression that is not a bare id,
  silently) through `local.cloudwatch.metric_math.evaluate_expression`, the parser the alarm
  evaluation uses, and `ANOMALY_DETECTION_BAND(id[, k])` (k = 2 by default): the band
  model the local alarm evaluation uses (`local.cloudwatch.bands`, the same time of day on
  earlier days) where the range holds a day of history before a point, else mean +/- k
  standard deviations of the series over the range, so a short run's widget draws a band.
  A band comes back as two results with the query's Id, labelled "... (upper)" and
  "... (lower)".
- Resolution as CloudWatch applies it: a standard-resolution metric (StorageResolution 60)
  read with a period under 60 s comes back at 60 s; a high-resolution one at the period
  asked (1, 5, 10, 30 s or multiples of 60).

Every period is epoch-aligned (a multiple of the period), as CloudWatch aligns them.
Unlike CloudWatch, results keep periods without data as None so callers can draw gaps; the
`Values`/`Timestamps` lists hold only the periods with data, as CloudWatch returns them.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from local.cloudwatch.bands import DAY_S, seasonal_bands
from local.cloudwatch.metric_math import ExpressionError, evaluate_expression
from local.cloudwatch.metrics import (Datapoint, EmfError, MetricStore, emf_documents,
                                      parse_statistic, points_from_emf)

__all__ = ["LocalCloudWatch", "PLAIN_STATISTICS", "aligned_grid"]

PLAIN_STATISTICS = ("Sum", "Average", "Minimum", "Maximum", "SampleCount")
_BATCH = 1000  # PutMetricData accepts up to 1000 datums per call
_BAND = re.compile(r"^\s*ANOMALY_DETECTION_BAND\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*"
                   r"(?:,\s*([0-9.]+)\s*)?\)\s*$", re.IGNORECASE)
_IDS = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def aligned_grid(period_s: int, start: float, end: float) -> list[float]:
    """Period starts k * period_s covering [start, end)."""
    first = math.floor(start / period_s) * period_s
    return [float(t) for t in range(int(first), int(math.ceil(end)), int(period_s))]


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, timezone.utc)


class LocalCloudWatch:
    """PutMetricData / GetMetricData against local AWS, plus the evaluator for the rest.

    `client` is a boto3 CloudWatch client for the local AWS server. Thread-safe: the page's
    server reads while the demo's fleet writes (`--serve`).
    """

    def __init__(self, client) -> None:
        self.client = client
        self.raw = MetricStore()  # the raw values, for percentiles and units
        self._lock = threading.Lock()
        self._resolution: dict[tuple, int] = {}
        self._units: dict[tuple, str] = {}
        self._extent: tuple[float, float] | None = None
        self.put_calls = 0
        self.rejected = 0  # malformed EMF documents, skipped
        self.version = 0  # bumped on every ingestion: callers cache on it

    # --- ingestion ------------------------------------------------------------------------
    def put_emf_lines(self, lines: Iterable[str | bytes]) -> int:
        """Ingest every EMF document among `lines`; returns the datapoints put."""
        points: list[Datapoint] = []
        for doc in emf_documents(lines):
            try:
                points += points_from_emf(doc)
            except EmfError:
                self.rejected += 1
        return self.put(points)

    def put(self, points: Iterable[Datapoint]) -> int:
        """PutMetricData for `points` (grouped by namespace, 1000 per call)."""
        by_namespace: dict[str, list[Datapoint]] = {}
        for point in points:
            by_namespace.setdefault(point.namespace, []).append(point)
        count = 0
        for namespace, group in by_namespace.items():
            for i in range(0, len(group), _BATCH):
                chunk = group[i:i + _BATCH]
                self.client.put_metric_data(Namespace=namespace, MetricData=[{
                    "MetricName": p.name,
                    "Dimensions": [{"Name": k, "Value": v} for k, v in p.dimensions],
                    "Timestamp": _utc(p.timestamp), "Value": p.value, "Unit": p.unit,
                    "StorageResolution": p.resolution} for p in chunk])
                with self._lock:
                    self.put_calls += 1
                    for p in chunk:
                        key = (p.namespace, p.name, p.dimensions)
                        self.raw.add(p)
                        # a metric is high resolution once any datum of it is
                        self._resolution[key] = min(p.resolution,
                                                    self._resolution.get(key, 60))
                        self._units[key] = p.unit
                        lo, hi = self._extent or (p.timestamp, p.timestamp)
                        self._extent = (min(lo, p.timestamp), max(hi, p.timestamp))
                count += len(chunk)
        if count:
            with self._lock:
                self.version += 1
        return count

    # --- metadata -------------------------------------------------------------------------
    @staticmethod
    def _key(namespace: str, name: str, dimensions: Mapping[str, str] | None) -> tuple:
        return (namespace, name, tuple(sorted((dimensions or {}).items())))

    def resolution(self, namespace: str, name: str,
                   dimensions: Mapping[str, str] | None = None) -> int | None:
        """1 or 60 for an ingested metric, None for one never put."""
        with self._lock:
            return self._resolution.get(self._key(namespace, name, dimensions))

    def unit(self, namespace: str, name: str,
             dimensions: Mapping[str, str] | None = None) -> str | None:
        with self._lock:
            return self._units.get(self._key(namespace, name, dimensions))

    def extent(self) -> tuple[float, float] | None:
        """(oldest, newest) timestamp ingested, None before any."""
        with self._lock:
            return self._extent

    def effective_period(self, namespace: str, name: str,
                         dimensions: Mapping[str, str] | None, period_s: int) -> int:
        """The period CloudWatch answers with: at least 60 s for a standard-resolution metric."""
        if period_s < 60 and (self.resolution(namespace, name, dimensions) or 60) == 60:
            return 60
        return int(period_s)

    # --- reading --------------------------------------------------------------------------
    def series(self, namespace: str, name: str, dimensions: Mapping[str, str] | None,
               statistic: str, period_s: int, start: float,
               end: float) -> list[tuple[float, float | None]]:
        """`MetricStore.series`' interface over local CloudWatch (so
        `local.cloudwatch.alarms.evaluate` runs against it): one (period start, value or None)
        per period of the grid anchored at `start`."""
        query = {"Id": "m", "MetricStat": metric_stat(namespace, name, dimensions, statistic,
                                                     period_s)}
        grid = [start + k * period_s for k in range(math.ceil((end - start) / period_s))]
        return list(zip(grid, self._stat_series([query], grid, int(period_s))["m"]))

    def get_metric_data(self, queries: list[dict], start: float, end: float,
                        period_s: int | None = None) -> list[dict]:
        """CloudWatch GetMetricData over [start, end) for `queries`; returns one result per
        query with ReturnData (two for a band): `Id`, `Label`, `Period`, `Timestamps` and
        `Values` (periods with data, oldest first), `Points` ((period start, value or None)
        for every period of the range) and `StatusCode`.

        Expressions are read at `period_s` (default: the query's `Period`, else the first
        MetricStat's period, else 300 s); every query of one call must share a period when
        an expression refers to it, as in CloudWatch."""
        by_id = {q["Id"]: q for q in queries}
        default = period_s or next((int(q["MetricStat"]["Period"]) for q in queries
                                    if "MetricStat" in q), 300)
        grids: dict[int, list[float]] = {}
        values: dict[str, list[float | None]] = {}
        periods: dict[str, int] = {}

        def grid_of(period: int) -> list[float]:
            if period not in grids:
                grids[period] = aligned_grid(period, start, end)
            return grids[period]

        stats = [q for q in queries if "MetricStat" in q]
        by_period: dict[int, list[dict]] = {}
        for q in stats:
            m = q["MetricStat"]["Metric"]
            dims = {d["Name"]: d["Value"] for d in m.get("Dimensions", [])}
            period = self.effective_period(m["Namespace"], m["MetricName"], dims,
                                           int(q["MetricStat"]["Period"]))
            periods[q["Id"]] = period
            by_period.setdefault(period, []).append(q)
        for period, group in by_period.items():
            values.update(self._stat_series(group, grid_of(period), period))

        def value_of(qid: str, busy: frozenset = frozenset()) -> list[float | None]:
            if qid in values:
                return values[qid]
            if qid in busy or qid not in by_id:
                raise ExpressionError(f"unknown or cyclic id {qid!r}")
            q = by_id[qid]
            period = int(q.get("Period") or default)
            names = {n for n in _IDS.findall(q["Expression"]) if n in by_id and n != qid}
            variables = {n: value_of(n, busy | {qid}) for n in names}
            length = len(grid_of(period))
            variables = {n: v for n, v in variables.items() if len(v) == length}
            values[qid] = evaluate_expression(q["Expression"], variables, length, period)
            periods[qid] = period
            return values[qid]

        results = []
        for q in queries:
            if not q.get("ReturnData", True):
                continue
            qid, label = q["Id"], q.get("Label") or q["Id"]
            try:
                band = _BAND.match(q.get("Expression", ""))
                if band:
                    source = value_of(band.group(1))
                    period = periods[band.group(1)]
                    upper, lower = _band(source, float(band.group(2) or 2), period)
                    results.append(self._result(qid, f"{label} (upper)", grid_of(period),
                                                upper, period))
                    results.append(self._result(qid, f"{label} (lower)", grid_of(period),
                                                lower, period))
                    continue
                series = value_of(qid)
                period = periods[qid]
                results.append(self._result(qid, label, grid_of(period), series, period))
            except ExpressionError as error:
                results.append({"Id": qid, "Label": label, "Timestamps": [], "Values": [],
                                "Points": [], "Period": default, "StatusCode": "InternalError",
                                "Messages": [{"Code": "InternalError", "Value": str(error)}]})
        return results

    @staticmethod
    def _result(qid: str, label: str, grid: list[float], series: list[float | None],
                period: int) -> dict:
        present = [(t, v) for t, v in zip(grid, series) if v is not None]
        return {"Id": qid, "Label": label, "Period": period,
                "Timestamps": [t for t, _ in present], "Values": [v for _, v in present],
                "Points": list(zip(grid, series)), "StatusCode": "Complete"}

    def _stat_series(self, queries: list[dict], grid: list[float],
                     period: int) -> dict[str, list[float | None]]:
        """Each MetricStat query's value per period of `grid` (None where no data)."""
        out: dict[str, list[float | None]] = {}
        if not grid:
            return {q["Id"]: [] for q in queries}
        start, end = grid[0], grid[-1] + period
        plain, percentiles = [], []
        for q in queries:
            kind, _ = parse_statistic(q["MetricStat"]["Stat"])
            (percentiles if kind == "p" else plain).append(q)
        for q in percentiles:  # moto 5.2 has no percentiles: from the raw values kept here
            m = q["MetricStat"]["Metric"]
            dims = {d["Name"]: d["Value"] for d in m.get("Dimensions", [])}
            series = self.raw.series(m["Namespace"], m["MetricName"], dims,
                                     q["MetricStat"]["Stat"], period, start, end)
            out[q["Id"]] = [v for _, v in series]
        extent = self.extent()
        if plain and extent is not None:
            # only the part of the range that holds data goes to moto (it scans every
            # datapoint per period); the rest of the grid is None
            lo = max(start, math.floor(extent[0] / period) * period)
            hi = min(end, math.floor(extent[1] / period) * period + period)
            found: dict[str, dict[float, float]] = {q["Id"]: {} for q in plain}
            if lo < hi:
                for i in range(0, len(plain), 500):  # GetMetricData takes 500 queries
                    batch = plain[i:i + 500]
                    request = [{"Id": f"q{j}", "MetricStat": {
                        "Metric": q["MetricStat"]["Metric"], "Period": period,
                        "Stat": q["MetricStat"]["Stat"]}, "ReturnData": True}
                        for j, q in enumerate(batch)]
                    response = self.client.get_metric_data(
                        MetricDataQueries=request, StartTime=_utc(lo), EndTime=_utc(hi),
                        ScanBy="TimestampAscending")
                    for result in response["MetricDataResults"]:
                        qid = batch[int(result["Id"][1:])]["Id"]
                        for t, v in zip(result["Timestamps"], result["Values"]):
                            found[qid][t.timestamp()] = v
            for q in plain:
                out[q["Id"]] = [found[q["Id"]].get(t) for t in grid]
        for q in plain:
            out.setdefault(q["Id"], [None] * len(grid))
        return out


def _band(series: list[float | None], k: float, period: int) -> tuple[list, list]:
    """(upper, lower) per point: the alarms' seasonal band (`local.cloudwatch.bands`) where
    the range holds a day of history before the point, else mean +/- k sd of the range."""
    present = [v for v in series if v is not None]
    if not present:
        return [None] * len(series), [None] * len(series)
    mean = math.fsum(present) / len(present)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in present) / len(present))
    seasonal = seasonal_bands(series, period, k) if DAY_S % period == 0 \
        else [None] * len(series)
    upper, lower = [], []
    for v, band in zip(series, seasonal):
        lo, hi = band if band is not None else (mean - k * sd, mean + k * sd)
        upper.append(None if v is None else hi)
        lower.append(None if v is None else lo)
    return upper, lower


def metric_stat(namespace: str, name: str, dimensions: Mapping[str, str] | None,
                statistic: str, period_s: int) -> dict[str, Any]:
    """A GetMetricData MetricStat for one metric."""
    return {"Metric": {"Namespace": namespace, "MetricName": name,
                       "Dimensions": [{"Name": k, "Value": v}
                                      for k, v in (dimensions or {}).items()]},
            "Period": int(period_s), "Stat": statistic}
