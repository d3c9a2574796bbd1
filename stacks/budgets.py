"""Budgets: the limits config table, the agent's budget environment and IAM, the per-tenant
alarms at 80% and 100% of each day and month budget, the per-tenant "budget exhausted before
month end" forecast, the dashboard's budget section, and the trail's write-only data events
on the config table.

"Budget exhausted at" is metric math over what the agent already emits per tenant, not a
scheduled Lambda publishing a `Forecast*` metric: the month's use (`BudgetUsedPercent`,
Window=month, the guard's own reckoning of spent + held), the last 24 hours' spend (`CostUSD`)
and the days left in the UTC month (`MonthDaysLeft`, emitted beside the month's use because
metric math has no calendar). Over one rolling day:

    burn  = 100 * spend / usd_per_month             percent of the month's budget per day
    days  = (100 - used) / burn                     the budget is exhausted in this many days
    alarm when days - MonthDaysLeft < 0             ... before the month ends

No function, role, schedule or extra metric to pay for, and it evaluates where the data lives.
The price: the burn is taken against the deployed `usd_per_month`; after `cli.limits set`
changes a month budget, the 80%/100% alarms follow at once and this projection at the next
deploy. A day straddling the 1st reads last month's use against last month's last hours
(MonthDaysLeft ~0), so a new month never alarms on the old one's spend.

The budget items themselves live in the bucket table (`guard.budget`); the config table holds
the limits item every caller re-reads (`guard.spend.LimitsSource`) and the change records
`python -m cli.limits set` writes beside it.
"""

from __future__ import annotations

import json
import re

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from constructs import Construct

from agent.contract import (BUDGET_WINDOWS, DIMENSION, MONTH_DAYS_LEFT_METRIC, NAMESPACE,
                            WINDOW_DIMENSION, Env)
from guard.budget import WINDOWS
from guard.spend import LimitSet
from policies.budget import budget_statements

from .metrics import literal, tenant_metric

#: Alarm thresholds: percent of a window's budget spent or held (BudgetUsedPercent)
THRESHOLDS = (80, 100)
#: Days in an average month: projects a day's spend to a month
DAYS_PER_MONTH = 30.4
_DAY = Duration.days(1)
_FIVE_MINUTES = Duration.minutes(5)


class Budgets(Construct):
    """Budgets of one deployment.

    `limits`: the budgets on deploy (settings); `tenants`: the configured tenants (the
    dashboard shows each); `function` / `role`: the agent's, which reserve and settle;
    `bucket_table`: where the budget items live; `alarm_topic`: where alarms go; `dashboard`:
    the dashboard the budget section is added to; `key`: encrypts the config table.
    Attributes: `table` (the limits config table), `statements` (what the role is granted,
    for the permissions boundary), `alarms` (name -> Alarm, "Budget<Window><pct>/<tenant>",
    "BudgetExhaustion/<tenant>" for a tenant with a month budget,
    "BudgetDeployment<Window><pct>" and "BudgetTokens<pct>/<model>").
    """

    def __init__(self, scope: Construct, id: str, *, limits: LimitSet, tenants: tuple[str, ...],
                 function: lambda_.Function, role: iam.IRole, bucket_table: dynamodb.ITable,
                 alarm_topic: sns.ITopic, dashboard: cloudwatch.Dashboard, key: kms.IKey,
                 alarm_name_prefix: str, prod: bool) -> None:
        super().__init__(scope, id)
        self.table = dynamodb.Table(
            self, "LimitsTable",
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED, encryption_key=key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True),
            deletion_protection=prod,
            removal_policy=RemovalPolicy.RETAIN if prod else RemovalPolicy.DESTROY)
        function.add_environment(Env.BUDGETS, json.dumps(limits.encode(), sort_keys=True))
        function.add_environment(Env.LIMITS_TABLE, self.table.table_name)
        self.statements = budget_statements(bucket_table.table_arn, self.table.table_arn)
        for statement in self.statements:
            role.add_to_principal_policy(statement)
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        for tenant, budget in sorted(limits.tenants.items()):
            for window, label in (("usd_per_day", "day"), ("usd_per_month", "month")):
                if getattr(budget, window) is None:
                    continue
                for percent in THRESHOLDS:
                    self._alarm(tenant, window, label, percent, getattr(budget, window),
                                alarm_topic, alarm_name_prefix)
        #: tenant -> its "budget exhausted in (days) minus days left in the month" expression
        self.exhaustion: dict[str, cloudwatch.MathExpression] = {}
        for tenant, budget in sorted(limits.tenants.items()):
            if budget.usd_per_month is not None:
                self._exhaustion_alarm(tenant, budget.usd_per_month, alarm_topic,
                                       alarm_name_prefix)
        self._shared_alarms(limits, alarm_topic, alarm_name_prefix)
        self._dashboard(dashboard, tenants, limits)

    def _exhaustion_alarm(self, tenant: str, usd_per_month: float, topic: sns.ITopic,
                          prefix: str) -> None:
        """"BudgetExhaustion/<tenant>": at the last 24 hours' spend the tenant's month budget
        (USD) runs out before the UTC month ends (the module doc has the arithmetic)."""
        month = {WINDOW_DIMENSION: BUDGET_WINDOWS["usd_per_month"]}
        i = len(self.exhaustion)  # ids are unique per tenant: the dashboard draws them together
        days = cloudwatch.MathExpression(
            expression=f"IF(FILL(spend{i}, 0) > 0, (100 - used{i}) * {literal(usd_per_month)}"
                       f" / (100 * FILL(spend{i}, 0)), 1000)",
            using_metrics={
                f"used{i}": tenant_metric("BudgetUsedPercent", tenant, "Maximum", _DAY,
                                          **month),
                f"spend{i}": tenant_metric("CostUSD", tenant, "Sum", _DAY)},
            period=_DAY, label=f"{tenant}: budget exhausted in (days)")
        margin = cloudwatch.MathExpression(
            expression=f"days{i} - left{i}", period=_DAY,
            using_metrics={f"days{i}": days, f"left{i}": tenant_metric(
                MONTH_DAYS_LEFT_METRIC, tenant, "Minimum", _DAY, **month)},
            label=f"{tenant}: days of budget beyond month end")
        name = f"BudgetExhaustion/{tenant}"
        alarm = cloudwatch.Alarm(
            self, f"BudgetExhaustion{i}", metric=margin, threshold=0,
            evaluation_periods=1, datapoints_to_alarm=1,
            comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_name=f"{prefix}-BudgetExhaustion-{tenant}-Warning",
            alarm_description=(
                f"At the last 24 hours' spend, tenant {tenant} uses up its month budget "
                f"(${usd_per_month:g} per UTC month) before the month ends; its calls then "
                "follow its budget action (reject, degrade or batch) until the 1st. If the "
                "spend is wanted, raise the budget without a redeploy: python -m cli.limits "
                f"set tenants.{tenant}.budget.usd_per_month=<USD> (this projection reads the "
                "deployed budget until the next deploy). If not, find what grew: the "
                f"tenant's band alarms and RunawayThrottled, python -m cli.audit --tenant "
                f"{tenant}; lower its weight or move its background work to the batch lane "
                "(half price)."))
        alarm.add_alarm_action(cw_actions.SnsAction(topic))
        self.alarms[name] = alarm
        self.exhaustion[tenant] = days

    def _shared_alarms(self, limits: LimitSet, topic: sns.ITopic, prefix: str) -> None:
        """80% and 100% of the deployment's budgets (BudgetUsedPercent, dimension Window only;
        "BudgetDeployment<Window><pct>") and of each model's tokens per UTC day
        (BudgetUsedPercent, dimensions Model and Window=tokens; "BudgetTokens<pct>/<model>")."""
        deployment = limits.deployment
        for window in WINDOWS:
            limit = getattr(deployment, window) if deployment is not None else None
            if limit is None:
                continue
            label = BUDGET_WINDOWS[window]
            unit = "tokens" if window == "tokens_per_day" else f"USD per UTC {label}"
            for percent in THRESHOLDS:
                self._shared_alarm(
                    f"BudgetDeployment{label.title()}{percent}", percent, topic, prefix,
                    {WINDOW_DIMENSION: label},
                    f"The deployment has spent or holds {percent}% of its {label} budget "
                    f"({limit:g} {unit}, every tenant together). At 100% every call is "
                    "refused for budget until the window resets. Raise it without a redeploy: "
                    f"python -m cli.limits set budget.{window}=<value>")
        for model, tokens in sorted(limits.model_tokens_per_day.items()):
            for percent in THRESHOLDS:
                self._shared_alarm(
                    f"BudgetTokens{percent}/{model}", percent, topic, prefix,
                    {DIMENSION: model, WINDOW_DIMENSION: BUDGET_WINDOWS["tokens_per_day"]},
                    f"Model {model} has used or holds {percent}% of its {tokens} tokens per "
                    "UTC day (input + cache write + output, Bedrock's 'Model invocation max "
                    "tokens per day'). At 100% its calls are refused until 00:00 UTC. Change "
                    f"it without a redeploy: python -m cli.limits set "
                    f"models.{model}.tokens_per_day=<tokens>")

    def _shared_alarm(self, name: str, percent: int, topic: sns.ITopic, prefix: str,
                      dimensions: dict[str, str], description: str) -> None:
        """BudgetUsedPercent (`dimensions`) Maximum >= `percent` in a 5-minute period."""
        alarm = cloudwatch.Alarm(
            self, re.sub(r"[^A-Za-z0-9]", "", name),
            metric=cloudwatch.Metric(namespace=NAMESPACE, metric_name="BudgetUsedPercent",
                                     statistic="Maximum", period=_FIVE_MINUTES,
                                     dimensions_map=dimensions),
            threshold=percent, evaluation_periods=1, datapoints_to_alarm=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_name=f"{prefix}-{re.sub(r'[^A-Za-z0-9.:_-]', '-', name)}",
            alarm_description=description)
        alarm.add_alarm_action(cw_actions.SnsAction(topic))
        self.alarms[name] = alarm

    def _alarm(self, tenant: str, window: str, label: str, percent: int, usd: float,
               topic: sns.ITopic, prefix: str) -> None:
        """BudgetUsedPercent (Tenant, Window) Maximum >= `percent` in a 5-minute period."""
        name = f"Budget{label.title()}{percent}/{tenant}"
        alarm = cloudwatch.Alarm(
            self, name.replace("/", ""),
            metric=tenant_metric("BudgetUsedPercent", tenant, "Maximum", _FIVE_MINUTES,
                                 **{WINDOW_DIMENSION: BUDGET_WINDOWS[window]}),
            threshold=percent, evaluation_periods=1, datapoints_to_alarm=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_name=f"{prefix}-{name.replace('/', '-')}",
            alarm_description=(
                f"Tenant {tenant} has spent or holds {percent}% of its {label} budget "
                f"(${usd:g} per UTC {label}). At 100% its calls follow its action (reject, "
                "degrade or batch) until the window resets. Raise it without a redeploy: "
                f"python -m cli.limits set tenants.{tenant}.budget.{window}=<USD>"))
        alarm.add_alarm_action(cw_actions.SnsAction(topic))
        self.alarms[name] = alarm

    def _dashboard(self, dashboard: cloudwatch.Dashboard, tenants: tuple[str, ...],
                   limits: LimitSet) -> None:
        """The budget section: spend per tenant (24 h), spend against budget (percent of each
        window), and the month-end spend projected at the last 24 hours' rate."""
        spend = [tenant_metric("CostUSD", t, "Sum", _DAY).with_(label=t) for t in tenants]
        dashboard.add_widgets(cloudwatch.TextWidget(
            markdown="## Budgets\nSpend per tenant, spend against each tenant's budget "
                     "(percent of the UTC day and month, spent plus open reservations) and "
                     "the month-end spend at the last 24 hours' rate. Change a budget: "
                     "`python -m cli.limits set tenants.<name>.budget.usd_per_day=<USD>`.",
            width=24, height=2))
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Top tenants by spend (USD per day)", left=spend,
                view=cloudwatch.GraphWidgetView.BAR, width=8, height=6,
                left_y_axis=cloudwatch.YAxisProps(label="USD", show_units=False)),
            cloudwatch.GraphWidget(
                title="Spend against budget (% of the window)",
                left=[tenant_metric("BudgetUsedPercent", t, "Maximum", _FIVE_MINUTES,
                                    **{WINDOW_DIMENSION: BUDGET_WINDOWS[w]})
                      .with_(label=f"{t} {BUDGET_WINDOWS[w]}")
                      for t, b in sorted(limits.tenants.items())
                      for w in ("usd_per_day", "usd_per_month") if getattr(b, w) is not None],
                left_annotations=[cloudwatch.HorizontalAnnotation(value=p, label=f"{p}%")
                                  for p in THRESHOLDS],
                left_y_axis=cloudwatch.YAxisProps(min=0, label="%", show_units=False),
                width=8, height=6),
            cloudwatch.GraphWidget(
                title="Projected month-end spend at today's rate (USD)",
                left=[cloudwatch.MathExpression(
                    expression=f"spend{i} * {DAYS_PER_MONTH}", using_metrics={f"spend{i}": m},
                    label=f"{tenant} projected", period=_DAY)
                    for i, (tenant, m) in enumerate(zip(tenants, spend))],
                left_annotations=[cloudwatch.HorizontalAnnotation(
                    value=b.usd_per_month, label=f"{t} monthly budget")
                    for t, b in sorted(limits.tenants.items()) if b.usd_per_month],
                left_y_axis=cloudwatch.YAxisProps(min=0, label="USD", show_units=False),
                width=8, height=6))
        if self.exhaustion:
            dashboard.add_widgets(cloudwatch.GraphWidget(
                title="Budget exhausted in (days, at the last 24 hours' spend) and days left "
                      "in the month", width=24, height=5,
                left=[*self.exhaustion.values(), *(tenant_metric(
                    MONTH_DAYS_LEFT_METRIC, t, "Minimum", _DAY,
                    **{WINDOW_DIMENSION: BUDGET_WINDOWS["usd_per_month"]}).with_(
                        label=f"{t}: days left in the month") for t in self.exhaustion)],
                left_y_axis=cloudwatch.YAxisProps(min=0, max=40, label="days",
                                                  show_units=False)))
