"""cdk.json's `tenants` (bound to IAM roles), `allow_unbound_tenants`, `trusted_invokers` and
`trusted_producers`: good values typed, bad ones named with the key and the fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.contract import TenantSpec
from stacks.settings import SettingsError, load_settings

REPO = Path(__file__).resolve().parents[2]
DEFAULTS = json.loads((REPO / "cdk.json").read_text())["context"]
ACME = "arn:aws:iam::111122223333:role/AcmeApp"
GLOBEX = "arn:aws:iam::444455556666:role/teams/GlobexApp"


def settings(**overrides):
    return load_settings({**DEFAULTS, **overrides})


def problems(**overrides) -> list[str]:
    with pytest.raises(SettingsError) as raised:
        settings(**overrides)
    return raised.value.problems


def test_cdk_json_binds_each_tenant_to_a_role_and_trusts_nobody_else():
    s = settings()
    assert s.tenants == ("acme", "globex")
    assert all(spec.bound for spec in s.tenant_specs)
    assert (s.trusted_invokers, s.trusted_producers) == ((), ())


def test_a_mapping_binds_tenants_to_role_arns_in_order():
    s = settings(tenants={"globex": {"principals": [GLOBEX]},
                          "acme": {"principals": [ACME, GLOBEX]}})
    assert s.tenants == ("globex", "acme")
    assert s.tenant_specs == (TenantSpec(name="globex", principals=(GLOBEX,)),
                              TenantSpec(name="acme", principals=(ACME, GLOBEX)))


def test_the_mapping_is_accepted_as_json_from_the_command_line():
    s = settings(tenants=json.dumps({"acme": {"principals": [ACME]}}),
                 trusted_invokers=f"{ACME}, {GLOBEX}", trusted_producers=json.dumps([GLOBEX]))
    assert s.tenant_specs == (TenantSpec(name="acme", principals=(ACME,)),)
    assert s.trusted_invokers == (ACME, GLOBEX) and s.trusted_producers == (GLOBEX,)


def test_a_plain_list_is_refused_naming_the_key_and_both_fixes():
    [problem] = problems(tenants=["acme", "globex"])
    assert problem.startswith("context key 'tenants': a plain list leaves every tenant bound "
                              "to no caller")
    assert '{"acme": {"principals": ["arn:aws:iam::111122223333:role/AcmeApp"]}}' in problem
    assert "allow_unbound_tenants: true" in problem


def test_a_plain_list_is_accepted_with_allow_unbound_tenants():
    s = settings(tenants="acme,globex", allow_unbound_tenants=True)
    assert s.tenants == ("acme", "globex")
    assert not any(spec.bound for spec in s.tenant_specs)


def test_a_tenant_without_principals_is_refused_unless_unbound_tenants_are_allowed():
    [problem] = problems(tenants={"acme": {"principals": [ACME]}, "sandbox": {}})
    assert problem.startswith("context key 'tenants.sandbox.principals': tenant 'sandbox' is "
                              "bound to no IAM role")
    assert "allow_unbound_tenants" in problem
    s = settings(tenants={"acme": {"principals": [ACME]}, "sandbox": {"principals": []}},
                 allow_unbound_tenants=True)
    assert [spec.bound for spec in s.tenant_specs] == [True, False]


@pytest.mark.parametrize("principal", [
    "arn:aws:iam::111122223333:user/alice",
    "arn:aws:sts::111122223333:assumed-role/AcmeApp/session",
    "arn:aws:iam::111122223333:group/apps",
    "arn:aws:iam::1111:role/AcmeApp",
    "AcmeApp",
])
def test_principals_must_be_role_arns(principal):
    [problem] = problems(tenants={"acme": {"principals": [principal]}})
    assert problem.startswith("context key 'tenants.acme.principals': expected IAM role ARNs "
                              "such as arn:aws:iam::111122223333:role/AppRole")
    assert repr(principal) in problem


def test_an_unknown_per_tenant_key_is_named_with_the_closest_one():
    found = problems(tenants={"acme": {"principal": [ACME]}})
    assert ("context key 'tenants.acme.principal' is not a setting; did you mean "
            "'tenants.acme.principals'?") in found


@pytest.mark.parametrize("tenants, fragment", [
    ({"Acme Corp": {"principals": [ACME]}}, "context key 'tenants.Acme Corp': expected a tenant "
                                            "name of 1-63 characters"),
    ({"acme": [ACME]}, "context key 'tenants.acme': expected an object"),
    ({}, "context key 'tenants': expected at least one tenant"),
])
def test_malformed_mappings_are_named(tenants, fragment):
    found = problems(tenants=tenants)
    assert any(fragment in problem for problem in found), found


def test_missing_tenants_is_named_with_the_fix():
    context = {k: v for k, v in DEFAULTS.items() if k != "tenants"}
    with pytest.raises(SettingsError) as raised:
        load_settings(context)
    [problem] = raised.value.problems
    assert problem.startswith("context key 'tenants': expected tenant name -> settings: bind "
                              "each tenant")


@pytest.mark.parametrize("key", ["trusted_invokers", "trusted_producers"])
def test_trusted_callers_must_be_role_arns(key):
    [problem] = problems(**{key: ["arn:aws:iam::111122223333:user/frontdoor"]})
    assert problem.startswith(f"context key '{key}': expected IAM role ARNs")


def test_the_app_refuses_a_plain_list_as_bad_configuration():
    context = {**DEFAULTS, "tenants": ["acme", "globex"]}
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps(context),
           "CDK_DEFAULT_REGION": "us-east-1", "CDK_DEFAULT_ACCOUNT": "123456789012"}
    result = subprocess.run([sys.executable, "app.py"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "bulwark: bad configuration: context key 'tenants': a plain list" in result.stderr
