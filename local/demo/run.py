"""`make demo`: the whole kit on one machine, no AWS account.

    python -m local.demo [--requests 60 --workers 8 --tier tier1 --provider anthropic
                          --overflow-policy defer --inject-529 0 --dynamodb-throttle 0.0]

1. Starts the local AWS server and the Claude emulator (child processes: they stop with this
   process, Ctrl-C included).
2. Runs the real CDK CLI (`cdk bootstrap`, `cdk deploy`) of the app into local AWS, creating
   what moto does not model (the API key secret) itself.
3. Drives the real agent handlers in-process, configured from the deployed function's own
   environment: concurrent requests from two tenants, with tool use, saturating the quota;
   deferrals are drained through `sqs_handler` from the deployed work queue, like the event
   source mapping would.
4. Prints a report, writes PNG charts (tokens and requests per minute against each limit; the
   deployed dashboard's widgets drawn from the metrics the run emitted), evaluates the
   deployed alarms' definitions against those metrics, and writes the audit records.

Everything lands in `--out` (default `out/demo`). This module runs the steps in order; each
step's work is a module of its own: `scenario` (what runs), `prepare` (the deployed stack made
ready), `fleet` (step 3's requests), `drain` (the work queue and the batch lane), `output`,
`faults`, `live` (`--serve`), `report` (step 4).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sys
import time
from pathlib import Path

from agent.contract import OVERFLOW_POLICIES, PROVIDERS
from local.demo.drain import drain_batch_lane, drain_work_queue
from local.demo.faults import throttle_dynamodb
from local.demo.fleet import drive, forged_tenant_probe
from local.demo.invocation import function_url_event, session_arn
from local.demo.live import LivePage
from local.demo.output import GuardLogCounter, LineRouter
from local.demo.prepare import (deployed_environment, pause_event_source_mappings,
                                seed_documents, start_mcp_stand_in)
from local.demo.scenario import (DEMO_ACCOUNT, DEMO_BUDGETS, DOCUMENTS, REPO_ROOT,
                                 TENANT_ROLES, TENANTS, RunRecord, Scenario, mcp_prompt_for,
                                 prompt_for, tenants_context)
from local.fakes.aws_server import LocalAws
from local.fakes.claude_emulator import ClaudeEmulator

#: What other code imports from here: the scenario and its tenants, the Function URL events
#: the fleet sends, and the entry points.
__all__ = ["DEMO_ACCOUNT", "DEMO_BUDGETS", "DOCUMENTS", "REPO_ROOT", "TENANTS", "TENANT_ROLES",
           "RunRecord", "Scenario", "function_url_event", "main", "mcp_prompt_for", "prompt_for",
           "run", "session_arn", "tenants_context"]


def run(scenario: Scenario) -> int:
    from local.demo.deploy import deploy_local

    out = scenario.out
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(scenario.seed)
    timings: dict[str, float] = {}
    emulator_config = {"tier": scenario.tier, "output_tokens": 60, "latency_s": 0.2,
                       "batch_processing_s": 2.0}  # a short batch processing time
    print(f"Bulwark demo: {scenario.requests} requests, {scenario.workers} workers, "
          f"{scenario.tier} limits, provider {scenario.provider}, overflow "
          f"{scenario.overflow_policy}; output in {out}", flush=True)
    with LocalAws() as aws, ClaudeEmulator(emulator_config) as emulator:
        started = time.monotonic()
        print("1/4 cdk bootstrap + cdk deploy into local AWS ...", flush=True)
        context = {"provider": scenario.provider, "overflow_policy": scenario.overflow_policy,
                   "tenants": tenants_context()}
        if scenario.provider == "anthropic":  # Bedrock takes cdk.json's provider defaults
            context["tier"] = scenario.tier
        stack = deploy_local(aws, context=context, work_dir=out / "cdk")
        timings["deploy_s"] = time.monotonic() - started
        print(f"    deployed {stack.stack_name}: {len(stack.resources)} resources in "
              f"{timings['deploy_s']:.0f} s", flush=True)

        env, function_name = deployed_environment(aws, stack)
        mcp_stand_in = start_mcp_stand_in(aws, env)
        pause_event_source_mappings(aws, function_name)
        seed_documents(aws, env["DOCS_BUCKET"], env.get("DOCS_PREFIX", "docs/"))
        os.environ.update(aws.env())
        os.environ.update(env)
        os.environ.update({"ANTHROPIC_BASE_URL": emulator.base_url,
                           "ANTHROPIC_BEDROCK_BASE_URL": emulator.bedrock_base_url,
                           "POWERTOOLS_TRACE_DISABLED": "true"})
        if scenario.inject_529:
            emulator.inject("529", count=scenario.inject_529)

        files = [open(out / name, "w") for name in ("emf.jsonl", "audit.jsonl", "agent.log")]
        live = LivePage(aws, stack, out / "emf.jsonl") if scenario.serve else None
        router = LineRouter(*files)
        guard_log = GuardLogCounter(files[2])
        records: dict[str, RunRecord] = {}
        try:
            with contextlib.redirect_stdout(router), guard_log.capturing():
                from agent import handler as agent

                agent.reset_runtime()
                runtime = agent.current_runtime()
                if scenario.dynamodb_throttle:
                    throttle_dynamodb(runtime.dynamodb, env["BUCKET_TABLE"],
                                      scenario.dynamodb_throttle, rng)
                print("2/4 driving the agent fleet (Function URL requests, each tenant from "
                      "its own role) ...", file=sys.__stdout__, flush=True)
                fleet_started = time.time()
                drive(agent, scenario, function_name, records, env)
                print(f"\n    {forged_tenant_probe(agent, function_name)}",
                      file=sys.__stdout__, flush=True)
                print("\n3/4 draining deferred requests through sqs_handler ...",
                      file=sys.__stdout__, flush=True)
                drain_work_queue(agent, aws, env, scenario, function_name, records,
                                 stack.template())
                batch = drain_batch_lane(aws, stack, records, emulator)
                fleet_ended = time.time()
        finally:
            router.flush()
            for handle in files:
                handle.close()
            decisions = mcp_stand_in.decisions() if mcp_stand_in else []
            if mcp_stand_in:
                mcp_stand_in.stop()
        (out / "mcp_decisions.json").write_text(json.dumps(decisions, indent=2))
        if batch is not None:
            (out / "batch.json").write_text(json.dumps(batch, indent=2))
            print(f"\nBatch lane: {batch['queued']} queued, {batch['completed']} completed, "
                  f"{batch['lost']} lost, {batch['answered_twice']} answered twice; cost "
                  f"{batch['cost_usd']:.6f} USD vs {batch['standard_usd']:.6f} USD standard "
                  f"({batch['cost_share_percent']:g}%), saved {batch['saved_usd']:.6f} USD; "
                  f"{batch['batches']} batches, batch-endpoint 429s "
                  f"{batch['batch_endpoint_429']}", flush=True)
        print("\n4/4 report, charts, alarms", flush=True)
        from local.demo.report import write_report

        code = write_report(out=out, records=records, emulator_stats=emulator.stats(),
                            template=stack.template(), env=env, aws=aws, stack=stack,
                            started=fleet_started, ended=fleet_ended, timings=timings,
                            scenario=scenario, guard_log=guard_log.counts)
        if live:
            live.serve_until_interrupted()
        return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--tier", default="tier1",
                        choices=["tier1", "tier2", "tier3", "tier4", "start", "build", "scale"])
    parser.add_argument("--provider", choices=PROVIDERS, default="anthropic")
    parser.add_argument("--overflow-policy", choices=OVERFLOW_POLICIES, default="defer")
    parser.add_argument("--inject-529", type=int, default=0, help="529 answers to inject")
    parser.add_argument("--dynamodb-throttle", type=float, default=0.0,
                        help="probability that a bucket write is throttled")
    parser.add_argument("--deadline", type=float, default=4.0, help="seconds per request")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "out" / "demo")
    parser.add_argument("--serve", action="store_true",
                        help="serve the dashboard page live while the fleet runs")
    args = parser.parse_args(argv)
    scenario = Scenario(requests=args.requests, workers=args.workers, tier=args.tier,
                        provider=args.provider, overflow_policy=args.overflow_policy,
                        inject_529=args.inject_529, dynamodb_throttle=args.dynamodb_throttle,
                        deadline_s=args.deadline, out=args.out, serve=args.serve)
    try:
        return run(scenario)
    except KeyboardInterrupt:
        print("\ninterrupted: local servers stopped", file=sys.stderr)
        return 130

