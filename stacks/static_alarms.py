"""The fixed-threshold alarms, built through the monitoring facade (`MonitoringFacade`) so
each shares the alarm topic, the naming prefix and a place on the dashboard.

Per model (`add_model_alarms`): upstream 429s, the local throttle rate, quota used, p99
latency, the failure rate and the cost per hour, with thresholds from
`stacks.settings.AlarmSettings`. For the platform (`add_platform_alarms`): the agent
dead-letter queue not empty, Lambda errors and throttles, and the bucket table's own monitor.
Each alarm carries its `Monitoring.alarms` name in `custom_params[ALARM_KEY]`.
"""

from __future__ import annotations

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


def add_model_alarms(facade: MonitoringFacade, model_id: str, t: AlarmSettings) -> None:
    """The six alarms of one model (names "<Kind>/<model_id>") and their dashboard group."""
    gt = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
    ge = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD

    def m(name: str, statistic: str, period: Duration) -> cloudwatch.Metric:
        return metric(name, model_id, statistic, period)

    upstream_429 = CustomMetricWithAlarm(
        alarm_friendly_name="Upstream429",
        metric=m("Upstream429", "Sum", _ONE_MINUTE),
        add_alarm={"Critical": custom_threshold(
            f"Upstream429/{model_id}", 0, gt, 1, 1, _ONE_MINUTE,
            f"Claude returned HTTP 429 for {model_id}: the guard's contract is zero 429s. "
            "The configured limits exceed the real quota or another client shares it: "
            "lower rpm/itpm/otpm (tpm) for this model in cdk.json context to the quota "
            "shown in the provider console, or move the other client off this key.")})
    throttle_rate = CustomMetricWithAlarm(
        alarm_friendly_name="LocalThrottleRate",
        metric=rate(share("throttles", ["requests", "throttles"]),
                    {"throttles": m("LocalThrottles", "Sum", _FIVE_MINUTES),
                     "requests": m("Requests", "Sum", _FIVE_MINUTES)},
                    "Local throttle rate (%)", _FIVE_MINUTES),
        add_alarm={"Warning": custom_threshold(
            f"LocalThrottleRate/{model_id}", t.local_throttle_rate_percent, gt, 3, 3,
            _FIVE_MINUTES,
            f"More than {t.local_throttle_rate_percent}% of {model_id} calls waited on the "
            "local token bucket for 15 minutes: demand exceeds the quota. Check Deferred/"
            "Rejected on the dashboard; raise the provider quota (then the limits in "
            "cdk.json) or reduce callers / max_tokens.")})
    quota_used = CustomMetricWithAlarm(
        alarm_friendly_name="QuotaUsedPercent",
        metric=m("QuotaUsedPercent", "Maximum", _ONE_MINUTE),
        add_alarm={"Warning": custom_threshold(
            f"QuotaUsedPercent/{model_id}", t.quota_used_percent, ge, 5, 3, _ONE_MINUTE,
            f"The fullest {model_id} quota dimension was at or above "
            f"{t.quota_used_percent}% in 3 of the last 5 minutes: throttling is near. "
            "See tokens vs limits on the dashboard for which dimension; plan a quota "
            "increase or spread load.")})
    latency = CustomMetricWithAlarm(
        alarm_friendly_name="LatencyP99",
        metric=m("Latency", "p99", _FIVE_MINUTES),
        add_alarm={"Warning": custom_threshold(
            f"LatencyP99/{model_id}", t.latency_p99_ms, gt, 3, 3, _FIVE_MINUTES,
            f"p99 latency of {model_id} calls above {t.latency_p99_ms:.0f} ms for "
            "15 minutes. Check Upstream529 (provider overload) and RetryAfterSeconds; "
            "lower max_tokens or degrade to a smaller model if the provider is slow.",
            evaluate_low_sample_count_percentile=False)})
    failure_rate = CustomMetricWithAlarm(
        alarm_friendly_name="FailureRate",
        metric=rate(share("failed", ["succeeded", "failed"]),
                    {"failed": m("Failed", "Sum", _FIVE_MINUTES),
                     "succeeded": m("Succeeded", "Sum", _FIVE_MINUTES)},
                    "Failure rate (%)", _FIVE_MINUTES),
        add_alarm={"Critical": custom_threshold(
            f"FailureRate/{model_id}", t.failure_rate_percent, gt, 3, 2, _FIVE_MINUTES,
            f"More than {t.failure_rate_percent}% of {model_id} agent requests failed in 2 "
            "of the last 3 five-minute periods. Read the agent Lambda's logs for the "
            "error types (status \"error\") and the Upstream429/529 widgets.")})
    cost = CustomMetricWithAlarm(
        alarm_friendly_name="CostPerHour",
        metric=m("CostUSD", "Sum", _ONE_HOUR),
        add_alarm={"Warning": custom_threshold(
            f"CostPerHour/{model_id}", t.cost_per_hour_usd, gt, 1, 1, _ONE_HOUR,
            f"{model_id} spent more than {t.cost_per_hour_usd} USD in the last hour. "
            "Check Requests and tokens per request on the dashboard for a runaway caller "
            "or agent loop; lower limits or max_tokens, or raise cost_per_hour_usd if "
            "expected.")})
    facade.monitor_custom(
        alarm_friendly_name=model_id,
        human_readable_name=f"Bulwark alarms: {model_id}",
        metric_groups=[
            CustomMetricGroup(title="Upstream 429 (alarm: any)", metrics=[upstream_429]),
            CustomMetricGroup(title="Local throttle rate (%)", metrics=[throttle_rate]),
            CustomMetricGroup(title="Quota used (%), max", metrics=[quota_used]),
            CustomMetricGroup(title="Latency p99 (ms)", metrics=[latency]),
            CustomMetricGroup(title="Failure rate (%)", metrics=[failure_rate]),
            CustomMetricGroup(title="Cost per hour (USD)", metrics=[cost]),
        ])


def add_platform_alarms(facade: MonitoringFacade, function: aws_lambda.IFunction,
                        work_queue: sqs.IQueue, dead_letter_queue: sqs.IQueue,
                        bucket_table: dynamodb.ITable) -> None:
    """The work queue with its DLQ ("DeadLetterQueueNotEmpty"), the agent Lambda
    ("LambdaErrors", "LambdaThrottles") and the token bucket table (no alarm)."""
    missing = cloudwatch.TreatMissingData.NOT_BREACHING
    facade.monitor_sqs_queue_with_dlq(
        queue=work_queue, dead_letter_queue=dead_letter_queue,
        human_readable_name="Agent work queue", alarm_friendly_name="AgentQueue",
        add_dead_letter_queue_max_size_alarm={"Critical": MaxMessageCountThreshold(
            max_message_count=0, evaluation_periods=1, datapoints_to_alarm=1,
            period=_ONE_MINUTE, treat_missing_data_override=missing,
            custom_params={ALARM_KEY: "DeadLetterQueueNotEmpty"},
            alarm_description_override=(
                "Messages reached the agent dead-letter queue: requests the agent could "
                "not process after all retries (the guard never drops silently). Inspect "
                "the messages and the agent Lambda's logs, fix the cause, then redrive "
                "them to the work queue."))})
    facade.monitor_lambda_function(
        lambda_function=function, human_readable_name="Agent Lambda",
        alarm_friendly_name="AgentLambda",
        add_fault_count_alarm={"Critical": ErrorCountThreshold(
            max_error_count=0, evaluation_periods=1, datapoints_to_alarm=1,
            treat_missing_data_override=missing,
            custom_params={ALARM_KEY: "LambdaErrors"},
            alarm_description_override=(
                "The agent Lambda raised errors (the handler itself never raises, so this "
                "is a crash, timeout or out-of-memory). Read its logs in CloudWatch Logs "
                "for the request IDs and fix or raise timeout/memory."))},
        add_throttles_count_alarm={"Critical": ErrorCountThreshold(
            max_error_count=0, evaluation_periods=1, datapoints_to_alarm=1,
            treat_missing_data_override=missing,
            custom_params={ALARM_KEY: "LambdaThrottles"},
            alarm_description_override=(
                "Lambda throttled agent invocations (account or reserved concurrency "
                "reached). Raise reserved concurrency or the account limit, or let SQS "
                "absorb bursts."))})
    facade.monitor_dynamo_table(table=bucket_table, alarm_friendly_name="BucketTable",
                                human_readable_name="Token bucket table")
