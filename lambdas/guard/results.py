"""`CallResult`: the outcome of one guarded Claude call, every attempt counted."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .usage import Usage

if TYPE_CHECKING:
    from .stream import GuardedStream


@dataclass
class CallResult:
    """Outcome of one guarded call (all attempts).

    status "ok": `message` is the SDK's Message (or `stream` a `GuardedStream`), `usage` a dict
    of token counts. "deferred": capacity or the upstream did not allow the call within the
    deadline; `retry_after` (seconds) says when to try again, `reason` why (one of
    `guard.outcomes.DEFERRAL_REASONS`). "error": `error` = {"type", "message"} (types in
    `guard.outcomes.ERROR_TYPES`, or the upstream's own); not worth retrying as is.
    Counters: `attempts` (Claude calls made), `local_throttles` (bucket refusals),
    `upstream_429`, `upstream_529`, `waited_s` (seconds slept for capacity or backoff).
    `queue_s`: the longest booked wait (seconds from acquire to the booked start);
    `cool_down_rebooks`: bookings given back because a cool-down was set after them.
    `tenant` (the tenant the call counted as; None on a bucket without tenants) and `priority`;
    `ticket` (epoch seconds): on "deferred", the call's place in its tenant's queue, to pass
    back as `create(ticket=...)` (the deferred message carries it).
    Per attempt sent: `grant_to_send_s` (from `try_acquire`'s return, or a booked start, to the
    request going out) and `charge_to_send_s` (from the grant's `acquired_at`, store round trip
    included), in seconds. `stale_grants`: grants given back because their send came too late.
    """

    status: str
    model: str
    message: Any = None
    stream: "GuardedStream | None" = None
    usage: Usage | None = None
    retry_after: float | None = None
    reason: str | None = None
    error: dict[str, str] | None = None
    attempts: int = 0
    local_throttles: int = 0
    upstream_429: int = 0
    upstream_529: int = 0
    waited_s: float = 0.0
    latency_s: float = 0.0
    input_estimate: int = 0
    quota_used_percent: float | None = None
    store_calls: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    grant_to_send_s: list[float] = field(default_factory=list)
    charge_to_send_s: list[float] = field(default_factory=list)
    stale_grants: int = 0
    queue_s: float = 0.0
    cool_down_rebooks: int = 0
    store_reads: int = 0
    #: Budgets: the tenant's `action` on a budget refusal ("reject", "degrade", "batch"), the
    #: scope and window that refused, percent used per scope and window, budget writes made.
    budget_action: str | None = None
    budget_scope: str | None = None
    budget_window: str | None = None
    budget_used_percent: dict[str, dict[str, float]] = field(default_factory=dict)
    budget_store_calls: int = 0
    degraded_from: str | None = None
    _hold: Any = field(default=None, repr=False)
    tenant: str | None = None
    priority: str = "interactive"
    ticket: float | None = None
    #: the capacity pool that served the call (`guard.pools`; None without pools) and the
    #: call's cost at that pool's prices (USD; None without prices)
    pool: str | None = None
    cost_usd: float | None = None
    #: pool -> True when the call saw that pool's breaker open or half-open (every pool of a
    #: pooled model, from the views the call held; no extra read)
    pool_breakers: dict[str, bool] = field(default_factory=dict)

    def take_budget_hold(self, other: "CallResult") -> None:
        """Carry `other`'s open budget hold over to this result (a pool router's answer holds
        the logical model's reservation its pool's client never saw)."""
        self._hold, other._hold = other._hold, None

    def keep_budget_hold(self, hold: Any) -> None:
        """Hold the call's budget reservation (a `guard.spend` hold) until the call settles."""
        self._hold = hold

    def pop_budget_hold(self) -> Any:
        """The call's open budget hold (None when there is none or it was settled), let go of."""
        hold, self._hold = self._hold, None
        return hold
