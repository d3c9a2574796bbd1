"""The Claude benchmark's workload and how it is driven: callers on threads against the Claude
emulator, through the guard (each caller its own bucket client and guard, as a Lambda container
would have) or through the bare `anthropic` SDK; `bench.claude_bench` picks the scenarios and
`bench.claude_report` sums the runs up."""

from __future__ import annotations

import collections
import json
import threading
import time
import uuid

from guard.tiers import ANTHROPIC_TIERS

MODEL = "claude-sonnet-4-6"

FAMILY = "sonnet-4"

#: Published Sonnet 4.x limits per preset (requests, input tokens, output tokens per minute).
PRESETS = {tier: families[FAMILY] for tier, families in ANTHROPIC_TIERS.items()}

TOPICS = ["the quarterly revenue report", "a customer's refund request", "the on-call handover",
          "an S3 bucket policy review", "the incident timeline from last night",
          "a product launch checklist", "the DynamoDB capacity plan", "a vendor contract"]


def prompt(i: int) -> list[dict]:
    topic = TOPICS[i % len(TOPICS)]
    body = (f"Request {i}: please summarise {topic} for the leadership team. Keep it short, "
            f"name the owner, list the open risks, and suggest the next three actions. "
            * (1 + i % 4))
    return [{"role": "user", "content": body}]


def drive(workers: int, duration_s: float, call) -> tuple[list, float]:
    """Run `workers` threads calling `call(i, end, worker)` until the end; results are
    (worker index, outcome) pairs."""
    results, lock = [], threading.Lock()
    counter = iter(range(10**9))
    start = time.monotonic()
    end = start + duration_s

    def worker(index):
        while time.monotonic() < end:
            with lock:
                i = next(counter)
            outcome = call(i, end, index)
            with lock:
                results.append((index, outcome))

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, time.monotonic() - start


def run_guarded(emulator, aws, limits, workers, duration_s, max_tokens, scheduling="fifo",
                deadline_s=30.0):
    import anthropic

    from guard import GuardedClaude, Limits, TokenBucket, ensure_table

    dynamodb = aws.client("dynamodb")
    table = f"claude-bench-{uuid.uuid4().hex[:6]}"
    ensure_table(dynamodb, table)
    sdk = anthropic.Anthropic(base_url=emulator.base_url, api_key="bench-key")
    rpm, itpm, otpm = limits
    guards, buckets = {}, {}

    def call(i, end, worker):
        if worker not in guards:  # one bucket client and guard per worker, like a Lambda
            bucket = TokenBucket(table, f"anthropic#{FAMILY}", Limits(rpm, itpm, otpm), dynamodb)
            buckets[worker] = bucket
            guards[worker] = GuardedClaude({MODEL: bucket}, sdk_client=sdk,
                                           scheduling=scheduling)
        deadline = max(0.0, min(deadline_s, end - time.monotonic()))
        result = guards[worker].create(model=MODEL, max_tokens=max_tokens,
                                       messages=prompt(i), deadline_s=deadline)
        if result.status == "deferred" and time.monotonic() < end:
            time.sleep(min(result.retry_after or 0.1, max(0.0, end - time.monotonic())))
        return result

    aws.reset_stats()
    results, elapsed = drive(workers, duration_s, call)
    stats = aws.stats()
    writes = stats.get("DynamoDB_20120810.UpdateItem", 0)
    return (results, elapsed, writes, stats.get("DynamoDB_20120810.GetItem", 0),
            bucket_counts(buckets.values()))


def bucket_counts(buckets) -> dict[str, int]:
    """The bucket clients' writes by purpose, grants and settles, summed over callers."""
    counts = collections.Counter()
    for bucket in buckets:
        counts.update({f"writes_{k}": v for k, v in bucket.writes_by_purpose.items()})
        counts.update(grants=bucket.granted_acquires, settles=bucket.settles)
    return dict(counts)


def run_bare(emulator, workers, duration_s, max_tokens):
    import anthropic

    sdk = anthropic.Anthropic(base_url=emulator.base_url, api_key="bench-key")  # default retries

    def call(i, end, worker):
        started = time.monotonic()
        try:
            message = sdk.messages.create(model=MODEL, max_tokens=max_tokens, messages=prompt(i))
            return ("bare", "ok", time.monotonic() - started, message.usage)
        except anthropic.APIStatusError as err:
            return ("bare", f"http_{err.status_code}", time.monotonic() - started, None)
        except anthropic.APIError as err:
            return ("bare", type(err).__name__, time.monotonic() - started, None)

    return drive(workers, duration_s, call)


def dynamodb_item_size(item: dict) -> int:
    """An item's size as DynamoDB bills it (bytes): names plus values; a number about one
    byte per two significant digits plus one; a map 3 bytes plus 1 per element."""
    def value_size(value: dict) -> int:
        if "S" in value:
            return len(value["S"].encode())
        if "N" in value:
            digits = value["N"].lstrip("-").replace(".", "").strip("0")
            return (len(digits) + 1) // 2 + 1
        if "M" in value:
            return 3 + sum(len(k.encode()) + value_size(v) + 1 for k, v in value["M"].items())
        return len(json.dumps(value))

    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def run_tenants(emulator, aws, rpm: int, callers, weights, duration_s: float, max_tokens: int,
                fair: bool, deadline_s: float = 20.0) -> dict:
    """Run one tenant scenario: every caller its own bucket client and guard, looping
    create(deadline_s=20, tenant=, priority=), sleeping `retry_after` after a deferral. `fair`:
    the bucket knows the tenants (`Limits(tenants=...)`); otherwise it is today's fifo, blind
    to them. The bucket starts empty, so the queue forms at once."""
    import anthropic

    from guard import GuardedClaude, Limits, TenantShare, TokenBucket, ensure_table

    dynamodb = aws.client("dynamodb")
    table = f"tenant-bench-{uuid.uuid4().hex[:6]}"
    ensure_table(dynamodb, table)
    sdk = anthropic.Anthropic(base_url=emulator.base_url, api_key="bench-key")
    shares = {name: TenantShare(weight=w) for name, w in weights.items()} if fair else None
    limits = Limits(rpm, 10_000_000, 2_000_000, tenants=shares)
    bucket_id = f"anthropic#{FAMILY}"
    TokenBucket(table, bucket_id, limits, dynamodb).try_acquire(rpm)  # empty: queue at once
    plan = [(tenant, priority, think) for tenant, priority, think, n in callers
            for _ in range(n)]
    guards, buckets, done, writes = {}, {}, [], {}
    started = time.monotonic()

    def call(i, end, worker):
        tenant, priority, think = plan[worker]
        if worker not in guards:
            buckets[worker] = TokenBucket(table, bucket_id, limits, dynamodb)
            guards[worker] = GuardedClaude({MODEL: buckets[worker]}, sdk_client=sdk)
        deadline = max(0.0, min(deadline_s, end - time.monotonic()))
        before = buckets[worker].store_calls
        result = guards[worker].create(model=MODEL, max_tokens=max_tokens, messages=prompt(i),
                                       deadline_s=deadline, tenant=tenant if fair else None,
                                       priority=priority if fair else "interactive")
        # this call's bucket writes (acquires, settle, lowerings): the worker's own client
        writes[id(result)] = buckets[worker].store_calls - before
        done.append((time.monotonic() - started, worker, result))
        if result.status == "deferred" and time.monotonic() < end:
            time.sleep(min(result.retry_after or 0.1, max(0.0, end - time.monotonic())))
        elif think:
            time.sleep(min(think, max(0.0, end - time.monotonic())))
        return result

    aws.reset_stats()
    _, elapsed = drive(len(plan), duration_s, call)
    total_writes = aws.stats().get("DynamoDB_20120810.UpdateItem", 0)
    item = dynamodb.get_item(TableName=table, Key={"pk": {"S": bucket_id}})["Item"]
    return {"done": done, "plan": plan, "elapsed": elapsed, "writes": total_writes,
            "call_writes": writes,
            "item_bytes": dynamodb_item_size(item), "stats": emulator.stats(),
            "limits": (rpm, 10_000_000, 2_000_000)}
