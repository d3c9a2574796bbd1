"""Queued work is never lost (issue "Queued work is never lost", the deferral and payload part):
answers of any size, dead letters that answer, large non-ASCII payloads on the queues, budgets
that span deferrals, and a request id that stands for one request.

The agent handler runs against the local AWS server (DynamoDB, SQS, S3) and the Claude
emulator, with the `stack` fixture of test_agent_handler plus a payload bucket. moto counts an
SQS message's size in characters, not bytes: sizes are asserted on the encoded bodies.
"""

from __future__ import annotations

import json
import uuid

import pytest

from agent.loop import LoopOutcome
from guard.usage import Usage
from tests.functional.test_agent_handler import (MAIN, LambdaContext, batch_queue,
                                                 drain_bucket, emitted, emulator, invoke,
                                                 queued, refill_bucket, sqs_event, stack)

__all__ = ["batch_queue", "emulator", "stack"]  # fixtures used by name

CJK = "漢"  # 3 bytes in UTF-8, 6 as a JSON \u escape
ITEM_LIMIT = 400 * 1024  # DynamoDB's item size limit (bytes)


@pytest.fixture
def payloads(stack, monkeypatch, local_aws):
    """The stack with a payload bucket (PAYLOAD_BUCKET)."""
    s3 = local_aws.client("s3")
    bucket = f"payloads-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    monkeypatch.setenv("PAYLOAD_BUCKET", bucket)
    stack["module"].reset_runtime()
    return {**stack, "s3": s3, "bucket": bucket}


def objects(stack) -> list[str]:
    return [o["Key"] for o in stack["s3"].list_objects_v2(Bucket=stack["bucket"]).get(
        "Contents", [])]


def results_item(stack, request_id: str, tenant: str = "acme") -> dict:
    return stack["dynamodb"].get_item(TableName=stack["names"]["results"], ConsistentRead=True,
                                      Key={"request_id": {"S": f"{tenant}/{request_id}"}})["Item"]


def item_bytes(item: dict) -> int:
    """Bytes DynamoDB counts for an item: attribute names plus UTF-8 values."""
    return sum(len(name.encode()) + len((next(iter(value.values()))).encode())
               for name, value in item.items())


def get_result(stack, request_id: str, tenant: str = "acme") -> dict:
    return invoke(stack, {"action": "get_result", "request_id": request_id, "tenant": tenant})


class FakeLoop:
    """Stands in for `service.run_agent`: answers `output` and counts the calls (each one is a
    paid Claude conversation)."""

    def __init__(self, output: str) -> None:
        self.output, self.calls = output, 0

    def __call__(self, request, *_args, **_kwargs) -> LoopOutcome:
        self.calls += 1
        return LoopOutcome(status="ok", model=MAIN, output=self.output, model_calls=1,
                           usage=Usage(input_tokens=10, output_tokens=len(self.output)))


def sent_messages(stack) -> list[dict]:
    """The SendMessage calls the agent's SQS client makes from now on."""
    sent: list[dict] = []
    stack["module"].current_runtime().sqs.meta.events.register(
        "before-parameter-build.sqs.SendMessage", lambda params, **_: sent.append(dict(params)))
    return sent


# -- answers of any size ----------------------------------------------------------------------

def test_a_70k_character_cjk_answer_is_stored_and_fetched_whole(payloads, monkeypatch):
    from agent import service

    answer = CJK * 70_000  # 210 KB as UTF-8, 420 KB ASCII-escaped
    loop = FakeLoop(answer)
    monkeypatch.setattr(service, "run_agent", loop)
    body = json.dumps({"request": {"prompt": "write it out", "tenant": "acme",
                                   "request_id": "req-cjk-1"}})
    module = payloads["module"]
    assert module.sqs_handler(sqs_event(body), LambdaContext()) == {"batchItemFailures": []}
    item = results_item(payloads, "req-cjk-1")
    assert item["status"]["S"] == "ok" and item_bytes(item) < ITEM_LIMIT
    assert get_result(payloads, "req-cjk-1")["output"] == answer
    # a redelivery answers from the idempotency record (a pointer to the answer): no new call
    module.sqs_handler(sqs_event(body, receive_count=2), LambdaContext())
    again = invoke(payloads, {"prompt": "write it out", "tenant": "acme",
                              "request_id": "req-cjk-1"})
    assert again["status"] == "ok" and again["output"] == answer
    assert loop.calls == 1


def test_an_answer_over_the_item_limit_goes_to_s3_with_a_pointer(payloads, monkeypatch):
    from agent import service

    answer = CJK * 150_000  # 450 KB as UTF-8: over DynamoDB's item limit in any encoding
    monkeypatch.setattr(service, "run_agent", FakeLoop(answer))
    response = invoke(payloads, {"prompt": "long", "tenant": "acme", "request_id": "req-big-1"})
    assert response["status"] == "ok" and response["output"] == answer
    item = results_item(payloads, "req-big-1")
    pointer = json.loads(item["response"]["S"])["s3_payload"]
    assert pointer["bucket"] == payloads["bucket"] and pointer["bytes"] > ITEM_LIMIT
    assert pointer["key"].startswith("results/acme/req-big-1/") and pointer["key"] in \
        objects(payloads)
    assert pointer["expires_at"] == int(item["expires_at"]["N"])
    assert get_result(payloads, "req-big-1")["output"] == answer


def test_an_expired_pointer_is_refused_in_code_though_s3_still_holds_it(payloads, monkeypatch):
    from agent import service

    monkeypatch.setattr(service, "run_agent", FakeLoop(CJK * 150_000))
    invoke(payloads, {"prompt": "long", "tenant": "acme", "request_id": "req-old-1"})
    store = payloads["module"].current_runtime().payloads
    pointer = json.loads(results_item(payloads, "req-old-1")["response"]["S"])
    store.clock = lambda: pointer["s3_payload"]["expires_at"] + 1
    with pytest.raises(Exception, match="expired at"):
        store.get(pointer)


def test_an_answer_that_cannot_be_stored_is_an_error_answer_not_a_second_charge(
        stack, monkeypatch):
    """No payload bucket: a 450 KB answer cannot be kept. The request answers an error naming
    why, and a redelivery does not run (and pay for) the conversation again."""
    from agent import service

    loop = FakeLoop(CJK * 150_000)
    monkeypatch.setattr(service, "run_agent", loop)
    body = json.dumps({"request": {"prompt": "long", "tenant": "acme",
                                   "request_id": "req-nostore-1"}})
    module = stack["module"]
    for receive in (1, 2, 3):
        assert module.sqs_handler(sqs_event(body, receive_count=receive), LambdaContext()) == \
            {"batchItemFailures": []}
    stored = get_result(stack, "req-nostore-1")
    assert stored["status"] == "error" and stored["error"]["type"] == "storage"
    assert "could not be stored" in stored["error"]["message"]
    assert loop.calls == 1
    assert queued(stack, "dlq") == []


# -- dead letters answer ------------------------------------------------------------------------

@pytest.mark.parametrize("envelope, reason", [
    ({"deferrals": 3, "first_received_at": 1.0e12}, "deferred 3 times"),
    ({"deferrals": 1, "first_received_at": 1.0}, "older than MAX_DEFERRAL_AGE_S"),
])
def test_a_dead_lettered_request_answers_an_error_with_the_reason_and_is_counted(
        stack, capsys, envelope, reason):
    request_id = f"req-dead-{uuid.uuid4().hex[:6]}"
    body = json.dumps({"request": {"prompt": "x", "tenant": "acme", "request_id": request_id},
                       **envelope})
    stack["module"].sqs_handler(sqs_event(body), LambdaContext())
    stored = get_result(stack, request_id)
    assert stored["status"] == "error" and stored["error"]["type"] == "dead_letter"
    assert reason in stored["error"]["message"]
    [dead] = queued(stack, "dlq")
    assert reason in json.loads(dead["Body"])["dlq_reason"]
    emf, _ = emitted(capsys, stack)
    assert sum(doc.get("DeadLettered", [0])[0] for doc in emf if doc.get("Model") == MAIN) == 1


def test_a_request_that_keeps_failing_answers_an_error_once_dead_lettered(stack, monkeypatch):
    from agent import service

    def broken(*_args, **_kwargs):
        raise RuntimeError("tool backend down")

    monkeypatch.setattr(service, "run_agent", broken)
    body = json.dumps({"request": {"prompt": "x", "tenant": "acme",
                                   "request_id": "req-fails-1"}})
    stack["module"].sqs_handler(sqs_event(body, receive_count=3), LambdaContext())
    stored = get_result(stack, "req-fails-1")
    assert stored["error"]["type"] == "dead_letter"
    assert "failed 3 times: RuntimeError: tool backend down" in stored["error"]["message"]


def test_a_dead_letter_never_replaces_an_ok_answer(stack):
    from agent.results import put_dead_letter_answer

    invoke(stack, {"prompt": "answered", "tenant": "acme", "request_id": "req-done-1"})
    assert not put_dead_letter_answer(stack["dynamodb"], stack["names"]["results"], "acme",
                                      "req-done-1", "late duplicate", 2_000_000_000)
    assert get_result(stack, "req-done-1")["status"] == "ok"


# -- large non-ASCII payloads on the queues ----------------------------------------------------

def test_a_190k_character_cjk_deferral_is_queued_with_its_conversation_and_answered(
        payloads, emulator):
    """Escaped, the envelope would be ~2.3 MB; as UTF-8 with its transcript ~1.1 MB: over the
    queue's 1 MiB, so it travels as a claim check and comes back whole."""
    prompt = CJK * 190_000
    drain_bucket(payloads)
    sent = sent_messages(payloads)
    response = invoke(payloads, {"prompt": prompt, "tenant": "acme", "max_tokens": 64,
                                 "request_id": "req-cjk-defer", "deadline_s": 0})
    assert response["status"] == "deferred", response
    [message] = sent
    assert len(message["MessageBody"].encode("utf-8")) <= 1_048_576 - 16_384
    claim = json.loads(message["MessageBody"])
    assert claim["request_id"] == "req-cjk-defer" and claim["tenant"] == "acme"
    envelope = json.loads(payloads["s3"].get_object(
        Bucket=claim["s3_payload"]["bucket"], Key=claim["s3_payload"]["key"])["Body"].read())
    assert envelope["request"]["prompt"] == prompt
    assert envelope["transcript"] == [{"role": "user", "content": prompt}]

    refill_bucket(payloads)
    payloads["module"].reset_runtime()
    result = payloads["module"].sqs_handler(sqs_event(message["MessageBody"]), LambdaContext())
    assert result == {"batchItemFailures": []}
    assert get_result(payloads, "req-cjk-defer")["status"] == "ok"
    assert emulator.stats()["requests"] == 1


def test_a_deferral_that_cannot_be_queued_answers_an_error_not_a_500(stack):
    """No payload bucket and an envelope over the queue's limit: an error naming why."""
    drain_bucket(stack)
    response = invoke(stack, {"prompt": CJK * 190_000, "tenant": "acme", "max_tokens": 64,
                              "request_id": "req-cjk-nobucket", "deadline_s": 0})
    assert response["status"] == "error" and response["error"]["type"] == "unavailable"
    assert "PAYLOAD_BUCKET" in response["error"]["message"]
    assert get_result(stack, "req-cjk-nobucket")["error"]["type"] == "unavailable"


def test_a_batch_body_carries_the_prompt_once_as_utf8(stack, batch_queue):
    prompt = CJK * 33_000  # ~198 KB of escaped params: accepted by the batch-item cap
    response = invoke(stack, {"prompt": prompt, "lane": "batch", "request_id": "batch-cjk-1",
                              "tenant": "acme", "max_tokens": 16})
    assert response["status"] == "queued", response
    [message] = stack["sqs"].receive_message(QueueUrl=batch_queue)["Messages"]
    assert len(message["Body"].encode("utf-8")) < 3 * 33_000 + 2_000
    assert message["Body"].count(CJK * 1000) == 33  # the prompt once
    body = json.loads(message["Body"])
    assert body["params"]["messages"][0]["content"] == prompt
    assert "prompt" not in body["request"]


def test_a_batch_send_that_fails_answers_an_error_instead_of_queued(stack, batch_queue):
    def refuse(**_):
        raise RuntimeError("SQS is down")

    stack["module"].current_runtime().sqs.meta.events.register(
        "before-call.sqs.SendMessage", refuse)
    response = invoke(stack, {"prompt": "label it", "lane": "batch", "request_id": "batch-down-1",
                              "tenant": "acme"})
    assert response["status"] == "error" and "SQS is down" in response["error"]["message"]
    assert get_result(stack, "batch-down-1")["status"] == "error"


def test_a_batch_dead_letter_without_its_prompt_is_redriven_whole(stack, batch_queue):
    """A batch body (prompt only in the params) dead-lettered and redriven to the work queue
    parses back into the full request."""
    from agent.requests import parse_work_message

    invoke(stack, {"prompt": "label it", "lane": "batch", "request_id": "batch-re-1",
                   "tenant": "acme"})
    [message] = stack["sqs"].receive_message(QueueUrl=batch_queue)["Messages"]
    parsed = parse_work_message(message["Body"], stack["module"].current_runtime().config,
                                now=0.0)
    assert parsed.request.prompt == "label it" and parsed.request.lane == "batch"


# -- budgets span deferrals --------------------------------------------------------------------

def test_a_deferred_request_keeps_its_spent_budget(stack, emulator):
    body = json.dumps({"request": {"prompt": "go on", "tenant": "acme",
                                   "request_id": "req-spent-1"},
                       "deferrals": 2, "first_received_at": 1.0e12,
                       "spent": {"model_calls": 1, "tokens": 100_000}})
    stack["module"].sqs_handler(sqs_event(body), LambdaContext())
    stored = get_result(stack, "req-spent-1")
    assert stored["status"] == "error" and stored["error"]["type"] == "token_budget_exceeded"
    assert emulator.stats()["requests"] == 0


def test_the_deferral_envelope_carries_what_was_spent(stack):
    drain_bucket(stack)
    sent = sent_messages(stack)
    body = json.dumps({"request": {"prompt": "later", "tenant": "acme",
                                   "request_id": "req-spent-2", "deadline_s": 0},
                       "deferrals": 1, "first_received_at": 1.0e12,
                       "spent": {"model_calls": 3, "tokens": 4_000}})
    stack["module"].sqs_handler(sqs_event(body), LambdaContext(remaining_ms=5_500))
    [message] = sent
    envelope = json.loads(message["MessageBody"])
    assert envelope["deferrals"] == 2
    assert envelope["spent"] == {"model_calls": 3, "tokens": 4_000}


# -- one request id, one request --------------------------------------------------------------

def test_a_reused_request_id_with_another_prompt_is_a_conflict(stack, emulator):
    first = invoke(stack, {"prompt": "first question", "tenant": "acme",
                           "request_id": "req-same-1"})
    assert first["status"] == "ok"
    other = invoke(stack, {"prompt": "another question", "tenant": "acme",
                           "request_id": "req-same-1"})
    assert other["status"] == "error" and other["error"]["type"] == "conflict"
    assert "'req-same-1'" in other["error"]["message"]
    other_tokens = invoke(stack, {"prompt": "first question", "tenant": "acme",
                                  "request_id": "req-same-1", "max_tokens": 99})
    assert other_tokens["error"]["type"] == "conflict"
    again = invoke(stack, {"prompt": "first question", "tenant": "acme",
                           "request_id": "req-same-1"})
    assert again == first
    assert emulator.stats()["requests"] == 1


def test_a_reused_batch_request_id_with_another_prompt_is_a_conflict(stack, batch_queue):
    event = {"prompt": "label ticket 1", "lane": "batch", "request_id": "batch-same-1",
             "tenant": "acme"}
    assert invoke(stack, event)["status"] == "queued"
    other = invoke(stack, {**event, "prompt": "label ticket 2"})
    assert other["status"] == "error" and other["error"]["type"] == "conflict"
    assert "'batch-same-1'" in other["error"]["message"]
    assert invoke(stack, event)["status"] == "queued"
