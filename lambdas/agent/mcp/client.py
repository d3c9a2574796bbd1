"""The MCP SDK side: one streamable-HTTP session, driven synchronously.

This is the only module that imports the MCP SDK (`mcp` 2.x, async-only) and `httpx2`; the
toolbox imports it on the first MCP tool call of a container, so requests without MCP calls
never pay for it. The SDK's `Client` runs in an anyio blocking portal (one thread per open
session); `McpSession` exposes `list_tools()` and `call_tool()` as plain calls.

Authentication is an `httpx2.Auth`: `SigV4Auth` signs each HTTP request with botocore's SigV4
(signing service e.g. `aws-mcp`) using the request's tool-role credentials; `BearerAuth`
sends a token. Errors come out as the exceptions below, with the HTTP status the SDK hides
(it turns a 429 into a generic JSON-RPC error) recovered by a response hook.

What the kit counts (the AWS MCP Server's quotas are per account and Region):
- a SESSION is one initialised MCP session (`initialize` answered with an `Mcp-Session-Id`)
  until its DELETE is answered; the server keeps it, and counts it, between HTTP requests;
- a CONNECTION is one open HTTP exchange with the server: a request and its response, read to
  the end (a JSON body or an SSE stream). The streamable-HTTP transport also lets a client hold
  a standalone GET stream for server-initiated messages for the whole session; the agent takes
  none, so this client opens none (the SDK's GET is answered 405 here, as a server without that
  stream answers, and never sent), keeps no idle keep-alive connection, and sends one request
  at a time: a session has an open connection only while a request is in flight.
- a REQUEST is every HTTP request (POST, DELETE), the `notifications/initialized` POST of the
  handshake included: `initialize`, `tools/list`, `tools/call`.
A `gate` (the toolbox's) is entered before every HTTP request (it may wait, or refuse with
`McpBudgetSpent`) and exited when the response is closed: that is where the kit charges the
request budget and holds a connection lease.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, Callable

import anyio
import anyio.from_thread
import anyio.to_thread
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from .errors import (McpClientError, McpProtocolError, McpSessionExpired, McpThrottled,
                     McpUnavailable)


class SigV4Auth(httpx2.Auth):
    """SigV4 for every HTTP request of the session (POST, GET stream, DELETE), over the
    method, URL, host, content type and body, with the caller's credentials.

    `credentials()` returns botocore credentials (access key, secret key, session token)."""

    requires_request_body = True

    def __init__(self, credentials: Callable[[], Any], service: str, region: str) -> None:
        self._credentials, self.service, self.region = credentials, service, region

    def auth_flow(self, request):
        from botocore.auth import SigV4Auth as BotocoreSigV4
        from botocore.awsrequest import AWSRequest

        headers = {"host": request.headers["host"]}
        if request.headers.get("content-type"):
            headers["content-type"] = request.headers["content-type"]
        signed = AWSRequest(method=request.method, url=str(request.url), data=request.content,
                            headers=headers)
        BotocoreSigV4(self._credentials(), self.service, self.region).add_auth(signed)
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
            if name in signed.headers:
                request.headers[name] = signed.headers[name]
        yield request


class BearerAuth(httpx2.Auth):
    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request):
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


class _HttpState:
    """The last HTTP answer the session saw (the SDK does not surface status codes), the
    gate's last refusal, and whether the session's DELETE was answered."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.retry_after: str | None = None
        self.refusal: McpClientError | None = None
        self.session_id: str | None = None
        self.terminated = False

    async def on_response(self, response) -> None:
        if response.request.method == "GET":  # the stream never opened (see _GatedTransport)
            return
        self.status, self.retry_after = response.status_code, response.headers.get(
            "retry-after")
        if response.headers.get("mcp-session-id"):
            self.session_id = response.headers["mcp-session-id"]
        if response.request.method == "DELETE" and response.status_code in (200, 202, 204,
                                                                             404):
            self.terminated = True


class _ReleasingStream(httpx2.AsyncByteStream):
    """A response body that exits the gate once, when it is closed (read to the end, or
    abandoned)."""

    def __init__(self, stream, release: Callable[[], Any]) -> None:
        self._stream, self._release = stream, release

    async def __aiter__(self):
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            release, self._release = self._release, None
            if release is not None:
                with anyio.CancelScope(shield=True):  # a cancelled call still frees its lease
                    await anyio.to_thread.run_sync(release)


class _GatedTransport(httpx2.AsyncBaseTransport):
    """Every HTTP request passes the gate first; the SDK's standalone GET stream is answered
    405 here and never sent (see the module docstring, "CONNECTION")."""

    def __init__(self, inner: httpx2.AsyncBaseTransport, gate: Any, state: _HttpState) -> None:
        self._inner, self._gate, self._state = inner, gate, state

    async def handle_async_request(self, request):
        if request.method == "GET":
            return httpx2.Response(405, headers={"allow": "POST, DELETE"}, request=request)
        if self._gate is None:
            return await self._inner.handle_async_request(request)
        try:
            ticket = await anyio.to_thread.run_sync(self._gate.enter, request.method)
        except McpClientError as refused:
            # Answered here, as a throttled server would: the SDK fails the one message, the
            # session stays usable, and the refusal is what the caller gets.
            self._state.refusal = refused
            retry_after = getattr(refused, "retry_after", None)
            return httpx2.Response(429, request=request, headers={
                "retry-after": f"{retry_after or 0:.3f}", "content-type": "application/json"},
                content=b'{"message": "refused by the local MCP budget"}')

        def release() -> None:
            self._gate.exit(ticket)

        try:
            response = await self._inner.handle_async_request(request)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(release)
            raise
        response.stream = _ReleasingStream(response.stream, release)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def _leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


def _retry_after(value: str | None) -> float | None:
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds <= 3600 else None


class McpSession:
    """One MCP session on `url` (initialize on `open()`, DELETE on `close()`).

    `timeout_s` bounds every HTTP exchange (seconds). `gate`: entered before every HTTP
    request (`gate.enter(method) -> ticket`, blocking; raises an `McpClientError` to refuse)
    and exited when its response is closed (`gate.exit(ticket)`); None: no gate. `wait_s`:
    the longest the gate waits in one call (seconds), added to the bound of each call and of
    each request the SDK awaits. Not thread-safe: one per request."""

    def __init__(self, url: str, auth: httpx2.Auth, *, timeout_s: float = 20.0,
                 gate: Any = None, wait_s: float = 0.0) -> None:
        self.url, self._auth, self.timeout_s = url, auth, timeout_s
        self._gate = gate
        #: seconds a call may take: the gate's waits, then the exchanges themselves
        self.call_timeout_s = timeout_s + (wait_s if gate is not None else 0.0)
        self._http = _HttpState()
        self._portal_cm = None
        self._portal = None
        self._client_cm = None
        self._client = None

    @asynccontextmanager
    async def _connect(self):
        timeout = httpx2.Timeout(self.timeout_s)
        # no idle keep-alive connection: a TCP connection lasts as long as its exchange
        inner = httpx2.AsyncHTTPTransport(limits=httpx2.Limits(max_keepalive_connections=0))
        transport = _GatedTransport(inner, self._gate, self._http)
        async with httpx2.AsyncClient(auth=self._auth, timeout=timeout, transport=transport,
                                      event_hooks={"response": [self._http.on_response]}) as http:
            # mode="legacy": the initialize handshake (one round trip, as the AWS MCP Server
            # speaks it) instead of probing server/discover first; cache=None: tools/list must
            # reach the server, its answer is what gets verified.
            async with Client(streamable_http_client(self.url, http_client=http),
                              mode="legacy", cache=None,
                              read_timeout_seconds=self.call_timeout_s) as client:
                yield client

    def open(self) -> None:
        self._portal_cm = anyio.from_thread.start_blocking_portal()
        self._portal = self._portal_cm.__enter__()
        try:
            self._client_cm = self._portal.wrap_async_context_manager(self._connect())
            self._client = self._guard(self._client_cm.__enter__)
            if self._http.refusal is not None:  # the handshake's notification was refused
                raise self._http.refusal
        except BaseException:
            self._client_cm = None
            self.close()
            raise

    def list_tools(self) -> list[dict]:
        """Every tool the server lists (all pages): {"name", "description", "input_schema"}."""
        tools, cursor = [], None
        for _ in range(20):
            page = self._run(self._bounded, self._client.list_tools, cursor=cursor)
            tools += [{"name": t.name, "description": t.description or "",
                       "input_schema": t.input_schema} for t in page.tools]
            cursor = page.next_cursor
            if not cursor:
                break
        return tools

    def call_tool(self, name: str, arguments: dict) -> tuple[bool, str, Any]:
        """(is_error, text of the content blocks, structured content)."""
        result = self._run(self._bounded, self._client.call_tool, name, arguments)
        texts = []
        for block in result.content:
            text = getattr(block, "text", None)
            texts.append(text if isinstance(text, str) else f"[{block.type} content]")
        return bool(result.is_error), "\n".join(texts), result.structured_content

    async def _bounded(self, fn, *args, **kwargs):
        with anyio.fail_after(self.call_timeout_s):
            return await fn(*args, **kwargs)

    def _run(self, fn, *args, **kwargs):
        return self._guard(lambda: self._portal.call(lambda: fn(*args, **kwargs)))

    @property
    def established(self) -> bool:
        """The server answered `initialize` with a session id (it now counts a session)."""
        return self._http.session_id is not None

    @property
    def terminated(self) -> bool:
        """The server answered the session's DELETE (it no longer counts the session)."""
        return self._http.terminated

    def _guard(self, thunk):
        self._http.status = None
        self._http.refusal = None
        try:
            return thunk()
        except BaseException as raised:  # noqa: BLE001 - every failure becomes one of ours
            error = _leaf(raised)
            if isinstance(error, (KeyboardInterrupt, SystemExit)):
                raise
            raise self._classify(error) from error

    def _classify(self, error: BaseException) -> McpClientError:
        if self._http.refusal is not None:
            return self._http.refusal
        if isinstance(error, McpClientError):
            return error
        status = self._http.status
        if status == 429:
            return McpThrottled("the MCP server answered 429 (throttled)",
                                _retry_after(self._http.retry_after))
        if isinstance(error, MCPError):
            if status == 404 or error.message == "Session terminated":
                return McpSessionExpired(f"session expired: {error.message}")
            if status is not None and status >= 500:
                return McpUnavailable(f"the MCP server answered HTTP {status}")
            if status in (401, 403):
                return McpProtocolError(f"the MCP server refused the credentials (HTTP "
                                        f"{status})")
            return McpProtocolError(f"MCP error {error.code}: {error.message}")
        if isinstance(error, (httpx2.TransportError, OSError, TimeoutError)):
            return McpUnavailable(f"the MCP server is unreachable ({type(error).__name__})")
        if isinstance(error, ValidationError):
            return McpProtocolError("malformed answer from the MCP server")
        return McpProtocolError(f"MCP client failure: {type(error).__name__}: {error}")

    def close(self) -> None:
        try:
            if self._client_cm is not None:
                try:
                    self._client_cm.__exit__(None, None, None)
                except BaseException:  # noqa: BLE001 - closing must not fail a request
                    pass
        finally:
            self._client_cm = self._client = None
            if self._portal_cm is not None:
                try:
                    self._portal_cm.__exit__(None, None, None)
                except BaseException:  # noqa: BLE001
                    pass
                self._portal_cm = self._portal = None
