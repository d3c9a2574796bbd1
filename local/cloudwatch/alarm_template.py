"""The stack's CloudWatch alarms, read from a synthesized template (what
`local.cloudwatch.alarms.evaluate` replays).

    alarms = alarms_from_template(template)            # placeholders for references
    alarms = alarms_from_template(template, resolver(stack.resources))   # deployed names

`alarms_from_template` reads every `AWS::CloudWatch::Alarm` of a synthesized template, both
the classic form (MetricName/Namespace/Dimensions/Period with Statistic or
ExtendedStatistic) and the `Metrics` form (MetricStat and Expression entries, one with
ReturnData true) that cdk-monitoring-constructs emits. Values that are CloudFormation
intrinsics (Ref, Fn::GetAtt, Fn::Join, ...) go through `resolve`; the default,
`local.cloudwatch.references.resolve` without deployed ids, turns them into readable names
such as "AgentFunctionB8994DEA" or "StateDeadLetterQueue9C4930C8.QueueName".

Anomaly-detection alarms (`ThresholdMetricId` naming an `ANOMALY_DETECTION_BAND(id, k)`
entry, with the band comparison operators) are read as `threshold_metric_id`; the alarm
compares the other ReturnData entry with the band (`local.cloudwatch.bands` is the band's
local model). `composites_from_template` reads every `AWS::CloudWatch::CompositeAlarm` with
its rule (`local.cloudwatch.alarms.evaluate_composites` replays them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import re

from local.cloudwatch import references
from local.cloudwatch.metrics import parse_statistic

__all__ = ["AlarmDefinition", "CompositeDefinition", "MetricDataQuery", "MetricQuery",
           "alarms_from_template", "composites_from_template"]

COMPARISONS = {
    "GreaterThanThreshold": (">", lambda v, t: v > t),
    "GreaterThanOrEqualToThreshold": (">=", lambda v, t: v >= t),
    "LessThanThreshold": ("<", lambda v, t: v < t),
    "LessThanOrEqualToThreshold": ("<=", lambda v, t: v <= t),
}
#: anomaly-band comparisons: value, (lower, upper) -> breaching
BAND_COMPARISONS = {
    "GreaterThanUpperThreshold": ("> upper", lambda v, b: v > b[1]),
    "LessThanLowerThreshold": ("< lower", lambda v, b: v < b[0]),
    "LessThanLowerOrGreaterThanUpperThreshold": ("outside",
                                                 lambda v, b: v < b[0] or v > b[1]),
}
MISSING_DATA = ("missing", "notBreaching", "breaching", "ignore")
#: an anomaly-detection band expression: ANOMALY_DETECTION_BAND(id[, k standard deviations])
BAND = re.compile(r"^\s*ANOMALY_DETECTION_BAND\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*"
                  r"(?:,\s*([0-9.]+)\s*)?\)\s*$", re.IGNORECASE)
#: one term of a composite alarm's rule: ALARM("ref"), OK("ref") or INSUFFICIENT_DATA("ref")
RULE_TERM = re.compile(r"\b(ALARM|OK|INSUFFICIENT_DATA)\(\s*\"?([^\")]+)\"?\s*\)")


# --- definitions ---------------------------------------------------------------------------
@dataclass(frozen=True)
class MetricQuery:
    """One metric with a statistic over a period (a MetricStat, or a classic alarm's metric)."""

    namespace: str
    name: str
    dimensions: dict[str, str]
    statistic: str  # Sum, Average, Minimum, Maximum, SampleCount or pNN[.N]
    period_s: int


@dataclass(frozen=True)
class MetricDataQuery:
    """One entry of an alarm's `Metrics` list: a `metric` or an `expression` over other ids."""

    id: str
    expression: str | None = None
    metric: MetricQuery | None = None
    return_data: bool = True
    label: str | None = None


@dataclass
class AlarmDefinition:
    """A CloudWatch alarm as `evaluate` needs it.

    `metric` is set for a single-metric alarm (the classic properties, or a `Metrics` list
    that is one MetricStat); `queries` is the `Metrics` list as written (empty for the
    classic form). `datapoints_to_alarm` defaults to `evaluation_periods`, as in CloudWatch.
    """

    logical_id: str
    name: str
    description: str = ""
    metric: MetricQuery | None = None
    queries: list[MetricDataQuery] = field(default_factory=list)
    period_s: int = 60
    threshold: float = 0.0
    comparison: str = "GreaterThanThreshold"
    evaluation_periods: int = 1
    datapoints_to_alarm: int | None = None
    treat_missing_data: str = "missing"
    evaluate_low_sample_count_percentile: str | None = None
    #: the Metrics id of the ANOMALY_DETECTION_BAND entry of an anomaly-detection alarm
    threshold_metric_id: str | None = None

    def __post_init__(self) -> None:
        if self.datapoints_to_alarm is None:
            self.datapoints_to_alarm = self.evaluation_periods
        where = f"alarm {self.logical_id}"
        table = BAND_COMPARISONS if self.threshold_metric_id else COMPARISONS
        if self.comparison not in table:
            kind = "an anomaly-detection" if self.threshold_metric_id else "a threshold"
            raise ValueError(f"{where}: unsupported ComparisonOperator {self.comparison!r} for "
                             f"{kind} alarm (supported: {', '.join(table)})")
        if self.threshold_metric_id is not None:
            band = next((q for q in self.queries if q.id == self.threshold_metric_id), None)
            if band is None or not band.expression or not BAND.match(band.expression):
                raise ValueError(f"{where}: ThresholdMetricId {self.threshold_metric_id!r} must "
                                 "name an ANOMALY_DETECTION_BAND(id, k) entry of Metrics")
        if self.treat_missing_data not in MISSING_DATA:
            raise ValueError(f"{where}: TreatMissingData must be one of "
                             f"{', '.join(MISSING_DATA)}, got {self.treat_missing_data!r}")
        if not (isinstance(self.period_s, int) and self.period_s > 0):
            raise ValueError(f"{where}: period_s must be a positive integer, "
                             f"got {self.period_s!r}")
        if not 1 <= self.datapoints_to_alarm <= self.evaluation_periods:
            raise ValueError(f"{where}: need 1 <= DatapointsToAlarm ({self.datapoints_to_alarm})"
                             f" <= EvaluationPeriods ({self.evaluation_periods})")
        if self.metric is None and not self.queries:
            raise ValueError(f"{where}: has neither a metric nor Metrics queries")
        if self.metric is None:
            self.return_query()  # validates ReturnData

    @property
    def operator(self) -> str:
        if self.threshold_metric_id:
            return BAND_COMPARISONS[self.comparison][0]
        return COMPARISONS[self.comparison][0]

    def breaches(self, value: float, band: tuple[float, float] | None = None) -> bool:
        """Whether `value` breaches: against the threshold, or for an anomaly-detection alarm
        against `band` (lower, upper)."""
        if self.threshold_metric_id:
            if band is None:
                raise ValueError(f"alarm {self.logical_id}: an anomaly-detection alarm "
                                 "compares against a band: pass band=(lower, upper)")
            return BAND_COMPARISONS[self.comparison][1](value, band)
        return COMPARISONS[self.comparison][1](value, self.threshold)

    def band_query(self) -> tuple[str, float]:
        """(the id the band is computed from, k standard deviations) of an anomaly alarm."""
        band = next(q for q in self.queries if q.id == self.threshold_metric_id)
        match = BAND.match(band.expression)
        return match.group(1), float(match.group(2) or 2)

    def return_query(self) -> MetricDataQuery:
        """The query whose values the alarm compares (ReturnData true; for an
        anomaly-detection alarm the one that is not the band)."""
        returned = [q for q in self.queries if q.return_data
                    and q.id != self.threshold_metric_id]
        if len(returned) != 1:
            raise ValueError(f"alarm {self.logical_id}: exactly one Metrics entry must have "
                             f"ReturnData true, got {[q.id for q in returned]}")
        return returned[0]


# --- template ------------------------------------------------------------------------------
def _number(value: Any, what: str, resolve: Callable[[Any], str]) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    text = value if isinstance(value, str) else resolve(value)
    try:
        return float(text)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None


def _text(value: Any, resolve: Callable[[Any], str]) -> str:
    return value if isinstance(value, str) else str(resolve(value))


def _dimensions(raw: Any, resolve: Callable[[Any], str], what: str) -> dict[str, str]:
    dims: dict[str, str] = {}
    for entry in raw or []:
        if not isinstance(entry, dict) or "Name" not in entry or "Value" not in entry:
            raise ValueError(f"{what}: a dimension needs Name and Value, got {entry!r}")
        dims[_text(entry["Name"], resolve)] = _text(entry["Value"], resolve)
    return dims


def _return_data(raw: Any) -> bool:
    if isinstance(raw, str):
        return raw.lower() != "false"
    return True if raw is None else bool(raw)


def alarms_from_template(template: Mapping[str, Any],
                         resolve: Callable[[Any], str] | None = None) -> list[AlarmDefinition]:
    """Every `AWS::CloudWatch::Alarm` of a synthesized template, in template order."""
    res = resolve or references.resolve
    alarms: list[AlarmDefinition] = []
    for logical_id, resource in (template.get("Resources") or {}).items():
        if not isinstance(resource, dict) or resource.get("Type") != "AWS::CloudWatch::Alarm":
            continue
        props = resource.get("Properties") or {}
        what = f"alarm {logical_id}"
        band_id = props.get("ThresholdMetricId")
        if band_id is not None and not props.get("Metrics"):
            raise ValueError(f"{what}: ThresholdMetricId needs a Metrics list")
        evaluation_periods = int(_number(props.get("EvaluationPeriods"),
                                         f"{what} EvaluationPeriods", res))
        datapoints = props.get("DatapointsToAlarm")
        metric: MetricQuery | None = None
        queries: list[MetricDataQuery] = []
        if props.get("Metrics"):
            for entry in props["Metrics"]:
                qid = _text(entry.get("Id", ""), res)
                stat = entry.get("MetricStat")
                query_metric = None
                if stat:
                    m = stat.get("Metric") or {}
                    query_metric = MetricQuery(
                        namespace=_text(m.get("Namespace", ""), res),
                        name=_text(m.get("MetricName", ""), res),
                        dimensions=_dimensions(m.get("Dimensions"), res, f"{what} {qid}"),
                        statistic=_text(stat.get("Stat", ""), res),
                        period_s=int(_number(stat.get("Period", entry.get("Period", 60)),
                                             f"{what} {qid} Period", res)))
                    parse_statistic(query_metric.statistic)
                expression = entry.get("Expression")
                if query_metric is None and expression is None:
                    raise ValueError(f"{what}: Metrics entry {qid!r} has neither MetricStat nor "
                                     "Expression")
                queries.append(MetricDataQuery(
                    id=qid, expression=None if expression is None else _text(expression, res),
                    metric=query_metric, return_data=_return_data(entry.get("ReturnData")),
                    label=entry.get("Label") if isinstance(entry.get("Label"), str) else None))
            returned = [q for q in queries if q.return_data and q.id != band_id]
            if len(returned) > 1:  # ReturnData defaults to true: keep the explicit one
                explicit = [q for q, e in zip(queries, props["Metrics"])
                            if q.return_data and "ReturnData" in e]
                returned = explicit if len(explicit) == 1 else returned
                queries = [q if any(q is r for r in returned) or q.id == band_id
                           else MetricDataQuery(q.id, q.expression, q.metric, False, q.label)
                           for q in queries]
            if len(queries) == 1 and queries[0].metric is not None and band_id is None:
                metric = queries[0].metric
            stat_periods = [q.metric.period_s for q in queries if q.metric is not None]
            ret = [q for q in queries if q.return_data and q.id != band_id]
            if ret and ret[0].metric is not None:
                period = ret[0].metric.period_s
            elif "Period" in props:
                period = int(_number(props["Period"], f"{what} Period", res))
            elif stat_periods:
                period = max(stat_periods)
            else:
                period = 60
        else:
            if "ExtendedStatistic" in props:
                statistic = _text(props["ExtendedStatistic"], res)
            elif "Statistic" in props:
                statistic = _text(props["Statistic"], res)
            else:
                raise ValueError(f"{what}: needs Statistic, ExtendedStatistic or Metrics")
            parse_statistic(statistic)
            period = int(_number(props.get("Period", 60), f"{what} Period", res))
            metric = MetricQuery(
                namespace=_text(props.get("Namespace", ""), res),
                name=_text(props.get("MetricName", ""), res),
                dimensions=_dimensions(props.get("Dimensions"), res, what),
                statistic=statistic, period_s=period)
        alarms.append(AlarmDefinition(
            logical_id=logical_id,
            name=_text(props.get("AlarmName", logical_id), res),
            description=_text(props.get("AlarmDescription", ""), res),
            metric=metric, queries=queries, period_s=period,
            threshold=0.0 if band_id is not None else _number(
                props.get("Threshold"), f"{what} Threshold", res),
            comparison=_text(props.get("ComparisonOperator", ""), res),
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=None if datapoints is None else int(
                _number(datapoints, f"{what} DatapointsToAlarm", res)),
            treat_missing_data=_text(props.get("TreatMissingData", "missing"), res),
            evaluate_low_sample_count_percentile=props.get("EvaluateLowSampleCountPercentile"),
            threshold_metric_id=None if band_id is None else _text(band_id, res)))
    return alarms


# --- composite alarms ----------------------------------------------------------------------
@dataclass(frozen=True)
class CompositeDefinition:
    """A composite alarm: `rule` is its AlarmRule with references resolved (an alarm's
    `Fn::GetAtt [Id, Arn]` reads "Id.Arn"); `children` the logical ids the rule names."""

    logical_id: str
    name: str
    rule: str
    description: str = ""

    @property
    def children(self) -> list[str]:
        return [ref.split(".")[0] for _, ref in RULE_TERM.findall(self.rule)]


def composites_from_template(template: Mapping[str, Any],
                             resolve: Callable[[Any], str] | None = None
                             ) -> list[CompositeDefinition]:
    """Every `AWS::CloudWatch::CompositeAlarm` of a template, in template order. The rule is
    resolved without deployed ids so children read as logical ids ("Id.Arn")."""
    res = resolve or references.resolve
    found = []
    for logical_id, resource in (template.get("Resources") or {}).items():
        if not isinstance(resource, dict) \
                or resource.get("Type") != "AWS::CloudWatch::CompositeAlarm":
            continue
        props = resource.get("Properties") or {}
        if "AlarmRule" not in props:
            raise ValueError(f"composite alarm {logical_id}: has no AlarmRule")
        found.append(CompositeDefinition(
            logical_id=logical_id,
            name=_text(props.get("AlarmName", logical_id), res),
            rule=references.resolve(props["AlarmRule"]),
            description=_text(props.get("AlarmDescription", ""), res)))
    return found
