"""The agent Lambda's environment, parsed once at cold start into a typed model.

Every variable is listed in README ("Agent Lambda environment"). A missing or malformed one
raises `ConfigError` naming the variable and the expected form, so a broken deployment fails
at init with a clear message instead of on the first request.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Mapping

from guard import Limits, LimitsError

from .mcp.config import McpConfigError, McpServer, servers_from_env

OVERFLOW_POLICIES = ("defer", "degrade", "reject")
from guard.client import SCHEDULING_MODES  # noqa: E402  (one home: the guard)
TENANT_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class ConfigError(ValueError):
    """The Lambda environment is missing a variable or holds a malformed one."""


@dataclass(frozen=True)
class Prices:
    """USD per million tokens."""

    input: float
    output: float
    cache_write: float
    cache_read: float

    def cost_usd(self, usage: Mapping[str, int]) -> float:
        """Cost of one call's `usage` (tokens) in USD."""
        return (usage.get("input_tokens", 0) * self.input
                + usage.get("output_tokens", 0) * self.output
                + usage.get("cache_creation_input_tokens", 0) * self.cache_write
                + usage.get("cache_read_input_tokens", 0) * self.cache_read) / 1_000_000


@dataclass(frozen=True)
class ModelConfig:
    """One callable model: its rate-limit bucket, limits, context and prices."""

    model_id: str
    bucket_id: str
    limits: Limits
    context_window: int
    max_output_tokens: int
    prices: Prices


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
    models: dict[str, ModelConfig]
    default_model: str
    degrade_model: str | None
    overflow_policy: str
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
    #: MCP tool sources (MCP_SERVERS; `agent.mcp.config`), empty when none are configured
    mcp_servers: dict[str, McpServer] = field(default_factory=dict)
    system_prompt: str = field(default=(
        "You are Bulwark's operations agent. Answer concisely. Use the tools to read the "
        "tenant's documents and to record notes; never guess a document's content."))


def _require(env: Mapping[str, str], name: str, hint: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is not set: expected {hint}")
    return value


def _number(env, name, default, cast, minimum):
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = cast(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a {cast.__name__}") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be >= {minimum}")
    return value


def _parse_models(raw: str) -> dict[str, ModelConfig]:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ConfigError(f"MODELS is not valid JSON: {err}") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError("MODELS must be a non-empty JSON object of model id -> settings")
    models = {}
    for model_id, spec in data.items():
        where = f"MODELS[{model_id!r}]"
        if not isinstance(spec, dict):
            raise ConfigError(f"{where} must be an object")
        try:
            limits = Limits(spec.get("rpm"), spec.get("itpm"), spec.get("otpm"),
                            tpm=spec.get("tpm"), output_burndown=spec.get("output_burndown", 1.0),
                            counts_cache_reads=spec.get("counts_cache_reads", False),
                            burst_fraction=spec.get("burst_fraction", 1.0))
        except LimitsError as err:
            raise ConfigError(f"{where}: {err}") from None
        prices = spec.get("prices", {})
        try:
            price = Prices(float(prices["input"]), float(prices["output"]),
                           float(prices.get("cache_write", prices["input"] * 1.25)),
                           float(prices.get("cache_read", prices["input"] * 0.1)))
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"{where}.prices needs numeric 'input' and 'output' USD per "
                              "million tokens") from None
        bucket_id = spec.get("bucket")
        if not isinstance(bucket_id, str) or not bucket_id:
            raise ConfigError(f"{where}.bucket must name the rate-limit bucket (e.g. "
                              "'anthropic#sonnet-4')")
        context_window = spec.get("context_window", 200_000)
        max_output = spec.get("max_output_tokens", 64_000)
        for key, value in (("context_window", context_window), ("max_output_tokens", max_output)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{where}.{key} must be a positive integer")
        models[model_id] = ModelConfig(model_id, bucket_id, limits, context_window, max_output,
                                       price)
    return models


def load_config(env: Mapping[str, str]) -> AgentConfig:
    """Parse the Lambda environment; raises `ConfigError` naming the first bad variable."""
    provider = _require(env, "PROVIDER", "'anthropic' or 'bedrock'")
    if provider not in ("anthropic", "bedrock"):
        raise ConfigError(f"PROVIDER={provider!r}: expected 'anthropic' or 'bedrock'")
    models = _parse_models(_require(env, "MODELS", "a JSON object of model id -> settings"))
    default_model = _require(env, "DEFAULT_MODEL", "one of the MODELS keys")
    if default_model not in models:
        raise ConfigError(f"DEFAULT_MODEL={default_model!r} is not in MODELS "
                          f"({', '.join(sorted(models))})")
    overflow = env.get("OVERFLOW_POLICY", "defer").strip() or "defer"
    if overflow not in OVERFLOW_POLICIES:
        raise ConfigError(f"OVERFLOW_POLICY={overflow!r}: expected one of "
                          f"{', '.join(OVERFLOW_POLICIES)}")
    scheduling = env.get("SCHEDULING", "fifo").strip() or "fifo"
    if scheduling not in SCHEDULING_MODES:
        raise ConfigError(f"SCHEDULING={scheduling!r}: expected one of "
                          f"{', '.join(SCHEDULING_MODES)}")
    degrade_model = env.get("DEGRADE_MODEL", "").strip() or None
    if degrade_model is not None and degrade_model not in models:
        raise ConfigError(f"DEGRADE_MODEL={degrade_model!r} is not in MODELS")
    if overflow == "degrade" and degrade_model is None:
        raise ConfigError("OVERFLOW_POLICY=degrade needs DEGRADE_MODEL")
    tenants = tuple(t.strip() for t in _require(env, "TENANTS", "comma-separated tenant names")
                    .split(",") if t.strip())
    for tenant in tenants:
        if not TENANT_PATTERN.match(tenant):
            raise ConfigError(f"TENANTS: {tenant!r} must be 1-63 chars of [a-z0-9-]")
    secret = env.get("API_KEY_SECRET_ARN", "").strip() or None
    if provider == "anthropic" and secret is None:
        raise ConfigError("API_KEY_SECRET_ARN is not set: the Anthropic API key's secret ARN "
                          "is required with PROVIDER=anthropic")
    from .tools.registry import needs_from_environment

    try:
        tool_needs = needs_from_environment(env)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    try:
        mcp_servers = servers_from_env(env.get("MCP_SERVERS"))
    except McpConfigError as err:
        raise ConfigError(str(err)) from None
    return AgentConfig(
        provider=provider, tool_needs=tool_needs, mcp_servers=mcp_servers,
        bucket_table=_require(env, "BUCKET_TABLE", "the rate-limit bucket table name"),
        results_table=_require(env, "RESULTS_TABLE", "the deferred-results table name"),
        idempotency_table=_require(env, "IDEMPOTENCY_TABLE", "the idempotency table name"),
        work_queue_url=_require(env, "WORK_QUEUE_URL", "the SQS work queue URL"),
        dlq_url=_require(env, "DLQ_URL", "the SQS dead-letter queue URL"),
        tool_role_arn=_require(env, "TOOL_ROLE_ARN", "the tool role ARN"),
        agent_name=env.get("AGENT_NAME", "bulwark-agent").strip() or "bulwark-agent",
        models=models, default_model=default_model, degrade_model=degrade_model,
        overflow_policy=overflow, scheduling=scheduling, tenants=tenants,
        docs_bucket=_require(env, "DOCS_BUCKET", "the tenant documents bucket name"),
        docs_prefix=env.get("DOCS_PREFIX", "docs/"),
        notes_table=_require(env, "NOTES_TABLE", "the notes table name"),
        api_key_secret_arn=secret,
        aws_region=env.get("AWS_REGION", env.get("AWS_DEFAULT_REGION", "us-east-1")),
        max_deferrals=_number(env, "MAX_DEFERRALS", 5, int, 0),
        max_deferral_age_s=_number(env, "MAX_DEFERRAL_AGE_S", 3600.0, float, 1),
        max_receives=_number(env, "MAX_RECEIVES", 3, int, 1),
        max_iterations=_number(env, "MAX_ITERATIONS", 8, int, 1),
        max_total_tokens=_number(env, "MAX_TOTAL_TOKENS", 100_000, int, 1),
        default_deadline_s=_number(env, "DEFAULT_DEADLINE_S", 20.0, float, 0),
        result_ttl_s=_number(env, "RESULT_TTL_S", 86_400, int, 60),
        log_prompts=env.get("LOG_PROMPTS", "false").lower() == "true",
        batch_queue_url=env.get("BATCH_QUEUE_URL", "").strip() or None,
    )
