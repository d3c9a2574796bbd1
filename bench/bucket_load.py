"""Saturating load on one distributed bucket: W = processes x threads independent callers.

Each caller is its own `TokenBucket` instance (as each Lambda container would be), acquiring,
"calling Claude" for `call_s` seconds, then settling actual usage below the reservation. Every
grant and settle is written to a ledger (time, amount per dimension) so a test or the benchmark
can check the bucket's promise: reservations minus refunds in any window of W seconds stay
within capacity + refill x W.

Used by `bench.bucket_bench` (prints numbers) and the concurrency tests (assert on them).
"""

from __future__ import annotations

import multiprocessing
import random
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Workload:
    """What each caller asks for: input tokens uniform in [input_min, input_max], `max_tokens`
    reserved, actual output uniform in [output_min, max_tokens]; `call_s` seconds per call.
    `clock_offsets_s` skews callers' clocks (caller i gets offsets[i % len]).
    `booking_s`: 0 polls (refused callers sleep `retry_after`, capped at `max_wait_s`); above 0
    books a start up to that many seconds ahead and sleeps until it (fifo). After
    `switch_at_s` seconds, inputs come from [switch_input_min, switch_input_max] instead (the
    binding dimension can switch mid-run)."""

    input_min: int = 50
    input_max: int = 150
    max_tokens: int = 40
    output_min: int = 10
    call_s: float = 0.02
    max_wait_s: float = 1.0
    clock_offsets_s: tuple[float, ...] = (0.0,)
    booking_s: float = 0.0
    switch_at_s: float | None = None
    switch_input_min: int = 0
    switch_input_max: int = 0
    #: caller i acquires as tenants[i % len] with priorities[i % len] (None: no tenant)
    tenants: tuple[str | None, ...] = (None,)
    priorities: tuple[str, ...] = ("interactive",)


@dataclass
class LoadResult:
    ledger: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    acquire_calls: list[int] = field(default_factory=list)
    acquire_reads: int = 0
    acquire_latency_s: list[float] = field(default_factory=list)
    grants: int = 0
    refusals: dict[str, int] = field(default_factory=dict)
    settle_calls: int = 0
    settle_failures: int = 0
    first_attempt_grants: int = 0
    forgone_refunds: int = 0
    booked: int = 0
    started: float = 0.0
    ended: float = 0.0
    #: tenant -> its own ledger (same form), for checking its caps
    tenant_ledgers: dict = field(default_factory=dict)

    def merge(self, other: "LoadResult") -> None:
        self.ledger.extend(other.ledger)
        self.acquire_calls.extend(other.acquire_calls)
        self.acquire_reads += other.acquire_reads
        self.acquire_latency_s.extend(other.acquire_latency_s)
        self.grants += other.grants
        for reason, n in other.refusals.items():
            self.refusals[reason] = self.refusals.get(reason, 0) + n
        self.settle_calls += other.settle_calls
        self.settle_failures += other.settle_failures
        self.first_attempt_grants += other.first_attempt_grants
        self.forgone_refunds += other.forgone_refunds
        self.booked += other.booked
        for tenant, ledger in other.tenant_ledgers.items():
            self.tenant_ledgers.setdefault(tenant, []).extend(ledger)
        self.started = min(self.started or other.started, other.started)
        self.ended = max(self.ended, other.ended)


def _caller(endpoint: str, table: str, bucket_id: str, limits_kwargs: dict, workload: Workload,
            start_at: float, end_at: float, seed: int, clock_offset: float,
            result: LoadResult, lock: threading.Lock) -> None:
    import boto3

    from guard import Limits, TokenBucket

    rng = random.Random(seed)
    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")

    def clock() -> float:
        """This caller's skewed clock (epoch seconds)."""
        return time.time() + clock_offset

    bucket = TokenBucket(table, bucket_id, Limits(**limits_kwargs), client, clock=clock)
    local = LoadResult()
    tenant = workload.tenants[seed % len(workload.tenants)]
    priority = workload.priorities[seed % len(workload.priorities)]
    own = local.tenant_ledgers.setdefault(tenant, [])
    ticket = None
    while time.time() < start_at:
        time.sleep(0.001)
    while time.time() < end_at:
        if workload.switch_at_s is not None and time.time() >= start_at + workload.switch_at_s:
            input_tokens = rng.randint(workload.switch_input_min, workload.switch_input_max)
        else:
            input_tokens = rng.randint(workload.input_min, workload.input_max)
        t0 = time.perf_counter()
        grant = bucket.try_acquire(1, input_tokens, workload.max_tokens,
                                   max_wait_s=workload.booking_s, tenant=tenant,
                                   priority=priority, ticket=ticket)
        ticket = grant.ticket if not grant.granted else None
        local.acquire_latency_s.append(time.perf_counter() - t0)
        local.acquire_calls.append(grant.store_calls)
        local.acquire_reads += grant.store_reads
        if not grant.granted:
            local.refusals[grant.reason] = local.refusals.get(grant.reason, 0) + 1
            time.sleep(min(grant.retry_after, workload.max_wait_s) + rng.uniform(0, 0.005))
            continue
        local.grants += 1
        local.first_attempt_grants += grant.first_attempt
        local.booked += grant.queue_s > 0.05
        # counted where the server would see it: at the booked start (acquire time if none)
        local.ledger.append((grant.start_at - clock_offset, dict(grant.reserved)))
        own.append(local.ledger[-1])
        pause = grant.start_at - clock()
        if pause > 0:
            time.sleep(pause)
        time.sleep(workload.call_s)
        output_tokens = rng.randint(workload.output_min, workload.max_tokens)
        settled_at = time.time()
        settlement = bucket.settle(grant, input_tokens, output_tokens)
        local.settle_calls += settlement.store_calls
        if settlement.settled:
            local.forgone_refunds += bool(settlement.forgone)
            refunds = {dim: amount for dim, amount in settlement.adjustment.items()
                       if amount < 0 and dim not in settlement.forgone}
            if refunds:
                local.ledger.append((settled_at, refunds))
                own.append(local.ledger[-1])
        else:
            local.settle_failures += 1
    with lock:
        result.merge(local)


def _process(endpoint, table, bucket_id, limits_kwargs, workload, threads, start_at, end_at,
             first_seed, queue) -> None:
    sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "lambdas")]
    result, lock = LoadResult(started=start_at), threading.Lock()
    workers = [threading.Thread(
        target=_caller,
        args=(endpoint, table, bucket_id, limits_kwargs, workload, start_at, end_at,
              first_seed + i, workload.clock_offsets_s[(first_seed + i)
                                                        % len(workload.clock_offsets_s)],
              result, lock)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    result.ended = end_at
    queue.put(result)


def run_load(endpoint: str, table: str, bucket_id: str, limits_kwargs: dict, *,
             processes: int, threads: int, duration_s: float,
             workload: Workload | None = None) -> LoadResult:
    """Run `processes` x `threads` callers against one bucket for `duration_s` seconds."""
    workload = workload or Workload()
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    start_at = time.time() + 2.0 + 0.5 * processes  # let every process import first
    end_at = start_at + duration_s
    procs = [ctx.Process(target=_process, args=(
        endpoint, table, bucket_id, limits_kwargs, workload, threads, start_at, end_at,
        p * threads, queue), daemon=True) for p in range(processes)]
    for proc in procs:
        proc.start()
    total = LoadResult(started=start_at, ended=end_at)
    try:
        for _ in procs:
            total.merge(queue.get(timeout=duration_s + 120))
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    total.ledger.sort(key=lambda event: event[0])
    for ledger in total.tenant_ledgers.values():
        ledger.sort(key=lambda event: event[0])
    return total


#: fifo's write targets (the scheduled-reservations issue), means over a run: DynamoDB writes
#: per granted acquire (refused acquires' writes included) and per settle or release.
FIFO_MAX_WRITES_PER_GRANT = 1.1
FIFO_MAX_WRITES_PER_SETTLE = 1.05

#: Limits that no load on one machine reaches: the bucket never refuses (calibration).
UNLIMITED = {"rpm": 1e9, "itpm": 1e12, "otpm": 1e12}


def calibrate_grant_rate(endpoint: str, table: str, *, processes: int, threads: int,
                         duration_s: float = 3.0, workload: Workload | None = None) -> float:
    """Grants per second this machine achieves with `processes` x `threads` callers when the
    bucket never refuses (acquire + call + settle per grant): the most a load can take."""
    result = run_load(endpoint, table, "anthropic#calibration", UNLIMITED, processes=processes,
                      threads=threads, duration_s=duration_s, workload=workload)
    return result.grants / duration_s


def saturating_limits(grant_rate_per_s: float, workload: Workload, *,
                      offered_per_refill: float = 6.0) -> dict[str, float]:
    """Limits a load achieving `grant_rate_per_s` saturates: requests per minute binding, with
    the load offering `offered_per_refill` x the refill rate, so a full bucket is drained within
    60 / (offered_per_refill - 1) seconds and then held empty. Input and output tokens per
    minute get twice what that many requests can reserve (not binding)."""
    rpm = max(6.0, round(grant_rate_per_s * 60.0 / offered_per_refill))
    return {"rpm": rpm, "itpm": rpm * workload.input_max * 2.0,
            "otpm": rpm * workload.max_tokens * 2.0}


def utilisation(ledger, limits_kwargs: dict, duration_s: float) -> dict[str, float]:
    """Net admitted (reservations minus refunds) per dimension over what the bucket can give in
    `duration_s` from full: capacity + refill x duration."""
    from guard import Limits

    used = {}
    for dim, capacity in Limits(**limits_kwargs).capacities().items():
        admitted = sum(amounts.get(dim, 0.0) for _, amounts in ledger)
        used[dim] = admitted / (capacity + capacity / 60.0 * duration_s)
    return used


def max_window_sum(ledger: list[tuple[float, dict[str, float]]], dim: str,
                   window_s: float) -> tuple[float, float]:
    """Largest sum of `dim` amounts over any interval no longer than `window_s` seconds, and
    where it starts. `ledger` must be sorted by time."""
    events = [(t, amounts[dim]) for t, amounts in ledger if amounts.get(dim)]
    best, best_start = 0.0, events[0][0] if events else 0.0
    for i, (start, _) in enumerate(events):
        running = 0.0
        for t, amount in events[i:]:
            if t - start > window_s:
                break
            running += amount
            if running > best:
                best, best_start = running, start
    return best, best_start


def over_admission_windows(ledger, dim: str, capacity: float, window_s: float,
                           slack: float) -> int:
    """Number of window start points whose window sum exceeds capacity + refill x window + slack."""
    bound = capacity + capacity / 60.0 * window_s + slack
    events = [(t, amounts[dim]) for t, amounts in ledger if amounts.get(dim)]
    violations = 0
    for i, (start, _) in enumerate(events):
        running, worst = 0.0, 0.0
        for t, amount in events[i:]:
            if t - start > window_s:
                break
            running += amount
            worst = max(worst, running)
        violations += worst > bound
    return violations


def replay_min_level(ledger, dim: str, capacity: float) -> float:
    """Replay the ledger through an exact continuous bucket (capacity `capacity`, refill
    capacity / 60 per second, charged at each event, refunds added back, never above capacity)
    and return the lowest level it reaches (tokens or requests)."""
    rate = capacity / 60.0
    level, last, lowest = capacity, None, capacity
    for t, amounts in ledger:
        amount = amounts.get(dim)
        if not amount:
            continue
        if last is not None:
            level = min(capacity, level + (t - last) * rate)
        last = t
        level = min(capacity, level - amount)
        lowest = min(lowest, level)
    return lowest


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else 0.0


if __name__ == "__main__":  # pragma: no cover
    multiprocessing.freeze_support()
