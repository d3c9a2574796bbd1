"""The poller: submitted batches -> answers in the results table, retries, the DLQ.

For each submitted batch: retrieve it; while processing, wait (or cancel it after
`cancel_after_s`); once ended, read its results (JSONL) and act on each item once:
- succeeded: store the answer (conditional put: once per request id), cost it at the batch
  price (50% of the model's prices), emit BatchSucceeded / BatchCostUSD / BatchSavedUSD;
- errored with a transient type (overloaded_error, api_error, rate_limit_error), expired or
  canceled: back to the batch queue with attempt + 1, at most `max_retries` times;
- any other error, and exhausted retries: the DLQ with the reason, and an error answer stored
  so `get_result` stops saying "queued";
- an item the results do not mention (or whose line is malformed): retried like a transient
  error.
Each item's outcome is recorded after its action, so a crash repeats at most that action, and
the action is idempotent (conditional put; a requeued duplicate is dropped by the collector's
claim). Then the batch closes: state "done" and the counter released, in one transaction.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Callable

from ..results import put_result_once
from .api import BatchApi, NotNow, Rejected, classify, parse_line
from .config import BatchConfig
from .state import BatchStore, Intent

BATCH_DISCOUNT = 0.5


@dataclass
class PollSummary:
    checked: int = 0
    ended: int = 0
    succeeded: int = 0
    retried: int = 0
    dead_lettered: int = 0
    expired: int = 0
    errored: int = 0
    canceled: int = 0
    malformed: int = 0
    duplicates: int = 0
    cost_usd: float = 0.0
    standard_usd: float = 0.0
    in_flight: int = 0
    stopped: str | None = None
    batches: dict = field(default_factory=dict)


class Poller:
    def __init__(self, config: BatchConfig, *, sqs, dynamodb, store: BatchStore, api: BatchApi,
                 metrics=None, clock: Callable[[], float] = time.time,
                 checkpoint: Callable[[str], None] = lambda step: None) -> None:
        self.config = config
        self.sqs = sqs
        self.dynamodb = dynamodb
        self.store = store
        self.api = api
        self.metrics = metrics
        self.clock = clock
        self.checkpoint = checkpoint

    def run(self) -> PollSummary:
        summary = PollSummary()
        try:
            for intent in self.store.intents(("submitted",)):
                summary.checked += 1
                self.poll(intent, summary)
        except NotNow as wait:
            summary.stopped = str(wait)
        summary.in_flight = self.store.queued()
        if self.metrics is not None:  # in flight per model, 0 included (a gauge)
            held = {model: 0 for model in self.config.models}
            for intent in self.store.intents():
                held[intent.model] = held.get(intent.model, 0) + intent.n
            for model, n in held.items():
                self.metrics.add(model, "BatchInFlight", n)
        return summary

    def poll(self, intent: Intent, summary: PollSummary) -> None:
        batch = self.api.retrieve(intent.batch_id)
        summary.batches[intent.batch_id] = batch.processing_status
        if batch.processing_status != "ended":
            limit = self.config.cancel_after_s
            if (limit is not None and batch.processing_status == "in_progress"
                    and self.clock() - (intent.submitted_at or intent.created_at) > limit):
                self.api.cancel(intent.batch_id)  # its items come back "canceled": retried
            return
        self.checkpoint("retrieved")
        items = self.store.items(intent.intent_id)
        seen: set[str] = set()
        try:
            lines = self.api.result_lines(intent.batch_id)
            for line in lines:
                cid, result, problem = parse_line(line)
                if problem is not None:
                    summary.malformed += 1
                    continue  # its item is handled below, as missing
                if cid not in items or cid in seen:
                    continue  # not ours (or repeated): results are matched by custom_id
                seen.add(cid)
                if items[cid]["outcome"] is None:
                    self.act(intent, cid, items[cid]["body"], result, summary)
        except Rejected:  # results gone (e.g. past 29 days): every item is retried below
            pass
        for cid, item in items.items():
            if cid not in seen and item["outcome"] is None:
                missing = {"type": "errored", "error": {"type": "api_error",
                                                        "message": "no result for this item"}}
                self.act(intent, cid, item["body"], missing, summary)
        self.checkpoint("items_done")
        if self.store.finish(intent):
            summary.ended += 1

    def act(self, intent: Intent, cid: str, body: dict, result: dict,
            summary: PollSummary) -> None:
        request = body["request"]
        model = request["model"]
        verdict, reason = classify(result)
        if result["type"] == "expired":
            summary.expired += 1
            self._metric(model, "BatchExpired")
        elif result["type"] == "canceled":
            summary.canceled += 1
        elif result["type"] == "errored":
            summary.errored += 1
            self._metric(model, "BatchErrored")
        if verdict == "succeeded":
            self._answer(intent, body, result["message"], summary)
            outcome = "succeeded"
        elif verdict == "retry" and int(body.get("attempt", 0)) < self.config.max_retries:
            self.sqs.send_message(QueueUrl=self.config.queue_url, MessageBody=json.dumps(
                {**body, "attempt": int(body.get("attempt", 0)) + 1, "retry_reason": reason},
                default=str))
            summary.retried += 1
            outcome = f"retried: {reason}"
        else:
            if verdict == "retry":
                reason = f"{reason} after {body.get('attempt', 0)} retries (BATCH_MAX_RETRIES)"
            self._dead_letter(body, reason)
            summary.dead_lettered += 1
            outcome = f"dead-lettered: {reason}"
        self.checkpoint("item_acted")
        self.store.mark_item(intent.intent_id, cid, outcome)
        self.checkpoint("item_marked")

    def _answer(self, intent: Intent, body: dict, message: dict, summary: PollSummary) -> None:
        request = body["request"]
        model = self.config.models[request["model"]]
        usage = {k: int((message.get("usage") or {}).get(k) or 0) for k in (
            "input_tokens", "output_tokens", "cache_creation_input_tokens",
            "cache_read_input_tokens")}
        standard = model.prices.cost_usd(usage)
        cost = standard * BATCH_DISCOUNT  # exact: halving a float loses nothing
        output = "".join(block.get("text", "") for block in message.get("content") or []
                         if isinstance(block, dict) and block.get("type") == "text")
        response = {"status": "ok", "request_id": request["request_id"],
                    "model": request["model"], "lane": "batch", "output": output,
                    "usage": usage, "cost_usd": cost, "batch_id": intent.batch_id}
        stored = put_result_once(self.dynamodb, self.config.results_table,
                                 request["tenant"], request["request_id"], response,
                                 int(self.clock() + self.config.result_ttl_s))
        if not stored:  # answered already (a duplicate): neither counted nor costed again
            summary.duplicates += 1
            return
        summary.succeeded += 1
        summary.cost_usd += cost
        summary.standard_usd += standard
        self._metric(request["model"], "BatchSucceeded")
        self._metric(request["model"], "BatchCostUSD", cost)
        self._metric(request["model"], "BatchSavedUSD", standard - cost)
        for name, key in (("InputTokens", "input_tokens"), ("OutputTokens", "output_tokens")):
            self._metric(request["model"], name, usage[key])

    def _dead_letter(self, body: dict, reason: str) -> None:
        request = body["request"]
        self.sqs.send_message(
            QueueUrl=self.config.dlq_url,
            MessageBody=json.dumps({**body, "dlq_reason": reason,
                                    "dead_lettered_at": self.clock()}, default=str),
            MessageAttributes={"reason": {"DataType": "String", "StringValue": reason[:256]}})
        put_result_once(self.dynamodb, self.config.results_table, request["tenant"],
                        request["request_id"],
                        {"status": "error", "request_id": request["request_id"],
                         "lane": "batch", "model": request["model"],
                         "error": {"type": "batch_failed", "message": reason}},
                        int(self.clock() + self.config.result_ttl_s))

    def _metric(self, model: str, name: str, value: float = 1.0) -> None:
        if self.metrics is not None:
            self.metrics.add(model, name, value)
