"""The runaway breaker's scheduled function (`agent.runaway.handler`): its role (statements
from `policies/runaway.py`), log group and schedule. It reads the kit's CostUSD metrics and
writes throttles on the limits config item, which the agent's callers apply as tenant caps."""

from __future__ import annotations

import json

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from agent.contract import NAMESPACE, Env, encode_models, encode_tenants
from policies.boundary import service_trust
from policies.runaway import runaway_statements

from .acknowledgements import acknowledge, checkov_skip, log_streams, wildcard_finding
from .packaging import ARCHITECTURE, RUNTIME, lambda_code
from .settings import Settings
from .state import log_retention

HANDLER = "agent.runaway.handler"
#: why the breaker has no dead-letter queue
_NO_DLQ = ("No dead-letter queue: a scheduled event carries nothing to keep; a failed "
           "evaluation is simply the next one, a schedule period later (it reads all it needs "
           "from CloudWatch and the limits item).")


class RunawayBreaker(Construct):
    """One function on a schedule (`runaway.schedule_minutes`), one evaluation at a time.

    `settings`: the validated settings (`settings.runaway` is not None); `limits_table`: the
    limits config table; `key`: the data key (table, environment, logs).
    Attributes: `function`, `role`, `policy`, `log_group`, `schedule`, `statements` (for the
    permissions boundary) and `acknowledge_boundary` for the wildcard the boundary mirrors.
    The policy-check findings accepted on these resources are acknowledged where they are
    made."""

    def __init__(self, scope: Construct, id: str, *, settings: Settings,
                 limits_table: dynamodb.ITable, key: kms.IKey) -> None:
        super().__init__(scope, id)
        stack = Stack.of(self)
        runaway = settings.runaway
        removal = RemovalPolicy.RETAIN if settings.prod else RemovalPolicy.DESTROY
        function_name = f"{stack.stack_name}-runaway"
        self.log_group = logs.LogGroup(
            self, "LogGroup", log_group_name=f"/aws/lambda/{function_name}",
            encryption_key=key, retention=log_retention(settings.log_retention_days),
            removal_policy=removal)
        self.role = iam.Role(self, "Role", description="Bulwark runaway breaker execution role",
                             # aws:SourceAccount: Lambda acting for this account only.
                             assumed_by=service_trust("lambda.amazonaws.com", stack.account))
        self.statements = runaway_statements(
            limits_table_arn=limits_table.table_arn, data_key_arn=key.key_arn,
            log_group_arn=self.log_group.log_group_arn, region=stack.region,
            allowed_regions=settings.allowed_regions)
        self.policy = iam.Policy(self, "Policy", statements=self.statements)
        self.role.attach_inline_policy(self.policy)
        fields = ("k", "min_baseline_usd_per_hour", "window_minutes", "history_days",
                  "clear_below")
        self.function = lambda_.Function(
            self, "Function", function_name=function_name, runtime=RUNTIME,
            architecture=ARCHITECTURE, handler=HANDLER, code=lambda_code(), role=self.role,
            memory_size=512, timeout=Duration.minutes(1),
            environment={
                Env.LIMITS_TABLE: limits_table.table_name,
                Env.MODELS: encode_models(settings.models.values()),
                Env.TENANTS: encode_tenants(settings.tenant_specs),
                Env.BUDGETS: json.dumps(settings.limits.encode(), sort_keys=True),
                Env.RUNAWAY: json.dumps({f: getattr(runaway, f) for f in fields}),
                Env.POWERTOOLS_METRICS_NAMESPACE: NAMESPACE,
                Env.POWERTOOLS_SERVICE_NAME: f"{settings.agent_name}-runaway"},
            environment_encryption=key, tracing=lambda_.Tracing.ACTIVE,
            log_group=self.log_group, reserved_concurrent_executions=1,
            description="Bulwark runaway breaker: spend rate against its baseline")
        self.function.node.add_dependency(self.role, self.policy)
        every = settings.runaway_schedule_minutes
        self.schedule = events.Rule(
            self, "Schedule", description=f"Runs the runaway breaker every {every} min",
            schedule=events.Schedule.rate(Duration.minutes(every)),
            targets=[targets.LambdaFunction(self.function, retry_attempts=0)])

        # The policy-check findings accepted on purpose, each with why.
        no_resource_arns = ("GetMetricData and X-Ray accept no resource ARNs (both are "
                            "region-conditioned).")
        acknowledge(self.role, wildcard_finding("*"), no_resource_arns)
        acknowledge(self.policy, wildcard_finding("*"), no_resource_arns)
        acknowledge(self.policy, wildcard_finding(log_streams(self.log_group)),
                    "Log streams are created per container under this one log group.")
        acknowledge(self.function, "Serverless-LambdaDLQ", _NO_DLQ)
        acknowledge(self.schedule, "Serverless-EventBusDLQ", _NO_DLQ)
        acknowledge(self.function, "AwsSolutions-L1", "Pinned to python3.12 on purpose, like "
                    "the agent: the asset's wheels are locked for cp312 manylinux2014_aarch64.")
        acknowledge(self.function, "Serverless-LambdaLatestVersion",
                    "Pinned to python3.12 on purpose, like the agent.")
        checkov_skip(self.function, "CKV_AWS_117", "No VPC, like the agent: it reaches only "
                     "public endpoints (CloudWatch, DynamoDB, KMS) under IAM.")
        checkov_skip(self.function, "CKV_AWS_116", _NO_DLQ)

    def acknowledge_boundary(self, boundary_policy: iam.ManagedPolicy) -> None:
        """Acknowledge on the permissions boundary the wildcard it mirrors from this
        construct's grants: the breaker's log streams."""
        acknowledge(boundary_policy, wildcard_finding(log_streams(self.log_group)),
                    "Log streams are created per container under the runaway breaker's one "
                    "log group.")
