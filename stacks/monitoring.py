"""Monitoring construct: alarms on the agent's metrics and one dashboard, alarms to a KMS-encrypted topic.

Alarms and widgets use exactly the metric names the agent Lambda emits as EMF (one home,
`agent.contract`: namespace `Bulwark`, single dimension `Model`). Models and thresholds come
in as the settings' own types (`agent.contract.ModelSpec`, `stacks.settings.AlarmSettings`).
Alarms are built through cdk-monitoring-constructs (`MonitoringFacade`) so every one of them
shares the SNS action, the naming prefix and a place on the dashboard; the overview widgets
that need two axes and quota annotations are plain CloudWatch `GraphWidget`s added to the same
dashboard. The few alarms outside the facade's monitors (batch lane, AccessDenied) are kept in
`alarms` too and notify the same topic. The thresholds that learn (anomaly bands, the quota
forecast, SLO burn rates) are constructs of their own (`stacks.anomaly`, `stacks.forecast`,
`stacks.slo`) composed here with the same topic, name prefix and dashboard.
"""

from __future__ import annotations

import re

from aws_cdk import RemovalPolicy, Annotations, Duration, Stack, Token
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from cdk_monitoring_constructs import (
    AlarmFactoryDefaults,
    CustomMetricGroup,
    CustomMetricWithAlarm,
    CustomThreshold,
    DefaultDashboardFactory,
    ErrorCountThreshold,
    MaxMessageCountThreshold,
    MetricFactoryDefaults,
    MonitoringFacade,
    SnsAlarmActionStrategy,
)
from constructs import Construct

# DIMENSION and NAMESPACE are re-exported: callers read the dashboard's metric identity here
from agent.contract import DIMENSION, NAMESPACE, ModelSpec  # noqa: F401
from guard.client import MAX_GRANT_AGE_S

from .anomaly import AnomalyBands
from .forecast import QuotaForecast
from .metrics import metric as _metric
from .metrics import per_model as _per_model
from .metrics import pool_metric
from .metrics import rate as _rate
from .metrics import share as _share
from .settings import AlarmSettings
from .slo import SuccessSlo

ALARM_KEY = "bulwark_alarm"  # custom_params key naming each alarm in `Monitoring.alarms`

_ONE_MINUTE = Duration.minutes(1)
_FIVE_MINUTES = Duration.minutes(5)
_ONE_HOUR = Duration.hours(1)
_TEN_SECONDS = Duration.seconds(10)
_STAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
#: A pool's breaker alarm fires when every call of this many consecutive minutes found the
#: breaker open (the router then sends that pool only its half-open probes).
POOL_BREAKER_ALARM_MINUTES = 5


class Monitoring(Construct):
    """Alarms on the agent's metrics (to a KMS-encrypted SNS topic) and the Bulwark dashboard.

    Attributes: `alarm_topic` (sns.Topic), `key` (the topic's kms.IKey), `facade`
    (MonitoringFacade), `dashboard` (cloudwatch.Dashboard) and `alarms` (name -> Alarm), where
    names are "<Kind>/<model_id>" for per-model alarms and "DeadLetterQueueNotEmpty",
    "LambdaErrors", "LambdaThrottles" for the rest; `add_batch_lane` adds "Batch..." names and
    `add_access_denied_alarm` "AccessDenied". The thresholds that learn add
    "<Kind>Band/<model_id>" (`stacks.anomaly`), "QuotaForecast/<model_id>"
    (`stacks.forecast`), the composite "SloFastBurn/<lane>/<model_id>" and
    "SloSlowBurn/<lane>/<model_id>" and their windows "SloFastBurnLong/<lane>/<model_id>",
    ...Short/... (`stacks.slo`); `bands`, `forecast` and `slo` are those constructs.
    """

    def __init__(self, scope: Construct, id: str, *, stage: str,
                 function: aws_lambda.IFunction, work_queue: sqs.IQueue,
                 dead_letter_queue: sqs.IQueue, bucket_table: dynamodb.ITable,
                 models: list[ModelSpec], alarm_settings: AlarmSettings,
                 key: kms.IKey | None = None) -> None:
        super().__init__(scope, id)
        if not isinstance(stage, str) or not _STAGE.match(stage):
            raise ValueError(f"Monitoring stage must be 1-32 chars of [A-Za-z0-9_-], got {stage!r}")
        if not models:
            raise ValueError("Monitoring needs at least one ModelSpec in models")
        model_ids = [m.model_id for m in models]
        if len(set(model_ids)) != len(model_ids):
            raise ValueError(f"Monitoring models repeat a model_id: {model_ids}")
        stack = Stack.of(self)
        if Token.is_unresolved(stack.stack_name):
            raise ValueError("Monitoring needs a concrete stack name to derive dashboard and "
                             "alarm names")
        # the stack name already carries the stage ("Bulwark-dev"); add it only when it does not
        prefix = stack.stack_name if stack.stack_name.endswith(f"-{stage}") \
            else f"{stack.stack_name}-{stage}"
        self._alarm_name_prefix = prefix
        self.alarm_settings = alarm_settings

        # --- alarm topic, encrypted ---------------------------------------------------------
        self.key = key or kms.Key(self, "AlarmTopicKey", enable_key_rotation=True,
                                  description=f"Encrypts the {prefix} Bulwark alarm topic",
                                  removal_policy=RemovalPolicy.RETAIN if stage == "prod"
                                  else RemovalPolicy.DESTROY)
        added = self.key.add_to_resource_policy(iam.PolicyStatement(
            sid="AllowCloudWatchAlarmsToUseKey",
            principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            actions=["kms:Decrypt", "kms:GenerateDataKey*"],
            resources=["*"],  # in a key policy "*" means this key
            # aws:SourceAccount prevents the confused deputy: only this account's alarms.
            conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
        ))
        if not added.statement_added:  # an imported key's policy is managed where it is defined
            Annotations.of(self).add_warning_v2(
                "bulwark:AlarmKeyPolicy",
                "The alarm topic's KMS key is imported: its key policy must allow "
                "cloudwatch.amazonaws.com kms:Decrypt and kms:GenerateDataKey* (condition "
                "aws:SourceAccount), or alarm notifications are silently dropped.")
        self.alarm_topic = sns.Topic(self, "AlarmTopic", master_key=self.key, enforce_ssl=True,
                                     display_name=f"Bulwark alarms ({stage})")
        self.alarm_topic.add_to_resource_policy(iam.PolicyStatement(
            sid="AllowCloudWatchAlarmsToPublish",
            principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            actions=["sns:Publish"],
            resources=[self.alarm_topic.topic_arn],
            # aws:SourceAccount prevents the confused deputy: only this account's alarms.
            conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
        ))
        if alarm_settings.email:
            self.alarm_topic.add_subscription(
                subscriptions.EmailSubscription(alarm_settings.email))

        # --- facade: one dashboard, every alarm's action is the topic -------------------------
        dashboards = DefaultDashboardFactory(
            self, "Dashboards", dashboard_name_prefix=prefix, create_dashboard=True,
            create_summary_dashboard=False, create_alarm_dashboard=False)
        self.facade = MonitoringFacade(
            self, "Facade",
            alarm_factory_defaults=AlarmFactoryDefaults(
                actions_enabled=True, alarm_name_prefix=prefix,
                action=SnsAlarmActionStrategy(on_alarm_topic=self.alarm_topic),
                datapoints_to_alarm=1, evaluation_periods=1),
            metric_factory_defaults=MetricFactoryDefaults(period=_FIVE_MINUTES),
            dashboard_factory=dashboards)
        self.dashboard: cloudwatch.Dashboard = dashboards.dashboard
        #: the dashboard's name as a plain string (the stack's outputs link to it)
        self.dashboard_name = prefix

        self.facade.add_large_header(f"Bulwark {stage}: {stack.stack_name}")
        for widget in self._overview_widgets(models):
            self.facade.add_widget(widget)
        for widget in self._high_resolution_row(models):
            self.facade.add_widget(widget)
        self.facade.add_widget(self._batch_widget(models))  # the batch lane
        for model in models:
            self._model_alarms(model.model_id, alarm_settings)
        self._platform_alarms(function, work_queue, dead_letter_queue, bucket_table)

        self.alarms: dict[str, cloudwatch.AlarmBase] = {}
        for created in self.facade.created_alarms():
            self.alarms[created.custom_params[ALARM_KEY]] = created.alarm
        self._pools(models)
        self._learned_thresholds(models, alarm_settings, bucket_table)

    # --- capacity pools: where the traffic went, and breakers that stay open ----------------
    def _pools(self, models: list[ModelSpec]) -> None:
        """Per model with pools (`ModelSpec.pools`): a row "Where the traffic went" (requests
        and cost per pool, per 5 min), a row of each pool's breaker state and 529s, and one
        alarm per pool, "PoolBreakerOpen/<model_id>/<pool>", when its breaker stays open for
        POOL_BREAKER_ALARM_MINUTES minutes."""
        pooled = [m for m in models if getattr(m, "pools", ())]
        if not pooled:
            return
        self.facade.add_large_header("Capacity pools: where the traffic went")
        axis = {"min": 0, "show_units": False}
        for number, m in enumerate(pooled):
            names = [p.name for p in m.pools]

            def each(name: str, statistic: str, period: Duration, label: str) -> list:
                return [pool_metric(name, m.model_id, pool, statistic, period,
                                    f"{label} {pool}") for pool in names]

            self.facade.add_widget(cloudwatch.GraphWidget(
                title=f"Where the traffic went: {m.model_id}", width=12, height=6,
                left=each("Requests", "Sum", _FIVE_MINUTES, "Requests"),
                right=each("CostUSD", "Sum", _FIVE_MINUTES, "USD"),
                left_y_axis=cloudwatch.YAxisProps(label="requests per 5 min", **axis),
                right_y_axis=cloudwatch.YAxisProps(label="USD per 5 min", **axis)))
            self.facade.add_widget(cloudwatch.GraphWidget(
                title=f"Pool breakers (1 = open) and 529s: {m.model_id}", width=12, height=6,
                left=each("PoolBreakerOpen", "Maximum", _ONE_MINUTE, "Breaker open"),
                right=each("Upstream529", "Sum", _ONE_MINUTE, "529s"),
                left_y_axis=cloudwatch.YAxisProps(label="breaker open", max=1, **axis),
                right_y_axis=cloudwatch.YAxisProps(label="529s per minute", **axis)))
            for index, pool in enumerate(names):
                key = f"PoolBreakerOpen/{m.model_id}/{pool}"
                alarm = cloudwatch.Alarm(
                    self, f"PoolBreakerOpen{number}Pool{index}Alarm",
                    metric=pool_metric("PoolBreakerOpen", m.model_id, pool, "Minimum",
                                       _ONE_MINUTE),
                    threshold=1, evaluation_periods=POOL_BREAKER_ALARM_MINUTES,
                    datapoints_to_alarm=POOL_BREAKER_ALARM_MINUTES,
                    comparison_operator=cloudwatch.ComparisonOperator
                    .GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                    treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                    alarm_name=f"{self._alarm_name_prefix}-PoolBreakerOpen-{m.model_id}-"
                               f"{pool}-Warning",
                    alarm_description=(
                        f"The circuit breaker of pool {pool} of {m.model_id} has been open for "
                        f"{POOL_BREAKER_ALARM_MINUTES} minutes: it answers 529s, 5xx or "
                        "timeouts, or its region is down; traffic goes to the model's other "
                        "pools. Check the pool's provider status and its Upstream529 row."))
                alarm.add_alarm_action(cw_actions.SnsAction(self.alarm_topic))
                self.alarms[key] = alarm

    # --- thresholds that learn: bands, forecast, SLO burn rates, hot keys -------------------
    def _learned_thresholds(self, models: list[ModelSpec], t: AlarmSettings,
                            bucket_table: dynamodb.ITable) -> None:
        """Anomaly bands (`stacks.anomaly`), the quota forecast (`stacks.forecast`) and the
        interactive lane's SLO burn rates (`stacks.slo`; `add_batch_lane` adds the batch
        lane's), their graphs on the dashboard, and Contributor Insights on the bucket table.
        Their alarms join `alarms` under the keys each construct documents."""
        common = {"topic": self.alarm_topic, "name_prefix": self._alarm_name_prefix}
        self.bands = AnomalyBands(self, "Bands", models=models, settings=t.anomaly, **common)
        self.forecast = QuotaForecast(self, "Forecast", models=models, settings=t.forecast,
                                      **common)
        self.slo = SuccessSlo(self, "Slo", settings=t.slo, **common)
        for m in models:
            self.slo.add_lane(
                "interactive", m.model_id,
                good={"succeeded": _metric("Succeeded", m.model_id, "Sum", _FIVE_MINUTES)},
                bad={"failed": _metric("Failed", m.model_id, "Sum", _FIVE_MINUTES)})
        self.facade.add_large_header("Thresholds that learn")
        for widget in [*self.forecast.widgets, *self.slo.widgets, *self.bands.widgets]:
            self.facade.add_widget(widget)
        for construct in (self.bands, self.forecast, self.slo):
            self.alarms.update(construct.alarms)
        self.alarms.update(self.slo.windows)  # no actions: the composites above notify
        self._contributor_insights(bucket_table, t.contributor_insights)

    def _contributor_insights(self, table: dynamodb.ITable, mode: str) -> None:
        """CloudWatch Contributor Insights on the bucket table: which bucket items (models,
        tenants) take the writes or the throttles. Cost: $0.50 per rule per month (2 rules:
        the table has a partition key only) plus $0.03 per million events the rules match;
        throttled_keys matches only throttled requests (about nothing in normal operation),
        accessed_and_throttled_keys every acquire and settle (about 2 events per request)."""
        if mode == "off":
            return
        resource = table.node.default_child
        if not isinstance(resource, dynamodb.CfnTable):
            Annotations.of(self).add_warning_v2(
                "bulwark:ContributorInsights",
                "The bucket table is imported: enable Contributor Insights where it is defined.")
            return
        resource.contributor_insights_specification = \
            dynamodb.CfnTable.ContributorInsightsSpecificationProperty(
                enabled=True, mode=mode.upper())

    # --- alarms ---------------------------------------------------------------------------
    @staticmethod
    def _threshold(name: str, threshold: float, operator: cloudwatch.ComparisonOperator,
                   periods: int, datapoints: int, period: Duration, description: str,
                   **extra) -> CustomThreshold:
        return CustomThreshold(
            threshold=threshold, comparison_operator=operator, evaluation_periods=periods,
            datapoints_to_alarm=datapoints, period=period,
            treat_missing_data_override=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description_override=description, custom_params={ALARM_KEY: name}, **extra)

    def _model_alarms(self, model_id: str, t: AlarmSettings) -> None:
        gt = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
        ge = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD

        def m(name: str, statistic: str, period: Duration) -> cloudwatch.Metric:
            return _metric(name, model_id, statistic, period)

        upstream_429 = CustomMetricWithAlarm(
            alarm_friendly_name="Upstream429",
            metric=m("Upstream429", "Sum", _ONE_MINUTE),
            add_alarm={"Critical": self._threshold(
                f"Upstream429/{model_id}", 0, gt, 1, 1, _ONE_MINUTE,
                f"Claude returned HTTP 429 for {model_id}: the guard's contract is zero 429s. "
                "The configured limits exceed the real quota or another client shares it: "
                "lower rpm/itpm/otpm (tpm) for this model in cdk.json context to the quota "
                "shown in the provider console, or move the other client off this key.")})
        throttle_rate = CustomMetricWithAlarm(
            alarm_friendly_name="LocalThrottleRate",
            metric=_rate(_share("throttles", ["requests", "throttles"]),
                         {"throttles": m("LocalThrottles", "Sum", _FIVE_MINUTES),
                          "requests": m("Requests", "Sum", _FIVE_MINUTES)},
                         "Local throttle rate (%)", _FIVE_MINUTES),
            add_alarm={"Warning": self._threshold(
                f"LocalThrottleRate/{model_id}", t.local_throttle_rate_percent, gt, 3, 3,
                _FIVE_MINUTES,
                f"More than {t.local_throttle_rate_percent}% of {model_id} calls waited on the "
                "local token bucket for 15 minutes: demand exceeds the quota. Check Deferred/"
                "Rejected on the dashboard; raise the provider quota (then the limits in "
                "cdk.json) or reduce callers / max_tokens.")})
        quota_used = CustomMetricWithAlarm(
            alarm_friendly_name="QuotaUsedPercent",
            metric=m("QuotaUsedPercent", "Maximum", _ONE_MINUTE),
            add_alarm={"Warning": self._threshold(
                f"QuotaUsedPercent/{model_id}", t.quota_used_percent, ge, 5, 3, _ONE_MINUTE,
                f"The fullest {model_id} quota dimension was at or above "
                f"{t.quota_used_percent}% in 3 of the last 5 minutes: throttling is near. "
                "See tokens vs limits on the dashboard for which dimension; plan a quota "
                "increase or spread load.")})
        latency = CustomMetricWithAlarm(
            alarm_friendly_name="LatencyP99",
            metric=m("Latency", "p99", _FIVE_MINUTES),
            add_alarm={"Warning": self._threshold(
                f"LatencyP99/{model_id}", t.latency_p99_ms, gt, 3, 3, _FIVE_MINUTES,
                f"p99 latency of {model_id} calls above {t.latency_p99_ms:.0f} ms for "
                "15 minutes. Check Upstream529 (provider overload) and RetryAfterSeconds; "
                "lower max_tokens or degrade to a smaller model if the provider is slow.",
                evaluate_low_sample_count_percentile=False)})
        failure_rate = CustomMetricWithAlarm(
            alarm_friendly_name="FailureRate",
            metric=_rate(_share("failed", ["succeeded", "failed"]),
                         {"failed": m("Failed", "Sum", _FIVE_MINUTES),
                          "succeeded": m("Succeeded", "Sum", _FIVE_MINUTES)},
                         "Failure rate (%)", _FIVE_MINUTES),
            add_alarm={"Critical": self._threshold(
                f"FailureRate/{model_id}", t.failure_rate_percent, gt, 3, 2, _FIVE_MINUTES,
                f"More than {t.failure_rate_percent}% of {model_id} agent requests failed in 2 "
                "of the last 3 five-minute periods. Read the agent Lambda's logs for the "
                "error types (status \"error\") and the Upstream429/529 widgets.")})
        cost = CustomMetricWithAlarm(
            alarm_friendly_name="CostPerHour",
            metric=m("CostUSD", "Sum", _ONE_HOUR),
            add_alarm={"Warning": self._threshold(
                f"CostPerHour/{model_id}", t.cost_per_hour_usd, gt, 1, 1, _ONE_HOUR,
                f"{model_id} spent more than {t.cost_per_hour_usd} USD in the last hour. "
                "Check Requests and tokens per request on the dashboard for a runaway caller "
                "or agent loop; lower limits or max_tokens, or raise cost_per_hour_usd if "
                "expected.")})
        self.facade.monitor_custom(
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

    def _platform_alarms(self, function: aws_lambda.IFunction, work_queue: sqs.IQueue,
                         dead_letter_queue: sqs.IQueue, bucket_table: dynamodb.ITable) -> None:
        missing = cloudwatch.TreatMissingData.NOT_BREACHING
        self.facade.monitor_sqs_queue_with_dlq(
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
        self.facade.monitor_lambda_function(
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
        self.facade.monitor_dynamo_table(table=bucket_table, alarm_friendly_name="BucketTable",
                                         human_readable_name="Token bucket table")

    # --- dashboard overview ---------------------------------------------------------------
    def _overview_widgets(self, models: list[ModelSpec]) -> list[cloudwatch.IWidget]:
        def per_model(name: str, stat: str = "Sum", period: Duration = _ONE_MINUTE):
            return _per_model(models, name, stat, period)

        def graph(title: str, left, width: int = 12, **kw) -> cloudwatch.GraphWidget:
            return cloudwatch.GraphWidget(title=title, left=left, width=width, height=6, **kw)

        widgets: list[cloudwatch.IWidget] = [
            graph("Requests (per minute)",
                  per_model("Requests") + per_model("Succeeded") + per_model("Failed")
                  + per_model("DeadLettered")),
            graph("Throttles (per minute)",
                  per_model("LocalThrottles") + per_model("Deferred") + per_model("Degraded")
                  + per_model("Rejected"),
                  right=per_model("RetryAfterSeconds", "Maximum"),
                  right_y_axis=cloudwatch.YAxisProps(label="retry-after s", show_units=False)),
        ]
        for m in models:
            widgets.append(self._limits_widget(m))
        widgets += [
            graph("Upstream 429 / 529 (per minute)",
                  per_model("Upstream429") + per_model("Upstream529")),
            graph("Latency p50 / p99 (ms)",
                  per_model("Latency", "p50", _FIVE_MINUTES)
                  + per_model("Latency", "p99", _FIVE_MINUTES)),
            graph("Booked wait (s) and grant to send (ms), worst per request",
                  per_model("GrantToSendMs", "Maximum"),
                  right=per_model("QueueSeconds", "Maximum"),
                  right_y_axis=cloudwatch.YAxisProps(label="booked wait s", show_units=False),
                  left_annotations=[cloudwatch.HorizontalAnnotation(
                      value=MAX_GRANT_AGE_S * 1000, label="max_grant_age_s",
                      color=cloudwatch.Color.ORANGE)]),
        ]
        cost, cache = [], []
        for i, m in enumerate(models):  # math ids must be unique within one graph
            usd = _metric("CostUSD", m.model_id, "Sum", _FIVE_MINUTES)
            requests = _metric("Requests", m.model_id, "Sum", _FIVE_MINUTES)
            succeeded = _metric("Succeeded", m.model_id, "Sum", _FIVE_MINUTES)
            cost += [
                _rate(f"usd{i} / requests{i}", {f"usd{i}": usd, f"requests{i}": requests},
                      f"USD per request {m.model_id}", _FIVE_MINUTES),
                _rate(f"usd{i} / succeeded{i}", {f"usd{i}": usd, f"succeeded{i}": succeeded},
                      f"USD per success {m.model_id}", _FIVE_MINUTES),
            ]
            cache.append(_rate(
                _share(f"cacheread{i}", [f"input{i}", f"cacheread{i}", f"cachewrite{i}"]),
                {f"cacheread{i}": _metric("CacheReadTokens", m.model_id, "Sum", _FIVE_MINUTES),
                 f"input{i}": _metric("InputTokens", m.model_id, "Sum", _FIVE_MINUTES),
                 f"cachewrite{i}": _metric("CacheWriteTokens", m.model_id, "Sum",
                                           _FIVE_MINUTES)},
                f"Cache-read share % {m.model_id}", _FIVE_MINUTES))
        widgets += [
            graph("Cost per request / per success (USD)", cost,
                  right=per_model("CostUSD", "Sum", _FIVE_MINUTES),
                  right_y_axis=cloudwatch.YAxisProps(label="USD per 5 min", show_units=False)),
            graph("Cache-read share (% of prompt tokens)", cache,
                  left_y_axis=cloudwatch.YAxisProps(min=0, max=100, label="%",
                                                    show_units=False)),
            graph("Quota used (%, fullest dimension at acquire)",
                  per_model("QuotaUsedPercent", "Maximum"),
                  left_y_axis=cloudwatch.YAxisProps(min=0, max=100, label="%",
                                                    show_units=False),
                  left_annotations=[cloudwatch.HorizontalAnnotation(
                      value=self.alarm_settings.quota_used_percent, label="alarm",
                      color=cloudwatch.Color.ORANGE)]),
        ]
        return widgets

    @staticmethod
    def _limits_widget(m: ModelSpec) -> cloudwatch.GraphWidget:
        """Tokens and requests per minute against the configured per-minute limits."""
        limits = m.limits

        def per_minute(name: str) -> cloudwatch.Metric:
            return _metric(name, m.model_id, "Sum", _ONE_MINUTE)

        tokens: list[cloudwatch.IMetric] = [
            _metric("InputTokens", m.model_id, "Sum", _ONE_MINUTE, "InputTokens/min"),
            _metric("OutputTokens", m.model_id, "Sum", _ONE_MINUTE, "OutputTokens/min"),
        ]
        annotations = []
        if limits.itpm is not None:
            # ITPM charges input + cache-creation tokens (cache reads only for some models).
            tokens.append(_rate(
                "FILL(input, 0) + FILL(cachewrite, 0)",
                {"input": per_minute("InputTokens"), "cachewrite": per_minute("CacheWriteTokens")},
                "Input+CacheWrite tokens/min (ITPM basis)", _ONE_MINUTE))
            annotations.append(cloudwatch.HorizontalAnnotation(
                value=limits.itpm, label=f"ITPM limit {limits.itpm:,.0f}",
                color=cloudwatch.Color.RED))
        if limits.otpm is not None:
            annotations.append(cloudwatch.HorizontalAnnotation(
                value=limits.otpm, label=f"OTPM limit {limits.otpm:,.0f}",
                color=cloudwatch.Color.ORANGE))
        if limits.tpm is not None:
            # Bedrock TPM charges input + cache write + output (output x burndown at settle).
            tokens.append(_rate(
                "FILL(input, 0) + FILL(cachewrite, 0) + FILL(output, 0)",
                {"input": per_minute("InputTokens"), "cachewrite": per_minute("CacheWriteTokens"),
                 "output": per_minute("OutputTokens")},
                "Input+CacheWrite+Output tokens/min (TPM basis, before burndown)", _ONE_MINUTE))
            annotations.append(cloudwatch.HorizontalAnnotation(
                value=limits.tpm, label=f"TPM limit {limits.tpm:,.0f}", color=cloudwatch.Color.RED))
        right_annotations = []
        if limits.rpm is not None:
            right_annotations.append(cloudwatch.HorizontalAnnotation(
                value=limits.rpm, label=f"RPM limit {limits.rpm:,.0f}",
                color=cloudwatch.Color.PURPLE))
        return cloudwatch.GraphWidget(
            title=f"Tokens vs limits: {m.model_id}", width=12, height=6,
            left=tokens, left_annotations=annotations,
            left_y_axis=cloudwatch.YAxisProps(label="tokens/min", min=0, show_units=False),
            right=[_metric("Requests", m.model_id, "Sum", _ONE_MINUTE, "Requests/min")],
            right_annotations=right_annotations,
            right_y_axis=cloudwatch.YAxisProps(label="requests/min", min=0, show_units=False))

    @staticmethod
    def _high_resolution_row(models: list[ModelSpec]) -> list[cloudwatch.IWidget]:
        """Rate limits over the last 15 minutes at 10 s (high-resolution metrics,
        `agent.contract.HIGH_RESOLUTION`). The limit lines are what the bucket enforces in
        10 s: its refill, limit / 6 (a full bucket admits up to one minute's limit more)."""
        def ten_s(name: str, model_id: str, stat: str = "Sum") -> cloudwatch.Metric:
            return _metric(name, model_id, stat, _TEN_SECONDS, f"{name} {model_id}")

        def graph(title: str, left, **kw) -> cloudwatch.GraphWidget:
            return cloudwatch.GraphWidget(title=f"{title}, last 15 min (10 s)", left=left,
                                          width=8, height=6, period=_TEN_SECONDS,
                                          start="-PT15M", **kw)

        def refill(value: float | None, what: str, color: str):
            if value is None:
                return []
            return [cloudwatch.HorizontalAnnotation(
                value=value / 6, color=color,
                label=f"{what} {value:,.0f}/min: refill {value / 6:,.1f} per 10 s")]

        widgets: list[cloudwatch.IWidget] = [cloudwatch.TextWidget(
            markdown="### Rate limits, last 15 minutes (10 s, high resolution)", width=24,
            height=1)]
        for m in models:
            limits = m.limits
            tokens = [_rate("FILL(input, 0) + FILL(cachewrite, 0)",
                            {"input": ten_s("InputTokens", m.model_id),
                             "cachewrite": ten_s("CacheWriteTokens", m.model_id)},
                            f"Input+CacheWrite tokens {m.model_id}", _TEN_SECONDS),
                      ten_s("OutputTokens", m.model_id)]
            widgets.append(cloudwatch.Row(
                graph(f"Requests: {m.model_id}", [ten_s("Requests", m.model_id)],
                      left_annotations=refill(limits.rpm, "RPM", cloudwatch.Color.PURPLE),
                      left_y_axis=cloudwatch.YAxisProps(label="per 10 s", min=0,
                                                        show_units=False)),
                graph(f"Tokens: {m.model_id}", tokens,
                      left_annotations=refill(limits.itpm or limits.tpm,
                                              "ITPM" if limits.itpm else "TPM",
                                              cloudwatch.Color.RED)
                      + refill(limits.otpm, "OTPM", cloudwatch.Color.ORANGE),
                      left_y_axis=cloudwatch.YAxisProps(label="tokens per 10 s", min=0,
                                                        show_units=False)),
                graph(f"Throttles, 429s, deferrals: {m.model_id}",
                      [ten_s("LocalThrottles", m.model_id), ten_s("Upstream429", m.model_id),
                       ten_s("Deferred", m.model_id)],
                      right=[ten_s("QueueSeconds", m.model_id, "Maximum")],
                      right_y_axis=cloudwatch.YAxisProps(label="booked wait s", min=0,
                                                         show_units=False))))
        return widgets
    # --- the batch lane: its dashboard row and alarms, kept apart ---------------------------
    @staticmethod
    def _batch_widget(models: list[ModelSpec]) -> cloudwatch.GraphWidget:
        """Batch lane per model: queued, submitted, in flight, completed and saved USD."""
        def per_model(name: str, stat: str = "Sum"):
            return _per_model(models, name, stat, _FIVE_MINUTES)

        return cloudwatch.GraphWidget(
            title="Batch lane: queued, in flight, completed (per 5 min); cost and saved USD",
            width=24, height=6,
            left=per_model("BatchQueued") + per_model("BatchSubmitted")
            + per_model("BatchInFlight", "Maximum") + per_model("BatchSucceeded")
            + per_model("BatchErrored") + per_model("BatchExpired"),
            right=per_model("BatchCostUSD") + per_model("BatchSavedUSD"),
            right_y_axis=cloudwatch.YAxisProps(label="USD per 5 min", show_units=False))

    def add_batch_lane(self, *, queue: sqs.IQueue, dead_letter_queue: sqs.IQueue,
                       models: list[str], oldest_queued_hours: float) -> None:
        """Alarms of the batch lane (to the alarm topic): the oldest queued request too old,
        batch items errored, the batch DLQ not empty. Names in `alarms` start "Batch"."""
        self._alarm_above(
            "BatchOldestQueued", queue.metric_approximate_age_of_oldest_message(
                period=_FIVE_MINUTES, statistic="Maximum"), oldest_queued_hours * 3600,
            f"A batch-lane request has waited more than {oldest_queued_hours:g} h in the batch "
            "queue: the collector is not submitting. Read the collector's logs (stopped: "
            "quota or queue cap?) and check batch.max_queued_requests and the batch bucket.",
            severity="Warning")
        for model_id in models:
            self._alarm_above(
                f"BatchErrored/{model_id}",
                _metric("BatchErrored", model_id, "Sum", _FIVE_MINUTES), 0,
                f"Message Batches items of {model_id} came back errored. Transient types "
                "are retried; read the poller's logs and the batch DLQ for the reasons.")
        self._alarm_above(
            "BatchDeadLetterQueueNotEmpty",
            dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=_ONE_MINUTE, statistic="Maximum"), 0,
            "Batch-lane requests reached the batch DLQ (permanent errors or exhausted "
            "retries; each message carries dlq_reason). Fix the cause, then send them "
            "to the batch queue again.")
        self.facade.monitor_sqs_queue_with_dlq(
            queue=queue, dead_letter_queue=dead_letter_queue,
            human_readable_name="Batch queue", alarm_friendly_name="BatchQueue")
        self._batch_slo(models)

    def _batch_slo(self, models: list[str]) -> None:
        """The batch lane's SLO burn rates: items succeeded against errored or expired."""
        before = set(self.slo.alarms) | set(self.slo.windows)
        for model_id in models:
            self.slo.add_lane(
                "batch", model_id,
                good={"succeeded": _metric("BatchSucceeded", model_id, "Sum", _FIVE_MINUTES)},
                bad={"errored": _metric("BatchErrored", model_id, "Sum", _FIVE_MINUTES),
                     "expired": _metric("BatchExpired", model_id, "Sum", _FIVE_MINUTES)})
        for widget in self.slo.widgets[-len(models):]:
            self.facade.add_widget(widget)
        self.alarms.update({k: v for k, v in {**self.slo.alarms, **self.slo.windows}.items()
                            if k not in before})

    # --- the audit trail's AccessDenied count -------------------------------------------------
    def add_access_denied_alarm(self, metric_filter: logs.MetricFilter) -> None:
        """Alarm (to the alarm topic) on any call by a kit role that AWS denied, counted by the
        audit trail's metric filter (`ACCESS_DENIED_METRIC`, no dimension); `alarms`
        name "AccessDenied"."""
        self._alarm_above(
            "AccessDenied", metric_filter.metric(statistic="Sum", period=_FIVE_MINUTES), 0,
            "A kit role was denied an AWS call: check CloudTrail for the request (source "
            "identity) and what it tried.")

    def _alarm_above(self, name: str, metric: cloudwatch.IMetric, threshold: float,
                     description: str, severity: str = "Critical") -> None:
        """An alarm outside the facade's monitors: one period above `threshold` notifies the
        alarm topic; missing data is not breaching. Kept in `alarms` under `name`, and named
        like the facade's alarms ("Bulwark-dev-AccessDenied-Critical")."""
        created = cloudwatch.Alarm(
            self, f"{name.replace('/', '')}Alarm", metric=metric, threshold=threshold,
            alarm_name=f"{self._alarm_name_prefix}-{name.replace('/', '-')}-{severity}",
            evaluation_periods=1, datapoints_to_alarm=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=description)
        created.add_alarm_action(cw_actions.SnsAction(self.alarm_topic))
        self.alarms[name] = created
