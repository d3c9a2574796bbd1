"""Live tenant shares on capacity pools: a cap changed in the limits config item (`python -m
cli.limits set`, no redeploy) reaches every pool bucket of a pooled model, split across the
pools by their requests per minute as the deployed caps are, so it holds on the sum."""

from __future__ import annotations

import json
import time

import pytest

from guard import TenantShare
from guard.shares import SHARES
from guard.spend import LimitSet, write_limits
from local.fakes.claude_emulator import ClaudeEmulator
from tests.functional.test_agent_handler import EMULATOR_LIMITS, invoke
from tests.functional.test_agent_handler import stack as handler_stack  # noqa: F401
from tests.functional.test_pool_agent import pool, use_pools


@pytest.fixture(scope="module")
def emulator():
    with ClaudeEmulator({"tier": "tier4", "limits": EMULATOR_LIMITS, "output_tokens": 12,
                         "bedrock": {"rpm": 100, "tpm": 1_000_000}}) as emu:
        yield emu


@pytest.fixture
def agent(request):
    """The agent Lambda's resources in local AWS and its environment (test_agent_handler's)."""
    return request.getfixturevalue("handler_stack")


def item_shares(agent, bucket_id):
    """The shares a bucket item holds (guard.shares: "n" the version, "<tenant>/<key>")."""
    item = agent["dynamodb"].get_item(TableName=agent["names"]["bucket"],
                                      Key={"pk": {"S": bucket_id}})["Item"]
    held = item.get("tenants", {}).get("M", {}).get(SHARES, {}).get("M", {})
    return {k: float(v["N"]) for k, v in held.items()}


def test_a_live_cap_reaches_every_pool_bucket_split_by_the_pools_rpm(agent, monkeypatch,
                                                                     emulator):
    # the pools hold a quarter and three quarters of the model's requests per minute
    east, west = pool(emulator, "us-east-1", rpm=30), pool(emulator, "us-west-2", rpm=90)
    monkeypatch.setenv("TENANTS", json.dumps({"acme": {"rpm": 40}, "globex": {}}))
    monkeypatch.setenv("LIMITS_TABLE", agent["names"]["bucket"])
    write_limits(agent["dynamodb"], agent["names"]["bucket"], LimitSet(),
                 LimitSet(shares={"acme": TenantShare(rpm=8), "globex": TenantShare()},
                          version=1), who="test", what=["tenants.acme.rpm=8"], at=time.time())
    use_pools(agent, monkeypatch, east, west)

    first = invoke(agent, {"prompt": "hello", "model": "sonnet", "tenant": "acme"})
    emulator.outage("us-east-1", for_s=600)  # the next call is served by us-west-2
    second = invoke(agent, {"prompt": "hello", "model": "sonnet", "tenant": "acme"})
    assert first["status"] == "ok" and second["status"] == "ok", (first, second)
    assert emulator.stats()["pools"]["us-west-2"]["admitted"] == 1

    # the live cap of 8 per minute, not the deployed 40: 2 + 6 on the pools
    east_shares, west_shares = item_shares(agent, east["bucket"]), item_shares(agent,
                                                                                west["bucket"])
    assert (east_shares.get("n"), east_shares.get("acme/rpm")) == (1, pytest.approx(2.0))
    assert (west_shares.get("n"), west_shares.get("acme/rpm")) == (1, pytest.approx(6.0))
    assert "globex/rpm" not in east_shares and "globex/rpm" not in west_shares
