"""Cold-starting callers: N fresh processes, each importing the SDK only when it first needs it
(as a Lambda container without SnapStart does), start together against the Claude emulator.

    python -m bench.cold_fleet [--callers 8 --duration 15 --rpm 60]

Each caller is `python -m bench.cold_fleet --caller ...`: it imports `guard` (not `anthropic`),
builds its own `TokenBucket` and `GuardedClaude` (no SDK client given, API key from a callable),
waits for the common start, then calls `create()` in a loop and prints one JSON line with its
results. `--late-sdk` acts out the old order (the SDK client is built after the first grant,
before its send) as the baseline. Used by the cold-start test and `make bench-cold-start`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL = "claude-sonnet-4-6"
BUCKET_ID = "anthropic#sonnet-4"
PROMPT = [{"role": "user", "content": "Summarise the on-call handover in two sentences."}]


def caller(args) -> None:
    """One cold caller (runs in its own fresh process)."""
    import boto3

    from guard import GuardedClaude, Limits, TokenBucket

    limits = Limits(args.rpm, args.itpm, args.otpm)
    dynamodb = boto3.client("dynamodb", endpoint_url=args.aws, region_name="us-east-1")
    bucket = TokenBucket(args.table, BUCKET_ID, limits, dynamodb)
    claude = GuardedClaude({MODEL: bucket}, api_key=lambda: "bench-key")
    if args.late_sdk:
        claude.prepare = lambda: None  # the old order: nothing is ready before the grant
        acquire = bucket.try_acquire
        built = []  # the SDK client is built once, on the first grant

        def acquire_then_build(*a, **kw):
            grant = acquire(*a, **kw)
            if grant.granted and not built:
                GuardedClaude.prepare(claude)  # built between the grant and its send
                built.append(True)
            return grant

        bucket.try_acquire = acquire_then_build
    while time.time() < args.start_at:
        time.sleep(0.005)
    outcomes = []
    # every caller runs `duration` seconds after its first call (which pays for the SDK
    # import), so a slow machine still puts the whole fleet at stake
    end = None
    while end is None or time.time() < end:
        result = claude.create(model=MODEL, max_tokens=args.max_tokens, messages=PROMPT,
                               deadline_s=max(0.0, (end or time.time() + args.duration)
                                              - time.time()))
        end = end or time.time() + args.duration
        outcomes.append({"status": result.status, "upstream_429": result.upstream_429,
                         "grant_to_send_s": result.grant_to_send_s,
                         "stale_grants": result.stale_grants})
        if result.status == "deferred":
            time.sleep(min(result.retry_after or 0.1, 1.0))
    print(json.dumps(outcomes), flush=True)


def run_cold_fleet(emulator_url: str, aws_endpoint: str, table: str, *, callers: int,
                   duration_s: float, rpm: int, itpm: int, otpm: int, max_tokens: int = 50,
                   late_sdk: bool = False) -> dict:
    """Start `callers` fresh processes together; returns their merged outcomes."""
    env = {**os.environ, "PYTHONPATH": f"{REPO_ROOT}:{REPO_ROOT / 'lambdas'}",
           "ANTHROPIC_BASE_URL": emulator_url, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}
    start_at = time.time() + 1.5 + 0.3 * callers  # every process up and `guard` imported
    argv = [sys.executable, "-m", "bench.cold_fleet", "--caller", "--aws", aws_endpoint,
            "--table", table, "--start-at", repr(start_at), "--duration", str(duration_s),
            "--rpm", str(rpm), "--itpm", str(itpm), "--otpm", str(otpm),
            "--max-tokens", str(max_tokens), *(["--late-sdk"] if late_sdk else [])]
    procs = [subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(callers)]
    outcomes = []
    for proc in procs:
        out, err = proc.communicate(timeout=duration_s + 180)
        if proc.returncode != 0:
            raise RuntimeError(f"cold caller failed: {err[-2000:]}")
        outcomes.extend(json.loads(out.strip().splitlines()[-1]))
    delays = [d for o in outcomes for d in o["grant_to_send_s"]]
    return {"calls": len(outcomes), "ok": sum(o["status"] == "ok" for o in outcomes),
            "errors": sum(o["status"] == "error" for o in outcomes),
            "upstream_429_seen": sum(o["upstream_429"] for o in outcomes),
            "stale_grants": sum(o["stale_grants"] for o in outcomes),
            "grant_to_send_s": delays}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--caller", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--aws", help=argparse.SUPPRESS)
    parser.add_argument("--table", help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--late-sdk", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--callers", type=int, default=8)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--rpm", type=int, default=60)
    parser.add_argument("--itpm", type=int, default=600_000)
    parser.add_argument("--otpm", type=int, default=120_000)
    parser.add_argument("--max-tokens", type=int, default=50)
    args = parser.parse_args(argv)
    if args.caller:
        caller(args)
        return 0
    return report(args)


def report(args) -> int:
    import uuid

    from guard import ensure_table
    from local.fakes.aws_server import LocalAws
    from local.fakes.claude_emulator import ClaudeEmulator
    from local.stats import percentile

    limits = {"rpm": args.rpm, "itpm": args.itpm, "otpm": args.otpm}
    print(f"Cold fleet: {args.callers} fresh processes, {args.duration:g} s, Sonnet 4.x limits "
          f"{limits}; each imports the SDK on its first call.", flush=True)
    rows = []
    with LocalAws() as aws, ClaudeEmulator({"limits": {"sonnet-4": limits},
                                            "latency_s": 0.2, "output_tokens": 20}) as emu:
        for late in (True, False):
            emu.reset()
            table = f"cold-{uuid.uuid4().hex[:6]}"
            ensure_table(aws.client("dynamodb"), table)
            run = run_cold_fleet(emu.base_url, aws.endpoint_url, table, callers=args.callers,
                                 duration_s=args.duration, late_sdk=late, **limits,
                                 max_tokens=args.max_tokens)
            run["upstream_429_sent"] = emu.stats()["rate_limited"]
            rows.append(("SDK built after the grant" if late else "SDK ready before acquire",
                         run))
    print(f"{'':28} {'calls':>6} {'ok':>5} {'429 sent':>9} {'stale':>6} "
          f"{'grant-to-send p50':>18} {'p99':>9}")
    for label, run in rows:
        delays = run["grant_to_send_s"]
        print(f"{label:28} {run['calls']:6} {run['ok']:5} {run['upstream_429_sent']:9} "
              f"{run['stale_grants']:6} {percentile(delays, 50) * 1000:15.1f} ms "
              f"{percentile(delays, 99) * 1000:6.1f} ms")
    ready = rows[1][1]
    ok = ready["upstream_429_sent"] == 0 and percentile(ready["grant_to_send_s"], 99) <= 0.05
    print("targets (0 upstream 429s, grant-to-send p99 <= 50 ms): " + ("met" if ok else "NOT met"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
