"""The batch lane (agent.batch) against the Claude emulator's Message Batches endpoints and the
local AWS server: grouping, caps, partial-batch timing, the batch bucket and the queued-requests
counter, results (malformed lines too), each retry class, expiry, cancel, the DLQ, duplicate
submission, crash-and-resume of the collector and the poller at every step, adoption only after
a create with an unknown outcome (and only provisionally), poison items, a rotated API key,
dead letters that answer, and a batch table bounded by open work."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid

import pytest

from local.fakes.claude_emulator import ClaudeEmulator

SONNET, HAIKU = "claude-sonnet-4-6", "claude-haiku-4-5"
MODELS = {SONNET: {"bucket": "anthropic#sonnet-4", "rpm": 50, "itpm": 30000, "otpm": 8000,
                   "prices": {"input": 3.0, "output": 15.0}},
          HAIKU: {"bucket": "anthropic#haiku-4.5", "rpm": 50, "itpm": 50000, "otpm": 10000,
                  "prices": {"input": 1.0, "output": 5.0}}}


class Crash(Exception):
    """A Lambda dying between two durable steps."""


@pytest.fixture(scope="module")
def emulator():
    with ClaudeEmulator({"batch_processing_s": 0.0, "batch_rpm": 10_000,
                         "output_tokens": 8}) as emu:
        yield emu


@pytest.fixture
def lane(local_aws, emulator, monkeypatch):
    emulator.reset(config=True)
    return new_lane(local_aws, emulator, monkeypatch)


def new_lane(local_aws, emulator, monkeypatch) -> "Lane":
    """One deployment's batch lane (its own tables and queues) on the shared emulator."""
    from agent.batch.config import BatchConfig
    from agent.batch.state import ensure_batch_table
    from agent.contract import decode_models
    from guard import ensure_table

    suffix = uuid.uuid4().hex[:8]
    dynamodb, sqs = local_aws.client("dynamodb"), local_aws.client("sqs")
    bucket, results, batch = f"bk-{suffix}", f"res-{suffix}", f"batch-{suffix}"
    ensure_table(dynamodb, bucket)
    dynamodb.create_table(TableName=results, BillingMode="PAY_PER_REQUEST",
                          AttributeDefinitions=[{"AttributeName": "request_id",
                                                 "AttributeType": "S"}],
                          KeySchema=[{"AttributeName": "request_id", "KeyType": "HASH"}])
    ensure_batch_table(dynamodb, batch)
    s3 = local_aws.client("s3")
    s3.create_bucket(Bucket=f"payloads-{suffix}")
    queue = sqs.create_queue(QueueName=f"bq-{suffix}")["QueueUrl"]
    dlq = sqs.create_queue(QueueName=f"bdlq-{suffix}")["QueueUrl"]
    monkeypatch.setenv("ANTHROPIC_BASE_URL", emulator.base_url)
    config = BatchConfig(queue_url=queue, dlq_url=dlq, batch_table=batch, bucket_table=bucket,
                         results_table=results, models=decode_models(json.dumps(MODELS)),
                         rpm=1000, max_items=100, max_wait_s=0, max_retries=2,
                         visibility_timeout_s=1, payload_bucket=f"payloads-{suffix}")
    return Lane(config, dynamodb, sqs, emulator, s3)


class Lane:
    def __init__(self, config, dynamodb, sqs, emulator, s3=None) -> None:
        self.config, self.dynamodb, self.sqs, self.emulator = config, dynamodb, sqs, emulator
        self.s3 = s3
        self.clock_offset = 0.0
        #: a Secrets Manager client and a Claude client for runtimes (tests of key rotation)
        self.secrets = None
        self.claude = None

    def clock(self) -> float:
        return time.time() + self.clock_offset

    def configure(self, **changes):
        self.config = dataclasses.replace(self.config, **changes)

    def runtime(self):
        import anthropic

        from agent.batch.handler import BatchRuntime

        class Env(dict):
            pass

        env = {"BATCH_QUEUE_URL": self.config.queue_url, "BATCH_DLQ_URL": self.config.dlq_url,
               "BATCH_TABLE": self.config.batch_table, "BUCKET_TABLE": self.config.bucket_table,
               "RESULTS_TABLE": self.config.results_table, "MODELS": json.dumps(MODELS)}
        rt = BatchRuntime(env, dynamodb=self.dynamodb, sqs=self.sqs, clock=self.clock,
                          secrets=self.secrets, s3=self.s3,
                          claude=self.claude or anthropic.Anthropic(
                              base_url=self.emulator.base_url, api_key="test", max_retries=0))
        rt.config = self.config
        from guard import Limits, TokenBucket

        rt.bucket = TokenBucket(self.config.bucket_table, self.config.bucket_id,
                                Limits(rpm=self.config.rpm), self.dynamodb, clock=self.clock)
        return rt

    def collector(self, **kwargs):
        from agent.telemetry import RequestMetrics

        self.metrics = RequestMetrics()
        return self.runtime().collector(self.metrics, **kwargs)

    def poller(self, **kwargs):
        from agent.telemetry import RequestMetrics

        self.metrics = RequestMetrics()
        return self.runtime().poller(self.metrics, **kwargs)

    def enqueue(self, n: int, model: str = SONNET, prompt: str = "Summarise the report",
                tenant: str = "acme", prefix: str | None = None,
                budget_scopes: list[str] | None = None) -> list[str]:
        """What the agent handler sends for lane "batch" (placeholder + queue message);
        `budget_scopes` as for a request queued because its tenant's budget is spent."""
        from agent.results import put_queued

        ids = []
        prefix = prefix or uuid.uuid4().hex[:6]
        for index in range(n):
            request_id = f"{prefix}-{index}"
            put_queued(self.dynamodb, self.config.results_table, tenant, request_id,
                       {"status": "queued", "request_id": request_id, "lane": "batch"},
                       int(time.time() + 3600))
            body = {"request": {"prompt": prompt, "model": model, "max_tokens": 16,
                                "request_id": request_id, "tenant": tenant, "deadline_s": 20,
                                "caller": None, "lane": "batch"},
                    "params": {"model": model, "max_tokens": 16,
                               "messages": [{"role": "user", "content": f"{prompt} #{index}"}]},
                    "attempt": 0, "queued_at": self.clock(),
                    **({"budget_scopes": budget_scopes} if budget_scopes else {})}
            self.sqs.send_message(QueueUrl=self.config.queue_url, MessageBody=json.dumps(body))
            ids.append(request_id)
        return ids

    def result(self, request_id: str, tenant: str = "acme") -> dict | None:
        item = self.dynamodb.get_item(TableName=self.config.results_table, ConsistentRead=True,
                                      Key={"request_id": {"S": f"{tenant}/{request_id}"}}
                                      ).get("Item")
        return _stored_item(self, item)[1] if item else None

    def dlq(self) -> list[dict]:
        out = []
        while True:
            page = self.sqs.receive_message(QueueUrl=self.config.dlq_url,
                                            MaxNumberOfMessages=10, VisibilityTimeout=60)
            if not page.get("Messages"):
                return out
            out += [json.loads(m["Body"]) for m in page["Messages"]]

    def queued(self) -> int:
        return self.runtime().store.queued()

    def batches(self) -> dict:
        return self.emulator.stats()["message_batches"]

    def settle(self, ids, *, rounds: int = 40, **kwargs) -> None:
        """Run collector and poller until every request has a final answer (polling, with a
        bound: retried items wait out the queue's visibility timeout)."""
        for _ in range(rounds):
            self.collector(**kwargs.get("collector", {})).run()
            self.poller(**kwargs.get("poller", {})).run()
            if all((self.result(i) or {}).get("status") in ("ok", "error") for i in ids) \
                    and self.runtime().store.intents() == []:
                return
            time.sleep(0.25)
        raise AssertionError("the batch lane did not settle")


# -- the path ---------------------------------------------------------------------------------

def test_queued_requests_are_answered_at_half_price(lane):
    ids = lane.enqueue(5)
    assert lane.result(ids[0])["status"] == "queued"
    summary = lane.collector().run()
    assert len(summary.submitted) == 1 and summary.items == 5
    assert lane.queued() == 5  # the counter holds the batch's requests
    assert lane.metrics.values[SONNET]["BatchSubmitted"] == 5
    polled = lane.poller().run()
    assert polled.succeeded == 5 and polled.ended == 1
    assert lane.queued() == 0  # released when the batch ended
    for request_id in ids:
        answer = lane.result(request_id)
        assert answer["status"] == "ok" and answer["lane"] == "batch" and answer["output"]
        usage = answer["usage"]
        standard = (usage["input_tokens"] * 3.0 + usage["output_tokens"] * 15.0) / 1e6
        assert answer["cost_usd"] == standard / 2
    assert polled.cost_usd == polled.standard_usd / 2
    values = lane.metrics.values[SONNET]
    assert values["BatchSucceeded"] == 5
    assert values["BatchCostUSD"] == pytest.approx(values["BatchSavedUSD"])


def test_a_request_queued_for_a_spent_budget_is_charged_at_the_batch_price_when_answered(
        lane):
    from guard.budget import BudgetLedger, day_of

    ledger = BudgetLedger(lane.config.bucket_table, lane.dynamodb, clock=lane.clock)
    charged = lane.enqueue(3, budget_scopes=["tenant:acme", "deployment"])
    free = lane.enqueue(2)  # lane "batch" by choice: no budget scopes, not charged
    lane.settle(charged + free)
    answers = [lane.result(i) for i in charged]
    expected = sum(-(-(a["usage"]["input_tokens"] * 3 + a["usage"]["output_tokens"] * 15)
                     // 2) for a in answers)  # micro-USD at half the price, rounded up
    tokens = sum(a["usage"]["input_tokens"] + a["usage"]["output_tokens"] for a in answers)
    view = ledger.snapshot()
    for scope in ("tenant:acme", "deployment"):
        counters = view.counters[scope]
        assert counters["day"] == day_of(lane.clock())  # the day the poller answered
        assert (counters["d_used"], counters["m_used"], counters["t_used"]) == (
            expected, expected, tokens)
        assert counters["d_open"] == 0
    lane.poller().run()  # nothing left to answer: charged once
    assert ledger.snapshot().counters["tenant:acme"]["d_used"] == expected


def test_groups_by_model(lane):
    lane.enqueue(3, SONNET)
    lane.enqueue(2, HAIKU)
    summary = lane.collector().run()
    assert len(summary.submitted) == 2 and summary.items == 5
    models = {i.model: i.n for i in lane.runtime().store.intents()}
    assert models == {SONNET: 3, HAIKU: 2}


def test_count_cap_splits_batches(lane):
    lane.configure(max_items=2)
    lane.enqueue(5)
    summary = lane.collector().run()
    assert summary.items == 5 and len(summary.submitted) == 3
    assert sorted(i.n for i in lane.runtime().store.intents()) == [1, 2, 2]


def test_size_cap_splits_batches(lane):
    lane.configure(max_bytes=1_000)
    lane.enqueue(6, prompt="x" * 300)
    summary = lane.collector().run()
    assert summary.items == 6 and len(summary.submitted) >= 3
    assert all(i.n <= 2 for i in lane.runtime().store.intents())


def test_take_chunk_respects_the_hard_caps():
    from agent.batch.collector import Queued, take_chunk

    group = [Queued(str(i), {}, 10) for i in range(200_001)]
    assert len(take_chunk(group, 100_000, 10**9)) == 100_000
    assert len(take_chunk(group, 100_000, 10 * 50 + 60)) == 50
    assert len(take_chunk([Queued("big", {}, 10**6)], 5, 100)) == 1  # never empty


def test_partial_batch_waits_at_most_max_wait(lane):
    lane.configure(max_items=10, max_wait_s=60)
    ids = lane.enqueue(3)
    summary = lane.collector().run()
    assert summary.submitted == [] and summary.waiting == 3
    time.sleep(1.1)  # the released messages' visibility (1 s) is over
    lane.clock_offset = 61
    summary = lane.collector().run()
    assert summary.items == 3 and len(summary.submitted) == 1
    lane.poller().run()
    assert all(lane.result(i)["status"] == "ok" for i in ids)


def test_batch_endpoints_have_their_own_bucket_item(lane):
    lane.configure(rpm=1)
    lane.enqueue(2, SONNET)
    lane.enqueue(2, HAIKU)
    summary = lane.collector().run()
    # one request a minute: the first create goes out, the second waits for the bucket
    assert len(summary.submitted) == 1 and "batch endpoints: quota" in summary.stopped
    item = lane.dynamodb.get_item(TableName=lane.config.bucket_table,
                                  Key={"pk": {"S": "anthropic#message-batches"}})
    assert "Item" in item
    assert lane.poller().run().stopped.startswith("batch endpoints")
    # the interactive buckets were not touched; the counter is its own item
    for bucket in ("anthropic#sonnet-4", "anthropic#haiku-4.5"):
        assert "Item" not in lane.dynamodb.get_item(TableName=lane.config.bucket_table,
                                                    Key={"pk": {"S": bucket}})
    # the second batch's intent holds its reservation until the next run creates it
    assert lane.queued() == 4
    assert sorted(i.state for i in lane.runtime().store.intents()) == ["intent", "submitted"]


def test_queue_cap_counter_refuses_and_loses_nothing(lane):
    lane.configure(queue_cap=3, max_items=5)
    ids = lane.enqueue(5)
    summary = lane.collector().run()
    assert summary.submitted == [] and "queue" in summary.stopped
    assert lane.queued() == 0
    lane.configure(queue_cap=5)
    lane.settle(ids)
    assert lane.queued() == 0
    assert all(lane.result(i)["status"] == "ok" for i in ids)


# -- results and retry classes ----------------------------------------------------------------

def test_parse_line_reports_malformed_lines():
    from agent.batch.api import classify, parse_line

    assert parse_line(b'{"custom_id": "a-1", "result": {"type": "expired"}}') == (
        "a-1", {"type": "expired"}, None)
    assert parse_line(b'{"custom_id": "a-1", "resu')[2].startswith("not JSON")
    assert parse_line(b"[1]")[2] == "not a JSON object"
    assert parse_line(b'{"result": {"type": "expired"}}')[2] == "no custom_id"
    assert parse_line(b'{"custom_id": "a", "result": {"type": "odd"}}')[2] == \
        "no result of a known type"
    assert parse_line(b'{"custom_id": "a", "result": {"type": "succeeded"}}')[2] == \
        "succeeded without a message"
    assert parse_line(b"  ")[2] == "empty line"
    errored = {"type": "errored", "error": {"type": "error", "error": {
        "type": "overloaded_error", "message": "busy"}}}
    assert classify(errored) == ("retry", "errored: overloaded_error: busy")
    for kind in ("api_error", "rate_limit_error"):
        assert classify({"type": "errored", "error": {"type": kind}})[0] == "retry"
    for kind in ("invalid_request_error", "authentication_error", "permission_error",
                 "not_found_error"):
        assert classify({"type": "errored", "error": {"type": kind}})[0] == "dead"
    assert classify({"type": "expired"})[0] == classify({"type": "canceled"})[0] == "retry"


def test_malformed_result_lines_lose_nothing(lane):
    lane.emulator.configure(batch_malformed_lines=2)
    ids = lane.enqueue(4)
    lane.collector().run()
    polled = lane.poller().run()
    assert polled.malformed == 2 and polled.succeeded == 4
    assert all(lane.result(i)["status"] == "ok" for i in ids)


@pytest.mark.parametrize("kind", ["overloaded_error", "api_error", "rate_limit_error"])
def test_transient_errors_are_retried_then_dead_lettered(lane, kind):
    [request_id] = lane.enqueue(1, prompt=f"EMULATOR: batch_error {kind}")
    lane.settle([request_id])
    answer = lane.result(request_id)
    assert answer["status"] == "error" and kind in answer["error"]["message"]
    [dead] = lane.dlq()
    assert dead["attempt"] == 2 and "after 2 retries" in dead["dlq_reason"]
    assert lane.batches()["batches"] == 3  # the first try and two retries
    assert lane.queued() == 0


@pytest.mark.parametrize("kind", ["invalid_request_error", "authentication_error",
                                  "permission_error", "not_found_error"])
def test_permanent_errors_go_to_the_dlq_at_once(lane, kind):
    [request_id] = lane.enqueue(1, prompt=f"EMULATOR: batch_error {kind}")
    lane.settle([request_id])
    [dead] = lane.dlq()
    assert dead["attempt"] == 0 and dead["dlq_reason"].startswith(f"errored: {kind}")
    assert lane.batches()["batches"] == 1


def test_a_transient_error_then_success(lane):
    ids = lane.enqueue(2)
    lane.collector().run()
    # the provider loses the first batch's items (expired): they come back and succeed
    lane.emulator.configure(batch_expire_all=True)
    polled = lane.poller().run()
    assert polled.expired == 2 and polled.retried == 2
    assert lane.metrics.values[SONNET]["BatchExpired"] == 2
    lane.emulator.configure(batch_expire_all=False)
    lane.settle(ids)
    assert all(lane.result(i)["status"] == "ok" for i in ids)
    assert lane.dlq() == []


def test_expired_items_are_retried_a_bounded_number_of_times(lane):
    [request_id] = lane.enqueue(1, prompt="EMULATOR: batch_expire")
    lane.settle([request_id])
    [dead] = lane.dlq()
    assert dead["dlq_reason"].startswith("expired after 2 retries")


def test_canceled_batch_items_come_back(lane):
    lane.emulator.configure(batch_processing_s=3600)
    lane.configure(cancel_after_s=60)
    ids = lane.enqueue(3)
    lane.collector().run()
    assert lane.poller().run().ended == 0  # still processing, not yet too old
    lane.clock_offset = 61
    lane.poller().run()  # cancels
    lane.emulator.configure(batch_processing_s=0)
    polled = lane.poller().run()
    assert polled.canceled == 3 and polled.retried == 3
    lane.configure(cancel_after_s=None)
    lane.settle(ids)
    assert all(lane.result(i)["status"] == "ok" for i in ids)


def test_malformed_queue_message_goes_to_the_dlq(lane):
    lane.sqs.send_message(QueueUrl=lane.config.queue_url, MessageBody="not json")
    lane.sqs.send_message(QueueUrl=lane.config.queue_url, MessageBody=json.dumps(
        {"request": {"model": "gpt-9", "tenant": "acme", "request_id": "r1"}}))
    lane.collector().run()
    reasons = sorted(d["dlq_reason"] for d in lane.dlq())
    assert len(reasons) == 2 and all(r.startswith("malformed batch message") for r in reasons)


# -- duplicates and crashes -------------------------------------------------------------------

def test_duplicate_messages_are_submitted_once(lane):
    ids = lane.enqueue(3, prefix="dup")
    lane.enqueue(3, prefix="dup")  # the same requests again (a caller's retry)
    summary = lane.collector().run()
    assert summary.items == 3 and summary.duplicates == 3
    lane.settle(ids)
    assert lane.batches()["items"] == {"succeeded": 3}


COLLECTOR_STEPS = ("claimed", "items_written", "intent_recorded", "messages_deleted",
                   "created", "submitted")
POLLER_STEPS = ("retrieved", "item_acted", "item_marked", "items_done")


def _crash_at(step: str, times: int = 1):
    left = [times]

    def checkpoint(name: str) -> None:
        if name == step and left[0] > 0:
            left[0] -= 1
            raise Crash(step)
    return checkpoint


@pytest.mark.parametrize("step", COLLECTOR_STEPS)
def test_collector_crash_and_resume(lane, step):
    lane.configure(max_items=3)
    ids = lane.enqueue(5)
    with pytest.raises(Crash):
        lane.collector(checkpoint=_crash_at(step)).run()
    lane.settle(ids)
    answers = [lane.result(i) for i in ids]
    assert all(a["status"] == "ok" for a in answers)  # 0 lost
    stats = lane.batches()
    assert stats["items"] == {"succeeded": 5}  # 0 submitted twice (adopted, not resubmitted)
    assert lane.queued() == 0 and lane.dlq() == []


@pytest.mark.parametrize("step", POLLER_STEPS)
def test_poller_crash_and_resume(lane, step):
    ids = lane.enqueue(4, prompt="EMULATOR: batch_error overloaded_error") \
        if step == "item_acted" and False else lane.enqueue(4)
    lane.collector().run()
    with pytest.raises(Crash):
        lane.poller(checkpoint=_crash_at(step)).run()
    lane.settle(ids)
    assert all(lane.result(i)["status"] == "ok" for i in ids)
    assert lane.batches()["items"] == {"succeeded": 4}
    assert lane.queued() == 0 and lane.dlq() == []


def test_poller_crash_while_requeueing_answers_once(lane):
    ids = lane.enqueue(2)
    lane.collector().run()
    lane.emulator.configure(batch_expire_all=True)
    with pytest.raises(Crash):  # requeued, but the outcome not recorded: requeued again
        lane.poller(checkpoint=_crash_at("item_acted")).run()
    lane.poller().run()
    lane.emulator.configure(batch_expire_all=False)
    lane.settle(ids)
    assert all(lane.result(i)["status"] == "ok" for i in ids)
    # the doubled requeue was dropped by the claim: each request answered by one batch item
    assert lane.batches()["items"].get("succeeded") == 2


def test_create_that_crashed_is_adopted_not_resubmitted(lane):
    ids = lane.enqueue(3)
    with pytest.raises(Crash):
        lane.collector(checkpoint=_crash_at("created")).run()
    assert lane.batches()["batches"] == 1
    summary = lane.collector().run()
    assert summary.resumed == 1 and summary.adopted == 1 and summary.submitted == []
    assert lane.batches()["batches"] == 1
    lane.poller().run()
    assert all(lane.result(i)["status"] == "ok" for i in ids)


# -- adopting a batch: only when the create's outcome is unknown, and only provisionally ----------

def _one_batch_done(lane) -> None:
    """An earlier intent of 3 items whose batch ended and was answered (its intent closed)."""
    ids = lane.enqueue(3, prefix="earlier")
    lane.collector().run()
    lane.poller().run()
    assert all(lane.result(i)["status"] == "ok" for i in ids)
    assert lane.runtime().store.intents() == []


@pytest.mark.parametrize("refusal", ["429", "529", "local"])
def test_a_refused_create_is_retried_never_adopted(lane, refusal):
    lane.configure(max_retries=0)
    _one_batch_done(lane)
    ids = lane.enqueue(3)
    if refusal == "local":
        lane.runtime().bucket.cool_down(30)  # the batch endpoints' bucket refuses
    else:
        lane.emulator.configure(batch_faults=[{"op": "create", "status": int(refusal)}])
    stopped = lane.collector().run()
    assert stopped.submitted == [] and stopped.stopped
    lane.clock_offset = 31  # past any cool-down
    summary = lane.collector().run()
    assert summary.resumed == 1 and summary.adopted == 0 and len(summary.submitted) == 1
    lane.poller().run()
    assert all(lane.result(i)["status"] == "ok" for i in ids)
    assert lane.dlq() == [] and lane.batches()["batches"] == 2


@pytest.mark.parametrize("step", ["intent_recorded", "messages_deleted"])
def test_a_crash_before_create_never_adopts(lane, step):
    lane.configure(max_retries=0)
    _one_batch_done(lane)
    ids = lane.enqueue(3)
    with pytest.raises(Crash):
        lane.collector(checkpoint=_crash_at(step)).run()
    summary = lane.collector().run()
    assert summary.resumed == 1 and summary.adopted == 0 and len(summary.submitted) == 1
    lane.settle(ids)
    assert all(lane.result(i)["status"] == "ok" for i in ids)
    assert lane.dlq() == [] and lane.batches()["batches"] == 2


def test_a_create_whose_answer_was_lost_is_adopted_and_confirmed(lane):
    ids = lane.enqueue(3)
    lane.emulator.configure(batch_faults=[{"op": "create", "status": 503, "after": True}])
    assert "503" in lane.collector().run().stopped
    summary = lane.collector().run()
    assert summary.adopted == 1 and summary.submitted == []
    polled = lane.poller().run()
    assert polled.succeeded == 3 and polled.released == 0
    assert all(lane.result(i)["status"] == "ok" for i in ids)
    assert lane.batches()["batches"] == 1 and lane.queued() == 0


def test_two_deployments_in_one_workspace_never_take_each_others_batch(
        lane, local_aws, emulator, monkeypatch):
    other = new_lane(local_aws, emulator, monkeypatch)
    for deployment in (lane, other):
        deployment.configure(cancel_after_s=60, max_retries=0)
    emulator.configure(batch_processing_s=3600)
    theirs = other.enqueue(3)
    assert len(other.collector().run().submitted) == 1  # their batch, still processing
    ours = lane.enqueue(3)
    emulator.configure(batch_faults=[{"op": "create", "status": 503}])  # created nothing
    assert "503" in lane.collector().run().stopped
    lane.collector().run()  # our create's outcome is unknown: theirs may be adopted
    lane.clock_offset = 61
    polled = lane.poller().run()  # a provisional batch is never cancelled
    assert polled.ended == 0
    assert lane.batches()["by_status"] == {"in_progress": 1}
    emulator.configure(batch_processing_s=0)  # their batch ends
    other.poller().run()
    assert all(other.result(i)["status"] == "ok" for i in theirs)
    lane.settle(ours)
    assert all(lane.result(i)["status"] == "ok" for i in ours)
    assert lane.dlq() == [] and other.dlq() == []
    assert lane.batches()["items"] == {"succeeded": 6}


# -- poison: one item that cannot be stored or read does not block the others ---------------------

def _refuse_puts(client, when) -> None:
    """DynamoDB refuses a PutItem whose parameters satisfy `when` (as it refuses an item over
    its size limit)."""
    from botocore.exceptions import ClientError

    def hook(params, **_):
        if when(params):
            raise ClientError({"Error": {"Code": "ValidationException", "Message":
                                         "Item size has exceeded the maximum allowed size"}},
                              "PutItem")
    client.meta.events.register("before-parameter-build.dynamodb.PutItem", hook)


def test_an_answer_that_cannot_be_stored_does_not_block_the_poller(lane):
    ids = lane.enqueue(3)
    poison = f"acme/{ids[1]}"
    _refuse_puts(lane.dynamodb, lambda p: p["Item"].get("request_id", {}).get("S") == poison
                 and p["Item"]["status"]["S"] == "ok")
    lane.collector().run()
    polled = lane.poller().run()
    assert polled.succeeded == 2 and polled.dead_lettered == 1 and polled.ended == 1
    answer = lane.result(ids[1])
    assert answer["status"] == "error" and "could not be stored" in answer["error"]["message"]
    [dead] = lane.dlq()
    assert dead["request"]["request_id"] == ids[1]
    assert "could not be stored" in dead["dlq_reason"]
    assert lane.queued() == 0 and lane.runtime().store.intents() == []
    later = lane.enqueue(2)  # the next batches are answered
    lane.collector().run()
    assert lane.poller().run().succeeded == 2
    assert all(lane.result(i)["status"] == "ok" for i in later)


CJK = "漢"  # 3 bytes in UTF-8, 6 as a JSON \u escape
#: the emulator answers this many CJK characters: ~450 KB of UTF-8, over a results item's limit
LARGE = 150_000


def _stored(lane, request_id: str, tenant: str = "acme") -> tuple[dict, dict]:
    """A results item's raw `response` attribute and the answer it holds (pointer followed)."""
    return _stored_item(lane, lane.dynamodb.get_item(
        TableName=lane.config.results_table, ConsistentRead=True,
        Key={"request_id": {"S": f"{tenant}/{request_id}"}})["Item"])


def _stored_item(lane, item: dict) -> tuple[dict, dict]:
    from agent.payloads import PayloadStore
    from agent.results import stored_response

    store = PayloadStore(lane.s3, lane.config.payload_bucket, lane.clock)
    return json.loads(item["response"]["S"]), stored_response(item, store)


def test_a_large_cjk_answer_is_stored_behind_a_pointer_in_the_payload_bucket(lane):
    from agent.payloads import MAX_INLINE_ITEM_BYTES, pointer_of

    large = lane.enqueue(1, prompt=f"EMULATOR: answer {LARGE} {CJK}")
    small = lane.enqueue(2)
    assert lane.collector().run().items == 3
    assert lane.poller().run().succeeded == 3  # one batch: the large answer blocks nothing
    raw, answer = _stored(lane, large[0])
    pointer = pointer_of(raw)
    assert pointer is not None and pointer["bytes"] > MAX_INLINE_ITEM_BYTES
    assert pointer["bucket"] == lane.config.payload_bucket
    assert pointer["key"].startswith(f"results/acme/{large[0]}/")
    assert answer["status"] == "ok" and answer["output"] == CJK * LARGE
    assert all(lane.result(i)["status"] == "ok" for i in small)
    assert lane.dlq() == [] and lane.queued() == 0


def test_a_large_answer_whose_pointer_write_is_throttled_is_stored_on_the_next_run(lane):
    from tests.functional.test_fault_injection import Faults

    ids = lane.enqueue(1, prompt=f"EMULATOR: answer {LARGE} {CJK}")
    lane.collector().run()
    faults = Faults()
    faults.fail(lane.s3, "PutObject", "SlowDown", match="results/", status=503)
    stopped = lane.poller().run()
    assert stopped.stopped and stopped.dead_lettered == 0 and faults.injected == 1
    assert lane.poller().run().succeeded == 1
    assert _stored(lane, ids[0])[1]["output"] == CJK * LARGE and lane.dlq() == []
    assert lane.batches()["items"] == {"succeeded": 1}  # Claude answered once


def test_an_answer_that_cannot_be_stored_is_dead_lettered_and_still_costed(lane):
    lane.configure(payload_bucket=None)  # nowhere to keep an answer over the item limit
    ids = lane.enqueue(2, prompt=f"EMULATOR: answer {LARGE} {CJK}")
    lane.collector().run()
    polled = lane.poller().run()
    assert polled.dead_lettered == 2 and polled.succeeded == 0
    assert all("could not be stored" in lane.result(i)["error"]["message"] for i in ids)
    assert polled.cost_usd > 0 and polled.cost_usd == polled.standard_usd / 2
    assert lane.metrics.values[SONNET]["BatchCostUSD"] == pytest.approx(polled.cost_usd)
    assert "BatchSucceeded" not in lane.metrics.values[SONNET]


def test_a_batch_request_id_reused_for_another_prompt_is_a_conflict(lane):
    """The agent's own bodies carry the request's digest; the answer keeps it."""
    ids = ["reused-1"]
    assert _queue_as_agent(lane, "reused-1", "Summarise the report")["status"] == "queued"
    lane.settle(ids)
    assert lane.result("reused-1")["status"] == "ok"
    again = _queue_as_agent(lane, "reused-1", "Translate the report")
    assert again["status"] == "error" and again["error"]["type"] == "conflict"
    same = _queue_as_agent(lane, "reused-1", "Summarise the report")
    assert same["status"] == "ok"  # the same request again: its answer


def test_a_dead_lettered_batch_request_id_reused_for_another_prompt_is_a_conflict(lane):
    lane.configure(max_retries=0)
    assert _queue_as_agent(lane, "reused-2", "EMULATOR: batch_error invalid_request_error"
                           )["status"] == "queued"
    lane.settle(["reused-2"])
    assert lane.result("reused-2")["status"] == "error"
    again = _queue_as_agent(lane, "reused-2", "Summarise the report")
    assert again["status"] == "error" and again["error"]["type"] == "conflict"


def _queue_as_agent(lane, request_id: str, prompt: str) -> dict:
    """What the agent answers for lane "batch" (`queues.enqueue_batch`) on this lane."""
    import dataclasses
    from types import SimpleNamespace

    from agent.payloads import PayloadStore
    from agent.queues import enqueue_batch
    from agent.requests import parse_request
    from tests.fixtures.agent_env import agent_config

    config = dataclasses.replace(agent_config(), batch_queue_url=lane.config.queue_url,
                                 results_table=lane.config.results_table)
    rt = SimpleNamespace(config=config, dynamodb=lane.dynamodb, sqs=lane.sqs, clock=lane.clock,
                         payloads=PayloadStore(lane.s3, lane.config.payload_bucket))
    return enqueue_batch(rt, parse_request({"prompt": prompt, "lane": "batch", "tenant": "acme",
                                            "request_id": request_id, "max_tokens": 16},
                                           config))


def _corrupt_row(lane, request_id: str) -> None:
    """The item row of `request_id` in the open intent gets a body that is not JSON."""
    [intent] = lane.runtime().store.intents()
    rows = lane.dynamodb.query(TableName=lane.config.batch_table,
                               KeyConditionExpression="pk = :pk", ExpressionAttributeValues={
                                   ":pk": {"S": f"intent#{intent.intent_id}"}})["Items"]
    [row] = [r for r in rows if r["request_id"]["S"] == request_id]
    lane.dynamodb.update_item(TableName=lane.config.batch_table,
                              Key={"pk": row["pk"], "sk": row["sk"]},
                              UpdateExpression="SET body = :b",
                              ExpressionAttributeValues={":b": {"S": "{not json"}})


def test_an_item_row_that_cannot_be_read_is_not_sent(lane):
    ids = lane.enqueue(3)
    with pytest.raises(Crash):
        lane.collector(checkpoint=_crash_at("messages_deleted")).run()
    _corrupt_row(lane, ids[0])
    summary = lane.collector().run()
    assert summary.dead_lettered == 1 and summary.items == 2
    answer = lane.result(ids[0])
    assert answer["status"] == "error" and "could not be read" in answer["error"]["message"]
    lane.poller().run()
    assert [lane.result(i)["status"] for i in ids] == ["error", "ok", "ok"]
    assert lane.queued() == 0 and lane.runtime().store.intents() == []


def test_an_item_row_that_cannot_be_read_gets_an_error_answer(lane):
    ids = lane.enqueue(3)
    lane.collector().run()
    _corrupt_row(lane, ids[0])
    polled = lane.poller().run()
    assert polled.succeeded == 2 and polled.dead_lettered == 1 and polled.ended == 1
    answer = lane.result(ids[0])
    assert answer["status"] == "error" and "could not be read" in answer["error"]["message"]
    assert lane.queued() == 0 and lane.runtime().store.intents() == []


def test_a_batch_that_cannot_be_retrieved_does_not_block_the_poller(lane):
    ids = lane.enqueue(2)
    lane.collector().run()
    lane.emulator.configure(batch_faults=[{"op": "retrieve", "status": 404}])
    polled = lane.poller().run()  # its items as without results: back to the queue
    assert polled.retried == 2 and polled.stopped is None and lane.queued() == 0
    lane.settle(ids)
    assert all(lane.result(i)["status"] == "ok" for i in ids) and lane.dlq() == []


# -- a rotated API key -----------------------------------------------------------------------------

BATCH_PATHS = {"create": ("POST", "batches"), "list": ("GET", "batches"),
               "retrieve": ("GET", "<id>"), "results": ("GET", "results"),
               "cancel": ("POST", "cancel")}


def _rotating(lane, local_aws, op: str, *, rotate: bool = True):
    """One container's runtime holding key k1; just before its first request to `op` the
    emulator revokes k1 and (with `rotate`) the secret moves on to k2. Returns (runtime, fired)."""
    import anthropic

    secrets = local_aws.client("secretsmanager")
    arn = secrets.create_secret(Name=f"key-{uuid.uuid4().hex[:8]}",
                                SecretString=json.dumps({"api_key": "k1"}))["ARN"]
    fired = []

    def hook(request) -> None:
        last = request.url.path.rstrip("/").rsplit("/", 1)[-1]
        name = last if last in ("batches", "results", "cancel") else "<id>"
        if not fired and (request.method, name) == BATCH_PATHS[op]:
            fired.append(request.url.path)
            lane.emulator.configure(revoked_api_keys=["k1"])
            if rotate:
                secrets.put_secret_value(SecretId=arn,
                                         SecretString=json.dumps({"api_key": "k2"}))

    lane.configure(api_key_secret_arn=arn)
    lane.secrets = secrets
    lane.claude = anthropic.Anthropic(base_url=lane.emulator.base_url, api_key="k1",
                                      max_retries=0,
                                      http_client=anthropic.DefaultHttpxClient(
                                          event_hooks={"request": [hook]}))
    return lane.runtime(), fired


@pytest.mark.parametrize("op", ["create", "retrieve", "results", "cancel", "list"])
def test_a_rotated_key_is_refreshed_once_on_every_batch_call(lane, local_aws, op):
    rt, fired = _rotating(lane, local_aws, op)
    ids = lane.enqueue(3)
    if op == "cancel":
        lane.emulator.configure(batch_processing_s=3600)
        lane.configure(cancel_after_s=60)
        rt.config = lane.config
    if op == "list":  # the create's answer is lost: the next run lists the batches
        lane.emulator.configure(batch_faults=[{"op": "create", "status": 503, "after": True}])
        assert rt.collector().run().stopped
    summary = rt.collector().run()
    assert summary.dead_lettered == 0 and summary.stopped is None
    if op == "cancel":
        lane.clock_offset = 61
        polled = rt.poller().run()
        assert polled.stopped is None and lane.batches()["by_status"] == {"ended": 1}
        lane.emulator.configure(batch_processing_s=0)
        lane.configure(cancel_after_s=None)
        rt.config = lane.config
        lane.settle(ids)
    else:
        polled = rt.poller().run()
        assert polled.stopped is None and polled.succeeded == 3 and polled.retried == 0
    assert fired and all(lane.result(i)["status"] == "ok" for i in ids)
    assert lane.dlq() == []


@pytest.mark.parametrize("op", ["retrieve", "results"])
def test_a_key_still_refused_after_a_refresh_stops_with_a_reason(lane, local_aws, op):
    rt, fired = _rotating(lane, local_aws, op, rotate=False)  # the secret still holds k1
    ids = lane.enqueue(3)
    rt.collector().run()
    polled = rt.poller().run()
    assert fired and "401" in polled.stopped and "refresh" in polled.stopped
    assert polled.retried == polled.dead_lettered == 0 and lane.dlq() == []
    assert all(lane.result(i)["status"] == "queued" for i in ids)  # not requeued, not lost
    lane.emulator.configure(revoked_api_keys=[])
    assert rt.poller().run().succeeded == 3
    assert lane.batches()["batches"] == 1


# -- dead letters answer ---------------------------------------------------------------------------

def test_a_malformed_request_is_answered_with_its_reason(lane):
    from agent.results import put_queued

    put_queued(lane.dynamodb, lane.config.results_table, "acme", "bad-1",
               {"status": "queued", "request_id": "bad-1", "lane": "batch"},
               int(time.time() + 3600))
    lane.sqs.send_message(QueueUrl=lane.config.queue_url, MessageBody=json.dumps(
        {"request": {"model": "gpt-9", "tenant": "acme", "request_id": "bad-1"}}))
    summary = lane.collector().run()
    assert summary.dead_lettered == 1
    answer = lane.result("bad-1")
    assert answer["status"] == "error" and "unknown model" in answer["error"]["message"]


def test_a_refused_batch_answers_every_item_with_the_reason(lane):
    ids = lane.enqueue(2)
    lane.emulator.configure(batch_faults=[{"op": "create", "status": 400}])
    summary = lane.collector().run()
    assert summary.dead_lettered == 2 and summary.submitted == []
    for request_id in ids:
        answer = lane.result(request_id)
        assert answer["status"] == "error"
        assert "batch create refused" in answer["error"]["message"]
    assert len(lane.dlq()) == 2 and lane.queued() == 0


# -- the batch table: no orphans, a TTL on everything finished, reads bounded by open work ---------

def _rows(lane, prefix: str) -> list[dict]:
    items = lane.dynamodb.scan(TableName=lane.config.batch_table)["Items"]
    return [i for i in items if i["pk"]["S"].startswith(prefix)]


def test_a_full_queue_leaves_no_orphan_item_rows(lane):
    lane.configure(queue_cap=5, max_items=5)
    lane.enqueue(5)
    assert lane.collector().run().items == 5  # its batch holds the whole cap
    lane.enqueue(5)
    for _ in range(3):
        assert "queue" in lane.collector().run().stopped
    assert len(_rows(lane, "intent#")) == 5  # only the open intent's items


def test_everything_finished_carries_a_ttl(lane):
    ids = lane.enqueue(3)
    lane.settle(ids)
    rows = [r for r in lane.dynamodb.scan(TableName=lane.config.batch_table)["Items"]
            if r["pk"]["S"] != "schema"]  # the one marker row (see index_earlier_intents)
    assert {r["pk"]["S"].split("#")[0] for r in rows} >= {"intent", "claim"}
    assert len([r for r in rows if r["pk"]["S"].startswith("intent#")]) == 3
    for row in rows:
        assert float(row["expires_at"]["N"]) > time.time() + 3600, row


def test_open_work_is_read_without_the_history(lane):
    for _ in range(3):
        lane.settle(lane.enqueue(2))
    store = lane.runtime().store
    scanned = []
    lane.dynamodb.meta.events.register(
        "after-call.dynamodb.Query",
        lambda parsed, **_: scanned.append(parsed.get("ScannedCount", 0)))
    assert store.intents() == []
    assert sum(scanned) == 0  # three finished intents are not read


def test_intents_recorded_before_the_open_index_are_not_lost(lane):
    ids = lane.enqueue(3)
    lane.collector().run()
    # as an earlier version recorded it: no index key, and no marker that earlier ones are indexed
    [intent] = lane.runtime().store.intents()
    table = lane.config.batch_table
    lane.dynamodb.update_item(TableName=table, Key={"pk": {"S": "intents"},
                                                    "sk": {"S": intent.intent_id}},
                              UpdateExpression="REMOVE #o", ExpressionAttributeNames={"#o": "open"})
    lane.dynamodb.delete_item(TableName=table, Key={"pk": {"S": "schema"},
                                                    "sk": {"S": "open-index"}})
    assert lane.poller().run().succeeded == 3
    assert all(lane.result(i)["status"] == "ok" for i in ids) and lane.queued() == 0
