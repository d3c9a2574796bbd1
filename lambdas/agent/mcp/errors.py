"""Errors an MCP session raises; the toolbox turns each into a tool error (no SDK import)."""

from __future__ import annotations


class McpClientError(Exception):
    """Base of the errors a session raises (the toolbox turns each into a tool error)."""


class McpUnavailable(McpClientError):
    """The server could not be reached or did not answer in time."""


class McpThrottled(McpClientError):
    """HTTP 429 from the server; `retry_after` in seconds (None when not sent)."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class McpSessionExpired(McpClientError):
    """The server no longer knows the session id (HTTP 404 on a session): re-initialise."""


class McpProtocolError(McpClientError):
    """A JSON-RPC error or a malformed answer from the server."""


class McpBudgetSpent(McpClientError):
    """The kit's own shares of the server's quotas (request budget, connections, sessions)
    could not be had within the call's wait budget; nothing was sent. `retry_after` in
    seconds."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
