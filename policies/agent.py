"""IAM for the agent Lambda's execution role: exact actions on exact resources, narrowed by
condition keys. Each condition carries a one-line comment on what it prevents.

Statements are plain `iam.PolicyStatement`s built from typed inputs (ARNs may be CDK tokens),
so the stack, the boundary and the access-matrix tests all read the same definitions.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import aws_iam as iam

from guard.gcra import STATE_ATTRIBUTES


@dataclass(frozen=True)
class AgentResources:
    """ARNs and names the agent role acts on (tokens are fine)."""

    account: str
    region: str
    partition: str
    bucket_table_arn: str
    bucket_ids: tuple[str, ...]
    idempotency_table_arn: str
    idempotency_key_prefix: str  # "<function name>." : Powertools' idempotency key prefix
    results_table_arn: str
    work_queue_arn: str
    dead_letter_queue_arn: str
    data_key_arn: str
    tool_role_arn: str
    tenants: tuple[str, ...]
    agent_name: str
    log_group_arn: str
    allowed_regions: tuple[str, ...]
    api_key_secret_arn: str | None = None
    #: Bedrock: inference profile id -> (foundation model id, regions it routes to)
    bedrock_profiles: tuple[tuple[str, str, tuple[str, ...]], ...] = ()
    #: the payload bucket (claim checks for answers and messages too large to keep inline)
    payload_bucket_arn: str | None = None


def agent_statements(r: AgentResources) -> list[iam.PolicyStatement]:
    """Everything the agent Lambda may do, one statement per purpose."""
    statements = [
        iam.PolicyStatement(
            sid="RateLimitBucketWrite",
            # One conditional UpdateItem per acquire/settle: no reads, no deletes.
            actions=["dynamodb:UpdateItem"],
            resources=[r.bucket_table_arn],
            conditions={
                # dynamodb:LeadingKeys: only the configured models' bucket items, so a
                # compromised function cannot reset or drain another bucket in the table.
                "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": list(r.bucket_ids)},
            }),
        iam.PolicyStatement(
            sid="RateLimitStateRead",
            # A caller that booked a start reads the bucket's state (the shared cool-down and
            # the queue) once before it sends.
            actions=["dynamodb:GetItem"],
            resources=[r.bucket_table_arn],
            conditions={
                # dynamodb:LeadingKeys: only the configured models' bucket items.
                # dynamodb:Attributes: only the rate-limit state attributes (a projection
                # naming them, nothing else a bucket table item could hold), and the Null check
                # makes a read without a projection (every attribute) fail.
                "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": list(r.bucket_ids),
                                              "dynamodb:Attributes": list(STATE_ATTRIBUTES)},
                "Null": {"dynamodb:Attributes": "false"},
            }),
        iam.PolicyStatement(
            sid="IdempotencyRecords",
            actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
                     "dynamodb:DeleteItem"],
            resources=[r.idempotency_table_arn],
            conditions={
                # dynamodb:LeadingKeys: only this function's idempotency keys
                # ("<function>.<handler>#<hash>"), not another function's records.
                "ForAllValues:StringLike": {
                    "dynamodb:LeadingKeys": [r.idempotency_key_prefix + "*"]},
            }),
        iam.PolicyStatement(
            sid="DeferredResults",
            # Results are keyed by caller-chosen request ids: the tenant is checked in code on
            # read, and the item itself records the tenant.
            actions=["dynamodb:GetItem", "dynamodb:PutItem"],
            resources=[r.results_table_arn]),
        iam.PolicyStatement(
            sid="DeferAndDeadLetter",
            actions=["sqs:SendMessage"],
            resources=[r.work_queue_arn, r.dead_letter_queue_arn]),
        iam.PolicyStatement(
            sid="ConsumeWorkQueue",
            # The SQS event source mapping polls with the function's role.
            actions=["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
                     "sqs:GetQueueAttributes"],
            resources=[r.work_queue_arn]),
        iam.PolicyStatement(
            sid="DataKeyThroughServices",
            actions=["kms:Decrypt", "kms:GenerateDataKey"],
            resources=[r.data_key_arn],
            conditions={
                # kms:ViaService: the key is usable only by DynamoDB, SQS and Secrets Manager
                # on the function's behalf, never to decrypt arbitrary ciphertext directly.
                "StringEquals": {"kms:ViaService": [
                    f"dynamodb.{r.region}.amazonaws.com", f"sqs.{r.region}.amazonaws.com",
                    f"secretsmanager.{r.region}.amazonaws.com"] + (
                    [f"s3.{r.region}.amazonaws.com"] if r.payload_bucket_arn else [])},
            }),
        iam.PolicyStatement(
            sid="AssumeToolRoleForOneRequest",
            actions=["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"],
            resources=[r.tool_role_arn],
            conditions={
                # sts:SourceIdentity: every tool session names its request; CloudTrail then
                # records it on each AWS call the tools make (no anonymous sessions).
                "Null": {"sts:SourceIdentity": "false"},
                # aws:RequestTag/tenant: only configured tenants; a prompt cannot invent one.
                "StringEquals": {"aws:RequestTag/tenant": list(r.tenants),
                                 "aws:RequestTag/agent": r.agent_name},
                # aws:TagKeys: no other session tags that a tool policy might trust.
                "ForAllValues:StringEquals": {"aws:TagKeys": ["tenant", "agent"]},
            }),
        iam.PolicyStatement(
            sid="OwnLogGroup",
            actions=["logs:CreateLogStream", "logs:PutLogEvents"],
            resources=[r.log_group_arn, f"{r.log_group_arn}:log-stream:*"]),
        iam.PolicyStatement(
            sid="XRayTraces",
            # X-Ray has no resource-level permissions: "*" is the only resource it accepts.
            actions=["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
            resources=["*"],
            conditions={
                # aws:RequestedRegion: traces only go to the deployment's allowed regions.
                "StringEquals": {"aws:RequestedRegion": list(r.allowed_regions)},
            }),
    ]
    if r.api_key_secret_arn:
        statements.append(iam.PolicyStatement(
            sid="ReadClaudeApiKey",
            actions=["secretsmanager:GetSecretValue"],
            resources=[r.api_key_secret_arn],
            conditions={
                # secretsmanager:VersionStage: only the current key, not staged or old ones.
                "StringEquals": {"secretsmanager:VersionStage": "AWSCURRENT"},
            }))
    if r.payload_bucket_arn:
        statements.append(payload_statement(r))
    statements += bedrock_statements(r)
    return statements


def payload_statement(r: AgentResources) -> iam.PolicyStatement:
    """Claim checks: put and read objects under the payload bucket's three prefixes (answers,
    work-queue messages, dead letters); no list, no delete (the lifecycle expires them)."""
    return iam.PolicyStatement(
        sid="PayloadClaimChecks",
        actions=["s3:PutObject", "s3:GetObject"],
        resources=[f"{r.payload_bucket_arn}/{prefix}/*" for prefix in ("results", "queue",
                                                                          "dlq")],
        conditions={
            # aws:ResourceAccount: only this account's bucket, so a payload never goes to a
            # bucket of the same name in another account (a deleted and re-created name).
            "StringEquals": {"aws:ResourceAccount": r.account},
        })


def bedrock_statements(r: AgentResources) -> list[iam.PolicyStatement]:
    """InvokeModel* only through the configured inference profiles and the models they route to
    (Amazon Bedrock's documented IAM for cross-region and global inference profiles)."""
    statements = []
    actions = ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]
    for index, (profile_id, model_id, regions) in enumerate(r.bedrock_profiles):
        profile_arn = (f"arn:{r.partition}:bedrock:{r.region}:{r.account}:"
                       f"inference-profile/{profile_id}")
        statements.append(iam.PolicyStatement(
            sid=f"InvokeInferenceProfile{index}", actions=actions, resources=[profile_arn],
            conditions={
                # aws:RequestedRegion: the profile is called in the deployment's region only.
                "StringEquals": {"aws:RequestedRegion": r.region}}))
        statements.append(iam.PolicyStatement(
            sid=f"InvokeRoutedModels{index}", actions=actions,
            resources=[f"arn:{r.partition}:bedrock:{region}::foundation-model/{model_id}"
                       for region in regions],
            conditions={
                # bedrock:InferenceProfileArn: the regional models are reachable only through
                # the configured profile, not invoked directly (no bypass of its routing).
                "StringEquals": {"bedrock:InferenceProfileArn": profile_arn}}))
        if profile_id.startswith("global."):
            statements.append(iam.PolicyStatement(
                sid=f"InvokeGlobalModel{index}", actions=actions,
                resources=[f"arn:{r.partition}:bedrock:::foundation-model/{model_id}"],
                conditions={
                    # aws:RequestedRegion "unspecified" + the profile ARN: the global model ARN
                    # only as routed by this global profile.
                    "StringEquals": {"aws:RequestedRegion": "unspecified",
                                     "bedrock:InferenceProfileArn": profile_arn}}))
    return statements
