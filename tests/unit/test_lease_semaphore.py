"""The lease semaphore's maths and request shapes (no I/O: a dict-backed store stands in for
DynamoDB, evaluating exactly the two conditional writes the semaphore sends)."""

from __future__ import annotations

import random

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from guard.leases import (FULL, STORE_UNAVAILABLE, Lease, LeaseSemaphore, acquire_request,
                          decode, earliest_expiry, free_slots, lease_key, release_request)


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Store:
    """Items by key; `update_item` applies the semaphore's SET/REMOVE under its condition."""

    def __init__(self, old_item_on_refusal: bool = True) -> None:
        self.items: dict[str, dict] = {}
        self.requests: list[dict] = []
        self.reads = 0
        self.old_item_on_refusal = old_item_on_refusal

    def update_item(self, **request):
        self.requests.append(request)
        key = request["Key"]["pk"]["S"]
        item = self.items.get(key)
        names, values = request["ExpressionAttributeNames"], request["ExpressionAttributeValues"]
        slot = names["#slot"]
        held = (item or {}).get(slot)
        if request["UpdateExpression"] == "SET #slot = :lease":
            ok = held is None or float(held["M"]["e"]["N"]) <= float(values[":now"]["N"])
        else:
            ok = held is not None and held["M"]["o"]["S"] == values[":owner"]["S"]
        if not ok:
            response = {"Error": {"Code": "ConditionalCheckFailedException"}}
            if item is not None and self.old_item_on_refusal and \
                    request.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD":
                response["Item"] = dict(item)
            raise ClientError(response, "UpdateItem")
        item = self.items.setdefault(key, {"pk": {"S": key}})
        if request["UpdateExpression"] == "SET #slot = :lease":
            item[slot] = values[":lease"]
        else:
            del item[slot]
        return {}

    def get_item(self, **request):
        self.reads += 1
        item = self.items.get(request["Key"]["pk"]["S"])
        return {"Item": dict(item)} if item else {}


def semaphore(store, clock, limit=2, **kwargs) -> LeaseSemaphore:
    return LeaseSemaphore("buckets", "mcp#aws#connections", limit, store, clock=clock,
                          rng=random.Random(7), **kwargs)


# -- pure maths -------------------------------------------------------------------------------

def test_a_slot_is_free_when_absent_or_expired_and_only_below_the_limit():
    view = {0: ("a", 100.0), 1: ("b", 200.0), 5: ("c", 50.0)}
    assert free_slots(view, 3, now=150.0) == [0, 2]
    assert free_slots(view, 2, now=99.0) == []
    assert earliest_expiry(view, 2) == 100.0
    assert earliest_expiry(view, 6) == 50.0
    assert earliest_expiry({}, 3) is None


def test_decode_reads_slots_and_ignores_anything_else():
    item = {"pk": {"S": "lease#x"}, "s0": {"M": {"o": {"S": "a"}, "e": {"N": "12.5"}}},
            "s1": {"M": {"o": {"S": "b"}}}, "sx": {"N": "1"}, "tat_requests": {"N": "3"}}
    assert decode(item) == {0: ("a", 12.5)}
    assert decode(None) == {}


def test_the_exact_requests():
    assert acquire_request("t", "lease#n", 3, "own", 130.0, 100.0) == {
        "TableName": "t", "Key": {"pk": {"S": "lease#n"}},
        "UpdateExpression": "SET #slot = :lease",
        "ConditionExpression": "attribute_not_exists(#slot) OR #slot.#expires <= :now",
        "ExpressionAttributeNames": {"#slot": "s3", "#expires": "e"},
        "ExpressionAttributeValues": {
            ":lease": {"M": {"o": {"S": "own"}, "e": {"N": "130.000"}}},
            ":now": {"N": "100.000"}},
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
    assert release_request("t", "lease#n", 3, "own") == {
        "TableName": "t", "Key": {"pk": {"S": "lease#n"}}, "UpdateExpression": "REMOVE #slot",
        "ConditionExpression": "#slot.#owner = :owner",
        "ExpressionAttributeNames": {"#slot": "s3", "#owner": "o"},
        "ExpressionAttributeValues": {":owner": {"S": "own"}}}
    assert lease_key("mcp#aws#sessions") == "lease#mcp#aws#sessions"


# -- the semaphore on a store -----------------------------------------------------------------

def test_one_write_each_way_and_no_more_than_limit_holders():
    store, clock = Store(), Clock()
    sem = semaphore(store, clock, limit=2)
    first, second = sem.try_acquire(30), semaphore(store, clock, limit=2).try_acquire(30)
    assert first.granted and second.granted and first.store_calls == 1
    assert {first.lease.slot, second.lease.slot} == {0, 1}
    third = semaphore(store, clock, limit=2).try_acquire(30)
    assert not third.granted and third.reason == FULL
    assert third.retry_at == clock.now + 30 and third.retry_after == 30
    writes = len(store.requests)
    assert sem.release(first.lease) is True
    assert len(store.requests) == writes + 1
    assert semaphore(store, clock, limit=2).try_acquire(30).granted


def test_a_refusal_reveals_the_earliest_expiry_and_a_crashed_holder_loses_its_slot():
    store, clock = Store(), Clock()
    first = semaphore(store, clock).try_acquire(10).lease
    clock.now += 5
    semaphore(store, clock).try_acquire(60)  # never released: a crashed container
    waiter = semaphore(store, clock)
    refused = waiter.try_acquire(30)
    assert refused.retry_at == clock.now + 5  # the first lease's expiry, not the second's
    clock.now = refused.retry_at
    granted = waiter.try_acquire(30)
    assert granted.granted and granted.lease.slot == first.slot


def test_acquire_waits_exactly_until_the_revealed_expiry():
    store, clock = Store(), Clock()
    semaphore(store, clock, limit=1).try_acquire(7)
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        clock.now += seconds

    attempt = semaphore(store, clock, limit=1).acquire(30, max_wait_s=10, sleep=sleep)
    assert attempt.granted and sleeps == [7]
    refused = semaphore(store, clock, limit=1).acquire(30, max_wait_s=10, sleep=sleep)
    assert not refused.granted and refused.retry_after == 30 and sleeps == [7]


def test_a_lost_race_takes_another_free_slot_from_the_returned_item():
    class First(random.Random):
        def choice(self, seq):
            return seq[0]

    store, clock = Store(), Clock()
    for slot in (0, 1):
        store.update_item(**acquire_request("buckets", "lease#mcp#aws#connections", slot,
                                            f"other{slot}", clock.now + 30, clock.now))
    # a fresh caller believes slot 0 free; the refused write returns the item, which shows
    # slot 2 free: the second write takes it
    fresh = LeaseSemaphore("buckets", "mcp#aws#connections", 3, store, clock=clock, rng=First())
    attempt = fresh.try_acquire(30)
    assert attempt.granted and attempt.lease.slot == 2 and attempt.store_calls == 2


def test_release_of_an_expired_and_retaken_lease_leaves_the_new_holder_alone():
    store, clock = Store(), Clock()
    old = semaphore(store, clock, limit=1).try_acquire(5).lease
    clock.now += 6
    new = semaphore(store, clock, limit=1).try_acquire(5).lease
    assert new.slot == old.slot
    assert semaphore(store, clock, limit=1).release(old) is False
    assert not semaphore(store, clock, limit=1).try_acquire(5).granted


def test_a_store_without_the_old_item_costs_one_read_not_a_guess():
    store, clock = Store(old_item_on_refusal=False), Clock()
    semaphore(store, clock, limit=1).try_acquire(9)
    refused = semaphore(store, clock, limit=1).try_acquire(30)
    assert store.reads == 1 and refused.retry_at == clock.now + 9 and refused.store_calls == 2


def test_store_trouble_refuses_with_a_backoff_and_never_raises():
    class Broken:
        def update_item(self, **request):
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")

    clock = Clock()
    attempt = semaphore(Broken(), clock).try_acquire(30)
    assert not attempt.granted and attempt.reason == STORE_UNAVAILABLE
    assert attempt.retry_after == pytest.approx(0.1)
    assert semaphore(Broken(), clock).release(Lease("lease#mcp#aws#connections", 0, "x", 1.0)) \
        is False


@pytest.mark.parametrize("kwargs, message", [
    ({"limit": 0}, "limit must be a whole number"),
    ({"limit": True}, "limit must be a whole number"),
    ({"limit": 2.5}, "limit must be a whole number"),
    ({"name": ""}, "name must be a non-empty string"),
])
def test_bad_settings_are_named(kwargs, message):
    args = {"table_name": "t", "name": "n", "limit": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        LeaseSemaphore(**args)


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), "30", 10 ** 6])
def test_a_bad_ttl_is_named(ttl):
    with pytest.raises(ValueError, match="ttl_s must be a number of seconds"):
        semaphore(Store(), Clock()).try_acquire(ttl)
