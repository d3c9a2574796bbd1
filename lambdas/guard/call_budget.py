"""Budgets on a guarded call: reserve its maximum cost first, settle it once it is known.

`BudgetedCalls` is a part of `GuardedClaude` (its base class): it uses the client's `_budget`
(a `guard.spend` gate, None without budgets), `_clock` and `_wait` (seconds), and `_call` for the
tenant's action "degrade" (the same call on a cheaper model).
"""

from __future__ import annotations

from typing import Any, Callable

from .outcomes import DEFERRED, OK, REJECTED
from .results import CallResult

#: Longest pause (seconds) between budget checks while open reservations are in the way.
BUDGET_POLL_S = 0.5


class BudgetedCalls:
    """Hold, degrade and settle a call's budget (see the module docstring)."""

    def _hold_budget(self, tenant: str | None, estimate: int, max_tokens: int,
                     deadline: float, result: CallResult) -> bool:
        """Reserve the call's maximum cost; while only open reservations are in the way, check
        again every BUDGET_POLL_S seconds within the deadline. False: refused (result filled
        in: status "rejected", reason, retry_after, the tenant's action), or deferred when the
        budget store could not be reached (reason "store_unavailable": never a grant, never a
        refusal for budget)."""
        while True:
            hold = self._budget.reserve(result.model, tenant, estimate, max_tokens)
            if isinstance(hold, str):
                result.error = {"type": "unpriced_model", "message": hold}
                return False
            result.budget_store_calls += hold.store_calls
            result.budget_used_percent = hold.used_percent
            if hold.granted:
                result.keep_budget_hold(hold)
                return True
            pause = min(hold.retry_after, BUDGET_POLL_S)
            if hold.reason != "budget_reserved" or self._clock() + pause > deadline:
                break
            self._wait(pause, result)
        if hold.reason == "store_unavailable":  # says nothing about the budget: try again later
            result.status, result.reason = DEFERRED, hold.reason
            result.retry_after = max(hold.retry_after, BUDGET_POLL_S)
            return False
        budget = self._budget.budget_of(tenant)
        result.status, result.reason, result.retry_after = REJECTED, hold.reason, \
            hold.retry_after
        result.budget_scope, result.budget_window = hold.scope, hold.window
        result.budget_action = budget.action if budget is not None else "reject"
        return False

    def _degrade(self, params: dict[str, Any], deadline_s: float | None,
                 time_left_s: Callable[[], float] | None, streaming: bool,
                 tenant: str | None, refused: CallResult,
                 share: tuple[str | None, str, float | None] | None = None) -> CallResult:
        """The tenant's action "degrade": the same call on its cheaper model, once (with the
        call's `share`: tenant, priority and ticket)."""
        cheaper = self._budget.budget_of(tenant).degrade_to
        if cheaper == params["model"]:  # the cheaper model is refused too
            return refused
        result = self._call({**params, "model": cheaper}, deadline_s, time_left_s, streaming,
                            share=(tenant, "interactive", None) if share is None else share)
        result.degraded_from = refused.model
        result.budget_action = "degrade"
        return result

    def _settle_budget(self, result: CallResult, *, ended: bool) -> None:
        """Settle the call's budget hold once: with its usage when it succeeded, at its
        maximum when a sent attempt's outcome is unknown (timeout, connection error, 5xx),
        else at nothing (refused upstream or never sent). A stream settles when it ends."""
        if result.stream is not None and not ended:
            return
        hold = result.pop_budget_hold()
        if hold is None:
            return
        if result.status == OK:
            usage = result.usage
        elif result.attempts and result.reason in ("upstream_error", "time_left"):
            usage = None
        else:
            usage = {}
        self._budget.settle(hold, self._budget_price_key(result), usage)

    def _budget_price_key(self, result: CallResult) -> str:
        """The budget gate's prices key a call's actual cost is taken from: its model."""
        return result.model
