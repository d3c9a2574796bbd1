"""Dead letters as the DLQ holds them (`DeadLetter`: the original request, why and when it was
dead-lettered, a claim check followed to the payload bucket), and reading them without
deleting: scan, release, list, inspect."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from typing import Any, Callable, Iterable

from agent.payloads import POINTER, PayloadError, PayloadStore, pointer_of
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
