"""The lease semaphore against local AWS over HTTP: the conditional writes as DynamoDB
evaluates them, the refused write's old item, and a crowd of threads never above the limit."""

from __future__ import annotations

import threading

from guard.leases import FULL, LeaseSemaphore, lease_key


def test_the_limit_holds_and_a_refusal_names_the_earliest_expiry(bucket_table, dynamodb,
                                                                 clock):
    def sem():
        return LeaseSemaphore(bucket_table, "mcp#aws#connections", 3, dynamodb, clock=clock)

    leases, holder = [], sem()
    for ttl in (30, 20, 40):
        attempt = holder.try_acquire(ttl)  # its view knows its own slots: one write each
        assert attempt.granted and attempt.store_calls == 1
        leases.append(attempt.lease)
    assert sorted(lease.slot for lease in leases) == [0, 1, 2]
    refused = sem().try_acquire(10)
    assert not refused.granted and refused.reason == FULL
    assert refused.retry_at == clock() + 20  # the earliest expiry, from the refused write
    # the item sits in the bucket table under its own key prefix
    item = dynamodb.get_item(TableName=bucket_table, ConsistentRead=True,
                             Key={"pk": {"S": lease_key("mcp#aws#connections")}})["Item"]
    assert sorted(name for name in item if name != "pk") == ["s0", "s1", "s2"]
    assert sem().release(leases[0]) is True
    assert sem().try_acquire(10).granted


def test_an_expired_lease_is_taken_over_and_its_late_release_is_refused(bucket_table, dynamodb,
                                                                       clock):
    def sem():
        return LeaseSemaphore(bucket_table, "mcp#aws#sessions", 1, dynamodb, clock=clock)

    crashed = sem().try_acquire(15).lease
    clock.advance(15)
    taken = sem().try_acquire(15)
    assert taken.granted and taken.lease.slot == crashed.slot
    assert sem().release(crashed) is False
    assert not sem().try_acquire(15).granted  # the new holder still holds it


def test_threads_never_hold_more_than_the_limit(bucket_table, dynamodb):
    """24 threads take a lease, hold it for a moment, release, 4 times each, with limit 5;
    the waiters wait at the revealed expiries (ttl 1 s), and the holders count never
    exceeds 5."""
    limit, holders, most = 5, [0], [0]
    lock = threading.Lock()
    failures = []

    def worker():
        sem = LeaseSemaphore(bucket_table, "mcp#crowd#connections", limit, dynamodb)
        for _ in range(4):
            attempt = sem.acquire(1.0, max_wait_s=60)
            if not attempt.granted:
                failures.append(attempt)
                return
            with lock:
                holders[0] += 1
                most[0] = max(most[0], holders[0])
            threading.Event().wait(0.01)
            with lock:
                holders[0] -= 1
            sem.release(attempt.lease)

    threads = [threading.Thread(target=worker) for _ in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    assert 1 <= most[0] <= limit
