"""The Bulwark stack: composes one-concern constructs, applies the permissions boundary to every
role, tags, and records the few policy-check acknowledgements (each with its reason)."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Annotations, CfnOutput, Stack, Tags, Validations
from constructs import Construct

from agent.contract import DOCUMENTS_PREFIX
from agent.tools import ToolTable, declared_needs

from . import outputs
from .agent import AgentFunction, AgentProps
from .audit import AccessLogBucket, AuditTrail
from .batch import BatchFunctions, BatchState
from .boundary import PermissionsBoundary
from .budgets import Budgets
from .monitoring import Monitoring
from .runaway import RunawayBreaker
from .settings import Settings
from .state import AgentState, DataKey
from .tenant_monitoring import TenantMonitoring


#: reasons shared by the agent's and the batch lane's acknowledgements
_XRAY = ("X-Ray accepts no resource ARNs (the grant is region-conditioned); CDK's tracing grant "
         "adds the same actions.")
_STREAMS = "Log streams are created per container under this one log group."


def _ack(scope, rule: str, reason: str) -> None:
    """Acknowledge a cdk-nag finding on `scope`, with the reason."""
    Validations.of(scope).acknowledge(Acknowledgment(id=rule, reason=reason))


def _iam5(resource: str) -> str:
    """cdk-nag names each wildcard finding by its resource."""
    return f"AwsSolutions-IAM5[Resource::{resource}]"


def checkov_skip(construct, check_id: str, comment: str) -> None:
    """Acknowledge a checkov finding on the resource itself (its Metadata), with the reason."""
    resource = construct.node.default_child
    metadata = resource.get_metadata("checkov") or {"skip": []}
    metadata["skip"].append({"id": check_id, "comment": comment})
    resource.add_metadata("checkov", metadata)


class BulwarkStack(Stack):
    def __init__(self, scope: Construct, id: str, *, settings: Settings, **kwargs) -> None:
        super().__init__(scope, id, **kwargs)
        self.settings = settings
        access_logs = AccessLogBucket(self, "AccessLogs", prod=settings.prod)
        self.data_key = DataKey(self, "DataKey", existing_key_arn=settings.existing_kms_key_arn,
                                prod=settings.prod)
        key = self.data_key.key
        self.state = AgentState(self, "State", key=key, prod=settings.prod,
                                access_log_bucket=access_logs.bucket,
                                tool_tables=[n for n in declared_needs()
                                             if isinstance(n, ToolTable)])
        #: the batch lane (Anthropic only): its queue exists before the agent queues into it
        self.batch_state = BatchState(self, "BatchState", key=key, prod=settings.prod) \
            if settings.batch.enabled else None
        self.agent = AgentFunction(self, "Agent", props=AgentProps.from_settings(settings),
                                   state=self.state, key=key,
                                   batch_queue=self.batch_state.queue if self.batch_state
                                   else None)
        self.batch = BatchFunctions(
            self, "Batch", settings=settings, state=self.batch_state, key=key,
            bucket_table=self.state.bucket_table, results_table=self.state.results_table,
            api_key_secret_arn=self.agent.secret.secret_arn if self.agent.secret else None,
            payloads=self.state.payloads) if self.batch_state else None
        self.audit = AuditTrail(
            self, "Audit", key=key, prod=settings.prod, access_log_bucket=access_logs.bucket,
            documents_bucket=self.state.documents,
            tool_table_arns=[self.state.notes_table.table_arn,
                             *(t.table_arn for t in self.state.tool_tables.values())],
            function_arn=self.agent.function.function_arn,
            kit_role_arns=[self.agent.role.role_arn, self.agent.tool_role.role_arn,
                           *(r.role_arn for r in (self.batch.roles.values()
                                                  if self.batch else ()))],
            retention_days=settings.log_retention_days,
            existing_trail_arn=settings.existing_trail_arn)
        self.monitoring = Monitoring(
            self, "Monitoring", stage=settings.stage, function=self.agent.function,
            work_queue=self.state.work_queue, dead_letter_queue=self.state.dead_letter_queue,
            bucket_table=self.state.bucket_table, models=list(settings.models.values()),
            alarm_settings=settings.alarms)
        if self.batch is not None:
            self.monitoring.add_batch_lane(
                queue=self.batch_state.queue,
                dead_letter_queue=self.batch_state.dead_letter_queue,
                models=list(settings.models),
                oldest_queued_hours=settings.batch.oldest_queued_alarm_hours)
        if self.audit.metric_filter is not None:
            self.monitoring.add_access_denied_alarm(self.audit.metric_filter)
        self.budgets = Budgets(
            self, "Budgets", limits=settings.limits, tenants=settings.tenants,
            function=self.agent.function, role=self.agent.role,
            bucket_table=self.state.bucket_table, alarm_topic=self.monitoring.alarm_topic,
            dashboard=self.monitoring.dashboard, key=key, prod=settings.prod,
            alarm_name_prefix=self.monitoring.dashboard_name)
        self.audit.log_table_writes("Limits changes (writes to the limits config table)",
                                    [self.budgets.table.table_arn])
        self.runaway = RunawayBreaker(self, "Runaway", settings=settings,
                                      limits_table=self.budgets.table, key=key) \
            if settings.runaway is not None else None
        self.tenant_monitoring = TenantMonitoring(
            self, "TenantMonitoring", tenants=tuple(settings.tenants),
            dashboard=self.monitoring.dashboard, alarm_topic=self.monitoring.alarm_topic,
            alarm_name_prefix=self.monitoring.dashboard_name,
            registry=self.monitoring.alarms,
            bands=settings.alarms.tenant_anomaly) if settings.tenants else None

        self.boundary = PermissionsBoundary(
            self, "PermissionsBoundary",
            granted=[*self.agent.granted_statements,
                     *(self.batch.statements if self.batch is not None else ()),
                     *self.audit.granted_statements, *self.budgets.statements,
                     *(self.runaway.statements if self.runaway is not None else ())],
            allowed_regions=settings.allowed_regions,
            bedrock_profile_arns=self.agent.bedrock_profile_arns,
            bedrock_routed_regions=self.agent.bedrock_routed_regions,
            global_endpoints=self.agent.uses_global_endpoints,
            extra_statements=self.agent.mcp_boundary_statements,
            bedrock_call_regions=self.agent.bedrock_call_regions)
        self.boundary.apply_to(self)  # every role in the stack

        self._acknowledge()
        if self.runaway is not None:
            self.runaway.acknowledge(self.boundary.policy)
        self._acknowledge_batch()
        self._acknowledge_payloads()
        self._outputs()
        Tags.of(self).add("bulwark:stage", settings.stage)
        Tags.of(self).add("bulwark:agent", settings.agent_name)

    def _outputs(self) -> None:
        """Where the deployed pieces are, under stable names (`stacks/outputs.py`): the docs'
        deploy steps, the CLIs and the demo read these."""
        agent, state = self.agent, self.state
        values = {
            outputs.FUNCTION_URL: (agent.url.url, "Function URL (AWS_IAM: SigV4, service lambda)"),
            outputs.FUNCTION_NAME: (agent.function.function_name, "agent function"),
            outputs.ALIAS_ARN: (agent.alias.function_arn, "alias 'live' (invoke this)"),
            outputs.DOCUMENTS_BUCKET: (state.documents.bucket_name, "tenant documents"),
            outputs.DOCUMENTS_PREFIX: (DOCUMENTS_PREFIX,
                                       "a tenant's documents: <prefix><tenant>/<key>"),
            outputs.WORK_QUEUE_URL: (state.work_queue.queue_url, "queued agent requests"),
            outputs.DEAD_LETTER_QUEUE_URL: (state.dead_letter_queue.queue_url,
                                            "dead-lettered requests (python -m cli.dlq)"),
            outputs.BUCKET_TABLE: (state.bucket_table.table_name, "token buckets"),
            outputs.RESULTS_TABLE: (state.results_table.table_name, "deferred results"),
            outputs.IDEMPOTENCY_TABLE: (state.idempotency_table.table_name, "idempotency"),
            outputs.NOTES_TABLE: (state.notes_table.table_name, "tenant notes"),
            outputs.LIMITS_TABLE: (self.budgets.table.table_name,
                                   "budgets without a redeploy (python -m cli.limits)"),
            outputs.AGENT_ROLE_ARN: (agent.role.role_arn, "agent execution role"),
            outputs.TOOL_ROLE_ARN: (agent.tool_role.role_arn, "tool role (tenant sessions)"),
            outputs.AGENT_LOG_GROUP: (agent.log_group.log_group_name,
                                      "the agent's logs (request finished lines)"),
            outputs.DASHBOARD_URL: (
                f"https://{self.region}.console.aws.amazon.com/cloudwatch/home?region="
                f"{self.region}#dashboards:name={self.monitoring.dashboard_name}",
                "CloudWatch dashboard"),
        }
        if agent.secret is not None:
            values[outputs.API_KEY_SECRET_ARN] = (agent.secret.secret_arn,
                                                  'Anthropic API key: put {"api_key": ...}')
        if self.audit.log_group is not None:
            values[outputs.TRAIL_LOG_GROUP] = (self.audit.log_group.log_group_name,
                                               "CloudTrail log group (python -m cli.audit)")
        for name, (value, description) in values.items():
            CfnOutput(self, name, value=value, description=description)

    def _acknowledge_batch(self) -> None:
        """The batch lane's accepted findings, each with why."""
        if self.batch is None:
            return
        for name, function in self.batch.functions.items():
            role, policy = self.batch.roles[name], self.batch.node.find_child(f"{name}Policy")
            log_group = self.get_logical_id(self.batch.log_groups[name].node.default_child)
            streams = _iam5(f"<{log_group}.Arn>:log-stream:*")
            _ack(role, _iam5("*"), _XRAY)
            _ack(policy, _iam5("*"), _XRAY)
            for scope in (policy, self.boundary.policy):
                _ack(scope, streams, _STREAMS)
            for rule in ("AwsSolutions-L1", "Serverless-LambdaLatestVersion"):
                _ack(function, rule, "Pinned to python3.12 on purpose, like the agent: the "
                                     "asset's wheels are locked for cp312 manylinux2014_aarch64.")
            checkov_skip(function, "CKV_AWS_117",
                         "No VPC, like the agent: it reaches only public endpoints (Claude, "
                         "DynamoDB, SQS, KMS, Secrets Manager) under IAM.")
        _ack(self.batch_state.dead_letter_queue, "Serverless-SQSRedrivePolicy",
             "This queue is the batch lane's dead-letter queue.")

    def _acknowledge_payloads(self) -> None:
        """The agent's claim checks: objects under the payload bucket's prefixes."""
        bucket = self.get_logical_id(self.state.payloads.node.default_child)
        reason = ("Claim-check objects are named by request (<prefix>/<tenant>/<request id>/"
                  "<uuid>.json) when written: the grant is one prefix per purpose, in this "
                  "account's bucket only (aws:ResourceAccount).")
        for prefix in ("results", "queue", "dlq"):
            for scope in (self.agent.node.find_child("AgentPolicy"), self.boundary.policy):
                _ack(scope, _iam5(f"<{bucket}.Arn>/{prefix}/*"), reason)
        if self.batch is not None:  # the poller's answers over the item limit
            _ack(self.batch.node.find_child("PollerPolicy"),
                 _iam5(f"<{bucket}.Arn>/results/*"), reason)

    def _acknowledge(self) -> None:
        """Policy-check findings accepted on purpose, each on the narrowest scope, with why."""
        agent = self.agent

        def logical(construct) -> str:
            return self.get_logical_id(construct.node.default_child)

        tenant_objects = (f"Objects under the tenant's own prefix {DOCUMENTS_PREFIX}"
                          "${aws:PrincipalTag/tenant}/ (ABAC): the wildcard is bounded by the "
                          "session tag.")
        tenant_docs = (f"arn:<AWS::Partition>:s3:::<{logical(self.state.documents)}>/"
                       f"{DOCUMENTS_PREFIX}<aws:PrincipalTag/tenant>/*")
        agent_streams = f"<{logical(agent.log_group)}.Arn>:log-stream:*"
        for scope, rule, reason in (
                (agent.role, _iam5("*"), _XRAY),
                (agent.node.find_child("AgentPolicy"), _iam5("*"), _XRAY),
                (agent.node.find_child("AgentPolicy"), _iam5(agent_streams), _STREAMS),
                (agent.node.find_child("ToolPolicy"), _iam5(tenant_docs), tenant_objects),
                (self.boundary.policy, _iam5("*"), "The boundary's only '*' resources mirror "
                 "the X-Ray grant and the explicit Deny outside the allowed regions."),
                (self.boundary.policy, _iam5(agent_streams), _STREAMS),
                (self.boundary.policy, _iam5(tenant_docs), tenant_objects)):
            _ack(scope, rule, reason)
        if self.audit.log_group is not None:
            _ack(self.boundary.policy,
                 _iam5(f"<{logical(self.audit.log_group)}.Arn>:log-stream:*"),
                 "CloudTrail writes its own log streams into the trail's log group.")
        if agent.secret is not None and not self.settings.api_key_secret_arn:
            _ack(agent.secret, "AwsSolutions-SMG4",
                 "An Anthropic API key is issued by Anthropic's console; a rotation Lambda "
                 "cannot mint one. Rotate by putting a new value; Parameters caches it 5 min.")
        never_async = ("Never invoked asynchronously: direct invokes answer the caller, and queued "
                       "work is dead-lettered by the handler (with its reason) and by the "
                       "queue's redrive.")
        checkov_skip(agent.function, "CKV_AWS_116", never_async)
        checkov_skip(agent.function, "CKV_AWS_117",
                     "No VPC: the function reaches only public endpoints (Claude, DynamoDB, SQS, "
                     "S3, STS, KMS, Secrets Manager) under IAM; a VPC would add NAT or endpoint "
                     "cost and cold-start latency without narrowing what it can reach.")
        checkov_skip(self.node.find_child("AccessLogs").bucket, "CKV_AWS_18",
                     "This is the server-access-log target: logging it to itself would log "
                     "its own log deliveries without end.")
        for rule in ("AwsSolutions-L1", "Serverless-LambdaLatestVersion"):
            _ack(agent.function, rule,
                 "Pinned to python3.12 on purpose: the asset's wheels are locked for cp312 "
                 "manylinux2014_aarch64; moving runtimes is a deliberate lock change.")
        # CDK's warning asks for a published version: the alias `live` is on current_version.
        Annotations.of(agent.function).acknowledge_warning(
            "@aws-cdk/aws-lambda:snapStartRequirePublish",
            "SnapStart runs on the published version behind the alias 'live'.")
        _ack(agent.function, "Serverless-LambdaDLQ", never_async)
        _ack(agent.node.find_child("WorkQueueSource"),
             "Serverless-LambdaEventSourceMappingDestination",
             "Failed messages reach the DLQ through the queue's redrive policy and the "
             "handler's own dead-lettering with a reason.")
        _ack(self.state.dead_letter_queue, "Serverless-SQSRedrivePolicy",
             "This queue is the dead-letter queue.")
        if self.settings.alarms.email:
            _ack(self.monitoring.alarm_topic, "Serverless-SNSRedrivePolicy",
                 "E-mail alarm delivery: a failed delivery shows in the topic's "
                 "NumberOfNotificationsFailed metric and the alarm stays in ALARM in the console; "
                 "a queue nobody reads would not page anyone either.")
