"""The CDK app's configuration: `cdk.json` context (and `-c key=value`), read and validated once.

`load_settings(context, region=...)` returns typed `Settings` or raises `SettingsError` with
every problem found (`.problems`, one line each, naming the key and the expected form). Values
given on the command line arrive as strings; numbers, lists (comma-separated) and JSON objects
are accepted in that form too.

`SCHEMA` is the one table of what may be configured: every context key and every nested key,
with its meaning (docs/configuration.md's reference lists the same keys; a test keeps them in
step), how its value is read and its default. A key that is not in it is an error with the
closest valid name, except the keys the CDK itself owns (`cdk_owned`). To add a setting, add
a `Key` to `SCHEMA` (a section: a `Key` with `keys={...}`), read it in `load_settings`, and
regenerate that reference (`python -m stacks.settings`).

Defaults per provider live in cdk.json under `provider_defaults.<provider>` (models, default
and degrade model, the Anthropic tier, the regions Bedrock's inference-profile prefixes route
to); a top-level key of the same name overrides the provider's default.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

#: The rules the Lambda checks too (providers, overflow policies, tenants, scheduling modes,
#: model specs and their defaults) come from the deploy-runtime contract, `agent.contract`.
from agent.contract import (CACHE_READ_PRICE_FACTOR, CACHE_WRITE_PRICE_FACTOR,
                            DEFAULT_AGENT_NAME, DEFAULT_CONTEXT_WINDOW,
                            DEFAULT_MAX_OUTPUT_TOKENS, OVERFLOW_POLICIES, PROVIDERS,
                            ROLE_ARN_PATTERN, SCHEDULING_MODES, TENANT_PATTERN, FieldError,
                            ModelSpec, Prices, TenantSpec)
from agent.mcp.config import McpConfigError, McpSettings, load_mcp_settings
from guard.budget import ACTIONS, Budget, BudgetError
from guard.limits import SHARE_KEYS, Limits, LimitsError, TenantShare
from guard.runaway import RunawayError, RunawaySettings
from guard.spend import LimitSet
from guard.tiers import ANTHROPIC_TIERS, BATCH_TIERS, FAMILIES, family_of

from .pool_settings import pooled_model

STAGES = ("dev", "prod")
_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_ARN = re.compile(r"^arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:\d{0,12}:.+$")

#: CloudWatch Logs accepts only these retention periods (days)
RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827,
                  2192, 2557, 2922, 3288, 3653)

#: Context the CDK owns, never validated here: feature flags ("@aws-cdk/..."), what the CLI
#: injects ("aws:cdk:..."), the notices it acknowledged, and context lookups it caches in
#: cdk.context.json ("<provider>:account=...:region=..."; the cloud-assembly-schema's
#: ContextProvider names).
CDK_LOOKUP_PROVIDERS = ("ami", "availability-zones", "cc-api-provider",
                        "endpoint-service-availability-zones", "hosted-zone", "key-provider",
                        "load-balancer", "load-balancer-listener", "security-group", "ssm",
                        "vpc-provider")
CDK_OWNED_KEYS = ("acknowledged-issue-numbers",)


def cdk_owned(key: str) -> bool:
    """True for context keys the CDK (library or CLI) owns."""
    return (key.startswith("@") or key.startswith("aws:cdk:") or key in CDK_OWNED_KEYS
            or key.split(":", 1)[0] in CDK_LOOKUP_PROVIDERS and ":" in key)


class SettingsError(ValueError):
    """The context has problems; `.problems` lists each (key, expected form, value given)."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


# -- reading values --------------------------------------------------------------------------

class Problems:
    """Collects every problem of one load; readers return None for a bad value."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def bad(self, key: str, expected: str, value: Any) -> None:
        self.items.append(f"context key {key!r}: expected {expected}, got {value!r}")

    def say(self, message: str) -> None:
        self.items.append(message)


Reader = Callable[[Problems, str, Any], Any]
_UNSET = ("", "null", "none")


def _json_or(value: Any) -> Any:
    if isinstance(value, str) and value.strip()[:1] in "{[":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in _UNSET)


def choice(*options: str) -> Reader:
    def read(problems: Problems, key: str, value: Any):
        if value not in options:
            return problems.bad(key, "one of " + ", ".join(options), value)
        return value
    return read


def number(minimum: float = 0, *, integer: bool = False, nullable: bool = False) -> Reader:
    def read(problems: Problems, key: str, value: Any):
        if nullable and _empty(value):
            return None
        if isinstance(value, str):
            try:
                value = float(value) if not integer else int(value)
            except ValueError:
                return problems.bad(key, "a whole number" if integer else "a number", value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return problems.bad(key, "a number", value)
        if integer and int(value) != value:
            return problems.bad(key, "a whole number", value)
        if value < minimum or value != value:
            return problems.bad(key, f"a number >= {minimum:g}", value)
        return int(value) if integer else float(value)
    return read


def matching(pattern: re.Pattern, expected: str, *, nullable: bool = False) -> Reader:
    def read(problems: Problems, key: str, value: Any):
        if nullable and _empty(value):
            return None
        if not isinstance(value, str) or not pattern.match(value):
            return problems.bad(key, expected, value)
        return value
    return read


def string_list(item: re.Pattern, expected: str) -> Reader:
    def read(problems: Problems, key: str, value: Any):
        value = _json_or(value)
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list) or not value or not all(isinstance(v, str)
                                                               for v in value):
            return problems.bad(key, "a non-empty list of strings (or comma-separated)", value)
        wrong = [v for v in value if not item.match(v)]
        if wrong:
            return problems.bad(key, expected, wrong[0] if len(wrong) == 1 else wrong)
        return tuple(value)
    return read


def text(*, nullable: bool = True) -> Reader:
    def read(problems: Problems, key: str, value: Any):
        if nullable and _empty(value):
            return None  # "" (-c degrade_model=) unsets
        if not isinstance(value, str):
            return problems.bad(key, "a string", value)
        return value
    return read


def boolean(problems: Problems, key: str, value: Any):
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool):
        return problems.bad(key, "true or false", value)
    return value


def _fraction(problems: Problems, key: str, value: Any):
    share = number()(problems, key, value)
    if share is not None and not 0 < share <= 1:
        return problems.bad(key, "a share of the per-minute capacity in (0, 1]", value)
    return share


def _mcp(problems: Problems, key: str, value: Any):
    try:
        return load_mcp_settings(_json_or(value))
    except McpConfigError as err:
        return problems.say(f"context key {err}")


def retention(problems: Problems, key: str, value: Any):
    days = number(1, integer=True)(problems, key, value)
    if days is not None and days not in RETENTION_DAYS:
        return problems.bad(key, "one of CloudWatch's periods: "
                            + ", ".join(map(str, RETENTION_DAYS)), value)
    return days


def percent(problems: Problems, key: str, value: Any):
    share = number(0)(problems, key, value)
    if share is not None and not 0 < share <= 100:
        return problems.bad(key, "a percentage in (0, 100]", value)
    return share


def positive(problems: Problems, key: str, value: Any):
    amount = number(0)(problems, key, value)
    if amount == 0:
        return problems.bad(key, "a number > 0", value)
    return amount


_ROLE_ARNS = ("IAM role ARNs such as arn:aws:iam::111122223333:role/AppRole (not users, "
              "groups or assumed-role session ARNs)")


def role_arns(problems: Problems, key: str, value: Any):
    """A list (or comma-separated) of IAM role ARNs, possibly empty."""
    value = _json_or(value)
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return problems.bad(key, "a list of " + _ROLE_ARNS, value)
    wrong = [v for v in value if not ROLE_ARN_PATTERN.match(v)]
    if wrong:
        return problems.bad(key, _ROLE_ARNS, wrong[0] if len(wrong) == 1 else wrong)
    return tuple(dict.fromkeys(value))


def region_map(problems: Problems, key: str, value: Any):
    value = _json_or(value)
    if not isinstance(value, dict) or not value:
        return problems.bad(key, 'an object of profile prefix -> regions, e.g. {"us": '
                            '["us-east-1", "us-east-2", "us-west-2"]}', value)
    read = string_list(_REGION, "AWS region names such as us-east-1")
    return {prefix: read(problems, f"{key}.{prefix}", regions)
            for prefix, regions in value.items()}


# -- the schema ------------------------------------------------------------------------------

REQUIRED = object()


@dataclass(frozen=True)
class Key:
    """One configurable key. `doc`: what it means (docs/configuration.md). `read`: how a value is
    read (a leaf), `keys`: the nested keys of an object section, `each`: the nested keys of
    every entry of an object of name -> object (e.g. models). `default`: used when absent
    (REQUIRED: must be given). `provider`: applies to that provider only."""

    doc: str
    read: Reader | None = None
    default: Any = None
    keys: Mapping[str, "Key"] | None = None
    each: Mapping[str, "Key"] | None = None
    provider: str | None = None


_LIMIT = number(1)
_TOKENS = number(1, integer=True)

PRICE_KEYS: dict[str, Key] = {
    "input": Key("USD per million input tokens", number(), REQUIRED),
    "output": Key("USD per million output tokens", number(), REQUIRED),
    "cache_write": Key(f"USD per million cache-write tokens (input x "
                       f"{CACHE_WRITE_PRICE_FACTOR:g})", number()),
    "cache_read": Key(f"USD per million cache-read tokens (input x {CACHE_READ_PRICE_FACTOR:g})",
                      number()),
}

MODEL_KEYS: dict[str, Key] = {
    "prices": Key("USD per million tokens", keys=PRICE_KEYS, default=REQUIRED),
    "rpm": Key("requests per minute (Anthropic: overrides the tier preset; Bedrock: optional)",
               number(1, nullable=True)),
    "itpm": Key("input tokens per minute (overrides the tier preset)", _LIMIT,
                provider="anthropic"),
    "otpm": Key("output tokens per minute (overrides the tier preset)", _LIMIT,
                provider="anthropic"),
    "family": Key(f"rate-limit family sharing one bucket: {', '.join(FAMILIES)} (from the "
                  "model id)", choice(*FAMILIES), provider="anthropic"),
    "counts_cache_reads": Key("cache reads count toward ITPM (e.g. Haiku 3.5)", boolean, False,
                              provider="anthropic"),
    "tpm": Key("tokens per minute (input + cache write + output x burndown), the account's "
               "Service Quotas value", _LIMIT, REQUIRED, provider="bedrock"),
    "output_burndown": Key("quota charged per output token (5 for recent Claude models)",
                           number(1), 5, provider="bedrock"),
    "routes_to_regions": Key("regions the inference profile routes to (from the profile "
                             "prefix and profile_regions)",
                             string_list(_REGION, "AWS region names such as us-east-1"),
                             provider="bedrock"),
    "bucket": Key("rate-limit bucket id (bedrock#<model id>)", text(), provider="bedrock"),
    "context_window": Key("tokens of context the model accepts", _TOKENS,
                          DEFAULT_CONTEXT_WINDOW),
    "burst_fraction": Key("share of a minute's capacity the bucket hands out at once, in (0, 1] "
                          "(GCRA burst tolerance; the sustained rate is the limit)",
                          _fraction, 1.0),
    "max_output_tokens": Key("largest max_tokens the model accepts", _TOKENS,
                             DEFAULT_MAX_OUTPUT_TOKENS),
    "tokens_per_day": Key("Bedrock's 'Model invocation max tokens per day' (input + output; "
                          "counted per UTC day; null: not enforced)",
                          number(1, integer=True, nullable=True), provider="bedrock"),
    "pools": Key("capacity pools in preference order, each a provider route with its own "
                 "limits (stacks/pool_settings.py reads them)", lambda problems, key, v: v),
}

#: A budget (`guard.Budget`): the deployment's (`budget`), a tenant's
#: (`tenants.<name>.budget`), and what `python -m cli.limits set` accepts.
BUDGET_KEYS: dict[str, Key] = {
    "usd_per_day": Key("USD per UTC day (0 blocks; null: no limit)", number(0, nullable=True)),
    "usd_per_month": Key("USD per UTC month, reset on the 1st (0 blocks; null: no limit)",
                         number(0, nullable=True)),
    "tokens_per_day": Key("tokens per UTC day, input + cache write + output (null: no limit)",
                          number(0, integer=True, nullable=True)),
    "action": Key("what a call refused for budget does: " + ", ".join(ACTIONS),
                  choice(*ACTIONS), "reject"),
    "degrade_to": Key("the cheaper model of action=degrade (default: degrade_model)", text()),
    "currency": Key("USD only (prices are USD per million tokens)", choice("USD"), "USD"),
}

#: keys of each tenant (`tenants.<name>`). To add a per-tenant setting: a Key here and a field
#: of the same name on `agent.contract.TenantSpec` (which checks it and carries it to the
#: Lambda); `_tenants` passes every key on.
TENANT_KEYS: dict[str, Key] = {
    "principals": Key("IAM role ARNs whose sessions act for the tenant (matched on account "
                      "and role name); required unless allow_unbound_tenants", role_arns, ()),
    # a section: read by `read_limits`, not passed to TenantSpec
    "budget": Key("the tenant's budget (`python -m cli.limits` changes it without a "
                  "redeploy)", keys=BUDGET_KEYS),
    "weight": Key("the tenant's weight under contention (guard.TenantShare); set on any "
                  "tenant, every model's bucket shares by tenant (the others weight 1); "
                  "`python -m cli.limits` changes it and the caps below without a redeploy",
                  number(0.001, nullable=True)),
    "rpm": Key("cap: the tenant's requests per minute", number(1, nullable=True)),
    "itpm": Key("cap: the tenant's input tokens per minute (Anthropic API)",
                number(1, nullable=True)),
    "otpm": Key("cap: the tenant's output tokens per minute (Anthropic API)",
                number(1, nullable=True)),
    "tpm": Key("cap: the tenant's tokens per minute (Bedrock)", number(1, nullable=True)),
}

#: the runaway breaker's settings (`guard.runaway.RunawaySettings` checks them too)
RUNAWAY_KEYS: dict[str, Key] = {
    "enabled": Key("deploy the scheduled breaker", boolean, True),
    "k": Key("trip when the spend rate exceeds k x the baseline (> 1)", number(1.01), 5.0),
    "min_baseline_usd_per_hour": Key("the least baseline, USD per hour (little history does "
                                     "not trip on pennies)", number(0.001), 0.5),
    "window_minutes": Key("minutes the current spend rate is measured over",
                          number(1, integer=True), 2),
    "history_days": Key("days of the same hour the baseline is the median of",
                        number(1, integer=True), 14),
    "clear_below": Key("release a throttle when the rate falls under this fraction of the "
                       "baseline, in (0, 1)", number(0.01), 0.5),
    "schedule_minutes": Key("minutes between evaluations", number(1, integer=True), 1),
}

#: keys a provider's defaults may set, and that a top-level key of the same name overrides
PROVIDER_KEYS: dict[str, Key] = {
    "tier": Key("Anthropic rate-limit preset: " + ", ".join(ANTHROPIC_TIERS),
                choice(*ANTHROPIC_TIERS), provider="anthropic"),
    "models": Key("model id -> settings (Bedrock: inference profile ids)", each=MODEL_KEYS,
                  default=REQUIRED),
    "default_model": Key("the model a request without 'model' uses (first of models)", text()),
    "degrade_model": Key("the smaller model of overflow_policy=degrade ('' unsets)", text()),
    "profile_regions": Key("Bedrock: inference-profile prefix -> regions it routes to",
                           region_map, provider="bedrock"),
}

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
    "failure_rate": ("the tenant's Failed / (Succeeded + Failed) in %, 5 min", 3.0),
    "local_throttle_rate": ("the tenant's LocalThrottles / (Requests + LocalThrottles) in %, "
                            "5 min", 3.0),
}
BAND_DIRECTIONS = ("above", "below", "outside")
CONTRIBUTOR_INSIGHTS_MODES = ("throttled_keys", "accessed_and_throttled_keys", "off")

def _band_keys(metrics: Mapping[str, tuple[str, float]]) -> dict[str, Key]:
    """The keys of a learned-bands section: per metric its band width and direction."""
    return {name: Key(doc, keys={
        "band": Key("band width, standard deviations", number(0.5), band),
        "direction": Key("above, below or outside the band alarms",
                         choice(*BAND_DIRECTIONS), "above")})
        for name, (doc, band) in metrics.items()}


SCHEMA: dict[str, Key] = {
    "stage": Key("dev or prod: prod retains and deletion-protects stateful resources",
                 choice(*STAGES), "dev"),
    "provider": Key("anthropic or bedrock", choice(*PROVIDERS), "anthropic"),
    **PROVIDER_KEYS,
    "provider_defaults": Key("per provider: tier, models, default_model, degrade_model, "
                             "profile_regions", keys={
                                 p: Key(f"defaults for provider={p}", keys=PROVIDER_KEYS)
                                 for p in PROVIDERS}),
    "overflow_policy": Key("defer, degrade or reject, when capacity is short",
                           choice(*OVERFLOW_POLICIES), "defer"),
    "scheduling": Key("fifo (book a start, sleep until it) or poll (retry after retry_after; "
                      "for rolling upgrades and as a kill switch)",
                      choice(*SCHEDULING_MODES), "fifo"),
    "mcp": Key("MCP tool sources and their IAM allowlist (agent.mcp.config; checked there)",
               _mcp, None),
    "deferral": Key("dead-letter rules for deferred requests", keys={
        "max_deferrals": Key("deferrals before the DLQ", number(0, integer=True), 5),
        "max_age_s": Key("age (s) before the DLQ", number(60, integer=True), 3600)}),
    "batch": Key("the batch lane (Anthropic Message Batches, half price; docs/agent/batch.md)",
                  keys={
        "enabled": Key("deploy the batch lane (Anthropic only; with Bedrock it is off)",
                       boolean, True),
        "requests_per_minute": Key("batch endpoints' requests per minute, shared by every "
                                   "model (null: the tier preset)", number(1, nullable=True)),
        "max_queued_requests": Key("most requests waiting in the batch processing queue "
                                   "(null: the tier preset)",
                                   number(1, integer=True, nullable=True)),
        "max_items_per_batch": Key("requests per batch (the API allows 100,000)",
                                   number(1, integer=True), 1_000),
        "max_wait_s": Key("seconds the oldest queued request waits before a partial batch",
                          number(0, integer=True), 300),
        "max_retries": Key("times an expired, canceled or transiently errored item is "
                           "queued again before the DLQ", number(0, integer=True), 3),
        "cancel_after_hours": Key("cancel a batch still processing after this many hours "
                                  "(null: the API expires it at 24 h)",
                                  number(1, nullable=True)),
        "schedule_minutes": Key("minutes between collector runs and between poller runs",
                                number(1, integer=True), 1),
        "oldest_queued_alarm_hours": Key("alarm when the oldest queued request is older",
                                         positive, 6)}),
    "tenants": Key("tenant name -> its settings, e.g. {\"acme\": {\"principals\": "
                   "[role ARNs]}}; a plain list of names only with allow_unbound_tenants "
                   "(docs/tenants.md)",
                   string_list(TENANT_PATTERN, "names of 1-63 characters [a-z0-9-]"),
                   REQUIRED, each=TENANT_KEYS),
    "allow_unbound_tenants": Key("accept tenants bound to no role (a plain list): any caller "
                                 "may then name them; for the local demo and tests",
                                 boolean, False),
    "trusted_invokers": Key("IAM role ARNs trusted to invoke the function directly and name "
                            "any tenant (a front door that derived the tenant itself)",
                            role_arns, ()),
    "trusted_producers": Key("IAM role ARNs that may send work to the work queue besides the "
                             "agent (the queue policy denies everyone else)", role_arns, ()),
    "budget": Key("the deployment-wide budget: every tenant's calls together", keys=BUDGET_KEYS),
    "runaway": Key("the runaway breaker (guard.runaway): a tenant, or the deployment, spending "
                   "faster than k x its baseline (the same hour of day over the last days) is "
                   "capped to the baseline until `python -m cli.limits clear-runaway` or its "
                   "spend falls back", keys=RUNAWAY_KEYS),
    "alarms": Key("alarm thresholds and the e-mail they page", keys={
        "email": Key("e-mail subscribed to the alarm topic (null: none)",
                     matching(_EMAIL, "an e-mail address or null", nullable=True)),
        "local_throttle_rate_percent": Key("bucket refusals per acquire", percent, 20),
        "quota_used_percent": Key("fullest bucket dimension at acquire", percent, 80),
        "latency_p99_ms": Key("p99 model latency", positive, 60_000),
        "failure_rate_percent": Key("failed requests", percent, 5),
        "cost_per_hour_usd": Key("Claude spend per hour", positive, 10),
        "anomaly": Key("learned bands per model (docs/monitoring.md): the band "
                       "width in standard deviations and the direction that alarms, per metric",
                       keys=_band_keys(ANOMALY_METRICS)),
        "tenant_anomaly": Key("learned bands per configured tenant (README 'Thresholds that "
                              "learn'): band width and direction per metric",
                              keys=_band_keys(TENANT_ANOMALY_METRICS)),
        "slo": Key("success-rate SLO per model and lane, with burn-rate alarms", keys={
            "success_rate_percent": Key("target share of requests that succeed", percent, 99),
            "fast_burn_rate": Key("burn rate that pages (error budget used x faster than "
                                  "allowed)", number(1), 14.4),
            "fast_window_minutes": Key("long window of the paging alarm",
                                       number(5, integer=True), 60),
            "fast_short_window_minutes": Key("short window of the paging alarm (the burn must "
                                             "still be on)", number(1, integer=True), 5),
            "slow_burn_rate": Key("burn rate that warns", number(1), 6),
            "slow_window_minutes": Key("long window of the warning alarm",
                                       number(5, integer=True), 360),
            "slow_short_window_minutes": Key("short window of the warning alarm",
                                             number(1, integer=True), 30),
            "min_requests": Key("requests a window needs before its burn rate counts",
                                number(1, integer=True), 10)}),
        "forecast": Key("quota forecast per model: the per-minute rates projected ahead", keys={
            "horizon_minutes": Key("how far ahead the projection looks",
                                   number(5, integer=True), 30),
            "period_minutes": Key("period of the rates the slope is taken from",
                                  number(1, integer=True), 10),
            "alarm_percent": Key("alarm when the projected use of the fullest limit reaches "
                                 "this", percent, 80)}),
        "contributor_insights": Key("DynamoDB Contributor Insights on the bucket table: "
                                    "throttled_keys, accessed_and_throttled_keys or off",
                                    choice(*CONTRIBUTOR_INSIGHTS_MODES), "throttled_keys")}),
    "allowed_regions": Key("regions the permissions boundary allows (the deploy region too)",
                           string_list(_REGION, "AWS region names such as us-east-1"),
                           ("us-east-1",)),
    "reserved_concurrency": Key("reserved Lambda concurrency (null: none)",
                                number(1, integer=True, nullable=True), 20),
    "queue_max_concurrency": Key("SQS event source maximum concurrency",
                                 number(2, integer=True), 5),
    "log_retention_days": Key("CloudWatch Logs retention", retention, 30),
    "existing_trail_arn": Key("reuse this trail instead of creating one",
                              matching(_ARN, "an ARN or null", nullable=True)),
    "existing_kms_key_arn": Key("reuse this KMS key instead of creating one",
                                matching(_ARN, "an ARN or null", nullable=True)),
    "api_key_secret_arn": Key("reuse this Anthropic API key secret",
                              matching(_ARN, "an ARN or null", nullable=True),
                              provider="anthropic"),
}


def _leaf_paths(schema: Mapping[str, Key], prefix: str = "") -> list[str]:
    paths = []
    for name, key in schema.items():
        paths.append(prefix + name)
        if key.keys:
            paths += _leaf_paths(key.keys, f"{prefix}{name}.")
    return paths


def _unknown(problems: Problems, where: str, name: str, known: list[str],
             extra: list[str] = ()) -> None:
    close = difflib.get_close_matches(name, list(known) + list(extra), n=1, cutoff=0.6)
    if close and close[0] in known:
        close[0] = where + close[0]
    hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(known)})"
    if "." in name and close and "." in close[0]:
        hint += " Nested keys are set as JSON: -c section='{\"key\": value}'"
    problems.say(f"context key {where + name!r} is not a setting{hint}")


def check_keys(problems: Problems, schema: Mapping[str, Key], values: Mapping[str, Any],
               where: str = "") -> dict[str, Any]:
    """Reports keys not in `schema` (with the closest valid name); returns the known ones,
    objects given as JSON strings parsed."""
    known: dict[str, Any] = {}
    for name, value in values.items():
        if not where and cdk_owned(name):
            continue
        if name not in schema:
            _unknown(problems, where, name, list(schema),
                     _leaf_paths(SCHEMA) if not where and "." in name else ())
            continue
        key = schema[name]
        if key.keys is not None or key.each is not None:
            value = _json_or(value)
            if not isinstance(value, dict) and key.read is not None:
                known[name] = value  # the section's other form (tenants: a list), read later
                continue
            if not isinstance(value, dict):
                problems.bad(where + name, f"an object ({key.doc})", value)
                continue
            if key.keys is not None:
                value = check_keys(problems, key.keys, value, f"{where}{name}.")
            else:
                entries = {}
                for entry, spec in value.items():
                    if not isinstance(spec, dict):
                        problems.bad(f"{where}{name}.{entry}", "an object", spec)
                        continue
                    entries[entry] = check_keys(problems, key.each, spec,
                                                f"{where}{name}.{entry}.")
                value = entries
        known[name] = value
    return known


def read_section(problems: Problems, schema: Mapping[str, Key], values: Mapping[str, Any],
                 where: str = "", *, provider: str | None = None) -> dict[str, Any]:
    """Every leaf of `schema` read from `values` (defaults filled in; None when bad or absent
    without a default). Keys of another provider are reported when given."""
    out: dict[str, Any] = {}
    for name, key in schema.items():
        if key.keys is not None or key.each is not None:
            continue  # sections are read by their owner
        present = name in values
        if present and provider and key.provider and key.provider != provider:
            problems.say(f"context key {where + name!r} applies to provider={key.provider} "
                         f"only (this is provider={provider}): remove it")
            out[name] = None
            continue
        if not present:
            if key.default is REQUIRED and (not key.provider or key.provider == provider):
                problems.bad(where + name, key.doc, None)
            out[name] = None if key.default is REQUIRED else key.default
            continue
        out[name] = key.read(problems, where + name, values[name])
    return out


# -- typed settings --------------------------------------------------------------------------

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

    success_rate_percent: float = 99.0
    fast_burn_rate: float = 14.4
    fast_window_minutes: int = 60
    fast_short_window_minutes: int = 5
    slow_burn_rate: float = 6.0
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
    alarm_percent: float = 80.0

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
    local_throttle_rate_percent: float = 20.0  # LocalThrottles / (Requests + LocalThrottles), 5 min
    quota_used_percent: float = 80.0  # QuotaUsedPercent Maximum >= this
    latency_p99_ms: float = 60_000.0  # Latency p99
    failure_rate_percent: float = 5.0  # Failed / (Succeeded + Failed)
    cost_per_hour_usd: float = 10.0  # CostUSD Sum over 1 hour
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
        if self.email is not None and not _EMAIL.match(self.email):
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
    """The batch lane; `enabled` is False with provider=bedrock."""

    enabled: bool = False
    requests_per_minute: float = 50.0
    max_queued_requests: int = 100_000
    max_items_per_batch: int = 1_000
    max_wait_s: int = 300
    max_retries: int = 3
    cancel_after_hours: float | None = None
    schedule_minutes: int = 1
    oldest_queued_alarm_hours: float = 6.0


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


def read_prices(problems: Problems, where: str, raw: Any) -> Prices | None:
    if not isinstance(raw, dict):
        return None  # reported as missing or not an object already
    prices = read_section(problems, PRICE_KEYS, raw, f"{where}.")
    if prices["input"] is None or prices["output"] is None:
        return None
    return Prices.of(prices["input"], prices["output"], prices["cache_write"],
                     prices["cache_read"])


def _anthropic_model(problems: Problems, model_id: str, spec: dict, tier: str | None,
                     tier_bad: bool = False) -> ModelSettings | None:
    where = f"models.{model_id}"
    values = read_section(problems, MODEL_KEYS, spec, f"{where}.", provider="anthropic")
    family = values["family"] or family_of(model_id)
    preset = ANTHROPIC_TIERS[tier].get(family) if tier and family else None
    per_minute, missing = {}, []
    for index, name in enumerate(("rpm", "itpm", "otpm")):
        per_minute[name] = values[name] if name in spec else (preset[index] if preset else None)
        if per_minute[name] is None and name in spec and _empty(spec[name]):
            problems.bad(f"{where}.{name}", "a per-minute limit", spec[name])
        elif per_minute[name] is None and name not in spec:
            missing.append(name)
    if missing and not tier_bad:  # a bad tier is reported once, as itself
        why = (f"its family {family!r} has no preset without a tier" if family else
               f"its family is unknown: set 'family' ({', '.join(FAMILIES)}) or")
        problems.bad(f"{where}.{missing[0]}" if len(missing) == 1 else where,
                     f"per-minute limits {', '.join(missing)} ({why} the limits)", None)
    prices = read_prices(problems, f"{where}.prices", spec.get("prices"))
    if None in per_minute.values() or prices is None or any(
            values[k] is None for k in ("counts_cache_reads", "context_window",
                                        "max_output_tokens", "burst_fraction")):
        return None
    return ModelSettings(
        model_id=model_id, bucket_id=f"anthropic#{family or model_id}",
        limits=Limits(per_minute["rpm"], per_minute["itpm"], per_minute["otpm"],
                      counts_cache_reads=values["counts_cache_reads"],
                      burst_fraction=values["burst_fraction"]),
        prices=prices, context_window=values["context_window"],
        max_output_tokens=values["max_output_tokens"])


def _bedrock_model(problems: Problems, model_id: str, spec: dict,
                   profile_regions: Mapping[str, tuple[str, ...]], region: str | None
                   ) -> ModelSettings | None:
    where = f"models.{model_id}"
    values = read_section(problems, MODEL_KEYS, spec, f"{where}.", provider="bedrock")
    prefix = model_id.partition(".")[0] if "." in model_id else None
    routes = values["routes_to_regions"] or (profile_regions or {}).get(prefix)
    if not routes and "routes_to_regions" not in spec:
        known = ", ".join(f"'{p}.'" for p in profile_regions or {})
        problems.bad(f"{where}.routes_to_regions",
                     f"the regions this inference profile routes to: its prefix "
                     f"{prefix + '.' if prefix else '(none)'} is not in profile_regions "
                     f"({known}); use a profile id such as us.anthropic.<model>, or set "
                     "routes_to_regions", None)
    if prefix and region and prefix in (profile_regions or {}) and prefix != "global" \
            and region not in (profile_regions[prefix] or ()):
        serving = [p for p, regions in profile_regions.items() if region in (regions or ())]
        problems.say(
            f"context key {'models.' + model_id!r}: the '{prefix}.' inference profile serves "
            f"{', '.join(profile_regions[prefix] or ())}, not the deploy region {region}: "
            + (f"use the '{serving[0]}.' profile ({serving[0]}.{model_id.partition('.')[2]})"
               if serving else "deploy in one of its regions")
            + f", or add {region} to profile_regions.{prefix}")
    prices = read_prices(problems, f"{where}.prices", spec.get("prices"))
    if not routes or prices is None or any(
            values[k] is None for k in ("tpm", "output_burndown", "context_window",
                                        "max_output_tokens", "burst_fraction")):
        return None
    return ModelSettings(
        model_id=model_id, bucket_id=values["bucket"] or f"bedrock#{model_id}",
        limits=Limits(values["rpm"], tpm=values["tpm"],
                      output_burndown=values["output_burndown"],
                      burst_fraction=values["burst_fraction"]),
        prices=prices, context_window=values["context_window"],
        max_output_tokens=values["max_output_tokens"], routes_to_regions=tuple(routes))


def read_budget(problems: Problems, where: str, raw: Any, *, models: Iterable[str],
                degrade_model: str | None) -> Budget | None:
    """One budget object (BUDGET_KEYS) at `where`; None (problems reported) when bad, or when
    it sets no limit."""
    before = len(problems.items)
    raw = check_keys(problems, BUDGET_KEYS, _json_or(raw) if raw is not None else {},
                     f"{where}.") if isinstance(_json_or(raw), dict) else raw
    if not isinstance(raw, dict):
        problems.bad(where, "an object of " + ", ".join(BUDGET_KEYS), raw)
        return None
    values = read_section(problems, BUDGET_KEYS, raw, f"{where}.")
    if len(problems.items) > before:
        return None
    degrade_to = values["degrade_to"] or (degrade_model if values["action"] == "degrade"
                                          else None)
    if values["action"] == "degrade" and degrade_to not in models:
        problems.bad(f"{where}.degrade_to", "one of the models (" + ", ".join(models)
                     + ") with action=degrade", degrade_to)
        return None
    try:
        budget = Budget(values["usd_per_day"], values["usd_per_month"],
                        values["tokens_per_day"], values["action"], degrade_to)
    except BudgetError as err:
        problems.say(f"context key {where!r}: {err}")
        return None
    return None if budget.unlimited else budget


def read_limits(problems: Problems, raw: Mapping[str, Any], *, tenants: Iterable[str],
                models: Iterable[str], degrade_model: str | None,
                tokens_per_day: Mapping[str, int | None], version: int = 0) -> LimitSet:
    """Budgets from `budget` and `tenants.<name>.budget` of `raw` (cdk.json's shape;
    `cli.limits` edits the same shape), with the models' `tokens_per_day` (read already): a
    tenant that is not configured, a bad value or a key that is not a budget key is a problem
    naming the key."""
    tenants, models = list(tenants), list(models)
    deployment = None
    if raw.get("budget") is not None:
        deployment = read_budget(problems, "budget", raw["budget"], models=models,
                                 degrade_model=degrade_model)
    budgets = {}
    per_tenant = _json_or(raw.get("tenants") or {})
    for tenant, entry in (per_tenant.items() if isinstance(per_tenant, dict) else ()):
        entry = _json_or(entry)
        if not isinstance(entry, dict) or entry.get("budget") is None:
            continue
        if tenant not in tenants:
            problems.bad(f"tenants.{tenant}", "a configured tenant (" + ", ".join(tenants)
                         + ")", tenant)
            continue
        budget = read_budget(problems, f"tenants.{tenant}.budget", entry["budget"],
                             models=models, degrade_model=degrade_model)
        if budget is not None:
            budgets[tenant] = budget
    tokens = {model: n for model, n in tokens_per_day.items() if n is not None}
    return LimitSet(budgets, deployment, tokens, version)


def load_limits(raw: Mapping[str, Any], *, tenants: Iterable[str], models: Iterable[str],
                degrade_model: str | None, version: int = 0,
                buckets: Iterable[Limits] = ()) -> LimitSet:
    """`read_limits` for `cli.limits` (`budget`, `tenants.<name>.budget`, the tenants' shares
    `tenants.<name>.weight/rpm/itpm/otpm/tpm`, `models.<id>.tokens_per_day`): raises
    SettingsError listing every problem. `models`: the deployed model ids; `buckets`: their
    buckets' limits, which every tenant cap must be a dimension of."""
    problems = Problems()
    known = list(models)
    raw_models = raw.get("models") or {}
    for key in sorted(set(raw) - {"budget", "tenants", "models"}):
        _unknown(problems, "", key, ["budget", "tenants", "models"])
    shares = _live_shares(problems, raw.get("tenants") or {}, list(tenants), buckets)
    tokens: dict[str, int | None] = {}
    for model, spec in raw_models.items():
        if model not in known:
            problems.bad(f"models.{model}", "a deployed model (" + ", ".join(known) + ")", model)
            continue
        tokens[model] = number(1, integer=True, nullable=True)(
            problems, f"models.{model}.tokens_per_day", (spec or {}).get("tokens_per_day"))
    limits = read_limits(problems, raw, tenants=tenants, models=known,
                         degrade_model=degrade_model, tokens_per_day=tokens, version=version)
    if problems.items:
        raise SettingsError(problems.items)
    return dataclasses.replace(limits, shares=shares)


#: what `cli.limits` may change of a tenant: its budget and its share (`TENANT_KEYS`)
LIVE_TENANT_KEYS = ("budget",) + SHARE_KEYS


def _live_shares(problems: Problems, raw: Mapping[str, Any], tenants: list[str],
                 buckets: Iterable[Limits]) -> dict[str, TenantShare] | None:
    """The tenants' shares of a limits document (TENANT_KEYS' readers, as cdk.json), None when
    no tenant sets one; caps every bucket must enforce (`guard.Limits` checks)."""
    shares: dict[str, TenantShare] = {}
    for tenant, entry in raw.items():
        entry = entry or {}
        for key in sorted(set(entry) - set(LIVE_TENANT_KEYS)):
            problems.say(f"context key 'tenants.{tenant}.{key}' is not a limit: cli.limits "
                         f"changes tenants.<name>.{{{', '.join(LIVE_TENANT_KEYS)}}} only (the "
                         "rest needs a deploy)")
        given = {k: entry[k] for k in SHARE_KEYS if k in entry}
        if not given or tenant not in tenants:
            continue  # an unknown tenant is reported by read_limits
        before = len(problems.items)
        values = read_section(problems, {k: TENANT_KEYS[k] for k in given}, given,
                              f"tenants.{tenant}.")
        if len(problems.items) == before:
            shares[tenant] = TenantShare(**{k: v for k, v in values.items() if v is not None})
    for tenant in sorted(set(raw) - set(tenants)):
        if any(k in (raw[tenant] or {}) for k in SHARE_KEYS):
            problems.bad(f"tenants.{tenant}", "a configured tenant (" + ", ".join(tenants)
                         + ")", tenant)
    if not shares:
        return None
    for limits in buckets:
        try:
            dataclasses.replace(limits, tenants=shares)
        except LimitsError as err:
            problems.say(f"context key 'tenants': {err}")
            break
    return shares


_BIND_EXAMPLE = ('{"acme": {"principals": ["arn:aws:iam::111122223333:role/AcmeApp"]}}')


def _check_tenant_caps(problems: Problems, specs, models: Mapping[str, ModelSettings]) -> None:
    """A tenant's caps must be dimensions every model's bucket enforces (guard.Limits)."""
    if not any(spec.shares for spec in specs):
        return
    shares = {spec.name: spec.share for spec in specs}
    for model in models.values():
        limits = model.limits
        try:
            Limits(limits.rpm, limits.itpm, limits.otpm, tpm=limits.tpm,
                   output_burndown=limits.output_burndown, tenants=shares)
        except LimitsError as err:
            problems.say(f"context key 'tenants': {err} (model {model.model_id})")


def _tenants(problems: Problems, raw: Any, allow_unbound: bool | None
             ) -> tuple[TenantSpec, ...]:
    """The `tenants` context: name -> {principals, ...} (`TENANT_KEYS`), or a plain list of
    names (unbound tenants), which needs `allow_unbound_tenants`."""
    raw = _json_or(raw)
    fix = (f"bind each tenant to its callers' IAM roles, e.g. {_BIND_EXAMPLE}, or set "
           "allow_unbound_tenants: true (any caller may then act for any tenant: local demo "
           "and tests only)")
    if raw is None:
        problems.bad("tenants", f"tenant name -> settings: {fix}", None)
        return ()
    if not isinstance(raw, dict):
        names = string_list(TENANT_PATTERN, "names of 1-63 characters [a-z0-9-]")(
            problems, "tenants", raw)
        if names is None:
            return ()
        duplicates = sorted({t for t in names if names.count(t) > 1})
        if duplicates:
            problems.bad("tenants", "each tenant once", duplicates)
        if not allow_unbound:
            problems.say(f"context key 'tenants': a plain list leaves every tenant bound to no "
                         f"caller, so any caller could act for any tenant: {fix}")
        return tuple(TenantSpec(name=name) for name in dict.fromkeys(names))
    if not raw:
        problems.bad("tenants", f"at least one tenant: {fix}", raw)
    specs = []
    for name, entry in raw.items():
        where = f"tenants.{name}"
        if not isinstance(name, str) or not TENANT_PATTERN.match(name):
            problems.bad(where, "a tenant name of 1-63 characters [a-z0-9-]", name)
            continue
        before = len(problems.items)
        values = read_section(problems, TENANT_KEYS, entry, f"{where}.")
        if len(problems.items) > before:
            continue
        if not values["principals"] and not allow_unbound:
            problems.say(f"context key '{where}.principals': tenant {name!r} is bound to no "
                         f"IAM role, so any caller could act for it: {fix}")
        try:
            specs.append(TenantSpec(name=name, **values))
        except FieldError as err:
            problems.say(f"context key '{where}.{err.field}': {err.problem}")
    return tuple(specs)


def _read_alarms(problems: Problems, values: Mapping[str, Any]) -> AlarmSettings | None:
    """The `alarms` section with its nested anomaly, slo and forecast sections."""
    keys = SCHEMA["alarms"].keys
    flat = read_section(problems, keys, values, "alarms.")
    sections = {}
    for name in ("slo", "forecast"):
        sections[name] = read_section(problems, keys[name].keys, values.get(name) or {},
                                      f"alarms.{name}.")
    bands: dict[str, dict] = {"anomaly": {}, "tenant_anomaly": {}}
    for section, read in bands.items():
        for metric, key in keys[section].keys.items():
            read[metric] = read_section(problems, key.keys,
                                        (values.get(section) or {}).get(metric) or {},
                                        f"alarms.{section}.{metric}.")
    if problems.items:  # a bad value reads as None: the typed settings cannot be built
        return None
    try:
        slo, forecast = SloSettings(**sections["slo"]), ForecastSettings(**sections["forecast"])
    except ValueError as err:
        problems.say(f"context key 'alarms': {err}")
        return None
    return AlarmSettings(**flat, slo=slo, forecast=forecast, **{
        section: {m: AnomalyBand(**b) for m, b in read.items()}
        for section, read in bands.items()})


def load_settings(ctx: Mapping[str, Any], *, region: str | None = None) -> Settings:
    """Validate the app's context (and, when known, the deploy `region`); raises
    `SettingsError` listing every problem."""
    problems = Problems()
    ctx = check_keys(problems, SCHEMA, ctx)
    provider = ctx.get("provider", "anthropic")
    provider = provider if provider in PROVIDERS else None  # reported below
    top = read_section(problems, {k: v for k, v in SCHEMA.items() if k not in PROVIDER_KEYS},
                       ctx, provider=provider)
    provider = provider or "anthropic"
    defaults = ctx.get("provider_defaults", {}).get(provider, {})
    explicit = {k: ctx[k] for k in PROVIDER_KEYS if k in ctx}
    if provider == "bedrock" and "tier" in explicit:
        problems.say(f"context key 'tier' ({explicit.pop('tier')!r}) applies to the Anthropic "
                     "API only: Bedrock quotas are per account, region and model, set as "
                     "models.<profile id>.tpm/rpm (Service Quotas shows yours). Remove -c tier "
                     "with provider=bedrock")
    if provider == "bedrock" and "tier" in defaults:
        defaults = {k: v for k, v in defaults.items() if k != "tier"}
    chosen = {**defaults, **explicit}
    picked = read_section(problems, PROVIDER_KEYS, chosen, provider=provider)
    tier = picked["tier"] if provider == "anthropic" else None
    deploy_region = region or (top["allowed_regions"] or (None,))[0]

    models: dict[str, ModelSettings] = {}
    raw_models = chosen.get("models")
    if not raw_models:
        problems.bad("models", "an object of model id -> settings", raw_models)
    tier_bad = provider == "anthropic" and "tier" in chosen and tier is None
    for model_id, spec in (raw_models or {}).items():
        before = len(problems.items)
        model = (pooled_model(problems, model_id, spec, picked["profile_regions"])
                 if isinstance(spec, dict) and "pools" in spec
                 else _anthropic_model(problems, model_id, spec, tier, tier_bad)
                 if provider == "anthropic"
                 else _bedrock_model(problems, model_id, spec, picked["profile_regions"],
                                     deploy_region))
        if model is not None:
            models[model_id] = model
        elif len(problems.items) == before and not tier_bad:  # never drop one silently
            problems.bad(f"models.{model_id}", "valid model settings", spec)
    model_ids = list(raw_models or {})
    default_model = picked["default_model"] or (model_ids[0] if model_ids else None)
    where = "models" if "models" in explicit else f"provider_defaults.{provider}.models"
    for name, value in (("default_model", default_model),
                        ("degrade_model", picked["degrade_model"])):
        if value is not None and model_ids and value not in model_ids:
            problems.bad(name, f"one of the {where} keys: " + ", ".join(model_ids)
                         + (" (set it with the models, or '' to unset)"
                            if name == "degrade_model" else ""), value)
    if top["overflow_policy"] == "degrade" and picked["degrade_model"] is None:
        problems.bad("degrade_model", "a model id (required with overflow_policy=degrade)",
                     None)

    tenant_specs = _tenants(problems, ctx.get("tenants"), top["allow_unbound_tenants"])
    tenants = tuple(spec.name for spec in tenant_specs)
    _check_tenant_caps(problems, tenant_specs, models)
    if top["reserved_concurrency"] is not None and top["queue_max_concurrency"] is not None \
            and top["reserved_concurrency"] < top["queue_max_concurrency"]:
        problems.say(f"context key 'reserved_concurrency': {top['reserved_concurrency']} is "
                     f"below queue_max_concurrency={top['queue_max_concurrency']}: the queue's "
                     "pollers would be throttled by Lambda; raise reserved_concurrency or "
                     "lower queue_max_concurrency")
    regions = top["allowed_regions"]
    if region and regions and region not in regions:
        problems.bad("allowed_regions", f"the deploy region {region} among them (the boundary "
                     "denies every other region)", list(regions))

    deferral = read_section(problems, SCHEMA["deferral"].keys, ctx.get("deferral", {}),
                            "deferral.")
    alarms = _read_alarms(problems, ctx.get("alarms", {}))
    batch = read_section(problems, SCHEMA["batch"].keys, ctx.get("batch", {}), "batch.")
    preset = BATCH_TIERS.get(tier or "tier1", BATCH_TIERS["tier1"])
    if batch["max_items_per_batch"] is not None and batch["max_items_per_batch"] > 100_000:
        problems.bad("batch.max_items_per_batch", "at most 100,000 (the API's cap per batch)",
                     batch["max_items_per_batch"])
    batch_settings = BatchSettings(
        enabled=bool(batch["enabled"]) and provider == "anthropic",
        requests_per_minute=batch["requests_per_minute"] or float(preset[0]),
        max_queued_requests=batch["max_queued_requests"] or preset[1],
        **{k: batch[k] for k in ("max_items_per_batch", "max_wait_s", "max_retries",
                                 "cancel_after_hours", "schedule_minutes",
                                 "oldest_queued_alarm_hours")}) \
        if not problems.items else None
    limits = read_limits(problems, ctx, tenants=tenants, models=model_ids,
                         degrade_model=picked["degrade_model"], tokens_per_day={
                             m: read_section(problems, {"tokens_per_day": MODEL_KEYS[
                                 "tokens_per_day"]}, spec, f"models.{m}.")["tokens_per_day"]
                             for m, spec in (raw_models or {}).items()
                             if isinstance(spec, dict) and provider == "bedrock"})
    runaway = read_section(problems, RUNAWAY_KEYS, ctx.get("runaway", {}), "runaway.")
    runaway_settings = None
    if not problems.items and runaway["enabled"]:
        try:
            runaway_settings = RunawaySettings(**{k: v for k, v in runaway.items()
                                                  if k not in ("enabled", "schedule_minutes")})
        except RunawayError as err:
            problems.say(f"context key {str(err).split(' must')[0]!r}: {err}")
    if problems.items:
        raise SettingsError(problems.items)
    return Settings(
        runaway=runaway_settings, runaway_schedule_minutes=runaway["schedule_minutes"],
        stage=top["stage"], provider=provider, tier=tier, models=models,
        default_model=default_model, overflow_policy=top["overflow_policy"],
        degrade_model=picked["degrade_model"], scheduling=top["scheduling"],
        mcp=top["mcp"] or McpSettings(), max_deferrals=deferral["max_deferrals"],
        max_deferral_age_s=deferral["max_age_s"], tenants=tenants,
        alarms=alarms, allowed_regions=regions,
        reserved_concurrency=top["reserved_concurrency"],
        queue_max_concurrency=top["queue_max_concurrency"],
        log_retention_days=top["log_retention_days"],
        existing_trail_arn=top["existing_trail_arn"],
        existing_kms_key_arn=top["existing_kms_key_arn"],
        api_key_secret_arn=top["api_key_secret_arn"] if provider == "anthropic" else None,
        batch=batch_settings, tenant_specs=tenant_specs,
        trusted_invokers=top["trusted_invokers"], trusted_producers=top["trusted_producers"],
        limits=limits)


def report_settings_error(error: SettingsError) -> None:
    """Print every problem as `bulwark: bad configuration: ...` on stderr."""
    import sys

    for problem in error.problems:
        print(f"bulwark: bad configuration: {problem}", file=sys.stderr)


def _default_text(key: Key) -> str:
    if key.default is REQUIRED:
        return "required"
    if key.default is None:
        return "-"
    if isinstance(key.default, tuple):
        return ", ".join(map(str, key.default)) or "none"
    return str(key.default).lower() if isinstance(key.default, bool) else str(key.default)


def _linked(doc: str) -> str:
    """`doc` with each docs page it names (`docs/tenants.md`) as a link from docs/."""
    return re.sub(r"\bdocs/([\w/-]+\.md)\b", r"[\1](\1)", doc)


def reference_table() -> str:
    """docs/configuration.md's reference table, rendered from `SCHEMA` (`python -m
    stacks.settings`); a docs page named in a meaning becomes a link to it."""
    rows = ["| context key | meaning | default |", "|---|---|---|"]

    def walk(schema: Mapping[str, Key], prefix: str) -> None:
        for name, key in schema.items():
            path = prefix + name
            only = f" ({key.provider} only)" if key.provider else ""
            if name == "provider_defaults":
                rows.append(f"| `{path}` | {key.doc}: a top-level key of the same name "
                            "overrides it | cdk.json |")
                continue
            default = "provider_defaults" if name in PROVIDER_KEYS and not prefix \
                else _default_text(key)
            rows.append(f"| `{path}` | {_linked(key.doc)}{only} | {default} |")
            if key.keys:
                walk(key.keys, path + ".")
            if key.each:
                walk(key.each, path + ".<id>.")

    walk(SCHEMA, "")
    return "\n".join(rows)


if __name__ == "__main__":
    print(reference_table())
