"""The poller: submitted batches -> answers in the results table, retries, the DLQ.

For each submitted batch: retrieve it; while processing, wait (or cancel it after
`cancel_after_s`); once ended, read its results (JSONL) and act on each item once:
- succeeded: store the answer (conditional put: once per request id), cost it at the batch
  price (50% of the model's prices), emit BatchSucceeded / BatchCostUSD / BatchSavedUSD,
  and charge that cost to the budget scopes a request queued for a spent budget names;
- errored with a transient type (overloaded_error, api_error, rate_limit_error), expired or
  canceled: back to the batch queue with attempt + 1, at most `max_retries` times;
- any other error, and exhausted retries: the DLQ with the reason, and an error answer stored
  so `get_result` stops saying "queued";
- an item the results do not mention (or whose line is malformed): retried like a transient
  error;
- an item whose answer cannot be stored, or whose row or result cannot be read: an error answer
  and the DLQ with the reason; the others proceed (the store's passing trouble, a throttle or a
  timeout, stops the run instead: the next run acts on the item again).
A batch adopted provisionally (see the collector) is never cancelled; the first of the intent's
custom ids in its results confirms it; results without any release it back to the collector.
A 401 after a key refresh stops the run: no item is retried or dead-lettered for it.
Each item's outcome is recorded after its action, so a crash repeats at most that action, and
the action is idempotent (conditional put; a requeued duplicate is dropped by the collector's
claim). Then the batch closes: state "done" and the counter released, in one transaction.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from guard.budget import BudgetLedger
from guard.usage import Usage

from ..payloads import PayloadStore, transient
from ..results import put_result_once
from .api import BatchApi, KeyRefused, NotNow, Rejected, classify, parse_line
from .config import BatchConfig
from .outcomes import DeadLetters
from .state import BatchStore, Intent

log = logging.getLogger(__name__)

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
    #: provisionally adopted batches shown not to be ours (their intents create again)
    released: int = 0
    stopped: str | None = None
    #: stopped because the API key was refused after a refresh
    key_refused: bool = False
    batches: dict = field(default_factory=dict)


class Poller:
    def __init__(self, config: BatchConfig, *, sqs, dynamodb, store: BatchStore, api: BatchApi,
                 dead_letters: DeadLetters | None = None,
                 metrics=None, payloads: PayloadStore | None = None,
                 clock: Callable[[], float] = time.time,
                 checkpoint: Callable[[str], None] = lambda step: None,
                 budget: BudgetLedger | None = None) -> None:
        self.config = config
        #: charges the answers of requests queued for a spent budget (`budget_scopes`)
        self.budget = budget
        self.sqs = sqs
        self.dynamodb = dynamodb
        self.store = store
        self.api = api
        self.dead_letters = dead_letters or DeadLetters(config, sqs=sqs, dynamodb=dynamodb,
                                                        clock=clock)
        self.metrics = metrics
        #: answers over the results item's inline limit go here, behind a pointer
        self.payloads = payloads
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
        except KeyRefused as refused:
            summary.stopped, summary.key_refused = str(refused), True
        summary.in_flight = self.store.queued()
        if self.metrics is not None:  # in flight per model, 0 included (a gauge)
            held = {model: 0 for model in self.config.models}
            for intent in self.store.intents():
                held[intent.model] = held.get(intent.model, 0) + intent.n
            for model, n in held.items():
                self.metrics.add(model, "BatchInFlight", n)
        return summary

    def poll(self, intent: Intent, summary: PollSummary) -> None:
        try:
            batch = self.api.retrieve(intent.batch_id)
        except Rejected as err:  # the batch is gone (404): read as ended without results
            log.error("batch %s of intent %s cannot be retrieved: %s", intent.batch_id,
                      intent.intent_id, err)
            summary.batches[intent.batch_id] = f"gone: {err}"
            self._results(intent, summary, gone=True)
            return
        summary.batches[intent.batch_id] = batch.processing_status
        if batch.processing_status != "ended":
            limit = self.config.cancel_after_s
            if (limit is not None and not intent.provisional  # perhaps another's: never
                    and batch.processing_status == "in_progress"
                    and self.clock() - (intent.submitted_at or intent.created_at) > limit):
                self.api.cancel(intent.batch_id)  # its items come back "canceled": retried
            return
        self.checkpoint("retrieved")
        self._results(intent, summary)

    def _results(self, intent: Intent, summary: PollSummary, gone: bool = False) -> None:
        """Act on every item of an ended batch (`gone`: one that can no longer be read: every
        item as without a result), then close it; a provisional batch without any of our
        custom ids is released instead."""
        items = self.store.items(intent.intent_id)
        seen: set[str] = set()
        try:
            lines = () if gone else self.api.result_lines(intent.batch_id)
            for line in lines:
                cid, result, problem = parse_line(line)
                if problem is not None:
                    summary.malformed += 1
                    continue  # its item is handled below, as missing
                if cid not in items or cid in seen:
                    continue  # not ours (or repeated): results are matched by custom_id
                if intent.provisional:  # one of our custom ids: the batch is ours
                    self.store.confirm(intent)
                seen.add(cid)
                if items[cid]["outcome"] is None:
                    self.act(intent, cid, items[cid], result, summary)
        except Rejected:  # results gone (e.g. past 29 days): every item is retried below
            pass
        if intent.provisional:  # none of our custom ids: another's batch
            self.store.release(intent)
            summary.released += 1
            return
        for cid, item in items.items():
            if cid not in seen and item["outcome"] is None:
                missing = {"type": "errored", "error": {"type": "api_error",
                                                        "message": "no result for this item"}}
                self.act(intent, cid, item, missing, summary)
        self.checkpoint("items_done")
        if self.store.finish(intent):
            summary.ended += 1

    def act(self, intent: Intent, cid: str, item: dict, result: dict,
            summary: PollSummary) -> None:
        """Act on one item's result and record the outcome; `item` as `BatchStore.items`."""
        if item["body"] is None:  # its row cannot be read: answered by the row's tenant and id
            outcome = self._poison(
                {"batch_item": cid, "batch_id": intent.batch_id, "tenant": item["tenant"],
                 "request_id": item["request_id"]},
                f"batch item could not be read: {item['problem']}", summary,
                request={"tenant": item["tenant"], "request_id": item["request_id"]})
        else:
            outcome = self._act(intent, item["body"], result, summary)
        self.checkpoint("item_acted")
        self.store.mark_item(intent.intent_id, cid, outcome)
        self.checkpoint("item_marked")

    def _act(self, intent: Intent, body: dict, result: dict, summary: PollSummary) -> str:
        """The item's action; its outcome as recorded. One item's trouble (an answer that cannot
        be stored or read) dead-letters that item alone; the store's passing trouble stops."""
        verdict = "unread"
        try:
            model = body["request"]["model"]
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
                return "succeeded"
            attempt = int(body.get("attempt", 0))
            if verdict == "retry" and attempt < self.config.max_retries:
                self.sqs.send_message(QueueUrl=self.config.queue_url, MessageBody=json.dumps(
                    {**body, "attempt": attempt + 1, "retry_reason": reason}, default=str))
                summary.retried += 1
                return f"retried: {reason}"
            if verdict == "retry":
                reason = f"{reason} after {attempt} retries (BATCH_MAX_RETRIES)"
            self.dead_letters.send(body, reason)
            summary.dead_lettered += 1
            return f"dead-lettered: {reason}"
        except (NotNow, KeyRefused):
            raise
        except Exception as err:  # noqa: BLE001 - one item must not block the batch
            if transient(err):
                raise NotNow(5.0, f"batch state: {err}") from None
            what = {"succeeded": "its answer could not be stored",
                    "unread": "its result could not be read"}.get(
                verdict, "it could not be requeued or dead-lettered")
            return self._poison(body, f"{what}: {err}", summary)

    def _poison(self, body: dict, reason: str, summary: PollSummary,
                request: dict | None = None) -> str:
        """An item the lane cannot carry on: its error answer and dead letter, with `reason`."""
        try:
            self.dead_letters.send(body, reason, request=request)
        except Exception as err:  # noqa: BLE001 - recorded on the item row with the reason
            if transient(err):
                raise NotNow(5.0, f"batch state: {err}") from None
            log.error("batch item not dead-lettered (%s): %s", reason, err)
            return f"failed: {reason}; not dead-lettered: {err}"
        summary.dead_lettered += 1
        return f"dead-lettered: {reason}"

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
        try:
            stored = put_result_once(self.dynamodb, self.config.results_table,
                                     request["tenant"], request["request_id"], response,
                                     int(self.clock() + self.config.result_ttl_s),
                                     payloads=self.payloads, digest=body.get("digest"))
        except Exception as err:
            if not transient(err):  # dead-lettered by the caller, but Claude was paid for it
                self._cost(request["model"], cost, standard, summary)
            raise
        if not stored:  # answered already (a duplicate): neither counted nor costed again
            summary.duplicates += 1
            return
        summary.succeeded += 1
        self._metric(request["model"], "BatchSucceeded")
        self._cost(request["model"], cost, standard, summary)
        self._charge_budget(body, model.prices.cost_micros(usage), usage)
        for name, key in (("InputTokens", "input_tokens"), ("OutputTokens", "output_tokens")):
            self._metric(request["model"], name, usage[key])

    def _charge_budget(self, body: dict, standard_micros: int, usage: dict) -> None:
        """A request queued because its tenant's budget was spent names the scopes it counts
        in (`budget_scopes`): its answer is charged to them at the batch price (half of
        `standard_micros`, micro-USD, rounded up) with its tokens, on the UTC day and month
        this answer is stored. A store problem is logged with the amount (the answer stands;
        the charge is not retried)."""
        scopes = body.get("budget_scopes")
        if not scopes or self.budget is None:
            return
        usage = Usage.of(usage)
        micros = -(-standard_micros // 2)  # BATCH_DISCOUNT, in whole micro-dollars
        outcome = self.budget.charge(scopes, micros, usage.counted_input
                                     + usage["output_tokens"])
        if not outcome.settled:
            log.error("batch answer of %s not charged to its budget (%s): %d micro-USD",
                      body["request"].get("request_id"), outcome.reason, micros)

    def _cost(self, model: str, cost: float, standard: float, summary: PollSummary) -> None:
        """Count what one answered item cost (USD at the batch price) and saved against the
        standard price (USD): every item Claude answered, stored or not."""
        summary.cost_usd += cost
        summary.standard_usd += standard
        self._metric(model, "BatchCostUSD", cost)
        self._metric(model, "BatchSavedUSD", standard - cost)

    def _metric(self, model: str, name: str, value: float = 1.0) -> None:
        if self.metrics is not None:
            self.metrics.add(model, name, value)
