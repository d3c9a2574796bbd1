"""The fleet: concurrent Function URL requests from both tenants, each signed by a session of
its own role, and the probe of a caller naming another tenant."""

from __future__ import annotations

import json
import threading
import time

from local.demo.invocation import LambdaContext, function_url_event, session_arn
from local.demo.output import progress
from local.demo.scenario import TENANT_ROLES, TENANTS, RunRecord, Scenario, prompt_for


def forged_tenant_probe(agent, function_name: str) -> str:
    """One request signed by acme's role that names globex: refused before any Claude call."""
    caller = session_arn(TENANT_ROLES["acme"], "demo-acme-operator")
    answer = agent.handler(function_url_event({"prompt": "Read globex's notes.",
                                               "tenant": "globex"}, caller),
                           LambdaContext(function_name))
    error = json.loads(answer["body"]).get("error", {})
    return (f"acme's role naming tenant globex: HTTP {answer['statusCode']} "
            f"{error.get('type')} ({error.get('message')})")


def drive(agent, scenario: Scenario, function_name: str, records: dict,
          env: dict | None = None) -> None:
    """`scenario.workers` threads send `scenario.requests` requests, alternating tenants, each
    signed by a session of its tenant's role; every request's outcome lands in `records`
    (request id -> RunRecord)."""
    lock = threading.Lock()
    counter = iter(range(scenario.requests))
    started = time.monotonic()

    def worker() -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            tenant = TENANTS[i % len(TENANTS)]
            request_id = f"demo-{i:04d}"
            record = RunRecord(request_id, tenant, time.time())
            with lock:
                records[request_id] = record
            # each tenant's requests come from a session of its own role: the tenant is
            # derived from that identity, the body does not name it
            caller = session_arn(TENANT_ROLES[tenant], f"demo-{tenant}-operator")
            lane = "batch" if scenario.batch_every and i % scenario.batch_every == \
                scenario.batch_every - 1 and (env or {}).get("BATCH_QUEUE_URL") else None
            prompt = prompt_for(i, tenant, env)
            if lane and "EMULATOR: call" in prompt:
                prompt = f"Label ticket {i} for {tenant}."  # the batch lane has no tools
            event = function_url_event({
                "prompt": prompt, "request_id": request_id, "max_tokens": 200,
                "deadline_s": scenario.deadline_s, **({"lane": lane} if lane else {})}, caller)
            answer = agent.handler(event, LambdaContext(function_name))
            response = json.loads(answer["body"])
            with lock:
                record.first_status = response["status"]
                if response["status"] not in ("deferred", "queued"):
                    record.final, record.finished_at = response, time.time()
                done = sum(r.final is not None or r.first_status in ("deferred", "queued")
                           for r in records.values())
                progress(done, scenario.requests, started)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(scenario.workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

