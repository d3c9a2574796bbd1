"""The agent's queues: a deferred request back onto the work queue (with its conversation), a
batch-lane request onto the batch queue, and what cannot be served onto the dead-letter queue
(`cli/dlq.py` reads and redrives it).

A dead letter is the message body (or {"raw_body": ...} when it was not a JSON object) plus
`dlq_reason` and `dead_lettered_at` (epoch seconds), with the reason as a message attribute.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from .requests import AgentRequest, WorkMessage, batch_params
from .results import error_response, expires_at, put_queued
from .runtime import logger
from .telemetry import RequestMetrics

if TYPE_CHECKING:
    from .config import AgentConfig
    from .loop import LoopOutcome
    from .runtime import Runtime

#: Longest delay (seconds) SQS allows on a message.
MAX_SQS_DELAY_S = 900
#: Largest work-queue body (bytes) sent with its transcript (SQS allows 256 KiB).
MAX_SQS_BODY_BYTES = 250_000


def send_to_dlq(rt: "Runtime", body: Any, reason: str) -> None:
    """Dead-letter `body` (a parsed message, or the raw text of one that did not parse)."""
    payload = body if isinstance(body, dict) else {"raw_body": body}
    payload = {**payload, "dlq_reason": reason, "dead_lettered_at": rt.clock()}
    rt.sqs.send_message(QueueUrl=rt.config.dlq_url, MessageBody=json.dumps(payload, default=str),
                        MessageAttributes={"reason": {"DataType": "String",
                                                      "StringValue": reason[:256]}})
    logger.warning("request dead-lettered", extra={"reason": reason})


def dead_letter_reason(message: WorkMessage, config: "AgentConfig", *, now: float) -> str | None:
    """Why a parsed work message must not run again (deferred too often, or older than
    MAX_DEFERRAL_AGE_S at `now`, epoch seconds); None when it may run."""
    if message.deferrals > config.max_deferrals:
        return (f"deferred {message.deferrals} times, more than MAX_DEFERRALS="
                f"{config.max_deferrals}")
    age = now - message.first_received_at
    if age > config.max_deferral_age_s:
        return (f"{age:.0f} s old, older than MAX_DEFERRAL_AGE_S="
                f"{config.max_deferral_age_s:g}")
    return None


def defer(rt: "Runtime", request: AgentRequest, outcome: "LoopOutcome", deferrals: int,
          first_received_at: float) -> dict:
    """Re-queue a request the loop deferred, delayed by its retry-after (seconds, at most
    MAX_SQS_DELAY_S); returns the "deferred" response."""
    delay = min(MAX_SQS_DELAY_S, max(0, math.ceil(outcome.retry_after or 0)))
    envelope = {"request": request.to_dict(), "deferrals": deferrals + 1,
                "first_received_at": first_received_at, "transcript": outcome.transcript,
                "model": outcome.model, "ticket": outcome.ticket}
    body = json.dumps(envelope, default=str)
    if len(body.encode()) > MAX_SQS_BODY_BYTES:
        envelope.pop("transcript")  # restart the conversation rather than lose the request
        body = json.dumps(envelope, default=str)
    rt.sqs.send_message(QueueUrl=rt.config.work_queue_url, MessageBody=body, DelaySeconds=delay)
    return {"status": "deferred", "request_id": request.request_id, "model": outcome.model,
            "retry_after": outcome.retry_after, "reason": outcome.reason}


def enqueue_batch(rt: "Runtime", request: AgentRequest) -> dict:
    """Lane "batch": a "queued" placeholder in the results table, then the batch queue. A
    request id seen before answers what is stored (a duplicate is not queued twice; one still
    queued is sent again, which the collector's claim makes harmless)."""
    if rt.config.batch_queue_url is None:
        return error_response(request.request_id, "invalid_request",
                              "lane 'batch' is not deployed here (no BATCH_QUEUE_URL); use "
                              "lane 'interactive'")
    response = {"status": "queued", "request_id": request.request_id, "lane": "batch",
                "model": request.model}
    stored = put_queued(rt.dynamodb, rt.config.results_table, request.tenant,
                        request.request_id, response, expires_at(rt))
    if stored is not None and stored.get("status") != "queued":
        return stored
    body = {"request": request.to_dict(), "params": batch_params(request, rt.config),
            "attempt": 0, "queued_at": rt.clock()}
    rt.sqs.send_message(QueueUrl=rt.config.batch_queue_url,
                        MessageBody=json.dumps(body, default=str))
    if stored is None:
        metrics = RequestMetrics()
        metrics.add(request.model, "BatchQueued")
        metrics.flush()
    # the audit covers every request: a queued one too (its answer comes from the poller)
    logger.info("request finished", extra={
        "request_id": request.request_id, "tenant": request.tenant, "caller": request.caller,
        "status": "queued", "lane": "batch", "model": request.model, "model_calls": 0,
        "tool_calls": 0, "usage": {}, "duration_ms": 0})
    return response
