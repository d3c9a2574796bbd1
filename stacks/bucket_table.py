"""The guard's token-bucket table as a construct another CDK app can use.

Rate limits are per organisation, so every Claude caller in it must acquire from the same
bucket items. A second app (its own stack, its own functions) takes the table Bulwark deployed
by ARN and grants its roles exactly what `guard.TokenBucket` needs on named buckets:

    table = GuardBucketTable(self, "Buckets", table_arn=..., key_arn=...)
    table.grant_acquire(function.role, ["anthropic#sonnet-4"])
    function.add_environment("BUCKET_TABLE", table.table.table_name)

Inside an app that makes the table (Bulwark's is `AgentState.bucket_table`, stacks/state.py),
`GuardBucketTable(self, "Buckets", table=..., key=...)` gives it the same `grant_acquire`.
The statements are `policies.guard`'s, the ones the agent's role has too.
"""

from __future__ import annotations

from typing import Iterable

from aws_cdk import Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from policies.guard import bucket_key_statement, bucket_statements


class GuardBucketTable(Construct):
    """A bucket table (string partition key `pk`, `guard.ensure_table`'s schema) and the grant
    of acquire/settle on some of its buckets. `key`: the table's customer-managed key, if any."""

    def __init__(self, scope: Construct, id: str, *, table: dynamodb.ITable | None = None,
                 key: kms.IKey | None = None, table_arn: str | None = None,
                 key_arn: str | None = None) -> None:
        """Either `table` (and `key`), a table this app made, or `table_arn` (and `key_arn`),
        one another stack deployed (the table Bulwark's `BucketTable` output names), and the ARN
        of the key that encrypts it (None for an AWS-owned key)."""
        super().__init__(scope, id)
        if (table is None) == (table_arn is None):
            raise ValueError("give either table (a table of this app) or table_arn (a deployed "
                             "one), not both or neither")
        if table_arn is not None:
            if not table_arn.startswith("arn:") or ":table/" not in table_arn:
                raise ValueError("table_arn must be a DynamoDB table ARN (arn:aws:dynamodb:"
                                 f"<region>:<account>:table/<name>), got {table_arn!r}")
            if key_arn is not None and (not key_arn.startswith("arn:") or ":key/" not in key_arn):
                raise ValueError("key_arn must be a KMS key ARN (arn:aws:kms:<region>:"
                                 f"<account>:key/<id>) or None, got {key_arn!r}")
            table = dynamodb.Table.from_table_arn(self, "Table", table_arn)
            key = kms.Key.from_key_arn(self, "Key", key_arn) if key_arn else None
        self.table: dynamodb.ITable = table
        self.key: kms.IKey | None = key
        #: the table's region: DynamoDB uses the key there (from a deployed table's ARN)
        self.region: str = table_arn.split(":")[3] if table_arn else Stack.of(table).region

    def grant_acquire(self, grantee: iam.IGrantable, bucket_ids: Iterable[str]) -> None:
        """Lets `grantee` acquire from and settle into `bucket_ids` (items of this table):
        conditional UpdateItem and the projected state GetItem on those items only, and the
        table's key through DynamoDB. Nothing else in the table."""
        principal = grantee.grant_principal
        for statement in bucket_statements(self.table.table_arn, bucket_ids,
                                           sid="GuardBucket"):
            principal.add_to_principal_policy(statement)
        if self.key is not None:
            principal.add_to_principal_policy(
                bucket_key_statement(self.key.key_arn, self.region, sid="GuardBucket"))
