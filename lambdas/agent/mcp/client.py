"""The MCP SDK side: one streamable-HTTP session, driven synchronously.

This is the only module that imports the MCP SDK (`mcp` 2.x, async-only) and `httpx2`; the
toolbox imports it on the first MCP tool call of a container, so requests without MCP calls
never pay for it. The SDK's `Client` runs in an anyio blocking portal (one thread per open
session); `McpSession` exposes `list_tools()` and `call_tool()` as plain calls.

Authentication is an `httpx2.Auth`: `SigV4Auth` signs each HTTP request with botocore's SigV4
(signing service e.g. `aws-mcp`) using the request's tool-role credentials; `BearerAuth`
sends a token. Errors come out as the exceptions below, with the HTTP status the SDK hides
(it turns a 429 into a generic JSON-RPC error) recovered by a response hook.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, Callable

import anyio
import anyio.from_thread
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
    """The last HTTP answer the session saw (the SDK does not surface status codes)."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.retry_after: str | None = None

    async def on_response(self, response) -> None:
        self.status, self.retry_after = response.status_code, response.headers.get(
            "retry-after")


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

    `timeout_s` bounds every HTTP exchange and each call. Not thread-safe: one per request."""

    def __init__(self, url: str, auth: httpx2.Auth, *, timeout_s: float = 20.0) -> None:
        self.url, self._auth, self.timeout_s = url, auth, timeout_s
        self._http = _HttpState()
        self._portal_cm = None
        self._portal = None
        self._client_cm = None
        self._client = None

    @asynccontextmanager
    async def _connect(self):
        timeout = httpx2.Timeout(self.timeout_s)
        async with httpx2.AsyncClient(auth=self._auth, timeout=timeout,
                                      event_hooks={"response": [self._http.on_response]}) as http:
            # mode="legacy": the initialize handshake (one round trip, as the AWS MCP Server
            # speaks it) instead of probing server/discover first; cache=None: tools/list must
            # reach the server, its answer is what gets verified.
            async with Client(streamable_http_client(self.url, http_client=http),
                              mode="legacy", cache=None,
                              read_timeout_seconds=self.timeout_s) as client:
                yield client

    def open(self) -> None:
        self._portal_cm = anyio.from_thread.start_blocking_portal()
        self._portal = self._portal_cm.__enter__()
        try:
            self._client_cm = self._portal.wrap_async_context_manager(self._connect())
            self._client = self._guard(self._client_cm.__enter__)
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
        with anyio.fail_after(self.timeout_s):
            return await fn(*args, **kwargs)

    def _run(self, fn, *args, **kwargs):
        return self._guard(lambda: self._portal.call(lambda: fn(*args, **kwargs)))

    def _guard(self, thunk):
        self._http.status = None
        try:
            return thunk()
        except BaseException as raised:  # noqa: BLE001 - every failure becomes one of ours
            error = _leaf(raised)
            if isinstance(error, (KeyboardInterrupt, SystemExit)):
                raise
            raise self._classify(error) from error

    def _classify(self, error: BaseException) -> McpClientError:
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
