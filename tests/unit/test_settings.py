"""cdk.json context validation: good values typed, bad ones named with the expected form."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stacks.settings import AlarmSettings, SettingsError, load_settings, reference_table

REPO = Path(__file__).resolve().parents[2]
DEFAULTS = json.loads((REPO / "cdk.json").read_text())["context"]


def settings(**overrides):
    return load_settings({**DEFAULTS, **overrides})


def test_defaults_resolve_tier_presets_per_family():
    s = settings()
    sonnet, haiku = s.models["claude-sonnet-4-6"], s.models["claude-haiku-4-5"]
    assert (sonnet.limits.rpm, sonnet.limits.itpm, sonnet.limits.otpm) == (50, 30000, 8000)
    assert (haiku.limits.rpm, haiku.limits.itpm, haiku.limits.otpm) == (50, 50000, 10000)
    assert sonnet.bucket_id == "anthropic#sonnet-4"
    assert s.tenants == ("acme", "globex") and not s.prod and s.tier == "tier1"


def test_tier_from_the_command_line_and_explicit_values_override_it():
    s = settings(tier="build", models=json.dumps({
        "claude-sonnet-4-6": {"otpm": 123456, "prices": {"input": 3, "output": 15}}}),
        default_model="claude-sonnet-4-6", degrade_model=None, overflow_policy="reject")
    model = s.models["claude-sonnet-4-6"]
    assert (model.limits.rpm, model.limits.itpm, model.limits.otpm) == (5000, 5000000, 123456)


def test_cli_strings_are_accepted_for_numbers_and_lists():
    s = settings(reserved_concurrency="7", tenants="a-team,b-team", log_retention_days="90",
                 allow_unbound_tenants="true")
    assert (s.reserved_concurrency, s.tenants, s.log_retention_days) == (7, ("a-team",
                                                                            "b-team"), 90)


def test_provider_bedrock_alone_takes_the_bedrock_defaults():
    s = settings(provider="bedrock")
    bedrock = DEFAULTS["provider_defaults"]["bedrock"]
    assert s.tier is None  # the Anthropic tier of the defaults does not apply, and is no error
    assert list(s.models) == list(bedrock["models"])
    assert (s.default_model, s.degrade_model) == (bedrock["default_model"],
                                                  bedrock["degrade_model"])
    for model in s.models.values():
        assert model.model_id.startswith("us.") and model.limits.tpm \
            and model.limits.output_burndown == 5
        assert model.routes_to_regions == tuple(bedrock["profile_regions"]["us"])
        assert model.limits.itpm is None and model.limits.otpm is None
    assert s.api_key_secret_arn is None


def test_bedrock_models_route_to_their_geography():
    s = load_settings({"provider": "bedrock", "tenants": ["acme"], "allow_unbound_tenants": True,
                       "models": {
        "eu.anthropic.claude-sonnet-4-20250514-v1:0": {
            "tpm": 200000, "prices": {"input": 3, "output": 15}}},
        "profile_regions": {"eu": ["eu-west-1", "eu-central-1"]},
        "allowed_regions": ["eu-west-1"]}, region="eu-west-1")
    model = s.models["eu.anthropic.claude-sonnet-4-20250514-v1:0"]
    assert model.routes_to_regions == ("eu-west-1", "eu-central-1")
    assert model.foundation_model_id == "anthropic.claude-sonnet-4-20250514-v1:0"
    assert model.limits.output_burndown == 5 and model.limits.itpm is None


def test_cdk_owned_context_keys_are_exempt():
    s = settings(**{"@aws-cdk/aws-lambda:recognizeLayerVersion": True,
                    "aws:cdk:enable-path-metadata": True,
                    "availability-zones:account=123456789012:region=us-east-1": ["us-east-1a"],
                    "ssm:account=123456789012:parameterName=/x:region=us-east-1": "v",
                    "acknowledged-issue-numbers": [32775]})
    assert s.stage == "dev"


ANTHROPIC_ONLY = {"claude-sonnet-4-6": {"prices": {"input": 3, "output": 15}}}
EU_PROFILE = "eu.anthropic.claude-sonnet-4-6"

#: (case, context over cdk.json's, deploy region, every problem expected, in order)
BAD_CONTEXT = [
    ("typo of a key", {"teir": "build"}, None,
     ["context key 'teir' is not a setting; did you mean 'tier'?"]),
    ("typo of tenants", {"tenant": "acme"}, None,
     ["context key 'tenant' is not a setting; did you mean 'tenants'?"]),
    ("typo inside a model", {"models": json.dumps(
        {"claude-sonnet-4-6": {"rmp": 60, "prices": {"input": 3, "output": 15}}}),
        "degrade_model": ""}, None,
     ["context key 'models.claude-sonnet-4-6.rmp' is not a setting; did you mean "
      "'models.claude-sonnet-4-6.rpm'?"]),
    ("typo inside a section", {"deferral": {"max_deferal": 3}}, None,
     ["context key 'deferral.max_deferal' is not a setting; did you mean "
      "'deferral.max_deferrals'?"]),
    ("nested key given flat", {"deferral.max_deferal": "3"}, None,
     ["context key 'deferral.max_deferal' is not a setting; did you mean "
      "'deferral.max_deferrals'? Nested keys are set as JSON"]),
    ("typo in alarms", {"alarms": {"latency_p99": 5}}, None,
     ["context key 'alarms.latency_p99' is not a setting; did you mean 'alarms.latency_p99_ms'?"]),
    ("percentage out of range", {"alarms": {"quota_used_percent": 180}}, None,
     ["context key 'alarms.quota_used_percent': expected a percentage in (0, 100], got 180"]),
    ("several problems at once", {"stage": "qa", "tier": "gold", "tenants": ["Acme Corp"],
                                  "log_retention_days": 10}, None,
     ["context key 'stage': expected one of dev, prod, got 'qa'",
      "context key 'tenants': expected names of 1-63 characters [a-z0-9-], got 'Acme Corp'",
      "context key 'log_retention_days': expected one of CloudWatch's periods",
      "context key 'tier': expected one of tier1, tier2"]),
    ("duplicate tenants", {"tenants": "acme,globex,acme", "allow_unbound_tenants": True}, None,
     ["context key 'tenants': expected each tenant once, got ['acme']"]),
    ("reservation below the queue's concurrency", {"reserved_concurrency": 4}, None,
     ["context key 'reserved_concurrency': 4 is below queue_max_concurrency=5"]),
    ("tier given with Bedrock", {"provider": "bedrock", "tier": "build"}, None,
     ["context key 'tier' ('build') applies to the Anthropic API only"]),
    ("Anthropic-only key with Bedrock", {"provider": "bedrock", "api_key_secret_arn":
                                         "arn:aws:secretsmanager:us-east-1:1:secret:k"}, None,
     ["context key 'api_key_secret_arn' applies to provider=anthropic only"]),
    ("profile prefix of another region", {
        "provider": "bedrock", "models": {EU_PROFILE: {"tpm": 1000, "prices": {
            "input": 3, "output": 15}}}, "default_model": "", "degrade_model": ""}, "us-east-1",
     [f"context key 'models.{EU_PROFILE}': the 'eu.' inference profile serves eu-central-1, "
      "eu-west-1, eu-west-3, eu-north-1, not the deploy region us-east-1: use the 'us.' "
      "profile (us.anthropic.claude-sonnet-4-6)"]),
    ("profile without known routes", {
        "provider": "bedrock", "models": {"xx.anthropic.claude-x": {"tpm": 1000, "prices": {
            "input": 3, "output": 15}}}, "default_model": "", "degrade_model": ""}, None,
     ["context key 'models.xx.anthropic.claude-x.routes_to_regions': expected the regions this "
      "inference profile routes to: its prefix xx. is not in profile_regions"]),
    ("Bedrock quota without tpm", {
        "provider": "bedrock", "models": {"us.anthropic.claude-x": {"prices": {
            "input": 3, "output": 15}}}, "default_model": "", "degrade_model": ""}, None,
     ["context key 'models.us.anthropic.claude-x.tpm': expected tokens per minute"]),
    ("Anthropic limit key under Bedrock", {
        "provider": "bedrock", "models": {"us.anthropic.claude-x": {"tpm": 5, "itpm": 5,
                                          "prices": {"input": 3, "output": 15}}},
        "default_model": "", "degrade_model": ""}, None,
     ["context key 'models.us.anthropic.claude-x.itpm' applies to provider=anthropic only"]),
    ("deploy region not allowed", {}, "eu-west-1",
     ["context key 'allowed_regions': expected the deploy region eu-west-1 among them"]),
    ("bad stage", {"stage": "qa"}, None,
     ["context key 'stage': expected one of dev, prod, got 'qa'"]),
    ("bad provider", {"provider": "openai"}, None,
     ["context key 'provider': expected one of anthropic, bedrock"]),
    ("empty models", {"models": {}}, None,
     ["context key 'models': expected an object of model id -> settings"]),
    ("models not JSON", {"models": "not json"}, None, ["context key 'models': expected an object"]),
    ("prices incomplete", {"models": {"claude-sonnet-4-6": {"prices": {"input": 3}}},
                           "degrade_model": ""}, None,
     ["context key 'models.claude-sonnet-4-6.prices.output': expected USD per million output"]),
    ("negative limit", {"models": {"claude-sonnet-4-6": {"rpm": -5, "prices": {
        "input": 3, "output": 15}}}, "degrade_model": ""}, None,
     ["context key 'models.claude-sonnet-4-6.rpm': expected a number >= 1, got -5"]),
    ("unknown family without limits", {"models": {"my-model": {"prices": {
        "input": 1, "output": 2}}}, "default_model": "", "degrade_model": ""}, None,
     ["context key 'models.my-model': expected per-minute limits rpm, itpm, otpm (its family "
      "is unknown: set 'family'"]),
    ("default model not configured", {"default_model": "gpt-5"}, None,
     ["context key 'default_model': expected one of the provider_defaults.anthropic.models keys"]),
    ("bad overflow policy", {"overflow_policy": "drop"}, None,
     ["context key 'overflow_policy': expected one of defer, degrade, reject, got 'drop'"]),
    ("degrade without a model", {"overflow_policy": "degrade", "degrade_model": None}, None,
     ["context key 'degrade_model': expected a model id (required with overflow_policy=degrade)"]),
    ("degrade model not configured", {"degrade_model": "claude-mini"}, None,
     ["context key 'degrade_model': expected one of the provider_defaults.anthropic.models"]),
    ("no tenants", {"tenants": []}, None,
     ["context key 'tenants': expected a non-empty list of strings"]),
    ("bad e-mail", {"alarms": {"email": "not-an-email"}}, None,
     ["context key 'alarms.email': expected an e-mail"]),
    ("threshold not a number", {"alarms": {"quota_used_percent": "lots"}}, None,
     ["context key 'alarms.quota_used_percent': expected a number, got 'lots'"]),
    ("bad region", {"allowed_regions": ["moon-1"]}, None,
     ["context key 'allowed_regions': expected AWS region names"]),
    ("zero concurrency", {"reserved_concurrency": "0"}, None,
     ["context key 'reserved_concurrency': expected a number >= 1"]),
    ("fractional concurrency", {"reserved_concurrency": 2.5}, None,
     ["context key 'reserved_concurrency': expected a whole number"]),
    ("short deferral age", {"deferral": {"max_age_s": 5}}, None,
     ["context key 'deferral.max_age_s': expected a number >= 60"]),
    ("bad ARN", {"existing_kms_key_arn": "my-key"}, None,
     ["context key 'existing_kms_key_arn': expected an ARN"]),
    ("a lookup-like key of no CDK provider", {"my-lookup:account=1": 1}, None,
     ["context key 'my-lookup:account=1' is not a setting"]),
]


@pytest.mark.parametrize("overrides, region, expected",
                         [case[1:] for case in BAD_CONTEXT], ids=[c[0] for c in BAD_CONTEXT])
def test_bad_context_reports_every_problem_naming_the_key(overrides, region, expected):
    with pytest.raises(SettingsError) as raised:
        load_settings({**DEFAULTS, **overrides}, region=region)
    problems = raised.value.problems
    assert len(problems) == len(expected), problems
    for problem, fragment in zip(sorted(problems), sorted(expected)):
        assert fragment in problem, problems


@pytest.mark.parametrize(("factory", "message"), [
    (lambda: AlarmSettings(quota_used_percent=120), "quota_used_percent"),
    (lambda: AlarmSettings(cost_per_hour_usd=0), "cost_per_hour_usd"),
    (lambda: AlarmSettings(email="not-an-address"), "email"),
])
def test_alarm_settings_refuse_bad_values_naming_the_field(factory, message):
    # what the monitoring construct takes: checked when built, not only when read from context
    with pytest.raises(ValueError, match=message):
        factory()


def test_docs_configuration_reference_is_the_schema():
    # docs/configuration.md lists every key the schema accepts, rendered by
    # `python -m stacks.settings` (paste its output over the page's table).
    assert reference_table() in (REPO / "docs" / "configuration.md").read_text()


def test_the_reference_links_the_docs_pages_its_meanings_name():
    table = reference_table()
    assert "[tenants.md](tenants.md)" in table
    assert "docs/" not in table  # every page named is a link relative to docs/


def test_cdk_app_reports_every_problem_in_one_run_and_exits_non_zero():
    context = {**DEFAULTS, "tier": "gold", "teir": "build",
               "alarms": {**DEFAULTS["alarms"], "quota_used_percent": 180}}
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps(context),
           "CDK_DEFAULT_REGION": "eu-west-1", "CDK_DEFAULT_ACCOUNT": "123456789012"}
    result = subprocess.run([sys.executable, "app.py"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines()
             if line.startswith("bulwark: bad configuration: ")]
    assert "Traceback" not in result.stderr
    assert sorted(line.split(": ", 2)[2].split(":")[0] for line in lines) == [
        "context key 'alarms.quota_used_percent'", "context key 'allowed_regions'",
        "context key 'teir' is not a setting; did you mean 'tier'?", "context key 'tier'"]


def test_an_empty_value_unsets_an_optional_key_from_the_command_line():
    s = settings(degrade_model="", api_key_secret_arn="")
    assert s.degrade_model is None and s.api_key_secret_arn is None


def test_reserved_concurrency_may_be_turned_off():
    assert settings(reserved_concurrency=None).reserved_concurrency is None
    assert settings(reserved_concurrency="null").reserved_concurrency is None


def test_learned_thresholds_take_partial_overrides_and_keep_the_other_defaults():
    alarms = {"anomaly": {"latency_p99": {"band": 4, "direction": "outside"}},
              "slo": {"success_rate_percent": 99.5}, "forecast": {"alarm_percent": 70},
              "contributor_insights": "off"}
    settings = load_settings({**DEFAULTS, "alarms": alarms}).alarms
    assert (settings.anomaly["latency_p99"].band,
            settings.anomaly["latency_p99"].direction) == (4, "outside")
    assert settings.anomaly["failure_rate"].band == 3  # the default
    assert settings.slo.success_rate_percent == 99.5
    assert settings.slo.error_budget_percent == pytest.approx(0.5)
    assert (settings.forecast.alarm_percent, settings.forecast.horizon_minutes) == (70, 30)
    assert settings.contributor_insights == "off"


def test_tenant_bands_take_their_own_widths_and_directions_with_defaults_for_the_rest():
    alarms = {"tenant_anomaly": {"cost_per_hour": {"band": 4, "direction": "outside"}}}
    settings = load_settings({**DEFAULTS, "alarms": alarms}).alarms
    assert set(settings.tenant_anomaly) == {"cost_per_hour", "cost_per_success",
                                            "failure_rate", "upstream_429_rate",
                                            "local_throttle_rate", "latency_p99"}
    assert (settings.tenant_anomaly["cost_per_hour"].band,
            settings.tenant_anomaly["cost_per_hour"].direction) == (4, "outside")
    assert settings.tenant_anomaly["failure_rate"].band == 3
    assert settings.anomaly["cost_per_hour"].direction == "above"  # the model band is apart
    latency = load_settings({**DEFAULTS, "alarms": {"tenant_anomaly": {
        "latency_p99": {"band": 2.5, "direction": "below"}}}}).alarms.tenant_anomaly
    assert (latency["latency_p99"].band, latency["latency_p99"].direction) == (2.5, "below")
    assert (latency["upstream_429_rate"].band, latency["cost_per_success"].direction) == (
        3, "above")


@pytest.mark.parametrize("alarms, expected", [
    ({"tenant_anomaly": {"quota_used": {"band": 3}}},
     "context key 'alarms.tenant_anomaly.quota_used' is not a setting"),
    ({"tenant_anomaly": {"failure_rate": {"band": 0}}},
     "context key 'alarms.tenant_anomaly.failure_rate.band'"),
    ({"anomaly": {"latency_p9": {"band": 3}}},
     "context key 'alarms.anomaly.latency_p9' is not a setting; did you mean "
     "'alarms.anomaly.latency_p99'?"),
    ({"anomaly": {"failure_rate": {"direction": "up"}}},
     "context key 'alarms.anomaly.failure_rate.direction': expected one of above, below, "
     "outside, got 'up'"),
    ({"slo": {"fast_window_minutes": 10, "fast_short_window_minutes": 30}},
     "fast_short_window_minutes (30) < fast_window_minutes (10)"),
    ({"slo": {"success_rate_percent": 100}}, "100 leaves no error budget"),
    ({"forecast": {"period_minutes": 60}}, "period_minutes (60) <= horizon_minutes (30)"),
    ({"contributor_insights": "all"},
     "expected one of throttled_keys, accessed_and_throttled_keys, off, got 'all'"),
])
def test_bad_learned_threshold_settings_name_the_key(alarms, expected):
    with pytest.raises(SettingsError) as raised:
        load_settings({**DEFAULTS, "alarms": alarms})
    assert any(expected in problem for problem in raised.value.problems), raised.value.problems


def test_tenant_weights_and_caps_are_per_tenant_keys_checked_against_the_buckets():
    from guard import TenantShare

    bound = {"acme": {"principals": ["arn:aws:iam::111122223333:role/AcmeApp"], "weight": 3,
                      "rpm": 20},
             "globex": {"principals": ["arn:aws:iam::444455556666:role/GlobexApp"]}}
    specs = {spec.name: spec for spec in settings(tenants=bound).tenant_specs}
    assert specs["acme"].share == TenantShare(weight=3, rpm=20)
    assert specs["globex"].share == TenantShare() and not specs["globex"].shares
    with pytest.raises(SettingsError) as raised:
        settings(tenants={**bound, "acme": {**bound["acme"], "tpm": 1000}})
    assert "tenants" in str(raised.value) and "tokens" in str(raised.value)
