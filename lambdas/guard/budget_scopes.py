"""The scopes a call's spend counts against: its tenant (`tenant:<name>`), the deployment
(`deployment`) and its model's daily token quota (`model:<id>`)."""

from __future__ import annotations

from typing import Iterable, Mapping

from .budget_limits import Budget

#: The scope every call counts against (the deployment-wide budget).
DEPLOYMENT = "deployment"
#: A model's tokens-per-day scope is this prefix and the model id.
MODEL_SCOPE_PREFIX = "model:"


def scopes_for(tenant: str | None, model: str | None, budgets: Mapping[str, Budget],
               deployment: Budget | None, model_tokens_per_day: Mapping[str, int]
               ) -> dict[str, Budget]:
    """The scopes a call counts against: its tenant's budget (`tenant:<name>`), the
    deployment's (`deployment`) and its model's daily token quota (`model:<id>`), each only
    when configured."""
    scopes: dict[str, Budget] = {}
    if tenant is not None and tenant in budgets:
        scopes[f"tenant:{tenant}"] = budgets[tenant]
    if deployment is not None:
        scopes[DEPLOYMENT] = deployment
    if model is not None and model in model_tokens_per_day:
        scopes[MODEL_SCOPE_PREFIX + model] = Budget(tokens_per_day=model_tokens_per_day[model])
    return scopes


def scope_names(tenants: Iterable[str]) -> list[str]:
    """Scope names of `tenants` (as `scopes_for` names them)."""
    return [f"tenant:{t}" for t in tenants]
