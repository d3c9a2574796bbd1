"""Who got the capacity: a dashboard row per tenant and class, and an alarm per tenant when its
interactive wait for capacity (p99) exceeds its target; per tenant too, the learned bands on
its cost per hour, cost per success, failure rate, upstream 429 rate, local throttle rate and
latency p99 (`stacks.anomaly.TenantBands`, the models' seed metrics) and the alarm on the
runaway breaker's `RunawayThrottled`.

Reads the tenant metrics the agent emits (`agent.contract.CAPACITY_METRICS`, dimensions Tenant and
Priority; `TENANT_METRICS` and `RUNAWAY_METRIC`, dimension Tenant; configured tenants only, so
the number of alarms is bounded) and adds to an existing dashboard and alarm topic: the
Monitoring construct owns both.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_sns as sns
from constructs import Construct

from collections.abc import Mapping

from agent.contract import NAMESPACE, CAPACITY_DIMENSIONS, RUNAWAY_METRIC
from guard.fair import PRIORITIES

from .anomaly import TenantBands
from .metrics import tenant_metric
from .settings import AnomalyBand

#: The interactive wait target (seconds) when none is given: the agent's default deadline, so
#: the alarm fires when a tenant's calls at p99 wait as long as they may wait at all.
DEFAULT_WAIT_TARGET_S = 20.0
#: the wait alarm's period (the p99 over it) and how many periods in a row must breach
WAIT_PERIOD = Duration.minutes(5)
WAIT_EVALUATION_PERIODS = 3
#: the runaway alarm's period: the breaker acts within a minute or two, the page follows
RUNAWAY_PERIOD = Duration.minutes(1)


class TenantMonitoring(Construct):
    """`tenants`: the configured tenant names; `wait_target_s` (seconds): an interactive call's
    wait for capacity the tenant is promised at p99 (by default the agent's deadline).
    `dashboard` and `alarm_topic`: the Monitoring construct's; `registry`: its `alarms`, so
    every alarm of the stack is listed there ("TenantWait/<tenant>", "RunawayThrottled/<tenant>"
    and the bands' "Tenant<Kind>/<tenant>"). `bands`: band width and direction per metric of
    `stacks.settings.TENANT_ANOMALY_METRICS` (None: no tenant bands). Attributes: `alarms`
    (tenant -> its wait alarm), `runaway_alarms` (tenant -> its RunawayThrottled alarm),
    `bands` (the TenantBands, or None), `widgets` (the first row added)."""

    def __init__(self, scope: Construct, id: str, *, tenants: tuple[str, ...] | list[str],
                 dashboard: cloudwatch.Dashboard, alarm_topic: sns.ITopic,
                 alarm_name_prefix: str,
                 wait_target_s: float = DEFAULT_WAIT_TARGET_S,
                 registry: dict[str, cloudwatch.Alarm] | None = None,
                 bands: Mapping[str, AnomalyBand] | None = None) -> None:
        super().__init__(scope, id)
        if not tenants:
            raise ValueError("TenantMonitoring needs at least one tenant")
        if not isinstance(wait_target_s, (int, float)) or isinstance(wait_target_s, bool) \
                or not wait_target_s > 0:
            raise ValueError(f"wait_target_s must be a positive number of seconds, got "
                             f"{wait_target_s!r}")
        def metric(name: str, tenant: str, priority: str, statistic: str,
                   labelled: bool = True) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace=NAMESPACE, metric_name=name, statistic=statistic,
                dimensions_map=dict(zip(CAPACITY_DIMENSIONS, (tenant, priority))),
                period=Duration.minutes(1),
                label=f"{tenant} {priority}" if labelled else None)

        answers = cloudwatch.GraphWidget(
            title="Who got the capacity: answers per tenant and class", stacked=True,
            width=8, left=[metric("TenantAnswers", t, p, "Sum") for t in tenants
                           for p in PRIORITIES])
        waits = cloudwatch.GraphWidget(
            title="Wait for capacity p99 per tenant (s)", width=8,
            left=[metric("TenantWaitSeconds", t, p, "p99") for t in tenants for p in PRIORITIES],
            left_annotations=[cloudwatch.HorizontalAnnotation(
                value=wait_target_s, label="interactive wait target")])
        deferred = cloudwatch.GraphWidget(
            title="Deferred per tenant and class", stacked=True, width=8,
            left=[metric("TenantDeferred", t, p, "Sum") for t in tenants for p in PRIORITIES])
        self.widgets = [answers, waits, deferred]
        dashboard.add_widgets(cloudwatch.TextWidget(
            markdown="## Who got the capacity (tenants and classes)", width=24, height=1),
            cloudwatch.Row(*self.widgets))

        self.alarms: dict[str, cloudwatch.Alarm] = {}
        for tenant in tenants:
            wait = metric("TenantWaitSeconds", tenant, "interactive", "p99",
                          labelled=False).with_(period=WAIT_PERIOD)
            alarm = cloudwatch.Alarm(
                self, f"Wait{len(self.alarms)}", metric=wait, threshold=wait_target_s,
                alarm_name=f"{alarm_name_prefix}-TenantWait-{tenant}-Warning",
                evaluation_periods=WAIT_EVALUATION_PERIODS,
                datapoints_to_alarm=WAIT_EVALUATION_PERIODS,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                alarm_description=(
                    f"Tenant {tenant}: interactive calls waited more than {wait_target_s:g} s "
                    f"for capacity (p99) for {WAIT_EVALUATION_PERIODS} periods: its share is "
                    "too small for its demand (weights, caps) or the quota is too small."))
            alarm.add_alarm_action(cw_actions.SnsAction(alarm_topic))
            self.alarms[tenant] = alarm
            if registry is not None:
                registry[f"TenantWait/{tenant}"] = alarm
        self._runaway(tenants, dashboard, alarm_topic, alarm_name_prefix, registry)
        self.bands = None
        if bands:
            self.bands = TenantBands(self, "Bands", tenants=tenants, settings=bands,
                                     topic=alarm_topic, name_prefix=alarm_name_prefix)
            dashboard.add_widgets(cloudwatch.TextWidget(
                markdown="### Learned bands per tenant (anomaly detection; the grey band is "
                         "the tenant's expected range for this time of day)",
                width=24, height=1), *self.bands.widgets)
            if registry is not None:
                registry.update(self.bands.alarms)

    def _runaway(self, tenants: tuple[str, ...] | list[str], dashboard: cloudwatch.Dashboard,
                 topic: sns.ITopic, prefix: str,
                 registry: dict[str, cloudwatch.Alarm] | None) -> None:
        """Per tenant: an alarm when the runaway breaker held any call in a minute
        (RunawayThrottled Sum >= 1), and one graph of every tenant's held calls."""
        self.runaway_alarms: dict[str, cloudwatch.Alarm] = {}
        for tenant in tenants:
            alarm = cloudwatch.Alarm(
                self, f"Runaway{len(self.runaway_alarms)}",
                metric=tenant_metric(RUNAWAY_METRIC, tenant, "Sum", RUNAWAY_PERIOD),
                threshold=1, evaluation_periods=1, datapoints_to_alarm=1,
                comparison_operator=cloudwatch.ComparisonOperator.
                GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                alarm_name=f"{prefix}-{RUNAWAY_METRIC}-{tenant}-Warning",
                alarm_description=(
                    f"Tenant {tenant} spends at many times its own trailing baseline (the "
                    "same hour on the last days): the runaway breaker holds its calls to that "
                    "baseline, so spend is contained and the other tenants are unaffected. "
                    "Find out why: the breaker's audit line names the rate and the baseline; "
                    f"python -m cli.audit --tenant {tenant} shows its requests (an agent loop "
                    "repeats the same tool calls). Fix the caller, or, for wanted growth, "
                    "clear the breaker for the tenant with python -m cli.limits; the breaker "
                    "also lets go when the rate falls back."))
            alarm.add_alarm_action(cw_actions.SnsAction(topic))
            self.runaway_alarms[tenant] = alarm
            if registry is not None:
                registry[f"{RUNAWAY_METRIC}/{tenant}"] = alarm
        dashboard.add_widgets(cloudwatch.GraphWidget(
            title="Runaway breaker: calls held to the tenant's baseline", stacked=True,
            width=24, height=4,
            left=[tenant_metric(RUNAWAY_METRIC, t, "Sum", RUNAWAY_PERIOD, label=t)
                  for t in tenants]))
