"""The guarded client against the Claude emulator and the local AWS server (both real HTTP)."""

from __future__ import annotations

import threading
import time

import pytest

from guard import GuardedClaude, Limits, TokenBucket
from local.fakes.claude_emulator import ClaudeEmulator

MODEL = "claude-sonnet-4-6"
# The emulator enforces these (per minute) for the Sonnet 4.x bucket; the guard is given the same.
SMALL = {"rpm": 120, "itpm": 12000, "otpm": 3000}
PROMPT = [{"role": "user", "content": "Summarise the quarterly report in three sentences."}]


@pytest.fixture(scope="module")
def emulator():
    with ClaudeEmulator({"tier": "tier1", "limits": {"sonnet-4": SMALL},
                         "output_tokens": 20}) as emu:
        yield emu


@pytest.fixture(autouse=True)
def fresh_emulator(emulator):
    emulator.reset(config=True)
    yield


@pytest.fixture
def sdk(emulator):
    import anthropic

    return anthropic.Anthropic(base_url=emulator.base_url, api_key="test-key")


@pytest.fixture
def make_claude(bucket_table, dynamodb, sdk, clock):
    def make(limits=SMALL, *, bucket=None, exact=True, **kwargs):
        # exact: the bucket's clock is frozen and has no idle margin, so the levels asserted
        # below are exact; the saturation test uses real time and the default margin (1 s)
        bucket = bucket or (TokenBucket(bucket_table, "anthropic#sonnet-4", Limits(**limits),
                                        dynamodb, clock=clock, clamp_margin_s=0.0) if exact
                            else TokenBucket(bucket_table, "anthropic#sonnet-4",
                                             Limits(**limits), dynamodb))
        return GuardedClaude({MODEL: bucket}, sdk_client=kwargs.pop("sdk_client", sdk),
                             **kwargs), bucket

    return make


def test_call_settles_actual_usage_and_observes_headers(make_claude, emulator):
    claude, bucket = make_claude()
    result = claude.create(model=MODEL, max_tokens=200, messages=PROMPT)
    assert result.status == "ok", result.error
    assert result.usage["output_tokens"] == 20
    assert result.usage["input_tokens"] == result.message.usage.input_tokens
    assert result.input_estimate >= result.usage["input_tokens"]
    # reserved 200 output tokens, used 20: the rest came back at settle
    assert bucket.level("output_tokens") == pytest.approx(3000 - 20, abs=0.01)
    assert result.headers["anthropic-ratelimit-requests-limit"] == "120"
    assert result.attempts == 1 and result.upstream_429 == 0


def test_sixteen_callers_saturating_a_small_quota_never_see_a_429(make_claude, emulator,
                                                                   bucket_table, dynamodb, sdk):
    results, lock = [], threading.Lock()
    end = time.monotonic() + 8.0

    def caller():
        claude, _ = make_claude(exact=False)
        while time.monotonic() < end:
            result = claude.create(model=MODEL, max_tokens=50, messages=PROMPT, deadline_s=5)
            with lock:
                results.append(result)

    threads = [threading.Thread(target=caller) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = {status: sum(r.status == status for r in results)
                for status in ("ok", "deferred", "error")}
    assert statuses["ok"] >= 30 and statuses["error"] == 0
    assert sum(r.local_throttles for r in results) > 0, "the quota was never saturated"
    assert sum(r.upstream_429 for r in results) == 0
    assert emulator.stats()["rate_limited"] == 0


def test_upstream_429_honours_retry_after_and_cools_every_caller(make_claude, emulator,
                                                                 bucket_table, dynamodb):
    claude, bucket = make_claude(exact=False)
    emulator.inject("429", count=1)
    result = claude.create(model=MODEL, max_tokens=50, messages=PROMPT)
    assert result.status == "ok" and result.attempts == 2 and result.upstream_429 == 1
    assert result.waited_s >= 1.0  # the 429's retry-after (1 s), jittered upwards

    emulator.inject("429", count=1)
    other = TokenBucket(bucket_table, "anthropic#sonnet-4", Limits(**SMALL), dynamodb)
    deferred = claude.create(model=MODEL, max_tokens=50, messages=PROMPT, deadline_s=0)
    assert (deferred.status, deferred.reason) == ("deferred", "upstream_429")
    refusal = other.try_acquire(1, 10, 10)
    assert refusal.reason == "cool_down" and refusal.retry_after > 0.5


def test_spend_limit_429_is_not_retried(make_claude, emulator):
    claude, _ = make_claude(exact=False)
    emulator.inject("spend_limit", count=1)
    result = claude.create(model=MODEL, max_tokens=50, messages=PROMPT)
    assert result.status == "error" and result.error["type"] == "spend_limit_reached"
    assert result.attempts == 1
    assert emulator.stats()["requests"] == 1


@pytest.mark.parametrize("kind, counter", [("529", "upstream_529"), ("500", None),
                                           ("504", None)])
def test_transient_upstream_errors_are_retried_with_backoff(make_claude, emulator, kind, counter):
    claude, _ = make_claude(exact=False)
    emulator.inject(kind, count=2)
    result = claude.create(model=MODEL, max_tokens=50, messages=PROMPT)
    assert result.status == "ok" and result.attempts == 3
    if counter:
        assert getattr(result, counter) == 2
    assert result.waited_s >= 0.5 + 1.0  # backoff 0.5 s, then 1 s


def test_retries_are_bounded_and_end_deferred_not_lost(make_claude, emulator):
    claude, _ = make_claude(max_attempts=3, exact=False)
    emulator.inject("529", count=10)
    result = claude.create(model=MODEL, max_tokens=50, messages=PROMPT)
    assert (result.status, result.reason, result.attempts) == ("deferred", "upstream_529", 3)
    assert result.retry_after > 0


def test_client_timeout_is_retried_and_charged_in_full(make_claude, emulator, sdk):
    claude, bucket = make_claude(sdk_client=sdk.with_options(timeout=0.5))
    emulator.inject("slow", count=1, delay_s=2.0)
    result = claude.create(model=MODEL, max_tokens=100, messages=PROMPT)
    assert result.status == "ok" and result.attempts == 2
    # the timed-out attempt keeps its whole reservation (100 output tokens); the second used 20
    assert bucket.level("output_tokens") == pytest.approx(3000 - 100 - 20, abs=0.01)


def test_short_deadline_defers_without_calling_claude(make_claude, emulator):
    claude, bucket = make_claude()
    while bucket.try_acquire(1, 0, 0).granted:
        pass
    result = claude.create(model=MODEL, max_tokens=50, messages=PROMPT, deadline_s=0.1)
    assert (result.status, result.reason, result.attempts) == ("deferred", "quota", 0)
    assert result.retry_after > 0.1
    assert emulator.stats()["requests"] == 0


def test_stream_settles_when_it_ends(make_claude):
    claude, bucket = make_claude()
    result = claude.stream(model=MODEL, max_tokens=300, messages=PROMPT)
    assert result.status == "ok"
    events = [event.type for event in result.stream]
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert result.usage["output_tokens"] == 20
    assert len(result.stream.text.split()) == 20
    assert bucket.level("output_tokens") == pytest.approx(3000 - 20, abs=0.01)


def test_stream_stopped_early_settles_the_whole_output_reservation(make_claude):
    claude, bucket = make_claude()
    result = claude.stream(model=MODEL, max_tokens=300, messages=PROMPT)
    with result.stream as stream:
        for event in stream:
            if event.type == "content_block_delta":
                break
    assert result.usage["output_tokens"] == 300
    assert bucket.level("output_tokens") == pytest.approx(3000 - 300, abs=0.01)


@pytest.mark.parametrize("call", ["create", "stream"])
def test_stream_true_in_the_sdk_spelling_streams_and_settles(make_claude, call):
    claude, bucket = make_claude()
    result = getattr(claude, call)(model=MODEL, max_tokens=300, messages=PROMPT, stream=True)
    assert result.status == "ok", result.error
    assert [event.type for event in result.stream][-1] == "message_stop"
    assert result.usage["output_tokens"] == 20
    assert bucket.level("output_tokens") == pytest.approx(3000 - 20, abs=0.01)


@pytest.mark.parametrize("call, stream, message", [
    ("stream", False, "stream=False contradicts stream()"),
    ("create", "yes", "stream must be True or False, got 'yes'"),
])
def test_a_contradictory_stream_flag_is_a_clear_error_before_any_grant(make_claude, emulator,
                                                                       call, stream, message):
    claude, bucket = make_claude()
    result = getattr(claude, call)(model=MODEL, max_tokens=300, messages=PROMPT, stream=stream)
    assert result.status == "error" and message in result.error["message"]
    assert emulator.stats()["requests"] == 0 and bucket.granted_acquires == 0


def test_a_tenant_call_names_an_unknown_tenant_and_a_deferred_one_keeps_its_ticket(
        make_claude, emulator, bucket_table, dynamodb, clock):
    from guard import TenantShare

    limits = Limits(**SMALL, tenants={"acme": TenantShare(), "globex": TenantShare()})
    bucket = TokenBucket(bucket_table, "anthropic#sonnet-4", limits, dynamodb, clock=clock,
                         clamp_margin_s=0.0)
    claude, _ = make_claude(bucket=bucket)
    unknown = claude.create(model=MODEL, max_tokens=50, messages=PROMPT, tenant="initech")
    assert unknown.status == "error" and unknown.error["type"] == "unknown_tenant"
    assert "initech" in unknown.error["message"] and emulator.stats()["requests"] == 0

    ok = claude.create(model=MODEL, max_tokens=50, messages=PROMPT, tenant="acme",
                       priority="background")
    assert (ok.status, ok.tenant, ok.priority) == ("ok", "acme", "background")

    globex = TokenBucket(bucket_table, "anthropic#sonnet-4", limits, dynamodb, clock=clock)
    assert globex.try_acquire(119, tenant="globex").granted   # the bucket is empty now
    while globex.try_acquire(1, max_wait_s=40, tenant="globex").granted:
        pass   # and globex queued 40 s ahead
    deferred = claude.create(model=MODEL, max_tokens=50, messages=PROMPT, tenant="acme",
                             deadline_s=0.2)
    assert deferred.status == "deferred" and deferred.ticket is not None
    seen = []
    original = bucket.try_acquire
    bucket.try_acquire = lambda *a, **k: seen.append(k["ticket"]) or original(*a, **k)
    again = claude.create(model=MODEL, max_tokens=50, messages=PROMPT, tenant="acme",
                          deadline_s=0.2)
    assert seen[0] == deferred.ticket   # the client kept the deferred call's place
    assert again.ticket == deferred.ticket   # still waiting: the same place, not a new one


def test_bedrock_mode_charges_output_burndown(emulator, bucket_table, dynamodb, clock):
    import anthropic

    model = "us.anthropic.claude-sonnet-4-20250514-v1:0"
    bucket = TokenBucket(bucket_table, "bedrock#sonnet-4", Limits(
        200, tpm=200000, output_burndown=5), dynamodb, clock=clock, clamp_margin_s=0.0)
    sdk = anthropic.AnthropicBedrock(base_url=emulator.bedrock_base_url, aws_region="us-east-1",
                                     aws_access_key="testing", aws_secret_key="testing")
    claude = GuardedClaude({model: bucket}, provider="bedrock", sdk_client=sdk)
    result = claude.create(model=model, max_tokens=100, messages=PROMPT)
    assert result.status == "ok", result.error
    used = result.usage["input_tokens"] + 5 * result.usage["output_tokens"]
    assert bucket.level("tokens") == pytest.approx(200000 - used, abs=0.01)
    streamed = claude.stream(model=model, max_tokens=100, messages=PROMPT)
    assert [e.type for e in streamed.stream][-1] == "message_stop"


@pytest.mark.parametrize("params, error_type, fragment", [
    ({"model": MODEL, "messages": PROMPT}, "invalid_request", "max_tokens must be a positive"),
    ({"model": MODEL, "max_tokens": 0, "messages": PROMPT}, "invalid_request", "max_tokens"),
    ({"model": MODEL, "max_tokens": 10, "messages": []}, "invalid_request", "messages"),
    ({"model": "claude-unknown", "max_tokens": 10, "messages": PROMPT}, "unknown_model",
     "claude-unknown"),
    ({"model": MODEL, "max_tokens": 10,
      "messages": [{"role": "user", "content": "word " * 40000}]}, "request_too_large",
     "input_tokens reservation"),
])
def test_bad_requests_get_a_clear_error_and_no_call(make_claude, emulator, params, error_type,
                                                    fragment):
    claude, _ = make_claude()
    result = claude.create(**params)
    assert result.status == "error" and result.error["type"] == error_type
    assert fragment in result.error["message"]
    assert emulator.stats()["requests"] == 0


# --- grant, then send at once ----------------------------------------------------------------

class RecordingBucket:
    """A real bucket that also records, in `events`, when each acquire happened."""

    def __init__(self, bucket, events):
        self._bucket, self.events = bucket, events

    def try_acquire(self, *args, **kwargs):
        self.events.append("acquire")
        return self._bucket.try_acquire(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._bucket, name)


def test_sdk_client_and_api_key_are_ready_before_the_first_acquire(emulator, bucket_table,
                                                                    dynamodb, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_BASE_URL", emulator.base_url)
    events = []

    def api_key():
        events.append("api_key")
        return "test-key"

    bucket = RecordingBucket(TokenBucket(bucket_table, "anthropic#sonnet-4", Limits(**SMALL),
                                         dynamodb), events)
    claude = GuardedClaude({MODEL: bucket}, api_key=api_key)  # builds its own SDK client
    result = claude.create(model=MODEL, max_tokens=50, messages=PROMPT)
    assert result.status == "ok", result.error
    assert events == ["api_key", "acquire"]
    assert len(result.grant_to_send_s) == 1 and len(result.charge_to_send_s) == 1
    assert result.charge_to_send_s[0] >= result.grant_to_send_s[0] >= 0


def test_a_grant_too_old_at_send_is_given_back_and_acquired_again(make_claude, emulator, sdk):
    delays = [0.4]  # the first send is held up 0.4 s after its grant, the next is not

    def slow_first_send(request):
        if delays:
            time.sleep(delays.pop())

    sdk = sdk.with_options(max_retries=0)
    sdk._client.event_hooks = {"request": [slow_first_send], "response": []}
    claude, bucket = make_claude(sdk_client=sdk, max_grant_age_s=0.25)
    result = claude.create(model=MODEL, max_tokens=50, messages=PROMPT)
    assert result.status == "ok" and result.stale_grants == 1 and result.attempts == 1
    assert emulator.stats()["requests"] == 1  # the stale grant's request was never sent
    # the stale grant was refunded in full (its request too): one request charged, not two
    assert bucket.level("requests") == pytest.approx(SMALL["rpm"] - 1, abs=0.01)
    assert result.grant_to_send_s[0] < 0.25


def test_the_sdk_timeout_is_bounded_by_the_time_left(make_claude, emulator):
    claude, _ = make_claude(exact=False, max_attempts=1)
    emulator.inject("slow", count=1, delay_s=20.0)
    result = claude.create(model=MODEL, max_tokens=50, messages=PROMPT,
                           time_left_s=lambda: 2.5)
    # with the default 120 s timeout the slow answer would have come back "ok" after 20 s
    assert (result.status, result.reason) == ("deferred", "upstream_error")


def test_too_little_time_left_defers_without_calling_claude(make_claude, emulator):
    claude, bucket = make_claude(min_call_s=2.0)
    result = claude.create(model=MODEL, max_tokens=50, messages=PROMPT,
                           time_left_s=lambda: 1.5)
    assert result.status == "deferred" and result.attempts == 0
    assert emulator.stats()["requests"] == 0
    assert bucket.level("requests") == pytest.approx(SMALL["rpm"], abs=0.01)


def test_a_401_refreshes_the_api_key_once_and_retries(emulator, make_claude, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_BASE_URL", emulator.base_url)
    emulator.configure(revoked_api_keys=["old-key"])
    keys = {"current": "old-key"}
    fetches = []

    def api_key(refresh=False):
        fetches.append(refresh)
        if refresh:
            keys["current"] = "new-key"  # the secret was rotated meanwhile
        return keys["current"]

    claude, _ = make_claude(sdk_client=None, api_key=api_key)
    result = claude.create(model=MODEL, max_tokens=50, messages=PROMPT)
    assert result.status == "ok" and result.attempts == 2
    assert fetches == [False, True]

    emulator.configure(revoked_api_keys=["old-key", "new-key"])  # still revoked after refresh
    again = claude.create(model=MODEL, max_tokens=50, messages=PROMPT)
    assert again.status == "error" and again.error["type"] == "authentication_error"
    assert fetches == [False, True, True]


# --- scheduled reservations ------------------------------------------------------------------

def drain_and_book_next_slot(bucket):
    """Empty the bucket, then book the next slot, so the next booking starts one slot (3 s at
    20 RPM) to two slots ahead."""
    while bucket.try_acquire(1, 0, 0).granted:
        pass
    assert bucket.try_acquire(1, 0, 0, max_wait_s=60).granted

def test_a_booked_caller_sleeps_until_its_start_then_sends(make_claude, emulator, bucket_table,
                                                           dynamodb):
    limits = {"rpm": 20, "itpm": 12000, "otpm": 3000}   # one request every 3 s once drained
    bucket = TokenBucket(bucket_table, "anthropic#sonnet-4", Limits(**limits), dynamodb)
    drain_and_book_next_slot(bucket)
    claude, _ = make_claude(bucket=bucket)
    result = claude.create(model=MODEL, max_tokens=50, messages=PROMPT, deadline_s=10)
    assert result.status == "ok" and result.local_throttles == 0   # booked, not polled
    assert 2.0 < result.queue_s <= 6.6   # behind the slot booked before it
    assert result.store_calls == 1 and result.store_reads == 1   # one booking, one cool check
    assert result.grant_to_send_s[0] < 0.25   # measured from the booked start


def test_a_cool_down_set_after_a_booking_is_not_sent_into(make_claude, emulator, sdk,
                                                          bucket_table, dynamodb):
    limits = Limits(rpm=20, itpm=12000, otpm=3000)
    bucket = TokenBucket(bucket_table, "anthropic#sonnet-4", limits, dynamodb)
    drain_and_book_next_slot(bucket)
    booked = threading.Event()

    class Signalling(RecordingBucket):
        def try_acquire(self, *args, **kwargs):
            grant = super().try_acquire(*args, **kwargs)
            if grant.granted:
                booked.set()
            return grant

    sent_at = []
    sdk = sdk.with_options(max_retries=0)
    sdk._client.event_hooks = {"request": [lambda request: sent_at.append(time.time())],
                               "response": []}
    claude, _ = make_claude(bucket=Signalling(bucket, []), sdk_client=sdk)
    outcome = []
    caller = threading.Thread(target=lambda: outcome.append(claude.create(
        model=MODEL, max_tokens=50, messages=PROMPT, deadline_s=20)))
    caller.start()
    assert booked.wait(10)
    other = TokenBucket(bucket_table, "anthropic#sonnet-4", limits, dynamodb)
    cool_until = other.cool_down(6.0)   # an upstream 429 elsewhere, after the booking
    caller.join(30)
    result = outcome[0]
    assert result.status == "ok" and result.cool_down_rebooks == 1
    assert len(sent_at) == 1 and sent_at[0] >= cool_until
    assert emulator.stats()["requests"] == 1


def test_poll_scheduling_refuses_and_retries_instead_of_booking(make_claude, bucket_table,
                                                                dynamodb):
    limits = {"rpm": 20, "itpm": 12000, "otpm": 3000}
    bucket = TokenBucket(bucket_table, "anthropic#sonnet-4", Limits(**limits), dynamodb)
    while bucket.try_acquire(1, 0, 0).granted:
        pass
    claude, _ = make_claude(bucket=bucket, scheduling="poll")
    result = claude.create(model=MODEL, max_tokens=50, messages=PROMPT, deadline_s=10)
    assert result.status == "ok" and result.local_throttles >= 1 and result.queue_s == 0


def _cold_fleet(make_claude, bucket_table, dynamodb, limits, seconds=6.0, callers=16):
    """`callers` threads, each its own bucket client and guard, start together on a full
    bucket and call for `seconds`."""
    results, lock = [], threading.Lock()
    start = threading.Barrier(callers)

    def caller():
        bucket = TokenBucket(bucket_table, "anthropic#sonnet-4", limits, dynamodb)
        claude, _ = make_claude(bucket=bucket)
        start.wait()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            result = claude.create(model=MODEL, max_tokens=20, messages=PROMPT,
                                   deadline_s=max(0.0, end - time.monotonic()))
            with lock:
                results.append(result)

    threads = [threading.Thread(target=caller) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_burst_fraction_keeps_a_cold_fleet_under_the_acceleration_limit(
        make_claude, emulator, bucket_table, dynamodb):
    # the emulator refuses more than 25% of the RPM capacity (30 of 120) within 5 s
    emulator.configure(accel_fraction=0.25, accel_window_s=5.0)
    unshaped = _cold_fleet(make_claude, bucket_table, dynamodb, Limits(**SMALL))
    refused_unshaped = emulator.stats()["rate_limited"]
    assert refused_unshaped > 0, "a full-bucket burst must trip the acceleration rule"
    assert sum(r.status == "ok" for r in unshaped) > 0

    emulator.reset()
    emulator.configure(accel_fraction=0.25, accel_window_s=5.0)
    other_table = bucket_table + "-shaped"
    from guard import ensure_table
    ensure_table(dynamodb, other_table)
    # burst 10% = 12 requests at once, then 2/s: at most 22 in any 5 s window
    shaped = _cold_fleet(make_claude, other_table, dynamodb,
                         Limits(**SMALL, burst_fraction=0.1))
    assert emulator.stats()["rate_limited"] == 0
    assert sum(r.status == "ok" for r in shaped) >= 12   # the shaped fleet used its burst
