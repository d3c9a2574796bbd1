"""The fixed-threshold alarms, built through the monitoring facade (`MonitoringFacade`) so
each shares the alarm topic, the naming prefix and a place on the dashboard.

Per model (`add_model_alarms`, one `AlarmSpec` each from `model_alarm_specs`): upstream 429s,
the local throttle rate, quota used, p99 latency, the failure rate and the cost per hour, with
thresholds from `stacks.settings.AlarmSettings`. For the platform (`add_platform_alarms`): the agent
dead-letter queue not empty, Lambda errors and throttles, and the bucket table's own monitor.
Each alarm carries its `Monitoring.alarms` name in `custom_params[ALARM_KEY]`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda
from aws_cdk import aws_sqs as sqs
from cdk_monitoring_constructs import (
    CustomMetricGroup,
    CustomMetricWithAlarm,
    CustomThreshold,
    ErrorCountThreshold,
    MaxMessageCountThreshold,
    MonitoringFacade,
)

from .metrics import metric, rate, share
from .settings import AlarmSettings

ALARM_KEY = "bulwark_alarm"  # custom_params key naming each alarm in `Monitoring.alarms`

_ONE_MINUTE = Duration.minutes(1)
_FIVE_MINUTES = Duration.minutes(5)
_ONE_HOUR = Duration.hours(1)


def custom_threshold(name: str, threshold: float, operator: cloudwatch.ComparisonOperator,
                     periods: int, datapoints: int, period: Duration, description: str,
                     **extra) -> CustomThreshold:
    """A facade threshold named `name` in `Monitoring.alarms`: `datapoints` of `periods`
    periods (each `period` long) past `threshold`; missing data is not breaching."""
    return CustomThreshold(
        threshold=threshold, comparison_operator=operator, evaluation_periods=periods,
        datapoints_to_alarm=datapoints, period=period,
        treat_missing_data_override=cloudwatch.TreatMissingData.NOT_BREACHING,
        alarm_description_override=description, custom_params={ALARM_KEY: name}, **extra)


@dataclass(frozen=True, kw_only=True)
class AlarmSpec:
    """One fixed-threshold alarm on a model's metric and its dashboard group.

    Named "<name>/<model_id>" in `Monitoring.alarms` and `<stack>-<model_id>-<name>-<severity>`
    when deployed; `docs_row` is the name its row has in docs/operations.md, "Alarms and what
    to do". It alarms when `datapoints` of the last `periods` periods (each `period` long, the
    metric's own) compare past `threshold` by `comparison`; `extra` are further
    `CustomThreshold` arguments."""

    name: str
    severity: str  # "Critical" or "Warning"
    title: str  # the dashboard group's title
    metric: cloudwatch.IMetric
    threshold: float
    comparison: cloudwatch.ComparisonOperator
    periods: int
    datapoints: int
    period: Duration
    description: str
    extra: Mapping[str, object] = field(default_factory=dict)

    @property
    def docs_row(self) -> str:
        return f"<model>-{self.name}-{self.severity}"

    def custom_metric(self, model_id: str) -> CustomMetricWithAlarm:
        """The facade's metric with this alarm, for the model `model_id`."""
        return CustomMetricWithAlarm(
            alarm_friendly_name=self.name, metric=self.metric,
            add_alarm={self.severity: custom_threshold(
                f"{self.name}/{model_id}", self.threshold, self.comparison, self.periods,
                self.datapoints, self.period, self.description, **self.extra)})


def model_alarm_specs(model_id: str, t: AlarmSettings) -> tuple[AlarmSpec, ...]:
    """The six alarms of one model, thresholds from `t`, in dashboard order."""
    gt = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
    ge = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD

    def m(name: str, statistic: str, period: Duration) -> cloudwatch.Metric:
        return metric(name, model_id, statistic, period)

    def percent(part: tuple[str, str], other: tuple[str, str], label: str) -> cloudwatch.IMetric:
        """`part` as a share (%) of `part` + `other`, Sums over five minutes; each a
        (metric-math id, metric name) pair."""
        (part_id, part_name), (other_id, other_name) = part, other
        return rate(share(part_id, [other_id, part_id]),
                    {part_id: m(part_name, "Sum", _FIVE_MINUTES),
                     other_id: m(other_name, "Sum", _FIVE_MINUTES)}, label, _FIVE_MINUTES)

    return (
        AlarmSpec(
            name="Upstream429", severity="Critical", title="Upstream 429 (alarm: any)",
            metric=m("Upstream429", "Sum", _ONE_MINUTE), period=_ONE_MINUTE,
            threshold=0, comparison=gt, periods=1, datapoints=1,
            description=f"Claude returned HTTP 429 for {model_id}: the guard's contract is zero "
            "429s. The configured limits exceed the real quota or another client shares it: "
            "lower rpm/itpm/otpm (tpm) for this model in cdk.json context to the quota "
            "shown in the provider console, or move the other client off this key."),
        AlarmSpec(
            name="LocalThrottleRate", severity="Warning", title="Local throttle rate (%)",
            metric=percent(("throttles", "LocalThrottles"), ("requests", "Requests"),
                           "Local throttle rate (%)"), period=_FIVE_MINUTES,
            threshold=t.local_throttle_rate_percent, comparison=gt, periods=3, datapoints=3,
            description=f"More than {t.local_throttle_rate_percent}% of {model_id} calls "
            "waited on the local token bucket for 15 minutes: demand exceeds the quota. Check "
            "Deferred/Rejected on the dashboard; raise the provider quota (then the limits in "
            "cdk.json) or reduce callers / max_tokens."),
        AlarmSpec(
            name="QuotaUsedPercent", severity="Warning", title="Quota used (%), max",
            metric=m("QuotaUsedPercent", "Maximum", _ONE_MINUTE), period=_ONE_MINUTE,
            threshold=t.quota_used_percent, comparison=ge, periods=5, datapoints=3,
            description=f"The fullest {model_id} quota dimension was at or above "
            f"{t.quota_used_percent}% in 3 of the last 5 minutes: throttling is near. "
            "See tokens vs limits on the dashboard for which dimension; plan a quota "
            "increase or spread load."),
        AlarmSpec(
            name="LatencyP99", severity="Warning", title="Latency p99 (ms)",
            metric=m("Latency", "p99", _FIVE_MINUTES), period=_FIVE_MINUTES,
            threshold=t.latency_p99_ms, comparison=gt, periods=3, datapoints=3,
            description=f"p99 latency of {model_id} calls above {t.latency_p99_ms:.0f} ms for "
            "15 minutes. Check Upstream529 (provider overload) and RetryAfterSeconds; "
            "lower max_tokens or degrade to a smaller model if the provider is slow.",
            extra={"evaluate_low_sample_count_percentile": False}),
        AlarmSpec(
            name="FailureRate", severity="Critical", title="Failure rate (%)",
            metric=percent(("failed", "Failed"), ("succeeded", "Succeeded"),
                           "Failure rate (%)"), period=_FIVE_MINUTES,
            threshold=t.failure_rate_percent, comparison=gt, periods=3, datapoints=2,
            description=f"More than {t.failure_rate_percent}% of {model_id} agent requests "
            "failed in 2 of the last 3 five-minute periods. Read the agent Lambda's logs for "
            "the error types (status \"error\") and the Upstream429/529 widgets."),
        AlarmSpec(
            name="CostPerHour", severity="Warning", title="Cost per hour (USD)",
            metric=m("CostUSD", "Sum", _ONE_HOUR), period=_ONE_HOUR,
            threshold=t.cost_per_hour_usd, comparison=gt, periods=1, datapoints=1,
            description=f"{model_id} spent more than {t.cost_per_hour_usd} USD in the last "
            "hour. Check Requests and tokens per request on the dashboard for a runaway "
            "caller or agent loop; lower limits or max_tokens, or raise cost_per_hour_usd if "
            "expected."),
    )


def add_model_alarms(facade: MonitoringFacade, model_id: str, t: AlarmSettings) -> None:
    """The six alarms of one model (`model_alarm_specs`) and their dashboard group."""
    facade.monitor_custom(
        alarm_friendly_name=model_id,
        human_readable_name=f"Bulwark alarms: {model_id}",
        metric_groups=[CustomMetricGroup(title=spec.title, metrics=[spec.custom_metric(model_id)])
                       for spec in model_alarm_specs(model_id, t)])


def _on_any(threshold: type, name: str, description: str, **count) -> dict[str, object]:
    """A "Critical" facade alarm of the `threshold` kind (a count threshold such as
    `ErrorCountThreshold`, its limit in `count`) that fires on one period past the limit, named
    `name` in `Monitoring.alarms`; missing data is not breaching."""
    return {"Critical": threshold(
        **count, evaluation_periods=1, datapoints_to_alarm=1,
        treat_missing_data_override=cloudwatch.TreatMissingData.NOT_BREACHING,
        custom_params={ALARM_KEY: name}, alarm_description_override=description)}


def add_platform_alarms(facade: MonitoringFacade, function: aws_lambda.IFunction,
                        work_queue: sqs.IQueue, dead_letter_queue: sqs.IQueue,
                        bucket_table: dynamodb.ITable) -> None:
    """The work queue with its DLQ ("DeadLetterQueueNotEmpty"), the agent Lambda
    ("LambdaErrors", "LambdaThrottles") and the token bucket table (no alarm)."""
    facade.monitor_sqs_queue_with_dlq(
        queue=work_queue, dead_letter_queue=dead_letter_queue,
        human_readable_name="Agent work queue", alarm_friendly_name="AgentQueue",
        add_dead_letter_queue_max_size_alarm=_on_any(
            MaxMessageCountThreshold, "DeadLetterQueueNotEmpty",
            "Messages reached the agent dead-letter queue: requests the agent could "
            "not process after all retries (the guard never drops silently). Inspect "
            "the messages and the agent Lambda's logs, fix the cause, then redrive "
            "them to the work queue.", max_message_count=0, period=_ONE_MINUTE))
    facade.monitor_lambda_function(
        lambda_function=function, human_readable_name="Agent Lambda",
        alarm_friendly_name="AgentLambda",
        add_fault_count_alarm=_on_any(
            ErrorCountThreshold, "LambdaErrors",
            "The agent Lambda raised errors (the handler itself never raises, so this "
            "is a crash, timeout or out-of-memory). Read its logs in CloudWatch Logs "
            "for the request IDs and fix or raise timeout/memory.", max_error_count=0),
        add_throttles_count_alarm=_on_any(
            ErrorCountThreshold, "LambdaThrottles",
            "Lambda throttled agent invocations (account or reserved concurrency "
            "reached). Raise reserved concurrency or the account limit, or let SQS "
            "absorb bursts.", max_error_count=0))
    facade.monitor_dynamo_table(table=bucket_table, alarm_friendly_name="BucketTable",
                                human_readable_name="Token bucket table")
