"""The batch lane on the dashboard and its alarms: one row per 5 min (queued, submitted, in
flight, completed; cost and saved USD), the oldest queued request too old, batch items
errored, the batch DLQ not empty, the batch queue's facade monitor and the lane's SLO burn
rates. Names in `Monitoring.alarms` start "Batch" (the SLO's: ".../batch/<model_id>")."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_sqs as sqs

from agent.contract import ModelSpec

from .metrics import metric, per_model

if TYPE_CHECKING:
    from .monitoring import Monitoring

_ONE_MINUTE = Duration.minutes(1)
_FIVE_MINUTES = Duration.minutes(5)


def batch_lane_widget(models: list[ModelSpec]) -> cloudwatch.GraphWidget:
    """Batch lane per model: queued, submitted, in flight, completed and saved USD."""
    def each(name: str, stat: str = "Sum"):
        return per_model(models, name, stat, _FIVE_MINUTES)

    return cloudwatch.GraphWidget(
        title="Batch lane: queued, in flight, completed (per 5 min); cost and saved USD",
        width=24, height=6,
        left=each("BatchQueued") + each("BatchSubmitted")
        + each("BatchInFlight", "Maximum") + each("BatchSucceeded")
        + each("BatchErrored") + each("BatchExpired"),
        right=each("BatchCostUSD") + each("BatchSavedUSD"),
        right_y_axis=cloudwatch.YAxisProps(label="USD per 5 min", show_units=False))


def add_batch_lane_alarms(monitoring: "Monitoring", *, queue: sqs.IQueue,
                          dead_letter_queue: sqs.IQueue, models: list[str],
                          oldest_queued_hours: float) -> None:
    """The batch lane's alarms (to `monitoring`'s alarm topic), its queue's monitor and its
    SLO burn rates; `models` are model ids."""
    monitoring.add_alarm_above(
        "BatchOldestQueued", queue.metric_approximate_age_of_oldest_message(
            period=_FIVE_MINUTES, statistic="Maximum"), oldest_queued_hours * 3600,
        f"A batch-lane request has waited more than {oldest_queued_hours:g} h in the batch "
        "queue: the collector is not submitting. Read the collector's logs (stopped: "
        "quota or queue cap?) and check batch.max_queued_requests and the batch bucket.",
        severity="Warning")
    for model_id in models:
        monitoring.add_alarm_above(
            f"BatchErrored/{model_id}",
            metric("BatchErrored", model_id, "Sum", _FIVE_MINUTES), 0,
            f"Message Batches items of {model_id} came back errored. Transient types "
            "are retried; read the poller's logs and the batch DLQ for the reasons.")
    monitoring.add_alarm_above(
        "BatchDeadLetterQueueNotEmpty",
        dead_letter_queue.metric_approximate_number_of_messages_visible(
            period=_ONE_MINUTE, statistic="Maximum"), 0,
        "Batch-lane requests reached the batch DLQ (permanent errors or exhausted "
        "retries; each message carries dlq_reason). Fix the cause, then send them "
        "to the batch queue again.")
    monitoring.facade.monitor_sqs_queue_with_dlq(
        queue=queue, dead_letter_queue=dead_letter_queue,
        human_readable_name="Batch queue", alarm_friendly_name="BatchQueue")
    _add_batch_slo(monitoring, models)


def _add_batch_slo(monitoring: "Monitoring", models: list[str]) -> None:
    """The batch lane's SLO burn rates: items succeeded against errored or expired."""
    slo = monitoring.slo
    before = set(slo.alarms) | set(slo.windows)
    for model_id in models:
        slo.add_lane(
            "batch", model_id,
            good={"succeeded": metric("BatchSucceeded", model_id, "Sum", _FIVE_MINUTES)},
            bad={"errored": metric("BatchErrored", model_id, "Sum", _FIVE_MINUTES),
                 "expired": metric("BatchExpired", model_id, "Sum", _FIVE_MINUTES)})
    for widget in slo.widgets[-len(models):]:
        monitoring.facade.add_widget(widget)
    monitoring.alarms.update({k: v for k, v in {**slo.alarms, **slo.windows}.items()
                              if k not in before})
