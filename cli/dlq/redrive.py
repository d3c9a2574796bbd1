"""Redrive: a dead letter's original request back to the work queue as a fresh envelope, the
DLQ message deleted only after the send succeeded."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from agent.payloads import MAX_INLINE_MESSAGE_BYTES, POINTER, PayloadStore, fit_text, pointer_of

from .letters import DLQ_FIELDS, REDRIVE_VISIBILITY_S, DeadLetter, DlqError, release, scan


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
