"""Each setting's default is written once, on the typed settings (`stacks.settings_types`), and
the schema (docs/configuration.md's table) and `load_settings` give the same."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from agent.config import AgentConfig
from guard.runaway import RunawaySettings
from stacks.settings import (RUNAWAY_KEYS, SCHEMA, AlarmSettings, BatchSettings,
                             ForecastSettings, SloSettings, load_settings)
from stacks.settings_schema import PRESET_KEYS, Key, defaults_from

REPO = Path(__file__).resolve().parents[2]
CONTEXT = json.loads((REPO / "cdk.json").read_text())["context"]
SECTIONS = [(SCHEMA["alarms"].keys, AlarmSettings), (SCHEMA["alarms"].keys["slo"].keys, SloSettings),
            (SCHEMA["alarms"].keys["forecast"].keys, ForecastSettings),
            (SCHEMA["batch"].keys, BatchSettings), (RUNAWAY_KEYS, RunawaySettings)]


@pytest.mark.parametrize(("keys", "cls"), SECTIONS, ids=lambda v: getattr(v, "__name__", ""))
def test_the_schema_documents_the_typed_settings_defaults(keys, cls):
    for spec in dataclasses.fields(cls):
        key = keys.get(spec.name)
        if key is None or key.keys is not None or spec.name in PRESET_KEYS:
            continue
        default = spec.default if spec.default is not dataclasses.MISSING \
            else spec.default_factory()
        assert key.default == default, f"{cls.__name__}.{spec.name}"


def test_a_section_left_out_loads_as_its_typed_defaults():
    # BatchSettings once said enabled=False while the schema (and so every deploy) said True
    context = {k: v for k, v in CONTEXT.items()
               if k not in ("alarms", "batch", "runaway", "deferral")}
    settings = load_settings(context)
    assert settings.tier == "tier1"  # BatchSettings' rate defaults are the tier1 preset
    assert settings.batch == BatchSettings()
    assert settings.alarms == AlarmSettings()
    assert settings.runaway == RunawaySettings()
    lambda_defaults = AgentConfig.__dataclass_fields__  # the Lambda's, when a variable is unset
    assert (settings.max_deferrals, settings.max_deferral_age_s) == (
        lambda_defaults["max_deferrals"].default, lambda_defaults["max_deferral_age_s"].default)


def test_a_schema_key_may_not_write_a_second_default():
    with pytest.raises(TypeError, match="BatchSettings's is the one default"):
        defaults_from(BatchSettings, {"enabled": Key("deploy the batch lane", default=False)})


def test_the_collector_left_without_tunables_runs_with_the_stack_s_batch_defaults():
    """A collector or poller whose environment sets no BATCH_* tunable (a local run, a
    hand-built function) uses what a default deploy writes: the tier1 preset's rate and queue
    cap, and the stack's items per batch, wait and retries."""
    from agent.batch.config import load_batch_config
    from tests.fixtures.agent_env import AGENT_ENV

    env = {**AGENT_ENV, "BATCH_QUEUE_URL": "https://sqs.example/batch",
           "BATCH_DLQ_URL": "https://sqs.example/batch-dlq", "BATCH_TABLE": "batch"}
    config = load_batch_config(env)
    stack = BatchSettings()
    assert (config.rpm, config.queue_cap, config.max_items, config.max_wait_s,
            config.max_retries) == (stack.requests_per_minute, stack.max_queued_requests,
                                    stack.max_items_per_batch, stack.max_wait_s,
                                    stack.max_retries)
    assert load_settings(CONTEXT).batch.max_queued_requests == config.queue_cap  # tier1


def test_the_api_s_cap_per_batch_is_one_figure_for_the_stack_and_the_collector():
    from agent.batch.config import HARD_MAX_REQUESTS
    from stacks.settings import SettingsError

    with pytest.raises(SettingsError, match=f"at most {HARD_MAX_REQUESTS:,}"):
        load_settings({**CONTEXT, "batch": {"max_items_per_batch": HARD_MAX_REQUESTS + 1}})
    assert load_settings({**CONTEXT, "batch": {"max_items_per_batch": HARD_MAX_REQUESTS}}
                         ).batch.max_items_per_batch == HARD_MAX_REQUESTS
