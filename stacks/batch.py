"""The batch lane's resources: its queue and DLQ and state table (`BatchState`, made before the
agent, which queues into it) and the collector and poller functions, their roles, log groups
and schedules (`BatchFunctions`). Policies come from `policies/batch.py`."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from agent.batch.state import OPEN_INDEX, OPEN_KEY, TTL_ATTRIBUTE
from agent.contract import (BATCH_BUCKET_ID, BATCH_VISIBILITY_TIMEOUT_S, NAMESPACE, Env,
                            encode_models)
from agent.payloads import MAX_SQS_MESSAGE_BYTES
from policies.batch import BatchResources, collector_statements, poller_statements
from policies.boundary import service_trust

from .acknowledgements import (CLAIM_CHECK_REASON, LOG_STREAMS_REASON, XRAY_REASON,
                               acknowledge, checkov_skip, claim_check_objects, log_streams,
                               wildcard_finding)
from .packaging import ARCHITECTURE, RUNTIME, lambda_code
from .settings import Settings
from .state import log_retention

FUNCTION_TIMEOUT = Duration.minutes(5)


class BatchState(Construct):
    """Batch queue (+ DLQ) and the batch state table (pk, sk), encrypted with the data key."""

    def __init__(self, scope: Construct, id: str, *, key: kms.IKey, prod: bool) -> None:
        super().__init__(scope, id)
        removal = RemovalPolicy.RETAIN if prod else RemovalPolicy.DESTROY
        self.dead_letter_queue = sqs.Queue(
            self, "DeadLetterQueue", encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key, enforce_ssl=True, retention_period=Duration.days(14),
            removal_policy=removal, max_message_size_bytes=MAX_SQS_MESSAGE_BYTES)
        self.queue = sqs.Queue(
            self, "Queue", encryption=sqs.QueueEncryption.KMS, encryption_master_key=key,
            enforce_ssl=True, visibility_timeout=Duration.seconds(BATCH_VISIBILITY_TIMEOUT_S),
            max_message_size_bytes=MAX_SQS_MESSAGE_BYTES,
            retention_period=Duration.days(4), removal_policy=removal,
            # A backstop: the collector and poller dead-letter with a reason themselves.
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=50,
                                                  queue=self.dead_letter_queue))
        acknowledge(self.dead_letter_queue, "Serverless-SQSRedrivePolicy",
                    "This queue is the batch lane's dead-letter queue.")
        # Schema as `agent.batch.state.ensure_batch_table`: finished rows expire (TTL); open
        # intents are read through a sparse index, so no run reads the history.
        self.table = dynamodb.Table(
            self, "Table",
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED, encryption_key=key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True),
            time_to_live_attribute=TTL_ATTRIBUTE,
            deletion_protection=prod, removal_policy=removal)
        self.table.add_global_secondary_index(
            index_name=OPEN_INDEX,
            partition_key=dynamodb.Attribute(name=OPEN_KEY, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType.KEYS_ONLY)


class BatchFunctions(Construct):
    """Collector and poller: same asset as the agent, one role each, run on a schedule, one
    at a time (reserved concurrency 1: claims and adoption rely on it).

    Attributes, by name ("Collector", "Poller"): `functions`, `roles`, `policies` (each role's
    inline policy), `log_groups`; `statements` (what they grant, for the permissions
    boundary) and `acknowledge_boundary` for the wildcards the boundary mirrors. Each
    policy-check finding accepted on these resources is acknowledged where it is made."""

    def __init__(self, scope: Construct, id: str, *, settings: Settings, state: BatchState,
                 key: kms.IKey, bucket_table: dynamodb.ITable, results_table: dynamodb.ITable,
                 api_key_secret_arn: str | None, payloads: s3.IBucket | None = None) -> None:
        super().__init__(scope, id)
        stack = Stack.of(self)
        removal = RemovalPolicy.RETAIN if settings.prod else RemovalPolicy.DESTROY
        batch = settings.batch
        resources = BatchResources(
            region=stack.region, batch_queue_arn=state.queue.queue_arn,
            batch_dlq_arn=state.dead_letter_queue.queue_arn,
            batch_table_arn=state.table.table_arn, bucket_table_arn=bucket_table.table_arn,
            bucket_keys=(BATCH_BUCKET_ID, f"{BATCH_BUCKET_ID}#queued"),
            results_table_arn=results_table.table_arn, tenants=settings.tenants,
            data_key_arn=key.key_arn, log_group_arn="", allowed_regions=settings.allowed_regions,
            api_key_secret_arn=api_key_secret_arn,
            payload_bucket_arn=payloads.bucket_arn if payloads is not None else None,
            account=stack.account)
        environment = {
            Env.PROVIDER: settings.provider, Env.MODELS: encode_models(settings.models.values()),
            Env.BATCH_QUEUE_URL: state.queue.queue_url,
            Env.BATCH_DLQ_URL: state.dead_letter_queue.queue_url,
            Env.BATCH_TABLE: state.table.table_name, Env.BUCKET_TABLE: bucket_table.table_name,
            Env.RESULTS_TABLE: results_table.table_name, Env.BATCH_BUCKET_ID: BATCH_BUCKET_ID,
            Env.BATCH_RPM: str(batch.requests_per_minute),
            Env.BATCH_QUEUE_CAP: str(batch.max_queued_requests),
            Env.BATCH_MAX_ITEMS: str(batch.max_items_per_batch),
            Env.BATCH_MAX_WAIT_S: str(batch.max_wait_s),
            Env.BATCH_MAX_RETRIES: str(batch.max_retries),
            Env.POWERTOOLS_METRICS_NAMESPACE: NAMESPACE,
        }
        if batch.cancel_after_hours is not None:
            environment[Env.BATCH_CANCEL_AFTER_S] = str(int(batch.cancel_after_hours * 3600))
        if api_key_secret_arn:
            environment[Env.API_KEY_SECRET_ARN] = api_key_secret_arn
        if payloads is not None:  # the poller keeps answers over the item limit there
            environment[Env.PAYLOAD_BUCKET] = payloads.bucket_name
        self.statements: list[iam.PolicyStatement] = []
        self.functions: dict[str, lambda_.Function] = {}
        self.roles: dict[str, iam.Role] = {}
        self.policies: dict[str, iam.Policy] = {}
        self.log_groups: dict[str, logs.LogGroup] = {}
        for name, handler, build in (
                ("Collector", "agent.batch.handler.collector_handler", collector_statements),
                ("Poller", "agent.batch.handler.poller_handler", poller_statements)):
            function_name = f"{stack.stack_name}-batch-{name.lower()}"
            log_group = logs.LogGroup(
                self, f"{name}LogGroup", log_group_name=f"/aws/lambda/{function_name}",
                encryption_key=key, retention=log_retention(settings.log_retention_days),
                removal_policy=removal)
            role = iam.Role(self, f"{name}Role",
                            description=f"Bulwark batch lane {name.lower()} execution role",
                            # aws:SourceAccount: Lambda acting for this account only.
                            assumed_by=service_trust("lambda.amazonaws.com", stack.account))
            statements = build(resources, log_group.log_group_arn)
            policy = iam.Policy(self, f"{name}Policy", statements=statements)
            role.attach_inline_policy(policy)
            function = lambda_.Function(
                self, name, function_name=function_name, runtime=RUNTIME,
                architecture=ARCHITECTURE, handler=handler, code=lambda_code(), role=role,
                memory_size=512, timeout=FUNCTION_TIMEOUT,
                environment={**environment,
                             Env.POWERTOOLS_SERVICE_NAME: f"{settings.agent_name}-batch"},
                environment_encryption=key, tracing=lambda_.Tracing.ACTIVE,
                log_group=log_group, reserved_concurrent_executions=1,
                dead_letter_queue=state.dead_letter_queue,
                description=f"Bulwark batch lane {name.lower()} (Message Batches API)")
            function.node.add_dependency(role, policy)
            acknowledge(role, wildcard_finding("*"), XRAY_REASON)
            acknowledge(policy, wildcard_finding("*"), XRAY_REASON)
            acknowledge(policy, wildcard_finding(log_streams(log_group)), LOG_STREAMS_REASON)
            for rule in ("AwsSolutions-L1", "Serverless-LambdaLatestVersion"):
                acknowledge(function, rule,
                            "Pinned to python3.12 on purpose, like the agent: the asset's "
                            "wheels are locked for cp312 manylinux2014_aarch64.")
            checkov_skip(function, "CKV_AWS_117",
                         "No VPC, like the agent: it reaches only public endpoints (Claude, "
                         "DynamoDB, SQS, KMS, Secrets Manager) under IAM.")
            events.Rule(self, f"{name}Schedule",
                        description=f"Runs the batch {name.lower()} every "
                                    f"{batch.schedule_minutes} min",
                        schedule=events.Schedule.rate(Duration.minutes(batch.schedule_minutes)),
                        targets=[targets.LambdaFunction(
                            function, retry_attempts=0,
                            dead_letter_queue=state.dead_letter_queue)])
            self.statements += statements
            self.functions[name] = function
            self.roles[name] = role
            self.policies[name] = policy
            self.log_groups[name] = log_group
        if payloads is not None:  # the poller's answers over the item limit
            acknowledge(self.policies["Poller"],
                        wildcard_finding(claim_check_objects(payloads, "results")),
                        CLAIM_CHECK_REASON)

    def acknowledge_boundary(self, boundary_policy: iam.ManagedPolicy) -> None:
        """Acknowledge on the permissions boundary the wildcard resources it mirrors from the
        collector's and the poller's grants: their log streams."""
        for log_group in self.log_groups.values():
            acknowledge(boundary_policy, wildcard_finding(log_streams(log_group)),
                        LOG_STREAMS_REASON)
