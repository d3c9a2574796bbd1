"""cdk.json context validation: good values typed, bad ones named with the expected form."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stacks.settings import SettingsError, load_settings

REPO = Path(__file__).resolve().parents[2]
DEFAULTS = json.loads((REPO / "cdk.json").read_text())["context"]


def settings(**overrides):
    return load_settings({**DEFAULTS, **overrides})


def test_defaults_resolve_tier_presets_per_family():
    s = settings()
    sonnet, haiku = s.models["claude-sonnet-4-6"], s.models["claude-haiku-4-5"]
    assert (sonnet.rpm, sonnet.itpm, sonnet.otpm) == (50, 30000, 8000)
    assert (haiku.rpm, haiku.itpm, haiku.otpm) == (50, 50000, 10000)
    assert sonnet.bucket_id == "anthropic#sonnet-4"
    assert s.tenants == ("acme", "globex") and not s.prod


def test_tier_from_the_command_line_and_explicit_values_override_it():
    s = settings(tier="build", models=json.dumps({
        "claude-sonnet-4-6": {"otpm": 123456, "prices": {"input": 3, "output": 15}}}),
        default_model="claude-sonnet-4-6", degrade_model=None, overflow_policy="reject")
    model = s.models["claude-sonnet-4-6"]
    assert (model.rpm, model.itpm, model.otpm) == (5000, 5000000, 123456)


def test_cli_strings_are_accepted_for_numbers_and_lists():
    s = settings(reserved_concurrency="7", tenants="a-team,b-team", log_retention_days="90")
    assert (s.reserved_concurrency, s.tenants, s.log_retention_days) == (7, ("a-team",
                                                                            "b-team"), 90)


def test_bedrock_models_route_to_their_geography():
    s = load_settings({"provider": "bedrock", "tenants": ["acme"], "models": {
        "us.anthropic.claude-sonnet-4-20250514-v1:0": {
            "tpm": 200000, "prices": {"input": 3, "output": 15}}}})
    model = s.models["us.anthropic.claude-sonnet-4-20250514-v1:0"]
    assert model.routes_to_regions == ("us-east-1", "us-east-2", "us-west-2")
    assert model.foundation_model_id == "anthropic.claude-sonnet-4-20250514-v1:0"
    assert model.output_burndown == 5 and model.itpm is None


@pytest.mark.parametrize("overrides, message", [
    ({"stage": "qa"}, "context key 'stage': expected one of dev, prod, got 'qa'"),
    ({"provider": "openai"}, "context key 'provider': expected one of anthropic, bedrock"),
    ({"tier": "tier9"}, "context key 'tier': expected one of tier1, tier2"),
    ({"models": {}}, "context key 'models': expected an object of model id -> settings"),
    ({"models": "not json"}, "context key 'models': expected an object"),
    ({"models": {"claude-sonnet-4-6": {"prices": {"input": 3}}}},
     "context key 'models.claude-sonnet-4-6.prices': expected an object"),
    ({"models": {"claude-sonnet-4-6": {"rpm": -5, "prices": {"input": 3, "output": 15}}}},
     "context key 'models.claude-sonnet-4-6.rpm': expected a number >= 1, got -5"),
    ({"tier": None, "models": {"my-model": {"prices": {"input": 1, "output": 2}}}},
     "context key 'models.my-model.rpm': expected a per-minute limit"),
    ({"default_model": "gpt-5"}, "context key 'default_model': expected one of the models keys"),
    ({"overflow_policy": "drop"}, "context key 'overflow_policy': expected one of defer, "
                                  "degrade, reject, got 'drop'"),
    ({"overflow_policy": "degrade", "degrade_model": None},
     "context key 'degrade_model': expected a model id (required with overflow_policy=degrade)"),
    ({"degrade_model": "claude-mini"}, "context key 'degrade_model': expected one of the models"),
    ({"tenants": []}, "context key 'tenants': expected a non-empty list of strings"),
    ({"tenants": ["Acme Corp"]}, "context key 'tenants': expected names of 1-63 characters"),
    ({"alarms": {"email": "not-an-email"}}, "context key 'alarms.email': expected an e-mail"),
    ({"alarms": {"latency_p99": 5}}, "context key 'alarms': expected only email, "),
    ({"alarms": {"quota_used_percent": "lots"}},
     "context key 'alarms.quota_used_percent': expected a number, got 'lots'"),
    ({"allowed_regions": ["moon-1"]}, "context key 'allowed_regions': expected AWS region names"),
    ({"reserved_concurrency": "0"}, "context key 'reserved_concurrency': expected a number >= 1"),
    ({"reserved_concurrency": 2.5}, "context key 'reserved_concurrency': expected a whole number"),
    ({"log_retention_days": 10}, "context key 'log_retention_days': expected one of "
                                 "CloudWatch's periods"),
    ({"deferral": {"max_age_s": 5}}, "context key 'deferral.max_age_s': expected a number >= 60"),
    ({"existing_kms_key_arn": "my-key"}, "context key 'existing_kms_key_arn': expected an ARN"),
])
def test_bad_context_names_the_key_and_expected_form(overrides, message):
    with pytest.raises(SettingsError) as raised:
        settings(**overrides)
    assert message in str(raised.value)


def test_cdk_app_reports_bad_context_and_exits_non_zero():
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps({**DEFAULTS, "tier": "gold"}),
           "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1"}
    result = subprocess.run([sys.executable, "app.py"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1
    assert "bulwark: bad configuration: context key 'tier': expected one of tier1" in \
        result.stderr


def test_an_empty_value_unsets_an_optional_key_from_the_command_line():
    s = settings(degrade_model="", api_key_secret_arn="")
    assert s.degrade_model is None and s.api_key_secret_arn is None


def test_deploying_outside_the_allowed_regions_is_refused_at_synth():
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps(DEFAULTS),
           "CDK_DEFAULT_REGION": "eu-west-1", "CDK_DEFAULT_ACCOUNT": "123456789012",
           "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1"}
    result = subprocess.run([sys.executable, "app.py"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1
    assert "expected the deploy region eu-west-1 among them" in result.stderr


def test_reserved_concurrency_may_be_turned_off():
    assert settings(reserved_concurrency=None).reserved_concurrency is None
    assert settings(reserved_concurrency="null").reserved_concurrency is None
