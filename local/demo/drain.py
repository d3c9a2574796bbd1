"""After the fleet: the deferred requests drained from the deployed work queue through
`sqs_handler` (the demo plays the event source mapping's part), the batch lane's collector and
poller run until every batch request has its answer, and the dead-letter queue read."""

from __future__ import annotations

import json
import sys
import threading
import time

from local.demo.invocation import LambdaContext
from local.demo.output import progress
from local.demo.scenario import RunRecord, Scenario
from local.fakes.aws_server import LocalAws
from stacks.outputs import WORK_QUEUE_URL


def drain_work_queue(agent, aws: LocalAws, env: dict, scenario: Scenario,
                     function_name: str, records: dict, template: dict) -> None:
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
            result = agent.sqs_handler(event, LambdaContext(function_name))
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
            dead = dead_lettered(aws, env)
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
            progress(done, len(records), started, f"waiting {len(pending())}")
    finally:
        stop.set()
        for consumer in consumers:
            consumer.join(timeout=10)


def drain_batch_lane(aws: LocalAws, stack, records: dict, emulator,
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


def dead_lettered(aws: LocalAws, env: dict) -> dict[str, str]:
    """request id -> dead-letter reason, peeking at the DLQ without consuming it."""
    from cli.dlq import list_dead_letters

    sqs = aws.client("sqs")
    letters = list_dead_letters(sqs, env["DLQ_URL"], wait_s=0)
    rows = [letter.summary() for letter in letters]
    return {row["request_id"]: row["reason"] for row in rows if row.get("request_id")}

