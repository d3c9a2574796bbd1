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

from typing import Any, Mapping

#: The rules the Lambda checks too (providers, overflow policies, tenants, scheduling modes,
#: model specs and their defaults) come from the deploy-runtime contract, `agent.contract`.
#: The settings are read in parts, each a module of its own: the value readers
#: (`settings_readers`), the schema and its walks (`settings_schema`), the typed settings
#: (`settings_types`), the models (`settings_models`, and `pool_settings` for pools), the
#: tenants and their limits (`settings_tenants`) and the reference table (`settings_render`);
#: this module loads them together and keeps exporting every name it always has.
from agent.contract import ARN_PATTERN, BATCH_MAX_REQUESTS, PROVIDERS
from agent.mcp.config import McpSettings
from guard.runaway import RunawayError, RunawaySettings
from guard.tiers import BATCH_TIERS

from .pool_settings import pool_profile_regions, pooled_model
from .settings_models import (check_learned_buckets, read_anthropic_model, read_bedrock_model,
                              read_prices)
from .settings_readers import (EMAIL_PATTERN, REGION_PATTERN, RETENTION_DAYS,
                               Problems, Reader, SettingsError, boolean, choice, fraction,
                               is_unset, matching, number, parse_json_text, percent, positive,
                               region_map, retention, role_arns, string_list, text)
from .settings_render import reference_table
from .settings_schema import (BUDGET_KEYS, CDK_LOOKUP_PROVIDERS, CDK_OWNED_KEYS, MODEL_KEYS,
                              PRICE_KEYS, PROVIDER_KEYS, REQUIRED, RUNAWAY_KEYS, SCHEMA, STAGES,
                              TENANT_KEYS, Key, cdk_owned, check_keys, read_section,
                              report_unknown_key)
from .settings_tenants import (LIVE_TENANT_KEYS, check_tenant_caps, load_limits, read_budget,
                               read_limits, read_tenants)
from .settings_types import (ANOMALY_METRICS, BAND_DIRECTIONS, CONTRIBUTOR_INSIGHTS_MODES,
                             TENANT_ANOMALY_METRICS, AlarmSettings, AnomalyBand, BatchSettings,
                             ForecastSettings, ModelSettings, Settings, SloSettings)

__all__ = [
    "ANOMALY_METRICS", "ARN_PATTERN", "BAND_DIRECTIONS", "BUDGET_KEYS", "CDK_LOOKUP_PROVIDERS",
    "CDK_OWNED_KEYS", "CONTRIBUTOR_INSIGHTS_MODES", "EMAIL_PATTERN", "LIVE_TENANT_KEYS",
    "MODEL_KEYS", "PRICE_KEYS", "PROVIDER_KEYS", "REGION_PATTERN", "REQUIRED",
    "RETENTION_DAYS", "RUNAWAY_KEYS", "SCHEMA", "STAGES", "TENANT_ANOMALY_METRICS",
    "TENANT_KEYS", "AlarmSettings", "AnomalyBand", "BatchSettings", "ForecastSettings", "Key",
    "ModelSettings", "Problems", "Reader", "Settings", "SettingsError", "SloSettings",
    "boolean", "cdk_owned", "check_keys", "check_tenant_caps", "choice", "fraction",
    "is_unset", "load_limits", "load_settings", "matching", "number", "parse_json_text",
    "percent", "positive", "read_anthropic_model", "read_bedrock_model", "read_budget",
    "read_limits", "read_prices", "read_section", "read_tenants", "reference_table",
    "region_map", "report_settings_error", "report_unknown_key", "retention", "role_arns",
    "string_list", "text"]


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
        model = (pooled_model(problems, model_id, spec,
                              pool_profile_regions(problems, ctx, picked["profile_regions"]))
                 if isinstance(spec, dict) and "pools" in spec
                 else read_anthropic_model(problems, model_id, spec, tier, tier_bad)
                 if provider == "anthropic"
                 else read_bedrock_model(problems, model_id, spec, picked["profile_regions"],
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

    tenant_specs = read_tenants(problems, ctx.get("tenants"), top["allow_unbound_tenants"])
    tenants = tuple(spec.name for spec in tenant_specs)
    check_tenant_caps(problems, tenant_specs, models)
    check_learned_buckets(problems, models)
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
    if batch["max_items_per_batch"] is not None \
            and batch["max_items_per_batch"] > BATCH_MAX_REQUESTS:
        problems.bad("batch.max_items_per_batch",
                     f"at most {BATCH_MAX_REQUESTS:,} (the API's cap per batch)",
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



if __name__ == "__main__":
    print(reference_table())
