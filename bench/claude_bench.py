"""Guard vs bare SDK: W callers saturate a Tier-1 quota on the Claude emulator.

    python -m bench.claude_bench [--workers 16 --duration 180 --tier tier1]

Two runs against a fresh emulator each, same workload: through the guard (bucket on the local
AWS server, SDK retries off, waits within a deadline, otherwise "deferred"), then the bare
`anthropic` SDK with its default retries (2, honouring retry-after) as the baseline. Prints
side by side: upstream 429s, failures seen by callers, deferrals, goodput (requests and tokens
per minute), utilisation of each limit (binding one marked), p50/p99 latency of successful
calls, DynamoDB calls per acquire, and how often the input estimate was below the emulator's
count.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import uuid

from bench.bucket_load import percentile
from local.aws_server import LocalAws
from local.claude_emulator import ClaudeEmulator
from stacks.presets import ANTHROPIC_TIERS

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


def _drive(workers: int, duration_s: float, call) -> tuple[list, float]:
    results, lock = [], threading.Lock()
    counter = iter(range(10**9))
    start = time.monotonic()
    end = start + duration_s

    def worker():
        while time.monotonic() < end:
            with lock:
                i = next(counter)
            outcome = call(i, end)
            with lock:
                results.append(outcome)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, time.monotonic() - start


def run_guarded(emulator, aws, limits, workers, duration_s, max_tokens):
    import anthropic

    from guard import GuardedClaude, Limits, TokenBucket, ensure_table

    dynamodb = aws.client("dynamodb")
    table = f"claude-bench-{uuid.uuid4().hex[:6]}"
    ensure_table(dynamodb, table)
    sdk = anthropic.Anthropic(base_url=emulator.base_url, api_key="bench-key")
    rpm, itpm, otpm = limits
    per_worker = threading.local()

    def call(i, end):
        if not hasattr(per_worker, "claude"):  # one bucket client per worker, like a Lambda
            bucket = TokenBucket(table, f"anthropic#{FAMILY}", Limits(rpm, itpm, otpm), dynamodb)
            per_worker.claude = GuardedClaude({MODEL: bucket}, sdk_client=sdk)
        deadline = max(0.0, min(30.0, end - time.monotonic()))
        result = per_worker.claude.create(model=MODEL, max_tokens=max_tokens,
                                          messages=prompt(i), deadline_s=deadline)
        if result.status == "deferred" and time.monotonic() < end:
            time.sleep(min(result.retry_after or 0.1, max(0.0, end - time.monotonic())))
        return ("guard", result)

    return _drive(workers, duration_s, call)


def run_bare(emulator, workers, duration_s, max_tokens):
    import anthropic

    sdk = anthropic.Anthropic(base_url=emulator.base_url, api_key="bench-key")  # default retries

    def call(i, end):
        started = time.monotonic()
        try:
            message = sdk.messages.create(model=MODEL, max_tokens=max_tokens, messages=prompt(i))
            return ("bare", "ok", time.monotonic() - started, message.usage)
        except anthropic.APIStatusError as err:
            return ("bare", f"http_{err.status_code}", time.monotonic() - started, None)
        except anthropic.APIError as err:
            return ("bare", type(err).__name__, time.monotonic() - started, None)

    return _drive(workers, duration_s, call)


def utilisation(stats: dict, limits, duration_s: float) -> dict[str, float]:
    family = stats["families"][FAMILY]
    rpm, itpm, otpm = limits
    admitted = {"requests": (family["requests"], rpm),
                "input_tokens": (family["input_tokens"] + family["cache_creation_input_tokens"],
                                 itpm),
                "output_tokens": (family["output_tokens"], otpm)}
    return {dim: used / (cap + cap / 60.0 * duration_s) for dim, (used, cap) in admitted.items()}


def summarise_guarded(results, stats, limits, elapsed) -> dict:
    calls = [r for _, r in results]
    ok = [r for r in calls if r.status == "ok"]
    acquires = sum(r.local_throttles + r.attempts for r in calls)
    return {
        "calls": len(calls), "ok": len(ok),
        "failed": sum(r.status == "error" for r in calls),
        "deferred": sum(r.status == "deferred" for r in calls),
        "upstream_429_sent": stats["rate_limited"],
        "goodput_rpm": len(ok) / elapsed * 60,
        "goodput_tpm": sum(r.usage["input_tokens"] + r.usage["output_tokens"] for r in ok)
        / elapsed * 60,
        "p50_s": percentile([r.latency_s for r in ok], 50),
        "p99_s": percentile([r.latency_s for r in ok], 99),
        "calls_per_acquire": sum(r.store_calls for r in calls) / max(1, acquires),
        "under_estimates": sum(r.input_estimate < r.usage["input_tokens"]
                               + r.usage["cache_creation_input_tokens"] for r in ok)
        / max(1, len(ok)),
        "utilisation": utilisation(stats, limits, elapsed),
    }


def summarise_bare(results, stats, limits, elapsed) -> dict:
    ok = [r for r in results if r[1] == "ok"]
    return {
        "calls": len(results), "ok": len(ok), "failed": len(results) - len(ok), "deferred": 0,
        "upstream_429_sent": stats["rate_limited"],
        "goodput_rpm": len(ok) / elapsed * 60,
        "goodput_tpm": sum(r[3].input_tokens + r[3].output_tokens for r in ok) / elapsed * 60,
        "p50_s": percentile([r[2] for r in ok], 50),
        "p99_s": percentile([r[2] for r in ok], 99),
        "calls_per_acquire": None, "under_estimates": None,
        "utilisation": utilisation(stats, limits, elapsed),
    }


def render(guarded: dict, bare: dict) -> str:
    def fmt(value, kind):
        if value is None:
            return "-"
        return {"int": f"{value:,.0f}", "pct": f"{value:.1%}", "s": f"{value:.2f} s",
                "f": f"{value:.3f}"}[kind]

    rows = [("caller-visible calls", "calls", "int"), ("succeeded", "ok", "int"),
            ("failures seen by callers", "failed", "int"), ("deferred", "deferred", "int"),
            ("upstream 429s sent by the server", "upstream_429_sent", "int"),
            ("goodput, requests/min", "goodput_rpm", "f"),
            ("goodput, tokens/min", "goodput_tpm", "int"),
            ("latency p50 (successes)", "p50_s", "s"), ("latency p99 (successes)", "p99_s", "s"),
            ("DynamoDB calls per acquire", "calls_per_acquire", "f"),
            ("input estimate below server count", "under_estimates", "pct")]
    lines = [f"{'':36} {'guard':>14} {'bare SDK':>14}"]
    for label, key, kind in rows:
        lines.append(f"{label:36} {fmt(guarded[key], kind):>14} {fmt(bare[key], kind):>14}")
    binding = max(guarded["utilisation"], key=guarded["utilisation"].get)
    for dim in guarded["utilisation"]:
        mark = " (binding)" if dim == binding else ""
        lines.append(f"{'utilisation ' + dim + mark:36} "
                     f"{fmt(guarded['utilisation'][dim], 'pct'):>14} "
                     f"{fmt(bare['utilisation'][dim], 'pct'):>14}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--duration", type=float, default=180.0, help="seconds per run")
    parser.add_argument("--tier", choices=sorted(PRESETS), default="tier1")
    parser.add_argument("--max-tokens", type=int, default=150)
    parser.add_argument("--output-tokens", type=int, default=100,
                        help="tokens the emulator answers with")
    parser.add_argument("--latency", type=float, default=0.3, help="emulator seconds per call")
    args = parser.parse_args(argv)
    limits = PRESETS[args.tier]
    config = {"tier": args.tier, "output_tokens": args.output_tokens, "latency_s": args.latency}
    print(f"Claude benchmark: {args.workers} callers, {args.duration:g} s per run, {args.tier} "
          f"Sonnet 4.x limits {limits[0]} RPM / {limits[1]:,} ITPM / {limits[2]:,} OTPM, "
          f"max_tokens {args.max_tokens}, {args.output_tokens} output tokens per answer.",
          flush=True)
    with LocalAws() as aws, ClaudeEmulator(config) as emulator:
        print("run 1/2: through the guard ...", flush=True)
        results, elapsed = run_guarded(emulator, aws, limits, args.workers, args.duration,
                                       args.max_tokens)
        guarded = summarise_guarded(results, emulator.stats(), limits, elapsed)
        emulator.reset()
        print("run 2/2: bare SDK, default retries ...", flush=True)
        results, elapsed = run_bare(emulator, args.workers, args.duration, args.max_tokens)
        bare = summarise_bare(results, emulator.stats(), limits, elapsed)
    print(render(guarded, bare))
    binding = max(guarded["utilisation"].values())
    ok = guarded["upstream_429_sent"] == 0 and guarded["failed"] == 0 and binding >= 0.95
    print("targets (0 upstream 429s, 0 failures, >= 95% of the binding limit) through the guard: "
          + ("met" if ok else "NOT met"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
