"""The results table: the response each request ended with, kept by tenant and request id for
`get_result` (contract 2), and the error response every part of the agent answers with.

One item per request: string key `request_id` = "<tenant>/<request id>" (two tenants may choose
the same request id), `tenant`, `status`, `response` (the response as JSON) and `expires_at`
(epoch seconds). Expiry is checked in code on read; the table's TTL only cleans up.
The interactive lane overwrites its item; the batch lane writes a "queued" placeholder
(`put_queued`), which its answer replaces once (`put_result_once`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .contract import REQUEST_ID_PATTERN

if TYPE_CHECKING:
    from .runtime import Runtime


def error_response(request_id: str | None, kind: str, message: str) -> dict:
    """A contract-2 response with status "error"; `message` names the problem."""
    return {"status": "error", "request_id": request_id or "", "error": {"type": kind,
                                                                          "message": message}}


def result_key(tenant: str, request_id: str) -> str:
    """The item key of a request's result."""
    return f"{tenant}/{request_id}"


def _item(tenant: str, request_id: str, status: str, response: dict, expires_at: int) -> dict:
    return {"request_id": {"S": result_key(tenant, request_id)}, "tenant": {"S": tenant},
            "status": {"S": status}, "response": {"S": json.dumps(response)},
            "expires_at": {"N": str(expires_at)}}


def expires_at(rt: "Runtime") -> int:
    """When a result stored now expires: epoch seconds, RESULT_TTL_S from the clock."""
    return int(rt.clock() + rt.config.result_ttl_s)


def put_result(dynamodb: Any, table: str, tenant: str, response: dict, expires: int) -> None:
    """Store (or replace) the response of the request `response["request_id"]`."""
    dynamodb.put_item(TableName=table, Item=_item(tenant, response["request_id"],
                                                  response["status"], response, expires))


def put_result_once(dynamodb: Any, table: str, tenant: str, request_id: str, response: dict,
                    expires: int) -> bool:
    """Store a final answer once per request id: only over nothing or a "queued" placeholder.
    False when an answer was stored already (a duplicate result is dropped)."""
    try:
        dynamodb.put_item(
            TableName=table, Item=_item(tenant, request_id, response["status"], response,
                                        expires),
            ConditionExpression="attribute_not_exists(request_id) OR #s = :queued",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":queued": {"S": "queued"}})
        return True
    except dynamodb.exceptions.ConditionalCheckFailedException:
        return False


def put_queued(dynamodb: Any, table: str, tenant: str, request_id: str, response: dict,
               expires: int) -> dict | None:
    """The "queued" placeholder for a new batch request; returns the stored response instead
    when the request id is known already (a duplicate submission)."""
    try:
        dynamodb.put_item(
            TableName=table, Item=_item(tenant, request_id, "queued", response, expires),
            ConditionExpression="attribute_not_exists(request_id)",
            ReturnValuesOnConditionCheckFailure="ALL_OLD")
        return None
    except dynamodb.exceptions.ConditionalCheckFailedException as err:
        old = err.response.get("Item") or {}
        return json.loads(old["response"]["S"]) if "response" in old else {}


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
    return json.loads(item["response"]["S"])
