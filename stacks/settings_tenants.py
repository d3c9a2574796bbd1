"""The tenants of the CDK app's settings and their limits: `tenants` read into
`agent.contract.TenantSpec`s (bound to IAM roles), the budgets (`budget`,
`tenants.<name>.budget`) and the tenants' shares, on deploy and as `python -m cli.limits`
changes them without a redeploy (`load_limits`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping

from agent.contract import TENANT_PATTERN, FieldError, TenantSpec
from guard.budget import Budget, BudgetError
from guard.limits import SHARE_KEYS, Limits, LimitsError, TenantShare
from guard.spend import LimitSet

from .settings_readers import Problems, SettingsError, number, parse_json_text, string_list
from .settings_schema import BUDGET_KEYS, TENANT_KEYS, check_keys, read_section, report_unknown_key
from .settings_types import ModelSettings

def read_budget(problems: Problems, where: str, raw: Any, *, models: Iterable[str],
                degrade_model: str | None) -> Budget | None:
    """One budget object (BUDGET_KEYS) at `where`; None (problems reported) when bad, or when
    it sets no limit."""
    before = len(problems.items)
    raw = check_keys(problems, BUDGET_KEYS, parse_json_text(raw) if raw is not None else {},
                     f"{where}.") if isinstance(parse_json_text(raw), dict) else raw
    if not isinstance(raw, dict):
        problems.bad(where, "an object of " + ", ".join(BUDGET_KEYS), raw)
        return None
    values = read_section(problems, BUDGET_KEYS, raw, f"{where}.")
    if len(problems.items) > before:
        return None
    degrade_to = values["degrade_to"] or (degrade_model if values["action"] == "degrade"
                                          else None)
    if values["action"] == "degrade" and degrade_to not in models:
        problems.bad(f"{where}.degrade_to", "one of the models (" + ", ".join(models)
                     + ") with action=degrade", degrade_to)
        return None
    try:
        budget = Budget(values["usd_per_day"], values["usd_per_month"],
                        values["tokens_per_day"], values["action"], degrade_to)
    except BudgetError as err:
        problems.say(f"context key {where!r}: {err}")
        return None
    return None if budget.unlimited else budget


def read_limits(problems: Problems, raw: Mapping[str, Any], *, tenants: Iterable[str],
                models: Iterable[str], degrade_model: str | None,
                tokens_per_day: Mapping[str, int | None], version: int = 0) -> LimitSet:
    """Budgets from `budget` and `tenants.<name>.budget` of `raw` (cdk.json's shape;
    `cli.limits` edits the same shape), with the models' `tokens_per_day` (read already): a
    tenant that is not configured, a bad value or a key that is not a budget key is a problem
    naming the key."""
    tenants, models = list(tenants), list(models)
    deployment = None
    if raw.get("budget") is not None:
        deployment = read_budget(problems, "budget", raw["budget"], models=models,
                                 degrade_model=degrade_model)
    budgets = {}
    per_tenant = parse_json_text(raw.get("tenants") or {})
    for tenant, entry in (per_tenant.items() if isinstance(per_tenant, dict) else ()):
        entry = parse_json_text(entry)
        if not isinstance(entry, dict) or entry.get("budget") is None:
            continue
        if tenant not in tenants:
            problems.bad(f"tenants.{tenant}", "a configured tenant (" + ", ".join(tenants)
                         + ")", tenant)
            continue
        budget = read_budget(problems, f"tenants.{tenant}.budget", entry["budget"],
                             models=models, degrade_model=degrade_model)
        if budget is not None:
            budgets[tenant] = budget
    tokens = {model: n for model, n in tokens_per_day.items() if n is not None}
    return LimitSet(budgets, deployment, tokens, version)


def load_limits(raw: Mapping[str, Any], *, tenants: Iterable[str], models: Iterable[str],
                degrade_model: str | None, version: int = 0,
                buckets: Iterable[Limits] = ()) -> LimitSet:
    """`read_limits` for `cli.limits` (`budget`, `tenants.<name>.budget`, the tenants' shares
    `tenants.<name>.weight/rpm/itpm/otpm/tpm`, `models.<id>.tokens_per_day`): raises
    SettingsError listing every problem. `models`: the deployed model ids; `buckets`: their
    buckets' limits, which every tenant cap must be a dimension of."""
    problems = Problems()
    known = list(models)
    raw_models = raw.get("models") or {}
    for key in sorted(set(raw) - {"budget", "tenants", "models"}):
        report_unknown_key(problems, "", key, ["budget", "tenants", "models"])
    shares = _live_shares(problems, raw.get("tenants") or {}, list(tenants), buckets)
    tokens: dict[str, int | None] = {}
    for model, spec in raw_models.items():
        if model not in known:
            problems.bad(f"models.{model}", "a deployed model (" + ", ".join(known) + ")", model)
            continue
        tokens[model] = number(1, integer=True, nullable=True)(
            problems, f"models.{model}.tokens_per_day", (spec or {}).get("tokens_per_day"))
    limits = read_limits(problems, raw, tenants=tenants, models=known,
                         degrade_model=degrade_model, tokens_per_day=tokens, version=version)
    if problems.items:
        raise SettingsError(problems.items)
    return dataclasses.replace(limits, shares=shares)


#: what `cli.limits` may change of a tenant: its budget and its share (`TENANT_KEYS`)
LIVE_TENANT_KEYS = ("budget",) + SHARE_KEYS


def _live_shares(problems: Problems, raw: Mapping[str, Any], tenants: list[str],
                 buckets: Iterable[Limits]) -> dict[str, TenantShare] | None:
    """The tenants' shares of a limits document (TENANT_KEYS' readers, as cdk.json), None when
    no tenant sets one; caps every bucket must enforce (`guard.Limits` checks)."""
    shares: dict[str, TenantShare] = {}
    for tenant, entry in raw.items():
        entry = entry or {}
        for key in sorted(set(entry) - set(LIVE_TENANT_KEYS)):
            problems.say(f"context key 'tenants.{tenant}.{key}' is not a limit: cli.limits "
                         f"changes tenants.<name>.{{{', '.join(LIVE_TENANT_KEYS)}}} only (the "
                         "rest needs a deploy)")
        given = {k: entry[k] for k in SHARE_KEYS if k in entry}
        if not given or tenant not in tenants:
            continue  # an unknown tenant is reported by read_limits
        before = len(problems.items)
        values = read_section(problems, {k: TENANT_KEYS[k] for k in given}, given,
                              f"tenants.{tenant}.")
        if len(problems.items) == before:
            shares[tenant] = TenantShare(**{k: v for k, v in values.items() if v is not None})
    for tenant in sorted(set(raw) - set(tenants)):
        if any(k in (raw[tenant] or {}) for k in SHARE_KEYS):
            problems.bad(f"tenants.{tenant}", "a configured tenant (" + ", ".join(tenants)
                         + ")", tenant)
    if not shares:
        return None
    for limits in buckets:
        try:
            dataclasses.replace(limits, tenants=shares)
        except LimitsError as err:
            problems.say(f"context key 'tenants': {err}")
            break
    return shares


_BIND_EXAMPLE = ('{"acme": {"principals": ["arn:aws:iam::111122223333:role/AcmeApp"]}}')


def check_tenant_caps(problems: Problems, specs, models: Mapping[str, ModelSettings]) -> None:
    """A tenant's caps must be dimensions every model's bucket enforces (guard.Limits)."""
    if not any(spec.shares for spec in specs):
        return
    shares = {spec.name: spec.share for spec in specs}
    for model in models.values():
        limits = model.limits
        try:
            Limits(limits.rpm, limits.itpm, limits.otpm, tpm=limits.tpm,
                   output_burndown=limits.output_burndown, tenants=shares)
        except LimitsError as err:
            problems.say(f"context key 'tenants': {err} (model {model.model_id})")


def read_tenants(problems: Problems, raw: Any, allow_unbound: bool | None
             ) -> tuple[TenantSpec, ...]:
    """The `tenants` context: name -> {principals, ...} (`TENANT_KEYS`), or a plain list of
    names (unbound tenants), which needs `allow_unbound_tenants`."""
    raw = parse_json_text(raw)
    fix = (f"bind each tenant to its callers' IAM roles, e.g. {_BIND_EXAMPLE}, or set "
           "allow_unbound_tenants: true (any caller may then act for any tenant: local demo "
           "and tests only)")
    if raw is None:
        problems.bad("tenants", f"tenant name -> settings: {fix}", None)
        return ()
    if not isinstance(raw, dict):
        names = string_list(TENANT_PATTERN, "names of 1-63 characters [a-z0-9-]")(
            problems, "tenants", raw)
        if names is None:
            return ()
        duplicates = sorted({t for t in names if names.count(t) > 1})
        if duplicates:
            problems.bad("tenants", "each tenant once", duplicates)
        if not allow_unbound:
            problems.say(f"context key 'tenants': a plain list leaves every tenant bound to no "
                         f"caller, so any caller could act for any tenant: {fix}")
        return tuple(TenantSpec(name=name) for name in dict.fromkeys(names))
    if not raw:
        problems.bad("tenants", f"at least one tenant: {fix}", raw)
    specs = []
    for name, entry in raw.items():
        where = f"tenants.{name}"
        if not isinstance(name, str) or not TENANT_PATTERN.match(name):
            problems.bad(where, "a tenant name of 1-63 characters [a-z0-9-]", name)
            continue
        before = len(problems.items)
        values = read_section(problems, TENANT_KEYS, entry, f"{where}.")
        if len(problems.items) > before:
            continue
        if not values["principals"] and not allow_unbound:
            problems.say(f"context key '{where}.principals': tenant {name!r} is bound to no "
                         f"IAM role, so any caller could act for it: {fix}")
        try:
            specs.append(TenantSpec(name=name, **values))
        except FieldError as err:
            problems.say(f"context key '{where}.{err.field}': {err.problem}")
    return tuple(specs)
