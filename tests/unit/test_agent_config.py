"""The agent Lambda's environment -> `AgentConfig` (`agent.config.load_config`): what a
complete environment gives, defaults included, and that each missing or malformed variable is
refused with a `ConfigError` naming it."""

from __future__ import annotations

import json

import pytest

from agent.config import ConfigError
from tests.fixtures.agent_env import AGENT_ENV, MAIN, MODELS, SMALL, agent_config


def models_with(model_id: str, **changes) -> str:
    """MODELS as JSON with `changes` to one model's entry (None removes a key)."""
    entry = {**MODELS[model_id], **changes}
    return json.dumps({**MODELS, model_id: {k: v for k, v in entry.items() if v is not None}})


#: AgentConfig fields read from variables that may be left out
OPTIONAL_FIELDS = ("overflow_policy", "degrade_model", "scheduling", "agent_name",
                   "docs_prefix", "max_deferrals", "max_deferral_age_s", "max_receives",
                   "max_iterations", "max_total_tokens", "default_deadline_s", "result_ttl_s",
                   "log_prompts", "batch_queue_url")


def optional_values(config) -> dict:
    return {name: getattr(config, name) for name in OPTIONAL_FIELDS}


def test_a_complete_environment_with_its_defaults():
    config = agent_config()
    assert config.provider == "anthropic" and config.default_model == MAIN
    assert config.tenants == ("acme", "globex")
    assert (config.bucket_table, config.results_table, config.idempotency_table,
            config.notes_table, config.docs_bucket) == (
        "buckets", "results", "idempotency", "notes", "docs")
    assert config.work_queue_url == AGENT_ENV["WORK_QUEUE_URL"]
    assert config.dlq_url == AGENT_ENV["DLQ_URL"]
    assert config.tool_role_arn == AGENT_ENV["TOOL_ROLE_ARN"]
    assert config.api_key_secret_arn == AGENT_ENV["API_KEY_SECRET_ARN"]
    assert optional_values(config) == {
        "overflow_policy": "defer", "degrade_model": None, "scheduling": "fifo",
        "agent_name": "bulwark-agent", "docs_prefix": "docs/", "max_deferrals": 5,
        "max_deferral_age_s": 3600.0, "max_receives": 3, "max_iterations": 8,
        "max_total_tokens": 100_000, "default_deadline_s": 20.0, "result_ttl_s": 86_400,
        "log_prompts": False, "batch_queue_url": None}
    assert config.mcp_servers == {}


def test_models_carry_their_bucket_limits_sizes_and_prices():
    config = agent_config()
    main = config.models[MAIN]
    assert (main.model_id, main.bucket_id) == (MAIN, "anthropic#sonnet-4")
    assert (main.limits.rpm, main.limits.itpm, main.limits.otpm) == (50, 30_000, 8_000)
    assert (main.context_window, main.max_output_tokens) == (200_000, 8_000)
    # cache prices default to 1.25 x (write) and 0.1 x (read) the input price
    assert (main.prices.input, main.prices.output) == (3.0, 15.0)
    assert main.prices.cache_write == pytest.approx(3.75)
    assert main.prices.cache_read == pytest.approx(0.3)
    usage = {"input_tokens": 1_000_000, "output_tokens": 100_000,
             "cache_creation_input_tokens": 0, "cache_read_input_tokens": 1_000_000}
    assert main.prices.cost_usd(usage) == pytest.approx(3.0 + 1.5 + 0.3)  # USD


def test_sizes_default_when_a_model_leaves_them_out():
    config = agent_config(MODELS=models_with(SMALL, context_window=None,
                                             max_output_tokens=None))
    small = config.models[SMALL]
    assert (small.context_window, small.max_output_tokens) == (200_000, 64_000)


def test_optional_variables_are_read():
    config = agent_config(OVERFLOW_POLICY="degrade", DEGRADE_MODEL=SMALL, SCHEDULING="fifo",
                          AGENT_NAME="ops-agent", DOCS_PREFIX="", MAX_DEFERRALS="0",
                          MAX_DEFERRAL_AGE_S="90.5", MAX_RECEIVES="1", MAX_ITERATIONS="2",
                          MAX_TOTAL_TOKENS="5000", DEFAULT_DEADLINE_S="0",
                          RESULT_TTL_S="60", LOG_PROMPTS="TRUE",
                          BATCH_QUEUE_URL="https://sqs.example/batch",
                          TENANTS=" acme , globex ,")
    assert optional_values(config) == {
        "overflow_policy": "degrade", "degrade_model": SMALL, "scheduling": "fifo",
        "agent_name": "ops-agent", "docs_prefix": "", "max_deferrals": 0,
        "max_deferral_age_s": 90.5, "max_receives": 1, "max_iterations": 2,
        "max_total_tokens": 5000, "default_deadline_s": 0.0, "result_ttl_s": 60,
        "log_prompts": True, "batch_queue_url": "https://sqs.example/batch"}
    assert config.tenants == ("acme", "globex")


def test_bedrock_needs_no_api_key_secret():
    config = agent_config(PROVIDER="bedrock", API_KEY_SECRET_ARN=None)
    assert config.provider == "bedrock" and config.api_key_secret_arn is None


@pytest.mark.parametrize("name", [
    "PROVIDER", "MODELS", "DEFAULT_MODEL", "TENANTS", "BUCKET_TABLE", "RESULTS_TABLE",
    "IDEMPOTENCY_TABLE", "WORK_QUEUE_URL", "DLQ_URL", "TOOL_ROLE_ARN", "DOCS_BUCKET",
    "NOTES_TABLE", "API_KEY_SECRET_ARN"])
def test_a_missing_required_variable_is_named(name):
    with pytest.raises(ConfigError, match=f"^{name} is not set"):
        agent_config(**{name: None})


@pytest.mark.parametrize("name", ["BUCKET_TABLE", "DEFAULT_MODEL", "TENANTS"])
def test_a_blank_required_variable_counts_as_missing(name):
    with pytest.raises(ConfigError, match=f"^{name} is not set"):
        agent_config(**{name: "   "})


@pytest.mark.parametrize("changes, names", [
    ({"PROVIDER": "openai"}, ("PROVIDER", "'openai'")),
    ({"DEFAULT_MODEL": "claude-unknown"}, ("DEFAULT_MODEL", "'claude-unknown'")),
    ({"OVERFLOW_POLICY": "drop"}, ("OVERFLOW_POLICY", "'drop'")),
    ({"SCHEDULING": "random"}, ("SCHEDULING", "'random'")),
    ({"DEGRADE_MODEL": "claude-unknown"}, ("DEGRADE_MODEL", "'claude-unknown'")),
    ({"OVERFLOW_POLICY": "degrade"}, ("OVERFLOW_POLICY", "DEGRADE_MODEL")),
    ({"TENANTS": "acme,acme/globex"}, ("TENANTS", "'acme/globex'")),
    ({"MAX_DEFERRALS": "five"}, ("MAX_DEFERRALS", "'five'")),
    ({"MAX_DEFERRALS": "-1"}, ("MAX_DEFERRALS", ">= 0")),
    ({"MAX_DEFERRAL_AGE_S": "0.5"}, ("MAX_DEFERRAL_AGE_S", ">= 1")),
    ({"MAX_RECEIVES": "0"}, ("MAX_RECEIVES", ">= 1")),
    ({"MAX_ITERATIONS": "2.5"}, ("MAX_ITERATIONS", "'2.5'")),
    ({"MAX_TOTAL_TOKENS": "0"}, ("MAX_TOTAL_TOKENS", ">= 1")),
    ({"DEFAULT_DEADLINE_S": "soon"}, ("DEFAULT_DEADLINE_S", "'soon'")),
    ({"RESULT_TTL_S": "59"}, ("RESULT_TTL_S", ">= 60")),
])
def test_a_malformed_variable_is_named_with_its_value(changes, names):
    with pytest.raises(ConfigError) as raised:
        agent_config(**changes)
    for name in names:
        assert name in str(raised.value)


@pytest.mark.parametrize("models, words", [
    ("{not json", ("MODELS", "not valid JSON")),
    ("{}", ("MODELS", "non-empty JSON object")),
    ("[1, 2]", ("MODELS", "non-empty JSON object")),
    (json.dumps({MAIN: "fast"}), (f"MODELS['{MAIN}']", "must be an object")),
    (models_with(MAIN, bucket=None), (f"MODELS['{MAIN}'].bucket",)),
    (models_with(MAIN, bucket=""), (f"MODELS['{MAIN}'].bucket",)),
    (models_with(MAIN, prices={"input": 3.0}), (f"MODELS['{MAIN}'].prices", "'output'")),
    (models_with(MAIN, prices={"input": "three", "output": 15}),
     (f"MODELS['{MAIN}'].prices",)),
    (models_with(MAIN, context_window=0), (f"MODELS['{MAIN}'].context_window",)),
    (models_with(MAIN, max_output_tokens=True), (f"MODELS['{MAIN}'].max_output_tokens",)),
    (models_with(MAIN, max_output_tokens="8000"), (f"MODELS['{MAIN}'].max_output_tokens",)),
    (models_with(MAIN, rpm=-5), (f"MODELS['{MAIN}']",)),
])
def test_a_malformed_models_entry_is_named(models, words):
    with pytest.raises(ConfigError) as raised:
        agent_config(MODELS=models)
    for word in words:
        assert word in str(raised.value)


def test_tenant_shares_reach_every_model_bucket():
    from agent.runtime import build_runtime
    from guard import TenantShare

    assert agent_config().tenant_shares == {}   # no weight nor cap: no sharing by tenant
    tenants = json.dumps({"acme": {"weight": 3, "rpm": 20}, "globex": {}})
    config = agent_config(TENANTS=tenants)
    assert config.tenant_shares == {"acme": TenantShare(weight=3, rpm=20),
                                    "globex": TenantShare()}
    runtime = build_runtime({**AGENT_ENV, "TENANTS": tenants}, dynamodb=object(),
                            sqs=object(), sts=object(), secrets=object(), sdk_client=None)
    bucket = runtime.claude._bucket_for(MAIN)
    assert bucket.limits.tenants["acme"] == TenantShare(weight=3, rpm=20)
    with pytest.raises(ConfigError, match="weight must be a positive"):
        agent_config(TENANTS=json.dumps({"acme": {"weight": 0}}))
