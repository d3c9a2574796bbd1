"""The worked examples of docs/guard/pools.md are configurations the stack accepts: the Bedrock
two-region example loads as the app loads its context; the Anthropic-API-plus-Bedrock example
is synthesized (`pooled_api_bedrock`, once per session) and its agent role evaluated with the
IAM evaluator: the API key secret for the Anthropic pool, exactly the Bedrock pool's profile,
its region and the foundation models it routes to, nothing else of Bedrock."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.infra.conftest import pools_page_example
from tests.infra.test_pool_iam import assert_evaluated
from tests.infra.test_iam_matrix import (ACCOUNT, ALLOWED, EXPLICIT, IMPLICIT, PARTITION,
                                         Deployment, simulate)

PROFILE = "us.anthropic.claude-sonnet-4-6"
MODEL = "anthropic.claude-sonnet-4-6"
OPUS_PROFILE = "us.anthropic.claude-opus-4-1-20250805-v1:0"
DENIED = (IMPLICIT, EXPLICIT)
API_BUCKET = "anthropic#api#default#claude-sonnet-4-6"
BEDROCK_BUCKET = f"bedrock#us-east-1#default#{PROFILE}"
BREAKERS = ["breaker#sonnet#anthropic", "breaker#sonnet#bedrock@us-east-1"]
#: `provider_defaults.bedrock.profile_regions["us"]` in cdk.json
US_REGIONS = tuple(json.loads((Path(__file__).resolve().parents[2] / "cdk.json").read_text())[
    "context"]["provider_defaults"]["bedrock"]["profile_regions"]["us"])


def profile(region, model=PROFILE):
    return f"arn:{PARTITION}:bedrock:{region}:{ACCOUNT}:inference-profile/{model}"


def foundation(region, model=MODEL):
    return f"arn:{PARTITION}:bedrock:{region}::foundation-model/{model}"


def _settings(name):
    from stacks.settings import load_settings

    defaults = json.loads((Path(__file__).resolve().parents[2] / "cdk.json").read_text())
    return load_settings({**defaults["context"], **pools_page_example(name)},
                         region="us-east-1")


def test_the_bedrock_two_region_example_loads_as_the_app_loads_it():
    model = _settings("bedrock-two-regions").models["sonnet"]
    assert [(p.name, p.region, p.service_tier, p.addressing, p.routes_to_regions)
            for p in model.pools] == [
        ("bedrock@us-east-1", "us-east-1", None, "inference_profile", US_REGIONS),
        ("bedrock@us-west-2/flex", "us-west-2", "flex", "inference_profile", US_REGIONS)]
    assert model.pools[1].prices.input == 1.5 and model.pools[0].prices is None


def test_the_api_plus_bedrock_example_loads_under_provider_anthropic():
    """Under provider=anthropic, a Bedrock pool's profile routes to the regions of
    provider_defaults.bedrock.profile_regions."""
    settings = _settings("anthropic-api-plus-bedrock")
    model = settings.models["sonnet"]
    api, bedrock = model.pools
    assert (api.provider, api.addressing, api.bucket_id, api.limits.rpm) == (
        "anthropic", "anthropic_api", API_BUCKET, 1000)  # the tier2 preset
    assert (bedrock.provider, bedrock.region, bedrock.bucket_id, bedrock.routes_to_regions) == (
        "bedrock", "us-east-1", BEDROCK_BUCKET, US_REGIONS)


def _invoke(resource, region, via=None, action="bedrock:InvokeModel"):
    context = {"bedrock:InferenceProfileArn": via} if via else {}
    return lambda d: d.request(d.agent, action, resource, context, region=region)


def _item(action, key):
    return lambda d: d.request(d.agent, action, d.bucket_table, {"dynamodb:LeadingKeys": [key]})


#: case -> (request builder, the results it may have)
CASES = {
    "the API key secret (the Anthropic pool)": (lambda d: d.request(
        d.agent, "secretsmanager:GetSecretValue", d.secret,
        {"secretsmanager:VersionStage": "AWSCURRENT"}), (ALLOWED,)),
    "the Bedrock pool's profile in its region": (_invoke(profile("us-east-1"), "us-east-1"),
                                                 (ALLOWED,)),
    "the Bedrock pool's profile, streaming": (_invoke(
        profile("us-east-1"), "us-east-1", action="bedrock:InvokeModelWithResponseStream"),
        (ALLOWED,)),
    **{f"the model routed to {region} through the profile": (
        _invoke(foundation(region), region, profile("us-east-1")), (ALLOWED,))
       for region in US_REGIONS},
    "the API pool's bucket": (_item("dynamodb:UpdateItem", API_BUCKET), (ALLOWED,)),
    "the Bedrock pool's bucket": (_item("dynamodb:UpdateItem", BEDROCK_BUCKET), (ALLOWED,)),
    **{f"breaker {key}": (_item("dynamodb:UpdateItem", key), (ALLOWED,)) for key in BREAKERS},
    "the profile called in another region": (_invoke(profile("us-west-2"), "us-west-2"),
                                             DENIED),
    "the foundation model invoked directly in the pool's region": (
        _invoke(foundation("us-east-1"), "us-east-1"), DENIED),
    "a routed model invoked directly": (_invoke(foundation("us-west-2"), "us-west-2"), DENIED),
    "an unconfigured model's profile in the pool's region": (
        _invoke(profile("us-east-1", OPUS_PROFILE), "us-east-1"), DENIED),
    "the routed model through an unconfigured profile": (
        _invoke(foundation("us-east-2"), "us-east-2", profile("us-east-1", OPUS_PROFILE)),
        DENIED),
    "a model outside the profile's regions": (
        _invoke(foundation("eu-west-1"), "eu-west-1", profile("us-east-1")), DENIED),
}


@pytest.fixture(scope="module")
def deployment(pooled_api_bedrock):
    return Deployment(synthesized=pooled_api_bedrock)


@pytest.fixture(scope="module")
def results(deployment):
    return simulate({name: build(deployment) for name, (build, _) in CASES.items()})


@pytest.mark.parametrize("case", list(CASES))
def test_api_plus_bedrock_access(results, case):
    assert_evaluated(results[case], CASES[case][1])


def test_bedrock_is_granted_for_the_bedrock_pool_only(deployment):
    """Every Bedrock resource the agent role names is the Bedrock pool's profile in its region
    or a foundation model it routes to: the Anthropic pool adds none."""
    resources = set()
    for policy in deployment.agent.identity_policies:
        for statement in policy["policy"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) \
                else [statement["Action"]]
            if any(action.startswith("bedrock:") for action in actions):
                named = statement["Resource"]
                resources |= set(named if isinstance(named, list) else [named])
    assert resources == {profile("us-east-1"), *(foundation(r) for r in US_REGIONS)}


def test_the_lambda_gets_the_api_pool_then_the_bedrock_pool(pooled_api_bedrock):
    from agent.contract import decode_models

    [function] = [r for r in pooled_api_bedrock.resources("AWS::Lambda::Function").values()
                  if r["Properties"].get("Handler") == "agent.handler.handler"]
    variables = function["Properties"]["Environment"]["Variables"]
    assert variables["PROVIDER"] == "anthropic" and "API_KEY_SECRET_ARN" in variables
    pools = decode_models(variables["MODELS"])["sonnet"].pools
    assert [(p.name, p.provider, p.model, p.bucket_id, p.region) for p in pools] == [
        ("anthropic", "anthropic", "claude-sonnet-4-6", API_BUCKET, None),
        ("bedrock@us-east-1", "bedrock", PROFILE, BEDROCK_BUCKET, "us-east-1")]
