"""examples/shared_bucket's function against local AWS and the Claude emulator: its calls are
charged to the same bucket item as the agent's, so together they stay within one limit."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from guard import Limits, TokenBucket
from local.fakes.claude_emulator import ClaudeEmulator

REPO = Path(__file__).resolve().parents[2]
MODEL = "claude-sonnet-4-6"
BUCKET_ID = "anthropic#sonnet-4"
#: one request a minute: whoever calls first uses the organisation's only request
LIMITS = {"rpm": 1, "itpm": 12000, "otpm": 3000}


@pytest.fixture
def emulator():
    with ClaudeEmulator({"tier": "tier1", "limits": {"sonnet-4": LIMITS},
                         "output_tokens": 20}) as emu:
        yield emu


@pytest.fixture
def example(local_aws, bucket_table, emulator, monkeypatch):
    secret = local_aws.client("secretsmanager").create_secret(
        Name=f"example-key-{bucket_table}", SecretString="test-key")["ARN"]
    for name, value in {**local_aws.env(), "ANTHROPIC_BASE_URL": emulator.base_url,
                        "BUCKET_TABLE": bucket_table, "BUCKET_ID": BUCKET_ID, "MODEL": MODEL,
                        "RPM": str(LIMITS["rpm"]), "ITPM": str(LIMITS["itpm"]),
                        "OTPM": str(LIMITS["otpm"]), "API_KEY_SECRET_ARN": secret}.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location(
        "shared_bucket_caller", REPO / "examples" / "shared_bucket" / "caller" / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_example_and_the_agent_draw_on_one_bucket(example, dynamodb, bucket_table):
    answer = example.handler({"prompt": "Summarise the report.", "max_tokens": 50}, None)
    assert answer["status"] == "ok", answer
    assert answer["text"]
    # The agent's bucket object, same table and item: the minute's one request is spent.
    agent = TokenBucket(bucket_table, BUCKET_ID, Limits(**LIMITS), dynamodb)
    grant = agent.try_acquire(1, 10, 50, max_wait_s=0)
    assert not grant.granted and grant.retry_after > 50


def test_the_example_defers_when_the_agent_spent_the_minute(example, dynamodb, bucket_table):
    agent = TokenBucket(bucket_table, BUCKET_ID, Limits(**LIMITS), dynamodb)
    assert agent.try_acquire(1, 10, 50, max_wait_s=0).granted
    answer = example.handler({"prompt": "Summarise the report.", "max_tokens": 50}, None)
    assert answer["status"] == "deferred", answer
    assert answer["retry_after_s"] > 0
