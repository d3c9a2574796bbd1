"""Learned thresholds: one CloudWatch anomaly detector and one band alarm per model for each
seed metric (`stacks.settings.ANOMALY_METRICS`), and a dashboard graph of each with its band.

    bands = AnomalyBands(scope, "Bands", models=models, settings=alarm_settings.anomaly,
                         topic=alarm_topic, name_prefix="Bulwark-dev")
    bands.alarms    # "CostPerHourBand/<model>" -> Alarm, ...
    bands.widgets   # one row of band graphs per model

    tenant_bands = TenantBands(scope, "TenantBands", tenants=("acme",),
                               settings=alarm_settings.tenant_anomaly, topic=alarm_topic,
                               name_prefix="Bulwark-dev")   # "TenantCostPerHourBand/acme", ...

Each detector is an explicit `AWS::CloudWatch::AnomalyDetector` (a single-metric one for cost
per hour and latency p99, a metric-math one for the ratios), so it exists, trains and can be
inspected before any alarm fires; the alarm (`ThresholdMetricId`) compares the metric with
`ANOMALY_DETECTION_BAND(m0, band)` in the direction configured (above, below or outside).
CloudWatch trains the model on up to two weeks of the metric and needs about a day of data
before the band means much (docs/monitoring.md, "Thresholds that learn"). The static alarms of
`stacks.monitoring` stay as the hard ceiling: a band that learned a bad habit still cannot
rise past them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_sns as sns
from constructs import Construct

from agent.contract import ModelSpec

from .metrics import literal, metric, rate, share, tenant_metric
from .settings import ANOMALY_METRICS, TENANT_ANOMALY_METRICS, AnomalyBand

_FIVE_MINUTES = Duration.minutes(5)
_ONE_HOUR = Duration.hours(1)

#: Events (failures, 429s, throttles) a period needs before its rate counts; below, it reads 0.
#: Those rates are sparse: with a 0.3% failure rate and 20-100 requests per 5 minutes most
#: periods hold no failure and one failure reads 1-5%. A slot of the day whose fortnight held
#: no failure has a band of about 0 around 0, where one failure in each of 3 periods in a row
#: (about once a fortnight per model) would leave the band. Two events in a period are still
#: chance at that rate; three in each of 3 periods are not. Fewer events than this are the SLO
#: burn-rate alarms' to judge (they count every failure over their windows).
MIN_EVENTS = 3

#: band direction -> the alarm's comparison operator
COMPARISONS = {
    "above": cloudwatch.ComparisonOperator.GREATER_THAN_UPPER_THRESHOLD,
    "below": cloudwatch.ComparisonOperator.LESS_THAN_LOWER_THRESHOLD,
    "outside": cloudwatch.ComparisonOperator.LESS_THAN_LOWER_OR_GREATER_THAN_UPPER_THRESHOLD,
}


def event_share(part: str, whole: list[str], min_events: int = MIN_EVENTS) -> str:
    """`share(part, whole)` (percent) when the period holds at least `min_events` of `part`,
    else 0 (see MIN_EVENTS)."""
    return f"IF(FILL({part}, 0) >= {min_events}, {share(part, whole)}, 0)"


@dataclass(frozen=True)
class SeedMetric:
    """One banded metric: its alarm name stem, title, what to do when it leaves the band,
    the evaluation (M of N periods) and how to build it for a model."""

    key: str
    kind: str
    title: str
    action: str
    period: Duration
    periods: int
    datapoints: int

    def build(self, model_id: str) -> cloudwatch.IMetric:
        """The metric of one model (dimension Model)."""
        return self.build_from(lambda name, statistic, period, label=None: metric(
            name, model_id, statistic, period, label))

    def build_for_tenant(self, tenant: str) -> cloudwatch.IMetric:
        """The metric of one tenant (dimension Tenant only, every model together)."""
        return self.build_from(lambda name, statistic, period, label=None: tenant_metric(
            name, tenant, statistic, period, label))

    def build_from(self, of: Callable[..., cloudwatch.Metric]) -> cloudwatch.IMetric:
        """The metric from `of(name, statistic, period, label=None)`, the factory of the
        dimension it is read under."""
        p = self.period

        def m(name: str, statistic: str = "Sum") -> cloudwatch.Metric:
            return of(name, statistic, p)

        if self.key == "cost_per_hour":
            return of("CostUSD", "Sum", p, "Cost per hour (USD)")
        if self.key == "latency_p99":
            return of("Latency", "p99", p, "Latency p99 (ms)")
        if self.key == "cost_per_success":
            return rate("usd / succeeded", {"usd": m("CostUSD"), "succeeded": m("Succeeded")},
                        "Cost per success (USD)", p)
        if self.key == "failure_rate":
            return rate(event_share("failed", ["succeeded", "failed"]),
                        {"failed": m("Failed"), "succeeded": m("Succeeded")},
                        "Failure rate (%)", p)
        if self.key == "upstream_429_rate":
            return rate(event_share("upstream429", ["requests"]),
                        {"upstream429": m("Upstream429"), "requests": m("Requests")},
                        "Upstream 429 rate (% of requests)", p)
        if self.key == "local_throttle_rate":
            return rate(event_share("throttles", ["requests", "throttles"]),
                        {"throttles": m("LocalThrottles"), "requests": m("Requests")},
                        "Local throttle rate (%)", p)
        raise KeyError(f"no seed metric {self.key!r}")  # pragma: no cover - SEEDS is fixed


SEEDS: dict[str, SeedMetric] = {s.key: s for s in (
    SeedMetric("cost_per_hour", "CostPerHourBand", "Cost per hour (USD)",
               "Spend left its usual band for this hour of the day. Look at Requests and "
               "tokens per request for a runaway caller or agent loop; if it is a tenant, "
               "lower its weight; if it is expected growth, the band follows within days.",
               _ONE_HOUR, 1, 1),
    SeedMetric("cost_per_success", "CostPerSuccessBand", "Cost per success (USD)",
               "Each successful request costs more than usual: longer prompts, larger "
               "max_tokens, lost prompt caching (see the cache-read share) or retries that "
               "spend without succeeding. Compare input/output tokens per request.",
               _FIVE_MINUTES, 3, 3),
    SeedMetric("failure_rate", "FailureRateBand", "Failure rate (%)",
               "More requests fail than usual for this time of day. Read the agent's logs "
               "for the error types and the Upstream429/529 widgets; the SLO burn-rate "
               "alarms say how fast the error budget goes.",
               _FIVE_MINUTES, 3, 3),
    SeedMetric("upstream_429_rate", "Upstream429RateBand", "Upstream 429 rate (%)",
               "Claude refuses more requests than usual: another client shares the quota or "
               "the configured limits exceed the real quota. Lower the model's limits in "
               "cdk.json to the provider console's quota, or move that client off the key.",
               _FIVE_MINUTES, 3, 3),
    SeedMetric("local_throttle_rate", "LocalThrottleRateBand", "Local throttle rate (%)",
               "The guard refuses more acquires than usual: demand grew past the quota. "
               "Move background work to the batch lane, lower a tenant's weight, or raise "
               "the tier or the Bedrock quota (then the limits in cdk.json).",
               _FIVE_MINUTES, 3, 3),
    SeedMetric("latency_p99", "LatencyP99Band", "Latency p99 (ms)",
               "Calls take longer than usual for this time of day: check Upstream529 "
               "(provider overload), RetryAfterSeconds and booked waits; lower max_tokens or "
               "degrade to a smaller model while the provider is slow.",
               _FIVE_MINUTES, 3, 3),
)}
assert set(SEEDS) == set(ANOMALY_METRICS), "every configurable band has a seed metric"
assert set(TENANT_ANOMALY_METRICS) <= set(SEEDS), "every tenant band has a seed metric"


def _refuse_unknown(owner: str, settings: Mapping[str, AnomalyBand],
                    known: Mapping[str, object]) -> None:
    """ValueError naming the metrics of `settings` that `owner` has no band for."""
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise ValueError(f"{owner}: unknown metrics {unknown} (known: {', '.join(known)})")


def _detector(scope: Construct, id: str,
              seed: cloudwatch.IMetric) -> cloudwatch.CfnAnomalyDetector:
    """The explicit detector of `seed`: single-metric for a plain metric, metric math for an
    expression (its queries as the alarm writes them: the expression as "m0")."""
    config = seed.to_metric_config()
    if config.metric_stat is not None:
        stat = config.metric_stat
        return cloudwatch.CfnAnomalyDetector(
            scope, id, single_metric_anomaly_detector=cloudwatch.CfnAnomalyDetector.
            SingleMetricAnomalyDetectorProperty(
                namespace=stat.namespace, metric_name=stat.metric_name, stat=stat.statistic,
                dimensions=[cloudwatch.CfnAnomalyDetector.DimensionProperty(
                    name=d.name, value=d.value) for d in stat.dimensions or []]))
    math = config.math_expression
    queries = [cloudwatch.CfnAnomalyDetector.MetricDataQueryProperty(
        id="m0", expression=math.expression, return_data=True)]
    for qid, used in math.using_metrics.items():
        stat = used.to_metric_config().metric_stat
        queries.append(cloudwatch.CfnAnomalyDetector.MetricDataQueryProperty(
            id=qid, return_data=False, metric_stat=cloudwatch.CfnAnomalyDetector.
            MetricStatProperty(
                period=int(stat.period.to_seconds()), stat=stat.statistic,
                metric=cloudwatch.CfnAnomalyDetector.MetricProperty(
                    namespace=stat.namespace, metric_name=stat.metric_name,
                    dimensions=[cloudwatch.CfnAnomalyDetector.DimensionProperty(
                        name=d.name, value=d.value) for d in stat.dimensions or []]))))
    return cloudwatch.CfnAnomalyDetector(
        scope, id, metric_math_anomaly_detector=cloudwatch.CfnAnomalyDetector.
        MetricMathAnomalyDetectorProperty(metric_data_queries=queries))


class AnomalyBands(Construct):
    """Per model and seed metric: an anomaly detector, a band alarm to `topic`, a band graph.

    `alarms` maps "<Kind>/<model_id>" (e.g. "FailureRateBand/claude-sonnet-4-6") to the alarm,
    named "<name_prefix>-<Kind>-<model_id>-Warning"; `detectors` maps the same keys to the
    `CfnAnomalyDetector`; `widgets` holds one row of graphs per model.
    """

    def __init__(self, scope: Construct, id: str, *, models: list[ModelSpec],
                 settings: dict[str, AnomalyBand], topic: sns.ITopic,
                 name_prefix: str) -> None:
        super().__init__(scope, id)
        _refuse_unknown("AnomalyBands", settings, SEEDS)
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        self.detectors: dict[str, cloudwatch.CfnAnomalyDetector] = {}
        self.widgets: list[cloudwatch.IWidget] = [cloudwatch.TextWidget(
            markdown="### Learned bands (anomaly detection; the grey band is the expected "
                     "range for this time of day)", width=24, height=1)]
        action = cw_actions.SnsAction(topic)
        for index, model in enumerate(models):
            graphs = []
            for key, seed in SEEDS.items():
                band = settings.get(key, AnomalyBand())
                name = f"{seed.kind}/{model.model_id}"
                detector, alarm, graph = banded(
                    self, f"{seed.kind}{index}", seed, seed.build(model.model_id), band,
                    subject=model.model_id,
                    alarm_name=f"{name_prefix}-{seed.kind}-{model.model_id}-Warning",
                    action=action)
                self.detectors[name], self.alarms[name] = detector, alarm
                graphs.append(graph)
            self.widgets += [cloudwatch.Row(*graphs[i:i + 3]) for i in range(0, len(graphs), 3)]


def banded(scope: Construct, id: str, seed: SeedMetric, built: cloudwatch.IMetric,
           band: AnomalyBand, *, subject: str, alarm_name: str,
           action: cloudwatch.IAlarmAction, what_to_do: str | None = None
           ) -> tuple[cloudwatch.CfnAnomalyDetector, cloudwatch.Alarm, cloudwatch.GraphWidget]:
    """The detector of `built`, its band alarm (to `action`) and its graph with the band, for
    `subject` (a model or "tenant <name>"); `what_to_do` replaces the seed's advice."""
    detector = _detector(scope, f"{id}Detector", built)
    alarm = cloudwatch.AnomalyDetectionAlarm(
        scope, f"{id}Alarm", metric=built, std_devs=band.band,
        comparison_operator=COMPARISONS[band.direction],
        evaluation_periods=seed.periods, datapoints_to_alarm=seed.datapoints,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        alarm_name=alarm_name,
        alarm_description=(
            f"{seed.title} of {subject} is {band.direction} its learned band "
            f"({band.band:g} standard deviations) in {seed.datapoints} of {seed.periods} "
            f"periods of {seed.period.to_minutes():g} min. {what_to_do or seed.action}"))
    alarm.node.add_dependency(detector)
    alarm.add_alarm_action(action)
    graph = cloudwatch.GraphWidget(
        title=f"{seed.title} and its band: {subject}", width=8, height=5,
        left=[built, cloudwatch.MathExpression(
            expression=f"ANOMALY_DETECTION_BAND(m0, {literal(band.band)})",
            using_metrics={"m0": built}, period=seed.period,
            label=f"expected ({band.band:g} sd)")],
        left_y_axis=cloudwatch.YAxisProps(min=0, show_units=False))
    return detector, alarm, graph


#: what to do when a tenant's metric leaves its band (the model-wide advice names tenants)
TENANT_ACTIONS = {
    "cost_per_hour":
        "The tenant spends more than usual for this hour of the day: a runaway agent loop or "
        "a new workload. Read its requests in the audit (python -m cli.audit --tenant "
        "<tenant>); if it loops, the runaway breaker holds it to its baseline (see the "
        "RunawayThrottled alarm); if it is wanted, raise its budget or weight: the band "
        "learns the new level within days.",
    "cost_per_success":
        "Each of the tenant's successful requests costs more than usual: longer prompts, "
        "larger max_tokens, lost prompt caching or retries that spend without succeeding. "
        "Compare its tokens per request in the audit (python -m cli.audit --tenant "
        "<tenant>) with the days before; if every tenant shows it, the model's band will too.",
    "failure_rate":
        "More of the tenant's requests fail than usual while other tenants may be fine: its "
        "prompts, tools or permissions. Read its errors in the audit (python -m cli.audit "
        "--tenant <tenant>) and the agent's logs; the SLO alarms say whether every tenant "
        "is hit.",
    "local_throttle_rate":
        "The guard refuses more of the tenant's acquires than usual: its demand grew past "
        "its share or cap. If the growth is wanted, raise its weight or cap (tenants.<name> "
        "in cdk.json) or move its background work to the batch lane; if not, look for a "
        "loop in its requests.",
    "upstream_429_rate":
        "Claude refuses more of the tenant's requests than usual: its bursts pass the guard "
        "but not the provider, or another client shares the quota. Read its requests in the "
        "audit (python -m cli.audit --tenant <tenant>); if every tenant shows it, lower the "
        "model's limits in cdk.json to the real quota; if only this one, lower its weight "
        "or cap (tenants.<name> in cdk.json).",
    "latency_p99":
        "The tenant's calls take longer than usual for this time of day: larger prompts or "
        "max_tokens, longer tool loops, or waits for capacity (its TenantWait alarm). Read "
        "its requests in the audit (python -m cli.audit --tenant <tenant>); if every tenant "
        "shows it, the provider is slow (Upstream529, the model's latency band).",
}
assert set(TENANT_ACTIONS) == set(TENANT_ANOMALY_METRICS)


class TenantBands(Construct):
    """Per configured tenant (a bounded set) and each metric of `settings` (keyed as
    `stacks.settings.TENANT_ANOMALY_METRICS`): a detector, a band alarm to `topic` and a band
    graph, on the per-tenant metrics (dimension Tenant only).

    `alarms` maps "Tenant<Kind>/<tenant>" (e.g. "TenantCostPerHourBand/acme") to the alarm,
    named "<name_prefix>-Tenant<Kind>-<tenant>-Warning"; `detectors` the same keys to the
    detectors; `widgets` holds one row of graphs per tenant.
    """

    def __init__(self, scope: Construct, id: str, *, tenants: tuple[str, ...] | list[str],
                 settings: Mapping[str, AnomalyBand], topic: sns.ITopic,
                 name_prefix: str) -> None:
        super().__init__(scope, id)
        _refuse_unknown("TenantBands", settings, TENANT_ANOMALY_METRICS)
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        self.detectors: dict[str, cloudwatch.CfnAnomalyDetector] = {}
        self.widgets: list[cloudwatch.IWidget] = []
        action = cw_actions.SnsAction(topic)
        for index, tenant in enumerate(tenants):
            graphs = []
            for key, band in settings.items():
                seed = SEEDS[key]
                name = f"Tenant{seed.kind}/{tenant}"
                detector, alarm, graph = banded(
                    self, f"{seed.kind}{index}", seed, seed.build_for_tenant(tenant), band,
                    subject=f"tenant {tenant}",
                    alarm_name=f"{name_prefix}-Tenant{seed.kind}-{tenant}-Warning",
                    action=action, what_to_do=TENANT_ACTIONS[key].replace("<tenant>", tenant))
                self.detectors[name], self.alarms[name] = detector, alarm
                graphs.append(graph)
            self.widgets += [cloudwatch.Row(*graphs[i:i + 3]) for i in range(0, len(graphs), 3)]
