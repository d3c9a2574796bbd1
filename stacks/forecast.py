""""Quota used in 30 minutes" per model: metric math that projects the per-minute rates against
the configured limits, and an alarm at the 80% line.

    forecast = QuotaForecast(scope, "Forecast", models=models, settings=alarm_settings.forecast,
                             topic=alarm_topic, name_prefix="Bulwark-dev")
    forecast.alarms   # "QuotaForecast/<model_id>" -> Alarm

Why metric math and not a scheduled Lambda that fits a regression: the rates are already in
CloudWatch, the alarm evaluates where they live (no function, role, schedule, invocations or
`Forecast*` metric to pay for and secure), and it works from the first deploy. The price is a
cruder fit: per period P (`period_minutes`) the use of each limit is

    used_d = 100 * (what dimension d counted in P) / (limit_d per minute * P minutes)

(requests against rpm; input + cache-write tokens against itpm; output tokens against otpm;
on Bedrock input + cache write + output x burndown against tpm), `used` is the fullest of them,
and the projection `horizon_minutes` ahead follows the last period's slope:

    forecast = used + max(0, DIFF(used)) * horizon / P

A single period's slope is noisy; the alarm asks for 2 of the last 3 periods at or above
`alarm_percent`, which a one-period spike does not meet. A falling or flat rate projects to
itself. `QuotaUsedPercent` (the bucket's fill at acquire) is drawn beside it: it stays low
until demand passes the refill and then climbs to 100 within minutes, too late to act on,
which is why the projection works from the rates.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_sns as sns
from constructs import Construct

from agent.contract import ModelSpec

from .metrics import literal, metric, rate
from .settings import ForecastSettings


def usage_expressions(model: ModelSpec, period: Duration) -> dict[str, cloudwatch.MathExpression]:
    """Per limit dimension of `model`: the percent of the limit used per period."""
    limits, minutes = model.limits, period.to_minutes()

    def m(name: str) -> cloudwatch.Metric:
        return metric(name, model.model_id, "Sum", period)

    used: dict[str, cloudwatch.MathExpression] = {}
    if limits.rpm is not None:
        used["rpm"] = rate(f"100 * FILL(req, 0) / {literal(limits.rpm * minutes)}",
                           {"req": m("Requests")}, "requests (% of rpm)", period)
    if limits.itpm is not None:
        used["itpm"] = rate(f"100 * (FILL(inp, 0) + FILL(cw, 0)) / {literal(limits.itpm * minutes)}",
                            {"inp": m("InputTokens"), "cw": m("CacheWriteTokens")},
                            "input tokens (% of itpm)", period)
    if limits.otpm is not None:
        used["otpm"] = rate(f"100 * FILL(out, 0) / {literal(limits.otpm * minutes)}",
                            {"out": m("OutputTokens")}, "output tokens (% of otpm)", period)
    if limits.tpm is not None:
        used["tpm"] = rate(
            f"100 * (FILL(inp, 0) + FILL(cw, 0) + {literal(limits.output_burndown)} "
            f"* FILL(out, 0)) / {literal(limits.tpm * minutes)}",
            {"inp": m("InputTokens"), "cw": m("CacheWriteTokens"), "out": m("OutputTokens")},
            "tokens (% of tpm)", period)
    return used


def fullest(used: dict[str, cloudwatch.MathExpression],
            period: Duration) -> cloudwatch.IMetric:
    """The largest of the usage expressions, period by period (nested IF: one series)."""
    names = list(used)
    best: cloudwatch.IMetric = used[names[0]]
    for i, name in enumerate(names[1:], start=1):
        best = rate(f"IF(a{i} > b{i}, a{i}, b{i})", {f"a{i}": best, f"b{i}": used[name]},
                    "quota used (% of the fullest limit)", period)
    return best


class QuotaForecast(Construct):
    """Per model: the projection of quota use `horizon_minutes` ahead, an alarm (to `topic`)
    when it reaches `alarm_percent`, and a graph. `alarms` maps "QuotaForecast/<model_id>"."""

    def __init__(self, scope: Construct, id: str, *, models: list[ModelSpec],
                 settings: ForecastSettings, topic: sns.ITopic, name_prefix: str) -> None:
        super().__init__(scope, id)
        period = Duration.minutes(settings.period_minutes)
        steps = settings.horizon_minutes / settings.period_minutes
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        self.widgets: list[cloudwatch.IWidget] = []
        action = cw_actions.SnsAction(topic)
        for index, model in enumerate(models):
            used = usage_expressions(model, period)
            if not used:
                continue
            now = fullest(used, period)
            projected = rate(f"now + IF(DIFF(now) > 0, DIFF(now) * {literal(steps)}, 0)",
                             {"now": now},
                             f"quota used in {settings.horizon_minutes} min (%, projected)",
                             period)
            alarm = cloudwatch.Alarm(
                self, f"QuotaForecast{index}", metric=projected,
                threshold=settings.alarm_percent, evaluation_periods=3, datapoints_to_alarm=2,
                comparison_operator=cloudwatch.ComparisonOperator.
                GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                alarm_name=f"{name_prefix}-QuotaForecast-{model.model_id}-Warning",
                alarm_description=(
                    f"At the current trend {model.model_id} uses {settings.alarm_percent:g}% "
                    f"of its fullest limit within {settings.horizon_minutes} min (2 of the "
                    f"last 3 {settings.period_minutes}-min projections): throttling and 429s "
                    "follow. Before it does: raise the tier or the Bedrock quota (then the "
                    "limits in cdk.json), move background work to the batch lane, or lower "
                    "the weight of the tenant that grows (see the tenant rows)."))
            alarm.add_alarm_action(action)
            self.alarms[f"QuotaForecast/{model.model_id}"] = alarm
            self.widgets.append(cloudwatch.GraphWidget(
                title=f"Quota forecast: {model.model_id}", width=12, height=5,
                left=[now, projected,
                      metric("QuotaUsedPercent", model.model_id, "Maximum", period,
                             "QuotaUsedPercent (bucket fill at acquire)")],
                left_annotations=[cloudwatch.HorizontalAnnotation(
                    value=settings.alarm_percent, label="forecast alarm",
                    color=cloudwatch.Color.ORANGE)],
                left_y_axis=cloudwatch.YAxisProps(min=0, label="%", show_units=False)))
