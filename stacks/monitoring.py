"""Monitoring construct: alarms on the agent's metrics and one dashboard, alarms to a KMS-encrypted topic.

This module makes the topic and the dashboard and composes the parts, each in a module of its
own: the fixed-threshold alarms (`stacks.static_alarms`), the overview rows
(`stacks.dashboard_rows`), the batch lane's row and alarms (`stacks.batch_lane_monitoring`)
and the capacity pools' rows and breaker alarms (`stacks.pool_monitoring`).

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
    DefaultDashboardFactory,
    MetricFactoryDefaults,
    MonitoringFacade,
    SnsAlarmActionStrategy,
)
from constructs import Construct

# DIMENSION and NAMESPACE are re-exported: callers read the dashboard's metric identity here
from agent.contract import DIMENSION, NAMESPACE, ModelSpec  # noqa: F401

from .acknowledgements import acknowledge
from .anomaly import AnomalyBands
from .batch_lane_monitoring import add_batch_lane_alarms, batch_lane_widget
from .dashboard_rows import high_resolution_row, overview_widgets
from .forecast import QuotaForecast
from .metrics import metric as _metric
# POOL_BREAKER_ALARM_MINUTES is re-exported: the pools' tests read it here
from .pool_monitoring import POOL_BREAKER_ALARM_MINUTES, add_pool_rows  # noqa: F401
from .settings import AlarmSettings
from .slo import SuccessSlo
from .static_alarms import ALARM_KEY, add_model_alarms, add_platform_alarms

_FIVE_MINUTES = Duration.minutes(5)
_STAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")


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
        #: every alarm's name starts with it: "Bulwark-dev" in "Bulwark-dev-AccessDenied-Critical"
        self.alarm_name_prefix = prefix
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
            acknowledge(self.alarm_topic, "Serverless-SNSRedrivePolicy",
                        "E-mail alarm delivery: a failed delivery shows in the topic's "
                        "NumberOfNotificationsFailed metric and the alarm stays in ALARM in the "
                        "console; a queue nobody reads would not page anyone either.")

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
        for widget in overview_widgets(models, alarm_settings.quota_used_percent):
            self.facade.add_widget(widget)
        for widget in high_resolution_row(models):
            self.facade.add_widget(widget)
        self.facade.add_widget(batch_lane_widget(models))  # the batch lane
        for model in models:
            add_model_alarms(self.facade, model.model_id, alarm_settings)
        add_platform_alarms(self.facade, function, work_queue, dead_letter_queue, bucket_table)

        self.alarms: dict[str, cloudwatch.AlarmBase] = {}
        for created in self.facade.created_alarms():
            self.alarms[created.custom_params[ALARM_KEY]] = created.alarm
        add_pool_rows(self, models)
        self._learned_thresholds(models, alarm_settings, bucket_table)

    # --- thresholds that learn: bands, forecast, SLO burn rates, hot keys -------------------
    def _learned_thresholds(self, models: list[ModelSpec], t: AlarmSettings,
                            bucket_table: dynamodb.ITable) -> None:
        """Anomaly bands (`stacks.anomaly`), the quota forecast (`stacks.forecast`) and the
        interactive lane's SLO burn rates (`stacks.slo`; `add_batch_lane` adds the batch
        lane's), their graphs on the dashboard, and Contributor Insights on the bucket table.
        Their alarms join `alarms` under the keys each construct documents."""
        common = {"topic": self.alarm_topic, "name_prefix": self.alarm_name_prefix}
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

    # --- the batch lane: its dashboard row and alarms, kept apart ---------------------------
    def add_batch_lane(self, *, queue: sqs.IQueue, dead_letter_queue: sqs.IQueue,
                       models: list[str], oldest_queued_hours: float) -> None:
        """Alarms of the batch lane (to the alarm topic): the oldest queued request too old,
        batch items errored, the batch DLQ not empty, and its SLO burn rates
        (`stacks.batch_lane_monitoring`). Names in `alarms` start "Batch"."""
        add_batch_lane_alarms(self, queue=queue, dead_letter_queue=dead_letter_queue,
                              models=models, oldest_queued_hours=oldest_queued_hours)

    # --- the audit trail's AccessDenied count -------------------------------------------------
    def add_access_denied_alarm(self, metric_filter: logs.MetricFilter) -> None:
        """Alarm (to the alarm topic) on any call by a kit role that AWS denied, counted by the
        audit trail's metric filter (`ACCESS_DENIED_METRIC`, no dimension); `alarms`
        name "AccessDenied"."""
        self.add_alarm_above(
            "AccessDenied", metric_filter.metric(statistic="Sum", period=_FIVE_MINUTES), 0,
            "A kit role was denied an AWS call: check CloudTrail for the request (source "
            "identity) and what it tried.")

    def add_alarm_above(self, name: str, metric: cloudwatch.IMetric, threshold: float,
                        description: str, severity: str = "Critical") -> None:
        """An alarm outside the facade's monitors: one period above `threshold` notifies the
        alarm topic; missing data is not breaching. Kept in `alarms` under `name`, and named
        like the facade's alarms ("Bulwark-dev-AccessDenied-Critical")."""
        created = cloudwatch.Alarm(
            self, f"{name.replace('/', '')}Alarm", metric=metric, threshold=threshold,
            alarm_name=f"{self.alarm_name_prefix}-{name.replace('/', '-')}-{severity}",
            evaluation_periods=1, datapoints_to_alarm=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=description)
        created.add_alarm_action(cw_actions.SnsAction(self.alarm_topic))
        self.alarms[name] = created
