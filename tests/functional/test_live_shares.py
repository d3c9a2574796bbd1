"""Tenant weights and caps changed without a redeploy (`TokenBucket.set_shares`, `guard.shares`),
against the local AWS server with a simulated clock: two bucket clients as two Lambda
containers, one of which learns the new shares first."""

from __future__ import annotations

import pytest

from guard import Limits, TenantShare, TokenBucket
from guard import shares


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _buckets(dynamodb, table, clock, tenants, n=2):
    limits = Limits(600, tenants=tenants)
    return [TokenBucket(table, "anthropic#sonnet", limits, dynamodb, clock=clock)
            for _ in range(n)]


def _admitted(buckets, clock, tenant, seconds, step_s=0.5):
    """Each client in turn tries one request for `tenant` every `step_s`; the grant times."""
    times = []
    for i in range(int(seconds / step_s)):
        clock.now += step_s
        grant = buckets[i % len(buckets)].try_acquire(1, tenant=tenant)
        if grant.granted:
            times.append(clock.now)
    return times


def _most_in_a_window(times, since, window_s=60.0):
    times = [t for t in times if t >= since]
    return max((sum(1 for u in times if t <= u < t + window_s) for t in times), default=0)


def test_a_lowered_cap_holds_for_every_client_once_one_switched(dynamodb, bucket_table):
    clock = Clock()
    old = {"acme": TenantShare(rpm=60), "globex": TenantShare()}
    first, late = _buckets(dynamodb, bucket_table, clock, old)
    for bucket in (first, late):
        bucket.set_shares(old, 0)
    _admitted([first, late], clock, "acme", 30)  # acme uses its cap
    switch_at = clock.now
    new = {"acme": TenantShare(rpm=6), "globex": TenantShare()}
    assert first.set_shares(new, 1)  # `late` has not read the new limits yet
    times = _admitted([first, late], clock, "acme", 180)
    # the new cap's GCRA bound (a burst of 6 + 6 refilled per minute) in every window after
    # the switch, whichever client admitted; the old cap would have let `late` admit 60
    assert _most_in_a_window(times, switch_at) <= 12
    assert late.shares_version == 1
    assert late.limits.tenants["acme"].rpm == 6
    assert first.writes_by_purpose["shares"] == 1  # one switch write, by the first client


def test_what_a_tenant_used_counts_against_its_new_cap(dynamodb, bucket_table):
    clock = Clock()
    old = {"acme": TenantShare(rpm=60)}
    [bucket] = _buckets(dynamodb, bucket_table, clock, old, n=1)
    bucket.set_shares(old, 0)
    for _ in range(30):  # half the old cap, at once
        assert bucket.try_acquire(1, tenant="acme").granted
    bucket.set_shares({"acme": TenantShare(rpm=20)}, 1)
    # 30 requests are 1.5 minutes of the new cap: 0.5 minute of debt to refill first (and
    # the idle form's margin of 1 s at the old rate, 3 s at the new one)
    assert not bucket.try_acquire(1, tenant="acme").granted
    clock.now += 30
    assert not bucket.try_acquire(1, tenant="acme").granted
    clock.now += 7
    assert bucket.try_acquire(1, tenant="acme").granted


def test_a_raised_weight_and_cap_reach_a_client_through_the_bucket_item(dynamodb,
                                                                         bucket_table):
    clock = Clock()
    old = {"acme": TenantShare(), "globex": TenantShare(rpm=10)}
    first, late = _buckets(dynamodb, bucket_table, clock, old)
    late.set_shares(old, 0)
    first.set_shares({"acme": TenantShare(weight=3), "globex": TenantShare(rpm=20)}, 4)
    assert first.try_acquire(1, tenant="globex").granted  # switches the item to v4
    assert late.try_acquire(1, tenant="globex").granted  # refused by the pin, adopts, books
    assert late.shares_version == 4
    assert late.limits.tenants["acme"].weight == 3
    assert late.limits.tenants["globex"].rpm == 20
    assert not late.set_shares(old, 3)  # an older version (a stale read) changes nothing


def test_shares_a_bucket_cannot_enforce_are_refused_and_change_nothing(dynamodb,
                                                                       bucket_table):
    clock = Clock()
    [bucket] = _buckets(dynamodb, bucket_table, clock, {"acme": TenantShare()}, n=1)
    with pytest.raises(ValueError, match="caps tokens, which this bucket does not enforce"):
        bucket.set_shares({"acme": TenantShare(tpm=100)}, 1)  # an Anthropic bucket: no tpm
    assert bucket.shares_version is None


def test_the_switch_rescales_only_changed_caps_and_pins_the_version():
    seen = {"tenants": {"acme": {"r": 1_000.0 + 30, "v": 5.0},
                        "globex": {"r": 1_000.0 + 10},
                        shares.SHARES: {"n": 2.0, "acme/weight": 1.0, "acme/rpm": 60.0,
                                        "globex/weight": 1.0, "globex/rpm": 10.0}}}
    old = shares.decode(seen)
    assert old == {"acme": TenantShare(rpm=60), "globex": TenantShare(rpm=10)}
    new = {"acme": TenantShare(rpm=20), "globex": TenantShare(rpm=10)}
    update = shares.switch_update(seen, old, new, 3, 1_000.0, 60.0)
    request = update.request("t", "b")
    condition = request["ConditionExpression"]
    assert condition.count("BETWEEN") == 1  # acme's tat only: globex's cap did not change
    values = request["ExpressionAttributeValues"]
    assert {"N": "1090.000000"} in values.values()  # 30 s at 60/min = 90 s at 20/min
    assert {"N": "2"} in values.values()  # pinned to the version it replaces

