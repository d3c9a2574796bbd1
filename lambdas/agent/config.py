"""The agent Lambda's environment, parsed once at cold start into a typed model.

Every variable is listed in docs/agent/index.md ("Agent Lambda environment"). A missing or malformed one
raises `ConfigError` naming the variable and the expected form, so a broken deployment fails
at init with a clear message instead of on the first request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from guard.budget import BudgetError
from guard.spend import LimitSet
from guard.values import BadValue, default_of, read_choice, read_number

from .contract import (DEFAULT_AGENT_NAME, DOCUMENTS_PREFIX, OVERFLOW_POLICIES, PROVIDERS,
                       SCHEDULING_MODES, ContractError, Env, ModelSpec, TenantSpec,
                       decode_models, decode_tenants)
from .mcp.config import McpConfigError, McpServer, servers_from_env


class ConfigError(ValueError):
    """The Lambda environment is missing a variable or holds a malformed one."""


@dataclass(frozen=True)
class AgentConfig:
    provider: str
    bucket_table: str
    results_table: str
    idempotency_table: str
    work_queue_url: str
    dlq_url: str
    tool_role_arn: str
    agent_name: str
    models: dict[str, ModelSpec]
    default_model: str
    degrade_model: str | None
    overflow_policy: str
    #: the tenants' names, in configured order (the first is a direct invoke's default)
    tenants: tuple[str, ...]
    docs_bucket: str
    docs_prefix: str
    notes_table: str
    api_key_secret_arn: str | None = None
    scheduling: str = "fifo"
    #: resources the tools declare (agent.tools.ToolNeed): placeholder -> name or prefix
    tool_needs: dict[str, str] = field(default_factory=dict)
    aws_region: str = "us-east-1"
    max_deferrals: int = 5
    max_deferral_age_s: float = 3600.0
    max_receives: int = 3
    max_iterations: int = 8
    max_total_tokens: int = 100_000
    default_deadline_s: float = 20.0
    result_ttl_s: int = 86_400
    log_prompts: bool = False
    #: the batch lane's queue (BATCH_QUEUE_URL); None: lane "batch" is not deployed
    batch_queue_url: str | None = None
    #: the payload bucket (PAYLOAD_BUCKET; `agent.payloads`); None: everything stays inline
    payload_bucket: str | None = None
    #: MCP tool sources (MCP_SERVERS; `agent.mcp.config`), empty when none are configured
    mcp_servers: dict[str, McpServer] = field(default_factory=dict)
    #: budgets on deploy (BUDGETS) and the config table that may replace them (LIMITS_TABLE)
    limits: LimitSet = field(default_factory=LimitSet)
    limits_table: str | None = None
    #: the tenants and the IAM roles bound to them (`agent.tenancy` maps callers with them)
    tenant_specs: tuple[TenantSpec, ...] = ()
    system_prompt: str = field(default=(
        "You are Bulwark's operations agent. Answer concisely. Use the tools to read the "
        "tenant's documents and to record notes; never guess a document's content."))

    @property
    def tenant_shares(self) -> dict:
        """Tenant -> guard.TenantShare when a tenant sets a weight or a cap (every model's
        bucket then shares by tenant; the others weight 1), else {}."""
        if not any(spec.shares for spec in self.tenant_specs):
            return {}
        return {spec.name: spec.share for spec in self.tenant_specs}


def require_env(env: Mapping[str, str], name: str, hint: str) -> str:
    """The stripped value of the variable `name`; a ConfigError naming it and `hint` (what it
    should hold) when it is missing or blank."""
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is not set: expected {hint}")
    return value


def number_env(env: Mapping[str, str], name: str, default, cast: type, minimum: float):
    """The variable `name` as `cast` (int or float), at least `minimum`; `default` when it is
    missing or blank; a ConfigError naming the variable, its value and the expected form
    otherwise (`guard.values.read_number`)."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return cast(read_number(raw, minimum=minimum, integer=cast is int, from_text=True))
    except BadValue as err:
        raise ConfigError(f"{name}={raw!r}: expected {err.expected}") from None


def choice_env(env: Mapping[str, str], name: str, options: tuple[str, ...], default: str) -> str:
    """The variable `name`, one of `options`; `default` when it is missing or blank; a
    ConfigError naming the variable and the options otherwise."""
    value = env.get(name, default).strip() or default
    try:
        return read_choice(value, options)
    except BadValue as err:
        raise ConfigError(f"{name}={value!r}: expected {err.expected}") from None


def models_from_env(env: Mapping[str, str]) -> dict[str, ModelSpec]:
    """The MODELS variable decoded (`agent.contract.decode_models`); ConfigError when bad."""
    try:
        return decode_models(require_env(env, Env.MODELS, "a JSON object of model id -> settings"))
    except ContractError as err:
        raise ConfigError(str(err)) from None


def load_config(env: Mapping[str, str]) -> AgentConfig:
    """Parse the Lambda environment; raises `ConfigError` naming the first bad variable.

    The variables the stack sets are named in `agent.contract.Env`; the rest are tunables
    with defaults (docs/agent/index.md, "Agent Lambda environment")."""
    provider = require_env(env, Env.PROVIDER, "'anthropic' or 'bedrock'")
    if provider not in PROVIDERS:
        raise ConfigError(f"{Env.PROVIDER}={provider!r}: expected 'anthropic' or 'bedrock'")
    models = models_from_env(env)
    default_model = require_env(env, Env.DEFAULT_MODEL, "one of the MODELS keys")
    if default_model not in models:
        raise ConfigError(f"{Env.DEFAULT_MODEL}={default_model!r} is not in MODELS "
                          f"({', '.join(sorted(models))})")
    overflow = choice_env(env, Env.OVERFLOW_POLICY, OVERFLOW_POLICIES, "defer")
    scheduling = choice_env(env, Env.SCHEDULING, SCHEDULING_MODES,
                            default_of(AgentConfig, "scheduling"))
    degrade_model = env.get(Env.DEGRADE_MODEL, "").strip() or None
    if degrade_model is not None and degrade_model not in models:
        raise ConfigError(f"{Env.DEGRADE_MODEL}={degrade_model!r} is not in MODELS")
    if overflow == "degrade" and degrade_model is None:
        raise ConfigError(f"{Env.OVERFLOW_POLICY}=degrade needs {Env.DEGRADE_MODEL}")
    try:
        tenant_specs = decode_tenants(require_env(
            env, Env.TENANTS, "a JSON object of tenant name -> {\"principals\": [role ARNs]} "
                              "(or comma-separated names of unbound tenants)"))
    except ContractError as err:
        raise ConfigError(str(err)) from None
    tenants = tuple(spec.name for spec in tenant_specs)
    secret = env.get(Env.API_KEY_SECRET_ARN, "").strip() or None
    if provider == "anthropic" and secret is None:
        raise ConfigError(f"{Env.API_KEY_SECRET_ARN} is not set: the Anthropic API key's "
                          "secret ARN is required with PROVIDER=anthropic")
    from .tools.registry import needs_from_environment

    try:
        tool_needs = needs_from_environment(env)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    try:
        mcp_servers = servers_from_env(env.get(Env.MCP_SERVERS))
    except McpConfigError as err:
        raise ConfigError(str(err)) from None

    def tunable(name: str, field_name: str, cast: type, minimum: float):
        """A number variable whose default is AgentConfig's (each default is written once)."""
        return number_env(env, name, default_of(AgentConfig, field_name), cast, minimum)

    return AgentConfig(
        provider=provider, tool_needs=tool_needs, mcp_servers=mcp_servers,
        bucket_table=require_env(env, Env.BUCKET_TABLE, "the rate-limit bucket table name"),
        results_table=require_env(env, Env.RESULTS_TABLE, "the deferred-results table name"),
        idempotency_table=require_env(env, Env.IDEMPOTENCY_TABLE, "the idempotency table name"),
        work_queue_url=require_env(env, Env.WORK_QUEUE_URL, "the SQS work queue URL"),
        dlq_url=require_env(env, Env.DLQ_URL, "the SQS dead-letter queue URL"),
        tool_role_arn=require_env(env, Env.TOOL_ROLE_ARN, "the tool role ARN"),
        agent_name=env.get(Env.AGENT_NAME, DEFAULT_AGENT_NAME).strip() or DEFAULT_AGENT_NAME,
        models=models, default_model=default_model, degrade_model=degrade_model,
        overflow_policy=overflow, scheduling=scheduling, tenants=tenants,
        tenant_specs=tenant_specs,
        docs_bucket=require_env(env, Env.DOCS_BUCKET, "the tenant documents bucket name"),
        docs_prefix=env.get(Env.DOCS_PREFIX, DOCUMENTS_PREFIX),
        notes_table=require_env(env, Env.NOTES_TABLE, "the notes table name"),
        api_key_secret_arn=secret,
        aws_region=env.get("AWS_REGION",
                           env.get("AWS_DEFAULT_REGION", default_of(AgentConfig, "aws_region"))),
        max_deferrals=tunable(Env.MAX_DEFERRALS, "max_deferrals", int, 0),
        max_deferral_age_s=tunable(Env.MAX_DEFERRAL_AGE_S, "max_deferral_age_s", float, 1),
        max_receives=tunable("MAX_RECEIVES", "max_receives", int, 1),
        max_iterations=tunable("MAX_ITERATIONS", "max_iterations", int, 1),
        max_total_tokens=tunable("MAX_TOTAL_TOKENS", "max_total_tokens", int, 1),
        default_deadline_s=tunable("DEFAULT_DEADLINE_S", "default_deadline_s", float, 0),
        result_ttl_s=tunable("RESULT_TTL_S", "result_ttl_s", int, 60),
        log_prompts=env.get("LOG_PROMPTS", "false").lower() == "true",
        batch_queue_url=env.get(Env.BATCH_QUEUE_URL, "").strip() or None,
        limits=_limits(env), limits_table=env.get(Env.LIMITS_TABLE, "").strip() or None,
        payload_bucket=env.get(Env.PAYLOAD_BUCKET, "").strip() or None,
    )


def _limits(env: Mapping[str, str]) -> LimitSet:
    """The BUDGETS variable (`LimitSet.encode()` as JSON; empty: no budgets)."""
    import json

    raw = env.get(Env.BUDGETS, "").strip()
    if not raw:
        return LimitSet()
    try:
        return LimitSet.decode(json.loads(raw))
    except (json.JSONDecodeError, BudgetError, AttributeError, TypeError, ValueError) as err:
        raise ConfigError(f"{Env.BUDGETS}: {err}") from None
