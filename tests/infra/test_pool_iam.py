"""IAM per capacity pool (policies/pools.py), evaluated by the IAM evaluator the access matrix
uses: exactly the configured profiles, models and regions are allowed."""

from __future__ import annotations

import pytest
from aws_cdk import aws_iam as iam

from policies.pools import pool_statements
from stacks.pool_settings import read_pools
from tests.infra.test_iam_matrix import ACCOUNT, ALLOWED, IMPLICIT, PARTITION, simulate

PROFILE = "us.anthropic.claude-sonnet-4-6"
MODEL = "anthropic.claude-sonnet-4-6"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/agent"
INVOKE = "bedrock:InvokeModel"

POOLS = read_pools("sonnet", [
    {"provider": "bedrock", "model": PROFILE, "region": "us-east-1", "tpm": 1000},
    {"provider": "bedrock", "model": PROFILE, "region": "us-west-2", "tpm": 1000,
     "service_tier": "flex"},
    {"provider": "bedrock", "model": "anthropic.claude-haiku-4-5-20251001-v1:0",
     "region": "eu-west-1", "tpm": 1000},
    {"provider": "anthropic", "model": "claude-sonnet-4-6", "tier": "tier1"}],
    profile_regions={"us": ("us-east-1", "us-east-2", "us-west-2")})


def profile(region, model=PROFILE):
    return f"arn:{PARTITION}:bedrock:{region}:{ACCOUNT}:inference-profile/{model}"


def foundation(region, model=MODEL):
    return f"arn:{PARTITION}:bedrock:{region}::foundation-model/{model}"


#: case -> (resource, request context, expected)
CASES = {
    "profile in pool A's region": (profile("us-east-1"), {"aws:RequestedRegion": "us-east-1"},
                                   ALLOWED),
    "profile in pool B's region": (profile("us-west-2"), {"aws:RequestedRegion": "us-west-2"},
                                   ALLOWED),
    "routed model through pool B's profile": (
        foundation("us-east-2"), {"aws:RequestedRegion": "us-east-2",
                                  "bedrock:InferenceProfileArn": profile("us-west-2")}, ALLOWED),
    "in-region foundation model of the eu pool": (
        foundation("eu-west-1", "anthropic.claude-haiku-4-5-20251001-v1:0"),
        {"aws:RequestedRegion": "eu-west-1"}, ALLOWED),
    "profile in an unconfigured region": (profile("us-east-2"),
                                          {"aws:RequestedRegion": "us-east-2"}, IMPLICIT),
    "profile ARN of A called from another region": (
        profile("us-east-1"), {"aws:RequestedRegion": "us-west-2"}, IMPLICIT),
    "an unconfigured model's profile": (
        profile("us-east-1", "us.anthropic.claude-opus-4-1-20250805-v1:0"),
        {"aws:RequestedRegion": "us-east-1"}, IMPLICIT),
    "routed model invoked directly, no profile": (
        foundation("us-east-2"), {"aws:RequestedRegion": "us-east-2"}, IMPLICIT),
    "the eu pool's model in another region": (
        foundation("eu-central-1", "anthropic.claude-haiku-4-5-20251001-v1:0"),
        {"aws:RequestedRegion": "eu-central-1"}, IMPLICIT),
}


@pytest.fixture(scope="module")
def results():
    document = iam.PolicyDocument(statements=pool_statements(
        POOLS, partition=PARTITION, account=ACCOUNT)).to_json()
    requests = {name: {"principal": ROLE, "actions": [INVOKE], "resource": resource,
                       "accountId": ACCOUNT, "context": context,
                       "identityPolicies": [{"name": "pools", "policy": document}]}
                for name, (resource, context, _) in CASES.items()}
    return simulate(requests)


@pytest.mark.parametrize("case", list(CASES))
def test_pool_invoke_matrix(results, case):
    assert results[case]["result"] == CASES[case][2], results[case]


def test_anthropic_api_pools_get_no_bedrock_statement():
    assert all("eu-west-1" in str(s.to_json()) or "us-" in str(s.to_json())
               for s in pool_statements(POOLS, partition=PARTITION, account=ACCOUNT))
    assert len(pool_statements(POOLS[3:], partition=PARTITION, account=ACCOUNT)) == 0


# -- the synthesized app with pools (tests/infra/conftest.py POOLS_CONTEXT) ------------------
# The agent role's identity policies AND its permissions boundary, as synthesized.

from tests.infra.conftest import POOL_EU_MODEL, POOL_PROFILE  # noqa: E402
from tests.infra.test_iam_matrix import EXPLICIT, Deployment  # noqa: E402

DENIED = (IMPLICIT, EXPLICIT)
OPUS_PROFILE = "us.anthropic.claude-opus-4-1-20250805-v1:0"
POOL_BUCKETS = [f"bedrock#us-east-1#default#{POOL_PROFILE}",
                f"bedrock#us-west-2#flex#{POOL_PROFILE}",
                f"bedrock#eu-west-1#default#{POOL_EU_MODEL}"]
BREAKERS = ["breaker#sonnet#bedrock@us-east-1", "breaker#sonnet#bedrock@us-west-2/flex",
            "breaker#sonnet#bedrock@eu-west-1"]


def _invoke(resource, region, via=None):
    context = {"bedrock:InferenceProfileArn": via} if via else {}
    return lambda d: d.request(d.agent, INVOKE, resource, context, region=region)


def _item(action, key):
    return lambda d: d.request(d.agent, action, d.bucket_table, {"dynamodb:LeadingKeys": [key]})


#: case -> (request builder, the results it may have)
SYNTH_CASES = {
    "profile in pool A's region (the deploy region)": (
        _invoke(profile("us-east-1", POOL_PROFILE), "us-east-1"), (ALLOWED,)),
    "profile in pool B's region (another region)": (
        _invoke(profile("us-west-2", POOL_PROFILE), "us-west-2"), (ALLOWED,)),
    "pool B's profile streaming": (lambda d: d.request(
        d.agent, "bedrock:InvokeModelWithResponseStream", profile("us-west-2", POOL_PROFILE),
        region="us-west-2"), (ALLOWED,)),
    "model routed to us-east-2 through pool B's profile": (
        _invoke(foundation("us-east-2", MODEL), "us-east-2", profile("us-west-2", POOL_PROFILE)),
        (ALLOWED,)),
    "the eu pool's foundation model in its region": (
        _invoke(foundation("eu-west-1", POOL_EU_MODEL), "eu-west-1"), (ALLOWED,)),
}
SYNTH_CASES.update({
    f"bucket of pool {i}": (_item("dynamodb:UpdateItem", key), (ALLOWED,))
    for i, key in enumerate(POOL_BUCKETS)})
SYNTH_CASES.update({
    f"breaker {name} {verb}": (_item(action, name), (ALLOWED,))
    for name in BREAKERS for verb, action in (("write", "dynamodb:UpdateItem"),
                                              ("read", "dynamodb:GetItem"))})
SYNTH_CASES.update({
    "profile in an unconfigured region (us-east-2)": (
        _invoke(profile("us-east-2", POOL_PROFILE), "us-east-2"), DENIED),
    "profile of pool A called in eu-west-1": (
        _invoke(profile("eu-west-1", POOL_PROFILE), "eu-west-1"), DENIED),
    "an unconfigured model's profile in a pool region": (
        _invoke(profile("us-west-2", OPUS_PROFILE), "us-west-2"), DENIED),
    "an unconfigured model's foundation model in the eu pool's region": (
        _invoke(foundation("eu-west-1", MODEL), "eu-west-1"), DENIED),
    "the eu pool's model in an unconfigured region": (
        _invoke(foundation("eu-central-1", POOL_EU_MODEL), "eu-central-1"), DENIED),
    "a routed model invoked directly, no profile": (
        _invoke(foundation("us-east-2", MODEL), "us-east-2"), DENIED),
    "the routed model through an unconfigured profile": (
        _invoke(foundation("us-east-2", MODEL), "us-east-2", profile("us-east-1", OPUS_PROFILE)),
        DENIED),
    "a breaker of an unconfigured pool": (
        _item("dynamodb:UpdateItem", "breaker#sonnet#bedrock@us-east-2"), DENIED),
    "delete a breaker": (_item("dynamodb:DeleteItem", BREAKERS[0]), DENIED),
})


@pytest.fixture(scope="module")
def synthesized_results(pooled):
    deployment = Deployment(synthesized=pooled)
    requests = {name: build(deployment) for name, (build, _) in SYNTH_CASES.items()}
    return simulate(requests)


def assert_evaluated(result: dict, expected: tuple[str, ...]) -> None:
    """The evaluator answered every action of a request, with one of the `expected`
    results."""
    errors = [a for a in result["actions"] if a["result"] == "Error"]
    assert not errors, errors
    assert result["result"] in expected, result


@pytest.mark.parametrize("case", list(SYNTH_CASES))
def test_synthesized_pool_access(synthesized_results, case):
    assert_evaluated(synthesized_results[case], SYNTH_CASES[case][1])


def test_the_lambda_gets_the_pools_in_preference_order(pooled):
    from agent.contract import decode_models

    [function] = [r for r in pooled.resources("AWS::Lambda::Function").values()
                  if r["Properties"].get("Handler") == "agent.handler.handler"]
    models = decode_models(function["Properties"]["Environment"]["Variables"]["MODELS"])
    pools = models["sonnet"].pools
    assert [(p.name, p.bucket_id, p.region, p.service_tier) for p in pools] == [
        ("bedrock@us-east-1", POOL_BUCKETS[0], "us-east-1", None),
        ("bedrock@us-west-2/flex", POOL_BUCKETS[1], "us-west-2", "flex"),
        ("bedrock@eu-west-1", POOL_BUCKETS[2], "eu-west-1", None)]
    assert pools[1].prices.input == 1.5 and pools[0].prices is None
