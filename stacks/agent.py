"""The agent Lambda: its role, its tool role, log group, function, alias, Function URL and SQS
event source. Policies come from `policies/`; this construct only wires resources."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from agent.contract import DOCUMENTS_PREFIX, NAMESPACE, Env, encode_models
from agent.tools import ToolPrefix, ToolResources, declared_needs
from policies.agent import AgentResources, agent_statements
from policies.batch import agent_batch_statement
from policies.boundary import service_trust
from policies.mcp import (builtin_outside_mcp, denied_action_patterns, mcp_agent_statements,
                          mcp_allow_statements, mcp_boundary_statements, mcp_deny_statement)
from policies.tool_role import (tool_data_key_statement, tool_permission_statements,
                                tool_trust_statement)

from .packaging import ARCHITECTURE, RUNTIME, lambda_code
from .settings import Settings
from .state import AgentState, log_retention

FUNCTION_TIMEOUT = Duration.seconds(120)
HANDLER = "agent.handler.handler"


class AgentFunction(Construct):
    """The agent, least-privileged: one function with one role (it serves direct invokes, its
    Function URL and the work queue), and a tool role for tenant data."""

    def __init__(self, scope: Construct, id: str, *, settings: Settings, state: AgentState,
                 key: kms.IKey, batch_queue=None) -> None:
        super().__init__(scope, id)
        stack = Stack.of(self)
        removal = RemovalPolicy.RETAIN if settings.prod else RemovalPolicy.DESTROY
        # Names a policy must know before the resources exist derive from the stack name.
        function_name = f"{stack.stack_name}-agent"
        log_group_name = f"/aws/lambda/{function_name}"

        self.secret: secretsmanager.ISecret | None = None
        if settings.provider == "anthropic":
            if settings.api_key_secret_arn:
                self.secret = secretsmanager.Secret.from_secret_complete_arn(
                    self, "ApiKey", settings.api_key_secret_arn)
            else:
                self.secret = secretsmanager.Secret(
                    self, "ApiKey", encryption_key=key, removal_policy=removal,
                    description="Anthropic API key for the Bulwark agent: set "
                                '{"api_key": "sk-ant-..."} after the first deploy')

        self.log_group = logs.LogGroup(
            self, "LogGroup", log_group_name=log_group_name, encryption_key=key,
            retention=log_retention(settings.log_retention_days),
            removal_policy=removal)

        self.role = iam.Role(
            self, "Role", description="Bulwark agent Lambda execution role",
            # aws:SourceAccount only: Lambda's own examples condition the execution role on
            # the account; a SourceArn condition is not documented for this trust.
            assumed_by=service_trust("lambda.amazonaws.com", stack.account))
        # The boundary (applied to this role) must name it: derive the name from the stack.
        tool_role_name = f"{stack.stack_name}-tool"
        tool_role_arn = f"arn:{stack.partition}:iam::{stack.account}:role/{tool_role_name}"
        self.tool_role = iam.Role(
            self, "ToolRole", role_name=tool_role_name,
            description="Bulwark agent tools: tenant data via ABAC",
            assumed_by=iam.ArnPrincipal(self.role.role_arn),
            max_session_duration=Duration.hours(1))
        # Replace CDK's unconditioned trust statement with the single conditioned one.
        trust = tool_trust_statement(self.role.role_arn, settings.tenants, settings.agent_name)
        self.tool_role.node.default_child.add_property_override(
            "AssumeRolePolicyDocument",
            {"Version": "2012-10-17", "Statement": [trust.to_statement_json()]})

        #: what the tools declare they need, by placeholder: table names and bucket prefixes
        needs = {need.name: (need.prefix if isinstance(need, ToolPrefix)
                             else state.tool_tables[need.name].table_name)
                 for need in declared_needs()}
        tool_resources = ToolResources(docs_bucket=state.documents.bucket_name,
                                       docs_prefix=DOCUMENTS_PREFIX,
                                       notes_table=state.notes_table.table_name, named=needs)
        builtin_statements = tool_permission_statements(stack.partition, stack.region,
                                                        stack.account, tool_resources)
        data_key_statement = tool_data_key_statement(key.key_arn, stack.region)
        # MCP (cdk.json `mcp`): the allowlist only through the AWS MCP Server, destructive
        # actions denied through any MCP server, built-in grants only outside MCP.
        mcp = settings.mcp
        deny_patterns = denied_action_patterns(mcp.deny_actions)
        mcp_allowed = mcp_allow_statements(mcp.allow, {
            "Partition": stack.partition, "Region": stack.region, "Account": stack.account,
            "DocsBucket": state.documents.bucket_name, "DocsPrefix": DOCUMENTS_PREFIX,
            "NotesTable": state.notes_table.table_name,
            "WorkQueueArn": state.work_queue.queue_arn}, deny_patterns)
        mcp_deny = mcp_deny_statement(deny_patterns)
        tool_statements = [builtin_outside_mcp(s) for s in builtin_statements] + [
            data_key_statement] + mcp_allowed + [mcp_deny]
        #: the boundary's MCP statements (caps for the allowlist + the same deny)
        self.mcp_boundary_statements = mcp_boundary_statements(
            mcp_allowed, settings.allowed_regions, mcp_deny)

        bedrock_profiles = tuple(
            (m.model_id, m.foundation_model_id, m.routes_to_regions)
            for m in settings.models.values() if settings.provider == "bedrock")
        agent_resources = AgentResources(
            account=stack.account, region=stack.region, partition=stack.partition,
            bucket_table_arn=state.bucket_table.table_arn,
            bucket_ids=tuple(sorted({m.bucket_id for m in settings.models.values()}
                                    | {server.bucket_id for server in mcp.servers.values()})),
            idempotency_table_arn=state.idempotency_table.table_arn,
            idempotency_key_prefix=f"{function_name}.",  # Powertools: "<function>.<fn>#<hash>"
            results_table_arn=state.results_table.table_arn,
            work_queue_arn=state.work_queue.queue_arn,
            dead_letter_queue_arn=state.dead_letter_queue.queue_arn,
            data_key_arn=key.key_arn, tool_role_arn=tool_role_arn,
            tenants=settings.tenants, agent_name=settings.agent_name,
            log_group_arn=self.log_group.log_group_arn,
            allowed_regions=settings.allowed_regions,
            api_key_secret_arn=self.secret.secret_arn if self.secret else None,
            bedrock_profiles=bedrock_profiles)
        self.agent_statements = agent_statements(agent_resources) + mcp_agent_statements(
            server.auth["secret_arn"] for server in mcp.servers.values()
            if server.auth["type"] == "bearer")
        if batch_queue is not None:  # lane "batch" (stacks/batch.py)
            self.agent_statements.append(agent_batch_statement(batch_queue.queue_arn))
        self.tool_statements = tool_statements
        agent_policy = iam.Policy(self, "AgentPolicy", statements=self.agent_statements)
        self.role.attach_inline_policy(agent_policy)
        self.tool_role.attach_inline_policy(iam.Policy(self, "ToolPolicy",
                                                       statements=tool_statements))

        #: what this construct grants, for the permissions boundary the stack applies
        self.granted_statements = self.agent_statements + builtin_statements + [
            data_key_statement] + [
            iam.PolicyStatement(actions=["sts:AssumeRole", "sts:TagSession",
                                         "sts:SetSourceIdentity"],
                                resources=[tool_role_arn])]
        self.uses_global_endpoints = any(p.startswith("global.") for p, _, _ in bedrock_profiles)
        self.bedrock_profile_arns = tuple(
            f"arn:{stack.partition}:bedrock:{stack.region}:{stack.account}:inference-profile/{p}"
            for p, _, _ in bedrock_profiles)
        self.bedrock_routed_regions = tuple(sorted({r for _, _, regions in bedrock_profiles
                                                    for r in regions}))

        environment = {
            Env.PROVIDER: settings.provider,
            Env.MODELS: encode_models(settings.models.values()),
            Env.DEFAULT_MODEL: settings.default_model,
            Env.OVERFLOW_POLICY: settings.overflow_policy,
            Env.SCHEDULING: settings.scheduling,
            Env.TENANTS: ",".join(settings.tenants),
            Env.BUCKET_TABLE: state.bucket_table.table_name,
            Env.RESULTS_TABLE: state.results_table.table_name,
            Env.IDEMPOTENCY_TABLE: state.idempotency_table.table_name,
            Env.NOTES_TABLE: state.notes_table.table_name,
            Env.DOCS_BUCKET: state.documents.bucket_name,
            Env.DOCS_PREFIX: DOCUMENTS_PREFIX,
            Env.WORK_QUEUE_URL: state.work_queue.queue_url,
            Env.DLQ_URL: state.dead_letter_queue.queue_url,
            Env.TOOL_ROLE_ARN: tool_role_arn,
            Env.AGENT_NAME: settings.agent_name,
            Env.MAX_DEFERRALS: str(settings.max_deferrals),
            Env.MAX_DEFERRAL_AGE_S: str(settings.max_deferral_age_s),
            Env.POWERTOOLS_SERVICE_NAME: settings.agent_name,
            Env.POWERTOOLS_METRICS_NAMESPACE: NAMESPACE,
        }
        environment.update({need.env: needs[need.name] for need in declared_needs()})
        if settings.degrade_model:
            environment[Env.DEGRADE_MODEL] = settings.degrade_model
        if mcp.enabled:
            environment[Env.MCP_SERVERS] = mcp.lambda_env()
        if self.secret:
            environment[Env.API_KEY_SECRET_ARN] = self.secret.secret_arn
        if batch_queue is not None:
            environment[Env.BATCH_QUEUE_URL] = batch_queue.queue_url

        self.function = lambda_.Function(
            self, "Function", function_name=function_name, runtime=RUNTIME,
            architecture=ARCHITECTURE, handler=HANDLER, code=lambda_code(), role=self.role,
            memory_size=1024, timeout=FUNCTION_TIMEOUT, environment=environment,
            environment_encryption=key, tracing=lambda_.Tracing.ACTIVE,
            log_group=self.log_group, reserved_concurrent_executions=settings.reserved_concurrency,
            snap_start=lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS,
            description="Bulwark agent: Claude tool-use loop inside the quota")
        # The function and its queue mapping need the role's policy in place at creation
        # (the mapping checks sqs:ReceiveMessage when it is created).
        self.function.node.add_dependency(self.role, agent_policy)
        self.alias = lambda_.Alias(self, "Live", alias_name="live",
                                   version=self.function.current_version)
        self.url = self.alias.add_function_url(auth_type=lambda_.FunctionUrlAuthType.AWS_IAM)

        # One function, one role: the same handler serves SQS batches (it dispatches on the
        # event's shape), through the alias so queued work also runs from the SnapStart snapshot.
        mapping = lambda_.EventSourceMapping(
            self, "WorkQueueSource", target=self.alias,
            event_source_arn=state.work_queue.queue_arn, batch_size=5,
            report_batch_item_failures=True,
            max_concurrency=settings.queue_max_concurrency)
        mapping.node.add_dependency(agent_policy)

