"""cli.dlq against SQS on the local AWS server: list and inspect leave the DLQ as it was;
redrive moves good requests back to the work queue (fresh envelope) and keeps malformed ones.

The dead-lettered bodies are written by the agent's own `agent.queues.send_to_dlq`, so the
command reads exactly what the agent writes.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from types import SimpleNamespace

import pytest

from agent.queues import send_to_dlq
from cli import dlq

DEAD_AT = 1_800_000_000.0
NOW = 1_800_003_600.0
PROMPT = "Summarise the Q3 report for the board. " * 25  # ~1,000 characters
GOOD_REQUEST = {"prompt": PROMPT, "max_tokens": 512, "model": "claude-sonnet-4-6",
                "request_id": "req-dlq-1", "tenant": "acme", "deadline_s": 30.0,
                "caller": "arn:aws:iam::123456789012:user/ci"}
GOOD_BODY = {"request": GOOD_REQUEST, "deferrals": 7, "first_received_at": DEAD_AT - 3_000,
             "transcript": [{"role": "user", "content": PROMPT}], "model": "claude-sonnet-4-6"}
GOOD_REASON = "deferred 7 times, more than MAX_DEFERRALS=6"
RAW = '{"request": {"prompt": "unterminated'
RAW_REASON = "malformed body: not JSON (Unterminated string starting at: line 1 column 25)"


@pytest.fixture
def queues(local_aws):
    sqs = local_aws.client("sqs")
    suffix = uuid.uuid4().hex[:8]
    dlq_url = sqs.create_queue(QueueName=f"bulwark-dlq-{suffix}")["QueueUrl"]
    work_url = sqs.create_queue(QueueName=f"bulwark-work-{suffix}")["QueueUrl"]
    return SimpleNamespace(sqs=sqs, dlq=dlq_url, work=work_url)


def dead_letter(queues, body, reason: str, at: float = DEAD_AT) -> None:
    runtime = SimpleNamespace(sqs=queues.sqs, config=SimpleNamespace(dlq_url=queues.dlq),
                              clock=lambda: at)
    send_to_dlq(runtime, body, reason)


def counts(sqs, url) -> tuple[int, int]:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return (int(attributes["ApproximateNumberOfMessages"]),
            int(attributes["ApproximateNumberOfMessagesNotVisible"]))


def drain(sqs, url) -> list[dict]:
    messages = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                  VisibilityTimeout=60).get("Messages", [])
        if not got:
            return messages
        messages += got


def run(queues, *args: str, work: bool = True) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    argv = ["--queue-url", queues.dlq] + (["--work-queue-url", queues.work] if work else [])
    code = dlq.main(argv + list(args), sqs=queues.sqs, now=lambda: NOW, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def dead(queues):
    dead_letter(queues, GOOD_BODY, GOOD_REASON)
    dead_letter(queues, RAW, RAW_REASON, at=DEAD_AT + 60)
    return queues


def ids_by_kind(queues) -> tuple[str, str]:
    listed = json.loads(run(queues, "list", "--json")[1])
    good = next(m["message_id"] for m in listed if not m["malformed"])
    bad = next(m["message_id"] for m in listed if m["malformed"])
    return good, bad


def test_list_shows_every_message_and_deletes_none(dead):
    code, out, err = run(dead, "list", "--json", work=False)
    assert code == 0, err
    listed = sorted(json.loads(out), key=lambda m: m["dead_lettered_at"])
    assert [(m["request_id"], m["tenant"], m["reason"], m["dead_lettered_at"], m["deferrals"],
             m["malformed"]) for m in listed] == [
        ("req-dlq-1", "acme", GOOD_REASON, "2027-01-15T08:00:00Z", 7, False),
        (None, None, RAW_REASON, "2027-01-15T08:01:00Z", None, True)]
    assert all(m["message_id"] for m in listed)
    assert counts(dead.sqs, dead.dlq) == (2, 0)  # both still there and visible

    code, table, _ = run(dead, "list", work=False)
    assert code == 0
    header, *rows, last = table.splitlines()
    assert header.split()[:3] == ["MESSAGE", "ID", "REQUEST"]
    assert any("req-dlq-1" in r and "acme" in r and GOOD_REASON in r for r in rows)
    assert any("(malformed)" in r for r in rows)
    assert last == "2 dead-lettered messages, 1 malformed (not redrivable)"
    assert counts(dead.sqs, dead.dlq) == (2, 0)


def test_inspect_shows_the_body_with_the_prompt_shortened(dead):
    good, bad = ids_by_kind(dead)
    code, out, err = run(dead, "inspect", good, "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["message_id"] == good and shown["reason"] == GOOD_REASON
    assert shown["body"]["request"]["prompt"].endswith("characters; --full shows all]")
    assert len(shown["body"]["request"]["prompt"]) < 300
    assert shown["body"]["transcript"] == "[1 messages; --full shows them]"
    assert shown["body"]["dlq_reason"] == GOOD_REASON

    full = json.loads(run(dead, "inspect", good, "--full", "--json")[1])
    assert full["body"]["request"]["prompt"] == PROMPT
    assert full["body"]["transcript"] == GOOD_BODY["transcript"]

    code, text, _ = run(dead, "inspect", bad)
    assert code == 0 and "raw_body" in text and RAW_REASON in text
    assert counts(dead.sqs, dead.dlq) == (2, 0)

    code, _, err = run(dead, "inspect", "00000000-0000-0000-0000-000000000000")
    assert code == 1 and "not in the dead-letter queue" in err


def test_redrive_all_moves_good_requests_and_keeps_malformed_ones(dead):
    code, out, err = run(dead, "redrive", "--all")
    assert code == 0, err
    assert "moved      " in out and "request req-dlq-1 (acme) -> work queue as" in out
    assert "kept       " in out and "raw_body" in out
    assert out.splitlines()[-1] == "1 moved, 1 kept (malformed), 0 failed, 0 not found"

    arrived = drain(dead.sqs, dead.work)
    assert len(arrived) == 1
    envelope = json.loads(arrived[0]["Body"])
    assert envelope["request"] == GOOD_REQUEST
    assert envelope["deferrals"] == 0 and envelope["first_received_at"] == NOW
    assert "dlq_reason" not in envelope and "dead_lettered_at" not in envelope
    assert envelope["transcript"] == GOOD_BODY["transcript"]
    assert envelope["model"] == GOOD_BODY["model"]

    left = drain(dead.sqs, dead.dlq)
    assert len(left) == 1
    assert json.loads(left[0]["Body"])["raw_body"] == RAW


def test_redrive_by_id_and_bare_requests(queues):
    bare = {"prompt": "hello", "request_id": "req-dlq-2", "tenant": "initech"}
    dead_letter(queues, bare, "malformed request: tenant 'initech' is not one of acme, globex")
    dead_letter(queues, GOOD_BODY, GOOD_REASON)
    listed = json.loads(run(queues, "list", "--json")[1])
    bare_id = next(m["message_id"] for m in listed if m["request_id"] == "req-dlq-2")

    code, out, _ = run(queues, "--json", "redrive", "--id", bare_id, "missing-id")
    assert code == 1  # one id was not found
    report = json.loads(out)
    assert [m["request_id"] for m in report["moved"]] == ["req-dlq-2"]
    assert report["not_found"] == ["missing-id"] and report["kept"] == report["failed"] == []

    envelope = json.loads(drain(queues.sqs, queues.work)[0]["Body"])
    assert envelope == {"request": bare, "deferrals": 0, "first_received_at": NOW}
    assert counts(queues.sqs, queues.dlq) == (1, 0)  # the other one untouched and visible


def test_redrive_needs_the_work_queue_and_a_choice(dead):
    assert run(dead, "redrive", "--all", work=False)[0] == 2
    with pytest.raises(SystemExit):
        run(dead, "redrive")
    assert counts(dead.sqs, dead.dlq) == (2, 0)


def test_stack_option_finds_both_queues_by_the_stack_outputs(local_aws, capsys, tmp_path,
                                                                monkeypatch):
    """--stack reads the DeadLetterQueueUrl and WorkQueueUrl outputs of a stack in local AWS
    (--endpoint-url); main() builds its own clients."""
    for name in ("AWS_ENDPOINT_URL", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    suffix = uuid.uuid4().hex[:8]
    cfn = local_aws.client("cloudformation")
    stack = f"Bulwark-test-{suffix}"
    queues = {"Dlq": f"stack-dlq-{suffix}", "Work": f"stack-work-{suffix}"}
    cfn.create_stack(StackName=stack, TemplateBody=json.dumps({
        "Resources": {logical: {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": name}}
                      for logical, name in queues.items()},
        "Outputs": {"DeadLetterQueueUrl": {"Value": {"Ref": "Dlq"}},
                    "WorkQueueUrl": {"Value": {"Ref": "Work"}}}}))
    cfn.create_stack(StackName=f"other-{suffix}", TemplateBody=json.dumps({"Resources": {
        "Dlq": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": f"other-{suffix}"}}}}))
    sqs = local_aws.client("sqs")
    dlq_url = sqs.get_queue_url(QueueName=queues["Dlq"])["QueueUrl"]
    work_url = sqs.get_queue_url(QueueName=queues["Work"])["QueueUrl"]
    dead_letter(SimpleNamespace(sqs=sqs, dlq=dlq_url), GOOD_BODY, GOOD_REASON)
    local = ["--endpoint-url", local_aws.endpoint_url, "--region", "us-east-1"]

    assert dlq.main([*local, "--stack", stack, "list", "--json"]) == 0
    assert [m["request_id"] for m in json.loads(capsys.readouterr().out)] == ["req-dlq-1"]
    assert dlq.main([*local, "--stack", stack, "redrive", "--all"]) == 0
    assert "1 moved" in capsys.readouterr().out
    assert len(drain(sqs, work_url)) == 1 and drain(sqs, dlq_url) == []

    assert dlq.main([*local, "--stack", f"other-{suffix}", "list"]) == 2
    assert (f"stack 'other-{suffix}' has no output DeadLetterQueueUrl, WorkQueueUrl: is it a "
            "Bulwark stack") in capsys.readouterr().err


def test_a_demo_runs_dead_letters_can_be_listed_and_inspected(tmp_path, capsys):
    recorded = tmp_path / "dead_letters.json"
    recorded.write_text(json.dumps([{
        "summary": {"message_id": "m-7"}, "attributes": {"SentTimestamp": "1800000000000"},
        "body": {**GOOD_BODY, "dlq_reason": GOOD_REASON}, "message_attributes": {},
        "text": json.dumps({**GOOD_BODY, "dlq_reason": GOOD_REASON})}]))
    assert dlq.main(["--local", str(recorded), "list"]) == 0
    listing = capsys.readouterr().out
    assert "m-7" in listing and "req-dlq-1" in listing and "1 dead-lettered message" in listing
    assert dlq.main(["--local", str(recorded), "inspect", "m-7", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["reason"] == GOOD_REASON
    assert dlq.main(["--local", str(recorded), "redrive", "--all"]) == 2
    assert "redrive needs the queues" in capsys.readouterr().err


def test_missing_region_or_credentials_give_a_hint(monkeypatch, capsys, tmp_path):
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert dlq.main(["--stack", "Bulwark-prod", "list"]) == 2
    assert "no AWS region: pass --region REGION" in capsys.readouterr().err
    assert dlq.main(["--stack", "Bulwark-prod", "--region", "us-east-1", "list"]) == 2
    assert "give credentials for the stack's account" in capsys.readouterr().err


def letter(text: str, attributes: dict | None = None) -> dlq.DeadLetter:
    return dlq.DeadLetter("m-1", "receipt", text, attributes or {}, {})


def test_what_is_redrivable_and_why_not():
    queue_moved = letter(json.dumps(GOOD_BODY), {"DeadLetterQueueSourceArn":
                                                 "arn:aws:sqs:us-east-1:123456789012:work"})
    assert queue_moved.reason == "moved by the work queue's redrive policy (maxReceiveCount)"
    assert queue_moved.dead_lettered_at is None
    assert dlq.redrive_envelope(queue_moved, NOW) == {**GOOD_BODY, "deferrals": 0,
                                                      "first_received_at": NOW}
    for text, why in (("not json", "not a JSON object"), ("[1, 2]", "not a JSON object"),
                      (json.dumps({"raw_body": "x", "dlq_reason": "r"}), "raw_body"),
                      (json.dumps({"request": "prompt text"}), "non-empty JSON object"),
                      (json.dumps({"dlq_reason": "r", "dead_lettered_at": 1}),
                       "non-empty JSON object")):
        assert letter(text).malformed
        with pytest.raises(dlq.NotRedrivable, match=why):
            dlq.redrive_envelope(letter(text), NOW)


# -- claim checks (a dead letter over the queue's size limit) -----------------------------------

def test_a_dead_letter_over_the_size_limit_is_a_claim_check_the_cli_follows(queues, local_aws):
    """A 190k-character CJK request with its transcript (~1.1 MB as UTF-8) is dead-lettered as
    a claim check; list and inspect read it, redrive sends it back as a claim check that the
    agent's own parser resolves."""
    from agent.payloads import PayloadStore
    from agent.requests import parse_work_message
    from tests.fixtures.agent_env import MAIN, MODELS, agent_config

    s3 = local_aws.client("s3")
    bucket = f"payloads-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    prompt = "漢" * 190_000
    request = {**GOOD_REQUEST, "prompt": prompt, "max_tokens": 64}
    body = {**GOOD_BODY, "request": request, "transcript": [{"role": "user", "content": prompt}]}
    runtime = SimpleNamespace(sqs=queues.sqs, config=SimpleNamespace(dlq_url=queues.dlq),
                              clock=lambda: DEAD_AT,
                              payloads=PayloadStore(s3, bucket, lambda: DEAD_AT))
    send_to_dlq(runtime, body, GOOD_REASON)
    [raw] = drain(queues.sqs, queues.dlq)
    assert len(raw["Body"].encode("utf-8")) < 1_048_576
    assert json.loads(raw["Body"])["s3_payload"]["bucket"] == bucket
    queues.sqs.change_message_visibility(QueueUrl=queues.dlq, ReceiptHandle=raw["ReceiptHandle"],
                                         VisibilityTimeout=0)

    def cli(*args):
        out, err = io.StringIO(), io.StringIO()
        code = dlq.main(["--queue-url", queues.dlq, "--work-queue-url", queues.work, *args],
                        sqs=queues.sqs, s3=s3, now=lambda: NOW, out=out, err=err)
        return code, out.getvalue()

    code, out = cli("list", "--json")
    [listed] = json.loads(out)
    assert code == 0 and (listed["request_id"], listed["tenant"], listed["reason"],
                          listed["malformed"]) == ("req-dlq-1", "acme", GOOD_REASON, False)
    shown = json.loads(cli("inspect", listed["message_id"], "--full", "--json")[1])
    assert shown["body"]["request"]["prompt"] == prompt

    code, out = cli("--json", "redrive", "--all")
    assert code == 0 and len(json.loads(out)["moved"]) == 1
    [sent] = drain(queues.sqs, queues.work)
    assert len(sent["Body"].encode("utf-8")) < 1_048_576
    tier2 = {**MODELS, MAIN: {**MODELS[MAIN], "itpm": 450_000}}
    message = parse_work_message(sent["Body"], agent_config(MODELS=json.dumps(tier2)), now=NOW,
                                 payloads=PayloadStore(s3, None))
    assert message.request.prompt == prompt and message.deferrals == 0
    assert message.first_received_at == NOW and message.transcript == body["transcript"]
    assert counts(queues.sqs, queues.dlq) == (0, 0)
