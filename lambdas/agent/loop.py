"""The agent loop: multi-turn Claude tool use through the guarded client, bounded by model calls
(iterations) and tokens. Tools run under the tool role (see `credentials.assume_tool_role`).

The loop is resumable: a "deferred" outcome carries the conversation so far (`transcript`), and
`run_agent(..., transcript=..., spent=...)` continues from it, so a deferral never repeats a tool
call, and MAX_ITERATIONS and MAX_TOTAL_TOKENS bound the request over all its invocations.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from guard.outcomes import DEFERRED, ERROR, OK, REJECTED
from guard.usage import Usage

from .tool_runner import run_tool
from .config import AgentConfig
from .requests import AgentRequest, Spent
from .telemetry import RequestMetrics
from .tools.registry import ToolContext, claude_tool_definitions


@dataclass
class LoopOutcome:
    """status (`guard.outcomes`): "ok" | "deferred" | "rejected" (a spent budget;
    `budget_action` is the tenant's action) | "error". `usage` sums every call (tokens)."""

    status: str
    model: str
    output: str | None = None
    retry_after: float | None = None
    reason: str | None = None
    error: dict[str, str] | None = None
    degraded: bool = False
    usage: Usage = field(default_factory=Usage)
    transcript: list[dict] = field(default_factory=list)
    model_calls: int = 0
    tool_calls: int = 0
    budget_action: str | None = None
    ticket: float | None = None  # on "deferred": the request's place in its tenant's queue


def _block_to_param(block: Any) -> dict:
    """An SDK response content block -> the dict form a request accepts."""
    kind = getattr(block, "type", None)
    if kind == "text":
        return {"type": "text", "text": block.text}
    if kind == "tool_use":
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    return block.model_dump(mode="json", exclude_none=True)


def run_agent(request: AgentRequest, claude, config: AgentConfig, *,
              tool_context: Callable[[], ToolContext], metrics: RequestMetrics,
              deadline_at: float, logger, transcript: list[dict] | None = None,
              time_left: Callable[[], float] | None = None,
              model: str | None = None, clock: Callable[[], float] = time.monotonic,
              mcp=None, spent: Spent | None = None) -> LoopOutcome:
    """Run (or resume) the tool-use loop for `request` until Claude ends its turn.

    `claude`: a `guard.GuardedClaude` routing every configured model to its bucket.
    `tool_context`: returns the `ToolContext` (tool-role session), called on first tool use.
    `deadline_at`: `clock()` value after which waiting for capacity is not allowed.
    `time_left`: seconds the invocation may still spend (bounds each Claude call's timeout).
    `mcp`: an `agent.mcp.toolbox.McpToolbox` (None: no MCP tools); its sessions for this
    request are closed when the loop ends.
    `spent`: model calls and tokens earlier invocations used (a deferred request's); they count
    against MAX_ITERATIONS and MAX_TOTAL_TOKENS. The outcome's `model_calls` and `usage` are
    this invocation's only.
    """
    model = model or request.model
    messages = list(transcript or [{"role": "user", "content": request.prompt}])
    outcome = LoopOutcome(status=ERROR, model=model, transcript=messages)
    system = [{"type": "text", "text": config.system_prompt,
               "cache_control": {"type": "ephemeral"}}]  # cached with the tool definitions
    tools = claude_tool_definitions()
    context: ToolContext | None = None

    def shared_context() -> ToolContext:  # one tool-role session for built-in and MCP tools
        nonlocal context
        if context is None:
            context = tool_context()
        return context

    mcp_calls = None
    if mcp is not None and mcp.servers:
        tools = _with_cache_breakpoint_last(tools, mcp.definitions())
        mcp_calls = mcp.request(shared_context, caller=request.caller)
    try:
        return _loop(_Turns(request=request, claude=claude, config=config, system=system,
                            tools=tools, tool_context=shared_context, mcp_calls=mcp_calls,
                            metrics=metrics, deadline_at=deadline_at, logger=logger,
                            clock=clock, time_left=time_left, before=spent or Spent()),
                     outcome, messages)
    finally:
        if mcp_calls is not None:
            mcp_calls.close()


def _with_cache_breakpoint_last(tools: list[dict], more: list[dict]) -> list[dict]:
    """Built-in then MCP tool definitions, with the prompt-cache breakpoint on the last one."""
    combined = [{k: v for k, v in tool.items() if k != "cache_control"} for tool in tools + more]
    if combined:
        combined[-1]["cache_control"] = {"type": "ephemeral"}
    return combined


@dataclass(frozen=True)
class _Turns:
    """What every turn of one request's loop works with (built once by `run_agent`).

    `tool_context`: the request's one tool-role session (made on first use). `mcp_calls`: the
    request's MCP sessions (None: no MCP tools). `deadline_at`: `clock()` value (seconds)
    after which waiting for capacity is not allowed. `time_left`: seconds the invocation may
    still spend. `before`: what earlier invocations of a deferred request spent.
    """

    request: AgentRequest
    claude: Any
    config: AgentConfig
    system: list[dict]
    tools: list[dict]
    tool_context: Callable[[], ToolContext]
    mcp_calls: Any
    metrics: RequestMetrics
    deadline_at: float
    logger: Any
    clock: Callable[[], float]
    time_left: Callable[[], float] | None
    before: Spent

    def create(self, model: str, messages: list[dict], **extra):
        """One guarded Claude call (a `guard` CallResult) of the conversation so far on
        `model`, bounded by the request's deadline and the invocation's time left."""
        request, config = self.request, self.config
        return self.claude.create(
            model=model, max_tokens=min(request.max_tokens, config.models[model].max_output_tokens),
            system=self.system, tools=self.tools, messages=messages,
            deadline_s=max(0.0, self.deadline_at - self.clock()), time_left_s=self.time_left,
            tenant=request.tenant, priority=request.priority, **extra)

    def run_tools(self, tool_uses: list) -> list[dict]:
        """The `tool_result` blocks for Claude's `tool_use` blocks, in order (MCP tools through
        the request's MCP sessions, built-in tools under the tool role)."""
        results = []
        for block in tool_uses:
            if self.mcp_calls is not None and self.mcp_calls.toolbox.offers(block.name):
                output = self.mcp_calls.call(block.name, block.input)
            else:
                # a name no tool has is refused with its own audit line (outcome
                # "unknown_tool") and an error tool_result
                output = run_tool(self.tool_context(), block.name, block.input,
                                  caller=self.request.caller, logger=self.logger)
            results.append({"type": "tool_result", "tool_use_id": block.id,
                            "content": json.dumps(output, default=str),
                            "is_error": "error" in output})
        return results


def _loop(turns: _Turns, outcome: LoopOutcome, messages: list[dict]) -> LoopOutcome:
    request, config, metrics = turns.request, turns.config, turns.metrics
    for _ in range(config.max_iterations - turns.before.model_calls):
        spent = turns.before.tokens + sum(outcome.usage.values())
        if spent >= config.max_total_tokens:
            outcome.error = {"type": "token_budget_exceeded",
                             "message": f"the agent used {spent:,} tokens, over the "
                                        f"{config.max_total_tokens:,}-token budget"}
            return outcome
        result = turns.create(outcome.model, messages, ticket=request.ticket)
        metrics.record_call(result.model, result, config.models[result.model].prices)
        metrics.record_tenant(request.tenant, request.priority, result)
        outcome.model = result.model  # a budget's "degrade" may have answered on another
        if result.status == DEFERRED and _may_degrade(config, outcome):
            degraded = turns.create(config.degrade_model, messages)
            metrics.record_call(config.degrade_model, degraded,
                                config.models[config.degrade_model].prices)
            if degraded.status == OK:  # otherwise keep the (retryable) deferral
                metrics.add(config.degrade_model, "Degraded")
                outcome.model, outcome.degraded, result = config.degrade_model, True, degraded
        if result.status == DEFERRED:
            outcome.status, outcome.retry_after, outcome.reason = (DEFERRED,
                                                                   result.retry_after,
                                                                   result.reason)
            outcome.ticket = result.ticket
            return outcome
        if result.status == REJECTED:  # a spent budget, refused before any Claude call
            outcome.status, outcome.retry_after, outcome.reason = (REJECTED,
                                                                   result.retry_after,
                                                                   result.reason)
            outcome.budget_action = result.budget_action
            return outcome
        if result.status != OK:
            outcome.error = result.error
            return outcome
        outcome.model_calls += 1
        outcome.usage.add(result.usage)
        message = result.message
        messages.append({"role": "assistant",
                         "content": [_block_to_param(block) for block in message.content]})
        tool_uses = [block for block in message.content if block.type == "tool_use"]
        if message.stop_reason != "tool_use" or not tool_uses:
            outcome.status = OK
            outcome.output = "".join(b.text for b in message.content if b.type == "text")
            return outcome
        outcome.tool_calls += len(tool_uses)
        messages.append({"role": "user", "content": turns.run_tools(tool_uses)})
    outcome.error = {"type": "iteration_limit",
                     "message": f"the agent did not finish within {config.max_iterations} "
                                "model calls"}
    return outcome


def _may_degrade(config: AgentConfig, outcome: LoopOutcome) -> bool:
    return (config.overflow_policy == "degrade" and config.degrade_model is not None
            and outcome.model != config.degrade_model)
