"""The agent's metrics and metric math as CDK objects: the one place the monitoring constructs
(`stacks.monitoring`, `stacks.anomaly`, `stacks.slo`, `stacks.forecast`) build them from.

Metric names come from `agent.contract.METRICS` (namespace `Bulwark`, dimension `Model`): a
name the Lambda does not emit is a KeyError at synth, never a silent empty graph.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch

from agent.contract import (DIMENSION, METRICS, MONTH_DAYS_LEFT_METRIC, NAMESPACE,
                            POOL_DIMENSION, POOL_METRICS, RUNAWAY_METRIC, TENANT_DIMENSION,
                            TENANT_METRICS, TENANT_ONLY_METRICS, ModelSpec)

#: the metrics emitted with dimension Tenant (configured tenants only)
PER_TENANT = frozenset({*TENANT_METRICS, *TENANT_ONLY_METRICS, RUNAWAY_METRIC,
                        MONTH_DAYS_LEFT_METRIC})


def metric(name: str, model_id: str, statistic: str, period: Duration,
           label: str | None = None) -> cloudwatch.Metric:
    """One of the agent's metrics for one model (KeyError for a name the Lambda does not emit)."""
    if name not in METRICS:
        raise KeyError(f"{name} is not a metric of agent.contract.METRICS")
    return cloudwatch.Metric(namespace=NAMESPACE, metric_name=name,
                             dimensions_map={DIMENSION: model_id}, statistic=statistic,
                             period=period, label=label or name)


def pool_metric(name: str, model_id: str, pool: str, statistic: str, period: Duration,
                label: str | None = None) -> cloudwatch.Metric:
    """One metric of one capacity pool of a model (dimensions Model and Pool; KeyError for a
    name the Lambda does not emit per pool)."""
    if name not in POOL_METRICS:
        raise KeyError(f"{name} is not a metric of agent.contract.POOL_METRICS")
    return cloudwatch.Metric(namespace=NAMESPACE, metric_name=name,
                             dimensions_map={DIMENSION: model_id, POOL_DIMENSION: pool},
                             statistic=statistic, period=period, label=label)


def tenant_metric(name: str, tenant: str, statistic: str, period: Duration,
                  label: str | None = None, **dimensions: str) -> cloudwatch.Metric:
    """A per-tenant metric (dimension Tenant, plus `dimensions`; KeyError for a name not
    emitted per tenant). Without `label` an alarm on it keeps the plain MetricName form."""
    if name not in PER_TENANT:
        raise KeyError(f"{name} is not emitted per tenant (agent.contract.TENANT_METRICS, "
                       "TENANT_ONLY_METRICS, RUNAWAY_METRIC, MONTH_DAYS_LEFT_METRIC)")
    return cloudwatch.Metric(namespace=NAMESPACE, metric_name=name, statistic=statistic,
                             period=period, label=label,
                             dimensions_map={TENANT_DIMENSION: tenant, **dimensions})


def per_model(models: list[ModelSpec], name: str, statistic: str,
              period: Duration) -> list[cloudwatch.Metric]:
    """One metric for each model, labelled "<name> <model_id>"."""
    return [metric(name, m.model_id, statistic, period, f"{name} {m.model_id}")
            for m in models]


def rate(expression: str, using: dict[str, cloudwatch.IMetric], label: str,
         period: Duration) -> cloudwatch.MathExpression:
    """A metric-math expression over `using` (ids -> metrics) at `period`."""
    return cloudwatch.MathExpression(expression=expression, using_metrics=using, label=label,
                                     period=period)


def share(part: str, whole: list[str]) -> str:
    """`100 * part / sum(whole)` with missing datapoints as 0 and no division by zero."""
    total = " + ".join(f"FILL({m}, 0)" for m in whole)
    return f"IF(({total}) > 0, 100 * FILL({part}, 0) / ({total}), 0)"


def literal(value: float) -> str:
    """A number as metric math reads it: plain decimal, never exponent notation (2000000, not
    2e+06: CDK and CloudWatch would read the "e" as a metric id)."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.6f}".rstrip("0").rstrip(".")
