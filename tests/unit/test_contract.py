"""The deploy-runtime contract (`agent.contract`): the model spec, its MODELS encoding and the
rules the stack and the Lambda both check."""

from __future__ import annotations

import json

import pytest
from agent.contract import (TENANT_PATTERN, ContractError, ModelSpec, Prices, decode_models,
                            encode_models)
from guard import Limits

PRICES = Prices.of(3.0, 15.0)
ANTHROPIC = ModelSpec(model_id="claude-sonnet-4-6", bucket_id="anthropic#sonnet-4",
                      limits=Limits(50, 30_000, 8_000, burst_fraction=0.25), prices=PRICES)
BEDROCK = ModelSpec(model_id="us.anthropic.claude-haiku-4-5-20251001-v1:0",
                    bucket_id="bedrock#us.anthropic.claude-haiku-4-5-20251001-v1:0",
                    limits=Limits(250, tpm=2_000_000, output_burndown=5),
                    prices=Prices.of(1.0, 5.0, cache_write=2.0, cache_read=0.5),
                    context_window=100_000, max_output_tokens=8_000)


def test_what_the_stack_encodes_the_lambda_decodes():
    assert decode_models(encode_models([ANTHROPIC, BEDROCK])) == {
        ANTHROPIC.model_id: ANTHROPIC, BEDROCK.model_id: BEDROCK}
    decoded = decode_models(encode_models([BEDROCK]))[BEDROCK.model_id]
    assert decoded.limits.tpm == 2_000_000 and decoded.limits.output_burndown == 5


def test_the_encoding_names_only_what_applies():
    entries = json.loads(encode_models([ANTHROPIC, BEDROCK]))
    prices = entries[ANTHROPIC.model_id].pop("prices")
    assert entries[ANTHROPIC.model_id] == {
        "bucket": "anthropic#sonnet-4", "rpm": 50, "itpm": 30_000, "otpm": 8_000,
        "burst_fraction": 0.25, "context_window": 200_000, "max_output_tokens": 64_000}
    assert prices == pytest.approx({"input": 3.0, "output": 15.0, "cache_write": 3.75,
                                    "cache_read": 0.3})
    assert set(entries[BEDROCK.model_id]) == {"bucket", "rpm", "tpm", "output_burndown",
                                              "context_window", "max_output_tokens", "prices"}


def test_cache_prices_default_to_multiples_of_the_input_price():
    spec = decode_models(json.dumps({"m": {"bucket": "b", "rpm": 1,
                                           "prices": {"input": 2, "output": 10}}}))["m"]
    assert spec.prices == Prices(2.0, 10.0, 2.5, 0.2)
    assert spec.prices.cost_usd({"input_tokens": 1_000_000, "cache_read_input_tokens": 10}) \
        == pytest.approx(2.000002)


@pytest.mark.parametrize(("raw", "message"), [
    ("{", "MODELS is not valid JSON"),
    ("{}", "MODELS must be a non-empty JSON object"),
    ('{"m": 1}', r"MODELS\['m'\] must be an object"),
    ('{"m": {"bucket": "b", "rpm": 1, "prices": {"input": 1}}}', r"MODELS\['m'\].prices"),
    ('{"m": {"rpm": 1, "prices": {"input": 1, "output": 2}}}', r"MODELS\['m'\]\.bucket:"),
    ('{"m": {"bucket": "b", "rpm": -1, "prices": {"input": 1, "output": 2}}}',
     r"MODELS\['m'\]: rpm"),
    ('{"m": {"bucket": "b", "rpm": 1, "context_window": 0, "prices": {"input": 1, '
     '"output": 2}}}', r"MODELS\['m'\]\.context_window:"),
])
def test_a_bad_models_variable_is_named(raw, message):
    with pytest.raises(ContractError, match=message):
        decode_models(raw)


@pytest.mark.parametrize(("factory", "message"), [
    (lambda: ModelSpec(model_id="m", bucket_id="b", limits=Limits(rpm=-1), prices=PRICES),
     "rpm"),
    (lambda: ModelSpec(model_id=" ", bucket_id="b", limits=Limits(rpm=1), prices=PRICES),
     "model_id"),
])
def test_bad_values_raise_naming_the_field(factory, message):
    # (moved from the monitoring construct's own model type: it takes ModelSpec now)
    with pytest.raises(ValueError, match=message):
        factory()


@pytest.mark.parametrize("tenant", ["acme", "a", "team-7", "x" * 63])
def test_tenant_names_the_deployment_accepts(tenant):
    assert TENANT_PATTERN.match(tenant)


@pytest.mark.parametrize("tenant", ["", "Acme", "a_b", "a.b", "-acme", "x" * 64])
def test_tenant_names_no_side_accepts(tenant):
    assert not TENANT_PATTERN.match(tenant)
