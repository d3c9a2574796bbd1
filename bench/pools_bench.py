"""Capacity pools on the Claude emulator (`make bench-claude BENCH_ARGS="--scenario pools"`).

Four runs, each with its callers looping `create(deadline_s=20)` (sleeping `retry_after` after a
deferral), every caller its own bucket clients, breakers and guard as a Lambda container would:

- one pool: one Anthropic API pool of `--pools-rpm` RPM (the baseline);
- two pools: two pools of `--pools-rpm` RPM each (two organisations on the emulator);
- outage: the same two pools, pool A answering 529 for `--pools-outage` seconds mid-run;
- flex: background callers on a Bedrock model with a `flex` and a `default` pool in one region,
  flex priced at half the default price; half-way, Bedrock gets busier (the emulator sheds flex
  below `BUSY_FLEX_HEADROOM` of its buckets instead of half). Its upstream 429s are counted in
  three phases: the first 5 s (the opening burst), the rest of the first half, the second half.

Goodput counts answers finished after the first `--pools-warmup` seconds (the buckets start
full: that first burst is not sustained goodput). Printed side by side: goodput per minute and
its share of the pools' sum, upstream 429s, caller-visible failures, deferrals, answers per
pool, caller shares (min/mean, max/mean), cost per answered request, and for the outage run
the sends pool A failed (each failed over to B within the same call) and the seconds from the
outage's end to pool A's next answer.
"""

from __future__ import annotations

import collections
import threading
import time
import uuid

from bench.claude_load import drive
from local.fakes.aws_server import LocalAws
from local.fakes.claude_emulator import ClaudeEmulator

MODEL = "claude-sonnet-4-6"
FAMILY = "sonnet-4"
PROFILE = "us.anthropic.claude-sonnet-4-6"
DEFAULT_PRICE = (3.0, 15.0)  # USD per million input, output tokens
FLEX_PRICE = (1.5, 7.5)      # half price
#: The emulator's flex headroom from half-way through the flex run (0.5 before): flex is shed
#: while its buckets hold less than this fraction of their capacity.
BUSY_FLEX_HEADROOM = 0.8


def _prompt(i: int) -> list[dict]:
    return [{"role": "user", "content": f"Request {i}: summarise the on-call handover."}]


def _drive(workers: int, duration_s: float, make_guard, call_kwargs) -> tuple[list, float]:
    """`workers` threads, each its own guard, call until the end; results are
    (finished at (s from start), worker, CallResult). Every guard is built and made ready to
    send before the clock starts, as Lambda containers are initialised before their first
    request, so no caller starts late for its own set-up."""
    guards = [make_guard() for _ in range(workers)]
    for guard in guards:
        guard.prepare()
    start = time.monotonic()

    def call(i, end, worker):
        deadline = max(0.0, min(20.0, end - time.monotonic()))
        result = guards[worker].create(max_tokens=150, messages=_prompt(i), deadline_s=deadline,
                                       **call_kwargs)
        finished = time.monotonic() - start
        if result.status == "deferred" and time.monotonic() < end:
            time.sleep(min(result.retry_after or 0.1, max(0.0, end - time.monotonic())))
        return finished, result

    results, elapsed = drive(workers, duration_s, call)
    return [(t, worker, result) for worker, (t, result) in results], elapsed


def _anthropic_run(emulator, aws, pools: list[str], rpm: int, workers: int, duration_s: float,
                   outage: tuple[float, float] | None = None) -> tuple[list, float, dict]:
    import anthropic

    from agent.contract import Prices
    from guard import GuardedClaude, Limits, Pool, TokenBucket, ensure_table

    dynamodb = aws.client("dynamodb", max_pool_connections=64)
    table = f"pools-bench-{uuid.uuid4().hex[:6]}"
    ensure_table(dynamodb, table)
    sdks = {name: anthropic.Anthropic(base_url=emulator.pool_url(name), api_key="bench-key")
            for name in pools}
    limits = Limits(rpm, 10_000_000, 2_000_000)

    def make_guard():
        return GuardedClaude({"sonnet": [
            Pool(TokenBucket(table, f"anthropic#{name}#{FAMILY}", limits, dynamodb),
                 provider="anthropic", model=MODEL, sdk_client=sdks[name], name=name,
                 prices=Prices.of(*DEFAULT_PRICE)) for name in pools]})

    timer = None
    if outage is not None:
        at, for_s = outage
        timer = threading.Timer(at, emulator.outage, args=(pools[0], for_s))
        timer.start()
    results, elapsed = _drive(workers, duration_s, make_guard, {"model": "sonnet"})
    if timer is not None:
        timer.join()
    return results, elapsed, emulator.stats()


def _flex_run(emulator, aws, rpm: int, workers: int, duration_s: float):
    import anthropic

    from agent.contract import Prices
    from guard import GuardedClaude, Limits, Pool, TokenBucket, ensure_table

    dynamodb = aws.client("dynamodb", max_pool_connections=64)
    table = f"pools-bench-{uuid.uuid4().hex[:6]}"
    ensure_table(dynamodb, table)
    sdk = anthropic.AnthropicBedrock(base_url=emulator.pool_url("us-east-1"),
                                     aws_region="us-east-1", aws_access_key="bench",
                                     aws_secret_key="bench")
    limits = Limits(rpm, tpm=10_000_000, output_burndown=5)

    def make_guard():
        return GuardedClaude({"sonnet": [
            Pool(TokenBucket(table, f"bedrock#us-east-1#{tier}", limits, dynamodb),
                 provider="bedrock", model=PROFILE, aws_region="us-east-1", service_tier=tier,
                 sdk_client=sdk, prices=Prices.of(*price))
            for tier, price in (("default", DEFAULT_PRICE), ("flex", FLEX_PRICE))]})

    # half-way Bedrock gets busier: flex is shed below a larger headroom from then on
    busier = threading.Timer(duration_s / 2, emulator.configure,
                             kwargs={"flex_headroom": BUSY_FLEX_HEADROOM})
    busier.start()
    results, elapsed = _drive(workers, duration_s, make_guard,
                              {"model": "sonnet", "priority": "background"})
    busier.join()
    return results, elapsed, emulator.stats()


def summarise(results, elapsed: float, stats: dict, capacity_rpm: float, workers: int,
              warmup_s: float, outage: tuple[float, float] | None = None,
              phases: tuple[float, ...] = ()) -> dict:
    """The run's figures (see `render`); `phases`: times (s from the start) at which the
    upstream 429s of the calls finished since are counted apart."""
    ok = [(t, w, r) for t, w, r in results if r.status == "ok"]
    steady = [item for item in ok if item[0] >= warmup_s]
    goodput = len(steady) / max(1e-9, elapsed - warmup_s) * 60
    per_worker = collections.Counter(w for _, w, _ in ok)
    counts = [per_worker.get(n, 0) for n in range(workers)]
    mean = sum(counts) / workers if workers else 0
    after_warmup = collections.Counter(w for _, w, _ in steady)
    steady_counts = [after_warmup.get(n, 0) for n in range(workers)]
    steady_mean = sum(steady_counts) / workers if workers else 0
    by_pool = collections.Counter(r.pool for _, _, r in ok)
    costs = [r.cost_usd for _, _, r in ok if r.cost_usd is not None]
    from agent.contract import Prices

    at_default = [Prices.of(*DEFAULT_PRICE).cost_usd(r.usage) for _, _, r in ok if r.usage]
    summary = {
        "answers": len(ok),
        "goodput_rpm": goodput,
        "goodput_share": goodput / capacity_rpm,
        "upstream_429": stats.get("rate_limited", 0),
        "caller_failures": sum(1 for _, _, r in results if r.status == "error"),
        "deferrals": sum(1 for _, _, r in results if r.status == "deferred"),
        "by_pool": dict(by_pool),
        "pool_shares": {pool: n / len(ok) for pool, n in by_pool.items()},
        "share_min": min(counts) / mean if mean else 0.0,
        "share_max": max(counts) / mean if mean else 0.0,
        "answers_min": min(counts, default=0), "answers_max": max(counts, default=0),
        "steady_share_min": min(steady_counts) / steady_mean if steady_mean else 0.0,
        "steady_share_max": max(steady_counts) / steady_mean if steady_mean else 0.0,
        "cost_per_request": sum(costs) / len(costs) if costs else None,
        "default_cost_per_request": sum(at_default) / len(at_default) if at_default else None,
        "calls_429_moved": sum(1 for _, _, r in ok if r.upstream_429),
        "upstream_529": sum(r.upstream_529 for _, _, r in results),
        "upstream_429_by_phase": [sum(r.upstream_429 for t, _, r in results
                                      if start <= t < end)
                                  for start, end in zip((0.0, *phases), (*phases, float("inf")))],
    }
    if outage is not None:
        at, for_s = outage
        first_pool = sorted(summary["by_pool"])[0] if summary["by_pool"] else None
        a_back = [t for t, _, r in ok if r.pool == first_pool and t > at + for_s]
        summary["a_back_after_s"] = (min(a_back) - (at + for_s)) if a_back else None
        summary["a_failures"] = stats.get("pools", {}).get(first_pool, {}).get("faults", 0)
    return summary


def render(runs: list[tuple[str, dict]]) -> str:
    rows = [
        ("goodput (answers/min)", lambda s: f"{s['goodput_rpm']:.1f}"),
        ("  of the pools' sum", lambda s: f"{s['goodput_share']:.0%}"),
        ("upstream 429s", lambda s: str(s["upstream_429"])),
        ("  429s in each phase", lambda s: "/".join(map(str, s["upstream_429_by_phase"]))),
        ("upstream 529s (failed over)", lambda s: str(s["upstream_529"])),
        ("caller-visible failures", lambda s: str(s["caller_failures"])),
        ("deferrals", lambda s: str(s["deferrals"])),
        ("answers per pool", lambda s: ", ".join(f"{k}={v}" for k, v in
                                                 sorted(s["by_pool"].items()))),
        ("pool shares of the answers", lambda s: ", ".join(
            f"{k}={v:.0%}" for k, v in sorted(s["pool_shares"].items()))),
        ("caller share min/max of mean", lambda s: f"{s['share_min']:.2f}/{s['share_max']:.2f}"),
        ("  answers per caller min-max", lambda s: f"{s['answers_min']}-{s['answers_max']}"),
        ("  after the warm-up, min/max", lambda s: f"{s['steady_share_min']:.2f}/"
         f"{s['steady_share_max']:.2f}"),
        ("cost per request (USD)", lambda s: "-" if s["cost_per_request"] is None
         else f"{s['cost_per_request']:.6f}"),
        ("  the same at the default price", lambda s: "-" if s["default_cost_per_request"]
         is None else f"{s['default_cost_per_request']:.6f}"),
        ("answers after a 429 (moved pool)", lambda s: str(s["calls_429_moved"])),
        ("sends pool A failed (outage)", lambda s: str(s.get("a_failures", "-"))),
        ("A answering again (s after recovery)",
         lambda s: "-" if s.get("a_back_after_s") is None else f"{s['a_back_after_s']:.1f}"),
    ]
    width = max(len(label) for label, _ in rows) + 2
    lines = ["".ljust(width) + "".join(name.rjust(26) for name, _ in runs)]
    for label, value in rows:
        lines.append(label.ljust(width) + "".join(value(s).rjust(26) for _, s in runs))
    return "\n".join(lines)


def pools(args) -> bool:
    import logging

    logging.getLogger("guard").setLevel(logging.ERROR)  # failovers are counted, not logged
    rpm, workers, duration = args.pools_rpm, args.pools_workers, args.pools_duration
    warmup = args.pools_warmup
    outage = (duration / 4, min(args.pools_outage, duration / 2))
    config = {"output_tokens": 50, "latency_s": args.latency,
              "limits": {FAMILY: {"rpm": 10_000, "itpm": 10_000_000, "otpm": 2_000_000}},
              "pools": {name: {"limits": {FAMILY: {"rpm": rpm, "itpm": 10_000_000,
                                                   "otpm": 2_000_000}}}
                        for name in ("a", "b")},
              "bedrock": {"rpm": rpm, "tpm": 10_000_000}}
    print(f"Pools: {workers} callers, {duration:g} s per run (goodput after {warmup:g} s), "
          f"pools of {rpm} RPM; outage: pool A answers 529 from {outage[0]:g} s for "
          f"{outage[1]:g} s; flex run: {args.pools_flex_duration:g} s, background callers.",
          flush=True)
    wanted = {name.strip() for name in args.pools_runs.split(",") if name.strip()}
    unknown = wanted - {"one", "two", "outage", "flex"}
    if unknown:
        raise SystemExit(f"--pools-runs: unknown runs {sorted(unknown)} (one, two, outage, flex)")
    repeat = max(1, args.pools_repeat)
    plan = ([("one pool", ["a"], None)] if "one" in wanted else []) + (
        [(f"two pools{f' (run {k + 1})' if repeat > 1 else ''}", ["a", "b"], None)
         for k in range(repeat)] if "two" in wanted else []) + (
        [("two pools, A down", ["a", "b"], outage)] if "outage" in wanted else [])
    runs = []
    with LocalAws() as aws, ClaudeEmulator(config) as emulator:
        for name, pool_names, cut in plan:
            emulator.reset()
            print(f"  {name} ...", flush=True)
            results, elapsed, stats = _anthropic_run(emulator, aws, pool_names, rpm, workers,
                                                     duration, cut)
            runs.append((name, summarise(results, elapsed, stats, rpm * len(pool_names),
                                         workers, warmup, cut)))
        if "flex" in wanted:
            emulator.reset()
            print("  flex + default (batch lane) ...", flush=True)
            results, elapsed, stats = _flex_run(emulator, aws, rpm, workers,
                                                args.pools_flex_duration)
            flex_s = args.pools_flex_duration
            runs.append(("flex + default", summarise(
                results, elapsed, stats, 2 * rpm, workers, min(warmup, flex_s / 2),
                phases=(5.0, flex_s / 2))))
    print(render(runs), flush=True)
    twos = [s for name, s in runs if name.startswith("two pools") and "down" not in name]
    downs = [s for name, s in runs if name == "two pools, A down"]
    met = all(two["goodput_share"] >= 0.95 and two["upstream_429"] == 0
              and two["share_min"] >= 0.85 and two["share_max"] <= 1.15 for two in twos) \
        and all(down["caller_failures"] == 0 and down["upstream_429"] == 0
                and down.get("a_back_after_s") is not None and down["a_back_after_s"] <= 10
                for down in downs)
    print("pool targets (two pools: >= 95% of the sum, 0 upstream 429s, shares within 15%; "
          "outage: 0 caller-visible failures, pool A answering within 10 s of recovery): "
          + ("met" if met else "NOT met"), flush=True)
    return met
