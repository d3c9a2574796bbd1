"""Budgets in cdk.json and in `cli.limits`: one schema, bad values named by key; prices and
the UTC windows the ledger uses."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from guard import Budget, Prices
from guard.budget import (BudgetError, day_of, month_fraction, next_day_start,
                          next_month_start)
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


def test_utc_windows():
    t = datetime(2027, 12, 31, 23, 30, tzinfo=timezone.utc).timestamp()
    assert day_of(t) == "2027-12-31"
    assert next_day_start(t) - t == 1800
    assert next_month_start(t) == datetime(2028, 1, 1, tzinfo=timezone.utc).timestamp()
    assert month_fraction(datetime(2027, 2, 15, tzinfo=timezone.utc).timestamp()) == 0.5


# -- the ledger's maths and its one write, without a store ----------------------------------

def test_assess_tells_a_spent_window_from_one_held_by_open_reservations():
    from guard.budget import View, assess

    now = datetime(2027, 1, 15, 12, tzinfo=timezone.utc).timestamp()
    budgets = {"tenant:a": Budget(usd_per_day=1.0)}

    def view(used, opened, until=now + 60):
        item = {"tenant:a|day": "2027-01-15", "tenant:a|d_used": used,
                "tenant:a|d_open": opened}
        if opened:
            item["r|x"] = {"d": "2027-01-15", "u": opened, "t": 0, "at": now - 5,
                           "until": until, "s": ["tenant:a"]}
        return View(item)

    assert assess(view(500_000, 0), budgets, 500_000, 0, now) is None
    reason, wait, scope, window = assess(view(900_000, 0), budgets, 200_000, 0, now)
    assert (reason, scope, window) == ("budget", "tenant:a", "usd_per_day")
    assert wait == 12 * 3600
    assert assess(view(900_000, 600_000), budgets, 200_000, 0, now)[:2] == (
        "budget_reserved", 60)
    # past its lease an open reservation is spent: it frees nothing
    assert assess(view(900_000, 600_000, until=now - 1), budgets, 200_000, 0, now)[0] == \
        "budget"


def test_the_reservation_is_one_update_conditioned_on_every_limit():
    from guard.budget import View, reserve_write

    now = datetime(2027, 1, 15, 12, tzinfo=timezone.utc).timestamp()
    seen = View({"tenant:a|day": "2027-01-15", "tenant:a|d_used": 1, "tenant:a|d_open": 0,
                 "tenant:a|t_used": 1, "tenant:a|t_open": 0, "tenant:a|m_used": 1,
                 "tenant:a|m_open": 0})
    request = reserve_write(seen, {"tenant:a": Budget(usd_per_day=1.0, usd_per_month=5.0)},
                            "rid", 300, 40, now, 960).request("t", "budget#2027-01")
    names = {v: k for k, v in request["ExpressionAttributeNames"].items()}
    values = request["ExpressionAttributeValues"]
    condition = request["ConditionExpression"]
    for attribute, room in (("tenant:a|d_used", 1_000_000 - 300),
                            ("tenant:a|m_used", 5_000_000 - 300)):
        placeholder = names[attribute]
        clause = f"(attribute_not_exists({placeholder}) OR {placeholder} <= "
        assert clause in condition
        value = condition.split(clause)[1].split(")")[0]
        assert values[value] == {"N": str(room)}
    assert f"{names['tenant:a|day']} = " in condition  # the same UTC day as seen
    assert request["ReturnValuesOnConditionCheckFailure"] == "ALL_OLD"
    assert request["UpdateExpression"].startswith("SET ")
    assert names["r|rid"] in request["UpdateExpression"]
