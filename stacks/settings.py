"""The CDK app's configuration: `cdk.json` context (and `-c key=value`), read and validated once.

`load_settings(context)` returns typed `Settings` or raises `SettingsError` naming the key and
the expected form. Values given on the command line arrive as strings; numbers, lists
(comma-separated) and JSON objects are accepted in that form too.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from agent.mcp.config import McpConfigError, McpSettings, load_mcp_settings

from .presets import ANTHROPIC_TIERS, family_of

STAGES = ("dev", "prod")
PROVIDERS = ("anthropic", "bedrock")
OVERFLOW_POLICIES = ("defer", "degrade", "reject")
#: How callers wait for capacity: "fifo" books a start, "poll" retries after retry_after (the
#: pre-booking behaviour, for rolling upgrades); one home, the guard.
from guard.client import SCHEDULING_MODES  # noqa: E402
_TENANT = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_ARN = re.compile(r"^arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:\d{0,12}:.+$")
_GEO_PREFIX = {"us": ["us-east-1", "us-east-2", "us-west-2"],
               "eu": ["eu-central-1", "eu-west-1", "eu-west-3", "eu-north-1"],
               "apac": ["ap-northeast-1", "ap-southeast-1", "ap-southeast-2"]}


#: CloudWatch Logs accepts only these retention periods (days)
RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827,
                  2192, 2557, 2922, 3288, 3653)


class SettingsError(ValueError):
    """A context value is missing or malformed; the message names the key and expected form."""


@dataclass(frozen=True)
class ModelSettings:
    """One callable model and its bucket. Limits per minute (requests or tokens), prices in USD
    per million tokens."""

    model_id: str
    bucket_id: str
    rpm: float | None
    itpm: float | None
    otpm: float | None
    tpm: float | None
    output_burndown: float
    counts_cache_reads: bool
    prices: dict[str, float]
    context_window: int = 200_000
    max_output_tokens: int = 64_000
    #: Bedrock: regions the inference profile routes to (for the foundation-model ARNs)
    routes_to_regions: tuple[str, ...] = ()
    #: share of a minute's capacity handed out at once (GCRA burst tolerance), 0 < f <= 1
    burst_fraction: float = 1.0

    def lambda_config(self) -> dict[str, Any]:
        """This model's entry in the agent Lambda's MODELS variable."""
        entry: dict[str, Any] = {"bucket": self.bucket_id, "prices": self.prices,
                                 "context_window": self.context_window,
                                 "max_output_tokens": self.max_output_tokens}
        for key in ("rpm", "itpm", "otpm", "tpm"):
            if getattr(self, key) is not None:
                entry[key] = getattr(self, key)
        if self.tpm is not None:
            entry["output_burndown"] = self.output_burndown
        if self.counts_cache_reads:
            entry["counts_cache_reads"] = True
        if self.burst_fraction < 1.0:
            entry["burst_fraction"] = self.burst_fraction
        return entry

    @property
    def foundation_model_id(self) -> str:
        """Bedrock: the model id behind an inference profile ("us.anthropic.x" -> "anthropic.x")."""
        head, _, rest = self.model_id.partition(".")
        return rest if head in _GEO_PREFIX or head == "global" else self.model_id


@dataclass(frozen=True)
class AlarmSettings:
    email: str | None = None
    local_throttle_rate_percent: float = 20.0
    quota_used_percent: float = 80.0
    latency_p99_ms: float = 60_000.0
    failure_rate_percent: float = 5.0
    cost_per_hour_usd: float = 10.0


@dataclass(frozen=True)
class Settings:
    stage: str
    provider: str
    tier: str | None
    models: dict[str, ModelSettings]
    default_model: str
    overflow_policy: str
    degrade_model: str | None
    scheduling: str
    max_deferrals: int
    max_deferral_age_s: int
    tenants: tuple[str, ...]
    alarms: AlarmSettings
    allowed_regions: tuple[str, ...]
    reserved_concurrency: int | None  # None: no reservation (new accounts may have < 120)
    queue_max_concurrency: int
    log_retention_days: int
    agent_name: str = "bulwark-agent"
    existing_trail_arn: str | None = None
    existing_kms_key_arn: str | None = None
    api_key_secret_arn: str | None = None
    #: MCP tool sources and their IAM allowlist (`agent.mcp.config`; off when empty)
    mcp: McpSettings = field(default_factory=McpSettings)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def prod(self) -> bool:
        return self.stage == "prod"

    def lambda_models_json(self) -> str:
        return json.dumps({m.model_id: m.lambda_config() for m in self.models.values()},
                          sort_keys=True)


def _fail(key: str, expected: str, value: Any) -> SettingsError:
    return SettingsError(f"context key {key!r}: expected {expected}, got {value!r}")


def _json_or(value: Any) -> Any:
    if isinstance(value, str) and value.strip()[:1] in "{[":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _choice(ctx, key, choices, default):
    value = ctx.get(key, default)
    if value not in choices:
        raise _fail(key, "one of " + ", ".join(choices), value)
    return value


def _number(key: str, value: Any, *, minimum: float = 0, integer: bool = False,
            allow_none: bool = False):
    if allow_none and (value is None or (isinstance(value, str)
                                         and value.strip().lower() in ("", "null", "none"))):
        return None
    if isinstance(value, str):
        try:
            value = float(value) if not integer else int(value)
        except ValueError:
            raise _fail(key, "a number", value) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(key, "a number", value)
    if integer and int(value) != value:
        raise _fail(key, "a whole number", value)
    if value < minimum or value != value:
        raise _fail(key, f"a number >= {minimum}", value)
    return int(value) if integer else float(value)


def _string_list(key: str, value: Any) -> tuple[str, ...]:
    value = _json_or(value)
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise _fail(key, "a non-empty list of strings (or comma-separated)", value)
    return tuple(value)


def _prices(key: str, value: Any) -> dict[str, float]:
    if not isinstance(value, dict) or "input" not in value or "output" not in value:
        raise _fail(key, 'an object {"input": USD/MTok, "output": USD/MTok, '
                         '"cache_write"?: ..., "cache_read"?: ...}', value)
    prices = {name: _number(f"{key}.{name}", value[name]) for name in value
              if name in ("input", "output", "cache_write", "cache_read")}
    unknown = set(value) - {"input", "output", "cache_write", "cache_read"}
    if unknown:
        raise _fail(key, "only input, output, cache_write, cache_read", sorted(unknown))
    prices.setdefault("cache_write", prices["input"] * 1.25)
    prices.setdefault("cache_read", prices["input"] * 0.1)
    return prices


def _anthropic_model(model_id: str, spec: dict, tier: str | None) -> ModelSettings:
    key = f"models.{model_id}"
    family = spec.get("family") or family_of(model_id)
    preset = ANTHROPIC_TIERS[tier].get(family) if tier and family else None
    limits = {}
    for index, name in enumerate(("rpm", "itpm", "otpm")):
        value = spec.get(name, preset[index] if preset else None)
        if value is None:
            raise _fail(f"{key}.{name}", "a per-minute limit (or a known model family with "
                        "'tier')", None)
        limits[name] = _number(f"{key}.{name}", value, minimum=1)
    return ModelSettings(
        model_id=model_id, bucket_id=f"anthropic#{family or model_id}",
        rpm=limits["rpm"], itpm=limits["itpm"], otpm=limits["otpm"], tpm=None,
        output_burndown=1.0, counts_cache_reads=bool(spec.get("counts_cache_reads", False)),
        prices=_prices(f"{key}.prices", spec.get("prices")),
        context_window=_number(f"{key}.context_window", spec.get("context_window", 200_000),
                               minimum=1, integer=True),
        max_output_tokens=_number(f"{key}.max_output_tokens",
                                  spec.get("max_output_tokens", 64_000), minimum=1,
                                  integer=True),
        burst_fraction=_burst_fraction(key, spec))


def _burst_fraction(key: str, spec: dict) -> float:
    value = _number(f"{key}.burst_fraction", spec.get("burst_fraction", 1.0))
    if not 0 < value <= 1:
        raise _fail(f"{key}.burst_fraction", "a share of the per-minute capacity in (0, 1]",
                    value)
    return value


def _bedrock_model(model_id: str, spec: dict) -> ModelSettings:
    key = f"models.{model_id}"
    head = model_id.split(".", 1)[0]
    routes = spec.get("routes_to_regions", _GEO_PREFIX.get(head))
    if not routes:
        raise _fail(f"{key}.routes_to_regions", "the regions this inference profile routes to",
                    routes)
    for region in routes:
        if not _REGION.match(str(region)):
            raise _fail(f"{key}.routes_to_regions", "AWS region names", routes)
    return ModelSettings(
        model_id=model_id, bucket_id=spec.get("bucket", f"bedrock#{model_id}"),
        rpm=_number(f"{key}.rpm", spec.get("rpm"), minimum=1, allow_none=True),
        itpm=None, otpm=None,
        tpm=_number(f"{key}.tpm", spec.get("tpm"), minimum=1),
        output_burndown=_number(f"{key}.output_burndown", spec.get("output_burndown", 5),
                                minimum=1),
        counts_cache_reads=False, prices=_prices(f"{key}.prices", spec.get("prices")),
        context_window=_number(f"{key}.context_window", spec.get("context_window", 200_000),
                               minimum=1, integer=True),
        max_output_tokens=_number(f"{key}.max_output_tokens",
                                  spec.get("max_output_tokens", 64_000), minimum=1,
                                  integer=True),
        routes_to_regions=tuple(routes), burst_fraction=_burst_fraction(key, spec))


def _retention(value: Any) -> int:
    days = _number("log_retention_days", value, minimum=1, integer=True)
    if days not in RETENTION_DAYS:
        raise _fail("log_retention_days", "one of CloudWatch's periods: "
                    + ", ".join(map(str, RETENTION_DAYS)), value)
    return days


def load_settings(ctx: Mapping[str, Any]) -> Settings:
    """Validate the app's context; raises `SettingsError` naming the first bad key."""
    stage = _choice(ctx, "stage", STAGES, "dev")
    provider = _choice(ctx, "provider", PROVIDERS, "anthropic")
    tier = ctx.get("tier")
    if tier is not None and tier not in ANTHROPIC_TIERS:
        raise _fail("tier", "one of " + ", ".join(ANTHROPIC_TIERS), tier)
    raw_models = _json_or(ctx.get("models"))
    if not isinstance(raw_models, dict) or not raw_models:
        raise _fail("models", "an object of model id -> settings", raw_models)
    models = {}
    for model_id, spec in raw_models.items():
        if not isinstance(spec, dict):
            raise _fail(f"models.{model_id}", "an object", spec)
        models[model_id] = (_anthropic_model(model_id, spec, tier) if provider == "anthropic"
                            else _bedrock_model(model_id, spec))
    default_model = ctx.get("default_model", next(iter(models)))
    if default_model not in models:
        raise _fail("default_model", "one of the models keys: " + ", ".join(models),
                    default_model)
    overflow = _choice(ctx, "overflow_policy", OVERFLOW_POLICIES, "defer")
    scheduling = _choice(ctx, "scheduling", SCHEDULING_MODES, "fifo")
    degrade_model = ctx.get("degrade_model") or None  # "" (-c degrade_model=) unsets it
    if degrade_model is not None and degrade_model not in models:
        raise _fail("degrade_model", "one of the models keys: " + ", ".join(models),
                    degrade_model)
    if overflow == "degrade" and degrade_model is None:
        raise _fail("degrade_model", "a model id (required with overflow_policy=degrade)", None)
    deferral = _json_or(ctx.get("deferral", {}))
    if not isinstance(deferral, dict):
        raise _fail("deferral", 'an object {"max_deferrals": n, "max_age_s": seconds}', deferral)
    tenants = _string_list("tenants", ctx.get("tenants"))
    for tenant in tenants:
        if not _TENANT.match(tenant):
            raise _fail("tenants", "names of 1-63 characters [a-z0-9-]", tenant)
    alarms_raw = _json_or(ctx.get("alarms", {}))
    if not isinstance(alarms_raw, dict):
        raise _fail("alarms", "an object of thresholds and an optional email", alarms_raw)
    email = alarms_raw.get("email")
    if email is not None and not (isinstance(email, str) and _EMAIL.match(email)):
        raise _fail("alarms.email", "an e-mail address or null", email)
    unknown = set(alarms_raw) - set(AlarmSettings.__dataclass_fields__)
    if unknown:
        raise _fail("alarms", "only " + ", ".join(AlarmSettings.__dataclass_fields__),
                    sorted(unknown))
    alarms = AlarmSettings(email=email, **{
        name: _number(f"alarms.{name}", value) for name, value in alarms_raw.items()
        if name != "email"})
    regions = _string_list("allowed_regions", ctx.get("allowed_regions", "us-east-1"))
    for region in regions:
        if not _REGION.match(region):
            raise _fail("allowed_regions", "AWS region names such as us-east-1", region)
    optional_arns = {}
    for key in ("existing_trail_arn", "existing_kms_key_arn", "api_key_secret_arn"):
        value = ctx.get(key) or None
        if value is not None and not (isinstance(value, str) and _ARN.match(value)):
            raise _fail(key, "an ARN or null", value)
        optional_arns[key] = value
    try:
        mcp = load_mcp_settings(ctx.get("mcp"))
    except McpConfigError as err:
        raise SettingsError(f"context key {err}") from None
    return Settings(
        stage=stage, provider=provider, tier=tier, models=models, default_model=default_model,
        overflow_policy=overflow, degrade_model=degrade_model, scheduling=scheduling,
        max_deferrals=_number("deferral.max_deferrals", deferral.get("max_deferrals", 5),
                              integer=True),
        max_deferral_age_s=_number("deferral.max_age_s", deferral.get("max_age_s", 3600),
                                   minimum=60, integer=True),
        tenants=tenants, alarms=alarms, allowed_regions=regions,
        reserved_concurrency=_number("reserved_concurrency", ctx.get("reserved_concurrency", 20),
                                     minimum=1, integer=True, allow_none=True),
        queue_max_concurrency=_number("queue_max_concurrency",
                                      ctx.get("queue_max_concurrency", 5), minimum=2,
                                      integer=True),
        log_retention_days=_retention(ctx.get("log_retention_days", 30)),
        mcp=mcp, **optional_arns)
