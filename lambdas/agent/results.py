"""The results table: the response each request ended with, kept by tenant and request id for
`get_result` (the agent's response contract), and the error response every part of the agent answers with.

One item per request: string key `request_id` = "<tenant>/<request id>" (two tenants may choose
the same request id), `tenant`, `status`, `response` (the response as UTF-8 JSON, or a pointer
to it in the payload bucket when it is over `payloads.MAX_INLINE_ITEM_BYTES`), `expires_at`
(epoch seconds) and, when the writer gives one, `digest` (what the request id stands for:
`requests.request_digest`). Expiry is checked in code on read; the table's TTL only cleans up.
The interactive lane overwrites its item; the batch lane writes a "queued" placeholder
(`put_queued`), which its answer replaces once (`put_result_once`); a dead letter's error
answer never replaces an "ok" answer (`put_dead_letter_answer`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .contract import REQUEST_ID_PATTERN
from .payloads import MAX_INLINE_ITEM_BYTES, PayloadError, PayloadStore, fit_text, pointer_of

if TYPE_CHECKING:
    from .runtime import Runtime


def error_response(request_id: str | None, kind: str, message: str) -> dict:
    """An agent response with status "error"; `message` names the problem."""
    return {"status": "error", "request_id": request_id or "", "error": {"type": kind,
                                                                          "message": message}}


def result_key(tenant: str, request_id: str) -> str:
    """The item key of a request's result."""
    return f"{tenant}/{request_id}"


def conflict_response(request_id: str) -> dict:
    """The answer to a request id reused for a different request."""
    return error_response(request_id, "conflict", f"request id {request_id!r} was used before "
                                                  "for a different prompt, model, max_tokens or "
                                                  "lane; send a new request id")


def stored_text(tenant: str, request_id: str, response: dict, expires: int,
                payloads: PayloadStore | None = None) -> str:
    """The `response` attribute for `response`: its UTF-8 JSON, or, over
    MAX_INLINE_ITEM_BYTES, the JSON of a pointer to it in the payload bucket (expiring with the
    item). Raises `PayloadError` naming the size when it is too large and no store is given."""
    return fit_text(payloads, response, limit=MAX_INLINE_ITEM_BYTES, kind="results",
                    tenant=tenant, request_id=request_id, expires_at=expires)


def _item(tenant: str, request_id: str, status: str, response: dict, expires_at: int,
          payloads: PayloadStore | None = None, digest: str | None = None) -> dict:
    item = {"request_id": {"S": result_key(tenant, request_id)}, "tenant": {"S": tenant},
            "status": {"S": status},
            "response": {"S": stored_text(tenant, request_id, response, expires_at, payloads)},
            "expires_at": {"N": str(expires_at)}}
    if digest is not None:
        item["digest"] = {"S": digest}
    return item


def stored_response(item: dict, payloads: PayloadStore | None = None) -> dict:
    """The response a results item holds, following its pointer (`PayloadError` when the
    pointer cannot be followed: no store given, expired, missing)."""
    value = json.loads(item["response"]["S"])
    if pointer_of(value) is None:
        return value
    if payloads is None:
        raise PayloadError("the answer is in the payload bucket and no store was given")
    return json.loads(payloads.get(value))


def expires_at(rt: "Runtime") -> int:
    """When a result stored now expires: epoch seconds, RESULT_TTL_S from the clock."""
    return int(rt.clock() + rt.config.result_ttl_s)


def put_result(dynamodb: Any, table: str, tenant: str, response: dict, expires: int, *,
               payloads: PayloadStore | None = None, digest: str | None = None) -> dict:
    """Store (or replace) the response of the request `response["request_id"]`; returns what
    the item holds (the response, or the pointer to it in `payloads`)."""
    item = _item(tenant, response["request_id"], response["status"], response, expires,
                 payloads, digest)
    dynamodb.put_item(TableName=table, Item=item)
    return json.loads(item["response"]["S"])


def put_result_once(dynamodb: Any, table: str, tenant: str, request_id: str, response: dict,
                    expires: int, *, payloads: PayloadStore | None = None,
                    digest: str | None = None) -> bool:
    """Store a final answer once per request id: only over nothing or a "queued" placeholder.
    False when an answer was stored already (a duplicate result is dropped). `digest`: the
    queued body's, kept so a later reuse of the id for another request is refused."""
    return _put_unless_status(dynamodb, table, _item(tenant, request_id, response["status"],
                                                     response, expires, payloads, digest),
                              "attribute_not_exists(request_id) OR #s = :status", "queued")


def put_dead_letter_answer(dynamodb: Any, table: str, tenant: str, request_id: str,
                           reason: str, expires: int) -> bool:
    """The error answer of a dead-lettered request (type "dead_letter", the reason as the
    message), unless an "ok" answer is stored already; False then."""
    response = error_response(request_id, "dead_letter", f"the request was dead-lettered: "
                                                         f"{reason}")
    return _put_unless_status(dynamodb, table, _item(tenant, request_id, "error", response,
                                                     expires),
                              "attribute_not_exists(request_id) OR #s <> :status", "ok")


def _put_unless_status(dynamodb: Any, table: str, item: dict, condition: str,
                       status: str) -> bool:
    """PutItem under `condition` on the stored status (#s, compared with :status = `status`);
    False when the condition refused it."""
    try:
        dynamodb.put_item(TableName=table, Item=item, ConditionExpression=condition,
                          ExpressionAttributeNames={"#s": "status"},
                          ExpressionAttributeValues={":status": {"S": status}})
        return True
    except dynamodb.exceptions.ConditionalCheckFailedException:
        return False


def put_queued(dynamodb: Any, table: str, tenant: str, request_id: str, response: dict,
               expires: int, *, digest: str | None = None,
               payloads: PayloadStore | None = None) -> dict | None:
    """The "queued" placeholder for a new batch request; returns the stored response instead
    when the request id is known already (a duplicate submission), or a "conflict" error
    when it was stored with another `digest` (a different request under the same id)."""
    try:
        dynamodb.put_item(
            TableName=table, Item=_item(tenant, request_id, "queued", response, expires,
                                        digest=digest),
            ConditionExpression="attribute_not_exists(request_id)",
            ReturnValuesOnConditionCheckFailure="ALL_OLD")
        return None
    except dynamodb.exceptions.ConditionalCheckFailedException as err:
        old = err.response.get("Item") or {}
        stored = old.get("digest", {}).get("S")
        if digest is not None and stored is not None and stored != digest:
            return conflict_response(request_id)
        return stored_response(old, payloads) if "response" in old else {}


def fetch_result(rt: "Runtime", event: dict, *, readable: tuple[str, ...] | None = None
                 ) -> dict:
    """The `get_result` action: the stored response of `event["request_id"]` for
    `event["tenant"]` (the first configured tenant when absent), or an error response naming
    why there is none (bad request id, unknown tenant, unknown or expired result).

    `readable`: the tenants a Function URL caller may read (`agent.tenancy.readable_tenants`;
    the first is the default): another tenant's result is "not found", as an unknown id.
    None: a direct invoke, trusted by configuration."""
    request_id, tenant = event.get("request_id"), event.get(
        "tenant", (readable or rt.config.tenants)[0])
    if not isinstance(request_id, str) or not REQUEST_ID_PATTERN.match(request_id):
        return error_response(None, "invalid_request", "get_result needs request_id: 2-64 "
                                                       "characters of [A-Za-z0-9_+=,.@-]")
    if readable is None and (not isinstance(tenant, str) or tenant not in rt.config.tenants):
        return error_response(request_id, "invalid_request", f"unknown tenant {tenant!r}")
    item = rt.dynamodb.get_item(TableName=rt.config.results_table, ConsistentRead=True,
                                Key={"request_id": {"S": result_key(tenant, request_id)}}
                                ).get("Item")
    if (item is None or item["tenant"]["S"] != tenant
            or (readable is not None and tenant not in readable)
            or float(item["expires_at"]["N"]) < rt.clock()):
        return error_response(request_id, "not_found", f"no result for request {request_id!r} "
                                                       f"of tenant {tenant!r} (unknown or "
                                                       "expired)")
    try:
        return stored_response(item, rt.payloads)
    except PayloadError as err:
        return error_response(request_id, "not_found", f"the answer of request {request_id!r} "
                                                       f"cannot be read: {err}")
