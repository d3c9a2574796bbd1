"""The request service: one interactive-lane request through the agent loop, answered once per
tenant and request id (Powertools idempotency), with the overflow policy applied when capacity
does not come within the deadline: "defer" re-queues it (`queues.defer`), "reject" answers
"rejected" with the retry-after ("degrade" happens inside the loop, which retries on the
smaller model). Every response is stored in the results table and ends with one
"request finished" log line.
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function

from .credentials import assume_tool_role
from .loop import LoopOutcome, run_agent
from .queues import defer, enqueue_batch
from .requests import AgentRequest
from .results import expires_at, put_result
from .runtime import Runtime, logger, tracer
from .telemetry import RequestMetrics
from .tools.registry import ToolContext, ToolResources

#: Seconds kept back from the Lambda's remaining time for deferring and storing a result.
LAMBDA_SAFETY_S = 5.0
#: Longest retry-after (seconds) of a request refused only because open budget reservations
#: are in the way: the oldest one's lease end is an upper bound, most settle within seconds.
BUDGET_RESERVED_RETRY_S = 15.0


class _NotFinal(Exception):
    """Raised inside the idempotent section so a deferral is not remembered as the answer."""

    def __init__(self, response: dict) -> None:
        super().__init__(response.get("status"))
        self.response = response


@tracer.capture_method(capture_response=False)
def process(rt: Runtime, request: AgentRequest, context: Any, *, deferrals: int = 0,
            first_received_at: float | None = None, transcript: list[dict] | None = None,
            model: str | None = None) -> dict:
    """Run one request through the agent and apply the overflow policy; never raises for
    Claude or capacity trouble. Completed answers are remembered by request id.

    `context`: the Lambda context (bounds the time spent) or None. `deferrals`,
    `first_received_at` (epoch seconds), `transcript`, `model`: from a work-queue message.
    Raises IdempotencyAlreadyInProgressError while another invocation holds the request."""
    first_received_at = first_received_at or rt.clock()
    idempotency = IdempotencyConfig(event_key_jmespath="[tenant, request_id]",
                                    raise_on_no_idempotency_key=True,
                                    expires_after_seconds=rt.config.result_ttl_s)
    if context is not None and hasattr(context, "get_remaining_time_in_millis"):
        idempotency.register_lambda_context(context)

    @idempotent_function(data_keyword_argument="payload", persistence_store=rt.persistence,
                         config=idempotency)
    def answer(payload: dict) -> dict:
        response = _run(rt, request, context, deferrals, first_received_at, transcript, model)
        if response["status"] != "ok":
            # Only answers are remembered: a deferral, a rejection or an error must run again
            # when the request comes back (capacity or the upstream may have recovered).
            raise _NotFinal(response)
        return response

    try:
        return answer(payload={"request_id": request.request_id, "tenant": request.tenant})
    except _NotFinal as pending:
        return pending.response


def _run(rt: Runtime, request: AgentRequest, context, deferrals, first_received_at, transcript,
         model) -> dict:
    config = rt.config
    metrics = RequestMetrics(tenant=request.tenant)
    started = time.monotonic()
    budget, time_left = request.deadline_s, None
    if hasattr(context, "get_remaining_time_in_millis"):
        def time_left() -> float:
            """Seconds this invocation may still spend on a Claude call."""
            return context.get_remaining_time_in_millis() / 1000 - LAMBDA_SAFETY_S

        budget = min(budget, time_left())
    deadline_at = started + max(0.0, budget)

    def tool_context() -> ToolContext:
        session = assume_tool_role(rt.sts, config.tool_role_arn, request_id=request.request_id,
                                   tenant=request.tenant, agent=config.agent_name)
        return ToolContext(session=session, tenant=request.tenant,
                           request_id=request.request_id,
                           resources=ToolResources(config.docs_bucket, config.docs_prefix,
                                                   config.notes_table,
                                                   named=config.tool_needs))

    try:
        outcome = run_agent(request, rt.claude, config, tool_context=tool_context,
                            metrics=metrics, deadline_at=deadline_at, time_left=time_left,
                            logger=logger, transcript=transcript, model=model, mcp=rt.mcp)
        if outcome.status == "deferred":
            response = _overflow(rt, request, outcome, metrics, deferrals, first_received_at)
        elif outcome.status == "rejected":
            response = _over_budget(rt, request, outcome, metrics, deferrals,
                                    first_received_at)
        elif outcome.status == "ok":
            metrics.add(outcome.model, "Succeeded")
            response = {"status": "ok", "request_id": request.request_id, "model": outcome.model,
                        "output": outcome.output, "usage": outcome.usage}
        else:
            metrics.add(outcome.model, "Failed")
            response = {"status": "error", "request_id": request.request_id,
                        "model": outcome.model, "error": outcome.error}
        logger.info("request finished", extra={
            "request_id": request.request_id, "tenant": request.tenant,
            "caller": request.caller, "status": response["status"], "model": outcome.model,
            "model_calls": outcome.model_calls, "tool_calls": outcome.tool_calls,
            "usage": outcome.usage, "duration_ms": round((time.monotonic() - started) * 1000),
            **({"prompt": request.prompt} if config.log_prompts else {})})
        put_result(rt.dynamodb, config.results_table, request.tenant, response, expires_at(rt))
        return response
    finally:
        metrics.flush()


def _over_budget(rt: Runtime, request: AgentRequest, outcome: LoopOutcome,
                 metrics: RequestMetrics, deferrals: int, first_received_at: float) -> dict:
    """A call refused for budget. Only open reservations in the way ("budget_reserved"):
    they settle within seconds (or expire at their lease), so the overflow policy applies as
    for capacity, retrying after at most BUDGET_RESERVED_RETRY_S. A spent window ("budget"):
    the tenant's action "batch" queues the request on the batch lane when it can take it (the
    lane is deployed and the loop has not started: no tool results mid-loop); otherwise
    "rejected" with the retry-after ("degrade" happened in the guard already)."""
    if outcome.reason == "budget_reserved":
        outcome.retry_after = min(outcome.retry_after or 0.0, BUDGET_RESERVED_RETRY_S)
        return _overflow(rt, request, outcome, metrics, deferrals, first_received_at)
    if outcome.budget_action == "batch" and rt.config.batch_queue_url \
            and outcome.model_calls == 0 and outcome.reason == "budget":
        return enqueue_batch(rt, request)
    metrics.add(outcome.model, "Rejected")
    return {"status": "rejected", "request_id": request.request_id, "model": outcome.model,
            "retry_after": outcome.retry_after,
            "error": {"type": outcome.reason or "budget",
                      "message": f"the tenant's budget is spent ({outcome.reason}); retry "
                                 f"after {outcome.retry_after or 0:.0f} s"}}


def _overflow(rt: Runtime, request: AgentRequest, outcome: LoopOutcome,
              metrics: RequestMetrics, deferrals: int, first_received_at: float) -> dict:
    """The overflow policy for a request the loop could not serve within its deadline."""
    if rt.config.overflow_policy == "reject":
        metrics.add(outcome.model, "Rejected")
        return {"status": "rejected", "request_id": request.request_id,
                "model": outcome.model, "retry_after": outcome.retry_after,
                "error": {"type": "capacity",
                          "message": f"no capacity within the deadline ({outcome.reason}); "
                                     f"retry after {outcome.retry_after:.1f} s"}}
    metrics.add(outcome.model, "Deferred")
    return defer(rt, request, outcome, deferrals, first_received_at)
