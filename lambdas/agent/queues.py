"""The agent's queues: a deferred request back onto the work queue (with its conversation and
what it has spent), a batch-lane request onto the batch queue, and what cannot be served onto
the dead-letter queue (`cli/dlq.py` reads and redrives it).

Bodies are UTF-8 JSON (`payloads.dumps`). One over `payloads.MAX_INLINE_MESSAGE_BYTES` is put
in the payload bucket and the message carries a claim check instead: {"s3_payload": {...},
"request_id", "tenant"} (`parse_work_message` and `cli.dlq` follow it).

A dead letter is the message body (or {"raw_body": ...} when it was not a JSON object) plus
`dlq_reason` and `dead_lettered_at` (epoch seconds), with the reason as a message attribute.
A dead-lettered request whose tenant and id are known gets an error answer with the reason
(`results.put_dead_letter_answer`) before the dead letter is sent, and counts in the
`DeadLettered` metric.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from .contract import REQUEST_ID_PATTERN, TENANT_PATTERN, LogEvent
from .payloads import MAX_INLINE_MESSAGE_BYTES, PayloadError, fit_text
from .requests import AgentRequest, Spent, batch_body
from .results import (error_response, expires_at, put_dead_letter_answer, put_queued,
                      put_result_once)
from .runtime import logger
from .telemetry import RequestMetrics

if TYPE_CHECKING:
    from .config import AgentConfig
    from .loop import LoopOutcome
    from .requests import WorkMessage
    from .runtime import Runtime

#: Longest delay (seconds) SQS allows on a message.
MAX_SQS_DELAY_S = 900


class QueueError(Exception):
    """A message could not be queued; the message names why."""


def message_body(rt: "Runtime", envelope: dict, tenant: str, request_id: str) -> str:
    """The work or batch queue body for `envelope` (`payloads.fit_text`: a claim check
    when it is over MAX_INLINE_MESSAGE_BYTES)."""
    return fit_text(rt.payloads, envelope, limit=MAX_INLINE_MESSAGE_BYTES, kind="queue",
                    tenant=tenant, request_id=request_id)


def send_to_dlq(rt: "Runtime", body: Any, reason: str, *,
                request: AgentRequest | SimpleNamespace | None = None) -> None:
    """Dead-letter `body` (a parsed message, or the raw text of one that did not parse). With
    `request`, its error answer (the reason) is stored first, unless it was answered "ok";
    when that store fails the dead letter is sent anyway and its reason says so."""
    if request is not None:
        try:
            put_dead_letter_answer(rt.dynamodb, rt.config.results_table, request.tenant,
                                   request.request_id, reason, expires_at(rt))
        except Exception as err:  # noqa: BLE001 - the dead letter still goes, saying so
            logger.exception("dead-letter answer not stored")
            reason = f"{reason} (its error answer could not be stored: {err})"
        metrics = RequestMetrics()
        metrics.add(request.model, "DeadLettered")
        metrics.flush()
    payload = body if isinstance(body, dict) else {"raw_body": body}
    payload = {**payload, "dlq_reason": reason, "dead_lettered_at": rt.clock()}
    tenant, request_id = ((request.tenant, request.request_id) if request is not None
                          else _ids(payload))
    text = fit_text(getattr(rt, "payloads", None), payload, limit=MAX_INLINE_MESSAGE_BYTES,
                    kind="dlq", tenant=tenant, request_id=request_id,
                    keep=("dlq_reason", "dead_lettered_at"))
    rt.sqs.send_message(QueueUrl=rt.config.dlq_url, MessageBody=text,
                        MessageAttributes={"reason": {"DataType": "String",
                                                      "StringValue": reason[:256]}})
    logger.warning(LogEvent.DEAD_LETTERED, extra={"reason": reason})


def named_request(body: Any, config: "AgentConfig") -> SimpleNamespace | None:
    """Whom a malformed message's error answer goes to: the tenant and request id it (or its
    claim check, or its "request") names, when both are valid and the tenant is configured;
    its model when known, else DEFAULT_MODEL (the DeadLettered metric's dimension)."""
    if not isinstance(body, dict):
        return None
    tenant, request_id = _ids(body)
    if tenant not in config.tenants or request_id == "unknown":
        return None
    request = body.get("request") if isinstance(body.get("request"), dict) else body
    model = request.get("model")
    return SimpleNamespace(tenant=tenant, request_id=request_id,
                           model=model if model in config.models else config.default_model)


def _ids(payload: dict) -> tuple[str, str]:
    """(tenant, request id) of a dead letter, for its claim check's key ("unknown" for what
    the body does not hold in a valid form)."""
    request = payload.get("request") if isinstance(payload.get("request"), dict) else payload
    tenant, request_id = request.get("tenant"), request.get("request_id")
    return (tenant if isinstance(tenant, str) and TENANT_PATTERN.match(tenant) else "unknown",
            request_id if isinstance(request_id, str) and REQUEST_ID_PATTERN.match(request_id)
            else "unknown")


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
          first_received_at: float, spent: Spent | None = None) -> dict:
    """Re-queue a request the loop deferred, delayed by its retry-after (seconds, at most
    MAX_SQS_DELAY_S), with its conversation and what it has spent (earlier `spent` plus this
    invocation's model calls and tokens); returns the "deferred" response. Raises
    `QueueError` naming the problem when it cannot be queued."""
    spent = spent or Spent()
    delay = min(MAX_SQS_DELAY_S, max(0, math.ceil(outcome.retry_after or 0)))
    envelope = {"request": request.to_dict(), "deferrals": deferrals + 1,
                "first_received_at": first_received_at, "transcript": outcome.transcript,
                "model": outcome.model, "ticket": outcome.ticket,
                "spent": {"model_calls": spent.model_calls + outcome.model_calls,
                          "tokens": spent.tokens + sum(outcome.usage.values())}}
    try:
        body = message_body(rt, envelope, request.tenant, request.request_id)
    except PayloadError as err:
        raise QueueError(f"the request could not be deferred: {err}") from None
    rt.sqs.send_message(QueueUrl=rt.config.work_queue_url, MessageBody=body, DelaySeconds=delay)
    return {"status": "deferred", "request_id": request.request_id, "model": outcome.model,
            "retry_after": outcome.retry_after, "reason": outcome.reason}


def enqueue_batch(rt: "Runtime", request: AgentRequest,
                  budget_scopes: tuple[str, ...] = ()) -> dict:
    """Lane "batch": a "queued" placeholder in the results table, then the batch queue. A
    request id seen before answers what is stored (a duplicate is not queued twice; one still
    queued is sent again, which the collector's claim makes harmless), or a "conflict" error
    when it was queued for a different request. When the send fails the placeholder is
    replaced by an error answer naming why (nothing stays "queued" that is not).
    `budget_scopes`: the budget scopes (`guard.budget`) the poller charges its answer to."""
    if rt.config.batch_queue_url is None:
        return error_response(request.request_id, "invalid_request",
                              "lane 'batch' is not deployed here (no BATCH_QUEUE_URL); use "
                              "lane 'interactive'")
    response = {"status": "queued", "request_id": request.request_id, "lane": "batch",
                "model": request.model}
    body = batch_body(request, rt.config, queued_at=rt.clock())
    if budget_scopes:
        body["budget_scopes"] = list(budget_scopes)
    stored = put_queued(rt.dynamodb, rt.config.results_table, request.tenant,
                        request.request_id, response, expires_at(rt), digest=body["digest"],
                        payloads=rt.payloads)
    if stored is not None and stored.get("status") != "queued":
        return stored
    try:
        rt.sqs.send_message(QueueUrl=rt.config.batch_queue_url,
                            MessageBody=message_body(rt, body, request.tenant,
                                                     request.request_id))
    except Exception as err:  # noqa: BLE001 - answered, not lost
        logger.exception("batch request not queued")
        failed = error_response(request.request_id, "unavailable",
                                f"the request could not be queued ({type(err).__name__}: "
                                f"{err}); send it again")
        if stored is None:  # only the placeholder this call wrote
            put_result_once(rt.dynamodb, rt.config.results_table, request.tenant,
                            request.request_id, failed, expires_at(rt))
        return failed
    if stored is None:
        metrics = RequestMetrics()
        metrics.add(request.model, "BatchQueued")
        metrics.flush()
    # the audit covers every request: a queued one too (its answer comes from the poller)
    logger.info(LogEvent.REQUEST_FINISHED, extra={
        "request_id": request.request_id, "tenant": request.tenant, "caller": request.caller,
        "status": "queued", "lane": "batch", "model": request.model, "model_calls": 0,
        "tool_calls": 0, "usage": {}, "duration_ms": 0})
    return response
