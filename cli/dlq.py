"""Dead-lettered agent requests: list, inspect, redrive.

    python -m cli.dlq (--queue-url URL [--work-queue-url URL] | --stack STACK_NAME [--region R])
                      list [--json]
                      inspect MESSAGE_ID [--full] [--json]
                      redrive (--id MESSAGE_ID ... | --all) [--json]

The DLQ holds what the agent dead-lettered with `agent.queues.send_to_dlq` (the original body
plus "dlq_reason" and "dead_lettered_at", and a "reason" message attribute; a body that was
not a JSON object is kept as {"raw_body": ...}) and what the work queue's redrive policy moved
there after too many receives (the original body, unchanged, with the DeadLetterQueueSourceArn
attribute).

* list / inspect never delete: they receive every visible message (hidden for a few seconds so
  the next receive returns the others), then make them visible again at once
  (ChangeMessageVisibility 0). Messages another consumer holds at that moment are not seen.
* redrive sends the original request back to the work queue as a fresh envelope (deferrals 0,
  first_received_at now, transcript and model kept, dlq_reason/dead_lettered_at removed) and
  deletes the DLQ message only after the send succeeded. Malformed originals (raw_body, or a
  request that is not a JSON object) are not redriven: they are reported and stay.
* A message over the queue's size limit is a claim check ({"s3_payload": {bucket, key, ...},
  "request_id", "tenant", and for a dead letter "dlq_reason" and "dead_lettered_at"): list,
  inspect and redrive follow it to the payload bucket (`agent.payloads`), and a redriven
  envelope that is still too large goes back as a new claim check in the same bucket.
* --stack finds the queue URLs in the stack's outputs (DeadLetterQueueUrl, WorkQueueUrl);
  --endpoint-url (or AWS_ENDPOINT_URL) points at local AWS (`python -m local.demo.deploy --keep`
  prints it). --local out/demo/dead_letters.json lists and inspects what a demo run left.

Exit status: 0; 1 when a message was not found or a redrive failed; 2 for bad options or an AWS
problem.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from functools import cached_property
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from botocore.exceptions import BotoCoreError, ClientError

from agent.payloads import (MAX_INLINE_MESSAGE_BYTES, POINTER, PayloadError, PayloadStore,
                            fit_text, pointer_of)
from cli import aws
from cli.table import aligned, cut
from stacks import outputs

#: Body fields the handler adds when dead-lettering; a redrive removes them.
DLQ_FIELDS = ("dlq_reason", "dead_lettered_at")
#: Seconds received messages stay hidden while a scan lasts (then they are made visible).
SCAN_VISIBILITY_S = 30
REDRIVE_VISIBILITY_S = 120
MAX_SCAN = 10_000
PROMPT_CHARS = 200
RAW_CHARS = 2_000
REASON_CHARS = 80


class DlqError(Exception):
    """A problem the operator must fix; main() prints it (status 2)."""


@dataclass
class DeadLetter:
    """One DLQ message, as received. `payloads`: where a claim check's body is read (None:
    claim checks are shown as they are and not redriven)."""

    message_id: str
    receipt_handle: str
    text: str
    attributes: dict
    message_attributes: dict
    payloads: PayloadStore | None = None

    @cached_property
    def body(self) -> Any:
        """The parsed body; a claim check's stored body with the dead letter's own fields."""
        try:
            body = json.loads(self.text)
        except (ValueError, TypeError):
            return None
        if pointer_of(body) is None or self.payloads is None:
            return body
        try:
            stored = json.loads(self.payloads.get(body))
        except (PayloadError, ValueError) as err:
            return {**body, "claim_check_error": str(err)}
        if not isinstance(stored, dict):
            return body
        return {**stored, **{k: body[k] for k in DLQ_FIELDS if k in body}}

    @property
    def request(self) -> dict | None:
        body = self.body
        if not isinstance(body, dict) or "raw_body" in body or POINTER in body:
            return None
        request = body.get("request") if "request" in body else \
            {k: v for k, v in body.items() if k not in DLQ_FIELDS}
        return request if isinstance(request, dict) and request else None

    @property
    def malformed(self) -> bool:
        """Not redrivable: not JSON, a raw_body, or a request that is not a non-empty object."""
        return self.request is None

    @property
    def reason(self) -> str:
        body = self.body
        if isinstance(body, dict) and body.get("dlq_reason"):
            return str(body["dlq_reason"])
        attribute = (self.message_attributes.get("reason") or {}).get("StringValue")
        if attribute:
            return attribute
        if self.attributes.get("DeadLetterQueueSourceArn"):
            return "moved by the work queue's redrive policy (maxReceiveCount)"
        return "-"

    @property
    def dead_lettered_at(self) -> str | None:
        body = self.body
        # A move by the redrive policy has no time: SQS keeps SentTimestamp of the first send.
        return iso(body.get("dead_lettered_at") if isinstance(body, dict) else None)

    def summary(self) -> dict:
        body = self.body
        # an unread claim check names its request at the top level
        request = self.request or (body if isinstance(body, dict) and POINTER in body else {})
        deferrals = body.get("deferrals") if isinstance(body, dict) else None
        return {"message_id": self.message_id, "request_id": request.get("request_id"),
                "tenant": request.get("tenant"), "reason": self.reason,
                "dead_lettered_at": self.dead_lettered_at, "deferrals": deferrals,
                "malformed": self.malformed}


def iso(epoch: Any) -> str | None:
    try:
        seconds = float(epoch)
    except (TypeError, ValueError):
        return None
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat(timespec="seconds") \
        .replace("+00:00", "Z")


# -- queues --------------------------------------------------------------------------------------

def resolve_queue_urls(cloudformation: Any, stack_name: str) -> tuple[str, str]:
    """(DLQ URL, work queue URL) of a Bulwark stack, from its outputs."""
    try:
        found = outputs.stack_outputs(cloudformation, stack_name, need=(
            outputs.DEAD_LETTER_QUEUE_URL, outputs.WORK_QUEUE_URL))
    except outputs.StackOutputsError as err:
        raise DlqError(str(err)) from None
    return found[outputs.DEAD_LETTER_QUEUE_URL], found[outputs.WORK_QUEUE_URL]


def scan(sqs: Any, queue_url: str, *, visibility_s: int = SCAN_VISIBILITY_S,
         wait_s: int = 1, max_messages: int = MAX_SCAN,
         stop_when: Callable[[list[DeadLetter]], bool] | None = None,
         payloads: PayloadStore | None = None) -> list[DeadLetter]:
    """Receive every visible message once, keeping each hidden for `visibility_s` s so the next
    receive returns others. The caller must `release` (or delete) what this returns.
    Stops at an empty receive (long polling asks every SQS server), at a receive of only
    messages already seen (their visibility ran out), at `max_messages` or when `stop_when`
    says so. `payloads`: where the letters read their claim checks."""
    found: dict[str, DeadLetter] = {}
    try:
        while len(found) < max_messages:
            response = sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=visibility_s,
                WaitTimeSeconds=wait_s, AttributeNames=["All"], MessageAttributeNames=["All"])
            messages = response.get("Messages") or []
            new = 0
            for message in messages:
                letter = DeadLetter(message["MessageId"], message["ReceiptHandle"],
                                    message.get("Body", ""), message.get("Attributes") or {},
                                    message.get("MessageAttributes") or {}, payloads)
                if letter.message_id not in found:
                    new += 1
                found[letter.message_id] = letter  # the newest receipt handle counts
            if not messages or not new:
                break
            if stop_when and stop_when(list(found.values())):
                break
    except BaseException:
        release(sqs, queue_url, found.values())
        raise
    return list(found.values())


def release(sqs: Any, queue_url: str, letters: Iterable[DeadLetter]) -> list[str]:
    """Make received messages visible again now; returns the ids that could not be."""
    letters, failed = list(letters), []
    for i in range(0, len(letters), 10):
        chunk = letters[i:i + 10]
        response = sqs.change_message_visibility_batch(QueueUrl=queue_url, Entries=[
            {"Id": str(n), "ReceiptHandle": letter.receipt_handle, "VisibilityTimeout": 0}
            for n, letter in enumerate(chunk)])
        failed += [chunk[int(f["Id"])].message_id for f in response.get("Failed") or []]
    return failed


def list_dead_letters(sqs: Any, dlq_url: str, *, wait_s: int = 1,
                      payloads: PayloadStore | None = None) -> list[DeadLetter]:
    """Every visible DLQ message, left in the queue and visible again (`wait_s`: the long poll
    of each receive, seconds)."""
    letters = scan(sqs, dlq_url, wait_s=wait_s, payloads=payloads)
    release(sqs, dlq_url, letters)
    return letters


def shorten(body: Any, *, full: bool = False) -> Any:
    """The body for display: the prompt cut to PROMPT_CHARS, a transcript as its length and a
    raw body cut to RAW_CHARS, unless `full`."""
    if full or not isinstance(body, dict):
        return body
    body = dict(body)
    request = body.get("request") if isinstance(body.get("request"), dict) else body
    if request is not body:
        request = body["request"] = dict(request)
    prompt = request.get("prompt")
    if isinstance(prompt, str) and len(prompt) > PROMPT_CHARS:
        request["prompt"] = (f"{prompt[:PROMPT_CHARS]}... [{len(prompt):,} characters; "
                             "--full shows all]")
    if isinstance(body.get("transcript"), list):
        body["transcript"] = f"[{len(body['transcript'])} messages; --full shows them]"
    raw = body.get("raw_body")
    if isinstance(raw, str) and len(raw) > RAW_CHARS:
        body["raw_body"] = f"{raw[:RAW_CHARS]}... [{len(raw):,} characters; --full shows all]"
    return body


def inspect(sqs: Any, dlq_url: str, message_id: str, *, full: bool = False,
            payloads: PayloadStore | None = None) -> dict | None:
    """One message in full (None when not in the queue); it stays in the queue."""
    letters = scan(sqs, dlq_url, stop_when=lambda seen: any(
        letter.message_id == message_id for letter in seen), payloads=payloads)
    release(sqs, dlq_url, letters)
    for letter in letters:
        if letter.message_id == message_id:
            body = letter.body
            return {**letter.summary(),
                    "attributes": {k: letter.attributes[k] for k in sorted(letter.attributes)},
                    "sent_at": iso(float(letter.attributes["SentTimestamp"]) / 1000)
                    if "SentTimestamp" in letter.attributes else None,
                    "body": shorten(body, full=full) if body is not None else letter.text}
    return None


class NotRedrivable(ValueError):
    pass


def redrive_envelope(letter: DeadLetter, now: float) -> dict:
    """The work-queue envelope that replays `letter`'s request from the start of its budget."""
    body = letter.body
    if not isinstance(body, dict):
        raise NotRedrivable("malformed original: the body is not a JSON object")
    if "raw_body" in body:
        raise NotRedrivable("malformed original (raw_body): not redriven")
    if POINTER in body:
        raise NotRedrivable("claim check not read: "
                            + body.get("claim_check_error", "no payload bucket client"))
    if letter.request is None:
        raise NotRedrivable("malformed original: its request is not a non-empty JSON object")
    clean = {k: v for k, v in body.items() if k not in DLQ_FIELDS}
    envelope = dict(clean) if "request" in clean else {"request": clean}
    envelope["deferrals"] = 0
    envelope["first_received_at"] = now
    return envelope


def _work_body(letter: DeadLetter, envelope: dict) -> str:
    """The work-queue body of a redrive: the envelope, or a new claim check in the bucket the
    dead letter's own claim check named when it is too large to send inline."""
    original = pointer_of(json.loads(letter.text))
    store = None if original is None or letter.payloads is None else PayloadStore(
        letter.payloads.s3, original["bucket"], letter.payloads.clock)
    request = envelope["request"]
    return fit_text(store, envelope, limit=MAX_INLINE_MESSAGE_BYTES, kind="queue",
                    tenant=str(request.get("tenant")), request_id=str(request.get("request_id")))


@dataclass
class RedriveReport:
    moved: list[dict]
    kept: list[dict]
    failed: list[dict]
    not_found: list[str]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.not_found

    def to_json(self) -> dict:
        return {"moved": self.moved, "kept": self.kept, "failed": self.failed,
                "not_found": self.not_found}


def redrive(sqs: Any, dlq_url: str, work_queue_url: str, *, ids: Iterable[str] | None = None,
            every: bool = False, now: Callable[[], float] = time.time,
            payloads: PayloadStore | None = None) -> RedriveReport:
    """Move the chosen DLQ messages (`ids`, or all with `every`) back to the work queue.

    Each message is deleted from the DLQ only after its send succeeded; malformed ones stay
    (reported in `kept`), as do failed ones (`failed`)."""
    wanted = None if every else list(dict.fromkeys(ids or []))
    if wanted is not None and not wanted:
        raise DlqError("redrive needs --id MESSAGE_ID ... or --all")
    stop = None if wanted is None else (lambda seen: set(wanted) <= {s.message_id for s in seen})
    letters = scan(sqs, dlq_url, visibility_s=REDRIVE_VISIBILITY_S, stop_when=stop,
                   payloads=payloads)
    chosen = [s for s in letters if wanted is None or s.message_id in wanted]
    report = RedriveReport([], [], [], [])
    if wanted is not None:
        found = {s.message_id for s in chosen}
        report.not_found = [i for i in wanted if i not in found]
    chosen_ids = {s.message_id for s in chosen}
    to_release = [s for s in letters if s.message_id not in chosen_ids]
    for letter in chosen:
        summary = letter.summary()
        try:
            envelope = redrive_envelope(letter, now())
        except NotRedrivable as why:
            report.kept.append({**summary, "why": str(why)})
            to_release.append(letter)
            continue
        try:
            sent = sqs.send_message(QueueUrl=work_queue_url,
                                    MessageBody=_work_body(letter, envelope))
        except Exception as err:  # noqa: BLE001 - reported; the message stays in the DLQ
            report.failed.append({**summary, "why": f"send failed: {err}"})
            to_release.append(letter)
            continue
        moved = {**summary, "work_queue_message_id": sent.get("MessageId")}
        try:
            sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=letter.receipt_handle)
        except Exception as err:  # noqa: BLE001
            report.failed.append({**moved, "why": f"sent to the work queue but NOT deleted "
                                                  f"from the DLQ ({err}); the request id "
                                                  "makes a second run of a finished request "
                                                  "return its stored answer"})
            continue
        report.moved.append(moved)
    release(sqs, dlq_url, to_release)
    return report


# -- output --------------------------------------------------------------------------------------

def render_list(letters: list[DeadLetter]) -> str:
    if not letters:
        return "the dead-letter queue is empty"
    headers = ["MESSAGE ID", "REQUEST", "TENANT", "DEAD-LETTERED AT", "DEFERRALS", "REASON"]
    rows = []
    for letter in letters:
        s = letter.summary()
        rows.append([s["message_id"], s["request_id"] or ("(malformed)" if s["malformed"]
                                                          else "-"),
                     s["tenant"] or "-", s["dead_lettered_at"] or "-",
                     "-" if s["deferrals"] is None else str(s["deferrals"]),
                     cut(s["reason"], REASON_CHARS)])
    lines = aligned([headers, *rows])
    malformed = sum(s.malformed for s in letters)
    lines.append(f"{len(letters)} dead-lettered message{'s' if len(letters) != 1 else ''}"
                 + (f", {malformed} malformed (not redrivable)" if malformed else ""))
    return "\n".join(lines)


def render_redrive(report: RedriveReport) -> str:
    lines = []
    for m in report.moved:
        lines.append(f"moved      {m['message_id']}  request {m['request_id']} "
                     f"({m['tenant'] or '-'}) -> work queue as {m['work_queue_message_id']}")
    for k in report.kept:
        lines.append(f"kept       {k['message_id']}  {k['why']}")
    for f in report.failed:
        lines.append(f"FAILED     {f['message_id']}  {f['why']}")
    for i in report.not_found:
        lines.append(f"not found  {i}")
    lines.append(f"{len(report.moved)} moved, {len(report.kept)} kept (malformed), "
                 f"{len(report.failed)} failed, {len(report.not_found)} not found")
    return "\n".join(lines)


class _RecordedQueue:
    """The SQS calls list/inspect make, answered from a demo's dead_letters.json (the messages
    as the demo's final scan received them)."""

    def __init__(self, path: str) -> None:
        with open(path, encoding="utf-8") as handle:
            self.saved = json.load(handle)
        self.served = False

    def receive_message(self, **_):
        if self.served:
            return {"Messages": []}
        self.served = True
        return {"Messages": [{
            "MessageId": item["summary"]["message_id"], "ReceiptHandle": str(n),
            "Body": item.get("text", json.dumps(item.get("body"))),
            "Attributes": item.get("attributes") or {},
            "MessageAttributes": item.get("message_attributes") or {}}
            for n, item in enumerate(self.saved)]}

    def change_message_visibility_batch(self, **_):
        return {"Failed": []}


# -- command line --------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cli.dlq",
                                description="List, inspect and redrive dead-lettered agent "
                                            "requests.")
    p.add_argument("--queue-url", help="the dead-letter queue's URL")
    p.add_argument("--work-queue-url", help="the work queue's URL (redrive)")
    p.add_argument("--stack", metavar="STACK_NAME",
                   help="a deployed Bulwark stack (finds both queues)")
    p.add_argument("--local", metavar="DEAD_LETTERS_JSON",
                   help="a demo run's out/demo/dead_letters.json (list and inspect only)")
    p.add_argument("--region", help="the stack's region (default: the AWS configuration's)")
    p.add_argument("--endpoint-url", default=os.environ.get("AWS_ENDPOINT_URL"),
                   help="AWS endpoint, e.g. local AWS's http://127.0.0.1:PORT")
    p.add_argument("--json", action="store_true", help="print JSON")
    json_too = argparse.ArgumentParser(add_help=False)
    json_too.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                          help="print JSON")
    commands = p.add_subparsers(dest="command", required=True)
    commands.add_parser("list", parents=[json_too],
                        help="every dead-lettered message, without deleting any")
    inspect_ = commands.add_parser("inspect", parents=[json_too], help="one message in full")
    inspect_.add_argument("message_id", metavar="MESSAGE_ID")
    inspect_.add_argument("--full", action="store_true",
                          help="do not shorten the prompt, transcript or raw body")
    redrive_ = commands.add_parser("redrive", parents=[json_too],
                                   help="send requests back to the work queue")
    which = redrive_.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", dest="ids", metavar="MESSAGE_ID", nargs="+", action="extend",
                       help="the messages to redrive")
    which.add_argument("--all", action="store_true", help="every message")
    return p


def main(argv: list[str] | None = None, *, sqs: Any = None, cloudformation: Any = None,
         s3: Any = None, now: Callable[[], float] = time.time, out=None, err=None) -> int:
    """Run the command; returns the exit status. `sqs` / `cloudformation` / `s3` (claim
    checks) replace the boto3 clients main() would build."""
    out, err = out or sys.stdout, err or sys.stderr
    args = parser().parse_args(argv)
    try:
        if sum(map(bool, (args.stack, args.queue_url, args.local))) > 1 or (
                args.work_queue_url and not args.queue_url):
            raise DlqError("give one of --stack, --queue-url (with --work-queue-url) or --local")
        if not args.stack and not args.queue_url and not args.local:
            raise DlqError("give --stack STACK_NAME, --queue-url URL or --local FILE")
        if args.local:
            if args.command == "redrive":
                raise DlqError("--local is a record of a finished run: redrive needs the "
                               "queues (--stack or --queue-url against a running AWS)")
            sqs, dlq_url = _RecordedQueue(args.local), "recorded"
        if args.command == "redrive" and not args.stack and not args.work_queue_url:
            raise DlqError("redrive needs --work-queue-url URL (or --stack)")
        if sqs is None or (args.stack and cloudformation is None):
            made = aws.clients(("sqs", "cloudformation", "s3"), region=args.region,
                               endpoint_url=args.endpoint_url)
            sqs = sqs or made["sqs"]
            cloudformation = cloudformation or made["cloudformation"]
            s3 = s3 or made["s3"]
        if args.stack:
            dlq_url, work_url = resolve_queue_urls(cloudformation, args.stack)
        elif not args.local:
            dlq_url, work_url = args.queue_url, args.work_queue_url
        # a claim check names its bucket: the store only needs the client
        payloads = PayloadStore(s3, None, now) if s3 is not None else None

        if args.command == "list":
            letters = list_dead_letters(sqs, dlq_url, payloads=payloads)
            print(json.dumps([s.summary() for s in letters], indent=2) if args.json
                  else render_list(letters), file=out)
            return 0
        if args.command == "inspect":
            found = inspect(sqs, dlq_url, args.message_id, full=args.full,
                            payloads=payloads)
            if found is None:
                print(f"message {args.message_id} is not in the dead-letter queue (or another "
                      "consumer holds it right now)", file=err)
                return 1
            if args.json:
                print(json.dumps(found, indent=2, default=str), file=out)
            else:
                for key in ("message_id", "request_id", "tenant", "reason", "dead_lettered_at",
                            "deferrals", "sent_at"):
                    print(f"{key + ':':18}{'-' if found[key] is None else found[key]}", file=out)
                print("body:", file=out)
                print(json.dumps(found["body"], indent=2, default=str)
                      if not isinstance(found["body"], str) else found["body"], file=out)
            return 0
        report = redrive(sqs, dlq_url, work_url, ids=args.ids, every=args.all, now=now,
                         payloads=payloads)
        print(json.dumps(report.to_json(), indent=2, default=str) if args.json
              else render_redrive(report), file=out)
        return 0 if report.ok else 1
    except (DlqError, BotoCoreError, ClientError, OSError) as problem:  # credentials, missing
        print(f"error: {aws.explain(problem)}", file=err)
        return 2


if __name__ == "__main__":
    sys.exit(main())
