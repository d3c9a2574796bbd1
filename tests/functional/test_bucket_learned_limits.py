"""Limits learned from the server's headers: a higher `anthropic-ratelimit-*-limit` raises the
bucket (up to a ceiling) in one conditional write that keeps the capacity on the item, and
every caller adopts it; against the local AWS server, then with the emulator raising its
limits while callers saturate it."""

from __future__ import annotations

import json
import threading
import time

import pytest

from guard import GuardedClaude, Limits, TokenBucket
from local.fakes.claude_emulator import ClaudeEmulator

BUCKET = "anthropic#sonnet-4"
RAISED = {"anthropic-ratelimit-requests-limit": "200",
          "anthropic-ratelimit-requests-remaining": "150"}


@pytest.fixture
def make_bucket(bucket_table, dynamodb, clock):
    def make(limits=None, **kwargs):
        kwargs.setdefault("clamp_margin_s", 0.0)
        return TokenBucket(bucket_table, BUCKET, limits or Limits(rpm=50), dynamodb,
                           clock=clock, **kwargs)
    return make


def learned_entry(dynamodb, table):
    item = dynamodb.get_item(TableName=table, Key={"pk": {"S": BUCKET}})["Item"]
    return {dim: {k: float(v["N"]) for k, v in entry["M"].items()}
            for dim, entry in item["learned"]["M"].items()}


def test_a_higher_limit_raises_the_bucket_to_its_ceiling_and_old_views_adopt_it(
        make_bucket, dynamodb, bucket_table, clock, capsys):
    learner = make_bucket(learn_up_to={"requests": 100})
    other = make_bucket(learn_up_to={"requests": 100})
    assert learner.try_acquire(50).granted  # 50 used of 50: empty
    assert other.cool_down_until() == 0.0  # other's view: empty at 50 RPM
    capsys.readouterr()

    assert learner.learn_limits(RAISED) == {"requests": 100.0}  # the ceiling, not 200
    assert learner.writes_by_purpose["learn"] == 1
    assert learned_entry(dynamodb, bucket_table) == {"requests": {"c": 100.0, "f": 50.0}}
    assert learner.level("requests") == pytest.approx(50.0)  # what was used stays used
    audit = json.loads(capsys.readouterr().out.strip())
    assert audit["LimitLearned"] == 1 and audit["Dimension"] == "requests"
    assert audit["Model"] == BUCKET and audit["new_per_minute"] == 100.0
    assert audit["old_per_minute"] == 50.0 and audit["ceiling_per_minute"] == 100.0
    assert audit["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Model", "Dimension"]]

    clock.advance(2.0)
    # at 50 RPM its view holds under 2 requests; the item, at 100, holds 53: its write names
    # the old capacity, is refused, and the retry is computed at the new one
    grant = other.try_acquire(40)
    assert grant.granted and grant.store_calls == 2, grant
    assert other.level("requests") == pytest.approx(50 + 2 * 100 / 60 - 40, abs=1e-3)
    assert learner.learn_limits(RAISED) == {}  # nothing more to learn: no write
    assert learner.writes_by_purpose["learn"] == 1


def test_a_learned_limit_survives_a_redeploy_until_the_configuration_changes(
        make_bucket, dynamodb, bucket_table, clock):
    first = make_bucket(learn_up_to={"requests": 100})
    assert first.try_acquire(10).granted
    assert first.learn_limits(RAISED) == {"requests": 100.0}
    redeployed = make_bucket(learn_up_to={"requests": 100})  # same configuration
    assert redeployed.cool_down_until() == 0.0
    assert redeployed.level("requests") == pytest.approx(100 - 10)
    without_learning = make_bucket()  # adopts what the item holds even if it never learns
    assert without_learning.cool_down_until() == 0.0
    assert without_learning.level("requests") == pytest.approx(100 - 10)

    reconfigured = make_bucket(Limits(rpm=60), learn_up_to={"requests": 120})
    assert reconfigured.cool_down_until() == 0.0
    assert reconfigured.learn_limits({"anthropic-ratelimit-requests-limit": "60"}) == {
        "requests": 60.0}  # the entry learned over 50 RPM is void: back to the configured
    assert learned_entry(dynamodb, bucket_table)["requests"] == {"c": 60.0, "f": 60.0}
    assert reconfigured.level("requests") == pytest.approx(60.0 - 10, abs=1e-3)


@pytest.mark.parametrize("ceiling, problem", [
    ({"tokens": 10}, "not a dimension"), ({"requests": 10}, "at least the configured 50"),
    ({"requests": float("inf")}, "at least the configured"), ([("requests", 100)], "must map")])
def test_bad_ceilings_are_refused_with_a_clear_error(make_bucket, ceiling, problem):
    with pytest.raises((ValueError, TypeError), match=problem):
        make_bucket(learn_up_to=ceiling)


def test_the_emulator_changes_its_limits_while_running_and_refuses_bad_ones():
    config = {"tier": "tier1", "limits": {"sonnet-4": {"rpm": 30}}}
    with ClaudeEmulator(config) as emulator:
        import anthropic

        sdk = anthropic.Anthropic(base_url=emulator.base_url, api_key="test-key")
        ask = {"model": "claude-sonnet-4-6", "max_tokens": 10,
               "messages": [{"role": "user", "content": "Hi"}]}
        first = sdk.messages.with_raw_response.create(**ask)
        assert first.headers["anthropic-ratelimit-requests-remaining"] == "29"
        assert emulator.set_limits("sonnet-4", rpm=60) == {"family": "sonnet-4", "rpm": 60}
        second = sdk.messages.with_raw_response.create(**ask)
        assert second.headers["anthropic-ratelimit-requests-limit"] == "60"
        assert second.headers["anthropic-ratelimit-requests-remaining"] == "58"  # 2 used
        for bad, problem in (({"rpm": 0}, "rpm must be a positive whole number"),
                             ({}, "name at least one"), ({"rpm": 1.5}, "whole number")):
            with pytest.raises(ValueError, match=problem):
                emulator.set_limits("sonnet-4", **bad)
        with pytest.raises(ValueError, match="family must be one of"):
            emulator.set_limits("gpt-4", rpm=10)


@pytest.mark.slow
def test_callers_saturating_the_emulator_across_a_tier_upgrade_never_see_a_429(
        bucket_table, dynamodb):
    """8 callers, each its own bucket client, loop on a strict emulator at 30 RPM; halfway it
    raises its limit to 60 RPM. The bucket follows the headers (ceiling 60): 0 upstream 429s
    before, across and after the switch, and the second half gets the higher rate."""
    import anthropic

    limits = Limits(rpm=30, itpm=1_000_000, otpm=1_000_000)
    config = {"tier": "tier1", "output_tokens": 20,
              "limits": {"sonnet-4": {"rpm": 30, "itpm": 1_000_000, "otpm": 1_000_000}}}
    with ClaudeEmulator(config) as emulator:
        sdk = anthropic.Anthropic(base_url=emulator.base_url, api_key="test-key")
        answered: list[float] = []
        stop = threading.Event()

        def caller():
            bucket = TokenBucket(bucket_table, BUCKET, limits, dynamodb,
                                 learn_up_to={"requests": 60})
            claude = GuardedClaude({"claude-sonnet-4-6": bucket}, sdk_client=sdk)
            while not stop.is_set():
                result = claude.create(model="claude-sonnet-4-6", max_tokens=50,
                                       messages=[{"role": "user", "content": "Hi"}],
                                       deadline_s=3)
                if result.status == "ok":
                    answered.append(time.monotonic())
                elif result.status == "deferred":
                    stop.wait(min(result.retry_after or 0.1, 1.0))
                else:
                    raise AssertionError(result.error)

        threads = [threading.Thread(target=caller) for _ in range(8)]
        for thread in threads:
            thread.start()
        while len(answered) < 32:  # the first 30 (a full bucket) and the refill after it
            time.sleep(0.05)
        emulator.set_limits("sonnet-4", rpm=60)
        switched_at = time.monotonic()
        while len([t for t in answered if t > switched_at]) < 40:
            time.sleep(0.05)
        stop.set()
        for thread in threads:
            thread.join(30)
        stats = emulator.stats()
    assert stats["rate_limited"] == 0, stats
    assert learned_entry(dynamodb, bucket_table)["requests"] == {"c": 60.0, "f": 30.0}
