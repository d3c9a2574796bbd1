"""The Bulwark stack: composes one-concern constructs, applies the permissions boundary to every
role, and tags. Each construct acknowledges the policy-check findings on the resources it makes
(`stacks.acknowledgements`); the stack only hands them the boundary that mirrors their grants."""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack, Tags
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

    def _acknowledge(self) -> None:
        """The boundary caps every role at what the kit grants, so it holds their wildcards
        too: each construct acknowledges them on it with the reasons it gave its own policies
        (every other accepted finding sits where its resource is made)."""
        for part in (self.agent, self.batch, self.audit, self.runaway):
            if part is not None:
                part.acknowledge_boundary(self.boundary.policy)
