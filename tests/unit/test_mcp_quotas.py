"""The kit's share of the AWS MCP Server's quotas, without I/O: the gate every HTTP request
passes (booked start, then a connection lease taken just before it), the session lease, and
the local stand-in's quota meter (the published quotas, refused above them)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from agent.mcp.config import load_mcp_settings
from agent.mcp.errors import McpBudgetSpent
from agent.mcp.gate import LEASE_LEAD_S, Gate
from agent.mcp.toolbox import McpToolbox
from guard.leases import Lease, LeaseAttempt

CONTEXT = json.loads((Path(__file__).resolve().parents[2] / "cdk.json").read_text())["context"]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.events: list[tuple] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.events.append(("sleep", round(seconds, 3)))
        self.now += seconds


class Bucket:
    """Books each request `queue_s` ahead (or refuses with `retry_after`)."""

    def __init__(self, clock: Clock, queue_s: float = 0.0, refuse: float | None = None):
        self.clock, self.queue_s, self.refuse = clock, queue_s, refuse

    def try_acquire(self, requests=1, max_wait_s=0.0):
        self.clock.events.append(("book", round(max_wait_s, 3)))
        if self.refuse is not None:
            return SimpleNamespace(granted=False, retry_after=self.refuse, reason="quota")
        return SimpleNamespace(granted=True, returned_at=1000.0,
                               start_at=1000.0 + self.queue_s)


class Semaphore:
    """Grants while `free` > 0, else refuses with an expiry `retry_after` away."""

    def __init__(self, clock: Clock, free: int, retry_after: float = 25.0):
        self.clock, self.free, self.retry_after = clock, free, retry_after
        self.released: list[Lease] = []

    def acquire(self, ttl_s, *, max_wait_s, sleep):
        self.clock.events.append(("lease", round(ttl_s, 3), round(max_wait_s, 3)))
        if self.free <= 0:
            return LeaseAttempt(False, reason="full", retry_at=self.clock() + self.retry_after,
                                retry_after=self.retry_after)
        self.free -= 1
        return LeaseAttempt(True, Lease("lease#x", self.free, "me", self.clock() + ttl_s))

    def release(self, lease):
        self.released.append(lease)
        self.free += 1
        return True


def server(**changes):
    mcp = json.loads(json.dumps(CONTEXT["mcp"]))
    mcp["servers"]["aws"].update(changes)
    return load_mcp_settings(mcp).servers


def box(clock, bucket=None, connections=None, sessions=None, connect=None, **changes):
    servers = server(**changes)
    return McpToolbox(servers, logger=SimpleNamespace(info=lambda *a, **k: None,
                                                      warning=lambda *a, **k: None),
                      buckets={"aws": bucket} if bucket else None,
                      connections={"aws": connections} if connections else None,
                      sessions={"aws": sessions} if sessions else None, connect=connect,
                      clock=clock, sleep=clock.sleep, timeout_s=20)


def test_a_request_leaves_at_its_booked_start_with_the_lease_taken_just_before():
    clock = Clock()
    toolbox = box(clock, Bucket(clock, queue_s=3.0), Semaphore(clock, free=1))
    gate = Gate(toolbox, toolbox.servers["aws"])
    lease = gate.enter("POST")
    assert lease is not None
    # booked within the wait budget (30 s), slept until just before the start, leased (for
    # the exchange's timeout plus a margin), then slept to the start itself
    assert clock.events == [("book", 30.0), ("sleep", round(3.0 - LEASE_LEAD_S, 3)),
                            ("lease", 25.0, round(30.0 - 3.0 + LEASE_LEAD_S, 3)),
                            ("sleep", LEASE_LEAD_S)]
    gate.exit(lease)
    assert toolbox.connections["aws"].released == [lease]


def test_a_request_that_would_leave_late_books_a_new_start_once():
    clock = Clock()

    class SlowSemaphore(Semaphore):
        def acquire(self, ttl_s, *, max_wait_s, sleep):
            attempt = super().acquire(ttl_s, max_wait_s=max_wait_s, sleep=sleep)
            self.clock.now += 1.0  # a slow store: the booked start passed meanwhile
            return attempt

    toolbox = box(clock, Bucket(clock, queue_s=0.0), SlowSemaphore(clock, free=1))
    assert Gate(toolbox, toolbox.servers["aws"]).enter("POST") is not None
    assert [event[0] for event in clock.events] == ["book", "lease", "book"]


def test_a_spent_budget_or_full_connections_refuse_without_sending():
    clock = Clock()
    refused = box(clock, Bucket(clock, refuse=45.0))
    with pytest.raises(McpBudgetSpent, match="request budget") as spent:
        Gate(refused, refused.servers["aws"]).enter("POST")
    assert spent.value.retry_after == 45.0
    full = box(clock, Bucket(clock), Semaphore(clock, free=0, retry_after=25.0))
    with pytest.raises(McpBudgetSpent, match="all 20 MCP connections") as busy:
        Gate(full, full.servers["aws"]).enter("POST")
    assert busy.value.retry_after == 25.0


class Session:
    def __init__(self, terminated: bool = True) -> None:
        self.established, self.terminated, self.closed = True, terminated, False

    def list_tools(self):
        return [{"name": name, "input_schema": tool.input_schema}
                for name, tool in server()["aws"].tools.items()]

    def call_tool(self, name, arguments):
        return False, "found", None

    def close(self):
        self.closed = True


@pytest.mark.parametrize("terminated, released", [(True, 1), (False, 0)])
def test_a_session_lease_is_released_once_the_server_ended_the_session(terminated, released):
    clock = Clock()
    sessions = Semaphore(clock, free=1)
    opened = []

    def connect(server, ctx, gate):
        opened.append(Session(terminated))
        return opened[-1]

    toolbox = box(clock, sessions=sessions, connect=connect)
    request = toolbox.request(lambda: SimpleNamespace(request_id="r1", tenant="acme"),
                              caller=None)
    assert request.call("aws___search_documentation", {"search_phrase": "x"}) == {
        "content": "found"}
    assert clock.events[0] == ("lease", 900.0, 30.0)  # the session lease, before connecting
    request.close()
    assert opened[0].closed and len(sessions.released) == released


def test_full_sessions_answer_a_clear_tool_error_and_connect_nothing():
    clock = Clock()
    opened = []
    toolbox = box(clock, sessions=Semaphore(clock, free=0, retry_after=600.0),
                  connect=lambda *args: opened.append(args))
    request = toolbox.request(lambda: SimpleNamespace(request_id="r1", tenant="acme"),
                              caller=None)
    result = request.call("aws___search_documentation", {"search_phrase": "x"})
    assert result["throttled"] is True and result["retry_after"] == 600.0
    assert "all 80 MCP sessions" in result["error"] and not opened


# -- the stand-in's quota meter ---------------------------------------------------------------

def test_the_stand_in_refuses_above_the_published_quotas():
    from local.fakes.aws_mcp_quotas import QuotaMeter, Quotas, parse_quotas

    clock = Clock()
    meter = QuotaMeter(Quotas(), clock=clock)
    assert [meter.admit("POST tools/call")[0] for _ in range(4)] == [None, None, None, "rate"]
    over, retry_after = meter.admit("POST tools/call")
    assert over == "rate" and retry_after == pytest.approx(1 / 3)
    for _ in range(3):
        meter.closed()
    for _ in range(9):  # 27 connections open at once, admitted at 3 per second
        clock.now += 1.0
        assert all(meter.admit("POST tools/call")[0] is None for _ in range(3))
    clock.now += 1.0
    assert meter.admit("POST tools/call")[0] == "connections"
    for index in range(90):
        meter.session_opened(f"s{index}", "role/a")
    assert not meter.session_allowed("role/a") and meter.session_allowed("role/b")
    for index in range(90):
        meter.session_opened(f"t{index}", "role/b")
    assert not meter.session_allowed("role/c")  # 180 per account
    meter.session_closed("s0")
    assert meter.session_allowed("role/a")
    report = meter.report()
    assert report["refused"] == {"rate": 2, "connections": 1, "sessions": 2}
    assert report["peak"]["connections"] == 27 and report["peak"]["role_sessions"] == 90
    assert parse_quotas(None) == Quotas() and parse_quotas("off") is None
    with pytest.raises(ValueError, match="'connection'"):
        parse_quotas('{"connection": 5}')
