"""Guard vs bare SDK: W callers saturate a Tier-1 quota on the Claude emulator.

    python -m bench.claude_bench [--workers 16,32 --duration 180 --tier tier1]

Runs against a fresh emulator each, same workload: through the guard with each number of
callers in `--workers` (bucket on the local AWS server, each caller its own bucket client and
guard as a Lambda container would have, SDK retries off, waits within a deadline, otherwise
"deferred"), then the bare `anthropic` SDK with its default retries (2, honouring retry-after)
as the baseline with the first number of callers. Prints side by side: upstream 429s,
failures seen by callers, deferrals, goodput (requests and tokens per minute), utilisation of
each limit (binding one marked), p50/p99 latency of successful calls, grant-to-send p50/p99,
DynamoDB calls per acquire and writes per answered call, each caller's share of answers
(min/mean, max/mean), and how often the input estimate was below the emulator's count.

This module holds the scenarios and the command line; the workload and its runs are in
`bench.claude_load`, the summaries and tables in `bench.claude_report`.
"""

from __future__ import annotations

import argparse
import sys

from bench.bucket_load import FIFO_MAX_WRITES_PER_GRANT, FIFO_MAX_WRITES_PER_SETTLE
from bench.claude_load import FAMILY, PRESETS, run_bare, run_guarded, run_tenants
from bench.claude_report import (
    render,
    render_tenants,
    summarise_bare,
    summarise_guarded,
    summarise_tenants,
)
from local.fakes.aws_server import LocalAws
from local.fakes.claude_emulator import ClaudeEmulator


#: The tenant scenarios (`--scenario tenants`): name -> (callers as (tenant, priority, think
#: seconds between calls, count), tenant weights). Think time 0 is a closed loop; the
#: interactive callers of "background" think so they offer about 10% of the limit.
TENANT_SCENARIOS = {
    "noisy neighbour": ([("acme", "interactive", 0.0, 24), ("globex", "interactive", 0.0, 4)],
                        {"acme": 1, "globex": 1}),
    "weights 3:1": ([("acme", "interactive", 0.0, 8), ("globex", "interactive", 0.0, 8)],
                    {"acme": 3, "globex": 1}),
    "one tenant alone": ([("acme", "interactive", 0.0, 8)], {"acme": 1, "globex": 1}),
    "background + interactive": ([("acme", "background", 0.0, 12),
                                  ("acme", "interactive", 9.0, 1)], {"acme": 1}),
    "32 callers, one tenant": ([("acme", "interactive", 0.0, 32)], {"acme": 1}),
}


def scenario_names(text: str) -> list[str]:
    """`--tenant-scenarios`: "all", or names from TENANT_SCENARIOS separated by commas (a name
    holding a comma, such as "32 callers, one tenant", is matched whole)."""
    if text == "all":
        return list(TENANT_SCENARIOS)
    names, pending = [], ""
    for piece in text.split(","):
        pending = f"{pending},{piece}" if pending else piece.strip()
        if pending.strip() in TENANT_SCENARIOS:
            names.append(pending.strip())
            pending = ""
    if pending:
        raise SystemExit(f"unknown tenant scenario {pending.strip()!r}: choose from "
                         + "; ".join(TENANT_SCENARIOS))
    return names


def tenants(args) -> bool:
    """The tenant scenarios, today's fifo (blind to tenants) and the fair scheduler side by
    side, at `--tenant-rpm` with tokens not binding."""
    names = scenario_names(args.tenant_scenarios)
    modes = [mode.strip() for mode in args.tenant_modes.split(",")]
    rpm, duration = args.tenant_rpm, args.tenant_duration
    warmup = min(60.0, duration / 4)
    print(f"Tenants: {rpm} RPM (ITPM/OTPM not binding), {duration:g} s per run, shares counted "
          f"from {warmup:g} s, deadline 20 s; fifo (blind to tenants) vs fair.", flush=True)
    config = {"output_tokens": args.output_tokens, "latency_s": args.latency,
              "limits": {FAMILY: {"rpm": rpm, "itpm": 10_000_000, "otpm": 2_000_000}}}
    rows, ok = [], True
    with LocalAws() as aws, ClaudeEmulator(config) as emulator:
        for name in names:
            callers, weights = TENANT_SCENARIOS[name]
            for mode in modes:
                emulator.reset()
                print(f"  {name}: {mode} ...", flush=True)
                run = run_tenants(emulator, aws, rpm, callers, weights, duration,
                                  args.max_tokens, fair=mode == "fair")
                summary = summarise_tenants(run, warmup)
                rows.append((name, mode, summary))
                ok &= summary["upstream_429"] == 0
    print(render_tenants(rows))
    print("0 upstream 429s in every run: " + ("met" if ok else "NOT met"), flush=True)
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", default="16,32",
                        help="comma-separated caller counts for the guarded runs")
    parser.add_argument("--duration", type=float, default=180.0, help="seconds per run")
    parser.add_argument("--tier", choices=sorted(PRESETS), default="tier1")
    parser.add_argument("--max-tokens", type=int, default=150)
    parser.add_argument("--output-tokens", type=int, default=100,
                        help="tokens the emulator answers with")
    parser.add_argument("--latency", type=float, default=0.3, help="emulator seconds per call")
    parser.add_argument("--scenario", choices=("all", "tier", "fairness", "tenants", "pools"),
                        default="all",
                        help="tier: guard vs bare SDK at the tier's limits; fairness: poll vs "
                             "fifo, 32 callers at 600 RPM (tokens not binding); tenants: the "
                             "tenant scenarios, fifo vs fair")
    parser.add_argument("--tenant-duration", type=float, default=300.0,
                        help="seconds per tenant run (the targets are stated for 300 s; "
                             "600 s for the caller-share figures)")
    parser.add_argument("--tenant-rpm", type=int, default=50)
    parser.add_argument("--tenant-scenarios", default="all",
                        help="comma-separated names from TENANT_SCENARIOS, or all")
    parser.add_argument("--tenant-modes", default="fifo,fair",
                        help="schedulers to run side by side: fifo (blind to tenants), fair")
    parser.add_argument("--fairness-duration", type=float, default=180.0)
    parser.add_argument("--fairness-modes", default="poll,fifo",
                        help="scheduling modes to run side by side")
    parser.add_argument("--fairness-rpm", type=int, default=600,
                        help="lower it where 32 callers cannot saturate 600 RPM")
    # capacity pools (bench.pools_bench)
    parser.add_argument("--pools-rpm", type=int, default=50, help="RPM of each pool")
    parser.add_argument("--pools-workers", type=int, default=32)
    parser.add_argument("--pools-duration", type=float, default=120.0, help="seconds per run")
    parser.add_argument("--pools-warmup", type=float, default=10.0,
                        help="seconds before goodput is counted")
    parser.add_argument("--pools-outage", type=float, default=30.0,
                        help="seconds pool A answers 529 in the outage run")
    parser.add_argument("--pools-flex-duration", type=float, default=60.0)
    parser.add_argument("--pools-runs", default="one,two,outage,flex",
                        help="pool runs to do, side by side: one, two, outage, flex")
    parser.add_argument("--pools-repeat", type=int, default=1,
                        help="times the two-pool run is repeated (its targets hold in each)")
    args = parser.parse_args(argv)
    ok = True
    if args.scenario in ("all", "pools"):
        from bench.pools_bench import pools

        ok &= pools(args)
    if args.scenario in ("all", "fairness"):
        ok &= fairness(args)
    if args.scenario in ("all", "tier"):
        ok &= tier(args)
    if args.scenario in ("all", "tenants"):
        ok &= tenants(args)
    return 0 if ok else 1


def fairness(args) -> bool:
    """32 callers loop create(deadline_s=20), sleeping retry_after after a deferral, at 600
    RPM with tokens not binding: once polling, once booking (fifo)."""
    rpm, itpm, otpm = limits = (args.fairness_rpm, 10_000_000, 2_000_000)
    config = {"output_tokens": args.output_tokens, "latency_s": args.latency,
              "limits": {FAMILY: {"rpm": rpm, "itpm": itpm, "otpm": otpm}}}
    modes = args.fairness_modes.split(",")
    print(f"Fairness: 32 callers, {args.fairness_duration:g} s per run, {rpm} RPM (ITPM/OTPM "
          f"not binding), deadline 20 s, {' then '.join(modes)}.", flush=True)
    runs = []
    with LocalAws() as aws, ClaudeEmulator(config) as emulator:
        for scheduling in modes:
            emulator.reset()
            print(f"  {scheduling} ...", flush=True)
            results, elapsed, writes, reads, counts = run_guarded(
                emulator, aws, limits, 32, args.fairness_duration, args.max_tokens,
                scheduling=scheduling, deadline_s=20.0)
            runs.append((scheduling, summarise_guarded(results, emulator.stats(),
                                                       limits, elapsed, writes, 32,
                                                       reads, counts)))
    print(render(runs))
    fifo = dict(runs).get("fifo")
    if fifo is None:
        return True
    if max(fifo["utilisation"].values()) < 0.9:
        print(f"the load did not saturate {rpm} RPM on this machine "
              f"({max(fifo['utilisation'].values()):.0%} used): rerun with a lower "
              f"--fairness-rpm; writes, waits and shares say nothing here", flush=True)
        return True
    met = (fifo["writes_per_grant"] <= FIFO_MAX_WRITES_PER_GRANT
           and fifo["writes_per_settle"] <= FIFO_MAX_WRITES_PER_SETTLE
           and fifo["upstream_429_sent"] == 0
           and fifo["share_min"] >= 0.85 and fifo["share_max"] <= 1.15
           and max(fifo["utilisation"].values()) >= 0.95 and fifo["waits_beyond_queue"] == 0)
    print(f"fifo targets (<= {FIFO_MAX_WRITES_PER_GRANT:g} writes per granted acquire, <= "
          f"{FIFO_MAX_WRITES_PER_SETTLE:g} per settle, 0 upstream 429s, shares within 15% of "
          "the mean, >= 95% of the binding limit, no wait beyond its booked queue + 1 s): "
          + ("met" if met else "NOT met"), flush=True)
    return met


def tier(args) -> bool:
    limits = PRESETS[args.tier]
    worker_counts = [int(n) for n in str(args.workers).split(",") if n.strip()]
    config = {"tier": args.tier, "output_tokens": args.output_tokens, "latency_s": args.latency}
    print(f"Claude benchmark: {worker_counts} callers, {args.duration:g} s per run, {args.tier} "
          f"Sonnet 4.x limits {limits[0]} RPM / {limits[1]:,} ITPM / {limits[2]:,} OTPM, "
          f"max_tokens {args.max_tokens}, {args.output_tokens} output tokens per answer.",
          flush=True)
    runs = []
    total = len(worker_counts) + 1
    with LocalAws() as aws, ClaudeEmulator(config) as emulator:
        for n, workers in enumerate(worker_counts, 1):
            emulator.reset()
            print(f"run {n}/{total}: through the guard, {workers} callers ...", flush=True)
            results, elapsed, writes, reads, counts = run_guarded(
                emulator, aws, limits, workers, args.duration, args.max_tokens)
            runs.append((f"guard x{workers}", summarise_guarded(
                results, emulator.stats(), limits, elapsed, writes, workers, reads, counts)))
        emulator.reset()
        print(f"run {total}/{total}: bare SDK, default retries, {worker_counts[0]} callers ...",
              flush=True)
        results, elapsed = run_bare(emulator, worker_counts[0], args.duration, args.max_tokens)
        runs.append((f"bare SDK x{worker_counts[0]}", summarise_bare(
            results, emulator.stats(), limits, elapsed, worker_counts[0])))
    print(render(runs))
    ok = all(run["upstream_429_sent"] == 0 and run["failed"] == 0
             and max(run["utilisation"].values()) >= 0.95
             and run["grant_to_send_p99_ms"] <= 50 for _, run in runs[:-1])
    print("targets (0 upstream 429s, 0 failures, >= 95% of the binding limit, grant-to-send p99 "
          "<= 50 ms) through the guard: " + ("met" if ok else "NOT met"))
    return ok


if __name__ == "__main__":
    sys.exit(main())
