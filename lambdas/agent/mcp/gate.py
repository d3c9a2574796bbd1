"""One MCP session's HTTP requests against the server's quotas shared through the bucket table:
a request booked from the server's bucket item, then a connection lease (see `McpToolbox` for
the quotas and `agent.mcp.client` for what is counted)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .config import McpServer
from .errors import McpBudgetSpent

if TYPE_CHECKING:
    from .toolbox import McpToolbox

log = logging.getLogger(__name__)

#: Seconds a connection lease outlives its exchange's timeout (a crashed holder's slot frees
#: this long after the exchange could have ended).
CONNECTION_LEASE_MARGIN_S = 5.0
#: Seconds before a booked start that the connection lease is taken: about one store round
#: trip, so the request leaves at its booked start (a late send would bunch up with the next
#: ones at the server) and the lease is not held while the booking waits.
LEASE_LEAD_S = 0.25
#: A request that would leave this many seconds after its booked start (the container was
#: starved, the lease was slow) books a new start once: sent late, it would arrive together
#: with the requests booked after it.
LATE_S = 0.5


class Gate:
    """One session's HTTP requests against the server's shared quotas: `enter` books one
    request from the bucket (waiting for the booked start) and then takes a connection lease
    (waiting at the expiries refusals reveal), both within `deadline` (the toolbox clock's
    seconds); it raises `McpBudgetSpent` when either cannot be had by then. `exit` releases
    the lease. Entered from the MCP client's thread."""

    def __init__(self, box: McpToolbox, server: McpServer) -> None:
        self.box, self.server = box, server
        self.deadline = box.clock() + server.max_wait_s

    def _left(self) -> float:
        return max(0.0, self.deadline - self.box.clock())

    def enter(self, method: str) -> Any:
        box, server = self.box, self.server
        bucket = box.buckets.get(server.name)
        start = self._book(bucket) if bucket is not None else box.clock()
        semaphore = box.connections.get(server.name)
        lease = None
        if semaphore is not None:
            self._sleep_until(start - LEASE_LEAD_S)
            attempt = semaphore.acquire(box.timeout_s + CONNECTION_LEASE_MARGIN_S,
                                        max_wait_s=self._left(), sleep=box.sleep)
            if not attempt.granted:
                raise McpBudgetSpent(f"all {server.max_connections} MCP connections to "
                                     f"{server.name!r} are in use ({attempt.reason}); retry "
                                     f"after {attempt.retry_after:.1f} s", attempt.retry_after)
            lease = attempt.lease
        if bucket is not None and box.clock() - start > LATE_S:
            try:
                start = self._book(bucket)
            except McpBudgetSpent:
                self.exit(lease)
                raise
        self._sleep_until(start)
        return lease

    def _book(self, bucket: Any) -> float:
        """Book one request; returns its start (toolbox clock) or raises `McpBudgetSpent`."""
        box, server = self.box, self.server
        while True:
            grant = bucket.try_acquire(requests=1, max_wait_s=min(self._left(), 60.0))
            if grant.granted:
                # the booked start, as seen from the bucket's answer (the write itself may
                # have taken a while)
                return box.clock() + max(0.0, grant.start_at - grant.returned_at)
            # a store error is transient (throttling, a timeout): retried like a refusal, with
            # the bucket's backoff, while the deadline allows
            if grant.retry_after > self._left():
                raise McpBudgetSpent(
                    f"the MCP request budget for {server.name!r} is spent ({grant.reason}); "
                    f"retry after {grant.retry_after:.1f} s", grant.retry_after)
            box.sleep(grant.retry_after)

    def _sleep_until(self, at: float) -> None:
        wait = at - self.box.clock()
        if wait > 0:
            self.box.sleep(wait)

    def exit(self, lease: Any) -> None:
        if lease is None:
            return
        try:
            self.box.connections[self.server.name].release(lease)
        except Exception:  # noqa: BLE001 - an unreleased lease frees itself at its expiry
            log.exception("MCP connection lease not released")
