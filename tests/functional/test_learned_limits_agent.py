"""Limits learned from the headers, configured end to end: a model's `learn_up_to` (cdk.json
`models.<id>.learn_up_to`, carried in MODELS) reaches the agent Lambda's bucket, which rises
to the limit the Claude emulator reports after its limits were raised at runtime."""

from __future__ import annotations

import json

import pytest

from local.fakes.claude_emulator import ClaudeEmulator
from tests.functional.test_agent_handler import EMULATOR_LIMITS, MAIN, invoke
from tests.functional.test_agent_handler import stack as handler_stack  # noqa: F401

BUCKET = "anthropic#sonnet-4"


@pytest.fixture
def emulator():
    """A fresh emulator per test: the tests raise its limits."""
    with ClaudeEmulator({"tier": "tier4", "limits": EMULATOR_LIMITS, "output_tokens": 12}) as emu:
        yield emu


@pytest.fixture
def agent(request):
    """The agent Lambda's resources in local AWS and its environment (test_agent_handler's)."""
    return request.getfixturevalue("handler_stack")


def set_learn_up_to(agent, monkeypatch, ceilings):
    models = json.loads(agent["env"]["MODELS"])
    if ceilings is None:
        models[MAIN].pop("learn_up_to", None)
    else:
        models[MAIN]["learn_up_to"] = ceilings
    monkeypatch.setenv("MODELS", json.dumps(models))
    agent["module"].reset_runtime()


def bucket_item(agent):
    return agent["dynamodb"].get_item(TableName=agent["names"]["bucket"],
                                      Key={"pk": {"S": BUCKET}}).get("Item", {})


def learned(item):
    """{dimension: {"c": capacity in force, "f": configured}} of a bucket item, per minute."""
    return {dim: {k: float(v["N"]) for k, v in entry["M"].items()}
            for dim, entry in item.get("learned", {}).get("M", {}).items()}


def test_a_model_with_learn_up_to_rises_to_the_raised_limit_up_to_its_ceiling(
        agent, monkeypatch, emulator):
    set_learn_up_to(agent, monkeypatch, {"rpm": 1000, "itpm": 300_000})
    emulator.set_limits("sonnet-4", rpm=900, itpm=500_000)  # a tier upgrade
    answer = invoke(agent, {"prompt": "hello", "model": MAIN, "tenant": "acme"})
    assert answer["status"] == "ok", answer
    # rpm to the server's 900 (under the ceiling), itpm to the ceiling, otpm not learnable
    assert learned(bucket_item(agent)) == {"requests": {"c": 900.0, "f": 600.0},
                                           "input_tokens": {"c": 300_000.0, "f": 200_000.0}}


def test_without_learn_up_to_nothing_is_learned(agent, monkeypatch, emulator):
    set_learn_up_to(agent, monkeypatch, None)
    emulator.set_limits("sonnet-4", rpm=900, itpm=500_000)
    answer = invoke(agent, {"prompt": "hello", "model": MAIN, "tenant": "acme"})
    assert answer["status"] == "ok", answer
    item = bucket_item(agent)
    assert item and learned(item) == {}  # the bucket was used, its limits stayed
