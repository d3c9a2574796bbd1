"""Capacity pools (guard.pools): the pool order per class, tenant caps split across pools, and
a Pool's validation. Pure: no store, no network."""

from __future__ import annotations

import pytest

from guard import Limits, Pool, TokenBucket
from guard.pools import order_for, split_tenant_caps

BUCKET = TokenBucket("t", "b", Limits(rpm=50), dynamodb=object())


def pool(name, tier=None, provider="bedrock"):
    return Pool(BUCKET, provider=provider, model="us.anthropic.claude-sonnet-4-5-20250929-v1:0",
                aws_region="us-east-1", service_tier=tier, name=name)


def test_background_takes_flex_first_and_never_priority():
    pools = [pool("p", "priority"), pool("d", "default"), pool("f", "flex"), pool("n")]
    assert [p.name for p in order_for(pools, "background")] == ["f", "d", "n"]


def test_interactive_keeps_preference_order_with_flex_last():
    pools = [pool("f", "flex"), pool("p", "priority"), pool("d", "default")]
    assert [p.name for p in order_for(pools, "interactive")] == ["p", "d", "f"]


def test_tenant_caps_split_in_proportion_to_pool_capacity():
    assert split_tenant_caps({"acme": 30}, [100, 50]) == [{"acme": 20}, {"acme": 10}]
    with pytest.raises(ValueError, match="capacities"):
        split_tenant_caps({"acme": 30}, [0])


def test_default_names_say_provider_region_and_tier():
    assert pool(None, "flex").name == "bedrock@us-east-1/flex"
    assert Pool(BUCKET, provider="anthropic", model="claude-sonnet-4-5").name == "anthropic"


@pytest.mark.parametrize("kwargs, problem", [
    ({"provider": "openai"}, "provider"),
    ({"service_tier": "gold"}, "service_tier"),
    ({"provider": "anthropic", "service_tier": "flex"}, "service_tier"),
    ({"provider": "anthropic", "aws_region": "us-east-1"}, "aws_region"),
    ({"model": ""}, "model"),
])
def test_bad_pools_name_the_problem(kwargs, problem):
    args = {"provider": "bedrock", "model": "m", **kwargs}
    with pytest.raises(ValueError, match=problem):
        Pool(BUCKET, **args)


def test_prices_must_price_a_call():
    with pytest.raises(TypeError, match="cost_usd"):
        Pool(BUCKET, provider="bedrock", model="m", prices={"input": 3})
