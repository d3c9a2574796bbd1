"""Fault injection on the interactive lane's queued path: each AWS write the agent makes (and a
Claude failure, and a redelivery at the worst moment) fails in turn, and the request must end
with exactly one answer (ok, or an error with its reason) or one dead letter with its reason:
never two different answers, never nothing, and Claude paid at most once more per injected
fault.

moto has no fault injection: `Faults` registers botocore event hooks on the agent's own
clients. A fault short-circuits the call before it is sent, as when the SDK's own retries have
run out. SQS delivery is simulated (`Delivery`): a failed record comes back with its receive
count raised, and after the work queue's maxReceiveCount (5) the redrive policy moves it to
the DLQ as it is. test_fault_figure.py runs these scenarios with the batch lane's and prints
the figure of docs/operations.md.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Callable

import pytest

from tests.functional.test_agent_handler import (LambdaContext, drain_bucket, emulator, invoke,
                                                 queued, refill_bucket, sqs_event, stack)
from tests.functional.test_queued_payloads import CJK, FakeLoop, payloads

__all__ = ["emulator", "payloads", "stack"]  # fixtures used by name

#: the work queue's redrive policy (stacks/state.py): receives before SQS moves a message
MAX_RECEIVE_COUNT = 5


def _text(params: dict) -> str:
    """A serialized request's path and body, as text."""
    body = params.get("body") or b""
    body = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    return f"{params.get('url_path', '')} {body}"


class Faults:
    """Botocore hooks that fail chosen calls: each rule fails the next `times` calls of one
    operation whose request mentions `match` (a table, queue or bucket name)."""

    def __init__(self) -> None:
        self.injected = 0
        self.writes: list[tuple[str, str]] = []  # (operation, request body) of calls that succeeded

    def fail(self, client, operation: str, code: str, *, match: str = "", times: int = 1,
             status: int = 400) -> None:
        left = [times]
        service = client.meta.service_model.service_id.hyphenize()

        def handler(params, **_):
            if left[0] > 0 and match in _text(params):
                left[0] -= 1
                self.injected += 1
                return (SimpleNamespace(status_code=status, headers={}, raw=None),
                        {"Error": {"Code": code, "Message": f"injected {code}"},
                         "ResponseMetadata": {"HTTPStatusCode": status}})
            return None

        client.meta.events.register(f"before-call.{service}.{operation}", handler,
                                    unique_id=f"fault-{uuid.uuid4().hex}")

    def record_writes(self, client, operation: str) -> None:
        """Keep the request body of each `operation` call that succeeds."""
        service = client.meta.service_model.service_id.hyphenize()
        pending: dict[int, str] = {}

        def before(params, context, **_):
            pending[id(context)] = _text(params).split(" ", 1)[1]

        def after(http_response, context, **_):
            body = pending.pop(id(context), None)
            if body is not None and http_response.status_code < 300:
                self.writes.append((operation, body))

        client.meta.events.register(f"before-call.{service}.{operation}", before,
                                    unique_id=f"rec-before-{operation}")
        client.meta.events.register(f"after-call.{service}.{operation}", after,
                                    unique_id=f"rec-after-{operation}")


def refill(s) -> None:
    """Capacity is back: the bucket item is reset, and the container's guard (which keeps its
    own view of the bucket for a while) is replaced by a fresh one."""
    from agent.runtime import build_runtime

    refill_bucket(s.stack)
    s.rt.claude = build_runtime().claude


@dataclass
class Delivery:
    """SQS as the event source mapping sees it, for one request's messages."""

    stack: dict
    pending: list[tuple[str, int]] = field(default_factory=list)
    redriven: list[str] = field(default_factory=list)  # moved to the DLQ by maxReceiveCount
    rounds: int = 0

    def run(self, *, duplicate: Callable[[int], bool] = lambda _round: False,
            before_round: Callable[[int], None] = lambda _round: None) -> None:
        module = self.stack["module"]
        while self.pending and self.rounds < 20:
            body, count = self.pending.pop(0)
            before_round(self.rounds)
            result = module.sqs_handler(sqs_event(body, receive_count=count), LambdaContext())
            if result["batchItemFailures"]:
                if count >= MAX_RECEIVE_COUNT:
                    self.redriven.append(body)
                else:
                    self.pending.append((body, count + 1))
            elif duplicate(self.rounds):  # deleted too late: SQS delivers it again
                self.pending.append((body, count + 1))
            self.rounds += 1


@dataclass
class Outcome:
    answer: dict
    dead_letters: list[str]
    final_answers: set
    charged: int
    faults: int

    def check(self) -> None:
        """The invariant of every scenario."""
        answered = self.answer["status"] in ("ok", "error")
        assert answered or len(self.dead_letters) == 1, ("lost", self)
        assert len(self.dead_letters) <= 1, ("two dead letters", self)
        # a dead letter's request answers an error (its reason), never "ok": an operator must
        # not redrive what was answered
        assert not (self.dead_letters and self.answer["status"] == "ok"), ("both", self)
        assert len(self.final_answers) <= 1, ("answered twice", self)
        if self.dead_letters:
            assert all(reason for reason in self.dead_letters), ("no reason", self)
        assert self.charged <= 1 + self.faults, ("paid too often", self)


SCENARIOS: dict[str, Callable] = {}


def scenario(name: str):
    def register(build):
        SCENARIOS[name] = build
        return build
    return register


def run_scenario(env, name: str) -> Outcome:
    """Run one scenario end to end; returns its outcome (not yet checked)."""
    stack, emu = env["stack"], env["emulator"]
    module = stack["module"]
    module.reset_runtime()
    rt = module.current_runtime()
    faults = Faults()
    faults.record_writes(rt.dynamodb, "PutItem")
    request_id = f"req-{name.replace('.', '-').replace('_', '-')}"[:60]
    message = {"request": {"prompt": "Summarise the incident.", "tenant": "acme",
                           "request_id": request_id}}
    refill_bucket(stack)  # every scenario starts with a full bucket
    work = {"duplicate": lambda _: False, "before_round": lambda _: None, "loop": None}
    with pytest.MonkeyPatch.context() as patch:
        SCENARIOS[name](SimpleNamespace(stack=stack, rt=rt, faults=faults, message=message,
                                        work=work, emulator=emu, patch=patch))
        return _deliver(stack, emu, rt, faults, message, work, request_id)


def _deliver(stack, emu, rt, faults, message, work, request_id) -> Outcome:
    delivery = Delivery(stack, [(json.dumps(message), 1)])
    def deliver(params, **_):  # after the fault hooks: only a send that goes through
        sent = json.loads(_text(params).split(" ", 1)[1])
        if sent["QueueUrl"] == stack["work"]:
            delivery.pending.append((sent["MessageBody"], 1))

    rt.sqs.meta.events.register("before-call.sqs.SendMessage", deliver,
                                unique_id="deliver-deferrals")
    delivery.run(duplicate=work["duplicate"], before_round=work["before_round"])
    answer = invoke(stack, {"action": "get_result", "request_id": request_id,
                            "tenant": "acme"})
    dead = [json.loads(m["Body"]).get("dlq_reason") for m in queued(stack, "dlq")
            if request_id in m["Body"]]
    dead += ["moved by the work queue's redrive policy (maxReceiveCount)"
             for _ in delivery.redriven]
    finals = set()
    for _operation, body in faults.writes:
        if stack["names"]["results"] in body:
            item = json.loads(body)["Item"]
            if item["status"]["S"] in ("ok", "error"):
                response = json.loads(item["response"]["S"])
                finals.add((response["status"], response.get("output")
                            or response.get("error", {}).get("type")))
    loop = work["loop"]
    charged = loop.calls if loop is not None else emu.stats()["responses"].get("200", 0)
    return Outcome(answer, dead, finals, charged, faults.injected)


# -- the scenarios ----------------------------------------------------------------------------

@scenario("none")
def _(s):
    pass


@scenario("claude.500_once")
def _(s):
    s.emulator.inject("500", count=1)


@scenario("claude.529_storm_past_the_deadline")
def _(s):
    s.emulator.inject("529", count=6)
    s.message["request"]["deadline_s"] = 0.5


def _dynamodb_fault(name: str, operation: str, code: str, table: str, *, times: int = 1,
                    status: int = 400, **envelope) -> None:
    """A scenario: `operation` on one of the agent's tables fails `times` times with `code`
    (the work message gets the `envelope` fields)."""
    @scenario(name)
    def _(s):
        s.message.update(envelope)
        s.faults.fail(s.rt.dynamodb, operation, code, match=s.stack["names"][table],
                      times=times, status=status)


for _args, _kwargs in (
        (("dynamodb.idempotency_record_throttled", "PutItem",
          "ProvisionedThroughputExceededException", "idem"), {}),
        (("dynamodb.idempotency_completion_failed", "UpdateItem", "InternalServerError",
          "idem"), {"status": 500}),
        (("dynamodb.bucket_throttled", "UpdateItem", "ThrottlingException", "bucket"),
         {"times": 3}),
        (("dynamodb.answer_write_throttled_once", "PutItem", "ThrottlingException",
          "results"), {}),
        (("dynamodb.results_table_down", "PutItem", "InternalServerError", "results"),
         {"status": 500, "times": 1_000}),
        (("dynamodb.dead_letter_answer_write_failed", "PutItem", "ThrottlingException",
          "results"), {"deferrals": 9, "first_received_at": 1.0e12})):
    _dynamodb_fault(*_args, **_kwargs)


@scenario("sqs.deferral_send_failed")
def _(s):
    drain_bucket(s.stack)
    s.message["request"]["deadline_s"] = 0
    s.faults.fail(s.rt.sqs, "SendMessage", "InternalError", status=500,
                  match=s.stack["work"].rsplit("/", 1)[1])
    s.work["before_round"] = lambda n: refill(s) if n == 2 else None


@scenario("sqs.crash_between_deferral_send_and_delete")
def _(s):
    drain_bucket(s.stack)
    s.work["duplicate"] = lambda n: n == 0  # the deferred original comes back as well
    s.work["before_round"] = lambda n: refill(s) if n == 1 else None


@scenario("sqs.redelivered_after_the_answer")
def _(s):
    s.work["duplicate"] = lambda n: n == 0


@scenario("sqs.dead_letter_send_failed")
def _(s):
    s.message.update(deferrals=1, first_received_at=1.0)  # too old
    s.faults.fail(s.rt.sqs, "SendMessage", "InternalError", status=500,
                  match=s.stack["dlq"].rsplit("/", 1)[1])


@scenario("s3.claim_check_write_failed")
def _(s):
    drain_bucket(s.stack)
    s.message["request"].update(prompt=CJK * 190_000, max_tokens=64, deadline_s=0)
    s.faults.fail(s.rt.s3, "PutObject", "InternalError", status=500)


@scenario("s3.claim_check_read_failed")
def _(s):
    drain_bucket(s.stack)
    s.message["request"].update(prompt=CJK * 190_000, max_tokens=64, deadline_s=0)
    s.faults.fail(s.rt.s3, "GetObject", "InternalError", status=500)
    s.work["before_round"] = lambda n: refill(s) if n == 1 else None


@scenario("s3.claim_check_gone")
def _(s):
    """The deferral's claim check is missing when it comes back: an error answer and one
    dead letter, not a retry."""
    drain_bucket(s.stack)
    s.message["request"].update(prompt=CJK * 190_000, max_tokens=64, deadline_s=0)
    s.faults.fail(s.rt.s3, "GetObject", "NoSuchKey", status=404)


@scenario("s3.large_answer_write_failed")
def _(s):
    from agent import service

    s.work["loop"] = FakeLoop(CJK * 150_000)
    s.patch.setattr(service, "run_agent", s.work["loop"])
    s.faults.fail(s.rt.s3, "PutObject", "InternalError", status=500)


@pytest.fixture
def env(payloads, emulator):
    return {"stack": payloads, "emulator": emulator}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_each_fault_ends_in_one_answer_or_one_dead_letter(env, name):
    outcome = run_scenario(env, name)
    outcome.check()
    if name != "none":
        assert outcome.faults > 0 or name.startswith(("claude.", "sqs.crash", "sqs.redelivered"))
