"""Stateful resources of the agent: the data key, its tables, queues and the tools' data.

Every table and queue is encrypted with the kit's customer-managed key. In prod they are
retained on stack deletion and tables are deletion-protected; construct ids (and so logical
ids) never change between stages.
"""

from __future__ import annotations

from typing import Sequence

from aws_cdk import Annotations, Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from agent.payloads import MAX_SQS_MESSAGE_BYTES, RETENTION_DAYS
from agent.tools import ToolTable

from .acknowledgements import acknowledge


_RETENTION = {1: "ONE_DAY", 3: "THREE_DAYS", 5: "FIVE_DAYS", 7: "ONE_WEEK", 14: "TWO_WEEKS",
              30: "ONE_MONTH", 60: "TWO_MONTHS", 90: "THREE_MONTHS", 120: "FOUR_MONTHS",
              150: "FIVE_MONTHS", 180: "SIX_MONTHS", 365: "ONE_YEAR", 400: "THIRTEEN_MONTHS",
              545: "EIGHTEEN_MONTHS", 731: "TWO_YEARS", 1096: "THREE_YEARS",
              1827: "FIVE_YEARS", 2192: "SIX_YEARS", 2557: "SEVEN_YEARS", 2922: "EIGHT_YEARS",
              3288: "NINE_YEARS", 3653: "TEN_YEARS"}


def log_retention(days: int) -> logs.RetentionDays:
    """CloudWatch Logs retention for a validated number of days (settings.RETENTION_DAYS)."""
    return getattr(logs.RetentionDays, _RETENTION[days])


class DataKey(Construct):
    """The customer-managed key for the kit's data (or an existing one, by ARN)."""

    def __init__(self, scope: Construct, id: str, *, existing_key_arn: str | None,
                 prod: bool) -> None:
        super().__init__(scope, id)
        stack = Stack.of(self)
        if existing_key_arn:
            self.key: kms.IKey = kms.Key.from_key_arn(self, "Existing", existing_key_arn)
            Annotations.of(self).add_warning_v2(
                "bulwark:ExistingKeyPolicy",
                "existing_kms_key_arn: this stack cannot edit the key's policy. It must let "
                f"logs.{stack.region}.amazonaws.com and cloudtrail.amazonaws.com use the key "
                "(see DataKey in stacks/state.py for the statements) or the log groups and "
                "the trail fail to create.")
            return
        key = kms.Key(self, "Key", enable_key_rotation=True,
                      description=f"Bulwark data key ({stack.stack_name})",
                      removal_policy=RemovalPolicy.RETAIN if prod else RemovalPolicy.DESTROY)
        key.add_to_resource_policy(iam.PolicyStatement(
            sid="CloudWatchLogsForThisAccount",
            principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
            actions=["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*",
                     "kms:Describe*"],
            resources=["*"],  # in a key policy "*" means this key
            conditions={
                # kms:EncryptionContext:aws:logs:arn: only log groups of this account/region.
                "ArnLike": {"kms:EncryptionContext:aws:logs:arn":
                            f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:*"},
                # aws:SourceAccount: CloudWatch Logs acting for this account only.
                "StringEquals": {"aws:SourceAccount": stack.account}}))
        self.key = key


class AgentState(Construct):
    """Bucket, idempotency and results tables; work queue and DLQ (messages up to 1 MiB); the
    payload bucket (claim checks: `agent.payloads`); tenant documents bucket, notes table and
    the tables tools declare (the tools' resources)."""

    def __init__(self, scope: Construct, id: str, *, key: kms.IKey, prod: bool,
                 access_log_bucket: s3.IBucket, tool_tables: Sequence[ToolTable] = ()) -> None:
        super().__init__(scope, id)
        removal = RemovalPolicy.RETAIN if prod else RemovalPolicy.DESTROY

        def table(name: str, partition: str, sort: str | None = None,
                  ttl: str | None = None) -> dynamodb.Table:
            return dynamodb.Table(
                self, name,
                partition_key=dynamodb.Attribute(name=partition,
                                                 type=dynamodb.AttributeType.STRING),
                sort_key=dynamodb.Attribute(name=sort, type=dynamodb.AttributeType.STRING)
                if sort else None,
                billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
                encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED, encryption_key=key,
                point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                    point_in_time_recovery_enabled=True),
                time_to_live_attribute=ttl, deletion_protection=prod, removal_policy=removal)

        #: the token bucket items (guard.ensure_table's schema)
        self.bucket_table = table("BucketTable", "pk")
        self.idempotency_table = table("IdempotencyTable", "id", ttl="expiration")
        #: TTL only cleans up: expiry is checked in code on read
        self.results_table = table("ResultsTable", "request_id", ttl="expires_at")
        self.notes_table = table("NotesTable", "tenant", "note_id")
        #: tables the tools declare (`Tool.needs`), by placeholder name
        self.tool_tables = {need.name: table(need.name, need.partition_key, need.sort_key)
                            for need in tool_tables}

        self.dead_letter_queue = sqs.Queue(
            self, "DeadLetterQueue", encryption=sqs.QueueEncryption.KMS, encryption_master_key=key,
            enforce_ssl=True, retention_period=Duration.days(14), removal_policy=removal,
            max_message_size_bytes=MAX_SQS_MESSAGE_BYTES)
        self.work_queue = sqs.Queue(
            self, "WorkQueue", encryption=sqs.QueueEncryption.KMS, encryption_master_key=key,
            enforce_ssl=True, visibility_timeout=Duration.seconds(6 * 120),
            max_message_size_bytes=MAX_SQS_MESSAGE_BYTES,
            retention_period=Duration.days(4), removal_policy=removal,
            # A backstop: the handler dead-letters with a reason after MAX_RECEIVES itself.
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=5,
                                                  queue=self.dead_letter_queue))
        acknowledge(self.dead_letter_queue, "Serverless-SQSRedrivePolicy",
                    "This queue is the dead-letter queue.")

        self.documents = s3.Bucket(
            self, "DocumentsBucket", encryption=s3.BucketEncryption.KMS, encryption_key=key,
            bucket_key_enabled=True, block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True, versioned=True, server_access_logs_bucket=access_log_bucket,
            server_access_logs_prefix="documents/", removal_policy=removal)
        self.payloads = payload_bucket(self, "PayloadBucket", key=key, removal=removal,
                                       access_log_bucket=access_log_bucket)


def payload_bucket(scope: Construct, id: str, *, key: kms.IKey, removal: RemovalPolicy,
                   access_log_bucket: s3.IBucket) -> s3.Bucket:
    """Answers and queue messages too large to keep inline (`agent.payloads`): encrypted with
    the data key, TLS-only, private. Objects expire after RETENTION_DAYS (S3 lifecycle counts
    whole days: the code checks an answer's own expiry on read), longer than the DLQs keep a
    message, so a dead letter's claim check outlives it."""
    return s3.Bucket(
        scope, id, encryption=s3.BucketEncryption.KMS, encryption_key=key,
        bucket_key_enabled=True, block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True, versioned=True, server_access_logs_bucket=access_log_bucket,
        server_access_logs_prefix="payloads/", removal_policy=removal,
        lifecycle_rules=[s3.LifecycleRule(
            expiration=Duration.days(RETENTION_DAYS),
            noncurrent_version_expiration=Duration.days(1),
            abort_incomplete_multipart_upload_after=Duration.days(1))])
