"""MCP tool calls for the agent loop: offering, verification, sessions, rate budget, audit.

Per container (`McpToolbox`, built at init from MCP_SERVERS: a JSON parse, no import of the
SDK, no network): the tools offered to Claude come from configuration. On the first MCP call
of the container, each server's `tools/list` is checked against it: a configured tool the
server does not list, or lists with a different input schema, is disabled and logged, and
the verified list is cached for the container's life.

Per request (`McpRequest`): a session per server, opened on the request's first call with the
request's tool-role credentials (source identity = request id, tenant session tag), so every
AWS action the server takes is attributable to the request; closed when the request ends. A
session the server has forgotten (expired session id) is re-initialised once.

Rate budget: every MCP round trip (initialize, tools/list, tools/call) is acquired from the
server's own bucket item (`mcp#<server>`, same table as Claude's buckets). A 429 from the
server writes the shared cool-down and is retried (bounded by `max_attempts` and the wait
budget); when the budget is spent the model gets a clear tool error with `retry_after`.

Every outcome, including a tool outside the allowlist, an unreachable server, a tool that
disappeared and a malformed or oversized result, is a tool result plus one audit line; a call
never raises into the loop.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Callable, Mapping

from ..tool_runner import OK, audit_tool_call, classify_result
from ..tools.registry import validate_tool_input
from .config import McpServer, McpTool, tool_index
from .errors import McpProtocolError, McpSessionExpired, McpThrottled, McpUnavailable

log = logging.getLogger(__name__)

TRUNCATION_MARKER = "...[truncated by Bulwark: {omitted} more characters]"
#: Seconds a call may wait for the rate budget (or a 429's retry-after) before giving up.
MAX_WAIT_S = 5.0
_ANNOTATION_KEYS = frozenset({"title", "description", "examples", "$schema", "default"})
_DENIED_MARKERS = ("AccessDenied", "UnauthorizedOperation", "not authorized to perform")


def schema_contract(schema: Any) -> Any:
    """The part of an input schema that is the call's contract: names, types, required,
    constraints; annotations (title, description, examples, default) removed."""
    if isinstance(schema, list):
        return [schema_contract(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    contract = {}
    for key, value in sorted(schema.items()):
        if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
            contract[key] = {name: schema_contract(sub) for name, sub in sorted(value.items())}
        elif key not in _ANNOTATION_KEYS:
            contract[key] = schema_contract(value)
    return contract


class McpToolbox:
    """The container's MCP tool sources.

    `buckets`: server name -> `guard.TokenBucket` for its rate budget (None: no budget).
    `connect(server, tool_context) -> session`: opens a session (default: the SDK client,
    imported on first use). `secret(arn) -> str`: bearer tokens. `clock`/`sleep` injectable.
    """

    def __init__(self, servers: Mapping[str, McpServer], *, logger: Any,
                 buckets: Mapping[str, Any] | None = None,
                 connect: Callable[[McpServer, Any], Any] | None = None,
                 secret: Callable[[str], str] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, max_attempts: int = 3,
                 timeout_s: float = 20.0) -> None:
        self.servers = dict(servers)
        self.tools = tool_index(self.servers)
        self.logger = logger
        self.buckets = dict(buckets or {})
        self._connect = connect or self._sdk_connect
        self._secret = secret
        self.clock, self.sleep = clock, sleep
        self.max_attempts = max_attempts
        self.timeout_s = timeout_s
        #: server name -> {tool name: reason} of tools disabled by verification
        self.disabled: dict[str, dict[str, str]] = {}
        self._verified: set[str] = set()
        self._lock = threading.Lock()

    # -- offering -----------------------------------------------------------------------------
    def definitions(self) -> list[dict]:
        """Claude tool definitions from configuration, minus tools verification disabled."""
        return [tool.definition() for name, tool in self._configured()
                if name not in self.disabled.get(self.tools[name].name, {})]

    def _configured(self):
        for server in self.servers.values():
            for name, tool in server.tools.items():
                yield name, tool

    def offers(self, name: str) -> bool:
        return name in self.tools

    def request(self, tool_context: Callable[[], Any], *, caller: str | None) -> "McpRequest":
        return McpRequest(self, tool_context, caller=caller)

    # -- verification (once per container) ---------------------------------------------------
    def verify(self, server: McpServer, listed: list[dict]) -> None:
        """Compare the server's `tools/list` with configuration; disable and log mismatches."""
        by_name = {tool["name"]: tool for tool in listed}
        disabled: dict[str, str] = {}
        for name, tool in server.tools.items():
            found = by_name.get(name)
            if found is None:
                disabled[name] = "the server no longer lists it"
            elif schema_contract(found.get("input_schema")) != schema_contract(
                    tool.input_schema):
                disabled[name] = "its input schema changed on the server"
        for name, reason in disabled.items():
            self.logger.warning("MCP tool disabled", extra={
                "mcp_server": server.name, "tool": name, "reason": reason})
        self.disabled[server.name] = disabled
        self._verified.add(server.name)

    def needs_verification(self, server: McpServer) -> bool:
        return server.name not in self._verified

    # -- sessions -----------------------------------------------------------------------------
    def _sdk_connect(self, server: McpServer, tool_context: Any):
        from . import client  # the SDK loads here, on the container's first MCP call

        if server.auth["type"] == "sigv4":
            credentials = tool_context.session.get_credentials()
            auth = client.SigV4Auth(credentials.get_frozen_credentials,
                                    server.auth["service"], server.auth["region"])
        else:
            if self._secret is None:
                raise McpProtocolError("no secret reader for the bearer token")
            auth = client.BearerAuth(self._secret(server.auth["secret_arn"]))
        session = client.McpSession(server.url, auth, timeout_s=self.timeout_s)
        session.open()
        return session


class McpRequest:
    """One agent request's MCP calls (sessions opened lazily, closed by `close()`)."""

    def __init__(self, toolbox: McpToolbox, tool_context: Callable[[], Any], *,
                 caller: str | None) -> None:
        self.toolbox = toolbox
        self._tool_context = tool_context
        self.caller = caller
        self._sessions: dict[str, Any] = {}

    def call(self, name: str, tool_input: Any) -> dict:
        """Run MCP tool `name`; returns the tool result (never raises) and writes an audit
        line."""
        box = self.toolbox
        started = box.clock()
        server = box.tools.get(name)
        ctx = None
        try:
            ctx = self._tool_context()
            result = self._call(server, name, tool_input, ctx)
        except Exception as err:  # noqa: BLE001 - an MCP call never ends the agent loop
            log.exception("MCP tool %r failed", name)
            result = {"error": f"MCP tool failed: {type(err).__name__}"}
        outcome = classify_result(result)
        try:
            audit_tool_call(box.logger, request_id=getattr(ctx, "request_id", "unknown"),
                            caller=self.caller, tenant=getattr(ctx, "tenant", "unknown"),
                            tool=name, target=f"mcp://{server.name if server else '?'}/{name}",
                            outcome=outcome, duration_ms=(box.clock() - started) * 1000.0,
                            detail=result.get("error") if outcome != OK else None)
        except Exception:  # noqa: BLE001 - a broken logger must not become a tool failure
            log.exception("audit line for MCP tool %r not written", name)
        return result

    def _call(self, server: McpServer | None, name: str, tool_input: Any, ctx: Any) -> dict:
        box = self.toolbox
        if server is None:
            return {"error": f"tool {name!r} is not an allowed MCP tool", "invalid_input": True}
        tool: McpTool = server.tools[name]
        problem = validate_tool_input(tool, tool_input)
        if problem:
            return {"error": problem, "invalid_input": True}
        if name in box.disabled.get(server.name, {}):
            return {"error": f"MCP tool {name!r} is disabled: "
                             f"{box.disabled[server.name][name]}"}
        deadline = box.clock() + MAX_WAIT_S
        reopened = False
        for attempt in range(1, box.max_attempts + 1):
            refused = self._budget(server, deadline)
            if refused:
                return refused
            try:
                session = self._session(server, ctx, deadline)
                if isinstance(session, dict):
                    return session
                if name in box.disabled.get(server.name, {}):
                    return {"error": f"MCP tool {name!r} is disabled: "
                                     f"{box.disabled[server.name][name]}"}
                is_error, text, structured = session.call_tool(name, tool_input)
            except McpSessionExpired:
                self._drop(server)
                if not reopened:
                    reopened = True
                    continue
                return {"error": f"MCP server {server.name!r}: the session expired again"}
            except McpThrottled as err:
                # Like Claude's 429: every caller backs off (shared cool-down), then a bounded
                # retry within the wait budget.
                wait = err.retry_after if err.retry_after is not None else 1.0
                self._cool_down(server, wait)
                if attempt < box.max_attempts and box.clock() + wait <= deadline:
                    if server.name not in box.buckets:  # else the next acquire waits it out
                        box.sleep(wait)
                    continue
                return {"error": f"the MCP server is throttling; retry after {wait:.1f} s",
                        "throttled": True, "retry_after": round(wait, 3)}
            except McpUnavailable as err:
                self._drop(server)
                return {"error": f"MCP server {server.name!r} unreachable: {err}"}
            except McpProtocolError as err:
                self._drop(server)
                return {"error": f"MCP server {server.name!r}: {err}"}
            return self._result(server, is_error, text, structured)
        return {"error": f"MCP tool {name!r} gave no answer after {box.max_attempts} attempts"}

    # -- pieces ---------------------------------------------------------------------------------
    def _budget(self, server: McpServer, deadline: float) -> dict | None:
        """Acquire one request from the server's bucket, waiting within `deadline`."""
        bucket = self.toolbox.buckets.get(server.name)
        if bucket is None:
            return None
        box = self.toolbox
        while True:
            grant = bucket.try_acquire(requests=1)
            if grant.granted:
                return None
            # a store error is transient (throttling, a timeout): retried like a refusal,
            # with the bucket's backoff, while the deadline allows
            if box.clock() + grant.retry_after > deadline:
                return {"error": f"the MCP rate budget for {server.name!r} is spent "
                                 f"({grant.reason}); retry after {grant.retry_after:.1f} s",
                        "throttled": True, "retry_after": round(grant.retry_after, 3)}
            box.sleep(grant.retry_after)

    def _cool_down(self, server: McpServer, seconds: float) -> None:
        bucket = self.toolbox.buckets.get(server.name)
        if bucket is not None:
            try:
                bucket.cool_down(seconds)
            except Exception:  # noqa: BLE001 - the local backoff still applies
                log.exception("MCP cool-down not written")

    def _session(self, server: McpServer, ctx: Any, deadline: float):
        session = self._sessions.get(server.name)
        if session is not None:
            return session
        box = self.toolbox
        session = box._connect(server, ctx)
        self._sessions[server.name] = session
        with box._lock:
            if box.needs_verification(server):
                refused = self._budget(server, deadline)
                if refused:
                    return refused
                box.verify(server, session.list_tools())
        return session

    def _drop(self, server: McpServer) -> None:
        session = self._sessions.pop(server.name, None)
        if session is not None:
            try:
                session.close()
            except Exception:  # noqa: BLE001
                log.exception("MCP session close failed")

    def _result(self, server: McpServer, is_error: bool, text: str, structured: Any) -> dict:
        if not isinstance(text, str):
            return {"error": "malformed result from the MCP server"}
        limit = server.max_result_chars
        truncated = len(text) > limit
        if truncated:
            omitted = len(text) - limit
            text = text[:limit] + TRUNCATION_MARKER.format(omitted=omitted)
        if is_error:
            result = {"error": text or "the MCP tool reported an error"}
            if any(marker in text for marker in _DENIED_MARKERS):
                result["denied"] = True
            return result
        result: dict[str, Any] = {"content": text}
        if structured is not None and not text:  # text carries it otherwise (same JSON)
            encoded = json.dumps(structured, default=str)
            result["content"] = encoded[:limit] + (TRUNCATION_MARKER.format(
                omitted=len(encoded) - limit) if len(encoded) > limit else "")
            truncated = len(encoded) > limit
        if truncated:
            result["truncated"] = True
        return result

    def close(self) -> None:
        for name in list(self._sessions):
            self._drop(self.toolbox.servers[name])
