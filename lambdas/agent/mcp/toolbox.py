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

Quotas (shared by every container through the bucket table; `agent.mcp.client` says what is
counted): every HTTP request a session sends first books one request from the server's own
bucket item (`mcp#<server>`: `requests_per_second` with a burst of `burst`) and then takes a
connection lease (`guard.leases` semaphore `mcp#<server>#connections`, `max_connections`),
released when its response is closed; opening a session first takes a session lease
(`mcp#<server>#sessions`, `max_sessions`), released once the server answered the session's
DELETE (a session it still counts keeps its lease until the lease expires). A lease waiter
retries at the earliest expiry its refused write revealed. Everything waits within the
server's `max_wait_s`; past it the model gets a clear tool error with `retry_after`. A 429
from the server writes the shared cool-down and is retried (bounded by `max_attempts` and
the wait budget).

The audit line holds the outcome, the error CLASS and a fixed summary per class
(`audit_detail`), never the tool's input nor the text of the server's answer.

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

from ..contract import LogEvent
from ..tool_runner import OK, audit_tool_call, classify_result
from ..tools.registry import validate_tool_input
from .config import McpServer, McpTool, tool_index
from .errors import (McpBudgetSpent, McpProtocolError, McpSessionExpired, McpThrottled,
                     McpUnavailable)
from .gate import Gate

log = logging.getLogger(__name__)

TRUNCATION_MARKER = "...[truncated by Bulwark: {omitted} more characters]"
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

    `buckets`: server name -> `guard.TokenBucket`, the server's request budget (None: none).
    `connections` / `sessions`: server name -> `guard.leases.LeaseSemaphore` capping its
    concurrent HTTP exchanges / open sessions (None: no cap). `connect(server, tool_context,
    gate) -> session`: opens a session (default: the SDK client, imported on first use).
    `secret(arn) -> str`: bearer tokens. `clock` (monotonic seconds) and `sleep` injectable.
    `timeout_s`: seconds each HTTP exchange and each call may take.
    """

    def __init__(self, servers: Mapping[str, McpServer], *, logger: Any,
                 buckets: Mapping[str, Any] | None = None,
                 connections: Mapping[str, Any] | None = None,
                 sessions: Mapping[str, Any] | None = None,
                 connect: Callable[[McpServer, Any, Any], Any] | None = None,
                 secret: Callable[[str], str] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, max_attempts: int = 3,
                 timeout_s: float = 20.0) -> None:
        self.servers = dict(servers)
        self.tools = tool_index(self.servers)
        self.logger = logger
        self.buckets = dict(buckets or {})
        self.connections = dict(connections or {})
        self.sessions = dict(sessions or {})
        self._connect = connect or self._sdk_connect
        self._secret = secret
        self.clock, self.sleep = clock, sleep
        self.max_attempts = max_attempts
        self.timeout_s = timeout_s
        #: server name -> {tool name: reason} of tools disabled by verification
        self.disabled: dict[str, dict[str, str]] = {}
        self._verified: set[str] = set()
        self._lock = threading.Lock()

    @classmethod
    def shared(cls, servers: Mapping[str, McpServer], *, table: str, dynamodb: Any,
               logger: Any, **kwargs) -> "McpToolbox":
        """A toolbox whose quotas are shared through the bucket table `table`: per server its
        request bucket and its connection and session semaphores."""
        from guard import Limits, TokenBucket
        from guard.leases import LeaseSemaphore

        def limits(server: McpServer) -> Limits:
            per_minute = server.requests_per_second * 60.0
            return Limits(rpm=per_minute, burst_fraction=min(1.0, server.burst / per_minute))

        # max_slack_s=0: at a few requests per second, placing each booking one store round
        # trip behind the queue (the default slack) would cost a large share of every 0.5 s
        # interval and about halve the rate; a booking that loses a race is rewritten instead
        return cls(servers, logger=logger, buckets={
            name: TokenBucket(table, server.bucket_id, limits(server), dynamodb,
                              max_slack_s=0.0)
            for name, server in servers.items()}, connections={
            name: LeaseSemaphore(table, server.connections_semaphore, server.max_connections,
                                 dynamodb) for name, server in servers.items()}, sessions={
            name: LeaseSemaphore(table, server.sessions_semaphore, server.max_sessions,
                                 dynamodb) for name, server in servers.items()}, **kwargs)

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
            self.logger.warning(LogEvent.MCP_TOOL_DISABLED, extra={
                "mcp_server": server.name, "tool": name, "reason": reason})
        self.disabled[server.name] = disabled
        self._verified.add(server.name)

    def needs_verification(self, server: McpServer) -> bool:
        return server.name not in self._verified

    # -- sessions -----------------------------------------------------------------------------
    def _sdk_connect(self, server: McpServer, tool_context: Any, gate: Any = None):
        from . import client  # the SDK loads here, on the container's first MCP call

        if server.auth["type"] == "sigv4":
            credentials = tool_context.session.get_credentials()
            auth = client.SigV4Auth(credentials.get_frozen_credentials,
                                    server.auth["service"], server.auth["region"])
        else:
            if self._secret is None:
                raise McpProtocolError("no secret reader for the bearer token")
            auth = client.BearerAuth(self._secret(server.auth["secret_arn"]))
        session = client.McpSession(server.url, auth, timeout_s=self.timeout_s, gate=gate,
                                    wait_s=server.max_wait_s)
        session.open()
        return session


#: error class -> the summary an audit line carries for it (fixed text: never the tool's
#: input, never the server's answer, which may echo the input)
AUDIT_SUMMARIES = {
    "NotAllowed": "not an allowed MCP tool",
    "InvalidInput": "the input does not match the tool's schema",
    "Disabled": "the tool was disabled by verification against tools/list",
    "McpBudgetSpent": "the kit's share of the server's quotas was not available in time",
    "McpThrottled": "the server kept answering 429",
    "McpSessionExpired": "the server's session expired again",
    "McpUnavailable": "the server could not be reached",
    "McpProtocolError": "the server answered an MCP error or a malformed answer",
    "AccessDenied": "the tool reported that IAM denied an AWS action",
    "ToolError": "the tool reported an error",
    "MalformedResult": "the tool's result was not text",
    "NoAnswer": "no answer within the attempts allowed",
}


def audit_detail(error_class: str) -> str:
    """The audit line's `detail` for a failed MCP call: its class and a fixed summary."""
    return f"{error_class}: {AUDIT_SUMMARIES.get(error_class, 'unexpected failure')}"


class McpRequest:
    """One agent request's MCP calls (sessions opened lazily, closed by `close()`)."""

    def __init__(self, toolbox: McpToolbox, tool_context: Callable[[], Any], *,
                 caller: str | None) -> None:
        self.toolbox = toolbox
        self._tool_context = tool_context
        self.caller = caller
        self._sessions: dict[str, Any] = {}
        self._gates: dict[str, Gate] = {}
        self._session_leases: dict[str, Any] = {}

    def call(self, name: str, tool_input: Any) -> dict:
        """Run MCP tool `name`; returns the tool result (never raises) and writes an audit
        line."""
        box = self.toolbox
        started = box.clock()
        server = box.tools.get(name)
        ctx = None
        try:
            ctx = self._tool_context()
            result, error_class = self._call(server, name, tool_input, ctx)
        except Exception as err:  # noqa: BLE001 - an MCP call never ends the agent loop
            log.exception("MCP tool %r failed", name)
            result, error_class = {"error": f"MCP tool failed: {type(err).__name__}"}, \
                type(err).__name__
        outcome = classify_result(result)
        try:
            audit_tool_call(box.logger, request_id=getattr(ctx, "request_id", "unknown"),
                            caller=self.caller, tenant=getattr(ctx, "tenant", "unknown"),
                            tool=name, target=f"mcp://{server.name if server else '?'}/{name}",
                            outcome=outcome, duration_ms=(box.clock() - started) * 1000.0,
                            detail=audit_detail(error_class) if outcome != OK else None)
        except Exception:  # noqa: BLE001 - a broken logger must not become a tool failure
            log.exception("audit line for MCP tool %r not written", name)
        return result

    def _call(self, server: McpServer | None, name: str, tool_input: Any,
              ctx: Any) -> tuple[dict, str | None]:
        """(tool result, error class for the audit line; None on success)."""
        box = self.toolbox
        if server is None:
            return {"error": f"tool {name!r} is not an allowed MCP tool",
                    "invalid_input": True}, "NotAllowed"
        tool: McpTool = server.tools[name]
        problem = validate_tool_input(tool, tool_input)
        if problem:
            return {"error": problem, "invalid_input": True}, "InvalidInput"
        if name in box.disabled.get(server.name, {}):
            return {"error": f"MCP tool {name!r} is disabled: "
                             f"{box.disabled[server.name][name]}"}, "Disabled"
        deadline = box.clock() + server.max_wait_s
        reopened = False
        for attempt in range(1, box.max_attempts + 1):
            try:
                session = self._session(server, ctx, deadline)
                if name in box.disabled.get(server.name, {}):
                    return {"error": f"MCP tool {name!r} is disabled: "
                                     f"{box.disabled[server.name][name]}"}, "Disabled"
                is_error, text, structured = session.call_tool(name, tool_input)
            except McpBudgetSpent as err:
                return {"error": str(err), "throttled": True,
                        "retry_after": round(err.retry_after or 0.0, 3)}, "McpBudgetSpent"
            except McpSessionExpired:
                self._drop(server)
                if not reopened:
                    reopened = True
                    continue
                return {"error": f"MCP server {server.name!r}: the session expired again"}, \
                    "McpSessionExpired"
            except McpThrottled as err:
                # Like Claude's 429: every caller backs off (shared cool-down), then a bounded
                # retry within the wait budget.
                wait = err.retry_after if err.retry_after is not None else 1.0
                self._cool_down(server, wait)
                if attempt < box.max_attempts and box.clock() + wait <= deadline:
                    if server.name not in box.buckets:  # else the next request waits it out
                        box.sleep(wait)
                    continue
                return {"error": f"the MCP server is throttling; retry after {wait:.1f} s",
                        "throttled": True, "retry_after": round(wait, 3)}, "McpThrottled"
            except McpUnavailable as err:
                self._drop(server)
                return {"error": f"MCP server {server.name!r} unreachable: {err}"}, \
                    "McpUnavailable"
            except McpProtocolError as err:
                self._drop(server)
                return {"error": f"MCP server {server.name!r}: {err}"}, "McpProtocolError"
            return self._result(server, is_error, text, structured)
        return {"error": f"MCP tool {name!r} gave no answer after {box.max_attempts} "
                         f"attempts"}, "NoAnswer"

    # -- pieces ---------------------------------------------------------------------------------
    def _cool_down(self, server: McpServer, seconds: float) -> None:
        bucket = self.toolbox.buckets.get(server.name)
        if bucket is not None:
            try:
                bucket.cool_down(seconds)
            except Exception:  # noqa: BLE001 - the local backoff still applies
                log.exception("MCP cool-down not written")

    def _session(self, server: McpServer, ctx: Any, deadline: float):
        """The request's open session on `server` (opened, and verified once per container,
        on first use); raises the client's errors, `McpBudgetSpent` for a spent quota share."""
        box = self.toolbox
        gate = self._gates.setdefault(server.name, Gate(box, server))
        gate.deadline = deadline
        session = self._sessions.get(server.name)
        if session is not None:
            return session
        semaphore = box.sessions.get(server.name)
        if semaphore is not None and server.name not in self._session_leases:
            attempt = semaphore.acquire(server.session_lease_s,
                                        max_wait_s=max(0.0, deadline - box.clock()),
                                        sleep=box.sleep)
            if not attempt.granted:
                raise McpBudgetSpent(f"all {server.max_sessions} MCP sessions on "
                                     f"{server.name!r} are open ({attempt.reason}); retry "
                                     f"after {attempt.retry_after:.1f} s", attempt.retry_after)
            self._session_leases[server.name] = attempt.lease
        try:
            session = box._connect(server, ctx, gate)
        except BaseException:
            self._release_session_lease(server)
            raise
        self._sessions[server.name] = session
        with box._lock:
            if box.needs_verification(server):
                box.verify(server, session.list_tools())
        return session

    def _drop(self, server: McpServer) -> None:
        session = self._sessions.pop(server.name, None)
        if session is not None:
            gate = self._gates.get(server.name)
            if gate is not None:  # the DELETE gets its own wait budget
                gate.deadline = self.toolbox.clock() + server.max_wait_s
            try:
                session.close()
            except Exception:  # noqa: BLE001
                log.exception("MCP session close failed")
            if getattr(session, "established", False) and not getattr(session, "terminated",
                                                                      True):
                # the server still counts the session: its lease frees at its expiry
                self._session_leases.pop(server.name, None)
        self._release_session_lease(server)

    def _release_session_lease(self, server: McpServer) -> None:
        lease = self._session_leases.pop(server.name, None)
        if lease is not None:
            try:
                self.toolbox.sessions[server.name].release(lease)
            except Exception:  # noqa: BLE001 - an unreleased lease frees itself at its expiry
                log.exception("MCP session lease not released")

    def _result(self, server: McpServer, is_error: bool, text: str,
                structured: Any) -> tuple[dict, str | None]:
        if not isinstance(text, str):
            return {"error": "malformed result from the MCP server"}, "MalformedResult"
        limit = server.max_result_chars
        truncated = len(text) > limit
        if truncated:
            omitted = len(text) - limit
            text = text[:limit] + TRUNCATION_MARKER.format(omitted=omitted)
        if is_error:
            result = {"error": text or "the MCP tool reported an error"}
            if any(marker in text for marker in _DENIED_MARKERS):
                result["denied"] = True
                return result, "AccessDenied"
            return result, "ToolError"
        result: dict[str, Any] = {"content": text}
        if structured is not None and not text:  # text carries it otherwise (same JSON)
            encoded = json.dumps(structured, default=str)
            result["content"] = encoded[:limit] + (TRUNCATION_MARKER.format(
                omitted=len(encoded) - limit) if len(encoded) > limit else "")
            truncated = len(encoded) > limit
        if truncated:
            result["truncated"] = True
        return result, None

    def close(self) -> None:
        for name in list(self._sessions):
            self._drop(self.toolbox.servers[name])
