"""Capacity pools through the agent Lambda: a model configured with pools (the MODELS entry the
stack writes from `models.<id>.pools`) is served by the first pool that can serve it, Bedrock
pools in two regions of the Claude emulator, buckets and breakers in local DynamoDB."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from local.fakes.claude_emulator import ClaudeEmulator
from tests.functional.test_agent_handler import (EMULATOR_LIMITS, MAIN, emitted,  # noqa: F401
                                                 invoke, stack)

PROFILE = "us.anthropic.claude-sonnet-4-6"
PRICES = {"input": 3.0, "output": 15.0}
FLEX = {"input": 1.5, "output": 7.5}


@pytest.fixture(scope="module")
def emulator():
    with ClaudeEmulator({"tier": "tier4", "limits": EMULATOR_LIMITS, "output_tokens": 12,
                         "bedrock": {"rpm": 100, "tpm": 1_000_000}}) as emu:
        yield emu


def pool(emulator, region, rpm, tier=None, prices=None):
    entry = {"name": f"bedrock@{region}" + (f"/{tier}" if tier else ""),
             "provider": "bedrock", "model": PROFILE, "region": region,
             "bucket": f"bedrock#{region}#{tier or 'default'}#{PROFILE}", "rpm": rpm,
             "tpm": 1_000_000, "output_burndown": 5, "base_url": emulator.pool_url(region)}
    if tier:
        entry["service_tier"] = tier
    if prices:
        entry["prices"] = prices
    return entry


def use_pools(stack, monkeypatch, *pools, budgets=None):
    models = json.loads(stack["env"]["MODELS"])
    models["sonnet"] = {"bucket": pools[0]["bucket"], "rpm": pools[0]["rpm"],
                        "tpm": 1_000_000, "output_burndown": 5, "prices": PRICES,
                        "pools": list(pools)}
    monkeypatch.setenv("MODELS", json.dumps(models))
    if budgets is not None:
        monkeypatch.setenv("BUDGETS", json.dumps(budgets))
    stack["module"].reset_runtime()


def served_by(capsys):
    """(model, pool) of each per-pool EMF document counting an answer."""
    emf, _ = emitted(capsys)
    return [(d["Model"], d["Pool"]) for d in emf if "Pool" in d and d["Requests"] == [1.0]]


def test_a_pooled_model_moves_to_the_second_pool_when_the_first_is_full(stack, monkeypatch,
                                                                        emulator, capsys):
    use_pools(stack, monkeypatch, pool(emulator, "us-east-1", rpm=1),
              pool(emulator, "us-west-2", rpm=100))
    first = invoke(stack, {"prompt": "hello", "model": "sonnet", "tenant": "acme"})
    second = invoke(stack, {"prompt": "hello again", "model": "sonnet", "tenant": "acme"})
    assert first["status"] == "ok" and second["status"] == "ok", (first, second)
    assert first["model"] == second["model"] == "sonnet"
    pools = emulator.stats()["pools"]
    assert pools["us-east-1"]["admitted"] == 1 and pools["us-west-2"]["admitted"] == 1
    assert sorted(served_by(capsys)) == [("sonnet", "bedrock@us-east-1"),
                                         ("sonnet", "bedrock@us-west-2")]


def test_a_pooled_model_fails_over_when_the_first_pool_is_out(stack, monkeypatch, emulator,
                                                              capsys):
    use_pools(stack, monkeypatch, pool(emulator, "us-east-1", rpm=100),
              pool(emulator, "us-west-2", rpm=100))
    emulator.outage("us-east-1", for_s=600)
    answer = invoke(stack, {"prompt": "hello", "model": "sonnet", "tenant": "acme"})
    assert answer["status"] == "ok", answer
    assert emulator.stats()["pools"]["us-west-2"]["admitted"] == 1
    assert served_by(capsys) == [("sonnet", "bedrock@us-west-2")]


def test_a_tenant_budget_holds_across_the_pools_of_a_model(stack, monkeypatch, emulator):
    """The budget is the logical model's: calls served by either pool count against it, each
    charged at its pool's prices, and once spent the tenant is refused for budget although
    both pools have capacity."""
    use_pools(stack, monkeypatch, pool(emulator, "us-east-1", rpm=1),
              pool(emulator, "us-west-2", rpm=100, prices=FLEX),
              budgets={"tenants": {"acme": {"budget": {"usd_per_day": 0.007}}}})
    first = invoke(stack, {"prompt": "hi", "model": "sonnet", "tenant": "acme",
                           "max_tokens": 12})
    second = invoke(stack, {"prompt": "hi", "model": "sonnet", "tenant": "acme",
                            "max_tokens": 12})
    assert first["status"] == "ok" and second["status"] == "ok", (first, second)
    refused = invoke(stack, {"prompt": "hi", "model": "sonnet", "tenant": "acme",
                             "max_tokens": 12})
    assert refused["status"] == "rejected" and refused["error"]["type"] == "budget", refused
    other = invoke(stack, {"prompt": "hi", "model": "sonnet", "tenant": "globex",
                           "max_tokens": 12})
    assert other["status"] == "ok", other


def test_the_api_plus_bedrock_example_moves_to_bedrock_when_the_api_pool_is_full(
        stack, monkeypatch, emulator, capsys):
    """docs/guard/pools.md's Anthropic-API-plus-Bedrock example as the stack loads and encodes
    it (the API pool cut to 1 RPM, both pools pointed at the emulator): the agent builds an
    Anthropic API pool signing with the deployment's API key and a Bedrock pool in its region;
    the second call lands on Bedrock."""
    import dataclasses

    from agent.contract import encode_models
    from guard import Limits
    from stacks.settings import load_settings
    from tests.infra.conftest import pools_page_example

    defaults = json.loads((Path(__file__).resolve().parents[2] / "cdk.json").read_text())
    settings = load_settings({**defaults["context"],
                              **pools_page_example("anthropic-api-plus-bedrock")},
                             region="us-east-1")
    spec = settings.models["sonnet"]
    api, bedrock = spec.pools
    api = dataclasses.replace(api, limits=Limits(1, api.limits.itpm, api.limits.otpm),
                              base_url=emulator.pool_url("api"))
    bedrock = dataclasses.replace(bedrock, base_url=emulator.pool_url("us-east-1"))
    models = json.loads(stack["env"]["MODELS"])
    models["sonnet"] = json.loads(encode_models([dataclasses.replace(
        spec, pools=(api, bedrock))]))["sonnet"]
    monkeypatch.setenv("MODELS", json.dumps(models))
    stack["module"].reset_runtime()
    first = invoke(stack, {"prompt": "hello", "model": "sonnet", "tenant": "acme"})
    second = invoke(stack, {"prompt": "hello again", "model": "sonnet", "tenant": "acme"})
    assert first["status"] == "ok" and second["status"] == "ok", (first, second)
    pools = emulator.stats()["pools"]
    assert pools["api"]["admitted"] == 1 and pools["us-east-1"]["admitted"] == 1, pools
    assert served_by(capsys) == [("sonnet", "anthropic"), ("sonnet", "bedrock@us-east-1")]
