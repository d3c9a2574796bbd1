"""Capacity pools (guard.pools): the pool order per class, tenant caps split across pools, and
a Pool's validation. Pure: no store, no network."""

from __future__ import annotations

import pytest

from guard import Limits, Pool, TenantShare, TokenBucket
from guard.pools import order_for, split_tenant_caps

BUCKET = TokenBucket("t", "b", Limits(rpm=50), dynamodb=object())


def pool(name, tier=None, provider="bedrock"):
    return Pool(BUCKET, provider=provider, model="us.anthropic.claude-sonnet-4-6",
                aws_region="us-east-1", service_tier=tier, name=name)


def test_background_takes_flex_first_and_never_priority():
    pools = [pool("p", "priority"), pool("d", "default"), pool("f", "flex"), pool("n")]
    assert [p.name for p in order_for(pools, "background")] == ["f", "d", "n"]


def test_interactive_keeps_preference_order_with_flex_last():
    pools = [pool("f", "flex"), pool("p", "priority"), pool("d", "default")]
    assert [p.name for p in order_for(pools, "interactive")] == ["p", "d", "f"]


def test_tenant_caps_split_in_proportion_to_pool_capacity():
    acme = TenantShare(weight=2.0, rpm=30, itpm=None, otpm=900)
    assert split_tenant_caps({"acme": acme}, [100, 50]) == [
        {"acme": TenantShare(weight=2.0, rpm=20, otpm=600)},
        {"acme": TenantShare(weight=2.0, rpm=10, otpm=300)}]
    # a pool stating no capacity: split evenly
    assert split_tenant_caps({"acme": acme}, [100, None]) == [
        {"acme": TenantShare(weight=2.0, rpm=15, otpm=450)}] * 2
    with pytest.raises(ValueError, match="capacities"):
        split_tenant_caps({"acme": acme}, [0])


def test_the_agent_splits_caps_by_the_guards_rule():
    """One rule for the split: the agent's pools take their caps from guard.pool_spec."""
    from agent import runtime
    from guard import pool_spec

    assert not hasattr(runtime, "split_shares")
    assert runtime.pool_tenant_caps is pool_spec.pool_tenant_caps
    assert runtime.capacity_fractions is pool_spec.capacity_fractions


def test_default_names_say_provider_region_and_tier():
    assert pool(None, "flex").name == "bedrock@us-east-1/flex"
    assert Pool(BUCKET, provider="anthropic", model="claude-sonnet-4-6").name == "anthropic"


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


def test_a_booking_that_loses_its_races_is_planned_again_not_deferred():
    """Under contention a booking can lose its conditional write on both pools (the bucket then
    refuses with a retry of 0.01 s). The caller's wait still holds the queue, so the router
    books again from the refusals instead of deferring the call (old: deferred, and the caller
    came back behind everyone who booked meanwhile: one turn lost)."""
    from guard.client import CallResult
    from guard.grants import Grant
    from guard.pools import PoolRouter
    from guard.send_timing import StampedGrant
    from tests.conftest import FakeClock

    clock = FakeClock()
    a = Pool(TokenBucket("t", "a", Limits(rpm=50), dynamodb=object()), provider="anthropic",
             model="claude-sonnet-4-6", name="a")
    b = Pool(TokenBucket("t", "b", Limits(rpm=50), dynamodb=object()), provider="anthropic",
             model="claude-sonnet-4-6", name="b")
    router = PoolRouter({"sonnet": [a, b]}, breaker=False, clock=clock)
    script = [("a", Grant(False, 5.0, "quota")), ("b", Grant(False, 6.0, "quota")),  # queues
              ("a", Grant(False, 0.01, "quota")),  # lost the race: a is still the soonest
              ("a", Grant(False, 25.0, "quota")),  # lost again, and a's queue now exceeds 20 s
              ("b", Grant(True, 0.0, None, start_at=clock() + 6.0, returned_at=clock()))]
    asked = []

    def acquire_once(bucket, estimate, max_tokens, wait, tenant, priority, ticket, result):
        name, grant = script[len(asked)]
        asked.append((bucket.bucket_id, wait))
        assert bucket.bucket_id == name
        return StampedGrant(grant, clock() if grant.granted else None)

    router._acquire_once = acquire_once
    totals = CallResult(status="error", model="sonnet")
    picked = router._book(router.routes["sonnet"], 100, 64, clock() + 20.0, None,
                          "interactive", totals)
    assert picked is not None and picked[0].pool is b, (asked, totals)
    assert [bucket for bucket, _ in asked] == ["a", "b", "a", "a", "b"]
