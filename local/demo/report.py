"""The demo's report: numbers, charts, alarms that would have fired, audit records."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path

from agent.contract import NAMESPACE, TENANT_DIMENSION, Prices, decode_tenants
from local.cloudwatch.alarms import evaluate_all, evaluate_composites, render_report
from local.cloudwatch.charts import plot_rates
from local.cloudwatch.metrics import Datapoint, MetricStore
from local.cloudwatch.references import resolver
from local.stats import percentile
from stacks.outputs import FUNCTION_NAME


def _total(store: MetricStore, name: str, models, start: float, end: float,
           dimension: str = "Model") -> float:
    """Sum of `name` over the run for every value of `dimension` in `models`."""
    period = int(end - start) + 120
    total = 0.0
    for model in models:
        for _, value in store.series(NAMESPACE, name, {dimension: model}, "Sum", period,
                                     start - 60, start - 60 + period):
            total += value or 0.0
    return total


def _tenant_lines(store: MetricStore, tenants: list[str], start: float,
                  end: float) -> list[str]:
    """Per tenant (the agent's metrics with dimension Tenant): requests, tokens, cost, cost
    per success, failures, 429s, latency p99, budget use and budget refusals."""
    lines = ["per tenant:"]
    for tenant in tenants:
        total = {name: _total(store, name, [tenant], start, end, TENANT_DIMENSION)
                 for name in ("Requests", "InputTokens", "OutputTokens", "CostUSD",
                              "Succeeded", "Failed", "Upstream429", "BudgetRefused")}
        latency = [v for _, v in store.datapoints(NAMESPACE, "Latency",
                                                  {TENANT_DIMENSION: tenant})]
        used = [v for _, v in store.datapoints(NAMESPACE, "BudgetUsedPercent",
                                               {TENANT_DIMENSION: tenant})]
        lines.append(
            f"  {tenant}: {total['Requests']:.0f} model calls, {total['InputTokens']:,.0f} in /"
            f" {total['OutputTokens']:,.0f} out tokens, ${total['CostUSD']:.4f} "
            f"(${total['CostUSD'] / max(1, total['Succeeded']):.5f} per success), "
            f"{total['Failed']:.0f} failed, {total['Upstream429']:.0f} upstream 429s, latency "
            f"p99 {percentile(latency, 99) if latency else 0:.0f} ms; budget "
            + (f"{max(used):.0f}% used, " if used else "none, ")
            + f"{total['BudgetRefused']:.0f} refused")
    return lines


def _bound_text(admitted: float, cap: float, seconds: float) -> str:
    """" of at most 109 the bucket admits in 71 s (50/min + 50 at start) = 96%"."""
    bound = cap + cap / 60 * seconds
    return (f" of at most {bound:,.0f} the bucket admits in {seconds:.0f} s ({cap:,.0f}/min "
            f"+ {cap:,.0f} at start) = {admitted / bound:.0%}")


def _dashboard_page(out: Path, aws, stack, template: dict, started: float, ended: float,
                    platform: list[Datapoint]) -> str:
    """The run saved for replay (`run.json`), its EMF ingested into local CloudWatch, and a
    screenshot of the dashboard page (`dashboard.png`) when Chromium is installed."""
    from local.cloudwatch.api import LocalCloudWatch
    from local.cloudwatch.dashboard import DashboardView, save_run, screenshot_note

    save_run(out, template=template, resources=dict(stack.resources), start=started,
             end=ended, extra=platform)
    cloudwatch = LocalCloudWatch(aws.client("cloudwatch"))
    with open(out / "emf.jsonl") as emf:
        cloudwatch.put_emf_lines(emf)
    cloudwatch.put(platform)
    view = DashboardView(template, cloudwatch, lambda: (started, ended),
                         resolver(dict(stack.resources)))
    run = view.data()["run"]
    text = (f"dashboard page: {run['widgets']} widgets, {run['with_data']} with data, "
            f"{run['no_data']} with no data in this run")
    text += screenshot_note(view, out / "dashboard.png")
    return text + f"; open it: make dashboard (python -m local.cloudwatch.dashboard --run {out})"


def _destructive_allowed(decisions: list[dict]) -> list[dict]:
    """Stand-in decisions that allowed an action the MCP deny covers (must be none)."""
    from policies.mcp import DESTRUCTIVE_ACTIONS, denied_by

    return [d for d in decisions if d["result"] == "Allowed"
            and denied_by(d["action"], DESTRUCTIVE_ACTIONS)]


def write_report(*, out: Path, records: dict, emulator_stats: dict, template: dict,
                 env: dict, aws, stack, started: float, ended: float, timings: dict,
                 scenario, guard_log: Counter | None = None) -> int:
    store = MetricStore()
    with open(out / "emf.jsonl") as emf:
        store.add_emf_lines(emf)
    models = json.loads(env["MODELS"])
    # Metrics the local run has no service for: the DLQ depth and Lambda errors/throttles.
    sqs = aws.client("sqs")
    dlq_depth = int(sqs.get_queue_attributes(
        QueueUrl=env["DLQ_URL"], AttributeNames=["ApproximateNumberOfMessages"])[
        "Attributes"]["ApproximateNumberOfMessages"])
    dlq_name = env["DLQ_URL"].rsplit("/", 1)[-1]
    function_name = stack.outputs[FUNCTION_NAME]
    platform = []
    for minute in range(int(started), int(ended) + 60, 60):
        platform.append(Datapoint(minute, "AWS/SQS", "ApproximateNumberOfMessagesVisible",
                                  (("QueueName", dlq_name),), float(dlq_depth), "Count"))
        for name in ("Errors", "Throttles"):
            platform.append(Datapoint(minute, "AWS/Lambda", name,
                                      (("FunctionName", function_name),), 0.0, "Count"))
    for point in platform:
        store.add(point)

    from cli.dlq import list_dead_letters

    letters = list_dead_letters(sqs, env["DLQ_URL"], wait_s=0)
    (out / "dead_letters.json").write_text(json.dumps(
        [{"summary": letter.summary(), "attributes": letter.attributes, "body": letter.body,
          "text": letter.text, "message_attributes": letter.message_attributes}
         for letter in letters], indent=2, default=str))
    finals = [r.final for r in records.values() if r.final]
    statuses = {s: sum(f["status"] == s for f in finals) for s in
                ("ok", "error", "rejected", "deferred")}
    deferred_first = [r for r in records.values() if r.first_status == "deferred"]
    deferred_done = [r for r in deferred_first if r.final and r.final["status"] == "ok"]
    dead = {r.request_id: r.dead_lettered for r in records.values() if r.dead_lettered}
    unanswered = [r.request_id for r in records.values() if r.final is None and not
                  r.dead_lettered]
    totals = {name: _total(store, name, models, started, ended) for name in (
        "Requests", "InputTokens", "OutputTokens", "CacheWriteTokens", "CacheReadTokens",
        "LocalThrottles", "Upstream429", "Upstream529", "Deferred", "Degraded", "Rejected",
        "CostUSD", "Succeeded", "Failed")}
    savings = 0.0
    for model, spec in models.items():
        read = _total(store, "CacheReadTokens", [model], started, ended)
        prices = Prices.decode(spec["prices"])
        savings += read * (prices.input - prices.cache_read) / 1e6
    latencies = [value for model in models
                 for _, value in store.datapoints(NAMESPACE, "Latency", {"Model": model})]
    end_to_end = [r.finished_at - r.submitted_at for r in records.values() if r.finished_at]

    lines = [f"== Bulwark demo report ({len(records)} requests, {scenario.tier}, provider "
             f"{scenario.provider}, overflow {scenario.overflow_policy})",
             f"deploy (cdk bootstrap + deploy into local AWS): {timings['deploy_s']:.0f} s; "
             f"fleet + drain: {ended - started:.0f} s",
             "answers: " + ", ".join(f"{k} {v}" for k, v in statuses.items())
             + f"; dead-lettered with a reason {len(dead)}; lost {len(unanswered)}",
             f"deferred at first: {len(deferred_first)}, completed later through SQS: "
             f"{len(deferred_done)}; dead-lettered: {dlq_depth}"
             + "".join(f"\n  DLQ reason x{n}: {reason}" for reason, n in
                       Counter(dead.values()).most_common(5)),
             f"upstream 429s sent by the emulator: {emulator_stats['rate_limited']} (expected 0);"
             f" upstream 529s seen: {totals['Upstream529']:.0f}; local throttles (bucket "
             f"refusals): {totals['LocalThrottles']:.0f}"]
    lines.append(f"goodput vs limits over {ended - started:.0f} s, as admitted by the emulator. "
                 "A token bucket starts full: in T seconds it admits up to its capacity plus "
                 "its refill (limit + limit/60 x T), so early in a run the per-minute rate "
                 "exceeds the limit; utilisation is admitted / that bound:")
    seconds = ended - started
    for family, counts in emulator_stats.get("families", {}).items():
        if not counts.get("requests"):
            continue
        limit = next((spec for spec in models.values()
                      if spec.get("bucket", "").endswith(family.replace("-4-5", "-4.5"))), {})
        admitted = {"rpm": counts["requests"],
                    "itpm": counts["input_tokens"] + counts["cache_creation_input_tokens"],
                    "otpm": counts["output_tokens"]}
        parts = []
        for key, label in (("rpm", "requests"), ("itpm", "input+cache-write tokens"),
                           ("otpm", "output tokens")):
            cap = limit.get(key)
            parts.append(f"{admitted[key]:,.0f} {label}" + (
                _bound_text(admitted[key], cap, seconds) if cap else ""))
        lines.append(f"  {family}: " + "; ".join(parts))
    for model_id, counts in emulator_stats.get("bedrock", {}).items():
        if not counts.get("requests"):
            continue
        spec = models.get(model_id, {})
        burndown = spec.get("output_burndown", 1)
        used = (counts["input_tokens"] + counts["cache_creation_input_tokens"]
                + counts["output_tokens"] * burndown)
        cap = spec.get("tpm")
        lines.append(f"  {model_id}: {counts['requests']:,} requests; {used:,.0f} tokens "
                     f"(input + cache write + output x {burndown:g})"
                     + (_bound_text(used, cap, seconds) if cap else ""))
    if guard_log:
        # The guard's warnings (each a refusal, never a grant), counted instead of printed.
        lines.append("guard log (in agent.log): " + ", ".join(
            f"{message} x{n}" for message, n in guard_log.most_common()))
    if emulator_stats.get("injected"):
        lines.append("faults injected by the emulator: " + ", ".join(
            f"{kind} x{n}" for kind, n in emulator_stats["injected"].items()))
    cost = totals["CostUSD"]
    lines += [
        f"cost: ${cost:.4f} total, ${cost / max(1, totals['Requests']):.5f} per model call, "
        f"${cost / max(1, totals['Succeeded']):.5f} per successful request; cache reads saved "
        f"${savings:.4f} ({totals['CacheReadTokens']:,.0f} tokens read from cache)",
        f"model time per request (Latency metric): p50 {percentile(latencies, 50):.0f} ms, p99 "
        f"{percentile(latencies, 99):.0f} ms; per request end to end (deferrals included): "
        f"p50 {percentile(end_to_end, 50):.1f} s, p99 {percentile(end_to_end, 99):.1f} s",
    ]

    lines += _tenant_lines(store, [spec.name for spec in decode_tenants(env["TENANTS"])],
                           started, ended)

    resolve = resolver(dict(stack.resources))
    limits_by_model = {m: {k: spec.get(k) for k in ("rpm", "itpm", "otpm", "tpm")}
                       for m, spec in models.items()}
    rates = plot_rates(store, limits_by_model, started, ended, out / "rates.png")
    page = _dashboard_page(out, aws, stack, template, started, ended, platform)
    results = evaluate_all(template, store, started - 60, ended + 60, resolve=resolve)
    fired = [r for r in results if r.fired]
    composites = evaluate_composites(template, results)
    lines += [f"charts: {rates} ; {page}",
              f"alarms that would have fired: {len(fired)} of {len(results)}",
              render_report(results, run_s=ended - started),
              f"composite alarms (SLO burn rates) that would have fired: "
              f"{', '.join(c.composite.name for c in composites if c.fired) or 'none'} "
              f"of {len(composites)}"]

    audit_lines = (out / "audit.jsonl").read_text().splitlines()
    denied = sum('"denied"' in line for line in audit_lines)
    lines.append(f"audit: {len(records)} requests and {len(audit_lines)} tool calls recorded "
                 f"({denied} denied) in {out}; query them with: python -m cli.audit --local "
                 f"{out}")
    mcp_lines = [json.loads(line) for line in audit_lines
                 if line.strip() and '"mcp://' in line]
    decisions_path = out / "mcp_decisions.json"
    decisions = json.loads(decisions_path.read_text()) if decisions_path.exists() else []
    destructive_allowed = _destructive_allowed(decisions)
    if mcp_lines or decisions:
        denied_ids = sorted({line.get("request_id") for line in mcp_lines
                             if line.get("outcome") == "denied"})
        lines.append(
            f"MCP (local AWS MCP Server): {len(mcp_lines)} tool calls "
            f"({sum(line.get('outcome') == 'ok' for line in mcp_lines)} ok, "
            f"{len(denied_ids)} denied: {', '.join(denied_ids) or '-'}); IAM decisions "
            f"{len(decisions)} ({sum(d['result'] == 'Allowed' for d in decisions)} allowed); "
            f"destructive actions allowed through MCP: {len(destructive_allowed)} "
            f"(expected 0) -> {decisions_path}")
    report = "\n".join(lines)
    print(report)
    (out / "report.txt").write_text(report + "\n")
    summary = {"statuses": statuses, "lost": unanswered, "dead_lettered": dead,
               "dlq": dlq_depth,
               "upstream_429": emulator_stats["rate_limited"], "totals": totals,
               "alarms_fired": [r.alarm.name for r in fired], "deferred_first":
               len(deferred_first), "deferred_completed": len(deferred_done),
               "median_request_s": statistics.median(end_to_end) if end_to_end else None}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    summary["mcp_destructive_allowed"] = destructive_allowed
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    ok = emulator_stats["rate_limited"] == 0 and not unanswered and not destructive_allowed
    print("demo " + ("passed: every request answered, zero upstream 429s" if ok else
                     "FAILED: see above"))
    return 0 if ok else 1
