"""Capacity pools end to end: the guarded client routes one logical model across pools served
by the Claude emulator (Bedrock regions and tiers, the Anthropic API) with buckets and breakers
in local DynamoDB."""

from __future__ import annotations

import pytest

from agent.contract import Prices
from guard import GuardedClaude, Limits, Pool, TokenBucket
from guard.pools import PoolRouter
from local.fakes.claude_emulator import ClaudeEmulator
from tests.conftest import FakeClock

PROFILE = "us.anthropic.claude-sonnet-4-6"
PROMPT = [{"role": "user", "content": "Summarise the quarterly report in three sentences."}]


@pytest.fixture(scope="module")
def emulator():
    with ClaudeEmulator({"bedrock": {"rpm": 4, "tpm": 1_000_000}, "output_tokens": 20}) as emu:
        yield emu


@pytest.fixture(autouse=True)
def fresh(emulator):
    emulator.reset(config=True)


@pytest.fixture
def bedrock_pool(emulator, bucket_table, dynamodb, clock):
    import anthropic

    def make(region, *, rpm=4, tier=None, prices=None):
        sdk = anthropic.AnthropicBedrock(base_url=emulator.pool_url(region),
                                         aws_region=region, aws_access_key="testing",
                                         aws_secret_key="testing")
        bucket = TokenBucket(bucket_table, f"bedrock#{region}#{tier}",
                             Limits(rpm=rpm, tpm=1_000_000, output_burndown=5), dynamodb,
                             clock=clock, clamp_margin_s=0.0)
        return Pool(bucket, provider="bedrock", model=PROFILE, aws_region=region,
                    service_tier=tier, prices=prices, sdk_client=sdk)

    return make


def call(claude, **kwargs):
    return claude.create(model="sonnet", max_tokens=64, messages=PROMPT, deadline_s=0,
                         **kwargs)


def test_guarded_claude_with_pools_routes_and_names_the_pool(bedrock_pool):
    claude = GuardedClaude({"sonnet": [bedrock_pool("us-east-1"), bedrock_pool("us-west-2")]})
    assert isinstance(claude, PoolRouter)
    result = call(claude)
    assert result.status == "ok", result.error
    assert result.pool == "bedrock@us-east-1" and result.model == "sonnet"
    assert result.message.content[0].text


def test_a_full_pool_sends_the_call_to_the_next_so_goodput_is_the_sum(bedrock_pool, emulator):
    claude = GuardedClaude({"sonnet": [bedrock_pool("us-east-1"), bedrock_pool("us-west-2")]})
    results = [call(claude) for _ in range(9)]
    assert [r.pool for r in results if r.status == "ok"] == \
        ["bedrock@us-east-1"] * 4 + ["bedrock@us-west-2"] * 4
    assert results[-1].status == "deferred" and results[-1].retry_after > 0
    stats = emulator.stats()
    assert stats["rate_limited"] == 0  # no upstream 429: each pool's bucket held its quota
    assert stats["pools"]["us-east-1"]["admitted"] == 4
    assert stats["pools"]["us-west-2"]["admitted"] == 4


def test_cost_is_priced_at_the_pool_that_served(bedrock_pool):
    cheap, dear = Prices.of(1.5, 7.5), Prices.of(3.0, 15.0)
    claude = GuardedClaude({"sonnet": [bedrock_pool("us-east-1", rpm=1, prices=dear),
                                       bedrock_pool("us-west-2", prices=cheap)]})
    first, second = call(claude), call(claude)
    assert (first.pool, second.pool) == ("bedrock@us-east-1", "bedrock@us-west-2")
    assert first.cost_usd == pytest.approx(dear.cost_usd(first.usage))
    assert second.cost_usd == pytest.approx(cheap.cost_usd(second.usage))
    assert second.cost_usd < first.cost_usd


def test_an_outage_fails_over_within_the_call_and_opens_the_breaker(bedrock_pool, emulator):
    wall = FakeClock()
    claude = GuardedClaude({"sonnet": [bedrock_pool("us-east-1", rpm=100),
                                       bedrock_pool("us-west-2", rpm=100)]},
                           breaker={"failure_threshold": 2, "open_s": 5.0, "view_ttl_s": 0.001},
                           wall_clock=wall)
    emulator.outage("us-east-1", for_s=600)
    results = [call(claude) for _ in range(4)]
    assert all(r.status == "ok" for r in results), [r.error or r.reason for r in results]
    assert all(r.pool == "bedrock@us-west-2" for r in results)
    # two failures opened pool A's breaker: later calls skip it without sending
    assert emulator.stats()["pools"]["us-east-1"]["faults"] == 2
    # (Bedrock answers an outage with 503 ServiceUnavailableException: an upstream error)
    assert [r.attempts for r in results] == [2, 2, 1, 1]
    breaker = claude.routes["sonnet"][0].breaker
    assert breaker.view().state == "open"
    # each answer says which pools' breakers it saw open (PoolBreakerOpen)
    assert results[-1].pool_breakers == {"bedrock@us-east-1": True, "bedrock@us-west-2": False}
    # the outage ends; after open_s one caller probes pool A and traffic returns to it
    emulator.reset()
    wall.advance(5.0)
    back = call(claude)
    assert back.status == "ok" and back.pool == "bedrock@us-east-1"
    assert breaker.view().state == "closed"
    assert back.pool_breakers == {"bedrock@us-east-1": False, "bedrock@us-west-2": False}
    assert call(claude).pool == "bedrock@us-east-1"


def test_callers_see_a_deferral_not_an_error_when_every_pool_is_down(bedrock_pool, emulator):
    claude = GuardedClaude({"sonnet": [bedrock_pool("us-east-1", rpm=100),
                                       bedrock_pool("us-west-2", rpm=100)]})
    emulator.outage("us-east-1", for_s=600)
    emulator.outage("us-west-2", for_s=600)
    result = call(claude)
    assert result.status == "deferred" and result.retry_after > 0
    assert result.attempts == 2


def test_background_work_uses_flex_first_interactive_does_not(bedrock_pool, emulator):
    claude = GuardedClaude({"sonnet": [bedrock_pool("us-east-1"),
                                       bedrock_pool("us-east-1", tier="flex")]})
    background = call(claude, priority="background")
    interactive = call(claude)
    assert background.pool == "bedrock@us-east-1/flex"
    assert background.message.usage.service_tier == "flex"  # the header reached Bedrock
    assert interactive.pool == "bedrock@us-east-1"


def test_anthropic_api_and_bedrock_side_by_side(bedrock_pool, emulator, bucket_table, dynamodb,
                                                clock):
    import anthropic

    api = TokenBucket(bucket_table, "anthropic#sonnet-4", Limits(rpm=1, itpm=30000, otpm=8000),
                      dynamodb, clock=clock, clamp_margin_s=0.0)
    sdk = anthropic.Anthropic(base_url=emulator.base_url, api_key="test-key")
    claude = GuardedClaude({"sonnet": [
        Pool(api, provider="anthropic", model="claude-sonnet-4-6", sdk_client=sdk),
        bedrock_pool("us-west-2")]})
    first, second = call(claude), call(claude)
    assert (first.pool, second.pool) == ("anthropic", "bedrock@us-west-2")
    assert first.status == second.status == "ok"
    assert first.headers.get("anthropic-ratelimit-requests-limit")  # the API's own headers


def test_a_single_bucket_model_beside_pools_keeps_working(bedrock_pool, emulator, bucket_table,
                                                          dynamodb, clock):
    import anthropic

    api = TokenBucket(bucket_table, "anthropic#haiku", Limits(rpm=5, itpm=30000, otpm=8000),
                      dynamodb, clock=clock)
    sdk = anthropic.Anthropic(base_url=emulator.base_url, api_key="test-key")
    claude = GuardedClaude({"sonnet": [bedrock_pool("us-east-1")],
                            "claude-haiku-4-5": api}, sdk_client=sdk)
    result = claude.create(model="claude-haiku-4-5", max_tokens=32, messages=PROMPT)
    assert result.status == "ok" and result.pool == "anthropic"


def test_unknown_model_and_bad_input_are_clear_errors(bedrock_pool):
    claude = GuardedClaude({"sonnet": [bedrock_pool("us-east-1")]})
    assert claude.create(model="opus", max_tokens=8, messages=PROMPT).error["type"] == \
        "unknown_model"
    assert "max_tokens" in claude.create(model="sonnet", max_tokens=0,
                                         messages=PROMPT).error["message"]
    with pytest.raises(ValueError, match="names must differ"):
        GuardedClaude({"sonnet": [bedrock_pool("us-east-1"), bedrock_pool("us-east-1")]})


def test_a_call_booked_ahead_is_not_sent_into_a_pool_whose_breaker_opened_meanwhile(
        bedrock_pool, emulator, bucket_table, dynamodb):
    from guard.breaker import CircuitBreaker

    wall, mono = FakeClock(), FakeClock(0.0)
    pool_a, pool_b = bedrock_pool("us-east-1", rpm=1), bedrock_pool("us-west-2", rpm=1)
    other_caller = CircuitBreaker(bucket_table, "sonnet#bedrock@us-east-1", dynamodb,
                                  clock=wall, failure_threshold=3)
    slept = []

    def sleep(seconds):  # while this call waits for its booked start, A fails for another
        slept.append(seconds)
        wall.advance(seconds)
        mono.advance(seconds)
        if len(slept) == 1:
            for _ in range(3):
                other_caller.record_failure()

    claude = GuardedClaude({"sonnet": [pool_a, pool_b]}, wall_clock=wall, sleep=sleep,
                           clock=mono, breaker={"failure_threshold": 3, "view_ttl_s": 0.5})
    assert call(claude).pool == "bedrock@us-east-1"
    pool_b.bucket.try_acquire(1, 10, 10)  # B is full too: the next call books ahead on A
    late = claude.create(model="sonnet", max_tokens=64, messages=PROMPT, deadline_s=120)
    assert late.status == "ok" and late.pool == "bedrock@us-west-2"
    assert emulator.stats()["pools"]["us-east-1"]["admitted"] == 1  # nothing more sent to A
    assert slept and slept[0] > 50  # it had booked a minute ahead on A


def test_the_router_books_with_the_tenant_class_and_the_ticket_each_pool_issued(
        emulator, bucket_table, dynamodb, clock, monkeypatch):
    """Fair share across pools: every booking carries the caller's tenant and class, and a
    deferred call's tickets go back to the pools that issued them (each pool its own queue)."""
    import anthropic

    from guard import Grant, TenantShare

    def make(region):
        sdk = anthropic.AnthropicBedrock(base_url=emulator.pool_url(region), aws_region=region,
                                         aws_access_key="testing", aws_secret_key="testing")
        limits = Limits(rpm=4, tpm=1_000_000, output_burndown=5,
                        tenants={"acme": TenantShare(), "globex": TenantShare()})
        return Pool(TokenBucket(bucket_table, f"bedrock#{region}#fair", limits, dynamodb,
                                clock=clock), provider="bedrock", model=PROFILE,
                    aws_region=region, sdk_client=sdk)

    pools = [make("us-east-1"), make("us-west-2")]
    seen, tickets = [], iter([101.0, 102.0])
    for pool in pools:
        real = pool.bucket.try_acquire

        def acquire(*args, _real=real, _id=pool.bucket.bucket_id, **kwargs):
            seen.append((_id, kwargs.get("tenant"), kwargs.get("priority"), kwargs.get("ticket")))
            ticket = next(tickets, None)
            if ticket is not None:  # the first call: each pool queues it
                return Grant(False, 5.0, "fair_share", ticket=ticket)
            return _real(*args, **kwargs)

        monkeypatch.setattr(pool.bucket, "try_acquire", acquire)
    claude = GuardedClaude({"sonnet": pools})
    deferred = call(claude, tenant="acme", priority="background")
    assert deferred.status == "deferred" and deferred.ticket in (101.0, 102.0)
    assert deferred.tenant == "acme"
    seen.clear()
    served = call(claude, tenant="acme", priority="background", ticket=deferred.ticket)
    assert served.status == "ok", served.error
    assert seen[0] == ("bedrock#us-east-1#fair", "acme", "background", 101.0)


def test_background_work_moves_from_a_refusing_flex_pool_to_default_within_the_call(
        bedrock_pool, emulator):
    """The emulator refuses flex while its buckets are below the flex headroom (half of their
    capacity): the refused call is served by the default pool in the same create() (one more
    attempt), and the flex pool's cool-down sends the next background call to default at once."""
    flex_price, default_price = Prices.of(1.5, 7.5), Prices.of(3.0, 15.0)
    claude = GuardedClaude({"sonnet": [bedrock_pool("us-east-1", prices=default_price),
                                       bedrock_pool("us-east-1", tier="flex",
                                                    prices=flex_price)]})
    results = [call(claude, priority="background") for _ in range(4)]
    assert all(r.status == "ok" for r in results), [r.error or r.reason for r in results]
    assert [r.pool for r in results] == ["bedrock@us-east-1/flex"] * 2 + ["bedrock@us-east-1"] * 2
    assert [r.attempts for r in results] == [1, 1, 2, 1]
    assert [r.upstream_429 for r in results] == [0, 0, 1, 0]
    assert results[0].cost_usd == pytest.approx(flex_price.cost_usd(results[0].usage))
    assert results[2].cost_usd == pytest.approx(default_price.cost_usd(results[2].usage))


def test_a_model_with_one_pool_beside_pooled_models_still_retries_a_529(
        bedrock_pool, emulator, bucket_table, dynamodb, clock):
    import anthropic

    api = TokenBucket(bucket_table, "anthropic#haiku", Limits(rpm=50, itpm=30000, otpm=8000),
                      dynamodb, clock=clock)
    sdk = anthropic.Anthropic(base_url=emulator.base_url, api_key="test-key")
    claude = GuardedClaude({"sonnet": [bedrock_pool("us-east-1"), bedrock_pool("us-west-2")],
                            "claude-haiku-4-5": api}, sdk_client=sdk, sleep=lambda s: None)
    emulator.inject("529", count=1)
    result = claude.create(model="claude-haiku-4-5", max_tokens=32, messages=PROMPT,
                           deadline_s=30)
    assert result.status == "ok", (result.reason, result.error)
    assert (result.attempts, result.upstream_529) == (2, 1)


def test_a_flex_429_lowers_the_flex_pool_for_every_caller_until_probed_back_up(
        bedrock_pool, emulator, clock):
    """Bedrock sheds flex work (the emulator: flex refused while its buckets are below half):
    the first 429 lowers the flex pool's capacity on its bucket item, so once the cool-down is
    over neither this caller nor another container books flex into the refusal again (old:
    the flex pool's bucket still had room, and the next call met a second 429); flex stays
    first and, after HOLD_S without a 429, a success probes the capacity back up."""
    from guard.flex_headroom import HOLD_S, PROBE_STEP

    def router():
        return GuardedClaude({"sonnet": [bedrock_pool("us-east-1"),
                                         bedrock_pool("us-east-1", tier="flex")]})

    claude, flex = router(), "bedrock@us-east-1/flex"
    first = [call(claude, priority="background") for _ in range(3)]
    assert [(r.status, r.pool, r.upstream_429) for r in first] == [
        ("ok", flex, 0), ("ok", flex, 0), ("ok", "bedrock@us-east-1", 1)]
    bucket = claude.routes["sonnet"][1].pool.bucket
    assert bucket.view.capacities["requests"] == 2.0  # 4 RPM, halved
    clock.advance(2.0)  # past the flex pool's cool-down
    later = [call(claude, priority="background"), call(router(), priority="background")]
    assert [(r.status, r.pool, r.upstream_429) for r in later] == [
        ("ok", "bedrock@us-east-1", 0)] * 2
    assert emulator.stats()["rate_limited"] == 1
    # Bedrock serves flex again; the lowered pool has room again after a minute
    emulator.reset()
    clock.advance(max(HOLD_S, 60.0))
    back = call(claude, priority="background")
    assert (back.status, back.pool, back.upstream_429) == ("ok", flex, 0)
    assert bucket.view.capacities["requests"] == pytest.approx(2.0 + PROBE_STEP * 4)
