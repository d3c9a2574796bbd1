"""IAM for the batch lane's collector and poller roles (one role per function): exact actions
on exact resources, each condition with a one-line comment on what it prevents."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import aws_iam as iam

from agent.batch.state import OPEN_INDEX
from policies.budget import budget_charge_statement


@dataclass(frozen=True)
class BatchResources:
    region: str
    batch_queue_arn: str
    batch_dlq_arn: str
    batch_table_arn: str
    bucket_table_arn: str
    #: the batch endpoints' bucket item and the queued-requests counter item
    bucket_keys: tuple[str, ...]
    results_table_arn: str
    tenants: tuple[str, ...]
    data_key_arn: str
    log_group_arn: str
    allowed_regions: tuple[str, ...]
    api_key_secret_arn: str | None = None
    #: the payload bucket (answers over the results item's inline limit), and the account
    #: that owns it; None: no bucket, no S3 grant
    payload_bucket_arn: str | None = None
    account: str = ""


def _common(r: BatchResources, sid: str, *, via_s3: bool = False) -> list[iam.PolicyStatement]:
    statements = [
        iam.PolicyStatement(
            sid=f"{sid}BatchBucketAndCounter",
            # acquire (UpdateItem), the counter (UpdateItem in a transaction), its read.
            actions=["dynamodb:UpdateItem", "dynamodb:GetItem"],
            resources=[r.bucket_table_arn],
            conditions={
                # dynamodb:LeadingKeys: only the batch endpoints' bucket item and the counter,
                # never the interactive models' buckets (the batch lane cannot drain them).
                "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": list(r.bucket_keys)}}),
        iam.PolicyStatement(
            sid=f"{sid}DataKeyThroughServices",
            actions=["kms:Decrypt", "kms:GenerateDataKey"],
            resources=[r.data_key_arn],
            conditions={
                # kms:ViaService: the key only through DynamoDB, SQS and Secrets Manager (and
                # S3 for the poller's answer objects), never to decrypt ciphertext directly.
                "StringEquals": {"kms:ViaService": [
                    f"dynamodb.{r.region}.amazonaws.com", f"sqs.{r.region}.amazonaws.com",
                    f"secretsmanager.{r.region}.amazonaws.com"] + (
                    [f"s3.{r.region}.amazonaws.com"] if via_s3 else [])}}),
        iam.PolicyStatement(
            sid=f"{sid}OwnLogGroup",
            actions=["logs:CreateLogStream", "logs:PutLogEvents"],
            resources=[r.log_group_arn, f"{r.log_group_arn}:log-stream:*"]),
        iam.PolicyStatement(
            sid=f"{sid}XRayTraces",
            # X-Ray has no resource-level permissions: "*" is the only resource it accepts.
            actions=["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
            resources=["*"],
            conditions={
                # aws:RequestedRegion: traces only go to the deployment's allowed regions.
                "StringEquals": {"aws:RequestedRegion": list(r.allowed_regions)}}),
    ]
    if r.api_key_secret_arn:
        statements.append(iam.PolicyStatement(
            sid=f"{sid}ReadClaudeApiKey",
            actions=["secretsmanager:GetSecretValue"],
            resources=[r.api_key_secret_arn],
            conditions={
                # secretsmanager:VersionStage: only the current key, not staged or old ones.
                "StringEquals": {"secretsmanager:VersionStage": "AWSCURRENT"}}))
    return statements


def collector_statements(r: BatchResources, log_group_arn: str) -> list[iam.PolicyStatement]:
    """Read the batch queue, record claims/items/intents, dead-letter malformed messages."""
    r = _with_log_group(r, log_group_arn)
    return [
        iam.PolicyStatement(
            sid="CollectorConsumeBatchQueue",
            actions=["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
                     "sqs:GetQueueAttributes"],
            resources=[r.batch_queue_arn]),
        iam.PolicyStatement(
            sid="CollectorDeadLetter", actions=["sqs:SendMessage"],
            resources=[r.batch_dlq_arn]),
        iam.PolicyStatement(
            sid="CollectorBatchState",
            # claims and intents (conditional puts/updates), items (BatchWriteItem: written,
            # and dropped when their intent is never recorded), resume (the open index).
            actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
                     "dynamodb:BatchWriteItem", "dynamodb:Query"],
            resources=[r.batch_table_arn, _open_index(r)]),
        _error_answers(r, "CollectorErrorAnswers"),
    ] + _common(r, "Collector")


def poller_statements(r: BatchResources, log_group_arn: str) -> list[iam.PolicyStatement]:
    """Read batch state, store answers, requeue retries, dead-letter the rest."""
    r = _with_log_group(r, log_group_arn)
    return [
        iam.PolicyStatement(
            sid="PollerRequeueAndDeadLetter", actions=["sqs:SendMessage"],
            resources=[r.batch_queue_arn, r.batch_dlq_arn]),
        iam.PolicyStatement(
            sid="PollerBatchState",
            # intents and items: read (open intents through the open index), mark outcomes,
            # close (no puts, no deletes).
            actions=["dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:Query"],
            resources=[r.batch_table_arn, _open_index(r)]),
        _error_answers(r, "PollerStoreAnswers"),
        budget_charge_statement(r.bucket_table_arn, "PollerChargeBudgets"),
    ] + ([_answer_objects(r)] if r.payload_bucket_arn else []) + _common(
        r, "Poller", via_s3=bool(r.payload_bucket_arn))


def _answer_objects(r: BatchResources) -> iam.PolicyStatement:
    """Answers over the results item's inline limit: objects put under the payload bucket's
    results prefix (`agent.payloads`); no get (the agent reads them), no list, no delete (the
    bucket's lifecycle expires them)."""
    return iam.PolicyStatement(
        sid="PollerAnswerObjects",
        actions=["s3:PutObject"],
        resources=[f"{r.payload_bucket_arn}/results/*"],
        conditions={
            # aws:ResourceAccount: only this account's bucket, so an answer never goes to a
            # bucket of the same name in another account (a deleted and re-created name).
            "StringEquals": {"aws:ResourceAccount": r.account}})


def _open_index(r: BatchResources) -> str:
    return f"{r.batch_table_arn}/index/{OPEN_INDEX}"


def _error_answers(r: BatchResources, sid: str) -> iam.PolicyStatement:
    """Answers (the poller) and error answers of dead letters (both) in the results table."""
    return iam.PolicyStatement(
        sid=sid,
        actions=["dynamodb:PutItem"],
        resources=[r.results_table_arn],
        conditions={
            # dynamodb:LeadingKeys: results only under the configured tenants' keys
            # ("<tenant>/<request id>"), not arbitrary items of the results table.
            "ForAllValues:StringLike": {"dynamodb:LeadingKeys": [
                f"{tenant}/*" for tenant in r.tenants]}})


def _with_log_group(r: BatchResources, log_group_arn: str) -> BatchResources:
    from dataclasses import replace

    return replace(r, log_group_arn=log_group_arn)


def agent_batch_statement(batch_queue_arn: str) -> iam.PolicyStatement:
    """The agent queues lane-"batch" requests (its placeholder answer uses DeferredResults)."""
    return iam.PolicyStatement(sid="QueueBatchLane", actions=["sqs:SendMessage"],
                               resources=[batch_queue_arn])
