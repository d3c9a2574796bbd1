"""Durable batch-lane state: one port over DynamoDB (an injected boto3 client, an injected clock).

The batch table (string `pk`, string `sk`) holds
- intents/batches: pk "intents", sk <intent id>: state ("intent" -> "submitted" -> "done", or
  "abandoned"), model, n (items), created_at, batch_id once created; `attempt_at` (epoch s)
  while a create call may have created a batch, `unknown_since` (epoch s) once one such call's
  outcome stayed unknown, `provisional` while an adopted batch is not yet shown to be ours,
  `released` (batch ids shown not to be ours). An open intent carries `open` = "open", the key
  of the sparse index `OPEN_INDEX`: every run reads open work through it, never the history
  (intents recorded before the index are put on it once, `index_earlier_intents`);
- items: pk "intent#<intent id>", sk <custom_id>: the queued request (its SQS body), tenant,
  request_id, attempt, and `outcome` once the poller has acted on its result;
- claims: pk "claim#<tenant>/<request id>", sk "claim": which intent holds the request at which
  attempt, so a redelivered SQS message is never submitted twice.
Everything finished carries `expires_at` (epoch s, the table's TTL attribute): an item once its
outcome is recorded, an intent once closed, a claim from the start (`CLAIM_TTL_S`, longer than
any message can wait in the batch queue). Expiry is checked in code where it matters (claims).
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
#: the sparse index of open intents: partition key `OPEN_KEY` (set only while open), sort key sk
OPEN_INDEX = "open"
OPEN_KEY = "open"
TTL_ATTRIBUTE = "expires_at"
#: the row saying intents recorded before the open index have been put on it
INDEXED_MARKER = {"pk": {"S": "schema"}, "sk": {"S": "open-index"}}
#: seconds finished items and intents are kept for operators before the TTL removes them
FINISHED_TTL_S = 7 * 86_400
#: seconds a claim is kept from when it is written: longer than the batch queue keeps a message
#: (4 days) plus a batch's 24 h, so a redelivery is always recognised
CLAIM_TTL_S = 14 * 86_400


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
    #: epoch s of the create call under way (set before it, removed when refused)
    attempt_at: float | None = None
    #: epoch s of the earliest create call whose outcome is unknown
    unknown_since: float | None = None
    #: the batch was adopted, not created by us: not ours until results show our custom ids
    provisional: bool = False
    #: batch ids adopted once and shown not to be ours
    released: tuple[str, ...] = ()

    @classmethod
    def from_item(cls, item: dict) -> "Intent":
        def number(name: str) -> float | None:
            return float(item[name]["N"]) if name in item else None

        return cls(item["sk"]["S"], item["state"]["S"], item["model"]["S"], int(item["n"]["N"]),
                   float(item["created_at"]["N"]),
                   item.get("batch_id", {}).get("S"), number("submitted_at"),
                   number("attempt_at"), number("unknown_since"),
                   item.get("provisional", {}).get("BOOL", False),
                   tuple(sorted(item.get("released", {}).get("SS", ()))))

    def maybe_created_since(self) -> float | None:
        """Epoch s from which a batch of ours may exist although none was recorded (a create
        call that died or failed with an unknown outcome); None: no batch can exist."""
        known = [t for t in (self.attempt_at, self.unknown_since) if t is not None]
        return min(known) if known else None


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
        self._indexed = False

    def _expiry(self, seconds: int) -> dict:
        return {"N": str(int(self.clock() + seconds))}

    # -- claims --------------------------------------------------------------------------

    def claim(self, tenant: str, request_id: str, attempt: int, intent_id: str) -> bool:
        """Claim a request for `intent_id`. False: a live intent already holds it at this (or
        a later) attempt, so this delivery is a duplicate. A claim whose intent was never
        recorded (a collector died before the intent write; its item rows are dropped) or was
        abandoned, and a claim past its expiry, is taken over."""
        key = {"pk": {"S": f"claim#{tenant}/{request_id}"}, "sk": {"S": "claim"}}
        item = {**key, "intent_id": {"S": intent_id}, "attempt": {"N": str(attempt)},
                TTL_ATTRIBUTE: self._expiry(CLAIM_TTL_S)}
        try:
            self.dynamodb.put_item(
                TableName=self.table, Item=item,
                ConditionExpression="attribute_not_exists(pk) OR attempt < :a OR #x < :now",
                ExpressionAttributeNames={"#x": TTL_ATTRIBUTE},
                ExpressionAttributeValues={":a": {"N": str(attempt)},
                                           ":now": {"N": str(int(self.clock()))}},
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
        if holder and header is None:
            self.drop_items(holder)  # written by a run that died before recording its intent
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
        self._write(requests)

    def drop_items(self, intent_id: str) -> None:
        """Delete the item rows of an intent that was never recorded (no orphans)."""
        keys = self._query({"KeyConditionExpression": "pk = :pk", "ProjectionExpression": "pk, sk",
                            "ExpressionAttributeValues": {":pk": {"S": f"intent#{intent_id}"}}})
        self._write([{"DeleteRequest": {"Key": {"pk": k["pk"], "sk": k["sk"]}}} for k in keys])

    def _write(self, requests: list[dict]) -> None:
        for start in range(0, len(requests), 25):
            pending = {self.table: requests[start:start + 25]}
            while pending:
                left = self.dynamodb.batch_write_item(RequestItems=pending)
                pending = left.get("UnprocessedItems") or {}

    def _query(self, kwargs: dict, consistent: bool = True) -> list[dict]:
        kwargs = {"TableName": self.table, **kwargs}
        if consistent:
            kwargs["ConsistentRead"] = True
        out: list[dict] = []
        while True:
            page = self.dynamodb.query(**kwargs)
            out += page["Items"]
            if "LastEvaluatedKey" not in page:
                return out
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def items(self, intent_id: str) -> dict[str, dict]:
        """custom_id -> {"body", "outcome", "tenant", "request_id", "problem"} of one intent
        (consistent read). A row whose body cannot be read has body None and a `problem`
        naming why; its tenant and request id still say whose request it was."""
        out: dict[str, dict] = {}
        for item in self._query({"KeyConditionExpression": "pk = :pk",
                                 "ExpressionAttributeValues": {
                                     ":pk": {"S": f"intent#{intent_id}"}}}):
            body, problem = None, None
            try:
                body = json.loads(item["body"]["S"])
                if not isinstance(body, dict) or not isinstance(body.get("request"), dict):
                    body, problem = None, "its body is not a queued request"
            except (KeyError, ValueError) as err:
                problem = f"its body is not JSON ({err})"
            out[item["sk"]["S"]] = {"body": body, "problem": problem,
                                    "outcome": item.get("outcome", {}).get("S"),
                                    "tenant": item.get("tenant", {}).get("S"),
                                    "request_id": item.get("request_id", {}).get("S")}
        return out

    def mark_item(self, intent_id: str, custom_id: str, outcome: str) -> bool:
        """Record that the poller acted on this item's result (the row then expires); False if
        it already had."""
        try:
            self.dynamodb.update_item(
                TableName=self.table,
                Key={"pk": {"S": f"intent#{intent_id}"}, "sk": {"S": custom_id}},
                UpdateExpression="SET outcome = :o, #x = :x",
                ConditionExpression="attribute_exists(pk) AND attribute_not_exists(outcome)",
                ExpressionAttributeNames={"#x": TTL_ATTRIBUTE},
                ExpressionAttributeValues={":o": {"S": outcome},
                                           ":x": self._expiry(FINISHED_TTL_S)})
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

    def has_room(self, n: int, cap: int) -> bool:
        """Whether `n` more requests fit under the cap now. Only the collector (one at a time)
        reserves, so a True holds until it records its intent."""
        return n <= cap and self.queued() + n <= cap

    def record_intent(self, intent: Intent, cap: int) -> None:
        """The intent and the counter reservation in one transaction; raises QueueFull."""
        if intent.n > cap:
            raise QueueFull(f"{intent.n} items are more than the queue cap {cap}")
        header = {"pk": {"S": INTENTS}, "sk": {"S": intent.intent_id},
                  "state": {"S": "intent"}, "model": {"S": intent.model},
                  "n": {"N": str(intent.n)}, "created_at": {"N": repr(intent.created_at)},
                  OPEN_KEY: {"S": OPEN_INDEX}}
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
        """Move an intent from `expected` to `state` (off the open index, expiring) and release
        its counter reservation."""
        try:
            self.dynamodb.transact_write_items(TransactItems=[
                {"Update": {"TableName": self.table,
                            "Key": {"pk": {"S": INTENTS}, "sk": {"S": intent.intent_id}},
                            "UpdateExpression": "SET #s = :s, closed_at = :t, #x = :x "
                                                "REMOVE #open, attempt_at, provisional",
                            "ConditionExpression": "#s = :e",
                            "ExpressionAttributeNames": {"#s": "state", "#x": TTL_ATTRIBUTE,
                                                         "#open": OPEN_KEY},
                            "ExpressionAttributeValues": {":s": {"S": state},
                                                          ":e": {"S": expected},
                                                          ":t": {"N": repr(self.clock())},
                                                          ":x": self._expiry(FINISHED_TTL_S)}}},
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

    def _update(self, intent: Intent, expression: str, condition: str,
                values: dict | None = None, names: dict | None = None) -> None:
        kwargs: dict[str, Any] = {
            "TableName": self.table, "Key": {"pk": {"S": INTENTS}, "sk": {"S": intent.intent_id}},
            "UpdateExpression": expression, "ConditionExpression": condition,
            "ExpressionAttributeNames": {"#s": "state", **(names or {})}}
        if values:
            kwargs["ExpressionAttributeValues"] = values
        self.dynamodb.update_item(**kwargs)

    def mark_attempt(self, intent: Intent) -> None:
        """Before a create call: from now until it is refused, a batch of ours may exist."""
        now, since = self.clock(), intent.maybe_created_since()
        values = {":e": {"S": "intent"}, ":t": {"N": repr(now)}}
        expression = "SET attempt_at = :t"
        if since is not None:  # an earlier call's outcome is unknown: keep its window
            expression += ", unknown_since = :u"
            values[":u"] = {"N": repr(since)}
        self._update(intent, expression, "#s = :e", values)
        intent.attempt_at, intent.unknown_since = now, since

    def clear_attempt(self, intent: Intent) -> None:
        """The create call was refused: it created no batch."""
        self._update(intent, "REMOVE attempt_at", "#s = :e", {":e": {"S": "intent"}})
        intent.attempt_at = None

    def mark_submitted(self, intent: Intent, batch_id: str, *, provisional: bool = False
                       ) -> None:
        """The intent's batch: created by us, or (`provisional`) adopted after a create call
        whose outcome is unknown, until its results show one of our custom ids."""
        now, since = self.clock(), intent.maybe_created_since()
        values = {":s": {"S": "submitted"}, ":e": {"S": "intent"}, ":b": {"S": batch_id},
                  ":t": {"N": repr(now)}, ":p": {"BOOL": provisional}}
        expression = "SET #s = :s, batch_id = :b, submitted_at = :t, provisional = :p"
        if since is not None:
            expression += ", unknown_since = :u"
            values[":u"] = {"N": repr(since)}
        self._update(intent, expression + " REMOVE attempt_at", "#s = :e", values)
        intent.state, intent.batch_id, intent.submitted_at = "submitted", batch_id, now
        intent.provisional, intent.attempt_at, intent.unknown_since = provisional, None, since

    def confirm(self, intent: Intent) -> None:
        """An adopted batch holds one of our custom ids: it is ours."""
        self._update(intent, "SET provisional = :f", "#s = :e AND batch_id = :b",
                     {":e": {"S": "submitted"}, ":b": {"S": intent.batch_id},
                      ":f": {"BOOL": False}})
        intent.provisional = False

    def release(self, intent: Intent) -> None:
        """An adopted batch ended without any of our custom ids: not ours. The intent goes
        back to "intent" (its reservation kept, no attempt counted) and never adopts it again."""
        self._update(intent, "SET #s = :i ADD released :r REMOVE batch_id, submitted_at, "
                             "provisional", "#s = :e AND batch_id = :b AND provisional = :t",
                     {":i": {"S": "intent"}, ":e": {"S": "submitted"},
                      ":b": {"S": intent.batch_id}, ":r": {"SS": [intent.batch_id]},
                      ":t": {"BOOL": True}})
        intent.released = tuple(sorted({*intent.released, intent.batch_id}))
        intent.state, intent.batch_id, intent.submitted_at = "intent", None, None
        intent.provisional = False

    def intent(self, intent_id: str) -> Intent | None:
        item = self.dynamodb.get_item(TableName=self.table, ConsistentRead=True, Key={
            "pk": {"S": INTENTS}, "sk": {"S": intent_id}}).get("Item")
        return Intent.from_item(item) if item else None

    def index_earlier_intents(self) -> None:
        """Once per table: intents recorded before the open index existed are put on it (and
        closed ones given their expiry), then a marker row says it is done. Later calls read
        only the marker, once per store."""
        if self._indexed:
            return
        if "Item" not in self.dynamodb.get_item(TableName=self.table, ConsistentRead=True,
                                                Key=INDEXED_MARKER):
            for item in self._query({"KeyConditionExpression": "pk = :pk",
                                     "ExpressionAttributeValues": {":pk": {"S": INTENTS}}}):
                intent = Intent.from_item(item)
                if intent.state in OPEN_STATES and OPEN_KEY not in item:
                    self._update(intent, "SET #o = :o", "#s = :e", {
                        ":o": {"S": OPEN_INDEX}, ":e": {"S": intent.state}}, {"#o": OPEN_KEY})
                elif intent.state not in OPEN_STATES and TTL_ATTRIBUTE not in item:
                    self._update(intent, "SET #x = :x", "#s = :e", {
                        ":x": self._expiry(FINISHED_TTL_S), ":e": {"S": intent.state}},
                        {"#x": TTL_ATTRIBUTE})
            self.dynamodb.update_item(TableName=self.table, Key=INDEXED_MARKER,
                                      UpdateExpression="SET indexed_at = :t",
                                      ExpressionAttributeValues={":t": {"N": repr(self.clock())}})
        self._indexed = True

    def intents(self, states: tuple[str, ...] = OPEN_STATES) -> list[Intent]:
        """Open intents in `states`, oldest first. Read through the sparse open index (only
        open work, never the history), then each one consistently: the index lags."""
        self.index_earlier_intents()
        keys = self._query({"IndexName": OPEN_INDEX, "KeyConditionExpression": "#o = :o",
                            "ExpressionAttributeNames": {"#o": OPEN_KEY},
                            "ExpressionAttributeValues": {":o": {"S": OPEN_INDEX}}},
                           consistent=False)
        out = [i for i in (self.intent(k["sk"]["S"]) for k in keys)
               if i is not None and i.state in states]
        return sorted(out, key=lambda i: (i.created_at, i.intent_id))

    def queued(self) -> int:
        item = self.dynamodb.get_item(TableName=self.bucket_table, ConsistentRead=True,
                                      Key={"pk": {"S": self.counter_key}}).get("Item")
        return int(item["queued"]["N"]) if item and "queued" in item else 0


def ensure_batch_table(dynamodb, name: str) -> None:
    """Create the batch table as the stack deploys it (keys, the open index, the TTL); for
    local runs and tests."""
    dynamodb.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"}
                              for k in ("pk", "sk", OPEN_KEY)],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                   {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[{
            "IndexName": OPEN_INDEX, "Projection": {"ProjectionType": "KEYS_ONLY"},
            "KeySchema": [{"AttributeName": OPEN_KEY, "KeyType": "HASH"},
                          {"AttributeName": "sk", "KeyType": "RANGE"}]}])
    dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification={
        "Enabled": True, "AttributeName": TTL_ATTRIBUTE})
