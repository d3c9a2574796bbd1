"""Budget benchmark: processes x threads of guarded callers spend against one tenant's daily
budget on the local AWS server and the Claude emulator.

    python -m bench.budget_bench [--processes 3 --threads 8 --budget 0.20]

Runs, each printed:
1. one model: every caller spends against tenant "acme"'s daily budget (mixed prompt sizes,
   max_tokens and answer lengths) until the budget refuses it three times in a row;
2. the same with two models (Sonnet and Haiku prices) sharing the budget;
3. writes per answered call with budgets off and on (UpdateItems counted at the server).

For 1 and 2: the actual spend (the callers' own sum of usage x prices), the ledger's spent
and the highest open reservations and spent + open seen by a sampler reading the ledger every
20 ms, and the share of the budget spent. Targets: actual <= budget, open <= budget, >= 95%
spent.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import sys
import threading
import time
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SONNET, HAIKU = "claude-sonnet-4-6", "claude-haiku-4-5"
PRICES = {SONNET: {"input": 3.0, "output": 15.0}, HAIKU: {"input": 1.0, "output": 5.0}}
TENANT = "acme"
MAX_TOKENS = (32, 64, 128, 256, 512)
#: Consecutive "budget" refusals after which a caller stops (its window is spent).
STOP_AFTER = 3


def _clients(endpoint: str, base_url: str, table: str, models: list[str],
             budget_usd: float | None):
    import anthropic
    import boto3

    from guard import Budget, GuardedClaude, Limits, Prices, TokenBucket

    dynamodb = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")
    limits = Limits(rpm=10_000, itpm=10_000_000, otpm=2_000_000)  # the emulator's "scale"
    buckets = {m: TokenBucket(table, f"anthropic#{m}", limits, dynamodb) for m in models}
    budgets = {TENANT: Budget(usd_per_day=budget_usd)} if budget_usd is not None else None
    sdk = anthropic.Anthropic(base_url=base_url, api_key="bench", max_retries=0)
    return GuardedClaude(buckets, sdk_client=sdk, budgets=budgets,
                         prices={m: Prices(**PRICES[m]) for m in models})


def _caller(claude, models: list[str], seed: int, calls: int | None, out: dict,
            lock: threading.Lock) -> None:
    from guard import Prices

    rng = random.Random(seed)
    spent_in_a_row = made = 0
    local = {"answered": 0, "actual_usd": 0.0, "refusals": {}, "budget_writes": 0}
    while (calls is None and spent_in_a_row < STOP_AFTER) or (calls is not None
                                                              and made < calls):
        made += 1
        model = rng.choice(models)
        max_tokens = rng.choice(MAX_TOKENS)
        words = " ".join(rng.choice(("quarterly", "report", "revenue", "growth", "risk"))
                         for _ in range(rng.randint(5, 200)))
        prompt = f"EMULATOR: output {rng.randint(1, max_tokens)}\nSummarise: {words}"
        result = claude.create(model=model, max_tokens=max_tokens, tenant=TENANT,
                               deadline_s=10, messages=[{"role": "user", "content": prompt}])
        local["budget_writes"] += result.budget_store_calls
        if result.status == "ok":
            local["answered"] += 1
            local["actual_usd"] += Prices(**PRICES[result.model]).cost_usd(result.usage)
            spent_in_a_row = 0
            continue
        reason = result.reason or (result.error or {}).get("type", result.status)
        local["refusals"][reason] = local["refusals"].get(reason, 0) + 1
        spent_in_a_row = spent_in_a_row + 1 if reason == "budget" else 0
    with lock:
        out["answered"] += local["answered"]
        out["actual_usd"] += local["actual_usd"]
        out["budget_writes"] += local["budget_writes"]
        for reason, count in local["refusals"].items():
            out["refusals"][reason] = out["refusals"].get(reason, 0) + count


def _process(endpoint, base_url, table, models, budget_usd, threads, first_seed, calls,
             start_at, queue) -> None:
    sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "lambdas")]
    out = {"answered": 0, "actual_usd": 0.0, "refusals": {}, "budget_writes": 0}
    lock = threading.Lock()
    clients = [_clients(endpoint, base_url, table, models, budget_usd) for _ in range(threads)]
    for claude in clients:
        claude.prepare()
    while time.time() < start_at:
        time.sleep(0.005)
    workers = [threading.Thread(target=_caller, args=(claude, models, first_seed + i, calls,
                                                      out, lock))
               for i, claude in enumerate(clients)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    writes: dict[str, int] = {}
    for claude in clients:
        for name, count in claude.writes_by_purpose().items():
            writes[name] = writes.get(name, 0) + count
    out["writes"] = writes
    queue.put(out)


def run(endpoint: str, base_url: str, table: str, models: list[str], budget_usd: float | None,
        *, processes: int, threads: int, calls: int | None = None,
        sample=None) -> dict:
    """`processes` x `threads` callers; `calls` each, or until the budget stops them."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    start_at = time.time() + 3.0 + 0.5 * processes
    procs = [ctx.Process(target=_process, args=(
        endpoint, base_url, table, models, budget_usd, threads, p * threads, calls, start_at,
        queue), daemon=True) for p in range(processes)]
    for proc in procs:
        proc.start()
    total = {"answered": 0, "actual_usd": 0.0, "refusals": {}, "budget_writes": 0}
    stop = threading.Event()
    sampler = threading.Thread(target=sample, args=(stop,)) if sample else None
    if sampler:
        sampler.start()
    try:
        for _ in procs:
            out = queue.get(timeout=600)
            total["answered"] += out["answered"]
            total["actual_usd"] += out["actual_usd"]
            total["budget_writes"] += out["budget_writes"]
            for name, count in out.get("writes", {}).items():
                total.setdefault("writes", {})[name] = total.get("writes", {}).get(name, 0) \
                    + count
            for reason, count in out["refusals"].items():
                total["refusals"][reason] = total["refusals"].get(reason, 0) + count
    finally:
        stop.set()
        if sampler:
            sampler.join()
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    return total


def budget_run(aws, emulator, models: list[str], budget_usd: float, processes: int,
               threads: int) -> dict:
    from guard import ensure_table
    from guard.budget import BudgetLedger

    dynamodb = aws.client("dynamodb")
    table = f"budget-bench-{uuid.uuid4().hex[:8]}"
    ensure_table(dynamodb, table)
    ledger = BudgetLedger(table, dynamodb)
    peaks = {"open": 0, "used": 0, "samples": 0}

    def sample(stop: threading.Event) -> None:
        while not stop.is_set():
            counters = ledger.snapshot().counters.get(f"tenant:{TENANT}", {})
            peaks["open"] = max(peaks["open"], counters.get("d_open", 0))
            peaks["used"] = max(peaks["used"], counters.get("d_used", 0))
            peaks["samples"] += 1
            stop.wait(0.02)

    started = time.monotonic()
    total = run(aws.endpoint_url, emulator.base_url, table, models, budget_usd,
                processes=processes, threads=threads, sample=sample)
    counters = ledger.snapshot().counters.get(f"tenant:{TENANT}", {})
    total.update(seconds=time.monotonic() - started, peak_open_usd=peaks["open"] / 1e6,
                 peak_used_usd=peaks["used"] / 1e6, samples=peaks["samples"],
                 ledger_spent_usd=(counters.get("d_used", 0) - counters.get("d_open", 0)) / 1e6,
                 ledger_open_usd=counters.get("d_open", 0) / 1e6)
    return total


def writes_run(aws, emulator, models: list[str], budget_usd: float | None, processes: int,
               threads: int, calls: int) -> dict:
    from guard import ensure_table

    dynamodb = aws.client("dynamodb")
    table = f"budget-bench-{uuid.uuid4().hex[:8]}"
    ensure_table(dynamodb, table)
    before = aws.stats().get("DynamoDB_20120810.UpdateItem", 0)
    total = run(aws.endpoint_url, emulator.base_url, table, models, budget_usd,
                processes=processes, threads=threads, calls=calls)
    total["update_items"] = aws.stats().get("DynamoDB_20120810.UpdateItem", 0) - before
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--budget", type=float, default=0.20, help="daily budget, USD")
    parser.add_argument("--calls", type=int, default=10,
                        help="calls per caller in the writes comparison")
    args = parser.parse_args(argv)
    from local.fakes.aws_server import LocalAws
    from local.fakes.claude_emulator import ClaudeEmulator

    failed = False
    with LocalAws() as aws, ClaudeEmulator({"tier": "scale"}) as emulator:
        for label, models in (("one model", [SONNET]), ("two models sharing", [SONNET, HAIKU])):
            r = budget_run(aws, emulator, models, args.budget, args.processes, args.threads)
            share = r["actual_usd"] / args.budget
            ok = (r["actual_usd"] <= args.budget + 1e-9 and r["peak_open_usd"] <= args.budget
                  and r["peak_used_usd"] <= args.budget and share >= 0.95)
            failed |= not ok
            print(f"{label}: {args.processes} processes x {args.threads} threads, daily budget "
                  f"${args.budget:.2f}, {r['seconds']:.1f} s")
            print(f"  answered {r['answered']}, refused {r['refusals']}")
            print(f"  actual spend ${r['actual_usd']:.6f} (ledger spent "
                  f"${r['ledger_spent_usd']:.6f}, open at the end ${r['ledger_open_usd']:.6f})"
                  f" = {100 * share:.1f}% of the budget  [target <= 100%, >= 95%]")
            print(f"  highest open reservations ${r['peak_open_usd']:.6f}, highest spent + open"
                  f" ${r['peak_used_usd']:.6f} over {r['samples']} samples  [target <= "
                  f"${args.budget:.2f}]  {'OK' if ok else 'MISSED'}")
        rows = []
        for label, budget in (("budgets off", None), ("budgets on", 1000.0)):
            r = writes_run(aws, emulator, [SONNET], budget, args.processes, args.threads,
                           args.calls)
            rows.append((label, r["answered"], r["update_items"], r["writes"], r["refusals"]))
        print(f"writes per answered call ({args.processes} x {args.threads} callers, "
              f"{args.calls} calls each, UpdateItems counted at the server):")
        for label, answered, updates, writes, refusals in rows:
            per_call = ", ".join(f"{name} {count / max(1, answered):.2f}"
                                 for name, count in sorted(writes.items()) if count)
            print(f"  {label:12s} answered {answered:4d}  UpdateItems {updates:5d}  per call "
                  f"{updates / max(1, answered):.2f}  ({per_call})"
                  + (f"  not answered: {refusals}" if refusals else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    multiprocessing.freeze_support()
    sys.exit(main())
