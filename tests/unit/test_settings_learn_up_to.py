"""`models.<id>.learn_up_to`: the ceilings a model's bucket may learn from the API's
`anthropic-ratelimit-*-limit` headers, read from cdk.json, checked, and carried to the Lambda in
MODELS (`agent.contract.ModelSpec.learn_up_to`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.contract import ContractError, ModelSpec, Prices, decode_models, encode_models
from guard import Limits
from stacks.settings import SettingsError, load_settings, report_settings_error

REPO = Path(__file__).resolve().parents[2]
DEFAULTS = json.loads((REPO / "cdk.json").read_text())["context"]
PRICES = {"input": 3, "output": 15}
SONNET = "claude-sonnet-4-6"  # tier1 preset: 50 rpm, 30,000 itpm, 8,000 otpm


def load(models, **overrides):
    return load_settings({**DEFAULTS, "models": models, "default_model": "",
                          "degrade_model": "", **overrides})


def problems_of(models, **overrides):
    with pytest.raises(SettingsError) as raised:
        load(models, **overrides)
    return raised.value.problems


def test_ceilings_are_read_and_reach_the_lambda_through_models():
    s = load({SONNET: {"prices": PRICES, "learn_up_to": {"rpm": 4000, "otpm": 400_000}}})
    model = s.models[SONNET]
    assert model.learn_up_to == {"rpm": 4000, "otpm": 400_000}
    decoded = decode_models(encode_models(s.models.values()))[SONNET]
    assert decoded.learn_up_to == {"rpm": 4000, "otpm": 400_000}


def test_a_model_without_the_key_learns_nothing():
    s = load({SONNET: {"prices": PRICES}})
    assert s.models[SONNET].learn_up_to is None
    assert "learn_up_to" not in json.loads(encode_models(s.models.values()))[SONNET]


def test_ceilings_given_as_json_text_on_the_command_line_are_read():
    s = load(json.dumps({SONNET: {"prices": PRICES, "learn_up_to": '{"rpm": 60}'}}))
    assert s.models[SONNET].learn_up_to == {"rpm": 60}


@pytest.mark.parametrize("ceilings, overrides, expected", [
    ({"rpm": 10}, {}, f"context key 'models.{SONNET}.learn_up_to.rpm': expected a ceiling at "
                      "least the model's rpm (50 per minute), got 10"),
    ({"itpm": "lots"}, {}, f"context key 'models.{SONNET}.learn_up_to.itpm': expected a number"),
    ({"rpx": 100}, {}, f"context key 'models.{SONNET}.learn_up_to.rpx' is not a setting; did "
                       f"you mean 'models.{SONNET}.learn_up_to.rpm'"),
    (5, {}, f"context key 'models.{SONNET}.learn_up_to': expected an object"),
    ({"rpm": 100}, {"otpm": 9000}, None),  # an explicit limit is the one compared: fine
    ({"otpm": 8500}, {"otpm": 9000}, f"context key 'models.{SONNET}.learn_up_to.otpm': "
                                     "expected a ceiling at least the model's otpm (9000 per"),
], ids=["below the limit", "not a number", "unknown name", "not an object",
        "explicit limit below", "explicit limit above"])
def test_bad_ceilings_are_named(ceilings, overrides, expected):
    models = {SONNET: {"prices": PRICES, "learn_up_to": ceilings, **overrides}}
    if expected is None:
        assert load(models).models[SONNET].learn_up_to == ceilings
        return
    problems = problems_of(models)
    assert len(problems) == 1 and expected in problems[0], problems


def test_bedrock_has_no_such_headers_so_the_key_is_refused():
    problems = problems_of({"us.anthropic.claude-x": {"tpm": 5000, "prices": PRICES,
                                                      "learn_up_to": {"rpm": 60}}},
                           provider="bedrock")
    assert problems == ["context key 'models.us.anthropic.claude-x.learn_up_to' applies to "
                        "provider=anthropic only (this is provider=bedrock): remove it"]


def test_models_sharing_a_bucket_must_set_the_same_ceilings():
    problems = problems_of({SONNET: {"prices": PRICES, "learn_up_to": {"rpm": 100}},
                            "claude-sonnet-4-5": {"prices": PRICES}})
    assert len(problems) == 1, problems
    assert "'models.claude-sonnet-4-5.learn_up_to'" in problems[0]
    assert "shares its bucket anthropic#sonnet-4" in problems[0]


def test_the_command_line_prints_the_problem_as_bad_configuration(capsys):
    with pytest.raises(SettingsError) as raised:
        load({SONNET: {"prices": PRICES, "learn_up_to": {"rpm": 1}}})
    report_settings_error(raised.value)
    assert f"bulwark: bad configuration: context key 'models.{SONNET}.learn_up_to.rpm'" \
        in capsys.readouterr().err


@pytest.mark.parametrize("entry, message", [
    ({"learn_up_to": {"rpm": 10}}, "learn_up_to: ['rpm'] must be a ceiling per minute at "
                                   "least the configured 50"),
    ({"learn_up_to": {"tpm": 100}}, "learn_up_to: names 'tpm', not a per-minute limit"),
    ({"learn_up_to": [50]}, "learn_up_to: must be an object of rpm, itpm, otpm"),
    ({"learn_up_to": {"rpm": True}}, "learn_up_to: ['rpm'] must be a ceiling"),
])
def test_a_bad_models_entry_names_learn_up_to(entry, message):
    raw = json.dumps({SONNET: {"bucket": "anthropic#sonnet-4", "rpm": 50, "itpm": 30000,
                               "otpm": 8000, "prices": PRICES, **entry}})
    with pytest.raises(ContractError, match=r"MODELS\['claude-sonnet-4-6'\]\." + message[:11]) \
            as raised:
        decode_models(raw)
    assert message in str(raised.value)


def test_a_pooled_model_has_no_bucket_of_its_own_to_learn_with():
    problems = problems_of({SONNET: {"prices": PRICES, "learn_up_to": {"rpm": 100}, "pools": [
        {"provider": "anthropic", "model": SONNET, "rpm": 50, "itpm": 30000, "otpm": 8000}]}})
    assert problems == [f"context key 'models.{SONNET}.learn_up_to': a model with pools sets "
                        "its limits on each pool (models.<id>.pools[i]): remove it"]
    raw = json.loads(encode_models([ModelSpec(
        model_id=SONNET, bucket_id="anthropic#sonnet-4", limits=Limits(50, 30000, 8000),
        prices=Prices.of(3, 15), learn_up_to={"rpm": 100})]))
    raw[SONNET]["pools"] = [{"name": "a", "provider": "anthropic", "model": SONNET,
                             "bucket": "anthropic#sonnet-4", "rpm": 50}]
    with pytest.raises(ContractError, match="learn_up_to: applies to a model without pools"):
        decode_models(json.dumps(raw))


def test_a_spec_built_by_hand_is_checked_too():
    with pytest.raises(ValueError, match="learn_up_to names 'itpm'"):
        ModelSpec(model_id="m", bucket_id="bedrock#m", limits=Limits(10, tpm=1000),
                  prices=Prices.of(3, 15), learn_up_to={"itpm": 100})
