"""The caller-to-tenant mapping (agent.tenancy) and the tenants' contract encoding: every
branch, no I/O."""

from __future__ import annotations

import pytest

from agent.contract import ContractError, TenantSpec, decode_tenants, encode_tenants
from agent.tenancy import (ForbiddenTenant, UnclearTenant, caller_from_arn, readable_tenants,
                           tenant_for_caller)

ACCOUNT, OTHER = "111122223333", "444455556666"
ACME_ROLE = f"arn:aws:iam::{ACCOUNT}:role/apps/AcmeApp"      # a path: sessions drop it
GLOBEX_ROLE = f"arn:aws:iam::{OTHER}:role/GlobexApp"
SHARED_ROLE = f"arn:aws:iam::{ACCOUNT}:role/SharedOps"

BOUND = (TenantSpec(name="acme", principals=(ACME_ROLE, SHARED_ROLE)),
         TenantSpec(name="globex", principals=(GLOBEX_ROLE, SHARED_ROLE)),
         TenantSpec(name="initech", principals=(f"arn:aws:iam::{OTHER}:role/InitechApp",)))
UNBOUND = (TenantSpec(name="acme"), TenantSpec(name="globex"))
MIXED = (TenantSpec(name="acme", principals=(ACME_ROLE,)), TenantSpec(name="sandbox"))


def session(role: str, account: str = ACCOUNT, name: str = "s-1", partition: str = "aws") -> str:
    return f"arn:{partition}:sts::{account}:assumed-role/{role}/{name}"


# -- callers -----------------------------------------------------------------------------------

def test_a_role_session_is_parsed_into_account_role_and_session():
    caller = caller_from_arn(session("AcmeApp", name="i-0abc@host"))
    assert (caller.partition, caller.account, caller.role_name, caller.session) == (
        "aws", ACCOUNT, "AcmeApp", "i-0abc@host")
    assert caller.role == f"AcmeApp (account {ACCOUNT})"


@pytest.mark.parametrize("arn, kind", [
    (f"arn:aws:iam::{ACCOUNT}:user/alice", "an IAM user"),
    (f"arn:aws:sts::{ACCOUNT}:federated-user/bob", "a federated user"),
    (f"arn:aws:iam::{ACCOUNT}:root", "the account's root user"),
    (f"arn:aws:iam::{ACCOUNT}:role/AcmeApp", "not an IAM role session"),  # a role, not a session
    ("AROAEXAMPLE:session", "not an IAM role session"),
])
def test_callers_that_are_not_role_sessions_are_forbidden_by_kind(arn, kind):
    with pytest.raises(ForbiddenTenant, match=kind) as refused:
        tenant_for_caller(BOUND, arn)
    assert arn in str(refused.value)


@pytest.mark.parametrize("arn", [None, "", 42])
def test_a_request_without_an_iam_caller_is_forbidden(arn):
    with pytest.raises(ForbiddenTenant, match="carries no IAM caller"):
        tenant_for_caller(BOUND, arn)


# -- the tenant a request acts for ------------------------------------------------------------

def test_a_caller_bound_to_one_tenant_need_not_name_it():
    assert tenant_for_caller(BOUND, session("AcmeApp")) == "acme"
    assert tenant_for_caller(BOUND, session("GlobexApp", OTHER)) == "globex"


def test_a_caller_bound_to_one_tenant_may_name_it():
    assert tenant_for_caller(BOUND, session("AcmeApp"), "acme") == "acme"


def test_a_role_path_in_the_configuration_does_not_stop_the_match():
    # ACME_ROLE is role/apps/AcmeApp; its sessions are assumed-role/AcmeApp/...
    assert tenant_for_caller(BOUND, session("AcmeApp"), "acme") == "acme"


def test_naming_another_tenant_is_forbidden_and_the_refusal_names_only_the_callers_role():
    with pytest.raises(ForbiddenTenant) as refused:
        tenant_for_caller(BOUND, session("AcmeApp"), "globex")
    message = str(refused.value)
    assert f"AcmeApp (account {ACCOUNT})" in message
    assert not any(name in message for name in ("globex", "initech"))


def test_naming_a_tenant_that_does_not_exist_is_refused_like_another_tenant():
    with pytest.raises(ForbiddenTenant) as unknown:
        tenant_for_caller(BOUND, session("AcmeApp"), "umbrella")
    with pytest.raises(ForbiddenTenant) as other:
        tenant_for_caller(BOUND, session("AcmeApp"), "globex")
    assert str(unknown.value) == str(other.value)


def test_the_same_role_name_in_another_account_is_not_bound():
    with pytest.raises(ForbiddenTenant, match=f"AcmeApp \\(account {OTHER}\\) is not bound to "
                                              "any tenant"):
        tenant_for_caller(BOUND, session("AcmeApp", OTHER))


def test_the_same_role_in_another_partition_is_not_bound():
    with pytest.raises(ForbiddenTenant):
        tenant_for_caller(BOUND, session("AcmeApp", partition="aws-cn"))


def test_a_caller_bound_to_no_tenant_is_forbidden():
    with pytest.raises(ForbiddenTenant, match="UnknownApp .* not bound to any tenant"):
        tenant_for_caller(BOUND, session("UnknownApp"))


def test_a_caller_bound_to_several_tenants_names_one_of_them():
    caller = session("SharedOps")
    assert tenant_for_caller(BOUND, caller, "globex") == "globex"
    with pytest.raises(UnclearTenant, match="bound to several tenants \\(acme, globex\\): "
                                            "name one"):
        tenant_for_caller(BOUND, caller)
    with pytest.raises(ForbiddenTenant):
        tenant_for_caller(BOUND, caller, "initech")


@pytest.mark.parametrize("named", [7, ["acme"], {"name": "acme"}])
def test_a_tenant_named_in_a_bad_form_is_unclear(named):
    with pytest.raises(UnclearTenant, match="tenant must be a string"):
        tenant_for_caller(BOUND, session("AcmeApp"), named)


def test_unbound_tenants_are_open_to_every_role_session_and_the_first_is_the_default():
    caller = session("AnyRole", OTHER)
    assert tenant_for_caller(UNBOUND, caller) == "acme"
    assert tenant_for_caller(UNBOUND, caller, "globex") == "globex"
    with pytest.raises(ForbiddenTenant):
        tenant_for_caller(UNBOUND, caller, "initech")


def test_unbound_tenants_still_refuse_callers_that_are_not_role_sessions():
    with pytest.raises(ForbiddenTenant, match="an IAM user"):
        tenant_for_caller(UNBOUND, f"arn:aws:iam::{ACCOUNT}:user/alice", "acme")


def test_a_bound_caller_defaults_to_its_own_tenant_even_beside_unbound_ones():
    assert tenant_for_caller(MIXED, session("AcmeApp")) == "acme"
    assert tenant_for_caller(MIXED, session("AcmeApp"), "sandbox") == "sandbox"
    assert tenant_for_caller(MIXED, session("Other")) == "sandbox"
    with pytest.raises(ForbiddenTenant):
        tenant_for_caller(MIXED, session("Other"), "acme")


# -- whose results a caller may fetch ----------------------------------------------------------

def test_results_are_readable_for_the_callers_own_tenants_only():
    assert readable_tenants(BOUND, session("AcmeApp")) == ("acme",)
    assert readable_tenants(BOUND, session("SharedOps")) == ("acme", "globex")
    assert readable_tenants(BOUND, session("SharedOps"), "globex") == ("globex",)
    assert readable_tenants(BOUND, session("AcmeApp"), "globex") == ()
    assert readable_tenants(BOUND, session("AcmeApp"), "umbrella") == ()


def test_results_of_unbound_tenants_are_readable_after_the_callers_own():
    assert readable_tenants(MIXED, session("AcmeApp")) == ("acme", "sandbox")
    assert readable_tenants(MIXED, session("Other")) == ("sandbox",)


def test_reading_results_needs_a_role_bound_to_some_tenant():
    with pytest.raises(ForbiddenTenant, match="not bound to any tenant"):
        readable_tenants(BOUND, session("UnknownApp"), "acme")
    with pytest.raises(ForbiddenTenant, match="an IAM user"):
        readable_tenants(BOUND, f"arn:aws:iam::{ACCOUNT}:user/alice")
    with pytest.raises(UnclearTenant):
        readable_tenants(BOUND, session("AcmeApp"), 3)


# -- the TENANTS encoding ----------------------------------------------------------------------

def test_tenants_round_trip_through_the_environment_in_order():
    assert decode_tenants(encode_tenants(BOUND)) == BOUND


def test_comma_separated_names_decode_as_unbound_tenants():
    assert decode_tenants(" acme , globex ,") == UNBOUND
    assert not any(spec.bound for spec in decode_tenants("acme,globex"))


@pytest.mark.parametrize("raw, words", [
    ('{"acme": {"principals": ["arn:aws:iam::111122223333:user/alice"]}}',
     "TENANTS['acme'].principals: expected an IAM role ARN"),
    ('{"acme": {"principals": "arn:aws:iam::111122223333:role/AcmeApp"}}',
     "TENANTS['acme'].principals: must be a list of IAM role ARNs"),
    ('{"acme": {"principal": []}}', "TENANTS['acme']: unknown key 'principal' (known: "
                                    "itpm, otpm, principals, rpm, tpm, weight)"),
    ('{"acme": []}', "TENANTS['acme'] must be an object"),
    ('{"Acme Corp": {}}', "tenant name must be 1-63 characters"),
    ('{}', "non-empty JSON object"),
    ('{"acme": ', "not valid JSON"),
    (" , ", "names no tenant"),
    ("acme,acme/globex", "'acme/globex'"),
])
def test_bad_tenants_variables_are_errors_naming_the_entry(raw, words):
    with pytest.raises(ContractError, match=None) as bad:
        decode_tenants(raw)
    assert words in str(bad.value)
