"""docs/operations.md ("Alarms and what to do") and docs/monitoring.md ("Thresholds that learn")
name every alarm the stack deploys, by its name with the model, tenant, lane, window and
percentage as placeholders."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from .conftest import POOLS_CONTEXT, Synthesized, reuse_assets

REPO = Path(__file__).resolve().parents[2]
CONTEXT = json.loads((REPO / "cdk.json").read_text())["context"]
MODELS = (*CONTEXT["provider_defaults"]["anthropic"]["models"], *POOLS_CONTEXT["models"])
TENANTS = tuple(CONTEXT["tenants"])
#: Every budget window, so every budget alarm is deployed (they exist only where set).
BUDGETS = {"budget": {"usd_per_day": 100, "usd_per_month": 2000, "tokens_per_day": 10**8},
           "tenants": {name: {**spec, "budget": {"usd_per_day": 50, "usd_per_month": 800}}
                       for name, spec in CONTEXT["tenants"].items()}}
ALARMS = ("AWS::CloudWatch::Alarm", "AWS::CloudWatch::CompositeAlarm")


def kind(name: str, stack: str) -> str:
    """An alarm's name as the docs write it: `Bulwark-dev-TenantWait-acme-Warning` ->
    `TenantWait-<tenant>-Warning`."""
    name = name.removeprefix(f"{stack}-")
    if name.startswith("PoolBreakerOpen-"):  # <model>-<pool>: both may hold dashes
        return re.sub(r"^PoolBreakerOpen-.+-(\w+)$", r"PoolBreakerOpen-<model>-<pool>-\1", name)
    for model in sorted(MODELS, key=len, reverse=True):
        name = name.replace(model, "<model>")
    for tenant in TENANTS:
        name = re.sub(rf"-{re.escape(tenant)}(?=-|$)", "-<tenant>", name)
    name = re.sub(r"^(Slo\w+)-(interactive|batch)-", r"\1-<lane>-", name)
    name = re.sub(r"^(Budget(?:Deployment)?)(Day|Month)\d+", r"\1<window><pct>", name)
    return re.sub(r"^(Budget(?:Deployment)?Tokens)\d+", r"\1<pct>", name)


def _kinds(synth: Synthesized) -> set[str]:
    return {kind(r["Properties"]["AlarmName"], synth.stack.stack_name)
            for r in synth.json["Resources"].values() if r["Type"] in ALARMS}


@pytest.fixture(scope="module")
def with_budgets(dev, tmp_path_factory) -> Synthesized:
    return Synthesized(BUDGETS, reuse_assets(dev, tmp_path_factory.mktemp("cdk-budgets")))


def _documented() -> str:
    return "".join((REPO / "docs" / page).read_text() for page in ("operations.md",
                                                                   "monitoring.md"))


def test_every_deployed_alarm_has_a_row_in_the_docs(dev, with_budgets, pooled):
    kinds = _kinds(dev) | _kinds(with_budgets) | _kinds(pooled)
    assert {"TenantWait-<tenant>-Warning", "BudgetDeployment<window><pct>",
            "Budget<window><pct>-<tenant>", "PoolBreakerOpen-<model>-<pool>-Warning",
            "BudgetExhaustion-<tenant>-Warning"} <= kinds  # the placeholders took
    documented = _documented()
    assert sorted(k for k in kinds if f"`{k}`" not in documented) == []


def test_kind_names_the_placeholders():
    assert kind("Bulwark-dev-SloFastBurnLong-batch-claude-haiku-4-5-Critical", "Bulwark-dev") \
        == "SloFastBurnLong-<lane>-<model>-Critical"
    assert kind("Bulwark-dev-BudgetMonth100-acme", "Bulwark-dev") == "Budget<window><pct>-<tenant>"
    assert kind("Bulwark-dev-BudgetDeploymentTokens80", "Bulwark-dev") \
        == "BudgetDeploymentTokens<pct>"
    assert kind("Bulwark-dev-AccessDenied-Critical", "Bulwark-dev") == "AccessDenied-Critical"
    assert kind("Bulwark-dev-PoolBreakerOpen-sonnet-bedrock@us-west-2/flex-Warning",
                "Bulwark-dev") == "PoolBreakerOpen-<model>-<pool>-Warning"
