"""The collector: queued batch requests -> Message Batches, crash-safe.

One run (`Collector.run`):
1. Resume: an intent recorded by a run that died, or whose create was refused, is finished
   first. The API takes no idempotency key. A refusal (local, 4xx, 429, 529) proves no batch
   was created: create again. Only a create whose outcome is unknown (a 5xx, a timeout, a
   dropped connection, a run that died between the call and its record) may have created one:
   then the collector lists the batches created since that call and adopts one with the same
   number of requests that no other intent holds, provisionally. The poller confirms it when
   its results hold one of the intent's custom ids (which carry the intent id), never cancels
   it before, and releases it otherwise (no dead letter, no attempt counted).
2. Receive the batch queue; group by model; a group is submitted when it holds `max_items` or
   its oldest request has waited `max_wait_s` (a partial batch). Others go back to the queue.
3. Submit one batch (at most max_items, 100,000 requests, max_bytes): claim each request (a
   redelivered message is dropped as a duplicate), write the items, record the intent with the
   counter reservation (one transaction: `queued + n <= cap`), delete the messages, create,
   mark submitted. Every step is durable before the next; a crash anywhere resumes.

The collector runs one at a time (reserved concurrency 1): claims and adoption rely on it.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

from .api import BatchApi, KeyRefused, NotNow, Rejected, Unknown
from .config import HARD_MAX_REQUESTS, BatchConfig
from .outcomes import DeadLetters
from .state import BatchStore, Intent, QueueFull

#: seconds of clock skew tolerated between our clock and the API's created_at
ADOPT_SKEW_S = 120.0
RECEIVE_BATCH = 10


def custom_id(intent_id: str, index: int) -> str:
    """<intent id>-<index>: [A-Za-z0-9_-]{1,64}, as the API requires; unique per attempt."""
    return f"{intent_id}-{index}"


@dataclass
class Queued:
    """One received batch-queue message and its envelope."""

    receipt: str
    body: dict
    size: int
    #: deleted from the queue (held by an intent, or a duplicate): never released
    settled: bool = False

    @property
    def model(self) -> str:
        return self.body["request"]["model"]

    @property
    def queued_at(self) -> float:
        return float(self.body.get("queued_at", 0))


@dataclass
class RunSummary:
    resumed: int = 0
    adopted: int = 0
    submitted: list[str] = field(default_factory=list)
    items: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    waiting: int = 0
    stopped: str | None = None
    #: stopped because the API key was refused after a refresh
    key_refused: bool = False


class Collector:
    def __init__(self, config: BatchConfig, *, sqs, store: BatchStore, api: BatchApi,
                 dead_letters: DeadLetters | None = None,
                 params: Callable[[dict], dict] | None = None, metrics=None,
                 clock: Callable[[], float] = time.time,
                 checkpoint: Callable[[str], None] = lambda step: None,
                 new_id: Callable[[], str] = lambda: "i" + uuid.uuid4().hex[:15]) -> None:
        self.config = config
        self.sqs = sqs
        self.store = store
        self.api = api
        self.dead_letters = dead_letters or DeadLetters(config, sqs=sqs,
                                                        dynamodb=store.dynamodb, clock=clock)
        #: queued body -> the item's Messages params (the agent handler put them in the body)
        self.params = params or queued_params
        self.metrics = metrics
        self.clock = clock
        #: called between durable steps; tests raise from it to inject a crash
        self.checkpoint = checkpoint
        self.new_id = new_id

    # -- one run -------------------------------------------------------------------------

    def run(self, max_receive: int | None = None) -> RunSummary:
        summary = RunSummary()
        try:
            self.resume(summary)
            self.collect(summary, max_receive)
        except NotNow as wait:
            summary.stopped = str(wait)
        except KeyRefused as refused:
            summary.stopped, summary.key_refused = str(refused), True
        return summary

    def resume(self, summary: RunSummary) -> None:
        open_intents = self.store.intents()
        held = {i.batch_id for i in open_intents if i.batch_id}
        for intent in open_intents:
            if intent.state != "intent":
                continue
            summary.resumed += 1
            items = self.store.items(intent.intent_id)
            if len(items) != intent.n:  # cannot happen: items are written before the intent
                raise RuntimeError(f"intent {intent.intent_id}: {len(items)} items, expected "
                                   f"{intent.n}")
            items = self._sendable(intent, items, summary)
            if not items:  # nothing left to send: every item was dead-lettered
                self.store.abandon(intent)
                continue
            batch = self._adoptable(intent, len(items), held)
            if batch is not None:
                self.store.mark_submitted(intent, batch.id, provisional=True)
                held.add(batch.id)
                summary.adopted += 1
            else:
                self._create(intent, items, summary)

    def _sendable(self, intent: Intent, items: dict[str, dict], summary: RunSummary
                  ) -> dict[str, dict]:
        """The items still to send. One whose row cannot be read or whose params are not a
        Messages request is dead-lettered (answered with why) and left out; one already
        dead-lettered (by a run that died abandoning the intent) is left out."""
        sendable = {}
        for cid, item in items.items():
            if item["outcome"] is not None:
                continue
            problem = item["problem"]
            if problem is None:
                try:
                    self.params(item["body"])
                except (ValueError, KeyError, TypeError) as err:
                    problem = f"its params are not a Messages request ({err})"
            if problem is None:
                sendable[cid] = item
                continue
            reason = f"batch item could not be read: {problem}"
            self._dead_letter({"batch_item": cid, "tenant": item["tenant"],
                               "request_id": item["request_id"]}, reason, summary,
                              request={"tenant": item["tenant"],
                                       "request_id": item["request_id"]})
            self.store.mark_item(intent.intent_id, cid, f"dead-lettered: {reason}")
        return sendable

    def _adoptable(self, intent: Intent, n: int, held: set[str]):
        """A listed batch of `n` requests that may be this intent's (None: create one). Only
        after a create call whose outcome is unknown; never one another intent holds or this
        one released."""
        since = intent.maybe_created_since()
        if since is None:  # no create call, or every one refused: no batch of ours exists
            return None
        for batch in self.api.list_since(since - ADOPT_SKEW_S):
            counts = batch.request_counts
            total = (counts.processing + counts.succeeded + counts.errored
                     + counts.canceled + counts.expired)
            if batch.id not in held and batch.id not in intent.released and total == n:
                return batch
        return None

    def collect(self, summary: RunSummary, max_receive: int | None) -> None:
        limit = max_receive or max(self.config.max_items * 2, RECEIVE_BATCH)
        received: list[Queued] = []
        seen: set[str] = set()
        while len(received) < limit:
            page = self.sqs.receive_message(
                QueueUrl=self.config.queue_url, MaxNumberOfMessages=RECEIVE_BATCH,
                WaitTimeSeconds=0, VisibilityTimeout=self.config.visibility_timeout_s,
                MessageAttributeNames=["All"])
            messages = [m for m in page.get("Messages", []) if m["MessageId"] not in seen]
            if not messages:
                break
            for message in messages:
                seen.add(message["MessageId"])
                queued = self._parse(message, summary)
                if queued is not None:
                    received.append(queued)
        groups: dict[str, list[Queued]] = {}
        for queued in sorted(received, key=lambda q: q.queued_at):
            groups.setdefault(queued.model, []).append(queued)
        now = self.clock()
        for model, group in groups.items():
            while group:
                chunk = take_chunk(group, self.config.max_items, self.config.max_bytes)
                due = (len(chunk) >= self.config.max_items or len(chunk) < len(group)
                       or now - chunk[0].queued_at >= self.config.max_wait_s)
                if not due:
                    break
                try:
                    self.submit(model, chunk, summary)
                except (NotNow, QueueFull, KeyRefused) as wait:
                    summary.stopped = str(wait)
                    summary.key_refused = isinstance(wait, KeyRefused)
                    self._release([q for q in received if not q.settled])
                    return
                group = group[len(chunk):]
                groups[model] = group
        waiting = [q for g in groups.values() for q in g if not q.settled]
        summary.waiting = len(waiting)
        self._release(waiting)

    # -- steps ---------------------------------------------------------------------------

    def submit(self, model: str, chunk: list[Queued], summary: RunSummary) -> None:
        """Claim, write items, record the intent (+ counter), delete messages, create."""
        if not self.store.has_room(len(chunk), self.config.queue_cap):  # before any write
            raise QueueFull(f"the processing queue has no room for {len(chunk)} more requests "
                            f"(cap {self.config.queue_cap})")
        intent_id = self.new_id()
        claimed: list[Queued] = []
        for queued in chunk:
            request = queued.body["request"]
            if self.store.claim(request["tenant"], request["request_id"],
                                int(queued.body.get("attempt", 0)), intent_id):
                claimed.append(queued)
            else:  # a redelivery of a request a live intent holds
                summary.duplicates += 1
                self._delete([queued])
        self.checkpoint("claimed")
        if not claimed:
            return
        items = {custom_id(intent_id, i): q.body for i, q in enumerate(claimed)}
        self.store.put_items(intent_id, items.items())
        self.checkpoint("items_written")
        intent = Intent(intent_id, "intent", model, len(items), self.clock())
        try:
            self.store.record_intent(intent, self.config.queue_cap)
        except QueueFull:
            self.store.drop_items(intent_id)  # no orphan rows
            raise
        self.checkpoint("intent_recorded")
        self._delete(claimed)
        self.checkpoint("messages_deleted")
        self._create(intent, {cid: {"body": body} for cid, body in items.items()}, summary)

    def _create(self, intent: Intent, items: dict[str, dict], summary: RunSummary) -> None:
        requests = [{"custom_id": cid, "params": self.params(item["body"])}
                    for cid, item in sorted(items.items(), key=lambda kv: _index(kv[0]))]
        self.store.mark_attempt(intent)  # from here a batch of ours may exist
        try:
            batch = self.api.create(requests)
        except Unknown:  # may have been created: the next run lists before creating again
            raise
        except Rejected as err:
            self.store.clear_attempt(intent)
            self._abandon(intent, items, f"batch create refused: {err}", summary)
            return
        except (NotNow, KeyRefused):  # refused: nothing was created
            self.store.clear_attempt(intent)
            raise
        self.checkpoint("created")
        self.store.mark_submitted(intent, batch.id)
        self.checkpoint("submitted")
        summary.submitted.append(batch.id)
        summary.items += len(requests)
        if self.metrics is not None:
            self.metrics.add(intent.model, "BatchSubmitted", len(requests))

    def _abandon(self, intent: Intent, items: dict[str, dict], reason: str,
                 summary: RunSummary) -> None:
        """The API refused the batch for good: dead-letter the items with the reason (each
        answered with it; a request the API refuses would be refused again), then release
        the reservation."""
        for cid, item in items.items():
            if item.get("outcome") is not None:  # dead-lettered by a run that died
                continue
            self._dead_letter(item["body"], reason, summary)
            self.store.mark_item(intent.intent_id, cid, f"dead-lettered: {reason}")
        self.store.abandon(intent)

    # -- queue plumbing ------------------------------------------------------------------

    def _parse(self, message: dict, summary: RunSummary) -> Queued | None:
        raw = message.get("Body", "")
        body: object = None
        try:
            body = json.loads(raw)
            request = body["request"]
            if request["model"] not in self.config.models:
                raise ValueError(f"unknown model {request['model']!r}")
            for key in ("tenant", "request_id"):
                if not isinstance(request.get(key), str):
                    raise ValueError(f"request.{key} missing")
            self.params(body)
        except (ValueError, KeyError, TypeError) as err:
            request = body.get("request") if isinstance(body, dict) else None
            self._dead_letter({"raw_body": raw}, f"malformed batch message: {err}", summary,
                              request=request if isinstance(request, dict) else None)
            self._delete([Queued(message["ReceiptHandle"], {}, 0)])
            return None
        return Queued(message["ReceiptHandle"], body, len(json.dumps(
            {"custom_id": "i" * 20, "params": self.params(body)}).encode()))

    def _dead_letter(self, body: dict, reason: str, summary: RunSummary,
                     request: dict | None = None) -> None:
        self.dead_letters.send(body, reason, request=request)
        summary.dead_lettered += 1

    def _delete(self, messages: list[Queued]) -> None:
        for queued in messages:
            queued.settled = True
        for start in range(0, len(messages), 10):
            part = messages[start:start + 10]
            self.sqs.delete_message_batch(QueueUrl=self.config.queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": q.receipt} for i, q in enumerate(part)])

    def _release(self, messages: list[Queued]) -> None:
        """Back to the queue at once for the next run (they keep their queued_at)."""
        for start in range(0, len(messages), 10):
            part = messages[start:start + 10]
            self.sqs.change_message_visibility_batch(QueueUrl=self.config.queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": q.receipt, "VisibilityTimeout": 0}
                for i, q in enumerate(part)])


def queued_params(body: dict) -> dict:
    """The Messages params a queued body carries (written by the agent handler)."""
    params = body["params"]
    if not isinstance(params, dict) or params.get("model") != body["request"]["model"]:
        raise ValueError("params must be the Messages request for request.model")
    return params


def _index(cid: str) -> int:
    return int(cid.rsplit("-", 1)[1])


def take_chunk(group: list[Queued], max_items: int, max_bytes: int) -> list[Queued]:
    """The oldest requests of `group` that fit one batch: at most max_items (and the API's
    100,000) and max_bytes of request JSON (the API's 256 MB). Never empty."""
    limit = min(max_items, HARD_MAX_REQUESTS)
    chunk, size = [], 2  # the JSON list's brackets
    for queued in group:
        if len(chunk) >= limit or (chunk and size + queued.size + 1 > max_bytes):
            break
        chunk.append(queued)
        size += queued.size + 1
    return chunk
