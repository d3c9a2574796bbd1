"""IAM per capacity pool (policies/pools.py), evaluated by the IAM evaluator the access matrix
uses: exactly the configured profiles, models and regions are allowed."""

from __future__ import annotations

import pytest
from aws_cdk import aws_iam as iam

from policies.pools import pool_statements
from stacks.pool_settings import read_pools
from tests.infra.test_iam_matrix import ACCOUNT, ALLOWED, IMPLICIT, PARTITION, simulate

PROFILE = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
MODEL = "anthropic.claude-sonnet-4-5-20250929-v1:0"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/agent"
INVOKE = "bedrock:InvokeModel"

POOLS = read_pools("sonnet", [
    {"provider": "bedrock", "model": PROFILE, "region": "us-east-1", "tpm": 1000},
    {"provider": "bedrock", "model": PROFILE, "region": "us-west-2", "tpm": 1000,
     "service_tier": "flex"},
    {"provider": "bedrock", "model": "anthropic.claude-haiku-4-5-20251001-v1:0",
     "region": "eu-west-1", "tpm": 1000},
    {"provider": "anthropic", "model": "claude-sonnet-4-5", "tier": "tier1"}],
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
