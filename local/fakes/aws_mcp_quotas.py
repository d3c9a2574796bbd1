"""The AWS MCP Server's published quotas per account and Region, as the local stand-in
enforces them (`local.fakes.aws_mcp_server`): requests per second (a token bucket holding one
second's worth), concurrent connections, and active sessions per account and per IAM role."""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Quotas:
    """The AWS MCP Server's published quotas per account and Region."""

    requests_per_second: float = 3.0
    connections: int = 27
    sessions_per_account: int = 180
    sessions_per_role: int = 90


class QuotaMeter:
    """Counts requests, open connections and sessions; refuses above the quotas (None: counts
    only). Thread-safe; `clock` in seconds (monotonic)."""

    def __init__(self, quotas: Quotas | None, clock=time.monotonic) -> None:
        self.quotas, self.clock = quotas, clock
        self._lock = threading.Lock()
        self._tokens = quotas.requests_per_second if quotas else 0.0
        self._refilled_at = clock()
        self.requests = 0
        self.connections = 0
        self.sessions: dict[str, str] = {}  # session id -> role ARN
        self.peak = {"connections": 0, "sessions": 0, "role_sessions": 0}
        self.refused = {"rate": 0, "connections": 0, "sessions": 0}
        self.kinds: dict[str, int] = {}  # "<HTTP method> <JSON-RPC method>" -> requests

    def admit(self, kind: str) -> tuple[str | None, float]:
        """Count one request of `kind` ("POST initialize", "DELETE", ...) on arrival and open
        its connection, or refuse it: (None, 0) or (which quota, retry-after seconds)."""
        with self._lock:
            self.requests += 1
            self.kinds[kind] = self.kinds.get(kind, 0) + 1
            quotas = self.quotas
            if quotas is not None:
                now = self.clock()
                rate = quotas.requests_per_second
                self._tokens = min(rate, self._tokens + (now - self._refilled_at) * rate)
                self._refilled_at = now
                if self._tokens < 1.0:
                    self.refused["rate"] += 1
                    return "rate", (1.0 - self._tokens) / rate
                if self.connections >= quotas.connections:
                    self.refused["connections"] += 1
                    return "connections", 1.0
                self._tokens -= 1.0
            self.connections += 1
            self.peak["connections"] = max(self.peak["connections"], self.connections)
            return None, 0.0

    def session_allowed(self, role: str) -> bool:
        """Whether `role` may open one more session (else counted as refused)."""
        with self._lock:
            quotas = self.quotas
            role_sessions = sum(1 for r in self.sessions.values() if r == role)
            if quotas is not None and (len(self.sessions) >= quotas.sessions_per_account
                                       or role_sessions >= quotas.sessions_per_role):
                self.refused["sessions"] += 1
                return False
            return True

    def closed(self) -> None:
        with self._lock:
            self.connections -= 1

    def session_opened(self, session_id: str, role: str) -> None:
        with self._lock:
            self.sessions[session_id] = role
            self.peak["sessions"] = max(self.peak["sessions"], len(self.sessions))
            self.peak["role_sessions"] = max(self.peak["role_sessions"], sum(
                1 for r in self.sessions.values() if r == role))

    def session_closed(self, session_id: str) -> None:
        with self._lock:
            self.sessions.pop(session_id, None)

    def report(self) -> dict:
        with self._lock:
            return {"quotas": asdict(self.quotas) if self.quotas else None,
                    "requests": self.requests, "connections": self.connections,
                    "sessions": len(self.sessions), "peak": dict(self.peak),
                    "refused": dict(self.refused), "kinds": dict(self.kinds)}


def parse_quotas(value: str | None) -> Quotas | None:
    """`--quotas`: absent -> the published quotas, "off" -> none, JSON -> overrides."""
    if value is None:
        return Quotas()
    if value == "off":
        return None
    overrides = json.loads(value)
    for key, number in overrides.items():
        if key not in Quotas.__dataclass_fields__ or not isinstance(number, (int, float)) \
                or isinstance(number, bool) or not number > 0 or math.isinf(number):
            raise ValueError(f"--quotas: {key!r} must be one of "
                             f"{', '.join(Quotas.__dataclass_fields__)} with a positive number")
    return Quotas(**overrides)
