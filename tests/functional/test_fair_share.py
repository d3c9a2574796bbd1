"""Tenant shares, priority classes and tickets on the bucket, against the local AWS server with
a frozen clock: closed-loop callers are simulated event by event, so every run is the same."""

from __future__ import annotations

import heapq
import random
from collections import Counter
from dataclasses import dataclass, field

import pytest

from guard import BucketRequestError, Limits, TenantShare, TokenBucket
from guard.fair import PENDING_SHARE_S


@dataclass
class Caller:
    tenant: str | None
    priority: str = "interactive"
    ticket: float | None = None
    answered: int = 0
    waits: list[float] = field(default_factory=list)
    queues: list[float] = field(default_factory=list)  # each grant's booked queue (seconds)
    arrived: float = 0.0


@dataclass
class Run:
    grants: list[tuple[float, Caller]] = field(default_factory=list)  # (start, caller)
    writes: int = 0
    tickets: int = 0

    def shares(self, since: float, until: float) -> Counter:
        counts = Counter(caller.tenant for start, caller in self.grants if since <= start < until)
        total = sum(counts.values())
        return Counter({tenant: n / total for tenant, n in counts.items()})


def simulate(make_bucket, clock, callers: list[Caller], duration_s: float, *, call_s: float,
             max_wait_s: float = 20.0, think_s: float = 0.0,
             deadline_s: float | None = None) -> Run:
    """Each caller loops: acquire (booking up to `max_wait_s` ahead), wait for its start, call
    for `call_s`, think `think_s`; a refusal waits `retry_after` and comes back with its
    ticket. One bucket client per caller, as Lambda containers have.

    With `deadline_s`, callers are driven as `GuardedClaude` drives them: a call has
    `deadline_s` seconds and books up to what is left of it; a refusal that fits it waits
    `retry_after` plus a seeded jitter and books again, one that does not is deferred: the
    caller sleeps `retry_after` and makes a new call (a full deadline), keeping its ticket."""
    t0 = clock.now
    run = Run()
    rng = random.Random(7)
    buckets = [make_bucket() for _ in callers]
    deadlines = [t0 + (deadline_s or 0.0)] * len(callers)
    events = [(t0 + i * 1e-3, i) for i in range(len(callers))]
    heapq.heapify(events)
    while events:
        at, i = heapq.heappop(events)
        if at > t0 + duration_s:
            break
        clock.now = at
        caller, bucket = callers[i], buckets[i]
        if caller.ticket is None:
            caller.arrived = at
        wait = max_wait_s if deadline_s is None else max(0.0, deadlines[i] - at)
        grant = bucket.try_acquire(1, max_wait_s=wait, tenant=caller.tenant,
                                   priority=caller.priority, ticket=caller.ticket)
        run.writes += grant.store_calls
        if grant.granted:
            caller.ticket = None
            caller.answered += 1
            caller.waits.append(grant.start_at - caller.arrived)
            caller.queues.append(grant.queue_s)
            run.grants.append((grant.start_at - t0, caller))
            deadlines[i] = grant.start_at + call_s + think_s + (deadline_s or 0.0)
            heapq.heappush(events, (grant.start_at + call_s + think_s, i))
            continue
        assert grant.reason in ("quota", "fair_share", "tenant_cap"), grant.reason
        if grant.ticket is not None and grant.ticket != caller.ticket:
            run.tickets += 1
        caller.ticket = grant.ticket
        pause = max(grant.retry_after, 0.01)
        if deadline_s is not None:
            if at + pause > deadlines[i]:   # deferred: a new call after retry_after
                deadlines[i] = at + pause + deadline_s
            else:
                pause += rng.uniform(0, 0.1 * pause + 0.02)
        heapq.heappush(events, (at + pause, i))
    return run


@pytest.fixture
def bucket_for(bucket_table, dynamodb, clock):
    def make(limits):
        def one():
            return TokenBucket(bucket_table, "anthropic#sonnet-4", limits, dynamodb,
                               clock=clock)
        return one
    return make


def drained(make_bucket, limits_rpm):
    """Start from an empty requests dimension: every caller queues at once."""
    assert make_bucket().try_acquire(int(limits_rpm)).granted


LIMITS_60 = dict(rpm=60)


@pytest.mark.slow
def test_weights_3_to_1_share_the_queue_whatever_the_caller_counts(bucket_for, clock):
    limits = Limits(**LIMITS_60, tenants={"acme": TenantShare(weight=3),
                                          "globex": TenantShare(weight=1)})
    make = bucket_for(limits)
    drained(make, 60)
    callers = [Caller("acme") for _ in range(4)] + [Caller("globex") for _ in range(12)]
    run = simulate(make, clock, callers, 150, call_s=1.0)
    shares = run.shares(30, 150)
    assert shares["acme"] == pytest.approx(0.75, abs=0.05), shares


@pytest.mark.slow
def test_noisy_neighbour_gets_half_with_equal_weights(bucket_for, clock):
    limits = Limits(**LIMITS_60, tenants={"acme": TenantShare(), "globex": TenantShare()})
    make = bucket_for(limits)
    drained(make, 60)
    callers = [Caller("acme") for _ in range(24)] + [Caller("globex") for _ in range(4)]
    run = simulate(make, clock, callers, 180, call_s=1.0)
    shares = run.shares(60, 180)   # the first minute splits the full bucket by caller count
    assert shares["globex"] == pytest.approx(0.5, abs=0.05), shares
    acme = [c.answered for c in callers if c.tenant == "acme"]
    assert min(acme) >= 0.8 * sum(acme) / len(acme)


def test_one_tenant_alone_uses_the_whole_limit(bucket_for, clock):
    limits = Limits(**LIMITS_60, tenants={"acme": TenantShare(), "globex": TenantShare()})
    make = bucket_for(limits)
    drained(make, 60)
    run = simulate(make, clock, [Caller("acme") for _ in range(8)], 60, call_s=1.0)
    assert len([s for s, _ in run.grants if s < 60]) >= 0.95 * 60
    assert run.tickets == 0


def test_caps_hold_without_contention(bucket_for, clock):
    limits = Limits(**LIMITS_60, tenants={"acme": TenantShare(rpm=12)})
    make = bucket_for(limits)
    run = simulate(make, clock, [Caller("acme") for _ in range(4)], 60, call_s=0.5)
    starts = sorted(s for s, _ in run.grants)
    assert len(starts) <= 12 + 12 + 1   # a full cap at the start, then 12/min
    for left in starts:   # any 60 s window: the cap's burst plus its refill
        assert len([s for s in starts if left <= s < left + 60]) <= 12 + 12


def test_a_ticket_keeps_its_place_ahead_of_later_arrivals(bucket_for, clock):
    limits = Limits(**LIMITS_60, tenants={"acme": TenantShare(), "globex": TenantShare()})
    make = bucket_for(limits)
    drained(make, 60)
    globex = make()
    for _ in range(12):   # globex active: a queue shared by two tenants
        assert globex.try_acquire(1, max_wait_s=30, tenant="globex").granted
    acme = [make() for _ in range(20)]
    outcomes = [bucket.try_acquire(1, max_wait_s=10, tenant="acme") for bucket in acme]
    ticketed = [(bucket, g) for bucket, g in zip(acme, outcomes) if g.ticket is not None]
    assert ticketed, [g.reason for g in outcomes]
    (first_bucket, first), later = ticketed[0], make()
    clock.advance(first.retry_after)
    latecomer = later.try_acquire(1, max_wait_s=10, tenant="acme")
    held = first_bucket.try_acquire(1, max_wait_s=10, tenant="acme", ticket=first.ticket)
    assert held.granted, held
    assert not latecomer.granted or latecomer.start_at >= held.start_at


def test_unknown_tenant_is_refused_and_no_tenant_counts_as_default(bucket_for, dynamodb,
                                                                    bucket_table):
    make = bucket_for(Limits(**LIMITS_60, tenants={"acme": TenantShare()}))
    with pytest.raises(BucketRequestError, match="unknown tenant 'initech'.*acme"):
        make().try_acquire(1, tenant="initech")
    with pytest.raises(BucketRequestError, match="priority must be"):
        make().try_acquire(1, tenant="acme", priority="urgent")
    grant = make().try_acquire(1)
    assert grant.granted and grant.tenant == "default"


@pytest.mark.slow
def test_background_saturating_never_delays_interactive_beyond_one_second(bucket_for, clock):
    limits = Limits(**LIMITS_60, tenants={"acme": TenantShare()})
    make = bucket_for(limits)
    drained(make, 60)
    background = [Caller("acme", "background") for _ in range(12)]
    interactive = [Caller("acme")]   # about 10% of the limit: think 9 s between calls
    run = simulate(make, clock, background + interactive, 120, call_s=1.0, think_s=9.0)
    # its own queue: background books at most 0.5 s ahead, then its own request's refill (1 s
    # at 60 RPM), and a booking starts a round trip (at most 0.5 s) plus one request's cost
    # after the queue end it saw
    queues = sorted(q for c in interactive for q in c.queues[1:])
    assert queues and queues[-1] <= 0.5 + 1.0 + 0.5 + 1.0 + 1e-3, queues
    beyond = sorted(w - q for c in interactive for w, q in zip(c.waits[1:], c.queues[1:]))
    assert beyond[int(0.99 * (len(beyond) - 1))] <= 1.0, beyond
    bg = len([s for s, c in run.grants if c.priority == "background" and s >= 30])
    it = len([s for s, c in run.grants if c.priority == "interactive" and s >= 30])
    assert bg >= 0.85 * (90 - it), (bg, it)


@pytest.mark.slow
def test_32_callers_of_one_tenant_share_evenly_across_refusals(bucket_for, clock):
    """A refused caller keeps its place (its ticket) and is served before its tenant's later
    arrivals, so no caller loses its turn by coming back at its retry_after."""
    limits = Limits(**LIMITS_60, tenants={"acme": TenantShare()})
    make = bucket_for(limits)
    drained(make, 60)
    callers = [Caller("acme") for _ in range(32)]
    simulate(make, clock, callers, 300, call_s=1.0)
    answers = [c.answered for c in callers]
    mean_answers = sum(answers) / len(answers)
    assert min(answers) >= 0.85 * mean_answers and max(answers) <= 1.15 * mean_answers, answers


def test_polling_with_tenants_refuses_without_a_write_and_holds_caps(bucket_for, clock):
    """max_wait_s=0: a poller is admitted only when there is capacity now (and then whichever
    poller comes first is: shares follow how often each tenant polls), so a refusal takes no
    place in the queue and costs no write; the tenant's caps hold as when booking."""
    limits = Limits(**LIMITS_60, tenants={"acme": TenantShare(), "globex": TenantShare(rpm=6)})
    make = bucket_for(limits)
    drained(make, 60)
    acme, globex = make(), make()
    refused = acme.try_acquire(1, tenant="acme")
    assert not refused.granted and refused.reason == "quota" and refused.ticket is None
    again = acme.try_acquire(1, tenant="acme")
    assert not again.granted and (refused.store_calls, again.store_calls) == (1, 0)
    granted = []
    for _ in range(600):  # globex polls every 0.1 s for a minute: its cap, 6 a minute, holds
        clock.advance(0.1)
        grant = globex.try_acquire(1, tenant="globex")
        if grant.granted:
            granted.append(grant.start_at)
        else:
            assert grant.reason in ("quota", "tenant_cap") and grant.ticket is None
    assert 0 < len(granted) <= 6 + 6


def tenant_state(dynamodb, table, tenant):
    """A tenant's fair-share entry on the bucket item (epoch seconds)."""
    item = dynamodb.get_item(TableName=table, Key={"pk": {"S": "anthropic#sonnet-4"}})["Item"]
    return {name: float(value["N"]) for name, value in
            item["tenants"]["M"][tenant]["M"].items()}


def test_a_tenant_back_just_after_its_turn_keeps_its_place_in_virtual_time(
        bucket_for, clock, dynamodb, bucket_table):
    """Sharing with an active tenant, a tenant whose virtual time fell less than one step
    behind the start (its caller came back just after its turn) is charged from where it was:
    restarting it at the start would hand that turn to the tenant with more callers."""
    limits = Limits(**LIMITS_60, tenants={"acme": TenantShare(), "globex": TenantShare()})
    make = bucket_for(limits)
    drained(make, 60)
    for tenant in ("acme", "globex", "acme", "acme"):
        assert make().try_acquire(1, max_wait_s=20, tenant=tenant).granted
    before = tenant_state(dynamodb, bucket_table, "globex")["v"]
    grant = make().try_acquire(1, max_wait_s=20, tenant="globex")
    assert grant.granted and 0 < grant.start_at - before < 2.0, (grant, before)
    # two tenants active, equal weights: a request (1 s at 60 RPM) moves it 2 s on
    assert tenant_state(dynamodb, bucket_table, "globex")["v"] == pytest.approx(before + 2.0,
                                                                              abs=1e-3)


def test_background_booking_directly_is_admitted_within_its_tenants_step(bucket_for, clock):
    """Background books by itself at most 0.5 s ahead; its tenant's virtual time a fraction of
    a request ahead of the start (an interactive booking just before) admits it, as it would
    admit interactive work, instead of writing a ticket the short booking never uses."""
    limits = Limits(**LIMITS_60, tenants={"acme": TenantShare()})
    make = bucket_for(limits)
    drained(make, 60)
    clock.advance(0.8)
    assert make().try_acquire(1, max_wait_s=20, tenant="acme").granted
    clock.advance(0.9)
    grant = make().try_acquire(1, max_wait_s=20, tenant="acme", priority="background")
    assert grant.granted and grant.store_calls == 1, grant
    assert grant.queue_s <= 0.5


def test_background_takes_no_reserve_ticket_it_would_come_back_past(bucket_for, clock):
    """A background caller refused by the reserve comes back when the queue is short enough
    to book directly; a reserve ticket due only after that is never used: it is refused
    without a write (and leaves the reserve's virtual time where it was)."""
    limits = Limits(**LIMITS_60, tenants={"acme": TenantShare()})
    make = bucket_for(limits)
    drained(make, 60)
    first = make().try_acquire(1, max_wait_s=20, tenant="acme", priority="background")
    assert first.granted and first.queue_s > 0.5   # booked through the reserve
    second = make().try_acquire(1, max_wait_s=20, tenant="acme", priority="background")
    assert not second.granted and second.reason == "fair_share", second
    assert (second.store_calls, second.ticket) == (0, None), second
    # back when the queue is short enough to book directly (within 0.5 s)
    assert second.retry_after <= first.queue_s + 1.0, second


def test_a_tenant_holds_at_most_its_share_of_the_booked_queue(bucket_for, clock):
    """While another tenant has demand, a tenant books at most `w / W` of PENDING_SHARE_S of
    the queue: two tenants booking turn about can no longer fill it up to their callers'
    wait (20 s), which a tenant with few callers, all of them waiting in it, cannot keep half
    of. Refused for their share, callers take a place (a ticket)."""
    limits = Limits(**LIMITS_60, tenants={"acme": TenantShare(), "globex": TenantShare()})
    make = bucket_for(limits)
    drained(make, 60)
    booked = Counter()
    latest = clock.now
    for _ in range(12):
        for tenant in ("acme", "globex"):
            grant = make().try_acquire(1, max_wait_s=20, tenant=tenant)
            if grant.granted:
                booked[tenant] += 1
                latest = max(latest, grant.start_at)
            else:
                assert grant.reason == "fair_share" and grant.ticket is not None, grant
    # each holds half of PENDING_SHARE_S (a request costs 1 s, 2 s of a tenant's share),
    # plus the booking that takes it there; the queue starts a slack after the head
    assert abs(booked["acme"] - booked["globex"]) <= 1, booked
    assert latest - clock.now <= PENDING_SHARE_S + 1.0 + 1.5, (latest - clock.now, booked)


@pytest.mark.slow
def test_noisy_neighbour_with_deadlines_keeps_the_queue_short_and_its_order(bucket_for, clock):
    """24 callers of acme, 4 of globex, equal weights, driven as GuardedClaude drives them
    (20 s deadlines, deferrals): each tenant books half; the booked queue stays short enough
    for globex's 4 callers to keep half of it booked; acme's callers share acme's half
    evenly (tickets keep their order while the tenant waits for its share)."""
    limits = Limits(rpm=50, tenants={"acme": TenantShare(), "globex": TenantShare()})
    make = bucket_for(limits)
    drained(make, 50)
    callers = [Caller("acme") for _ in range(24)] + [Caller("globex") for _ in range(4)]
    run = simulate(make, clock, callers, 300, call_s=0.3, deadline_s=20.0)
    shares = run.shares(60, 300)
    assert shares["globex"] == pytest.approx(0.5, abs=0.05), shares
    queues = sorted(q for c in callers for q in c.queues)
    assert queues[len(queues) // 2] <= PENDING_SHARE_S, queues[len(queues) // 2]
    per_caller = Counter(id(c) for start, c in run.grants if 60 <= start < 300)
    acme = [per_caller[id(c)] for c in callers if c.tenant == "acme"]
    assert min(acme) >= 0.85 * sum(acme) / len(acme), acme


def test_using_idle_capacity_keeps_the_places_of_its_tenants_ticket_holders(bucket_for, clock):
    """Sharing with an active tenant, an admission on idle capacity leaves the tenant's virtual
    time where it is: restarting it below the places of the tenant's ticket holders voided
    them, and a later arrival then booked ahead of them."""
    limits = Limits(**LIMITS_60, tenants={"acme": TenantShare(), "globex": TenantShare()})
    make = bucket_for(limits)
    drained(make, 60)
    assert make().try_acquire(1, max_wait_s=20, tenant="globex").granted
    refusals = [make().try_acquire(1, max_wait_s=20, tenant="acme") for _ in range(20)]
    held = max(g.ticket for g in refusals if g.ticket is not None)
    assert held > clock.now + 30   # acme's places reach past the idle moment below
    clock.advance(25)   # the queue has drained
    poller = make()
    while poller.try_acquire(1, tenant="globex").granted:   # use up the capacity now
        pass
    assert make().try_acquire(1, max_wait_s=20, tenant="globex").granted   # globex books
    clock.advance(3)   # capacity now again
    idle = make().try_acquire(1, max_wait_s=20, tenant="acme")
    assert idle.granted and idle.queue_s == 0, idle
    while poller.try_acquire(1, tenant="globex").granted:
        pass
    later = make().try_acquire(1, max_wait_s=20, tenant="acme")
    assert not later.granted and later.ticket > held, (later, held)
