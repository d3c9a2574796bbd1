"""The schema of the CDK app's settings: `SCHEMA`, every context key and nested key with its
meaning (docs/configuration.md's reference is rendered from it), how its value is read
(`stacks.settings_readers`) and its default; and the two walks over it: `check_keys` (a key
not in it is an error naming the closest valid one) and `read_section` (a section's leaves,
defaults filled in).
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any, Mapping

from agent.contract import (ARN_PATTERN, CACHE_READ_PRICE_FACTOR, CACHE_WRITE_PRICE_FACTOR,
                            DEFAULT_CONTEXT_WINDOW, DEFAULT_MAX_OUTPUT_TOKENS, LEARNABLE_LIMITS,
                            OVERFLOW_POLICIES,
                            PROVIDERS, SCHEDULING_MODES, TENANT_PATTERN)
from agent.contract import BATCH_MAX_REQUESTS
from agent.config import AgentConfig
from agent.mcp.config import McpConfigError, load_mcp_settings
from guard.budget import ACTIONS
from guard.runaway import RunawaySettings
from guard.tiers import ANTHROPIC_TIERS, FAMILIES
from guard.values import default_of

from .settings_readers import (EMAIL_PATTERN, REGION_PATTERN, Problems, Reader,
                               boolean, choice, fraction, matching, number,
                               parse_json_text, percent, positive, region_map, retention,
                               role_arns, string_list, text)
from .settings_types import (ANOMALY_METRICS, BAND_DIRECTIONS, CONTRIBUTOR_INSIGHTS_MODES,
                             TENANT_ANOMALY_METRICS, AlarmSettings, AnomalyBand, BatchSettings,
                             ForecastSettings, Settings, SloSettings)

STAGES = ("dev", "prod")

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


def _mcp(problems: Problems, key: str, value: Any):
    try:
        return load_mcp_settings(parse_json_text(value))
    except McpConfigError as err:
        return problems.say(f"context key {err}")


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


#: the batch keys whose null default means "the tier's preset" (`load_settings` fills it in)
PRESET_KEYS = ("requests_per_minute", "max_queued_requests")


def defaults_from(cls: type, keys: dict[str, Key], *, keep: tuple[str, ...] = ()
                  ) -> dict[str, Key]:
    """`keys` with each leaf's default taken from the field of the same name of the dataclass
    `cls` (the typed settings the section is read into), so a default is written once, on the
    dataclass; a leaf that writes one too is an error. `keep`: keys with a default of their own
    (None: the tier preset)."""
    fields = {spec.name for spec in dataclasses.fields(cls)}
    out = {}
    for name, key in keys.items():
        if name in fields and name not in keep and key.keys is None and key.each is None:
            if key.default is not None:
                raise TypeError(f"schema key {name!r} writes a default: {cls.__name__}'s is "
                                "the one default")
            key = dataclasses.replace(key, default=default_of(cls, name))
        out[name] = key
    return out


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
                             string_list(REGION_PATTERN, "AWS region names such as us-east-1"),
                             provider="bedrock"),
    "bucket": Key("rate-limit bucket id (bedrock#<model id>)", text(), provider="bedrock"),
    "context_window": Key("tokens of context the model accepts", _TOKENS,
                          DEFAULT_CONTEXT_WINDOW),
    "burst_fraction": Key("share of a minute's capacity the bucket hands out at once, in (0, 1] "
                          "(GCRA burst tolerance; the sustained rate is the limit)",
                          fraction, 1.0),
    "max_output_tokens": Key("largest max_tokens the model accepts", _TOKENS,
                             DEFAULT_MAX_OUTPUT_TOKENS),
    "tokens_per_day": Key("Bedrock's 'Model invocation max tokens per day' (input + output; "
                          "counted per UTC day; null: not enforced)",
                          number(1, integer=True, nullable=True), provider="bedrock"),
    "pools": Key("capacity pools in preference order, each a provider route with its own "
                 "limits (stacks/pool_settings.py reads them)", lambda problems, key, v: v),
    "learn_up_to": Key("per-minute ceilings the model's bucket may rise to when the API's "
                       "anthropic-ratelimit-*-limit headers show a higher limit (a tier "
                       "upgrade; docs/guard/bucket.md); each at least the limit in force; "
                       "unset: the configured limits stay", keys={
                           name: Key(f"ceiling of {name}, per minute", _LIMIT)
                           for name in LEARNABLE_LIMITS}, provider="anthropic"),
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
#: Lambda); `read_tenants` passes every key on.
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
RUNAWAY_KEYS: dict[str, Key] = defaults_from(RunawaySettings, {
    "enabled": Key("deploy the scheduled breaker", boolean, True),
    "k": Key("trip when the spend rate exceeds k x the baseline (> 1)", number(1.01)),
    "min_baseline_usd_per_hour": Key("the least baseline, USD per hour (little history does "
                                     "not trip on pennies)", number(0.001)),
    "window_minutes": Key("minutes the current spend rate is measured over",
                          number(1, integer=True)),
    "history_days": Key("days of the same hour the baseline is the median of",
                        number(1, integer=True)),
    "clear_below": Key("release a throttle when the rate falls under this fraction of the "
                       "baseline, in (0, 1)", number(0.01)),
    "schedule_minutes": Key("minutes between evaluations", number(1, integer=True),
                            default_of(Settings, "runaway_schedule_minutes")),
})

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

def _band_keys(metrics: Mapping[str, tuple[str, float]]) -> dict[str, Key]:
    """The keys of a learned-bands section: per metric its band width and direction."""
    return {name: Key(doc, keys={
        "band": Key("band width, standard deviations", number(0.5), band),
        "direction": Key("above, below or outside the band alarms",
                         choice(*BAND_DIRECTIONS), default_of(AnomalyBand, "direction"))})
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
    # defaults: the Lambda's (agent.config.AgentConfig); the stack passes the values read here
    "deferral": Key("dead-letter rules for deferred requests", keys={
        "max_deferrals": Key("deferrals before the DLQ", number(0, integer=True),
                             default_of(AgentConfig, "max_deferrals")),
        "max_age_s": Key("age (s) before the DLQ", number(60, integer=True),
                         int(default_of(AgentConfig, "max_deferral_age_s")))}),
    "batch": Key("the batch lane (Anthropic Message Batches, half price; docs/agent/batch.md)",
                 keys=defaults_from(BatchSettings, {
        "enabled": Key("deploy the batch lane (Anthropic only; with Bedrock it is off)",
                       boolean),
        "requests_per_minute": Key("batch endpoints' requests per minute, shared by every "
                                   "model (null: the tier preset)", number(1, nullable=True)),
        "max_queued_requests": Key("most requests waiting in the batch processing queue "
                                   "(null: the tier preset)",
                                   number(1, integer=True, nullable=True)),
        "max_items_per_batch": Key(f"requests per batch (the API allows {BATCH_MAX_REQUESTS:,})",
                                   number(1, integer=True)),
        "max_wait_s": Key("seconds the oldest queued request waits before a partial batch",
                          number(0, integer=True)),
        "max_retries": Key("times an expired, canceled or transiently errored item is "
                           "queued again before the DLQ", number(0, integer=True)),
        "cancel_after_hours": Key("cancel a batch still processing after this many hours "
                                  "(null: the API expires it at 24 h)",
                                  number(1, nullable=True)),
        "schedule_minutes": Key("minutes between collector runs and between poller runs",
                                number(1, integer=True)),
        "oldest_queued_alarm_hours": Key("alarm when the oldest queued request is older",
                                         positive)}, keep=PRESET_KEYS)),
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
    "alarms": Key("alarm thresholds and the e-mail they page", keys=defaults_from(AlarmSettings, {
        "email": Key("e-mail subscribed to the alarm topic (null: none)",
                     matching(EMAIL_PATTERN, "an e-mail address or null", nullable=True)),
        "local_throttle_rate_percent": Key("bucket refusals per acquire", percent),
        "quota_used_percent": Key("fullest bucket dimension at acquire", percent),
        "latency_p99_ms": Key("p99 model latency", positive),
        "failure_rate_percent": Key("failed requests", percent),
        "cost_per_hour_usd": Key("Claude spend per hour", positive),
        "anomaly": Key("learned bands per model (docs/monitoring.md): the band "
                       "width in standard deviations and the direction that alarms, per metric",
                       keys=_band_keys(ANOMALY_METRICS)),
        "tenant_anomaly": Key("learned bands per configured tenant (docs/monitoring.md): "
                              "band width and direction per metric",
                              keys=_band_keys(TENANT_ANOMALY_METRICS)),
        "slo": Key("success-rate SLO per model and lane, with burn-rate alarms",
                   keys=defaults_from(SloSettings, {
            "success_rate_percent": Key("target share of requests that succeed", percent),
            "fast_burn_rate": Key("burn rate that pages (error budget used x faster than "
                                  "allowed)", number(1)),
            "fast_window_minutes": Key("long window of the paging alarm",
                                       number(5, integer=True)),
            "fast_short_window_minutes": Key("short window of the paging alarm (the burn must "
                                             "still be on)", number(1, integer=True)),
            "slow_burn_rate": Key("burn rate that warns", number(1)),
            "slow_window_minutes": Key("long window of the warning alarm",
                                       number(5, integer=True)),
            "slow_short_window_minutes": Key("short window of the warning alarm",
                                             number(1, integer=True)),
            "min_requests": Key("requests a window needs before its burn rate counts",
                                number(1, integer=True))})),
        "forecast": Key("quota forecast per model: the per-minute rates projected ahead",
                        keys=defaults_from(ForecastSettings, {
            "horizon_minutes": Key("how far ahead the projection looks",
                                   number(5, integer=True)),
            "period_minutes": Key("period of the rates the slope is taken from",
                                  number(1, integer=True)),
            "alarm_percent": Key("alarm when the projected use of the fullest limit reaches "
                                 "this", percent)})),
        "contributor_insights": Key("DynamoDB Contributor Insights on the bucket table: "
                                    "throttled_keys, accessed_and_throttled_keys or off",
                                    choice(*CONTRIBUTOR_INSIGHTS_MODES))})),
    "allowed_regions": Key("regions the permissions boundary allows (the deploy region too)",
                           string_list(REGION_PATTERN, "AWS region names such as us-east-1"),
                           ("us-east-1",)),
    "reserved_concurrency": Key("reserved Lambda concurrency (null: none)",
                                number(1, integer=True, nullable=True), 20),
    "queue_max_concurrency": Key("SQS event source maximum concurrency",
                                 number(2, integer=True), 5),
    "log_retention_days": Key("CloudWatch Logs retention", retention, 30),
    "existing_trail_arn": Key("reuse this trail instead of creating one",
                              matching(ARN_PATTERN, "an ARN or null", nullable=True)),
    "existing_kms_key_arn": Key("reuse this KMS key instead of creating one",
                                matching(ARN_PATTERN, "an ARN or null", nullable=True)),
    "api_key_secret_arn": Key("reuse this Anthropic API key secret",
                              matching(ARN_PATTERN, "an ARN or null", nullable=True),
                              provider="anthropic"),
}


def _leaf_paths(schema: Mapping[str, Key], prefix: str = "") -> list[str]:
    paths = []
    for name, key in schema.items():
        paths.append(prefix + name)
        if key.keys:
            paths += _leaf_paths(key.keys, f"{prefix}{name}.")
    return paths


def report_unknown_key(problems: Problems, where: str, name: str, known: list[str],
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
            report_unknown_key(problems, where, name, list(schema),
                     _leaf_paths(SCHEMA) if not where and "." in name else ())
            continue
        key = schema[name]
        if key.keys is not None or key.each is not None:
            value = parse_json_text(value)
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
        present = name in values
        if present and provider and key.provider and key.provider != provider:
            problems.say(f"context key {where + name!r} applies to provider={key.provider} "
                         f"only (this is provider={provider}): remove it")
            out[name] = None
            continue
        if key.keys is not None or key.each is not None:
            continue  # sections are read by their owner
        if not present:
            if key.default is REQUIRED and (not key.provider or key.provider == provider):
                problems.bad(where + name, key.doc, None)
            out[name] = None if key.default is REQUIRED else key.default
            continue
        out[name] = key.read(problems, where + name, values[name])
    return out


