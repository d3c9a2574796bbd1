"""`models.<id>.pools` (stacks/pool_settings.py): read once, every problem named."""

from __future__ import annotations

import pytest

from stacks.pool_settings import PoolSettingsError, read_pools

PROFILE = "us.anthropic.claude-sonnet-4-6"
REGIONS = {"us": ("us-east-1", "us-east-2", "us-west-2")}


def test_the_issue_example_reads_with_each_pool_addressed():
    pools = read_pools("sonnet", [
        {"provider": "bedrock", "model": PROFILE, "region": "us-east-1", "tpm": 200000,
         "rpm": 200},
        {"provider": "bedrock", "model": PROFILE, "region": "us-west-2", "tpm": 100000,
         "rpm": 100, "service_tier": "flex"},
        {"provider": "bedrock", "model": "anthropic.claude-sonnet-4-6",
         "region": "eu-west-1", "tpm": 50000},
        {"provider": "anthropic", "model": "claude-sonnet-4-6", "tier": "tier2"}],
        profile_regions=REGIONS)
    assert [p.name for p in pools] == ["bedrock@us-east-1", "bedrock@us-west-2/flex",
                                       "bedrock@eu-west-1", "anthropic"]
    assert [p.addressing for p in pools] == ["inference_profile", "inference_profile",
                                             "foundation_model", "anthropic_api"]
    assert pools[0].routes_to_regions == REGIONS["us"]
    assert pools[2].routes_to_regions == ("eu-west-1",)
    assert pools[1].limits.rpm == 100 and pools[3].limits.rpm > 0  # tier2 preset
    assert len({p.bucket_id for p in pools}) == 4  # each pool its own bucket


def test_a_tier_the_model_does_not_offer_is_refused():
    with pytest.raises(PoolSettingsError, match="does not offer 'flex'"):
        read_pools("haiku", [{"provider": "bedrock", "region": "us-east-1", "tpm": 1000,
                              "model": "us.anthropic.claude-3-haiku-20240307-v1:0",
                              "service_tier": "flex"}], profile_regions=REGIONS)


@pytest.mark.parametrize("pool, problem", [
    ({"provider": "openai", "model": "x"}, "provider"),
    ({"provider": "bedrock", "model": PROFILE, "tpm": 1}, "region"),
    ({"provider": "bedrock", "model": "claude-sonnet-4-6", "region": "us-east-1", "tpm": 1},
     "inference profile id"),
    ({"provider": "bedrock", "model": PROFILE, "region": "us-east-1"}, "tpm"),
    ({"provider": "bedrock", "model": PROFILE, "region": "us-east-1", "tpm": 1,
      "service_tier": "gold"}, "service_tier"),
    ({"provider": "bedrock", "model": "eu.anthropic.claude-sonnet-4-6",
      "region": "eu-west-1", "tpm": 1}, "routes_to_regions"),
    ({"provider": "anthropic", "model": "claude-sonnet-4-6", "region": "us-east-1",
      "tier": "tier1"}, "Bedrock pools only"),
    ({"provider": "anthropic", "model": "claude-sonnet-4-6"}, "rpm"),
    ({"provider": "anthropic", "model": "claude-sonnet-4-6", "tier": "tier1", "colour": 1},
     "unknown keys"),
])
def test_bad_pools_name_the_key(pool, problem):
    with pytest.raises(PoolSettingsError, match=problem):
        read_pools("sonnet", [pool], profile_regions=REGIONS)


def test_pools_must_be_a_list_and_names_unique():
    with pytest.raises(PoolSettingsError, match="non-empty list"):
        read_pools("sonnet", {}, profile_regions=REGIONS)
    same = {"provider": "bedrock", "model": PROFILE, "region": "us-east-1", "tpm": 1}
    with pytest.raises(PoolSettingsError, match="named 'bedrock@us-east-1'"):
        read_pools("sonnet", [same, same], profile_regions=REGIONS)


def _context(models, **extra):
    import json
    from pathlib import Path

    base = json.loads((Path(__file__).resolve().parents[2] / "cdk.json").read_text())["context"]
    return {**base, "provider": "bedrock", "models": models, "default_model": "sonnet",
            "degrade_model": "", **extra}


def test_load_settings_reads_a_pooled_model_and_the_contract_carries_its_pools():
    from agent.contract import decode_models, encode_models
    from stacks.settings import load_settings

    settings = load_settings(_context({"sonnet": {"prices": {"input": 3, "output": 15}, "pools": [
        {"provider": "bedrock", "model": PROFILE, "region": "us-east-1", "tpm": 2000},
        {"provider": "bedrock", "model": PROFILE, "region": "us-west-2", "tpm": 1000,
         "service_tier": "flex", "prices": {"input": 1.5, "output": 7.5}}]}}),
        region="us-east-1")
    model = settings.models["sonnet"]
    assert [p.name for p in model.pools] == ["bedrock@us-east-1", "bedrock@us-west-2/flex"]
    assert model.bucket_id == model.pools[0].bucket_id and model.limits.tpm == 2000
    decoded = decode_models(encode_models([model]))["sonnet"]
    assert [(p.name, p.bucket_id, p.region, p.service_tier, p.limits.tpm, p.prices)
            for p in decoded.pools] == [
        (p.name, p.bucket_id, p.region, p.service_tier, p.limits.tpm, p.prices)
        for p in model.pools]
    assert decoded.pools[1].prices.input == 1.5


def test_a_pooled_model_with_its_own_limits_or_a_bad_pool_is_refused_naming_the_key():
    from stacks.settings import SettingsError, load_settings

    with pytest.raises(SettingsError) as caught:
        load_settings(_context({"sonnet": {"prices": {"input": 3, "output": 15}, "tpm": 5,
                                           "pools": [{"provider": "bedrock", "model": PROFILE,
                                                      "region": "us-east-1"}]}}),
                      region="us-east-1")
    text = str(caught.value)
    assert "models.sonnet.tpm" in text and "models.sonnet.pools[0].tpm" in text


def test_the_agent_builds_one_pool_per_configured_pool_with_tenant_caps_split_by_rpm():
    import json

    from agent.runtime import pooled_models
    from guard import Pool, TokenBucket
    from tests.fixtures.agent_env import MAIN, MODELS, agent_config

    pools = [{"name": "east", "provider": "bedrock", "model": PROFILE, "region": "us-east-1",
              "bucket": "bedrock#us-east-1#default#x", "rpm": 100, "tpm": 100000,
              "output_burndown": 5},
             {"name": "west-flex", "provider": "bedrock", "model": PROFILE,
              "region": "us-west-2", "service_tier": "flex", "bucket": "bedrock#us-west-2#flex#x",
              "rpm": 50, "tpm": 50000, "output_burndown": 5,
              "prices": {"input": 1.5, "output": 7.5}}]
    models = {**MODELS, "sonnet": {"bucket": pools[0]["bucket"], "rpm": 100, "tpm": 100000,
                                   "output_burndown": 5, "prices": {"input": 3, "output": 15},
                                   "pools": pools}}
    config = agent_config(MODELS=json.dumps(models), TENANTS=json.dumps(
        {"acme": {"weight": 2, "rpm": 30}, "globex": {}}))
    buckets = {MAIN: TokenBucket("t", "anthropic#sonnet-4", config.models[MAIN].limits)}
    served = pooled_models(config, {**buckets, "claude-haiku-4-5": buckets[MAIN]}, None)
    assert served[MAIN] is buckets[MAIN]  # a model without pools keeps its bucket
    east, west = served["sonnet"]
    assert isinstance(east, Pool) and (east.name, east.aws_region, east.service_tier) == \
        ("east", "us-east-1", None)
    assert (west.name, west.aws_region, west.service_tier) == ("west-flex", "us-west-2", "flex")
    assert east.prices.input == 3 and west.prices.input == 1.5  # the model's, the pool's own
    assert east.bucket.bucket_id == pools[0]["bucket"]
    acme_east, acme_west = (p.bucket.limits.tenants["acme"] for p in (east, west))
    assert (acme_east.weight, acme_west.weight) == (2, 2)
    assert (acme_east.rpm, acme_west.rpm) == pytest.approx((20, 10))  # 30 split 100:50


def test_under_provider_anthropic_a_bedrock_pool_routes_by_the_bedrock_defaults():
    """The Anthropic API with a Bedrock pool beside it: the `us.` profile's regions come from
    provider_defaults.bedrock.profile_regions (the deployment's provider has none), and a bad
    entry there is refused naming the key."""
    from stacks.settings import SettingsError, load_settings

    models = {"sonnet": {"prices": {"input": 3, "output": 15}, "pools": [
        {"provider": "anthropic", "model": "claude-sonnet-4-6", "tier": "tier2"},
        {"provider": "bedrock", "model": PROFILE, "region": "us-east-1", "tpm": 2000}]}}
    settings = load_settings(_context(models, provider="anthropic"), region="us-east-1")
    bedrock = settings.models["sonnet"].pools[1]
    assert bedrock.routes_to_regions == tuple(
        _context(models)["provider_defaults"]["bedrock"]["profile_regions"]["us"])
    context = _context(models, provider="anthropic")
    context["provider_defaults"] = {**context["provider_defaults"], "bedrock": {
        **context["provider_defaults"]["bedrock"], "profile_regions": {"us": ["nowhere"]}}}
    with pytest.raises(SettingsError, match="provider_defaults.bedrock.profile_regions"):
        load_settings(context, region="us-east-1")
