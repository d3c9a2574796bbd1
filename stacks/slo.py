"""Success-rate SLO per model and lane with multi-window burn-rate alarms.

    slo = SuccessSlo(scope, "Slo", settings=alarm_settings.slo, topic=alarm_topic,
                     name_prefix="Bulwark-dev")
    slo.add_lane("interactive", model_id, good={"succeeded": ...}, bad={"failed": ...})
    slo.alarms    # "SloFastBurn/interactive/<model>" -> CompositeAlarm, "SloSlowBurn/..."

The error budget is `100 - success_rate_percent` percent of requests. The burn rate over a
window is the window's failure share divided by the budget: 1 spends the budget exactly over
the SLO period, 14.4 spends 2% of a 30-day budget in one hour. Each speed has two windows:
a long one (enough requests to mean something) and a short one (the burn is still on, so the
alarm clears soon after a fix). Each window is one alarm on metric math over a single period
of the window's length; a composite alarm (`ALARM(long) AND ALARM(short)`) notifies the topic,
the fast pair as Critical (pages), the slow pair as Warning. The window alarms have no
actions of their own. A window with fewer than `min_requests` requests (the short window: its
share of them, at least 1) reads burn 0: two failures out of three requests do not page.
"""

from __future__ import annotations

import math

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_sns as sns
from constructs import Construct

from .metrics import literal
from .settings import SloSettings

#: the two speeds: name stem, severity
SPEEDS = (("fast", "SloFastBurn", "Critical"), ("slow", "SloSlowBurn", "Warning"))


def burn_expression(good: list[str], bad: list[str], budget_percent: float,
                    min_requests: int) -> str:
    """Burn rate of one window: failure share (%) / error budget (%), 0 below `min_requests`."""
    failed = " + ".join(f"FILL({b}, 0)" for b in bad)
    total = " + ".join(f"FILL({q}, 0)" for q in [*good, *bad])
    return (f"IF(({total}) >= {min_requests}, 100 * ({failed}) / ({total}) / "
            f"{literal(budget_percent)}, 0)")


class SuccessSlo(Construct):
    """Burn-rate alarms for each lane and model added with `add_lane`; `alarms` holds the
    composite alarms by "<Stem>/<lane>/<model_id>", `windows` the window alarms behind them."""

    def __init__(self, scope: Construct, id: str, *, settings: SloSettings, topic: sns.ITopic,
                 name_prefix: str) -> None:
        super().__init__(scope, id)
        self.settings = settings
        self._action = cw_actions.SnsAction(topic)
        self._prefix = name_prefix
        self.alarms: dict[str, cloudwatch.CompositeAlarm] = {}
        self.windows: dict[str, cloudwatch.Alarm] = {}
        self.widgets: list[cloudwatch.IWidget] = []

    def add_lane(self, lane: str, model_id: str, *, good: dict[str, cloudwatch.Metric],
                 bad: dict[str, cloudwatch.Metric]) -> None:
        """Fast and slow burn-rate alarms for one lane of one model. `good`/`bad` map metric
        ids to the metrics counting successful/failed requests (Sum; the period is set per
        window here)."""
        if not good or not bad or set(good) & set(bad):
            raise ValueError("SuccessSlo.add_lane needs good and bad metrics with distinct ids")
        s = self.settings
        burns = []
        for speed, stem, severity in SPEEDS:
            long_min = getattr(s, f"{speed}_window_minutes")
            short_min = getattr(s, f"{speed}_short_window_minutes")
            threshold = getattr(s, f"{speed}_burn_rate")
            pair = []
            for window, minutes in (("Long", long_min), ("Short", short_min)):
                period = Duration.minutes(minutes)
                needed = s.min_requests if window == "Long" else max(
                    1, math.ceil(s.min_requests * short_min / long_min))
                # ids carry the window: the dashboard draws two windows in one graph
                expression = cloudwatch.MathExpression(
                    expression=burn_expression([f"{k}{minutes}" for k in good],
                                               [f"{k}{minutes}" for k in bad],
                                               s.error_budget_percent, needed),
                    using_metrics={f"{k}{minutes}": m.with_(period=period, statistic="Sum")
                                   for k, m in {**good, **bad}.items()},
                    period=period, label=f"burn rate, {minutes} min")
                key = f"{stem}{window}/{lane}/{model_id}"
                alarm = cloudwatch.Alarm(
                    self, f"{stem}{window}{lane}{len(self.windows)}", metric=expression,
                    threshold=threshold, evaluation_periods=1, datapoints_to_alarm=1,
                    comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                    treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                    alarm_name=f"{self._prefix}-{stem}{window}-{lane}-{model_id}-{severity}",
                    alarm_description=(
                        f"{lane} lane of {model_id}: error-budget burn rate over {minutes} "
                        f"min above {threshold:g} (one window of the {stem} alarm)."))
                self.windows[key] = alarm
                pair.append(alarm)
                if window == "Long":
                    burns.append(expression)
            what = ("Page: at this rate the month's error budget is gone in "
                    f"{30 * 24 / threshold:.0f} h." if speed == "fast" else
                    "Warning: the error budget burns faster than the SLO allows; "
                    f"at this rate it is gone in {30 / threshold:.0f} days.")
            composite = cloudwatch.CompositeAlarm(
                self, f"{stem}{lane}{len(self.alarms)}",
                composite_alarm_name=f"{self._prefix}-{stem}-{lane}-{model_id}-{severity}",
                alarm_rule=cloudwatch.AlarmRule.all_of(
                    *(cloudwatch.AlarmRule.from_alarm(a, cloudwatch.AlarmState.ALARM)
                      for a in pair)),
                alarm_description=(
                    f"SLO {s.success_rate_percent:g}% success for the {lane} lane of "
                    f"{model_id}: failures burn the error budget ({s.error_budget_percent:g}% "
                    f"of requests) {threshold:g}x too fast over {long_min} min and still "
                    f"over the last {short_min} min. {what} Read the agent's logs for the "
                    "error types; check Upstream429/529 and the DLQ; roll back a recent "
                    "deploy if it started with one."))
            composite.add_alarm_action(self._action)
            self.alarms[f"{stem}/{lane}/{model_id}"] = composite
        self.widgets.append(cloudwatch.GraphWidget(
            title=f"SLO burn rate: {lane} lane, {model_id}", width=12, height=5, left=burns,
            left_annotations=[
                cloudwatch.HorizontalAnnotation(value=s.fast_burn_rate, label="pages",
                                                color=cloudwatch.Color.RED),
                cloudwatch.HorizontalAnnotation(value=s.slow_burn_rate, label="warns",
                                                color=cloudwatch.Color.ORANGE)],
            left_y_axis=cloudwatch.YAxisProps(min=0, label="x budget", show_units=False)))
