"""The Claude benchmark's summaries and printed tables: goodput, latencies, waits, DynamoDB
writes and reads per answer, utilisation of each limit, each caller's and tenant's share of the
answers, from the runs `bench.claude_load` makes."""

from __future__ import annotations

import collections
import statistics

from bench.claude_load import FAMILY
from local.stats import percentile

def utilisation(stats: dict, limits, duration_s: float) -> dict[str, float]:
    family = stats["families"][FAMILY]
    rpm, itpm, otpm = limits
    admitted = {"requests": (family["requests"], rpm),
                "input_tokens": (family["input_tokens"] + family["cache_creation_input_tokens"],
                                 itpm),
                "output_tokens": (family["output_tokens"], otpm)}
    return {dim: used / (cap + cap / 60.0 * duration_s) for dim, (used, cap) in admitted.items()}


def answer_shares(results, workers: int) -> tuple[float, float]:
    """Each caller's answers over the mean: (min/mean, max/mean)."""
    answers = [0] * workers
    for worker, outcome in results:
        status = outcome.status if hasattr(outcome, "status") else outcome[1]
        answers[worker] += status == "ok"
    mean_answers = sum(answers) / workers
    if not mean_answers:
        return 0.0, 0.0
    return min(answers) / mean_answers, max(answers) / mean_answers


def summarise_guarded(results, stats, limits, elapsed, writes, workers, reads=0,
                      counts=None) -> dict:
    counts = counts or {}
    calls = [r for _, r in results]
    ok = [r for r in calls if r.status == "ok"]
    acquires = sum(r.local_throttles + r.attempts for r in calls)
    to_send = [d for r in calls for d in r.grant_to_send_s]
    share_min, share_max = answer_shares(results, workers)
    return {
        "workers": workers,
        "grant_to_send_p50_ms": percentile(to_send, 50) * 1000,
        "grant_to_send_p99_ms": percentile(to_send, 99) * 1000,
        "writes_per_answer": writes / max(1, len(ok)),
        "reads_per_answer": reads / max(1, len(ok)),
        # acquire writes (refused ones included) per grant; settle/release writes per settle
        "writes_per_grant": counts.get("writes_acquire", 0) / max(1, counts.get("grants", 0)),
        "writes_per_settle": counts.get("writes_settle", 0) / max(1, counts.get("settles", 0)),
        "other_writes_per_answer": (counts.get("writes_cool_down", 0)
                                    + counts.get("writes_lower", 0)) / max(1, len(ok)),
        "wait_p50_s": percentile([r.waited_s for r in calls], 50),
        "wait_p99_s": percentile([r.waited_s for r in calls], 99),
        "wait_max_s": max((r.waited_s for r in calls), default=0.0),
        "waits_beyond_queue": sum(r.waited_s > r.queue_s + 1.0 for r in ok),
        "stale_grants": sum(r.stale_grants for r in calls),
        "deferral_reasons": ", ".join(f"{k} {v}" for k, v in sorted(collections.Counter(
            r.reason for r in calls if r.status == "deferred").items())) or "-",
        "share_min": share_min, "share_max": share_max,
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


def summarise_bare(results, stats, limits, elapsed, workers) -> dict:
    share_min, share_max = answer_shares(results, workers)
    results = [r for _, r in results]
    ok = [r for r in results if r[1] == "ok"]
    return {
        "workers": workers, "grant_to_send_p50_ms": None, "grant_to_send_p99_ms": None,
        "writes_per_answer": None, "reads_per_answer": None, "wait_p50_s": None,
        "writes_per_grant": None, "writes_per_settle": None, "other_writes_per_answer": None,
        "wait_p99_s": None, "wait_max_s": None, "waits_beyond_queue": None,
        "stale_grants": None, "deferral_reasons": "-", "share_min": share_min,
        "share_max": share_max,
        "calls": len(results), "ok": len(ok), "failed": len(results) - len(ok), "deferred": 0,
        "upstream_429_sent": stats["rate_limited"],
        "goodput_rpm": len(ok) / elapsed * 60,
        "goodput_tpm": sum(r[3].input_tokens + r[3].output_tokens for r in ok) / elapsed * 60,
        "p50_s": percentile([r[2] for r in ok], 50),
        "p99_s": percentile([r[2] for r in ok], 99),
        "calls_per_acquire": None, "under_estimates": None,
        "utilisation": utilisation(stats, limits, elapsed),
    }


def render(runs: list[tuple[str, dict]]) -> str:
    def fmt(value, kind):
        if value is None:
            return "-"
        formats = {"str": "{}", "int": "{:,.0f}", "pct": "{:.1%}", "s": "{:.2f} s", "f": "{:.3f}"}
        return formats[kind].format(value)

    rows = [("caller-visible calls", "calls", "int"), ("succeeded", "ok", "int"),
            ("failures seen by callers", "failed", "int"), ("deferred", "deferred", "int"),
            ("upstream 429s sent by the server", "upstream_429_sent", "int"),
            ("goodput, requests/min", "goodput_rpm", "f"),
            ("goodput, tokens/min", "goodput_tpm", "int"),
            ("latency p50 (successes)", "p50_s", "s"), ("latency p99 (successes)", "p99_s", "s"),
            ("grant-to-send p50 (ms)", "grant_to_send_p50_ms", "f"),
            ("grant-to-send p99 (ms)", "grant_to_send_p99_ms", "f"),
            ("DynamoDB calls per acquire", "calls_per_acquire", "f"),
            ("DynamoDB writes per answered call", "writes_per_answer", "f"),
            ("  per granted acquire (acquires)", "writes_per_grant", "f"),
            ("  per settle (settles, releases)", "writes_per_settle", "f"),
            ("  cool-downs + lowerings per answer", "other_writes_per_answer", "f"),
            ("DynamoDB reads per answered call", "reads_per_answer", "f"),
            ("wait for capacity p50", "wait_p50_s", "s"),
            ("wait for capacity p99", "wait_p99_s", "s"),
            ("wait for capacity max", "wait_max_s", "s"),
            ("answers waiting > booked queue + 1 s", "waits_beyond_queue", "int"),
            ("grants given back (sent too late)", "stale_grants", "int"),
            ("deferral reasons", "deferral_reasons", "str"),
            ("answers per caller, min / mean", "share_min", "f"),
            ("answers per caller, max / mean", "share_max", "f"),
            ("input estimate below server count", "under_estimates", "pct")]
    lines = [f"{'':36}" + "".join(f" {label:>16}" for label, _ in runs)]
    for label, key, kind in rows:
        lines.append(f"{label:36}" + "".join(f" {fmt(run[key], kind):>16}" for _, run in runs))
    first = runs[0][1]
    binding = max(first["utilisation"], key=first["utilisation"].get)
    for dim in first["utilisation"]:
        mark = " (binding)" if dim == binding else ""
        lines.append(f"{'utilisation ' + dim + mark:36}" + "".join(
            f" {fmt(run['utilisation'][dim], 'pct'):>16}" for _, run in runs))
    return "\n".join(lines)


def summarise_tenants(run: dict, warmup_s: float) -> dict:
    """Shares per tenant and class counted from `warmup_s`, waits, writes and WCU."""
    plan, done = run["plan"], run["done"]
    counted = [(worker, r) for at, worker, r in done if at >= warmup_s and r.status == "ok"]
    by_tenant = collections.Counter(plan[w][0] for w, _ in counted)
    total = sum(by_tenant.values()) or 1
    per_caller = collections.Counter(w for w, _ in counted)
    within = {}
    for tenant in by_tenant:
        answers = [per_caller[w] for w, (t, p, _) in enumerate(plan) if t == tenant
                   and p == "interactive"] or [per_caller[w] for w, (t, _, _) in
                                               enumerate(plan) if t == tenant]
        mean_answers = sum(answers) / len(answers)
        within[tenant] = (min(answers) / mean_answers, max(answers) / mean_answers) \
            if mean_answers else (0.0, 0.0)
    ok = [r for _, _, r in done if r.status == "ok"]
    interactive = [r for _, w, r in done if plan[w][1] == "interactive" and r.status == "ok"]
    background = sum(plan[w][1] == "background" for w, _ in counted)
    previous_deferred, never_deferred = {}, []
    for _, worker, r in done:  # bucket writes of the answered calls never deferred before
        if r.status == "ok" and not previous_deferred.get(worker):
            never_deferred.append(run["call_writes"][id(r)])
        previous_deferred[worker] = r.status == "deferred"
    wcu_per_write = max(1, -(-run["item_bytes"] // 1024))
    writes_per_answer = run["writes"] / max(1, len(ok))
    return {
        "shares": ", ".join(f"{t} {n / total:.0%}" for t, n in sorted(by_tenant.items())),
        "within": ", ".join(f"{t} {lo:.2f}-{hi:.2f}" for t, (lo, hi) in sorted(within.items())),
        # the bucket starts empty: what the refill allowed over the run
        "utilisation": run["stats"]["families"][FAMILY]["requests"]
        / (run["limits"][0] / 60.0 * run["elapsed"]),
        "answers": len(ok),
        "deferred": sum(r.status == "deferred" for _, _, r in done),
        "interactive_wait_p99_s": percentile([r.waited_s for r in interactive], 99),
        "interactive_queue_p99_s": percentile([r.queue_s for r in interactive], 99),
        "background_of_rest": background / max(1, total - sum(
            plan[w][1] == "interactive" for w, _ in counted)) if background else None,
        "writes_never_deferred": statistics.fmean(never_deferred) if never_deferred else 0.0,
        "writes_per_answer": writes_per_answer,
        "item_bytes": run["item_bytes"],
        "wcu_per_answer": writes_per_answer * wcu_per_write,
        "upstream_429": run["stats"]["rate_limited"],
    }


def render_tenants(rows: list[tuple[str, str, dict]]) -> str:
    """One line per (scenario, scheduler, `summarise_tenants` summary)."""
    columns = [("shares", "shares", "{}"), ("callers min-max/mean", "within", "{}"),
               ("binding used", "utilisation", "{:.0%}"), ("answers", "answers", "{}"),
               ("deferred", "deferred", "{}"),
               ("int. wait p99", "interactive_wait_p99_s", "{:.1f} s"),
               ("int. queue p99", "interactive_queue_p99_s", "{:.1f} s"),
               ("bg of rest", "background_of_rest", "{:.0%}"),
               ("writes/answer never deferred", "writes_never_deferred", "{:.2f}"),
               ("writes/answer", "writes_per_answer", "{:.2f}"),
               ("item bytes", "item_bytes", "{}"), ("WCU/answer", "wcu_per_answer", "{:.2f}"),
               ("429s", "upstream_429", "{}")]
    lines = []
    for name, mode, summary in rows:
        cells = [f"{label} " + ("-" if summary[key] is None else fmt.format(summary[key]))
                 for label, key, fmt in columns]
        lines.append(f"{name:26} {mode:5} | " + " | ".join(cells))
    return "\n".join(lines)
