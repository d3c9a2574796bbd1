"""IAM for any caller of the guard's token bucket: the agent, the batch lane, or a function in
another CDK app that shares the deployed bucket (`stacks.bucket_table.GuardBucketTable`).

Each condition carries a one-line comment on what it prevents.
"""

from __future__ import annotations

from typing import Iterable

from aws_cdk import aws_iam as iam

from guard.gcra import STATE_ATTRIBUTES


def bucket_statements(table_arn: str, bucket_ids: Iterable[str],
                      sid: str = "RateLimit") -> list[iam.PolicyStatement]:
    """What `TokenBucket` needs on `bucket_ids`' items: one conditional UpdateItem per
    acquire or settle, and a projected GetItem of the bucket's state. No scans, no deletes."""
    ids = sorted(set(bucket_ids))
    if not ids:
        raise ValueError("bucket_ids is empty: name the buckets (e.g. 'anthropic#sonnet-4') "
                         "the caller may acquire from")
    return [
        iam.PolicyStatement(
            sid=f"{sid}BucketWrite",
            # One conditional UpdateItem per acquire/settle: no reads, no deletes.
            actions=["dynamodb:UpdateItem"],
            resources=[table_arn],
            conditions={
                # dynamodb:LeadingKeys: only the configured models' bucket items, so a
                # compromised function cannot reset or drain another bucket in the table.
                "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ids},
            }),
        iam.PolicyStatement(
            sid=f"{sid}StateRead",
            # A caller that booked a start reads the bucket's state (the shared cool-down and
            # the queue) once before it sends.
            actions=["dynamodb:GetItem"],
            resources=[table_arn],
            conditions={
                # dynamodb:LeadingKeys: only the configured models' bucket items.
                # dynamodb:Attributes: only the rate-limit state attributes (a projection
                # naming them, nothing else a bucket table item could hold), and the Null check
                # makes a read without a projection (every attribute) fail.
                "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ids,
                                              "dynamodb:Attributes": list(STATE_ATTRIBUTES)},
                "Null": {"dynamodb:Attributes": "false"},
            }),
    ]


def bucket_key_statement(key_arn: str, region: str, sid: str = "RateLimit"
                         ) -> iam.PolicyStatement:
    """The table's customer-managed key, for DynamoDB to encrypt and decrypt the items."""
    return iam.PolicyStatement(
        sid=f"{sid}DataKeyThroughDynamoDB",
        actions=["kms:Decrypt", "kms:GenerateDataKey"],
        resources=[key_arn],
        conditions={
            # kms:ViaService: the key only through DynamoDB in this region, never to decrypt
            # arbitrary ciphertext directly.
            "StringEquals": {"kms:ViaService": f"dynamodb.{region}.amazonaws.com"}})
