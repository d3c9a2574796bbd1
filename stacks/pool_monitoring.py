"""Capacity pools on the dashboard and their breaker alarms: for each model served by pools
(`ModelSpec.pools`), a row "Where the traffic went" (requests and cost per pool, per 5 min),
a row of each pool's breaker state and 529s (per minute), and one alarm per pool,
"PoolBreakerOpen/<model_id>/<pool>", when its breaker stays open for
POOL_BREAKER_ALARM_MINUTES minutes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions

from agent.contract import ModelSpec

from .metrics import pool_metric

if TYPE_CHECKING:
    from .monitoring import Monitoring

#: A pool's breaker alarm fires when every call of this many consecutive minutes found the
#: breaker open (the router then sends that pool only its half-open probes).
POOL_BREAKER_ALARM_MINUTES = 5

_ONE_MINUTE = Duration.minutes(1)
_FIVE_MINUTES = Duration.minutes(5)


def per_pool(model_id: str, pools: list[str], name: str, statistic: str, period: Duration,
             label: str) -> list[cloudwatch.Metric]:
    """Metric `name` of each of the model's `pools`, labelled "<label> <pool>"."""
    return [pool_metric(name, model_id, pool, statistic, period, f"{label} {pool}")
            for pool in pools]


def add_pool_rows(monitoring: "Monitoring", models: list[ModelSpec]) -> None:
    """The pools' rows on `monitoring`'s dashboard and their alarms in `monitoring.alarms`
    (to its alarm topic); nothing when no model has pools."""
    pooled = [m for m in models if getattr(m, "pools", ())]
    if not pooled:
        return
    monitoring.facade.add_large_header("Capacity pools: where the traffic went")
    axis = {"min": 0, "show_units": False}
    for number, m in enumerate(pooled):
        names = [p.name for p in m.pools]
        monitoring.facade.add_widget(cloudwatch.GraphWidget(
            title=f"Where the traffic went: {m.model_id}", width=12, height=6,
            left=per_pool(m.model_id, names, "Requests", "Sum", _FIVE_MINUTES, "Requests"),
            right=per_pool(m.model_id, names, "CostUSD", "Sum", _FIVE_MINUTES, "USD"),
            left_y_axis=cloudwatch.YAxisProps(label="requests per 5 min", **axis),
            right_y_axis=cloudwatch.YAxisProps(label="USD per 5 min", **axis)))
        monitoring.facade.add_widget(cloudwatch.GraphWidget(
            title=f"Pool breakers (1 = open) and 529s: {m.model_id}", width=12, height=6,
            left=per_pool(m.model_id, names, "PoolBreakerOpen", "Maximum", _ONE_MINUTE,
                          "Breaker open"),
            right=per_pool(m.model_id, names, "Upstream529", "Sum", _ONE_MINUTE, "529s"),
            left_y_axis=cloudwatch.YAxisProps(label="breaker open", max=1, **axis),
            right_y_axis=cloudwatch.YAxisProps(label="529s per minute", **axis)))
        for index, pool in enumerate(names):
            key = f"PoolBreakerOpen/{m.model_id}/{pool}"
            alarm = cloudwatch.Alarm(
                monitoring, f"PoolBreakerOpen{number}Pool{index}Alarm",
                metric=pool_metric("PoolBreakerOpen", m.model_id, pool, "Minimum",
                                   _ONE_MINUTE),
                threshold=1, evaluation_periods=POOL_BREAKER_ALARM_MINUTES,
                datapoints_to_alarm=POOL_BREAKER_ALARM_MINUTES,
                comparison_operator=cloudwatch.ComparisonOperator
                .GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                alarm_name=f"{monitoring.alarm_name_prefix}-PoolBreakerOpen-{m.model_id}-"
                           f"{pool}-Warning",
                alarm_description=(
                    f"The circuit breaker of pool {pool} of {m.model_id} has been open for "
                    f"{POOL_BREAKER_ALARM_MINUTES} minutes: it answers 529s, 5xx or "
                    "timeouts, or its region is down; traffic goes to the model's other "
                    "pools. Check the pool's provider status and its Upstream529 row."))
            alarm.add_alarm_action(cw_actions.SnsAction(monitoring.alarm_topic))
            monitoring.alarms[key] = alarm
