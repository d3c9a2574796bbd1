"""The Message Batches endpoints of the local Claude emulator (`local.fakes.claude_emulator`).

The paths and shapes the `anthropic` SDK 2.x calls: `POST /v1/messages/batches` (create),
`GET /v1/messages/batches/{id}` (retrieve), `GET /v1/messages/batches` (list, newest first,
`limit` / `after_id` / `before_id`), `GET /v1/messages/batches/{id}/results` (JSONL) and
`POST /v1/messages/batches/{id}/cancel`. Counted against the emulator's own batch limits:
requests per minute on the batch endpoints (`batch_rpm`), requests waiting in the processing
queue (`batch_queue_limit`), requests and bytes per batch (`batch_max_requests`,
`batch_max_bytes`); over any of them the answer is what the API gives (429 rate_limit_error,
or 400 / 413 for a batch too large).

A batch ends `batch_processing_s` seconds after it is created (items are answered then, with
the emulator's deterministic answers and no per-minute token limits, as the Batches API does
not count against them). Per-item faults are scripted in the item's last user message:
`EMULATOR: batch_error <error type>` (an errored result of that type) and
`EMULATOR: batch_expire` (expired); `batch_expire_all` expires every item, and
`batch_malformed_lines` adds that many garbage lines to every results file. `batch_faults` is a
list of one-shot faults on the endpoints, `{"op": "create" | "retrieve" | "list" | "results" |
"cancel", "status": 400-599, "after": false}`: the first pending fault whose op matches answers
with that status instead of the endpoint (with `"after": true` the endpoint acts first and its
answer is lost, as when a connection drops after the API created a batch), and is used up.
Lowering `batch_processing_s` ends batches already in progress sooner.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import uuid
from datetime import datetime, timezone
from typing import Any

BATCH_CONFIG: dict[str, Any] = {
    "batch_processing_s": 2.0,       # seconds from create to ended
    "batch_max_requests": 100_000,   # requests per batch (published)
    "batch_max_bytes": 256_000_000,  # bytes per batch request body (published: 256 MB)
    "batch_queue_limit": 100_000,    # requests waiting in the processing queue
    "batch_rpm": 50,                 # batch endpoints' HTTP requests per minute
    "batch_expire_all": False,       # every item expires instead of being answered
    "batch_malformed_lines": 0,      # garbage lines added to every results file
    "batch_faults": [],              # one-shot faults on the endpoints (see above)
}

BATCH_OPS = ("create", "retrieve", "list", "results", "cancel")
#: the API's error type for a fault's status
_FAULT_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                429: "rate_limit_error", 529: "overloaded_error"}

_ERROR_DIRECTIVE = re.compile(r"EMULATOR:[ \t]*batch_error[ \t]+([a-z_]+)")
_EXPIRE_DIRECTIVE = re.compile(r"EMULATOR:[ \t]*batch_expire\b")
_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
EXPIRY_S = 24 * 3600


def validate_batch_config(config: dict) -> None:
    for key in ("batch_processing_s",):
        if not isinstance(config[key], (int, float)) or config[key] < 0:
            raise ValueError(f"{key} must be a non-negative number")
    for key in ("batch_max_requests", "batch_max_bytes", "batch_queue_limit", "batch_rpm"):
        if isinstance(config[key], bool) or not isinstance(config[key], int) or config[key] < 1:
            raise ValueError(f"{key} must be a positive integer")
    if not isinstance(config["batch_expire_all"], bool):
        raise ValueError("batch_expire_all must be true or false")
    if isinstance(config["batch_malformed_lines"], bool) or not isinstance(
            config["batch_malformed_lines"], int) or config["batch_malformed_lines"] < 0:
        raise ValueError("batch_malformed_lines must be a non-negative integer")
    faults = config["batch_faults"]
    if not isinstance(faults, list) or not all(
            isinstance(f, dict) and f.get("op") in BATCH_OPS
            and isinstance(f.get("status"), int) and not isinstance(f["status"], bool)
            and 400 <= f["status"] <= 599 and isinstance(f.get("after", False), bool)
            for f in faults):
        raise ValueError(f"batch_faults must be a list of {{\"op\": one of {BATCH_OPS}, "
                         "\"status\": 400-599, \"after\": true|false}")


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat().replace("+00:00", "Z")


class BatchService:
    """Batch state of one emulator; `emulator` answers items (`_answer`) and owns the lock."""

    def __init__(self, emulator) -> None:
        self.emulator = emulator
        self.reset()

    def reset(self) -> None:
        self.batches: dict[str, dict] = {}
        self.order: list[str] = []  # creation order
        self.calls = 0
        self.rate_limited = 0
        self.faulted = 0
        self.tokens = float(self.emulator.config["batch_rpm"])
        self.refilled_at = time.monotonic()

    # -- limits --------------------------------------------------------------------------

    def _take_request(self, api_error) -> None:
        rpm = float(self.emulator.config["batch_rpm"])
        now = time.monotonic()
        self.tokens = min(rpm, self.tokens + (now - self.refilled_at) * rpm / 60.0)
        self.refilled_at = now
        self.calls += 1
        if self.tokens < 1:
            self.rate_limited += 1
            wait = max(1, int((1 - self.tokens) * 60.0 / rpm + 0.999))
            raise api_error(429, "rate_limit_error", "Number of request to the Message Batches "
                            "API exceeds your rate limit", headers=[("retry-after", str(wait))])
        self.tokens -= 1

    # -- dispatch ------------------------------------------------------------------------

    def route(self, method: str, target: str, body: bytes, headers: dict, api_error):
        """A `_Reply`-shaped (status, payload, content type) answer, or None: not a batch path."""
        path, _, query = target.partition("?")
        if not path.startswith("/v1/messages/batches"):
            return None
        parts = path.rstrip("/").split("/")[4:]  # after /v1/messages/batches
        with self.emulator.lock:
            self._take_request(api_error)
            fault = self._take_fault(_op(method, parts))
            if fault is not None and not fault.get("after"):
                raise self._fault_error(fault, api_error)
            reply = self._endpoint(method, path, parts, query, body, headers, api_error)
            if fault is not None:  # the endpoint acted; its answer is lost
                raise self._fault_error(fault, api_error)
            return reply

    def _endpoint(self, method: str, path: str, parts: list[str], query: str, body: bytes,
                  headers: dict, api_error):
        base = f"http://{headers.get('host', '127.0.0.1')}"
        if not parts and method == "POST":
            return 200, self._create(body, api_error, base)
        if not parts and method == "GET":
            return 200, self._list(urllib.parse.parse_qs(query), base)
        batch = self.batches.get(parts[0]) if parts else None
        if batch is None:
            raise api_error(404, "not_found_error", f"message batch {parts[:1]} not found")
        self._advance(batch)
        if len(parts) == 1 and method == "GET":
            return 200, self._public(batch, base)
        if len(parts) == 2 and parts[1] == "results" and method == "GET":
            if batch["status"] != "ended":
                raise api_error(400, "invalid_request_error",
                                f"batch {batch['id']} is still {batch['status']}")
            lines = [json.dumps(r) for r in batch["results"]]
            for index in range(self.emulator.config["batch_malformed_lines"]):
                lines.insert(min(index * 2, len(lines)), '{"custom_id": "broken", "resu')
            return 200, ("\n".join(lines) + "\n").encode()
        if len(parts) == 2 and parts[1] == "cancel" and method == "POST":
            if batch["status"] == "in_progress":
                batch["status"] = "canceling"
                batch["cancel_initiated_at"] = time.time()
                self._advance(batch)
            return 200, self._public(batch, base)
        raise api_error(404, "not_found_error", f"Not found: {method} {path}")

    def _take_fault(self, op: str | None) -> dict | None:
        """The first pending `batch_faults` entry for `op`, removed (one shot)."""
        faults = self.emulator.config["batch_faults"]
        for index, fault in enumerate(faults):
            if fault["op"] == op:
                self.faulted += 1
                return faults.pop(index)
        return None

    @staticmethod
    def _fault_error(fault: dict, api_error):
        status = fault["status"]
        kind = _FAULT_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        headers = [("retry-after", "1")] if status in (429, 529) else []
        return api_error(status, kind, f"EMULATOR: injected {fault['op']} fault",
                         headers=headers)

    # -- endpoints -----------------------------------------------------------------------

    def _create(self, body: bytes, api_error, base: str) -> dict:
        config = self.emulator.config
        if len(body) > config["batch_max_bytes"]:
            raise api_error(413, "request_too_large", f"batch of {len(body)} bytes is over "
                            f"the {config['batch_max_bytes']}-byte limit")
        try:
            payload = json.loads(body or b"null")
        except ValueError:
            raise api_error(400, "invalid_request_error", "request body is not valid JSON")
        requests = payload.get("requests") if isinstance(payload, dict) else None
        if not isinstance(requests, list) or not requests:
            raise api_error(400, "invalid_request_error", "requests: a non-empty list is required")
        if len(requests) > config["batch_max_requests"]:
            raise api_error(400, "invalid_request_error", f"requests: at most "
                            f"{config['batch_max_requests']} requests per batch")
        seen = set()
        for index, item in enumerate(requests):
            cid = item.get("custom_id") if isinstance(item, dict) else None
            if not isinstance(cid, str) or not _CUSTOM_ID.match(cid):
                raise api_error(400, "invalid_request_error",
                                f"requests.{index}.custom_id: must match ^[a-zA-Z0-9_-]{{1,64}}$")
            if cid in seen:
                raise api_error(400, "invalid_request_error",
                                f"requests.{index}.custom_id: {cid!r} is not unique")
            seen.add(cid)
            if not isinstance(item.get("params"), dict):
                raise api_error(400, "invalid_request_error", f"requests.{index}.params: required")
        waiting = sum(len(b["requests"]) for b in self.batches.values()
                      if b["status"] != "ended")
        if waiting + len(requests) > config["batch_queue_limit"]:
            self.rate_limited += 1
            raise api_error(429, "rate_limit_error", f"the processing queue holds {waiting} "
                            f"requests; {len(requests)} more would exceed its limit of "
                            f"{config['batch_queue_limit']}", headers=[("retry-after", "60")])
        now = time.time()
        # ids sort by creation like the API's (list is newest first)
        batch_id = f"msgbatch_{len(self.order):06d}{uuid.uuid4().hex[:18]}"
        batch = {"id": batch_id, "requests": requests, "status": "in_progress",
                 "created_at": now, "ends_at": now + float(config["batch_processing_s"]),
                 "ended_at": None, "cancel_initiated_at": None, "results": None}
        self.batches[batch_id] = batch
        self.order.append(batch_id)
        return self._public(batch, base)

    def _list(self, query: dict, base: str) -> dict:
        limit = int((query.get("limit") or ["20"])[0])
        ids = list(reversed(self.order))
        after, before = (query.get("after_id") or [None])[0], (query.get("before_id") or [None])[0]
        if after in ids:
            ids = ids[ids.index(after) + 1:]
        if before in ids:
            ids = ids[:ids.index(before)][-limit:]
        page = ids[:limit]
        for batch_id in page:
            self._advance(self.batches[batch_id])
        return {"data": [self._public(self.batches[i], base) for i in page],
                "has_more": len(ids) > len(page),
                "first_id": page[0] if page else None, "last_id": page[-1] if page else None}

    # -- processing ----------------------------------------------------------------------

    def _advance(self, batch: dict) -> None:
        now = time.time()
        if batch["status"] == "ended":
            return
        canceling = batch["status"] == "canceling"
        ends_at = min(batch["ends_at"], batch["created_at"]
                      + float(self.emulator.config["batch_processing_s"]))
        if not canceling and now < ends_at:
            return
        batch["results"] = [self._result(item, canceled=canceling) for item in batch["requests"]]
        batch["status"] = "ended"
        batch["ended_at"] = now

    def _result(self, item: dict, *, canceled: bool) -> dict:
        cid, params = item["custom_id"], item["params"]
        if canceled:
            return {"custom_id": cid, "result": {"type": "canceled"}}
        text = json.dumps(params.get("messages", []))
        if self.emulator.config["batch_expire_all"] or _EXPIRE_DIRECTIVE.search(text):
            return {"custom_id": cid, "result": {"type": "expired"}}
        wanted = _ERROR_DIRECTIVE.search(text)
        if wanted:
            return {"custom_id": cid, "result": {"type": "errored", "error": {
                "type": "error", "error": {"type": wanted.group(1),
                                           "message": "EMULATOR: scripted batch error"}}}}
        try:
            message = self.emulator.answer_batch_item(params)
        except Exception as err:  # noqa: BLE001 - the API's validation error, per item
            kind = getattr(err, "kind", "invalid_request_error")
            return {"custom_id": cid, "result": {"type": "errored", "error": {
                "type": "error", "error": {"type": kind, "message": getattr(err, "message",
                                                                            str(err))}}}}
        return {"custom_id": cid, "result": {"type": "succeeded", "message": message}}

    def _public(self, batch: dict, base: str) -> dict:
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if batch["results"] is None:
            counts["processing"] = len(batch["requests"])
        else:
            for result in batch["results"]:
                counts[result["result"]["type"]] += 1
        ended = batch["status"] == "ended"
        return {"id": batch["id"], "type": "message_batch",
                "processing_status": batch["status"], "request_counts": counts,
                "created_at": _iso(batch["created_at"]),
                "expires_at": _iso(batch["created_at"] + EXPIRY_S),
                "ended_at": _iso(batch["ended_at"]), "archived_at": None,
                "cancel_initiated_at": _iso(batch["cancel_initiated_at"]),
                "results_url": f"{base}/v1/messages/batches/{batch['id']}/results"
                if ended else None}

    def stats(self) -> dict:
        by_status: dict[str, int] = {}
        items: dict[str, int] = {}
        for batch in self.batches.values():
            self._advance(batch)
            by_status[batch["status"]] = by_status.get(batch["status"], 0) + 1
            for result in batch["results"] or []:
                kind = result["result"]["type"]
                items[kind] = items.get(kind, 0) + 1
        return {"batches": len(self.batches), "by_status": by_status, "items": items,
                "requests": self.calls, "rate_limited": self.rate_limited,
                "faulted": self.faulted}


def _op(method: str, parts: list[str]) -> str | None:
    """The endpoint a request names: create, list, retrieve, results or cancel."""
    if not parts:
        return {"POST": "create", "GET": "list"}.get(method)
    if len(parts) == 1:
        return "retrieve" if method == "GET" else None
    return {"results": "results", "cancel": "cancel"}.get(parts[1])
