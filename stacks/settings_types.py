"""The typed settings the stack's constructs take (`Settings` and its parts), built by
`stacks.settings.load_settings`. Each checks its own values when built, so a construct given
one by hand (a test, another CDK app) gets the same errors. Their field defaults are the
settings' defaults, written once: the schema takes them (`settings_schema.defaults_from`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from agent.contract import (DEFAULT_AGENT_NAME, DEFAULT_BATCH_MAX_ITEMS, DEFAULT_BATCH_MAX_RETRIES,
                            DEFAULT_BATCH_MAX_WAIT_S, DEFAULT_BATCH_QUEUE_CAP, DEFAULT_BATCH_RPM,
                            ModelSpec, TenantSpec)
from agent.mcp.config import McpSettings
from guard.runaway import RunawaySettings
from guard.spend import LimitSet

from .settings_readers import EMAIL_PATTERN

#: the metrics with a learned band: key -> (meaning, default band width in standard deviations)
ANOMALY_METRICS = {
    "cost_per_hour": ("CostUSD per hour", 3.0),
    "cost_per_success": ("CostUSD per succeeded request, 5 min", 3.0),
    "failure_rate": ("Failed / (Succeeded + Failed) in %, 5 min", 3.0),
    "upstream_429_rate": ("Upstream429 / Requests in %, 5 min", 3.0),
    "local_throttle_rate": ("LocalThrottles / (Requests + LocalThrottles) in %, 5 min", 3.0),
    "latency_p99": ("Latency p99 in ms, 5 min", 3.0),
}
#: the learned bands per configured tenant (the per-tenant metrics that exist for them)
TENANT_ANOMALY_METRICS = {
    "cost_per_hour": ("CostUSD per hour of the tenant", 3.0),
    "cost_per_success": ("the tenant's CostUSD per succeeded request, 5 min", 3.0),
    "failure_rate": ("the tenant's Failed / (Succeeded + Failed) in %, 5 min", 3.0),
    "upstream_429_rate": ("the tenant's Upstream429 / Requests in %, 5 min", 3.0),
    "local_throttle_rate": ("the tenant's LocalThrottles / (Requests + LocalThrottles) in %, "
                            "5 min", 3.0),
    "latency_p99": ("the tenant's Latency p99 in ms, 5 min", 3.0),
}
BAND_DIRECTIONS = ("above", "below", "outside")
CONTRIBUTOR_INSIGHTS_MODES = ("throttled_keys", "accessed_and_throttled_keys", "off")


@dataclass(frozen=True, kw_only=True)
class ModelSettings(ModelSpec):
    """One callable model (`agent.contract.ModelSpec`: its bucket and per-minute limits,
    context, prices in USD per million tokens), plus what only the stack needs: Bedrock's
    routing."""

    #: Bedrock: regions the inference profile routes to (for the foundation-model ARNs)
    routes_to_regions: tuple[str, ...] = ()

    @property
    def profile_prefix(self) -> str | None:
        """Bedrock: "us" for "us.anthropic.x", None for a foundation model id."""
        head, dot, _ = self.model_id.partition(".")
        return head if dot and head != "anthropic" else None

    @property
    def foundation_model_id(self) -> str:
        """Bedrock: the model id behind an inference profile ("us.anthropic.x" -> "anthropic.x")."""
        return self.model_id.partition(".")[2] if self.profile_prefix else self.model_id


@dataclass(frozen=True)
class AnomalyBand:
    """One learned band: `band` in standard deviations, `direction` above/below/outside."""

    band: float = 3.0
    direction: str = "above"

    def __post_init__(self) -> None:
        if not self.band > 0:
            raise ValueError(f"AnomalyBand.band must be > 0 standard deviations, got {self.band!r}")
        if self.direction not in BAND_DIRECTIONS:
            raise ValueError(f"AnomalyBand.direction must be one of {', '.join(BAND_DIRECTIONS)},"
                             f" got {self.direction!r}")


@dataclass(frozen=True)
class SloSettings:
    """Success-rate SLO (percent) and its two burn-rate alarms (windows in minutes)."""

    success_rate_percent: float = 99
    fast_burn_rate: float = 14.4
    fast_window_minutes: int = 60
    fast_short_window_minutes: int = 5
    slow_burn_rate: float = 6
    slow_window_minutes: int = 360
    slow_short_window_minutes: int = 30
    min_requests: int = 10

    def __post_init__(self) -> None:
        if not 0 < self.success_rate_percent < 100:
            raise ValueError("SloSettings.success_rate_percent must be in (0, 100) (100 leaves "
                             f"no error budget), got {self.success_rate_percent!r}")
        for kind in ("fast", "slow"):
            long_w = getattr(self, f"{kind}_window_minutes")
            short_w = getattr(self, f"{kind}_short_window_minutes")
            if not 0 < short_w < long_w <= 1440:
                raise ValueError(f"SloSettings: need 0 < {kind}_short_window_minutes ({short_w})"
                                 f" < {kind}_window_minutes ({long_w}) <= 1440")

    @property
    def error_budget_percent(self) -> float:
        return 100.0 - self.success_rate_percent


@dataclass(frozen=True)
class ForecastSettings:
    """Quota forecast: look `horizon_minutes` ahead from rates per `period_minutes`; alarm at
    `alarm_percent` of the fullest limit."""

    horizon_minutes: int = 30
    period_minutes: int = 10
    alarm_percent: float = 80

    def __post_init__(self) -> None:
        if not 0 < self.period_minutes <= self.horizon_minutes:
            raise ValueError(f"ForecastSettings: need 0 < period_minutes ({self.period_minutes}) "
                             f"<= horizon_minutes ({self.horizon_minutes})")
        if not 0 < self.alarm_percent <= 100:
            raise ValueError("ForecastSettings.alarm_percent must be in (0, 100], got "
                             f"{self.alarm_percent!r}")


def _default_bands(metrics: Mapping[str, tuple[str, float]] = ANOMALY_METRICS
                   ) -> dict[str, AnomalyBand]:
    return {name: AnomalyBand(band) for name, (_, band) in metrics.items()}


def _default_tenant_bands() -> dict[str, AnomalyBand]:
    return _default_bands(TENANT_ANOMALY_METRICS)


@dataclass(frozen=True)
class AlarmSettings:
    """Alarm thresholds (the monitoring construct takes these) and the e-mail they page."""

    email: str | None = None
    local_throttle_rate_percent: float = 20  # LocalThrottles / (Requests + LocalThrottles), 5 min
    quota_used_percent: float = 80  # QuotaUsedPercent Maximum >= this
    latency_p99_ms: float = 60_000  # Latency p99
    failure_rate_percent: float = 5  # Failed / (Succeeded + Failed)
    cost_per_hour_usd: float = 10  # CostUSD Sum over 1 hour
    #: learned bands, keyed as ANOMALY_METRICS (a key left out gets its default)
    anomaly: Mapping[str, AnomalyBand] = field(default_factory=_default_bands)
    #: learned bands per configured tenant, keyed as TENANT_ANOMALY_METRICS
    tenant_anomaly: Mapping[str, AnomalyBand] = field(default_factory=_default_tenant_bands)
    slo: SloSettings = field(default_factory=SloSettings)
    forecast: ForecastSettings = field(default_factory=ForecastSettings)
    contributor_insights: str = "throttled_keys"

    def __post_init__(self) -> None:
        unknown = sorted(set(self.anomaly) - set(ANOMALY_METRICS))
        if unknown:
            raise ValueError(f"AlarmSettings.anomaly: unknown metrics {unknown} (known: "
                             f"{', '.join(ANOMALY_METRICS)})")
        object.__setattr__(self, "anomaly", {**_default_bands(), **self.anomaly})
        unknown = sorted(set(self.tenant_anomaly) - set(TENANT_ANOMALY_METRICS))
        if unknown:
            raise ValueError(f"AlarmSettings.tenant_anomaly: unknown metrics {unknown} (known: "
                             f"{', '.join(TENANT_ANOMALY_METRICS)})")
        object.__setattr__(self, "tenant_anomaly",
                           {**_default_tenant_bands(), **self.tenant_anomaly})
        if self.contributor_insights not in CONTRIBUTOR_INSIGHTS_MODES:
            raise ValueError("AlarmSettings.contributor_insights must be one of "
                             f"{', '.join(CONTRIBUTOR_INSIGHTS_MODES)}, got "
                             f"{self.contributor_insights!r}")
        if self.email is not None and not EMAIL_PATTERN.match(self.email):
            raise ValueError(f"AlarmSettings.email is not an email address: {self.email!r}")
        for name in ("local_throttle_rate_percent", "quota_used_percent", "failure_rate_percent"):
            value = getattr(self, name)
            if not 0 < value <= 100:
                raise ValueError(f"AlarmSettings.{name} must be in (0, 100], got {value!r}")
        for name in ("latency_p99_ms", "cost_per_hour_usd"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"AlarmSettings.{name} must be > 0, got {value!r}")


@dataclass(frozen=True)
class BatchSettings:
    """The batch lane; `enabled` is False with provider=bedrock. The tunables default to the
    contract's (`agent.contract.DEFAULT_BATCH_*`), which the collector's `BatchConfig` shares;
    `requests_per_minute` and `max_queued_requests` are the tier1 preset's there
    (`load_settings` takes the configured tier's)."""

    enabled: bool = True
    requests_per_minute: float = float(DEFAULT_BATCH_RPM)
    max_queued_requests: int = DEFAULT_BATCH_QUEUE_CAP
    max_items_per_batch: int = DEFAULT_BATCH_MAX_ITEMS
    max_wait_s: int = DEFAULT_BATCH_MAX_WAIT_S  # seconds
    max_retries: int = DEFAULT_BATCH_MAX_RETRIES
    cancel_after_hours: float | None = None
    schedule_minutes: int = 1
    oldest_queued_alarm_hours: float = 6


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
    #: tenant names, in configured order (`tenant_specs` binds them to roles)
    tenants: tuple[str, ...]
    alarms: AlarmSettings
    allowed_regions: tuple[str, ...]
    reserved_concurrency: int | None  # None: no reservation (new accounts may have < 120)
    queue_max_concurrency: int
    log_retention_days: int
    agent_name: str = DEFAULT_AGENT_NAME
    existing_trail_arn: str | None = None
    existing_kms_key_arn: str | None = None
    api_key_secret_arn: str | None = None
    #: MCP tool sources and their IAM allowlist (`agent.mcp.config`; off when empty)
    mcp: McpSettings = field(default_factory=McpSettings)
    #: the batch lane (Message Batches API)
    batch: BatchSettings = field(default_factory=BatchSettings)
    #: the tenants and the IAM roles bound to them (docs/tenants.md)
    tenant_specs: tuple[TenantSpec, ...] = ()
    #: IAM role ARNs trusted to invoke the function directly (naming any tenant)
    trusted_invokers: tuple[str, ...] = ()
    #: IAM role ARNs that may send to the work queue besides the agent role
    trusted_producers: tuple[str, ...] = ()
    #: budgets on deploy (`guard.spend.LimitSet`: per tenant, the deployment's, each model's
    #: tokens per day); `python -m cli.limits set` changes them without a redeploy
    limits: LimitSet = field(default_factory=LimitSet)
    #: the runaway breaker (None: not deployed) and minutes between its evaluations
    runaway: RunawaySettings | None = field(default_factory=RunawaySettings)
    runaway_schedule_minutes: int = 1

    @property
    def prod(self) -> bool:
        return self.stage == "prod"

