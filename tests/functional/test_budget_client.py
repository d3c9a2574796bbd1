"""GuardedClaude with budgets, against the Claude emulator and the local AWS server."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from guard import Budget, GuardedClaude, Limits, Prices, TokenBucket
from guard.budget import BudgetLedger
from guard.spend import LIMITS_KEY, LimitsSource
from local.fakes.claude_emulator import ClaudeEmulator

SONNET, HAIKU = "claude-sonnet-4-6", "claude-haiku-4-5"
PRICES = {SONNET: Prices(input=3.0, output=15.0, cache_write=3.75, cache_read=0.30),
          HAIKU: Prices(input=1.0, output=5.0)}
LIMITS = Limits(rpm=1000, itpm=1_000_000, otpm=1_000_000)
PROMPT = [{"role": "user", "content": "Summarise the quarterly report in three sentences."}]
NOON = datetime(2027, 1, 15, 12, tzinfo=timezone.utc).timestamp()


@pytest.fixture(scope="module")
def emulator():
    with ClaudeEmulator({"tier": "tier4", "output_tokens": 20}) as emu:
        yield emu


@pytest.fixture
def sdk(emulator):
    import anthropic

    return anthropic.Anthropic(base_url=emulator.base_url, api_key="test-key")


@pytest.fixture
def ledger(bucket_table, dynamodb):
    from tests.conftest import FakeClock

    return BudgetLedger(bucket_table, dynamodb, clock=FakeClock(NOON))


@pytest.fixture
def make_claude(bucket_table, dynamodb, sdk, ledger):
    def make(**kwargs):
        buckets = {model: TokenBucket(bucket_table, f"anthropic#{model}", LIMITS, dynamodb)
                   for model in PRICES}
        return GuardedClaude(buckets, sdk_client=sdk, prices=PRICES, budget_ledger=ledger,
                             **kwargs)

    return make


def spent_usd(ledger, scope):
    counters = ledger.snapshot().counters.get(scope, {})
    return (counters.get("d_used", 0) - counters.get("d_open", 0)) / 1e6


def test_a_tenant_over_its_daily_budget_is_rejected_before_any_claude_call(make_claude,
                                                                          ledger, emulator):
    # a call reserves ~ $0.0032 (input estimate + 200 output tokens) and spends ~ $0.0004
    claude = make_claude(budgets={"acme": Budget(usd_per_day=0.01)})
    answered = []
    while len(answered) < 100 and (not answered or answered[-1].status == "ok"):
        answered.append(claude.create(model=SONNET, max_tokens=200, messages=PROMPT,
                                      tenant="acme"))
    ok = [r for r in answered if r.status == "ok"]
    refused = [r for r in answered if r.status != "ok"]
    assert ok and refused
    assert {(r.status, r.reason, r.budget_action) for r in refused} == {
        ("rejected", "budget", "reject")}
    assert refused[0].attempts == 0 and refused[0].retry_after == pytest.approx(12 * 3600)
    spent = sum(PRICES[SONNET].cost_usd(r.usage) for r in ok)
    assert spent_usd(ledger, "tenant:acme") == pytest.approx(spent, abs=1e-5)
    assert spent <= 0.01


def test_other_tenants_and_calls_without_a_tenant_are_not_limited(make_claude):
    claude = make_claude(budgets={"acme": Budget(usd_per_day=0)})
    assert claude.create(model=SONNET, max_tokens=50, messages=PROMPT,
                         tenant="acme").reason == "budget"
    assert claude.create(model=SONNET, max_tokens=50, messages=PROMPT,
                         tenant="globex").status == "ok"
    assert claude.create(model=SONNET, max_tokens=50, messages=PROMPT).status == "ok"


def test_the_deployment_budget_limits_every_tenant(make_claude):
    claude = make_claude(budget=Budget(usd_per_day=0))
    result = claude.create(model=SONNET, max_tokens=50, messages=PROMPT, tenant="globex")
    assert (result.status, result.reason, result.budget_scope) == ("rejected", "budget",
                                                                    "deployment")


def test_degrade_calls_the_cheaper_model_when_the_budget_refuses_the_dearer(make_claude):
    # Sonnet's max cost (~$0.0152 for 1,000 tokens) does not fit $0.01; Haiku's (~$0.005) does
    claude = make_claude(budgets={"acme": Budget(usd_per_day=0.01, action="degrade",
                                                 degrade_to=HAIKU)})
    result = claude.create(model=SONNET, max_tokens=1000, messages=PROMPT, tenant="acme")
    assert result.status == "ok", result.error
    assert (result.model, result.degraded_from, result.budget_action) == (HAIKU, SONNET,
                                                                           "degrade")


def test_batch_action_is_reported_for_the_caller_to_queue(make_claude):
    claude = make_claude(budgets={"acme": Budget(usd_per_day=0, action="batch")})
    result = claude.create(model=SONNET, max_tokens=50, messages=PROMPT, tenant="acme")
    assert (result.status, result.budget_action) == ("rejected", "batch")


def test_a_stream_settles_its_budget_when_it_ends(make_claude, ledger):
    claude = make_claude(budgets={"acme": Budget(usd_per_day=1.0)})
    result = claude.stream(model=SONNET, max_tokens=200, messages=PROMPT, tenant="acme")
    assert ledger.snapshot().counters["tenant:acme"]["d_open"] > 0  # held while it streams
    with result.stream as stream:
        for _ in stream:
            pass
    counters = ledger.snapshot().counters["tenant:acme"]
    assert counters["d_open"] == 0
    assert counters["d_used"] == PRICES[SONNET].cost_micros(result.usage)


def test_one_extra_write_per_acquire_and_per_settle(make_claude, ledger):
    claude = make_claude(budgets={"acme": Budget(usd_per_day=1.0)})
    claude.create(model=SONNET, max_tokens=50, messages=PROMPT, tenant="acme")  # first read
    before = dict(ledger.writes)
    result = claude.create(model=SONNET, max_tokens=50, messages=PROMPT, tenant="acme")
    assert result.status == "ok" and result.budget_store_calls == 1
    assert {k: ledger.writes[k] - before[k] for k in before} == {"reserve": 1, "settle": 1}


def test_a_budget_changed_in_the_config_item_applies_without_a_new_client(
        make_claude, dynamodb, bucket_table):
    from tests.conftest import FakeClock

    clock = FakeClock(0.0)
    source = LimitsSource(bucket_table, dynamodb, ttl_s=30, clock=clock)
    claude = make_claude(budgets={"acme": Budget(usd_per_day=1.0)}, limits_source=source)
    assert claude.create(model=SONNET, max_tokens=50, messages=PROMPT,
                         tenant="acme").status == "ok"
    dynamodb.put_item(TableName=bucket_table, Item={
        "pk": {"S": LIMITS_KEY},
        "limits": {"M": {"version": {"N": "1"}, "tenants": {"M": {"acme": {"M": {
            "budget": {"M": {"usd_per_day": {"N": "0"}}}}}}}}}})
    clock.advance(31)  # past the cache's ttl
    result = claude.create(model=SONNET, max_tokens=50, messages=PROMPT, tenant="acme")
    assert (result.status, result.reason) == ("rejected", "budget")


def test_a_budget_for_an_unpriced_model_is_an_error_not_a_free_pass(bucket_table, dynamodb,
                                                                    sdk, ledger):
    bucket = TokenBucket(bucket_table, "anthropic#x", LIMITS, dynamodb)
    claude = GuardedClaude({SONNET: bucket}, sdk_client=sdk, budget_ledger=ledger,
                           budgets={"acme": Budget(usd_per_day=1.0)})
    result = claude.create(model=SONNET, max_tokens=50, messages=PROMPT, tenant="acme")
    assert result.status == "error" and result.error["type"] == "unpriced_model"


def test_a_budget_store_that_cannot_be_reached_defers_the_call_rather_than_reject_it(
        make_claude, bucket_table, dynamodb, emulator):
    from tests.conftest import FakeClock

    missing = BudgetLedger(f"{bucket_table}-missing", dynamodb, clock=FakeClock(NOON))
    buckets = {model: TokenBucket(bucket_table, f"anthropic#{model}", LIMITS, dynamodb)
               for model in PRICES}
    claude = GuardedClaude(buckets, sdk_client=make_claude().sdk, prices=PRICES,
                           budget_ledger=missing, budgets={"acme": Budget(usd_per_day=1.0)})
    result = claude.create(model=SONNET, max_tokens=50, messages=PROMPT, tenant="acme",
                           deadline_s=0)
    assert (result.status, result.reason) == ("deferred", "store_unavailable")
    assert result.retry_after > 0 and result.attempts == 0
