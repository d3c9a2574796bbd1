"""One structured audit line per tool call, and the one place tool calls are run.

CloudTrail answers "which AWS calls did the tool role make, for which request" (the session
name and source identity are the request id); this line answers the agent's side: which tool
Claude asked for, on which resource, for whom, with what outcome. Both share `request_id`.

The line never holds the prompt, the tool input's text or any credential: only the target
resource, the outcome, a duration and a short detail: a built-in tool's own error message
(written by the kit), or for an MCP tool its error class and a fixed summary
(`agent.mcp.toolbox.audit_detail`: a server's error text may echo the input).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable

from .contract import LogEvent
from .tools.registry import TOOLS, Tool, ToolContext, validate_tool_input

log = logging.getLogger(__name__)

OK, DENIED, ERROR, INVALID_INPUT = "ok", "denied", "error", "invalid_input"
#: Claude asked for a name no tool has (nothing ran; the model gets an error tool_result).
UNKNOWN_TOOL = "unknown_tool"
OUTCOMES = (OK, DENIED, ERROR, INVALID_INPUT, UNKNOWN_TOOL)

#: Longest target and detail (characters) written to an audit line.
MAX_FIELD_CHARS = 1024
INTERNAL_ERROR = "internal error in tool"


def _clip(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
        return value[:MAX_FIELD_CHARS] + "..."
    return value


def audit_tool_call(logger: Any, *, request_id: str, caller: str | None, tenant: str,
                    tool: str, target: str, outcome: str, duration_ms: float,
                    detail: str | None = None) -> dict:
    """Write one JSON audit line (`logger.info`) for a tool call; returns the record written.

    A Powertools `Logger` (recognised by `append_keys`) gets the fields as `extra`, so they sit
    at the top level of its JSON line; any other logger gets the JSON text as the message.

    `caller`: who invoked the agent (e.g. the invoking principal's ARN; "unknown" when None,
    so the field is always present). `target`: the AWS
    resource acted on. `outcome`: "ok", "denied", "error", "invalid_input" or "unknown_tool".
    `duration_ms`: milliseconds the tool took. `detail`: short reason for a failed outcome.
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome {outcome!r} must be one of {', '.join(OUTCOMES)}")
    record = {"audit": LogEvent.TOOL_CALL, "request_id": request_id, "caller": caller or "unknown",
              "tenant": tenant, "tool": tool, "target": _clip(target), "outcome": outcome,
              "duration_ms": round(float(duration_ms), 3)}
    if detail is not None:
        record["detail"] = _clip(str(detail))
    if hasattr(logger, "append_keys"):
        # A structured logger (Powertools Logger) writes one JSON line itself: the fields go
        # to its top level, so `audit`, `request_id`... are queryable in CloudWatch Logs.
        logger.info(LogEvent.TOOL_CALL, extra=record)
    else:
        logger.info(json.dumps(record, sort_keys=True, separators=(",", ":")))
    return record


def classify_result(result: dict) -> str:
    """Outcome of a tool result: "denied", "invalid_input", "error" or "ok"."""
    if result.get("denied"):
        return DENIED
    if result.get("invalid_input"):
        return INVALID_INPUT
    if "error" in result:
        return ERROR
    return OK


def run_tool(ctx: ToolContext, tool: Tool | str, tool_input: Any, *, caller: str | None,
             logger: Any, clock: Callable[[], float] = time.monotonic) -> dict:
    """Validate the input, run the tool, write one audit line, return the tool's result.

    `tool` is a `Tool` or a tool name; a name no registered tool has runs nothing, gets an
    error result and an audit line with outcome "unknown_tool". `clock`: monotonic seconds,
    for `duration_ms`. Never raises: an unexpected exception in the tool becomes
    {"error": "internal error in tool"} with outcome "error".
    """
    started = clock()
    tool_name = tool if isinstance(tool, str) else tool.name
    known = TOOLS.get(tool) if isinstance(tool, str) else tool
    target = _target(ctx, known, tool_input) if known is not None else ""
    result = _call(ctx, known, tool_name, tool_input)
    outcome = UNKNOWN_TOOL if known is None else classify_result(result)
    try:
        audit_tool_call(logger, request_id=ctx.request_id, caller=caller, tenant=ctx.tenant,
                        tool=tool_name, target=target, outcome=outcome,
                        duration_ms=(clock() - started) * 1000.0,
                        detail=result.get("error") if outcome != OK else None)
    except Exception:  # noqa: BLE001 - a broken logger must not become a tool failure
        log.exception("audit line for tool %r (request %s) not written", tool_name,
                      ctx.request_id)
    return result


def _call(ctx: ToolContext, tool: Tool | None, tool_name: str, tool_input: Any) -> dict:
    if tool is None:
        return {"error": f"unknown tool {tool_name!r}", "invalid_input": True}
    problem = validate_tool_input(tool, tool_input)
    if problem:
        return {"error": problem, "invalid_input": True}
    try:
        result = tool.run(ctx, tool_input)
    except Exception:  # noqa: BLE001 - a tool bug must not end the agent loop
        log.exception("tool %r raised (request %s)", tool_name, ctx.request_id)
        return {"error": INTERNAL_ERROR}
    if not isinstance(result, dict):
        log.error("tool %r returned %s, not a dict", tool_name, type(result).__name__)
        return {"error": INTERNAL_ERROR}
    return result


def _target(ctx: ToolContext, tool: Tool, tool_input: Any) -> str:
    """The tool's target, or "" when the input is too malformed to name one."""
    try:
        return str(tool.target(ctx, tool_input if isinstance(tool_input, dict) else {}))
    except Exception:  # noqa: BLE001 - naming the target must never fail the call
        return ""
