"""The agent Lambda's handlers against the Claude emulator and the local AWS server.

Everything the handler touches is real over HTTP: DynamoDB (bucket, results, idempotency,
notes), SQS (work queue, DLQ), S3 (documents), Secrets Manager (API key) and STS (tool role) in
moto, and the Messages API in the emulator.
"""

from __future__ import annotations

import io
import json
import math
import uuid

import pytest

from local.fakes.claude_emulator import ClaudeEmulator

MAIN, SMALL = "claude-sonnet-4-6", "claude-haiku-4-5"
PRICES = {"input": 3.0, "output": 15.0, "cache_write": 3.75, "cache_read": 0.30}
EMULATOR_LIMITS = {"sonnet-4": {"rpm": 600, "itpm": 200000, "otpm": 40000},
                   "haiku-4.5": {"rpm": 600, "itpm": 200000, "otpm": 40000}}


class LambdaContext:
    function_name = "bulwark-agent"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bulwark-agent"
    memory_limit_in_mb = 1024
    aws_request_id = "lambda-request"
    log_group_name = "/aws/lambda/bulwark-agent"
    log_stream_name = "stream"

    def __init__(self, remaining_ms: int = 60_000) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture(scope="module")
def emulator():
    with ClaudeEmulator({"tier": "tier4", "limits": EMULATOR_LIMITS, "output_tokens": 12}) as emu:
        yield emu


@pytest.fixture
def stack(local_aws, emulator, monkeypatch):
    """The resources the stack would deploy, created in moto, and the Lambda environment."""
    from guard import ensure_table

    suffix = uuid.uuid4().hex[:8]
    for name, value in local_aws.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", emulator.base_url)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    dynamodb, sqs = local_aws.client("dynamodb"), local_aws.client("sqs")
    s3, secrets, iam = local_aws.client("s3"), local_aws.client("secretsmanager"), \
        local_aws.client("iam")
    names = {"bucket": f"buckets-{suffix}", "results": f"results-{suffix}",
             "idem": f"idem-{suffix}", "notes": f"notes-{suffix}", "docs": f"docs-{suffix}"}
    ensure_table(dynamodb, names["bucket"])
    for table, keys in ((names["results"], [("request_id", "HASH")]),
                        (names["idem"], [("id", "HASH")]),
                        (names["notes"], [("tenant", "HASH"), ("note_id", "RANGE")])):
        dynamodb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                              AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"}
                                                    for k, _ in keys],
                              KeySchema=[{"AttributeName": k, "KeyType": t} for k, t in keys])
    s3.create_bucket(Bucket=names["docs"])
    s3.put_object(Bucket=names["docs"], Key="docs/acme/runbook.md",
                  Body=b"Restart the ingest service, then page the data team.")
    work = sqs.create_queue(QueueName=f"work-{suffix}")["QueueUrl"]
    dlq = sqs.create_queue(QueueName=f"dlq-{suffix}")["QueueUrl"]
    secret = secrets.create_secret(Name=f"claude-key-{suffix}",
                                   SecretString=json.dumps({"api_key": "sk-test-secret"}))["ARN"]
    role = iam.create_role(RoleName=f"tool-{suffix}", AssumeRolePolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": []}))["Role"]["Arn"]
    models = {MAIN: {"bucket": "anthropic#sonnet-4", "rpm": 600, "itpm": 200000, "otpm": 40000,
                     "prices": PRICES},
              SMALL: {"bucket": "anthropic#haiku-4.5", "rpm": 600, "itpm": 200000,
                      "otpm": 40000, "prices": {"input": 1.0, "output": 5.0}}}
    env = {"PROVIDER": "anthropic", "MODELS": json.dumps(models), "DEFAULT_MODEL": MAIN,
           "DEGRADE_MODEL": SMALL, "OVERFLOW_POLICY": "defer", "TENANTS": "acme,globex",
           "BUCKET_TABLE": names["bucket"], "RESULTS_TABLE": names["results"],
           "IDEMPOTENCY_TABLE": names["idem"], "NOTES_TABLE": names["notes"],
           "DOCS_BUCKET": names["docs"], "DOCS_PREFIX": "docs/", "WORK_QUEUE_URL": work,
           "DLQ_URL": dlq, "TOOL_ROLE_ARN": role, "API_KEY_SECRET_ARN": secret,
           "MAX_DEFERRALS": "2", "DEFAULT_DEADLINE_S": "10"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    emulator.reset()
    from agent import handler as module

    module.reset_runtime()
    log_stream = io.StringIO()  # Powertools' handler holds the stdout of import time
    monkeypatch.setattr(module.logger.registered_handler, "stream", log_stream)
    yield {"log": log_stream, "env": env, "names": names, "dynamodb": dynamodb, "sqs": sqs,
           "work": work, "dlq": dlq, "module": module}
    module.reset_runtime()


def invoke(stack, event, remaining_ms=60_000):
    return stack["module"].handler(event, LambdaContext(remaining_ms))


def drain_bucket(stack, model_bucket="anthropic#sonnet-4"):
    from guard import Limits, TokenBucket

    bucket = TokenBucket(stack["names"]["bucket"], model_bucket,
                         Limits(600, 200000, 40000), stack["dynamodb"])
    grant = bucket.try_acquire(1, 1000, 0)
    bucket.settle(grant, 10**6, 0)  # a debt of one whole capacity: ~2 minutes to recover


def refill_bucket(stack, model_bucket="anthropic#sonnet-4"):
    stack["dynamodb"].delete_item(TableName=stack["names"]["bucket"],
                                  Key={"pk": {"S": model_bucket}})


def queued(stack, queue="work", wait_s=0):
    """Messages visible on a queue; `wait_s` long-polls past a deferral's DelaySeconds."""
    return stack["sqs"].receive_message(QueueUrl=stack[queue], MaxNumberOfMessages=10,
                                        MessageAttributeNames=["All"],
                                        WaitTimeSeconds=wait_s).get("Messages", [])


def sqs_event(*bodies, receive_count=1):
    return {"Records": [{"messageId": f"m{i}", "receiptHandle": f"r{i}", "body": body,
                         "attributes": {"ApproximateReceiveCount": str(receive_count)},
                         "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
                         "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:work",
                         "awsRegion": "us-east-1"} for i, body in enumerate(bodies)]}


def emitted(capsys, stack=None):
    """(EMF documents, audit lines) written to stdout and the Powertools log so far."""
    emf, audit = [], []
    text = capsys.readouterr().out + (stack["log"].getvalue() if stack else "")
    for line in text.splitlines():
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "_aws" in doc:
            emf.append(doc)
        elif doc.get("audit") == "tool_call":
            audit.append(doc)
    return emf, audit


# -- success paths -----------------------------------------------------------------------------

def test_sync_request_answers_and_emits_contract_metrics_with_cost(stack, capsys):
    response = invoke(stack, {"prompt": "Say hello to the team.", "tenant": "acme",
                              "request_id": "req-hello-1"})
    assert response["status"] == "ok", response
    assert response["request_id"] == "req-hello-1" and response["model"] == MAIN
    assert len(response["output"].split()) == 12
    usage = response["usage"]
    emf, _ = emitted(capsys)
    doc = next(d for d in emf if d.get("Model") == MAIN)
    directive = doc["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "Bulwark" and directive["Dimensions"] == [["Model"]]
    assert doc["Requests"] == [1.0] and doc["Succeeded"] == [1.0]
    assert doc["InputTokens"] == [usage["input_tokens"]]
    assert doc["OutputTokens"] == [12.0]
    expected_cost = (usage["input_tokens"] * 3.0 + usage["output_tokens"] * 15.0
                     + usage["cache_creation_input_tokens"] * 3.75
                     + usage["cache_read_input_tokens"] * 0.30) / 1e6
    assert doc["CostUSD"][0] == pytest.approx(expected_cost)
    assert doc["CacheWriteTokens"][0] > 0  # the system prompt is cached on the first call


def test_second_request_reads_the_cached_system_prompt(stack, capsys):
    invoke(stack, {"prompt": "First question.", "tenant": "acme"})
    second = invoke(stack, {"prompt": "Second question.", "tenant": "acme"})
    assert second["usage"]["cache_read_input_tokens"] > 0


def test_function_url_event_records_the_iam_caller_in_audit_lines(stack, capsys):
    caller = "arn:aws:sts::123456789012:assumed-role/AcmeApp/alice"
    body = {"prompt": 'Check the runbook.\nEMULATOR: call read_document {"key": "runbook.md"}',
            "tenant": "acme", "request_id": "req-url-1"}
    event = {"version": "2.0", "rawPath": "/", "body": json.dumps(body),
             "isBase64Encoded": False,
             "requestContext": {"http": {"method": "POST", "path": "/"},
                                "authorizer": {"iam": {"userArn": caller,
                                                       "accountId": "123456789012"}}}}
    response = invoke(stack, event)
    assert response["statusCode"] == 200
    payload = json.loads(response["body"])
    assert payload["status"] == "ok" and "Received 1 tool results" in payload["output"]
    _, audit = emitted(capsys, stack)
    assert len(audit) == 1
    line = audit[0]
    assert (line["request_id"], line["caller"], line["tenant"], line["tool"], line["outcome"]) \
        == ("req-url-1", caller, "acme", "read_document", "ok")
    assert "runbook.md" in line["target"]
    assert "sk-test-secret" not in json.dumps(audit)


def test_tool_loop_writes_a_note_under_the_tenant_partition(stack):
    prompt = 'Record it.\nEMULATOR: call write_note {"note_id": "n1", "text": "ingest ok"}'
    response = invoke(stack, {"prompt": prompt, "tenant": "globex", "request_id": "req-note-1"})
    assert response["status"] == "ok", response
    item = stack["dynamodb"].get_item(TableName=stack["names"]["notes"], Key={
        "tenant": {"S": "globex"}, "note_id": {"S": "n1"}})["Item"]
    assert item["text"]["S"] == "ingest ok" and item["request_id"]["S"] == "req-note-1"


def test_tool_role_is_assumed_with_source_identity_and_session_tags(stack):
    module = stack["module"]
    invoke(stack, {"prompt": "warm up", "tenant": "acme"})  # builds the runtime
    sent = []
    module.current_runtime().sts.meta.events.register(
        "before-parameter-build.sts.AssumeRole", lambda params, **_: sent.append(dict(params)))
    prompt = 'Read.\nEMULATOR: call list_documents {}'
    invoke(stack, {"prompt": prompt, "tenant": "acme", "request_id": "req-sts-1"})
    assert len(sent) == 1
    assert sent[0]["RoleArn"] == stack["env"]["TOOL_ROLE_ARN"]
    assert sent[0]["RoleSessionName"] == "req-sts-1"
    assert sent[0]["SourceIdentity"] == "req-sts-1"
    assert {t["Key"]: t["Value"] for t in sent[0]["Tags"]} == {"tenant": "acme",
                                                              "agent": "bulwark-agent"}


# -- capacity: overflow policies ---------------------------------------------------------------

def test_defer_policy_queues_the_request_and_the_result_can_be_fetched(stack):
    drain_bucket(stack)
    sent = []
    stack["module"].current_runtime().sqs.meta.events.register(
        "before-parameter-build.sqs.SendMessage", lambda params, **_: sent.append(dict(params)))
    response = invoke(stack, {"prompt": "later please", "tenant": "acme",
                              "request_id": "req-defer-1", "deadline_s": 0})
    assert response["status"] == "deferred" and response["retry_after"] > 0
    pending = invoke(stack, {"action": "get_result", "request_id": "req-defer-1",
                             "tenant": "acme"})
    assert pending["status"] == "deferred"
    [message] = sent
    assert message["QueueUrl"] == stack["work"]
    assert message["DelaySeconds"] == min(900, math.ceil(response["retry_after"]))
    envelope = json.loads(message["MessageBody"])
    assert envelope["deferrals"] == 1 and envelope["request"]["request_id"] == "req-defer-1"

    refill_bucket(stack)
    stack["module"].reset_runtime()  # the queue is drained by another (fresh) container
    result = stack["module"].sqs_handler(sqs_event(message["MessageBody"]), LambdaContext())
    assert result == {"batchItemFailures": []}
    done = invoke(stack, {"action": "get_result", "request_id": "req-defer-1", "tenant": "acme"})
    assert done["status"] == "ok" and done["output"]
    other_tenant = invoke(stack, {"action": "get_result", "request_id": "req-defer-1",
                                  "tenant": "globex"})
    assert other_tenant["status"] == "error" and other_tenant["error"]["type"] == "not_found"


def test_reject_policy_answers_rejected_with_retry_after(stack, monkeypatch):
    monkeypatch.setenv("OVERFLOW_POLICY", "reject")
    drain_bucket(stack)
    response = invoke(stack, {"prompt": "now or never", "tenant": "acme", "deadline_s": 0})
    assert response["status"] == "rejected" and response["retry_after"] > 0
    assert queued(stack) == []


def test_degrade_policy_answers_from_the_smaller_model(stack, monkeypatch):
    monkeypatch.setenv("OVERFLOW_POLICY", "degrade")
    drain_bucket(stack)
    response = invoke(stack, {"prompt": "quick one", "tenant": "acme", "deadline_s": 0})
    assert response["status"] == "ok" and response["model"] == SMALL


def test_529_storm_is_ridden_out_within_the_deadline(stack, emulator):
    emulator.inject("529", count=2)
    response = invoke(stack, {"prompt": "through the storm", "tenant": "acme"})
    assert response["status"] == "ok"
    assert emulator.stats()["injected"].get("529") == 2


def test_429_storm_past_the_deadline_is_deferred_not_lost(stack, emulator):
    emulator.inject("429", count=5)
    response = invoke(stack, {"prompt": "storm", "tenant": "acme", "deadline_s": 0.5})
    assert response["status"] == "deferred"
    assert len(queued(stack, wait_s=3)) == 1


# -- SQS: deferral caps, malformed bodies, idempotent redelivery --------------------------------

def test_deferral_cap_sends_the_request_to_the_dlq_with_its_reason(stack):
    body = json.dumps({"request": {"prompt": "x", "tenant": "acme", "request_id": "req-cap"},
                       "deferrals": 3, "first_received_at": 1.0e12})
    assert stack["module"].sqs_handler(sqs_event(body), LambdaContext()) == {
        "batchItemFailures": []}
    [dead] = queued(stack, "dlq")
    assert "deferred 3 times" in json.loads(dead["Body"])["dlq_reason"]


def test_old_and_malformed_messages_go_to_the_dlq(stack):
    old = json.dumps({"request": {"prompt": "x", "tenant": "acme"}, "deferrals": 1,
                      "first_received_at": 1.0})
    bad = json.dumps({"request": {"prompt": 42}})
    result = stack["module"].sqs_handler(sqs_event(old, "{not json", bad), LambdaContext())
    assert result == {"batchItemFailures": []}
    reasons = [json.loads(m["Body"])["dlq_reason"] for m in queued(stack, "dlq")]
    assert len(reasons) == 3
    assert any("older than MAX_DEFERRAL_AGE_S=3600" in r for r in reasons)
    assert any(r.startswith("malformed body: not JSON") for r in reasons)
    assert any(r.startswith("malformed request: prompt must be a string") for r in reasons)


def test_redelivered_completed_request_does_not_call_claude_again(stack, emulator):
    body = json.dumps({"request": {"prompt": "once only", "tenant": "acme",
                                   "request_id": "req-idem-1"}})
    module = stack["module"]
    module.sqs_handler(sqs_event(body), LambdaContext())
    calls = emulator.stats()["requests"]
    module.sqs_handler(sqs_event(body, receive_count=2), LambdaContext())
    assert emulator.stats()["requests"] == calls == 1
    assert invoke(stack, {"action": "get_result", "request_id": "req-idem-1",
                          "tenant": "acme"})["status"] == "ok"


# -- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("event, fragment", [
    ("just a string", "event must be a JSON object"),
    ([1, 2], "event must be a JSON object"),
    ({}, "prompt is required"),
    ({"prompt": ""}, "prompt is empty"),
    ({"prompt": 7}, "prompt must be a string"),
    ({"prompt": "hi", "model": "gpt-4"}, "unknown model 'gpt-4'"),
    ({"prompt": "hi", "tenant": "initech"}, "unknown tenant 'initech'"),
    ({"prompt": "hi", "max_tokens": 0}, "max_tokens must be between 1 and"),
    ({"prompt": "hi", "max_tokens": "100"}, "max_tokens must be an integer"),
    ({"prompt": "hi", "request_id": "a"}, "request_id must be 2-64 characters"),
    ({"prompt": "hi", "request_id": "bad id!"}, "request_id must be 2-64 characters"),
    ({"prompt": "hi", "deadline_s": -1}, "deadline_s must be a number"),
    ({"prompt": "word " * 180000}, "context window"),
])
def test_bad_input_is_an_error_naming_the_problem(stack, emulator, event, fragment):
    response = invoke(stack, event)
    assert response["status"] == "error" and response["error"]["type"] == "invalid_request"
    assert fragment in response["error"]["message"]
    assert emulator.stats()["requests"] == 0


def test_malformed_function_url_body_is_a_400(stack):
    event = {"version": "2.0", "body": "{oops", "requestContext": {"http": {"method": "POST"}}}
    response = invoke(stack, event)
    assert response["statusCode"] == 400
    assert "not valid JSON" in json.loads(response["body"])["error"]["message"]


def test_broken_configuration_is_reported_not_raised(stack, monkeypatch):
    monkeypatch.setenv("OVERFLOW_POLICY", "sometimes")
    response = invoke(stack, {"prompt": "hi"})
    assert response["status"] == "error" and response["error"]["type"] == "configuration"
    assert "OVERFLOW_POLICY='sometimes'" in response["error"]["message"]


def test_bedrock_provider_calls_the_configured_inference_profile(stack, emulator, monkeypatch):
    profile = "us.anthropic.claude-sonnet-4-20250514-v1:0"
    models = {profile: {"bucket": "bedrock#sonnet-4", "rpm": 200, "tpm": 200000,
                        "output_burndown": 5, "prices": PRICES}}
    monkeypatch.setenv("PROVIDER", "bedrock")
    monkeypatch.setenv("MODELS", json.dumps(models))
    monkeypatch.setenv("DEFAULT_MODEL", profile)
    monkeypatch.delenv("DEGRADE_MODEL")
    monkeypatch.setenv("ANTHROPIC_BEDROCK_BASE_URL", emulator.bedrock_base_url)
    response = invoke(stack, {"prompt": "Hello from Bedrock.", "tenant": "acme"})
    assert response["status"] == "ok", response
    assert response["model"] == profile
    assert emulator.stats()["bedrock"][profile]["requests"] == 1


def test_the_deployed_entry_point_dispatches_sqs_batches(stack, emulator):
    """The stack wires the work queue to `handler` (one function, one role)."""
    body = json.dumps({"request": {"prompt": "queued work", "tenant": "acme",
                                   "request_id": "req-queued-1"}})
    result = invoke(stack, sqs_event(body))
    assert result == {"batchItemFailures": []}
    assert invoke(stack, {"action": "get_result", "request_id": "req-queued-1",
                          "tenant": "acme"})["status"] == "ok"


def test_a_request_that_keeps_failing_is_retried_then_dead_lettered(stack, monkeypatch):
    from agent import service

    module = stack["module"]

    def broken(*_args, **_kwargs):
        raise RuntimeError("tool backend down")

    monkeypatch.setattr(service, "run_agent", broken)
    body = json.dumps({"request": {"prompt": "x", "tenant": "acme",
                                   "request_id": "req-broken-1"}})
    first = module.sqs_handler(sqs_event(body, receive_count=1), LambdaContext())
    assert first == {"batchItemFailures": [{"itemIdentifier": "m0"}]}  # SQS retries it
    assert queued(stack, "dlq") == []
    last = module.sqs_handler(sqs_event(body, receive_count=3), LambdaContext())
    assert last == {"batchItemFailures": []}
    [dead] = queued(stack, "dlq")
    assert json.loads(dead["Body"])["dlq_reason"] == (
        "failed 3 times: RuntimeError: tool backend down")


def test_a_rejection_is_not_remembered_as_the_answer(stack, monkeypatch):
    monkeypatch.setenv("OVERFLOW_POLICY", "reject")
    drain_bucket(stack)
    event = {"prompt": "try again later", "tenant": "acme", "request_id": "req-rej-1",
             "deadline_s": 0}
    assert invoke(stack, event)["status"] == "rejected"
    refill_bucket(stack)
    stack["module"].reset_runtime()  # a fresh container, as after the retry_after
    assert invoke(stack, event)["status"] == "ok"


def test_the_same_request_id_from_two_tenants_gets_two_answers(stack):
    acme = invoke(stack, {"prompt": "acme question", "tenant": "acme", "request_id": "same-1"})
    globex = invoke(stack, {"prompt": "globex question about something else entirely",
                            "tenant": "globex", "request_id": "same-1"})
    assert acme["status"] == globex["status"] == "ok"
    assert acme["usage"]["input_tokens"] != globex["usage"]["input_tokens"]
    fetched = invoke(stack, {"action": "get_result", "request_id": "same-1", "tenant": "acme"})
    assert fetched["output"] == acme["output"] and fetched["usage"] == acme["usage"]


def test_a_function_url_body_that_is_not_text_is_a_400(stack):
    event = {"version": "2.0", "body": {"prompt": "hi"},
             "requestContext": {"http": {"method": "POST"}}}
    response = invoke(stack, event)
    assert response["statusCode"] == 400
    assert "body must be a string" in json.loads(response["body"])["error"]["message"]


# -- lane "batch" (issue 13) ---------------------------------------------------------------------

@pytest.fixture
def batch_queue(stack, monkeypatch):
    url = stack["sqs"].create_queue(QueueName=f"batch-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    monkeypatch.setenv("BATCH_QUEUE_URL", url)
    stack["module"].reset_runtime()
    return url


def test_batch_lane_answers_queued_then_get_result_says_queued(stack, batch_queue):
    response = invoke(stack, {"prompt": "Label this ticket", "lane": "batch",
                              "request_id": "batch-1", "tenant": "acme"})
    assert response == {"status": "queued", "request_id": "batch-1", "lane": "batch",
                        "model": MAIN}
    assert invoke(stack, {"action": "get_result", "request_id": "batch-1",
                          "tenant": "acme"})["status"] == "queued"
    [message] = stack["sqs"].receive_message(QueueUrl=batch_queue,
                                             MaxNumberOfMessages=10)["Messages"]
    body = json.loads(message["Body"])
    assert body["attempt"] == 0 and body["request"]["lane"] == "batch"
    assert body["params"]["model"] == MAIN and body["params"]["messages"][0]["content"] == \
        "Label this ticket"
    assert "tools" not in body["params"]  # one turn, no tools
    assert stack["module"].current_runtime().claude is not None  # nothing was sent to Claude
    # a duplicate submission is not queued as a new request
    again = invoke(stack, {"prompt": "Label this ticket", "lane": "batch",
                           "request_id": "batch-1", "tenant": "acme"})
    assert again["status"] == "queued"


@pytest.mark.parametrize("event, words", [
    ({"lane": "overnight"}, "unknown lane 'overnight'"),
    ({"lane": "batch", "stream": True}, "stream is not available in lane 'batch'"),
    ({"lane": "batch", "tools": ["notes"]}, "tools are not available in lane 'batch'"),
    ({"lane": "batch", "prompt": "x " * 120_000, "max_tokens": 16},
     "over the batch lane's limit"),
])
def test_batch_lane_refuses_what_it_cannot_do(stack, batch_queue, event, words):
    response = invoke(stack, {"prompt": "hello", **event})
    assert response["status"] == "error" and words in response["error"]["message"], response


def test_batch_lane_not_deployed_is_a_clear_error(stack):
    response = invoke(stack, {"prompt": "hello", "lane": "batch"})
    assert response["status"] == "error" and "not deployed" in response["error"]["message"]


def test_batch_lane_under_bedrock_is_refused(stack, monkeypatch):
    from agent.config import load_config
    from agent.requests import BadRequest, parse_request

    env = {**stack["env"], "PROVIDER": "bedrock"}
    env.pop("API_KEY_SECRET_ARN")
    config = load_config(env)
    with pytest.raises(BadRequest, match="not available with provider=bedrock"):
        parse_request({"prompt": "hello", "lane": "batch"}, config)
