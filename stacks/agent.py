"""The agent Lambda: its role, its tool role, log group, function, alias, Function URL and SQS
event source. Policies come from `policies/`; this construct only wires resources."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Annotations, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from agent.contract import DOCUMENTS_PREFIX, NAMESPACE, Env, TenantSpec, encode_models, \
    encode_tenants
from agent.mcp.config import McpSettings
from agent.tools import ToolPrefix, ToolResources, declared_needs
from policies.agent import AgentResources, agent_statements
from policies.batch import agent_batch_statement
from policies.boundary import service_trust
from policies.callers import caller_permissions, producer_key_statement, work_queue_statements
from policies.mcp import (builtin_outside_mcp, denied_action_patterns, mcp_agent_statements,
                          mcp_allow_statements, mcp_boundary_statements, mcp_deny_statement)
from policies.pools import breaker_ids, breaker_statement, pool_statements
from policies.tool_role import (tool_data_key_statement, tool_permission_statements,
                                tool_trust_statement)

from .acknowledgements import (CLAIM_CHECK_REASON, LOG_STREAMS_REASON, XRAY_REASON,
                               acknowledge, checkov_skip, claim_check_objects, log_streams,
                               logical_id, wildcard_finding)
from .packaging import ARCHITECTURE, RUNTIME, lambda_code
from .settings import ModelSettings, Settings
from .state import AgentState, log_retention

FUNCTION_TIMEOUT = Duration.seconds(120)
HANDLER = "agent.handler.handler"
#: why the function has no asynchronous dead-letter queue (cdk-nag and checkov ask for one)
_NEVER_ASYNC = ("Never invoked asynchronously: direct invokes answer the caller, and queued "
                "work is dead-lettered by the handler (with its reason) and by the "
                "queue's redrive.")
#: the payload bucket's prefixes the agent writes claim checks under
_CLAIM_CHECK_PREFIXES = ("results", "queue", "dlq")


@dataclass(frozen=True)
class AgentProps:
    """What the agent construct takes from the settings (validated by `stacks.settings`)."""

    prod: bool
    provider: str
    models: tuple[ModelSettings, ...]
    default_model: str
    degrade_model: str | None
    overflow_policy: str
    scheduling: str
    tenants: tuple[str, ...]
    agent_name: str
    #: deferrals, and age in seconds, before a deferred request is dead-lettered
    max_deferrals: int
    max_deferral_age_s: int
    allowed_regions: tuple[str, ...]
    reserved_concurrency: int | None
    queue_max_concurrency: int
    log_retention_days: int
    mcp: McpSettings
    #: bring your own Anthropic API key secret (None: the construct creates one)
    api_key_secret_arn: str | None = None
    #: the tenants and the IAM roles bound to them (empty: `tenants`, unbound)
    tenant_specs: tuple[TenantSpec, ...] = ()
    #: IAM role ARNs trusted to invoke the function directly
    trusted_invokers: tuple[str, ...] = ()
    #: IAM role ARNs that may send to the work queue besides the agent role
    trusted_producers: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> "AgentProps":
        return cls(
            prod=settings.prod, provider=settings.provider,
            models=tuple(settings.models.values()), default_model=settings.default_model,
            degrade_model=settings.degrade_model, overflow_policy=settings.overflow_policy,
            scheduling=settings.scheduling, tenants=settings.tenants,
            agent_name=settings.agent_name, max_deferrals=settings.max_deferrals,
            max_deferral_age_s=settings.max_deferral_age_s,
            allowed_regions=settings.allowed_regions,
            reserved_concurrency=settings.reserved_concurrency,
            queue_max_concurrency=settings.queue_max_concurrency,
            log_retention_days=settings.log_retention_days, mcp=settings.mcp,
            api_key_secret_arn=settings.api_key_secret_arn,
            tenant_specs=settings.tenant_specs, trusted_invokers=settings.trusted_invokers,
            trusted_producers=settings.trusted_producers)

    @property
    def bedrock_profiles(self) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
        """Bedrock: (inference profile id, foundation model id, regions it routes to)."""
        if self.provider != "bedrock":
            return ()
        return tuple((m.model_id, m.foundation_model_id, m.routes_to_regions)
                     for m in self.models if not m.pools)

    @property
    def pools(self) -> tuple:
        """Every capacity pool of every model (`stacks.pool_settings.PoolSettings`)."""
        return tuple(pool for m in self.models for pool in m.pools)


class AgentFunction(Construct):
    """The agent, least-privileged: one function with one role (it serves direct invokes, its
    Function URL and the work queue), and a tool role for tenant data.

    Attributes: `secret` (the Anthropic API key, None with Bedrock), `log_group`, `role`,
    `tool_role`, `policy` (the role's inline policy), `tool_policy`, `function`, `alias`
    ("live"), `url`, `work_queue_source` (the SQS event source mapping); for the permissions
    boundary the stack applies: `granted_statements`, `mcp_boundary_statements`,
    `bedrock_profile_arns`, `bedrock_routed_regions`, `uses_global_endpoints`, and
    `acknowledge_boundary` for the wildcards it mirrors from these grants.
    Each policy-check finding accepted on these resources is acknowledged where the resource
    is made (`stacks.acknowledgements`).
    """

    def __init__(self, scope: Construct, id: str, *, props: AgentProps, state: AgentState,
                 key: kms.IKey, batch_queue: sqs.IQueue | None = None) -> None:
        super().__init__(scope, id)
        stack = Stack.of(self)
        # Names a policy must know before the resources exist derive from the stack name.
        self._function_name = f"{stack.stack_name}-agent"
        # The boundary (applied to the agent role) must name the tool role: from the stack too.
        self._tool_role_name = f"{stack.stack_name}-tool"
        self._tool_role_arn = (f"arn:{stack.partition}:iam::{stack.account}:role/"
                               f"{self._tool_role_name}")
        removal = RemovalPolicy.RETAIN if props.prod else RemovalPolicy.DESTROY

        self.secret = self._api_key_secret(props, key, removal)
        self.log_group = logs.LogGroup(
            self, "LogGroup", log_group_name=f"/aws/lambda/{self._function_name}",
            encryption_key=key, retention=log_retention(props.log_retention_days),
            removal_policy=removal)
        self._roles(props)
        #: what the tools declare they need, by placeholder: table names and bucket prefixes
        needs = {need.name: (need.prefix if isinstance(need, ToolPrefix)
                             else state.tool_tables[need.name].table_name)
                 for need in declared_needs()}
        self._policies(props, state, key, needs, batch_queue)
        self._bedrock(props)
        self._function(props, key, self._environment(props, state, needs, batch_queue))
        self._work_queue_source(props, state)
        self._callers(props, state, key)

    def _api_key_secret(self, props: AgentProps, key: kms.IKey,
                        removal: RemovalPolicy) -> secretsmanager.ISecret | None:
        """Anthropic API only: the key's secret, brought or created (its value is put later)."""
        if props.provider != "anthropic":
            return None
        if props.api_key_secret_arn:
            return secretsmanager.Secret.from_secret_complete_arn(self, "ApiKey",
                                                                  props.api_key_secret_arn)
        secret = secretsmanager.Secret(
            self, "ApiKey", encryption_key=key, removal_policy=removal,
            description="Anthropic API key for the Bulwark agent: set "
                        '{"api_key": "sk-ant-..."} after the first deploy')
        acknowledge(secret, "AwsSolutions-SMG4",
                    "An Anthropic API key is issued by Anthropic's console; a rotation Lambda "
                    "cannot mint one. Rotate by putting a new value; Parameters caches it 5 min.")
        return secret

    def _roles(self, props: AgentProps) -> None:
        """The execution role, and the tool role it assumes per request (one trust statement
        with its conditions, `policies.tool_role`)."""
        stack = Stack.of(self)
        self.role = iam.Role(
            self, "Role", description="Bulwark agent Lambda execution role",
            # aws:SourceAccount only: Lambda's own examples condition the execution role on
            # the account; a SourceArn condition is not documented for this trust.
            assumed_by=service_trust("lambda.amazonaws.com", stack.account))
        acknowledge(self.role, wildcard_finding("*"), XRAY_REASON)
        self.tool_role = iam.Role(
            self, "ToolRole", role_name=self._tool_role_name,
            description="Bulwark agent tools: tenant data via ABAC",
            assumed_by=iam.ArnPrincipal(self.role.role_arn),
            max_session_duration=Duration.hours(1))
        # Replace CDK's unconditioned trust statement with the single conditioned one.
        trust = tool_trust_statement(self.role.role_arn, props.tenants, props.agent_name)
        self.tool_role.node.default_child.add_property_override(
            "AssumeRolePolicyDocument",
            {"Version": "2012-10-17", "Statement": [trust.to_statement_json()]})

    def _policies(self, props: AgentProps, state: AgentState, key: kms.IKey,
                  needs: dict[str, str], batch_queue: sqs.IQueue | None) -> None:
        """The agent role's and the tool role's inline policies (`policy`, `tool_policy`),
        what they grant for the boundary, and the wildcards they hold on purpose."""
        tool_statements, tool_grants = self._tool_statements(props, state, key, needs)
        agent_grants = self._agent_statements(props, state, key, batch_queue)
        self.policy = iam.Policy(self, "AgentPolicy", statements=agent_grants)
        self.role.attach_inline_policy(self.policy)
        self.tool_policy = iam.Policy(self, "ToolPolicy", statements=tool_statements)
        self.tool_role.attach_inline_policy(self.tool_policy)
        #: what this construct grants, for the permissions boundary the stack applies
        self.granted_statements = agent_grants + tool_grants

        # The wildcard resources these policies grant on purpose (cdk-nag names each finding
        # by its resource); the boundary mirrors them (`acknowledge_boundary`).
        agent_wildcards = {log_streams(self.log_group): LOG_STREAMS_REASON}
        agent_wildcards.update({claim_check_objects(state.payloads, prefix): CLAIM_CHECK_REASON
                                for prefix in _CLAIM_CHECK_PREFIXES})
        tenant_documents = (f"arn:<AWS::Partition>:s3:::<{logical_id(state.documents)}>/"
                            f"{DOCUMENTS_PREFIX}<aws:PrincipalTag/tenant>/*")
        tool_wildcards = {tenant_documents: (
            f"Objects under the tenant's own prefix {DOCUMENTS_PREFIX}"
            "${aws:PrincipalTag/tenant}/ (ABAC): the wildcard is bounded by the session tag.")}
        acknowledge(self.policy, wildcard_finding("*"), XRAY_REASON)
        for policy, wildcards in ((self.policy, agent_wildcards),
                                  (self.tool_policy, tool_wildcards)):
            for resource, reason in wildcards.items():
                acknowledge(policy, wildcard_finding(resource), reason)
        self._boundary_wildcards = {**agent_wildcards, **tool_wildcards}

    def acknowledge_boundary(self, boundary_policy: iam.ManagedPolicy) -> None:
        """Acknowledge on the permissions boundary the wildcard resources it mirrors from this
        construct's grants (the agent's log streams and claim checks, the tenant's
        documents), with the same reasons."""
        for resource, reason in self._boundary_wildcards.items():
            acknowledge(boundary_policy, wildcard_finding(resource), reason)

    def _tool_statements(self, props: AgentProps, state: AgentState, key: kms.IKey,
                         needs: dict[str, str]
                         ) -> tuple[list[iam.PolicyStatement], list[iam.PolicyStatement]]:
        """(the tool role's statements, the built-in grants the boundary caps); sets the
        boundary's MCP statements."""
        stack = Stack.of(self)
        tool_resources = ToolResources(docs_bucket=state.documents.bucket_name,
                                       docs_prefix=DOCUMENTS_PREFIX,
                                       notes_table=state.notes_table.table_name, named=needs)
        builtin_statements = tool_permission_statements(stack.partition, stack.region,
                                                        stack.account, tool_resources)
        data_key_statement = tool_data_key_statement(key.key_arn, stack.region)
        # MCP (cdk.json `mcp`): the allowlist only through the AWS MCP Server, destructive
        # actions denied through any MCP server, built-in grants only outside MCP.
        mcp = props.mcp
        deny_patterns = denied_action_patterns(mcp.deny_actions)
        mcp_allowed = mcp_allow_statements(mcp.allow, {
            "Partition": stack.partition, "Region": stack.region, "Account": stack.account,
            "DocsBucket": state.documents.bucket_name, "DocsPrefix": DOCUMENTS_PREFIX,
            "NotesTable": state.notes_table.table_name,
            "WorkQueueArn": state.work_queue.queue_arn}, deny_patterns)
        mcp_deny = mcp_deny_statement(deny_patterns)
        #: the boundary's MCP statements (caps for the allowlist + the same deny)
        self.mcp_boundary_statements = mcp_boundary_statements(
            mcp_allowed, props.allowed_regions, mcp_deny)
        tool_statements = [builtin_outside_mcp(s) for s in builtin_statements] + [
            data_key_statement] + mcp_allowed + [mcp_deny]
        return tool_statements, builtin_statements + [data_key_statement]

    def _agent_statements(self, props: AgentProps, state: AgentState, key: kms.IKey,
                          batch_queue: sqs.IQueue | None) -> list[iam.PolicyStatement]:
        """The execution role's statements (`policies.agent`, MCP bearer secrets, the batch
        queue); assuming the tool role is among them."""
        stack = Stack.of(self)
        mcp = props.mcp
        agent_resources = AgentResources(
            account=stack.account, region=stack.region, partition=stack.partition,
            bucket_table_arn=state.bucket_table.table_arn,
            bucket_ids=tuple(sorted({m.bucket_id for m in props.models}
                                    | {p.bucket_id for p in props.pools}
                                    | {server.bucket_id for server in mcp.servers.values()})),
            idempotency_table_arn=state.idempotency_table.table_arn,
            # Powertools' idempotency keys: "<function>.<fn>#<hash>"
            idempotency_key_prefix=f"{self._function_name}.",
            results_table_arn=state.results_table.table_arn,
            work_queue_arn=state.work_queue.queue_arn,
            dead_letter_queue_arn=state.dead_letter_queue.queue_arn,
            data_key_arn=key.key_arn, tool_role_arn=self._tool_role_arn,
            tenants=props.tenants, agent_name=props.agent_name,
            log_group_arn=self.log_group.log_group_arn,
            allowed_regions=props.allowed_regions,
            api_key_secret_arn=self.secret.secret_arn if self.secret else None,
            bedrock_profiles=props.bedrock_profiles,
            payload_bucket_arn=state.payloads.bucket_arn,
            mcp_lease_ids=tuple(sorted(key for server in mcp.servers.values()
                                       for key in server.lease_ids)))
        statements = agent_statements(agent_resources) + mcp_agent_statements(
            server.auth["secret_arn"] for server in mcp.servers.values()
            if server.auth["type"] == "bearer")
        if batch_queue is not None:  # lane "batch" (stacks/batch.py)
            statements.append(agent_batch_statement(batch_queue.queue_arn))
        if props.pools:  # capacity pools: Bedrock invokes per pool, the breakers
            statements += pool_statements(props.pools, partition=stack.partition,
                                          account=stack.account)
            statements.append(breaker_statement(state.bucket_table.table_arn,
                                                breaker_ids(props.models, props.provider)))
        return statements

    def _bedrock(self, props: AgentProps) -> None:
        """Bedrock's inference profiles and the regions they route to, for the boundary."""
        stack = Stack.of(self)
        profiles = props.bedrock_profiles
        self.uses_global_endpoints = any(p.startswith("global.") for p, _, _ in profiles)
        self.bedrock_profile_arns = tuple(
            f"arn:{stack.partition}:bedrock:{stack.region}:{stack.account}:inference-profile/{p}"
            for p, _, _ in profiles)
        self.bedrock_routed_regions = tuple(sorted({r for _, _, regions in profiles
                                                    for r in regions}))
        # capacity pools: each Bedrock pool is called in its own region (and its profile routes
        # on from there), which the boundary allows for Bedrock only
        bedrock_pools = [p for p in props.pools if p.provider == "bedrock"]
        self.uses_global_endpoints |= any(p.model.startswith("global.") for p in bedrock_pools)
        self.bedrock_profile_arns += tuple(
            f"arn:{stack.partition}:bedrock:{p.region}:{stack.account}:inference-profile/"
            f"{p.model}" for p in bedrock_pools if p.addressing == "inference_profile")
        self.bedrock_routed_regions = tuple(sorted(
            {*self.bedrock_routed_regions, *(r for p in bedrock_pools
                                             for r in p.routes_to_regions)}))
        #: regions a Bedrock pool is called in directly (not only reached through a profile)
        self.bedrock_call_regions = tuple(sorted({p.region for p in bedrock_pools}))

    def _environment(self, props: AgentProps, state: AgentState, needs: dict[str, str],
                     batch_queue: sqs.IQueue | None) -> dict[str, str]:
        """The function's environment (`agent.contract.Env`; `agent.config` reads it)."""
        environment = {
            Env.PROVIDER: props.provider,
            Env.MODELS: encode_models(props.models),
            Env.DEFAULT_MODEL: props.default_model,
            Env.OVERFLOW_POLICY: props.overflow_policy,
            Env.SCHEDULING: props.scheduling,
            Env.TENANTS: encode_tenants(props.tenant_specs or tuple(
                TenantSpec(name=name) for name in props.tenants)),
            Env.BUCKET_TABLE: state.bucket_table.table_name,
            Env.RESULTS_TABLE: state.results_table.table_name,
            Env.IDEMPOTENCY_TABLE: state.idempotency_table.table_name,
            Env.NOTES_TABLE: state.notes_table.table_name,
            Env.DOCS_BUCKET: state.documents.bucket_name,
            Env.DOCS_PREFIX: DOCUMENTS_PREFIX,
            Env.WORK_QUEUE_URL: state.work_queue.queue_url,
            Env.DLQ_URL: state.dead_letter_queue.queue_url,
            Env.PAYLOAD_BUCKET: state.payloads.bucket_name,
            Env.TOOL_ROLE_ARN: self._tool_role_arn,
            Env.AGENT_NAME: props.agent_name,
            Env.MAX_DEFERRALS: str(props.max_deferrals),
            Env.MAX_DEFERRAL_AGE_S: str(props.max_deferral_age_s),
            Env.POWERTOOLS_SERVICE_NAME: props.agent_name,
            Env.POWERTOOLS_METRICS_NAMESPACE: NAMESPACE,
        }
        environment.update({need.env: needs[need.name] for need in declared_needs()})
        if props.degrade_model:
            environment[Env.DEGRADE_MODEL] = props.degrade_model
        if props.mcp.enabled:
            environment[Env.MCP_SERVERS] = props.mcp.lambda_env()
        if self.secret:
            environment[Env.API_KEY_SECRET_ARN] = self.secret.secret_arn
        if batch_queue is not None:
            environment[Env.BATCH_QUEUE_URL] = batch_queue.queue_url
        return environment

    def _function(self, props: AgentProps, key: kms.IKey,
                  environment: dict[str, str]) -> None:
        """The function (SnapStart), its alias "live" and the alias's IAM-authenticated URL."""
        self.function = lambda_.Function(
            self, "Function", function_name=self._function_name, runtime=RUNTIME,
            architecture=ARCHITECTURE, handler=HANDLER, code=lambda_code(), role=self.role,
            memory_size=1024, timeout=FUNCTION_TIMEOUT, environment=environment,
            environment_encryption=key, tracing=lambda_.Tracing.ACTIVE,
            log_group=self.log_group, reserved_concurrent_executions=props.reserved_concurrency,
            snap_start=lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS,
            description="Bulwark agent: Claude tool-use loop inside the quota")
        # The function and its queue mapping need the role's policy in place at creation
        # (the mapping checks sqs:ReceiveMessage when it is created).
        self.function.node.add_dependency(self.role, self.policy)
        self.alias = lambda_.Alias(self, "Live", alias_name="live",
                                   version=self.function.current_version)
        self.url = self.alias.add_function_url(auth_type=lambda_.FunctionUrlAuthType.AWS_IAM)
        checkov_skip(self.function, "CKV_AWS_116", _NEVER_ASYNC)
        checkov_skip(self.function, "CKV_AWS_117",
                     "No VPC: the function reaches only public endpoints (Claude, DynamoDB, SQS, "
                     "S3, STS, KMS, Secrets Manager) under IAM; a VPC would add NAT or endpoint "
                     "cost and cold-start latency without narrowing what it can reach.")
        for rule in ("AwsSolutions-L1", "Serverless-LambdaLatestVersion"):
            acknowledge(self.function, rule,
                        "Pinned to python3.12 on purpose: the asset's wheels are locked for "
                        "cp312 manylinux2014_aarch64; moving runtimes is a deliberate lock "
                        "change.")
        # CDK's warning asks for a published version: the alias `live` is on current_version.
        Annotations.of(self.function).acknowledge_warning(
            "@aws-cdk/aws-lambda:snapStartRequirePublish",
            "SnapStart runs on the published version behind the alias 'live'.")
        acknowledge(self.function, "Serverless-LambdaDLQ", _NEVER_ASYNC)

    def _work_queue_source(self, props: AgentProps, state: AgentState) -> None:
        """One function, one role: the same handler serves SQS batches (it dispatches on the
        event's shape), through the alias so queued work also runs from the SnapStart
        snapshot."""
        self.work_queue_source = lambda_.EventSourceMapping(
            self, "WorkQueueSource", target=self.alias,
            event_source_arn=state.work_queue.queue_arn, batch_size=5,
            report_batch_item_failures=True,
            max_concurrency=props.queue_max_concurrency)
        self.work_queue_source.node.add_dependency(self.policy)
        acknowledge(self.work_queue_source, "Serverless-LambdaEventSourceMappingDestination",
                    "Failed messages reach the DLQ through the queue's redrive policy and the "
                    "handler's own dead-lettering with a reason.")

    def _callers(self, props: AgentProps, state: AgentState, key: kms.IKey) -> None:
        """Who may call the agent (`policies.callers`): cross-account tenant roles through the
        Function URL, cross-account trusted invokers directly (Lambda permissions on the
        alias), and who may send work to the queue (its policy; cross-account producers also
        in the data key's policy, when the stack owns the key)."""
        stack = Stack.of(self)
        principals = [p for spec in props.tenant_specs for p in spec.principals]
        for permission in caller_permissions(principals, props.trusted_invokers,
                                             stack.account):
            self.alias.add_permission(
                permission.id, principal=iam.ArnPrincipal(permission.principal),
                action=permission.action,
                function_url_auth_type=(lambda_.FunctionUrlAuthType.AWS_IAM
                                        if permission.function_url_auth_type else None),
                invoked_via_function_url=permission.invoked_via_function_url)
        for statement in work_queue_statements(state.work_queue.queue_arn, self.role.role_arn,
                                               props.trusted_producers):
            state.work_queue.add_to_resource_policy(statement)
        key_statement = producer_key_statement(props.trusted_producers, stack.account,
                                               stack.region)
        if key_statement is not None:
            key.add_to_resource_policy(key_statement)  # an existing key is left as it is
