"""Budgets in cdk.json and in `cli.limits`: one schema, bad values named by key; prices."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guard import Budget, Prices
from guard.budget import BudgetError
from guard.prices import PricesError
from guard.spend import LimitSet
from stacks.settings import SettingsError, load_limits, load_settings

REPO = Path(__file__).resolve().parents[2]
DEFAULTS = json.loads((REPO / "cdk.json").read_text())["context"]
MODELS = ["claude-sonnet-4-6", "claude-haiku-4-5"]


def settings(budgets: dict | None = None, **overrides):
    """cdk.json's settings with `budgets` (tenant -> budget) under tenants.<name>.budget."""
    if budgets is not None:
        tenants = {name: dict(entry) for name, entry in DEFAULTS["tenants"].items()}
        for name, budget in budgets.items():
            tenants.setdefault(name, {"principals": []})["budget"] = budget
        overrides["tenants"] = tenants
    return load_settings({**DEFAULTS, **overrides})


def problems(budgets: dict | None = None, **overrides) -> list[str]:
    with pytest.raises(SettingsError) as err:
        settings(budgets, **overrides)
    return err.value.problems


def test_tenant_and_deployment_budgets_are_read_into_the_limit_set():
    limits = settings({"acme": {"usd_per_day": 50, "usd_per_month": 800,
                                "action": "degrade"}}, budget={"usd_per_month": 2000}).limits
    assert limits.deployment == Budget(usd_per_month=2000)
    assert limits.tenants == {"acme": Budget(usd_per_day=50, usd_per_month=800,
                                             action="degrade", degrade_to="claude-haiku-4-5")}


@pytest.mark.parametrize("overrides, key", [
    ({"budgets": {"acme": {"usd_per_day": -1}}}, "tenants.acme.budget.usd_per_day"),
    ({"budget": {"usd_per_day": 1, "currency": "EUR"}}, "budget.currency"),
    ({"budgets": {"acme": {"usd_per_week": 1}}}, "tenants.acme.budget.usd_per_week"),
    ({"budgets": {"acme": {"action": "pause"}}}, "tenants.acme.budget.action"),
    ({"budgets": {"acme": {"usd_per_day": 1, "action": "degrade", "degrade_to": "gpt"}}},
     "tenants.acme.budget.degrade_to"),
])
def test_a_bad_budget_is_reported_naming_its_key(overrides, key):
    found = problems(**overrides)
    assert len(found) == 1 and f"'{key}" in found[0], found


def test_zero_means_blocked_not_unset():
    assert settings({"acme": {"usd_per_day": 0}}).limits.tenants["acme"].usd_per_day == 0.0


def test_tokens_per_day_is_bedrock_only():
    found = problems(models={"claude-sonnet-4-6": {"prices": {"input": 3, "output": 15},
                                                   "tokens_per_day": 5}}, degrade_model="")
    assert any("models.claude-sonnet-4-6.tokens_per_day" in p and "bedrock only" in p
               for p in found)


def test_cli_limits_uses_the_same_schema():
    limits = load_limits({"tenants": {"acme": {"budget": {"usd_per_day": 5}}},
                          "models": {"claude-sonnet-4-6": {"tokens_per_day": 1000}}},
                         tenants=["acme"], models=MODELS, degrade_model="claude-haiku-4-5")
    assert limits.tenants["acme"].usd_per_day == 5.0
    assert limits.model_tokens_per_day == {"claude-sonnet-4-6": 1000}
    with pytest.raises(SettingsError, match="tenants.acme.budget.usd_per_day"):
        load_limits({"tenants": {"acme": {"budget": {"usd_per_day": "lots"}}}},
                    tenants=["acme"], models=MODELS, degrade_model=None)
    with pytest.raises(SettingsError, match="tenants.initech"):
        load_limits({"tenants": {"initech": {"budget": {"usd_per_day": 1}}}},
                    tenants=["acme"], models=MODELS, degrade_model=None)
    with pytest.raises(SettingsError, match="budgetz"):
        load_limits({"budgetz": {}}, tenants=["acme"], models=MODELS, degrade_model=None)


def test_limit_set_round_trips_through_the_config_item_document():
    limits = LimitSet({"acme": Budget(usd_per_day=5, action="batch")}, Budget(usd_per_month=9),
                      {"m": 100}, 3)
    assert LimitSet.decode(json.loads(json.dumps(limits.encode()))) == limits
    with pytest.raises(BudgetError, match="tenants.acme.budget"):
        LimitSet.decode({"tenants": {"acme": {"budget": {"usd_per_day": -5}}}})


def test_prices_default_cache_prices_and_reject_negative_ones():
    assert Prices(3.0, 15.0) == Prices(input=3.0, output=15.0, cache_write=3.75,
                                       cache_read=0.3)
    assert Prices(3.0, 15.0).max_cost_micros(1000, 1000) == 3750 + 15000
    assert Prices(3.0, 15.0).cost_micros({"input_tokens": 1, "output_tokens": 1}) == 18
    with pytest.raises(PricesError, match="output"):
        Prices(3.0, -1.0)
