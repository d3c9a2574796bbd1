"""The Claude emulator serving several pools at once: separate limits per pool (a Bedrock region
or a second Anthropic organisation) and per Bedrock service tier, flex refused first under load,
and outages injected per pool. Through the real `anthropic` SDK over HTTP."""

from __future__ import annotations

import pytest

from local.fakes.claude_emulator import ClaudeEmulator

BEDROCK_MODEL = "us.anthropic.claude-sonnet-4-6"
PROMPT = [{"role": "user", "content": "Summarise the quarterly report."}]


@pytest.fixture(scope="module")
def emulator():
    with ClaudeEmulator({"bedrock": {"rpm": 3, "tpm": 1_000_000},
                         "pools": {"us-west-2": {"rpm": 5}}}) as emu:
        yield emu


@pytest.fixture(autouse=True)
def fresh(emulator):
    emulator.reset(config=True)


def bedrock(emulator, pool=None, tier=None):
    import anthropic

    headers = {"X-Amzn-Bedrock-Service-Tier": tier} if tier else None
    return anthropic.AnthropicBedrock(
        base_url=emulator.pool_url(pool) if pool else emulator.base_url, aws_region="us-east-1",
        aws_access_key="testing", aws_secret_key="testing", max_retries=0,
        default_headers=headers)


def admitted(client, n):
    """How many of `n` back-to-back calls are admitted (the rest are 429s)."""
    import anthropic

    ok = 0
    for _ in range(n):
        try:
            client.messages.create(model=BEDROCK_MODEL, max_tokens=16, messages=PROMPT)
            ok += 1
        except anthropic.RateLimitError:
            pass
    return ok


def test_each_region_pool_has_its_own_limits(emulator):
    assert admitted(bedrock(emulator, "us-east-1"), 5) == 3   # the model's default: 3 RPM
    assert admitted(bedrock(emulator, "us-west-2"), 7) == 5   # the pool's own: 5 RPM
    assert admitted(bedrock(emulator), 4) == 3                # no prefix: a bucket of its own
    pools = emulator.stats()["pools"]
    assert pools["us-east-1"] == {"admitted": 3, "throttled": 2}
    assert pools["us-west-2"] == {"admitted": 5, "throttled": 2}


def test_each_service_tier_has_its_own_limits_and_reports_its_tier(emulator):
    east = bedrock(emulator, "us-east-1")
    assert admitted(east, 4) == 3
    priority = bedrock(emulator, "us-east-1", "priority")
    message = priority.messages.create(model=BEDROCK_MODEL, max_tokens=16, messages=PROMPT)
    assert message.usage.service_tier == "priority"
    assert admitted(priority, 3) == 2


def test_flex_is_refused_while_its_buckets_are_half_empty(emulator):
    emulator.configure(pools={"us-east-1": {"rpm": 10}})
    # flex keeps half of its 10 RPM as headroom: 5 admitted back to back, default takes 10
    assert admitted(bedrock(emulator, "us-east-1", "flex"), 8) == 5
    assert admitted(bedrock(emulator, "us-east-1", "default"), 12) == 10


def test_unknown_service_tier_is_a_validation_error(emulator):
    import anthropic

    with pytest.raises(anthropic.BadRequestError, match="service tier"):
        bedrock(emulator, "us-east-1", "gold").messages.create(
            model=BEDROCK_MODEL, max_tokens=16, messages=PROMPT)


def test_an_outage_takes_one_pool_down_for_its_duration_only(emulator):
    import anthropic

    emulator.outage("us-west-2", for_s=60)
    west, east = bedrock(emulator, "us-west-2"), bedrock(emulator, "us-east-1")
    for _ in range(3):  # every request, not a count
        with pytest.raises(anthropic.InternalServerError) as caught:
            west.messages.create(model=BEDROCK_MODEL, max_tokens=16, messages=PROMPT)
        assert caught.value.status_code == 503
    assert east.messages.create(model=BEDROCK_MODEL, max_tokens=16, messages=PROMPT).content
    assert emulator.stats()["pools"]["us-west-2"]["faults"] == 3


def test_an_outage_ends(emulator):
    import time

    emulator.outage("us-west-2", for_s=0.2)
    time.sleep(0.3)  # the outage's own duration; nothing timed is asserted
    client = bedrock(emulator, "us-west-2")
    assert client.messages.create(model=BEDROCK_MODEL, max_tokens=16, messages=PROMPT).content
    assert emulator.stats()["faults_pending"] == 0


def test_anthropic_api_pools_are_separate_organisations(emulator):
    import anthropic

    emulator.configure(pools={"org-b": {"limits": {"sonnet-4": {"rpm": 2}}}})
    org_b = anthropic.Anthropic(base_url=emulator.pool_url("org-b"), api_key="k", max_retries=0)
    org_a = anthropic.Anthropic(base_url=emulator.base_url, api_key="k", max_retries=0)
    ok = 0
    for _ in range(3):
        try:
            org_b.messages.create(model="claude-sonnet-4-6", max_tokens=16, messages=PROMPT)
            ok += 1
        except anthropic.RateLimitError:
            pass
    assert ok == 2
    assert org_a.messages.create(model="claude-sonnet-4-6", max_tokens=16, messages=PROMPT)


@pytest.mark.parametrize("payload, problem", [
    ({"kind": "529", "pool": "us-west-2"}, "both pool and for_s"),
    ({"kind": "529", "pool": "us-west-2", "for_s": -1}, "for_s"),
    ({"kind": "slow", "pool": "us-west-2", "for_s": 5}, "outage answers"),
    ({"kind": "529", "pool": "bad name!", "for_s": 5}, "pool must be"),
])
def test_bad_outage_requests_name_the_problem(emulator, payload, problem):
    with pytest.raises(ValueError, match=problem):
        emulator._call("POST", "faults", payload)


def test_bad_pool_config_names_the_problem(emulator):
    with pytest.raises(ValueError, match="tiers"):
        emulator.configure(pools={"us-east-1": {"tiers": {"gold": {"rpm": 1}}}})
    with pytest.raises(ValueError, match="flex_headroom"):
        emulator.configure(flex_headroom=1.5)
