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

Everything lands in `--out` (default `out/demo`).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from agent.contract import OVERFLOW_POLICIES, PROVIDERS
from local.fakes.aws_mcp_server import LocalAwsMcp
from local.fakes.aws_server import LocalAws
from local.fakes.claude_emulator import ClaudeEmulator
from stacks.outputs import FUNCTION_NAME, WORK_QUEUE_URL

REPO_ROOT = Path(__file__).resolve().parents[2]
TENANTS = ("acme", "globex")
#: The account the local AWS server reports (moto's): the demo's application roles live there.
DEMO_ACCOUNT = "123456789012"
#: Each tenant's application role (docs/tenants.md, "Tenants and callers"): the demo deploys with these
#: bound and signs each tenant's Function URL requests as a session of its own role.
TENANT_ROLES = {tenant: f"arn:aws:iam::{DEMO_ACCOUNT}:role/{tenant.capitalize()}App"
                for tenant in TENANTS}
DOCUMENTS = {
    "runbook.md": "Ingest runbook: restart the ingest service, check the queue depth, then "
                  "page the data team if lag stays above five minutes.",
    "oncall.md": "On-call: primary {tenant}-sre, secondary platform team. Escalate after 15 "
                 "minutes without acknowledgement.",
}


class _LineRouter(io.TextIOBase):
    """Stands in for stdout while the handlers run: EMF documents, audit records and other
    log lines go to their own files (the real stdout stays free for the progress line)."""

    def __init__(self, emf, audit, logs) -> None:
        self._files = (emf, audit, logs)
        self._partial = ""
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            self._partial += text
            *lines, self._partial = self._partial.split("\n")
            for line in lines:
                if line.startswith('{"_aws"'):
                    self._files[0].write(line + "\n")
                elif '"audit":"tool_call"' in line.replace(" ", ""):
                    self._files[1].write(line + "\n")
                elif line.strip():
                    self._files[2].write(line + "\n")
        return len(text)

    def flush(self) -> None:
        for handle in self._files:
            handle.flush()


class _GuardLogCounter(logging.Handler):
    """Takes the guard's log records while the fleet runs: each is counted by its message
    (store errors under --dynamodb-throttle, settle failures...) and written to agent.log, so
    the report gives totals instead of a log line per error across the progress bar."""

    def __init__(self, log_file) -> None:
        super().__init__(logging.INFO)
        self.counts: Counter = Counter()
        self._file = log_file

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[str(record.msg).split(":")[0]] += 1
        self._file.write(self.format(record) + "\n")

    @contextlib.contextmanager
    def capturing(self):
        logger = logging.getLogger("guard")
        propagate = logger.propagate
        logger.addHandler(self)
        logger.propagate = False
        try:
            yield self
        finally:
            logger.removeHandler(self)
            logger.propagate = propagate


@dataclass
class RunRecord:
    request_id: str
    tenant: str
    submitted_at: float
    first_status: str = ""
    final: dict | None = None
    finished_at: float | None = None
    deferrals: int = 0
    dead_lettered: str = ""  # the DLQ reason, when it went there (kept, not lost)


@dataclass
class Scenario:
    requests: int = 60
    workers: int = 8
    tier: str = "tier1"
    provider: str = "anthropic"
    overflow_policy: str = "defer"
    inject_529: int = 0
    dynamodb_throttle: float = 0.0
    deadline_s: float = 4.0
    drain_timeout_s: float = 240.0
    seed: int = 7
    serve: bool = False  # serve the dashboard page live while the fleet runs, then until Ctrl-C
    #: every Nth request takes the batch lane (Message Batches at half price); 0: none
    batch_every: int = 5
    out: Path = field(default_factory=lambda: REPO_ROOT / "out" / "demo")


def mcp_prompt_for(i: int, tenant: str, env: dict) -> str | None:
    """Every sixth request works on AWS through the local AWS MCP Server (list the tenant's
    documents, read the work queue's attributes); request 3 tries a destructive action
    through it (delete a document), which IAM must deny."""
    bucket, prefix = env.get("DOCS_BUCKET"), env.get("DOCS_PREFIX", "docs/")
    if not env.get("MCP_SERVERS") or not bucket:
        return None
    if i == 3:
        call = {"script": f's3.delete_object({{"Bucket": "{bucket}", "Key": '
                          f'"{prefix}{tenant}/runbook.md"}})'}
        return f"Clean up {tenant}'s old runbook.\nEMULATOR: call aws___run_script " + \
            json.dumps(call)
    if i % 12 == 6:
        call = {"script": f's3.list_objects_v2({{"Bucket": "{bucket}", "Prefix": '
                          f'"{prefix}{tenant}/"}})'}
        return f"List {tenant}'s documents through AWS.\nEMULATOR: call aws___run_script " + \
            json.dumps(call)
    if i % 12 == 0 and i:
        call = {"script": f'sqs.get_queue_attributes({{"QueueUrl": "{env["WORK_QUEUE_URL"]}", '
                          '"AttributeNames": ["ApproximateNumberOfMessages"]})'}
        return "How deep is the work queue?\nEMULATOR: call aws___run_script " + \
            json.dumps(call)
    return None


def prompt_for(i: int, tenant: str, env: dict | None = None) -> str:
    mcp = mcp_prompt_for(i, tenant, env or {})
    if mcp:
        return mcp
    kind = i % 4
    if kind == 0:
        return (f"Summarise today's on-call handover for {tenant}.\n"
                'EMULATOR: call read_document {"key": "oncall.md"}')
    if kind == 1:
        return (f"What documents does {tenant} have?\n"
                "EMULATOR: call list_documents {}")
    if kind == 2:
        return (f"Record that the ingest lag cleared (item {i}).\n"
                f'EMULATOR: call write_note {{"note_id": "demo-{i}", "text": "ingest lag '
                f'cleared"}}')
    return f"Give {tenant}'s team a two-line status update for request {i}."


def _progress(done: int, total: int, started: float, extra: str = "") -> None:
    width = 30
    filled = int(width * done / max(1, total))
    sys.__stderr__.write(f"\r  [{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
                         f"{time.monotonic() - started:5.1f}s {extra}   ")
    sys.__stderr__.flush()


def _deployed_environment(aws: LocalAws, stack) -> tuple[dict[str, str], str]:
    """The deployed agent function's environment, as moto's Lambda holds it, and its name."""
    lambda_client = aws.client("lambda")
    function_name = stack.outputs[FUNCTION_NAME]
    config = lambda_client.get_function_configuration(FunctionName=function_name)
    return dict(config["Environment"]["Variables"]), function_name


def _pause_event_source_mappings(aws: LocalAws, function_name: str) -> None:
    """moto runs a deployed SQS event source mapping itself (it receives each message and
    tries to invoke the function in Docker, so messages reach the DLQ after five receives).
    The demo plays the mapping's part in-process instead (`_drain`), so it disables it."""
    lambda_client = aws.client("lambda")
    for mapping in lambda_client.list_event_source_mappings(
            FunctionName=function_name)["EventSourceMappings"]:
        lambda_client.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)


def _seed_documents(aws: LocalAws, bucket: str, prefix: str) -> None:
    s3 = aws.client("s3")
    for tenant in TENANTS:
        for key, text in DOCUMENTS.items():
            s3.put_object(Bucket=bucket, Key=f"{prefix}{tenant}/{key}",
                          Body=text.format(tenant=tenant).encode())


def _throttle_dynamodb(client, table: str, probability: float, rng: random.Random) -> None:
    """Fault injection: writes to the bucket table answer ProvisionedThroughputExceeded with
    `probability` (the guard must refuse with "store_unavailable", never grant)."""
    from botocore.awsrequest import AWSResponse

    def maybe_throttle(params, **_):
        if table.encode() in (params.get("body") or b"") and rng.random() < probability:
            return AWSResponse("http://local", 400, {}, None), {
                "Error": {"Code": "ProvisionedThroughputExceededException",
                          "Message": "injected by the demo"},
                "ResponseMetadata": {"HTTPStatusCode": 400}}
        return None

    client.meta.events.register("before-call.dynamodb.UpdateItem", maybe_throttle)


class _Context:
    """A Lambda context for in-process invocations."""

    def __init__(self, function_name: str, remaining_ms: int = 120_000) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = (f"arn:aws:lambda:us-east-1:123456789012:function:"
                                     f"{function_name}")
        self.memory_limit_in_mb = 1024
        self.aws_request_id = "demo"
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "demo"
        self._deadline = time.monotonic() + remaining_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return int((self._deadline - time.monotonic()) * 1000)


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

        env, function_name = _deployed_environment(aws, stack)
        mcp_stand_in = _start_mcp_stand_in(aws, env)
        _pause_event_source_mappings(aws, function_name)
        _seed_documents(aws, env["DOCS_BUCKET"], env.get("DOCS_PREFIX", "docs/"))
        os.environ.update(aws.env())
        os.environ.update(env)
        os.environ.update({"ANTHROPIC_BASE_URL": emulator.base_url,
                           "ANTHROPIC_BEDROCK_BASE_URL": emulator.bedrock_base_url,
                           "POWERTOOLS_TRACE_DISABLED": "true"})
        if scenario.inject_529:
            emulator.inject("529", count=scenario.inject_529)

        files = [open(out / name, "w") for name in ("emf.jsonl", "audit.jsonl", "agent.log")]
        live = _LivePage(aws, stack, out / "emf.jsonl") if scenario.serve else None
        router = _LineRouter(*files)
        guard_log = _GuardLogCounter(files[2])
        records: dict[str, RunRecord] = {}
        try:
            with contextlib.redirect_stdout(router), guard_log.capturing():
                from agent import handler as agent

                agent.reset_runtime()
                runtime = agent.current_runtime()
                if scenario.dynamodb_throttle:
                    _throttle_dynamodb(runtime.dynamodb, env["BUCKET_TABLE"],
                                       scenario.dynamodb_throttle, rng)
                print("2/4 driving the agent fleet (Function URL requests, each tenant from "
                      "its own role) ...", file=sys.__stdout__, flush=True)
                fleet_started = time.time()
                _drive(agent, scenario, function_name, records, env)
                print(f"\n    {_forged_tenant_probe(agent, function_name)}",
                      file=sys.__stdout__, flush=True)
                print("\n3/4 draining deferred requests through sqs_handler ...",
                      file=sys.__stdout__, flush=True)
                _drain(agent, aws, env, scenario, function_name, records, stack.template())
                batch = _drain_batch_lane(aws, stack, records, emulator)
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


class _LivePage:
    """`--serve`: the dashboard page of this run, live. A thread ingests what the fleet has
    written to emf.jsonl into local CloudWatch every 2 s; the page redraws every 5 s."""

    def __init__(self, aws: LocalAws, stack, emf_path: Path) -> None:
        from local.cloudwatch.api import LocalCloudWatch
        from local.cloudwatch.dashboard import DashboardServer, DashboardView
        from local.cloudwatch.references import resolver

        self.cloudwatch = LocalCloudWatch(aws.client("cloudwatch"))
        self.started = time.time()
        self.view = DashboardView(stack.template(), self.cloudwatch,
                                  lambda: (self.started, time.time()),
                                  resolver(dict(stack.resources)), live=True)
        self.server = DashboardServer(self.view, 8050).start()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tail, args=(emf_path,), daemon=True)
        self._thread.start()
        print(f"    dashboard page, live: {self.server.url}", file=sys.__stdout__, flush=True)

    def _tail(self, path: Path) -> None:
        offset = 0
        while not self._stop.wait(2.0):
            if not path.exists():
                continue
            with open(path) as handle:
                handle.seek(offset)
                chunk = handle.read()
            complete = chunk[:chunk.rfind("\n") + 1]
            offset += len(complete.encode())
            if complete:
                self.cloudwatch.put_emf_lines(complete.splitlines())

    def serve_until_interrupted(self) -> None:
        print(f"serving the dashboard page at {self.server.url} (Ctrl-C stops)", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            self._stop.set()
            self.server.stop()


def _start_mcp_stand_in(aws: LocalAws, env: dict) -> LocalAwsMcp | None:
    """The local AWS MCP Server, with the deployed MCP_SERVERS pointed at it (as
    ANTHROPIC_BASE_URL points the SDK at the emulator)."""
    if not env.get("MCP_SERVERS"):
        return None
    stand_in = LocalAwsMcp(aws.endpoint_url).start()
    servers = json.loads(env["MCP_SERVERS"])
    for server in servers.values():
        if server["auth"].get("service") == "aws-mcp":
            server["url"] = stand_in.url
    env["MCP_SERVERS"] = json.dumps(servers)
    return stand_in


#: Daily budgets the demo deploys with: acme runs into its own part-way through a full run
#: (a request costs about $0.002), so its later requests are rejected for budget while globex
#: is unaffected; the report shows each tenant's budget use and the budget alarms.
DEMO_BUDGETS = {"acme": {"usd_per_day": 0.03, "action": "reject"}}


def tenants_context() -> dict:
    """The `tenants` context the demo deploys with: each tenant bound to its own role, with
    its budget from DEMO_BUDGETS."""
    return {tenant: {"principals": [role],
                     **({"budget": DEMO_BUDGETS[tenant]} if tenant in DEMO_BUDGETS else {})}
            for tenant, role in TENANT_ROLES.items()}


def session_arn(role_arn: str, session: str) -> str:
    """The ARN a Function URL reports for a session of `role_arn` (assumed-role ARNs drop the
    role's path)."""
    name = role_arn.rpartition("/")[2]
    account = role_arn.split(":")[4]
    return f"arn:aws:sts::{account}:assumed-role/{name}/{session}"


def function_url_event(body: dict, caller_arn: str | None) -> dict:
    """A Function URL (AuthType AWS_IAM, payload format 2.0) request event: the JSON `body`,
    signed by `caller_arn` (requestContext.authorizer.iam.userArn; None: unsigned)."""
    context: dict = {"http": {"method": "POST", "path": "/"}}
    if caller_arn is not None:
        context["authorizer"] = {"iam": {"userArn": caller_arn,
                                         "accountId": caller_arn.split(":")[4]}}
    return {"version": "2.0", "rawPath": "/", "body": json.dumps(body),
            "isBase64Encoded": False, "requestContext": context}


def _forged_tenant_probe(agent, function_name: str) -> str:
    """One request signed by acme's role that names globex: refused before any Claude call."""
    caller = session_arn(TENANT_ROLES["acme"], "demo-acme-operator")
    answer = agent.handler(function_url_event({"prompt": "Read globex's notes.",
                                               "tenant": "globex"}, caller),
                           _Context(function_name))
    error = json.loads(answer["body"]).get("error", {})
    return (f"acme's role naming tenant globex: HTTP {answer['statusCode']} "
            f"{error.get('type')} ({error.get('message')})")


def _drive(agent, scenario: Scenario, function_name: str, records: dict,
           env: dict | None = None) -> None:
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
            answer = agent.handler(event, _Context(function_name))
            response = json.loads(answer["body"])
            with lock:
                record.first_status = response["status"]
                if response["status"] not in ("deferred", "queued"):
                    record.final, record.finished_at = response, time.time()
                done = sum(r.final is not None or r.first_status in ("deferred", "queued")
                           for r in records.values())
                _progress(done, scenario.requests, started)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(scenario.workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _drain(agent, aws: LocalAws, env: dict, scenario: Scenario, function_name: str,
           records: dict, template: dict) -> None:
    """Poll the deployed work queue with `consumers` parallel pollers (the event source
    mapping's maximum concurrency) and hand batches to sqs_handler, deleting what it did not
    report as failed, until every request has an answer or was dead-lettered."""
    from agent.results import fetch_result

    sqs = aws.client("sqs")
    started = time.monotonic()
    queue = env["WORK_QUEUE_URL"]
    lock = threading.Lock()
    stop = threading.Event()
    # The work queue as deployed (the one the stack's output names): its visibility timeout
    # (6 x the function timeout), passed explicitly: moto's CloudFormation leaves its queues
    # at the 30 s default, which would hand a batch still being processed to a second poller;
    # as many pollers as its event source mapping's ScalingConfig.MaximumConcurrency (the
    # stack's `queue_max_concurrency`).
    work_queue_id = template["Outputs"][WORK_QUEUE_URL]["Value"]["Ref"]
    visibility_s = int(template["Resources"][work_queue_id]["Properties"].get(
        "VisibilityTimeout", 30))
    [mapping] = [r["Properties"] for r in template["Resources"].values()
                 if r["Type"] == "AWS::Lambda::EventSourceMapping"
                 and r["Properties"]["EventSourceArn"] == {"Fn::GetAtt": [work_queue_id, "Arn"]}]
    pollers = int(mapping["ScalingConfig"]["MaximumConcurrency"])

    def pending() -> list[RunRecord]:
        with lock:
            return [r for r in records.values() if r.final is None and not r.dead_lettered
                    and r.first_status != "queued"]  # the batch lane drains after this

    def consume() -> None:
        while not stop.is_set():
            # no long poll: the local server is serialised, a poll would stall it
            batch = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=5,
                                        WaitTimeSeconds=0, VisibilityTimeout=visibility_s,
                                        AttributeNames=["All"]).get(
                "Messages", [])
            if not batch:
                stop.wait(0.25)
                continue
            event = {"Records": [{
                "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"], "attributes": {"ApproximateReceiveCount": m.get(
                    "Attributes", {}).get("ApproximateReceiveCount", "1")},
                "messageAttributes": {}, "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:work",
                "awsRegion": "us-east-1"} for m in batch]}
            result = agent.sqs_handler(event, _Context(function_name))
            failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
            for message in batch:
                if message["MessageId"] not in failed:
                    sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
                body = json.loads(message["Body"])
                request_id = (body.get("request") or {}).get("request_id")
                with lock:
                    if request_id in records:
                        records[request_id].deferrals = max(records[request_id].deferrals,
                                                            int(body.get("deferrals", 0)))

    consumers = [threading.Thread(target=consume, daemon=True)
                 for _ in range(pollers)]
    for consumer in consumers:
        consumer.start()
    try:
        while pending() and time.monotonic() - started < scenario.drain_timeout_s:
            time.sleep(1.0)
            dead = _dead_lettered(aws, env)
            for record in pending():
                if record.request_id in dead:
                    record.dead_lettered = dead[record.request_id]
                    continue
                stored = fetch_result(agent.current_runtime(), {
                    "request_id": record.request_id, "tenant": record.tenant})
                if stored.get("status") not in ("deferred", None) and not (
                        stored.get("status") == "error"
                        and stored.get("error", {}).get("type") == "not_found"):
                    with lock:
                        record.final, record.finished_at = stored, time.time()
            with lock:
                done = sum(r.final is not None or bool(r.dead_lettered)
                           for r in records.values())
            _progress(done, len(records), started, f"waiting {len(pending())}")
    finally:
        stop.set()
        for consumer in consumers:
            consumer.join(timeout=10)


def _drain_batch_lane(aws: LocalAws, stack, records: dict, emulator,
                      timeout_s: float = 180.0) -> dict | None:
    """Run the deployed collector and poller (their own environment) in-process until every
    batch-lane request has its answer; returns the lane's numbers for the report."""
    queued = [r for r in records.values() if r.first_status == "queued"]
    if not queued:
        return None
    print(f"3b/4 the batch lane: {len(queued)} requests through the Message Batches API ...",
          file=sys.__stdout__, flush=True)
    from agent.batch.handler import BatchRuntime
    from agent.batch.poller import PollSummary
    from agent.telemetry import RequestMetrics

    config = aws.client("lambda").get_function_configuration(
        FunctionName=f"{stack.stack_name}-batch-collector")
    env = dict(config["Environment"]["Variables"])
    env["BATCH_MAX_WAIT_S"] = "0"  # the demo does not wait for fuller batches
    runtime = BatchRuntime(env, dynamodb=aws.client("dynamodb"), sqs=aws.client("sqs"),
                           secrets=aws.client("secretsmanager"))
    totals = PollSummary()
    deadline = time.monotonic() + timeout_s
    results = runtime.config.results_table
    dynamodb = aws.client("dynamodb")

    def answer(record) -> dict | None:
        item = dynamodb.get_item(TableName=results, ConsistentRead=True, Key={
            "request_id": {"S": f"{record.tenant}/{record.request_id}"}}).get("Item")
        response = json.loads(item["response"]["S"]) if item else None
        return response if response and response["status"] != "queued" else None

    while time.monotonic() < deadline:
        metrics = RequestMetrics()
        runtime.collector(metrics).run()
        polled = runtime.poller(metrics).run()
        metrics.flush()  # into emf.jsonl with the rest
        for name in ("succeeded", "duplicates", "retried", "dead_lettered"):
            setattr(totals, name, getattr(totals, name) + getattr(polled, name))
        totals.cost_usd += polled.cost_usd
        totals.standard_usd += polled.standard_usd
        for record in queued:
            if record.final is None and (final := answer(record)) is not None:
                record.final, record.finished_at = final, time.time()
        if all(r.final is not None for r in queued):
            break
        time.sleep(0.5)
    stats = emulator.stats()["message_batches"]
    completed = sum(1 for r in queued if r.final and r.final["status"] == "ok")
    return {"queued": len(queued), "completed": completed,
            "lost": sum(1 for r in queued if r.final is None),
            "answered_twice": totals.duplicates, "retried": totals.retried,
            "dead_lettered": totals.dead_lettered, "batches": stats["batches"],
            "items_submitted": sum(stats["items"].values()),
            "cost_usd": totals.cost_usd, "standard_usd": totals.standard_usd,
            "saved_usd": totals.standard_usd - totals.cost_usd,
            "cost_share_percent": round(100 * totals.cost_usd / totals.standard_usd, 6)
            if totals.standard_usd else 0.0,
            "batch_endpoint_429": stats["rate_limited"]}


def _dead_lettered(aws: LocalAws, env: dict) -> dict[str, str]:
    """request id -> dead-letter reason, peeking at the DLQ without consuming it."""
    from cli.dlq import list_dead_letters

    sqs = aws.client("sqs")
    letters = list_dead_letters(sqs, env["DLQ_URL"], wait_s=0)
    rows = [letter.summary() for letter in letters]
    return {row["request_id"]: row["reason"] for row in rows if row.get("request_id")}


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

