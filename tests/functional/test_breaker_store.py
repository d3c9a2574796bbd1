"""The shared circuit breaker (guard.breaker) against local DynamoDB: two callers (two Lambda
instances) share one item; the exact requests are pinned."""

from __future__ import annotations

import pytest

from guard.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker


@pytest.fixture
def make(bucket_table, dynamodb, clock):
    def build(client=None, **kwargs):
        return CircuitBreaker(bucket_table, "bedrock-us-west-2", client or dynamodb, clock=clock,
                              failure_threshold=3, open_s=5.0, probe_s=10.0, view_ttl_s=1.0,
                              **kwargs)
    return build


class Recording:
    """A DynamoDB client that records each request before passing it on."""

    def __init__(self, client) -> None:
        self.client, self.calls = client, []

    def __getattr__(self, name):
        method = getattr(self.client, name)

        def call(**request):
            self.calls.append((name, request))
            return method(**request)
        return call


def test_consecutive_failures_open_it_for_every_caller(make, clock):
    a, b = make(), make()
    for _ in range(3):
        a.record_failure()
    assert a.view().state == OPEN
    assert not b.allow().allowed  # b reads the item: open for it too
    assert b.allow().retry_after == pytest.approx(5.0)


def test_a_success_resets_the_count_so_failures_must_be_consecutive(make):
    a = make()
    a.record_failure()
    a.record_failure()
    a.record_success()
    a.record_failure()
    a.record_failure()
    assert a.view().state == CLOSED
    assert a.allow().allowed


def test_a_healthy_pool_costs_no_writes(make, dynamodb):
    recording = Recording(dynamodb)
    a = make(recording)
    for _ in range(5):
        decision = a.allow()
        a.record_success(decision)
    assert [name for name, _ in recording.calls] == ["get_item"]


def test_one_caller_wins_the_probe_its_success_closes_the_breaker(make, clock):
    a, b = make(), make()
    for _ in range(3):
        a.record_failure()
    clock.advance(5.0)
    first = a.allow()
    second = b.allow()
    assert first.allowed and first.probe
    assert not second.allowed  # b's view was open and due: its write lost the race
    assert b.view().state == HALF_OPEN
    a.record_success(first)
    clock.advance(1.0)
    assert b.allow().allowed and a.view().state == CLOSED


def test_a_failed_probe_opens_it_again_and_a_dead_probers_lease_expires(make, clock):
    a, b = make(), make()
    for _ in range(3):
        a.record_failure()
    clock.advance(5.0)
    probe = a.allow()
    a.record_failure(probe)
    assert a.view().state == OPEN and not a.allow().allowed
    clock.advance(5.0)
    lost = a.allow()  # a takes the probe and never reports (its Lambda died)
    assert lost.probe
    clock.advance(10.0)
    assert b.allow().probe  # the lease expired: b probes


def test_opening_is_one_conditional_write_pinned_to_the_closed_state(make, dynamodb, clock):
    recording = Recording(dynamodb)
    a = make(recording)
    for _ in range(3):
        a.record_failure()
    writes = [request for name, request in recording.calls if name == "update_item"]
    assert len(writes) == 4  # three counted failures, one state change
    assert writes[-1]["UpdateExpression"] == \
        "SET st = :open, opened = :now, fails = :zero REMOVE probe"
    assert writes[-1]["ConditionExpression"] == "attribute_not_exists(st) OR st = :closed"
    assert writes[-1]["ReturnValuesOnConditionCheckFailure"] == "ALL_OLD"
    assert a.writes == {"failure": 3, "open": 1, "probe": 0, "close": 0}


def test_a_second_caller_opening_late_changes_nothing(make, clock):
    a, b = make(), make()
    for _ in range(3):
        a.record_failure()
    opened = a.view().opened
    clock.advance(1.0)
    b.record_failure()  # its count passes the threshold again, but the breaker is open
    assert b.view().state == OPEN and b.view().opened == opened


class Broken:
    def __getattr__(self, name):
        def fail(**request):
            raise ConnectionError("table unreachable")
        return fail


def test_a_store_error_never_blocks_traffic(make):
    a = make(Broken())
    a.record_failure()
    assert a.allow().allowed
