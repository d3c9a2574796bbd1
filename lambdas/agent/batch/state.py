"""Durable batch-lane state: one port over DynamoDB (an injected boto3 client, an injected clock).

The batch table (string `pk`, string `sk`) holds
- intents/batches: pk "intents", sk <intent id>: state ("intent" -> "submitted" -> "done", or
  "abandoned"), model, n (items), created_at, batch_id once created;
- items: pk "intent#<intent id>", sk <custom_id>: the queued request (its SQS body), tenant,
  request_id, attempt, and `outcome` once the poller has acted on its result;
- claims: pk "claim#<tenant>/<request id>", sk "claim": which intent holds the request at which
  attempt, so a redelivered SQS message is never submitted twice.
The queued-requests counter is one item in the bucket table (`<batch bucket id>#queued`):
reserved in the same transaction that records an intent (`queued + n <= cap`), released when
the intent is abandoned and when its batch ends.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Iterable

INTENTS = "intents"
OPEN_STATES = ("intent", "submitted")


class QueueFull(Exception):
    """The provider's processing queue would exceed the configured cap."""


@dataclass
class Intent:
    intent_id: str
    state: str
    model: str
    n: int
    created_at: float
    batch_id: str | None = None
    submitted_at: float | None = None

    @classmethod
    def from_item(cls, item: dict) -> "Intent":
        return cls(item["sk"]["S"], item["state"]["S"], item["model"]["S"], int(item["n"]["N"]),
                   float(item["created_at"]["N"]),
                   item.get("batch_id", {}).get("S"),
                   float(item["submitted_at"]["N"]) if "submitted_at" in item else None)


def _conditional_failed(err: Exception) -> bool:
    code = getattr(err, "response", {}).get("Error", {}).get("Code", "")
    return code in ("ConditionalCheckFailedException", "TransactionCanceledException")


class BatchStore:
    def __init__(self, dynamodb, batch_table: str, bucket_table: str, counter_key: str,
                 clock: Callable[[], float]) -> None:
        self.dynamodb = dynamodb
        self.table = batch_table
        self.bucket_table = bucket_table
        self.counter_key = counter_key
        self.clock = clock

    # -- claims --------------------------------------------------------------------------

    def claim(self, tenant: str, request_id: str, attempt: int, intent_id: str) -> bool:
        """Claim a request for `intent_id`. False: a live intent already holds it at this (or
        a later) attempt, so this delivery is a duplicate. A claim whose intent was never
        recorded (a collector died before the intent write) or was abandoned is taken over."""
        key = {"pk": {"S": f"claim#{tenant}/{request_id}"}, "sk": {"S": "claim"}}
        item = {**key, "intent_id": {"S": intent_id}, "attempt": {"N": str(attempt)}}
        try:
            self.dynamodb.put_item(
                TableName=self.table, Item=item,
                ConditionExpression="attribute_not_exists(pk) OR attempt < :a",
                ExpressionAttributeValues={":a": {"N": str(attempt)}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD")
            return True
        except self.dynamodb.exceptions.ConditionalCheckFailedException as err:
            old = err.response.get("Item") or {}
        holder = old.get("intent_id", {}).get("S")
        if holder == intent_id:  # the same request twice in one batch: a duplicate
            return False
        header = self.intent(holder) if holder else None
        if header is not None and header.state != "abandoned":
            return False
        try:  # stale: take it over, unless someone else just did
            self.dynamodb.put_item(
                TableName=self.table, Item=item, ConditionExpression="intent_id = :old",
                ExpressionAttributeValues={":old": {"S": holder}})
            return True
        except self.dynamodb.exceptions.ConditionalCheckFailedException:
            return False

    # -- items ---------------------------------------------------------------------------

    def put_items(self, intent_id: str, items: Iterable[tuple[str, dict]]) -> None:
        """Write an intent's items (custom_id, queued body) before the intent itself."""
        requests = [{"PutRequest": {"Item": {
            "pk": {"S": f"intent#{intent_id}"}, "sk": {"S": custom_id},
            "body": {"S": json.dumps(body, default=str)},
            "tenant": {"S": body["request"]["tenant"]},
            "request_id": {"S": body["request"]["request_id"]},
            "attempt": {"N": str(body.get("attempt", 0))}}}} for custom_id, body in items]
        for start in range(0, len(requests), 25):
            pending = {self.table: requests[start:start + 25]}
            while pending:
                left = self.dynamodb.batch_write_item(RequestItems=pending)
                pending = left.get("UnprocessedItems") or {}

    def items(self, intent_id: str) -> dict[str, dict]:
        """custom_id -> {"body", "outcome"} of one intent (consistent read)."""
        out: dict[str, dict] = {}
        kwargs: dict[str, Any] = {
            "TableName": self.table, "ConsistentRead": True,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": f"intent#{intent_id}"}}}
        while True:
            page = self.dynamodb.query(**kwargs)
            for item in page["Items"]:
                out[item["sk"]["S"]] = {"body": json.loads(item["body"]["S"]),
                                        "outcome": item.get("outcome", {}).get("S")}
            if "LastEvaluatedKey" not in page:
                return out
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def mark_item(self, intent_id: str, custom_id: str, outcome: str) -> bool:
        """Record that the poller acted on this item's result; False if it already had."""
        try:
            self.dynamodb.update_item(
                TableName=self.table,
                Key={"pk": {"S": f"intent#{intent_id}"}, "sk": {"S": custom_id}},
                UpdateExpression="SET outcome = :o",
                ConditionExpression="attribute_exists(pk) AND attribute_not_exists(outcome)",
                ExpressionAttributeValues={":o": {"S": outcome}})
            return True
        except self.dynamodb.exceptions.ConditionalCheckFailedException:
            return False

    # -- intents -------------------------------------------------------------------------

    def _counter_update(self, delta: int, cap: int | None) -> dict:
        update: dict[str, Any] = {
            "TableName": self.bucket_table, "Key": {"pk": {"S": self.counter_key}},
            "UpdateExpression": "SET queued = if_not_exists(queued, :zero) + :n",
            "ExpressionAttributeValues": {":n": {"N": str(delta)}, ":zero": {"N": "0"}}}
        if cap is not None:  # reserve: queued + n <= cap
            update["ConditionExpression"] = "attribute_not_exists(queued) OR queued <= :room"
            update["ExpressionAttributeValues"][":room"] = {"N": str(cap - delta)}
        return update

    def record_intent(self, intent: Intent, cap: int) -> None:
        """The intent and the counter reservation in one transaction; raises QueueFull."""
        if intent.n > cap:
            raise QueueFull(f"{intent.n} items are more than the queue cap {cap}")
        header = {"pk": {"S": INTENTS}, "sk": {"S": intent.intent_id},
                  "state": {"S": "intent"}, "model": {"S": intent.model},
                  "n": {"N": str(intent.n)}, "created_at": {"N": repr(intent.created_at)}}
        try:
            self.dynamodb.transact_write_items(TransactItems=[
                {"Put": {"TableName": self.table, "Item": header,
                         "ConditionExpression": "attribute_not_exists(pk)"}},
                {"Update": self._counter_update(intent.n, cap)}])
        except Exception as err:  # noqa: BLE001 - only a refused condition is "full"
            if _conditional_failed(err):
                raise QueueFull(f"the processing queue holds more than {cap - intent.n} "
                                "requests") from None
            raise

    def _close(self, intent: Intent, state: str, expected: str) -> bool:
        """Move an intent from `expected` to `state` and release its counter reservation."""
        try:
            self.dynamodb.transact_write_items(TransactItems=[
                {"Update": {"TableName": self.table,
                            "Key": {"pk": {"S": INTENTS}, "sk": {"S": intent.intent_id}},
                            "UpdateExpression": "SET #s = :s, closed_at = :t",
                            "ConditionExpression": "#s = :e",
                            "ExpressionAttributeNames": {"#s": "state"},
                            "ExpressionAttributeValues": {":s": {"S": state},
                                                          ":e": {"S": expected},
                                                          ":t": {"N": repr(self.clock())}}}},
                {"Update": self._counter_update(-intent.n, None)}])
            return True
        except Exception as err:  # noqa: BLE001
            if _conditional_failed(err):
                return False
            raise

    def abandon(self, intent: Intent) -> bool:
        return self._close(intent, "abandoned", "intent")

    def finish(self, intent: Intent) -> bool:
        return self._close(intent, "done", "submitted")

    def mark_submitted(self, intent: Intent, batch_id: str) -> None:
        now = self.clock()
        self.dynamodb.update_item(
            TableName=self.table, Key={"pk": {"S": INTENTS}, "sk": {"S": intent.intent_id}},
            UpdateExpression="SET #s = :s, batch_id = :b, submitted_at = :t",
            ConditionExpression="#s = :e",
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues={":s": {"S": "submitted"}, ":e": {"S": "intent"},
                                       ":b": {"S": batch_id}, ":t": {"N": repr(now)}})
        intent.state, intent.batch_id, intent.submitted_at = "submitted", batch_id, now

    def intent(self, intent_id: str) -> Intent | None:
        item = self.dynamodb.get_item(TableName=self.table, ConsistentRead=True, Key={
            "pk": {"S": INTENTS}, "sk": {"S": intent_id}}).get("Item")
        return Intent.from_item(item) if item else None

    def intents(self, states: tuple[str, ...] = OPEN_STATES) -> list[Intent]:
        out: list[Intent] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table, "ConsistentRead": True,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": INTENTS}}}
        while True:
            page = self.dynamodb.query(**kwargs)
            out += [i for i in map(Intent.from_item, page["Items"]) if i.state in states]
            if "LastEvaluatedKey" not in page:
                return sorted(out, key=lambda i: (i.created_at, i.intent_id))
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def queued(self) -> int:
        item = self.dynamodb.get_item(TableName=self.bucket_table, ConsistentRead=True,
                                      Key={"pk": {"S": self.counter_key}}).get("Item")
        return int(item["queued"]["N"]) if item and "queued" in item else 0

