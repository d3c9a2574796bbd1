"""Where the bucket item lives: one conditional write and one state read, behind a small
interface (like Powertools' idempotency persistence layer).

`TokenBucket` decides what to write (the forms in `guard.gcra`) and what a reply means; a
`BucketStore` only sends it. `DynamoDBStore` is the store the stack deploys (a table with
string partition key `pk`, see `ensure_table`); any object with the same two methods can
stand in for it, so the bucket's logic runs without AWS. Store trouble never raises: it is
the outcome `STORE_UNAVAILABLE`, logged here with the bucket and table it concerns.
"""

from __future__ import annotations

import logging
from typing import Protocol

from .bucket_item import PARTITION_KEY, STATE_ATTRIBUTES, Update
from .outcomes import STORE_UNAVAILABLE

log = logging.getLogger(__name__)

#: Outcomes of `BucketStore.update` besides `STORE_UNAVAILABLE`: the condition held and the
#: write was made, or the condition failed and nothing was written.
WRITTEN = "written"
REFUSED = "refused"

#: The state read's projection: a placeholder per state attribute.
STATE_NAMES = {f"#a{i}": attribute for i, attribute in enumerate(STATE_ATTRIBUTES)}


class BucketStore(Protocol):
    """The two calls the bucket makes on its item's store."""

    def update(self, update: Update) -> tuple[str, dict | None]:
        """Send one conditional write. Returns (`WRITTEN`, the item after it), (`REFUSED`, the
        item before it, or None when the store did not return it) or (`STORE_UNAVAILABLE`,
        None); items as DynamoDB attribute values (`guard.bucket_item.decode` reads them)."""
        ...

    def read_state(self) -> dict | None:
        """The item's state attributes (strongly consistent; {} when there is no item yet), or
        None when the store cannot be read."""
        ...


def default_client():
    """A boto3 DynamoDB client with short timeouts and one SDK retry: the guard answers
    "store_unavailable" quickly instead of holding a Claude call hostage to a slow table."""
    import boto3
    from botocore.config import Config

    return boto3.client("dynamodb", config=Config(
        connect_timeout=1, read_timeout=2, retries={"mode": "standard", "total_max_attempts": 2}))


class DynamoDBStore:
    """The bucket item `bucket_id` in the DynamoDB table `table_name`, through `dynamodb` (a
    boto3 DynamoDB *client*; `default_client()` on first use when None)."""

    def __init__(self, table_name: str, bucket_id: str, dynamodb=None) -> None:
        self.table_name = table_name
        self.bucket_id = bucket_id
        self._client = dynamodb

    @property
    def client(self):
        """The boto3 DynamoDB client (created on first use)."""
        if self._client is None:
            self._client = default_client()
        return self._client

    def _context(self) -> dict[str, str]:
        return {"bucket_id": self.bucket_id, "table": self.table_name}

    def update(self, update: Update) -> tuple[str, dict | None]:
        """One UpdateItem (`ALL_NEW` on success, `ALL_OLD` when the condition fails)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.client.update_item(**update.request(self.table_name,
                                                                self.bucket_id))
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            if code == "ConditionalCheckFailedException":
                return REFUSED, err.response.get("Item")
            log.warning("token bucket store error: %s", code or err, extra=self._context())
            return STORE_UNAVAILABLE, None
        except BotoCoreError as err:
            log.warning("token bucket store unreachable: %s", err, extra=self._context())
            return STORE_UNAVAILABLE, None
        return WRITTEN, response.get("Attributes", {})

    def read_state(self) -> dict | None:
        """One strongly consistent GetItem of the state attributes (a projection: IAM allows
        no other attribute of the bucket table)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.client.get_item(
                TableName=self.table_name, Key={PARTITION_KEY: {"S": self.bucket_id}},
                ConsistentRead=True, ProjectionExpression=", ".join(STATE_NAMES),
                ExpressionAttributeNames=STATE_NAMES)
        except (BotoCoreError, ClientError) as err:
            log.warning("token bucket state read failed: %s", err, extra=self._context())
            return None
        return response.get("Item", {})


def ensure_table(dynamodb, name: str) -> None:
    """Create the bucket table if it is missing (the schema the stack deploys) and wait for it.

    `dynamodb` is a boto3 DynamoDB client. String partition key `pk`, on-demand billing.
    """
    try:
        dynamodb.create_table(
            TableName=name,
            AttributeDefinitions=[{"AttributeName": PARTITION_KEY, "AttributeType": "S"}],
            KeySchema=[{"AttributeName": PARTITION_KEY, "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
    except dynamodb.exceptions.ResourceInUseException:
        pass
    dynamodb.get_waiter("table_exists").wait(TableName=name,
                                             WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})
