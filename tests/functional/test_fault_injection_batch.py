"""Fault injection on the batch lane: each AWS write the collector and the poller make fails in
turn (botocore hooks on the lane's clients, `test_fault_injection.Faults`), and a Claude batch
call fails. The lane runs (collector, poller, again; a run that raises is a failed Lambda run)
until it settles; every request must end with exactly one answer or one dead letter with its
reason, never two answers, and no request paid for twice beyond one more per fault.

The crash-between-steps cases (each checkpoint of the collector and the poller) live in
test_batch_lane.py; these are the store and queue failures between them."""

from __future__ import annotations

import json
import time

import pytest

from tests.functional.test_batch_lane import emulator, lane
from tests.functional.test_fault_injection import Faults

__all__ = ["emulator", "lane"]  # fixtures used by name

REQUESTS = 3


def _settle(lane, ids, rounds: int = 30) -> list[str]:
    """Collector and poller until every request is answered or dead-lettered and no intent is
    open; returns what the runs raised."""
    raised, dead = [], []
    for _ in range(rounds):
        for worker in (lane.collector, lane.poller):
            try:
                worker().run()
            except Exception as err:  # noqa: BLE001 - a failed Lambda run; the next one resumes
                raised.append(f"{type(err).__name__}: {err}")
        dead += lane.dlq()
        lane.dead = dead
        done = [(lane.result(i) or {}).get("status") in ("ok", "error")
                or any(i in json.dumps(letter) for letter in dead) for i in ids]
        if all(done) and lane.runtime().store.intents() == []:
            return raised
        time.sleep(0.25)
    raise AssertionError(f"the batch lane did not settle; runs raised {raised}")


#: name -> (client, operation, error code, what the request must mention, times, status)
SCENARIOS = {
    "collector.claim_throttled": ("dynamodb", "PutItem", "ThrottlingException", "batch", 1, 400),
    "collector.items_write_failed": ("dynamodb", "BatchWriteItem", "InternalServerError",
                                     "batch", 1, 500),
    "collector.intent_counter_throttled": ("dynamodb", "UpdateItem", "ThrottlingException",
                                           "bucket", 1, 400),
    "collector.message_delete_failed": ("sqs", "DeleteMessageBatch", "InternalError", "queue",
                                        1, 500),
    "poller.answer_write_throttled": ("dynamodb", "PutItem", "ThrottlingException", "results",
                                      1, 400),
    "poller.item_mark_failed": ("dynamodb", "UpdateItem", "InternalServerError", "batch", 1,
                                500),
    "poller.counter_release_failed": ("dynamodb", "UpdateItem", "InternalServerError",
                                      "bucket", 2, 500),
}


def _target(lane, which: str) -> str:
    config = lane.config
    return {"batch": config.batch_table, "bucket": config.bucket_table,
            "results": config.results_table, "queue": config.queue_url.rsplit("/", 1)[1]}[which]


def _answers_written(lane, faults: Faults) -> list[dict]:
    """The final answers (ok or error) the lane's PutItem calls stored."""
    items = [json.loads(body) for _, body in faults.writes]
    return [request["Item"] for request in items
            if request["TableName"] == lane.config.results_table
            and request["Item"]["status"]["S"] in ("ok", "error")]


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_each_batch_lane_fault_ends_in_one_answer_or_one_dead_letter(lane, name):
    client, operation, code, which, times, status = SCENARIOS[name]
    ids = lane.enqueue(REQUESTS)
    faults = Faults()
    faults.record_writes(lane.dynamodb, "PutItem")
    if name.startswith("poller."):
        lane.collector().run()  # the batch is submitted; the fault hits the poll
    faults.fail(getattr(lane, client), operation, code, match=_target(lane, which),
                times=times, status=status)
    _settle(lane, ids)
    assert faults.injected == times
    for request_id in ids:
        letters = [d for d in lane.dead if request_id in json.dumps(d)]
        answer = lane.result(request_id) or {}
        assert answer.get("status") in ("ok", "error") or len(letters) == 1, (request_id, answer)
        assert len(letters) <= 1 and all(d.get("dlq_reason") for d in letters)
        finals = {item["response"]["S"] for item in _answers_written(lane, faults)
                  if item["request_id"]["S"].endswith(f"/{request_id}")}
        assert len(finals) <= 1, (request_id, finals)
    succeeded = lane.batches()["items"].get("succeeded", 0)
    assert succeeded <= REQUESTS * (1 + faults.injected)
    assert lane.queued() == 0  # the counter is released


@pytest.mark.parametrize("kind", ["529", "500"])
def test_a_failed_batch_create_is_retried_and_answers_once(lane, kind):
    ids = lane.enqueue(REQUESTS)
    lane.emulator.inject(kind, count=1)
    _settle(lane, ids)
    assert all(lane.result(i)["status"] == "ok" for i in ids)
    assert lane.batches()["items"] == {"succeeded": REQUESTS}
    assert lane.queued() == 0 and lane.dead == []


def test_a_request_the_agent_queues_is_answered_by_the_lane(lane):
    """The agent's batch body (the prompt once, in the params, as UTF-8) through the lane."""
    import dataclasses
    from types import SimpleNamespace

    from agent.payloads import PayloadStore
    from agent.queues import enqueue_batch
    from agent.requests import parse_request
    from tests.fixtures.agent_env import agent_config

    config = dataclasses.replace(agent_config(), batch_queue_url=lane.config.queue_url,
                                 results_table=lane.config.results_table)
    rt = SimpleNamespace(config=config, dynamodb=lane.dynamodb, sqs=lane.sqs, clock=lane.clock,
                         payloads=PayloadStore(None, None))
    request = parse_request({"prompt": "漢字 " * 2_000 + "label it", "lane": "batch",
                             "request_id": "agent-batch-1", "tenant": "acme",
                             "max_tokens": 16}, config)
    assert enqueue_batch(rt, request)["status"] == "queued"
    _settle(lane, ["agent-batch-1"])
    assert lane.result("agent-batch-1")["status"] == "ok" and lane.dead == []
