"""The Claude emulator (local/fakes/claude_emulator/) through the real `anthropic` SDK over
HTTP."""

from __future__ import annotations

import json
import math
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone

import pytest

from local.fakes.claude_emulator import ClaudeEmulator, count_request_input_tokens, count_tokens

MODEL = "claude-sonnet-4-6"
BEDROCK_MODEL = "us.anthropic.claude-sonnet-4-20250514-v1:0"
PROMPT = [{"role": "user", "content": "Summarise the quarterly report in three sentences."}]
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")

pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")


@pytest.fixture(scope="module")
def emulator():
    with ClaudeEmulator({"tier": "tier1"}) as emu:
        yield emu


@pytest.fixture(autouse=True)
def fresh(emulator):
    emulator.reset(config=True)
    yield


@pytest.fixture
def client(emulator):
    import anthropic

    return anthropic.Anthropic(base_url=emulator.base_url, api_key="test-key", max_retries=0)


@pytest.fixture
def bedrock(emulator):
    import anthropic

    return anthropic.AnthropicBedrock(base_url=emulator.bedrock_base_url, aws_region="us-east-1",
                                      aws_access_key="testing", aws_secret_key="testing",
                                      max_retries=0)


def post(emulator, path, payload, headers=None):
    """Raw POST (for bodies the SDK would refuse to send); returns (status, headers, json)."""
    headers = {"content-type": "application/json", "x-api-key": "k",
               "anthropic-version": "2023-06-01", **(headers or {})}
    request = urllib.request.Request(emulator.base_url + path, data=json.dumps(payload).encode(),
                                     headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, err.headers, json.loads(err.read())


# -- token counting ------------------------------------------------------------------------------

def test_count_tokens_rule():
    assert count_tokens("") == 0
    assert count_tokens("a") == 1 and count_tokens("abcd") == 1 and count_tokens("abcde") == 2
    assert count_tokens("Hello, world!") == 2 + 1 + 2 + 1
    assert count_tokens("123") == 1 and count_tokens("1234") == 2 and count_tokens("3.14") == 3
    assert count_tokens("café") == 1 + 1  # "caf" + one non-ASCII character
    assert count_tokens("日本語") == 3
    assert count_tokens("snake_case") == 2 + 1 + 1
    body = {"model": MODEL, "max_tokens": 10, "system": "Be brief.",
            "tools": [{"name": "t", "input_schema": {"type": "object"}}],
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "hi"}, {"type": "image", "source": {}}]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "x", "name": "t", "input": {"a": 1}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "x", "content": "ok"}]}]}
    tool_tokens = count_tokens(json.dumps({"name": "t", "input_schema": {"type": "object"}}))
    expected = (10 + count_tokens("Be brief.") + tool_tokens + 3 * 3 + 1 + 1600
                + count_tokens(json.dumps({"a": 1})) + 1)
    assert count_request_input_tokens(body) == expected


# -- Messages API --------------------------------------------------------------------------------

def test_non_stream_message_is_deterministic_and_counted(client):
    first = client.messages.create(model=MODEL, max_tokens=100, messages=PROMPT)
    again = client.messages.create(model=MODEL, max_tokens=100, messages=PROMPT)
    assert first.type == "message" and first.role == "assistant" and first.model == MODEL
    assert first.stop_reason == "end_turn"
    assert first.usage.output_tokens == 50 == len(first.content[0].text.split())
    assert count_tokens(first.content[0].text) == 50
    assert first.usage.input_tokens == count_request_input_tokens(
        {"messages": PROMPT}) == 10 + 3 + count_tokens(PROMPT[0]["content"])
    assert first.usage.cache_creation_input_tokens == 0 == first.usage.cache_read_input_tokens
    assert first.content[0].text == again.content[0].text and first.id != again.id
    other = client.messages.create(model=MODEL, max_tokens=100,
                                   messages=[{"role": "user", "content": "Something else"}])
    assert other.content[0].text != first.content[0].text


def test_output_directive_and_max_tokens_cap(client, emulator):
    seven = client.messages.create(model=MODEL, max_tokens=100, messages=[
        {"role": "user", "content": "Answer briefly.\nEMULATOR: output 7"}])
    assert seven.usage.output_tokens == 7 and len(seven.content[0].text.split()) == 7
    capped = client.messages.create(model=MODEL, max_tokens=5, messages=PROMPT)
    assert capped.usage.output_tokens == 5 and capped.stop_reason == "max_tokens"
    emulator.configure(output_tokens=12)
    assert client.messages.create(model=MODEL, max_tokens=100,
                                  messages=PROMPT).usage.output_tokens == 12


def test_answer_directive_answers_the_text_given(client):
    scripted = client.messages.create(model=MODEL, max_tokens=100, messages=[
        {"role": "user", "content": "Label it.\nEMULATOR: answer 5 漢字"}])
    assert scripted.content[0].text == "漢字" * 5
    assert scripted.usage.output_tokens == min(100, count_tokens("漢字" * 5))


def test_stream_parses_with_sdk_helpers(client):
    with client.messages.stream(model=MODEL, max_tokens=100, messages=PROMPT) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) == 50 and "".join(pieces) == final.content[0].text
    assert final.usage.output_tokens == 50 and final.stop_reason == "end_turn"
    assert final.usage.input_tokens == count_request_input_tokens({"messages": PROMPT})
    plain = client.messages.create(model=MODEL, max_tokens=100, messages=PROMPT)
    assert final.content[0].text == plain.content[0].text  # same request, same answer

    events = [event.type for event in client.messages.create(
        model=MODEL, max_tokens=3, messages=PROMPT, stream=True)]
    assert events == ["message_start", "content_block_start", "content_block_delta",
                      "content_block_delta", "content_block_delta", "content_block_stop",
                      "message_delta", "message_stop"]


def test_rate_limit_headers_are_present_rounded_and_dated(client):
    raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=1000,
                                                   messages=PROMPT)
    h = raw.headers
    message = raw.parse()
    assert h["request-id"].startswith("req_")
    assert h["anthropic-ratelimit-requests-limit"] == "50"
    assert h["anthropic-ratelimit-requests-remaining"] == "49"  # exact, floored
    assert h["anthropic-ratelimit-input-tokens-limit"] == "30000"
    assert h["anthropic-ratelimit-output-tokens-limit"] == "8000"
    # 8000 - 1000 reserved: 7000 at admission
    assert h["anthropic-ratelimit-output-tokens-remaining"] == "7000"
    assert h["anthropic-ratelimit-input-tokens-remaining"] == "30000"  # 30000 - 21, rounded
    assert h["anthropic-ratelimit-tokens-limit"] == "8000"  # the tighter of the two
    assert h["anthropic-ratelimit-tokens-remaining"] == "7000"
    now = datetime.now(timezone.utc).timestamp()
    for dim in ("requests", "input-tokens", "output-tokens", "tokens"):
        assert int(h[f"anthropic-ratelimit-{dim}-remaining"]) >= 0
        reset = h[f"anthropic-ratelimit-{dim}-reset"]
        assert RFC3339.match(reset), reset
        at = datetime.strptime(reset, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        assert now - 2 <= at.timestamp() <= now + 62
    for dim in ("input-tokens", "output-tokens", "tokens"):
        assert int(h[f"anthropic-ratelimit-{dim}-remaining"]) % 1000 == 0
    # 1 request of 50/min is replenished in 1.2 s; 1000 output tokens of 8000/min in 7.5 s
    req_reset = datetime.strptime(h["anthropic-ratelimit-requests-reset"], "%Y-%m-%dT%H:%M:%SZ")
    out_reset = datetime.strptime(h["anthropic-ratelimit-output-tokens-reset"],
                                  "%Y-%m-%dT%H:%M:%SZ")
    assert 6 <= (out_reset - req_reset).total_seconds() <= 8
    assert message.usage.output_tokens == 50


def test_requests_limit_refuses_with_published_body_and_consumes_nothing(client, emulator):
    import anthropic

    emulator.configure(limits={"sonnet-4": {"rpm": 2}})
    for _ in range(2):
        client.messages.create(model=MODEL, max_tokens=10, messages=PROMPT)
    before = emulator.stats()["buckets"]["sonnet-4"]
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(model=MODEL, max_tokens=10, messages=PROMPT)
    err = caught.value
    retry_after = int(err.response.headers["retry-after"])
    assert 28 <= retry_after <= 30  # one request of 2/min refills in 30 s
    assert err.body["type"] == "error" and err.body["error"]["type"] == "rate_limit_error"
    assert "would exceed the rate limit for your organization" in err.body["error"]["message"]
    assert "of 2 requests per minute" in err.body["error"]["message"]
    assert err.body["request_id"] == err.response.headers["request-id"] == err.request_id
    assert err.response.headers["anthropic-ratelimit-requests-remaining"] == "0"
    stats = emulator.stats()
    assert stats["rate_limited"] == 1 and stats["rate_limited_by"] == {"requests": 1}
    assert stats["families"]["sonnet-4"]["requests"] == 2
    after = stats["buckets"]["sonnet-4"]
    for dim in ("input_tokens", "output_tokens"):  # only refilled meanwhile, nothing taken
        assert after[dim]["level"] >= before[dim]["level"]
    assert after["requests"]["level"] >= before["requests"]["level"]
    # other families have their own buckets; Sonnet versions share one
    assert client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=PROMPT)
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(model="claude-sonnet-4-5-20250929", max_tokens=10,
                               messages=PROMPT)


def test_continuous_refill_admits_after_retry_after(client, emulator):
    import anthropic

    emulator.configure(limits={"haiku-4.5": {"rpm": 60}})  # 1 request per second
    admitted = 0
    started = time.monotonic()
    with pytest.raises(anthropic.RateLimitError) as caught:
        while True:
            client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=PROMPT)
            admitted += 1
    elapsed = time.monotonic() - started
    assert 60 <= admitted <= 60 + math.ceil(elapsed) + 1  # capacity 60, plus what refilled
    assert caught.value.response.headers["retry-after"] == "1"
    time.sleep(1.0)
    assert client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=PROMPT)
    with pytest.raises(anthropic.RateLimitError):  # only one came back
        client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=PROMPT)


def test_input_tokens_limit_and_oversized_prompt(client, emulator):
    import anthropic

    emulator.configure(limits={"sonnet-4": {"itpm": 1000}})
    big = [{"role": "user", "content": "word " * 600}]  # 613 input tokens
    client.messages.create(model=MODEL, max_tokens=10, messages=big)
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(model=MODEL, max_tokens=10, messages=big)
    assert "of 1,000 input tokens per minute" in caught.value.body["error"]["message"]
    # needs 613, has 387 (+ a little refill) at 1000/60 per second: about 13.6 s
    assert 12 <= int(caught.value.response.headers["retry-after"]) <= 14
    huge = [{"role": "user", "content": "word " * 1200}]
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(model=MODEL, max_tokens=10, messages=huge)
    assert "larger than 1,000 input tokens" in caught.value.body["error"]["message"]


def test_output_tokens_reserve_versus_produced(client, emulator):
    import anthropic

    emulator.configure(limits={"sonnet-4": {"otpm": 1000}})
    long_answer = [{"role": "user", "content": "EMULATOR: output 600"}]
    client.messages.create(model=MODEL, max_tokens=1000, messages=long_answer)
    # reserve: 500 max_tokens do not fit in the ~400 left, although only 50 would be produced
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(model=MODEL, max_tokens=500, messages=PROMPT)
    assert "of 1,000 output tokens per minute" in caught.value.body["error"]["message"]
    assert emulator.stats()["families"]["sonnet-4"]["output_tokens"] == 600

    emulator.reset()
    emulator.configure(otpm_mode="produced")
    client.messages.create(model=MODEL, max_tokens=1000, messages=long_answer)
    message = client.messages.create(model=MODEL, max_tokens=500, messages=PROMPT)
    assert message.usage.output_tokens == 50
    level = emulator.stats()["buckets"]["sonnet-4"]["output_tokens"]["level"]
    assert 350 - 1 <= level <= 350 + 20  # 1000 - 600 - 50, plus a little refill


def test_spend_limit_has_no_retry_after(client, emulator):
    import anthropic

    emulator.inject("spend_limit")
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(model=MODEL, max_tokens=10, messages=PROMPT)
    err = caught.value
    assert "retry-after" not in err.response.headers
    assert err.body["error"]["details"]["error_code"] == "enforced_spend_limit_reached"
    assert err.error_code == "enforced_spend_limit_reached"
    assert type(err).__name__ == "EnforcedSpendLimitReachedError"
    stats = emulator.stats()
    assert stats["injected"] == {"spend_limit": 1} and stats["rate_limited"] == 0
    assert client.messages.create(model=MODEL, max_tokens=10, messages=PROMPT)  # one-shot


@pytest.mark.parametrize("kind, error_class, status, error_type", [
    ("529", "OverloadedError", 529, "overloaded_error"),
    ("500", "InternalServerError", 500, "api_error"),
    ("504", "GatewayTimeoutError", 504, "timeout_error"),
    ("429", "RateLimitError", 429, "rate_limit_error"),
])
def test_injected_faults_map_to_sdk_errors(client, emulator, kind, error_class, status,
                                           error_type):
    import anthropic

    emulator.inject(kind, count=2)
    for _ in range(2):
        with pytest.raises(getattr(anthropic, error_class)) as caught:
            client.messages.create(model=MODEL, max_tokens=10, messages=PROMPT)
        assert caught.value.status_code == status
        assert caught.value.body["error"]["type"] == error_type
        assert caught.value.body["request_id"].startswith("req_")
        if kind == "429":
            assert caught.value.response.headers["retry-after"] == "1"
        else:
            assert "retry-after" not in caught.value.response.headers
    assert client.messages.create(model=MODEL, max_tokens=10, messages=PROMPT).usage
    stats = emulator.stats()
    assert stats["injected"] == {kind: 2} and stats["rate_limited"] == 0
    assert stats["responses"] == {str(status): 2, "200": 1}
    assert stats["families"]["sonnet-4"]["requests"] == 1  # faults are not charged


def test_faults_can_target_a_model_and_carry_retry_after(client, emulator):
    import anthropic

    emulator.inject("529", model="opus-4", delay_s=3)
    emulator.inject("slow", model="claude-haiku-4-5", delay_s=0.3)
    assert client.messages.create(model=MODEL, max_tokens=10, messages=PROMPT)
    with pytest.raises(anthropic.OverloadedError) as caught:
        client.messages.create(model="claude-opus-4-1", max_tokens=10, messages=PROMPT)
    assert caught.value.response.headers["retry-after"] == "3"
    started = time.monotonic()
    assert client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=PROMPT)
    assert time.monotonic() - started >= 0.3
    assert emulator.stats()["faults_pending"] == 0
    with pytest.raises(ValueError, match="kind"):
        emulator.inject("418")


def test_prompt_caching_writes_then_reads(client, emulator):
    document = "The quarterly report covers revenue, costs and risks. " * 40
    system = [{"type": "text", "text": "You are terse."},
              {"type": "text", "text": document, "cache_control": {"type": "ephemeral"}}]
    prefix = 10 + count_tokens("You are terse.") + count_tokens(document)
    question = [{"role": "user", "content": "What are the risks?"}]
    rest = 3 + count_tokens("What are the risks?")

    started = time.monotonic()
    first = client.messages.create(model=MODEL, max_tokens=10, system=system, messages=question)
    assert first.usage.cache_creation_input_tokens == prefix
    assert first.usage.cache_read_input_tokens == 0 and first.usage.input_tokens == rest
    assert first.usage.cache_creation.ephemeral_5m_input_tokens == prefix

    other = [{"role": "user", "content": "And the costs?"}]
    second = client.messages.create(model=MODEL, max_tokens=10, system=system, messages=other)
    assert second.usage.cache_read_input_tokens == prefix
    assert second.usage.cache_creation_input_tokens == 0
    assert second.usage.input_tokens == 3 + count_tokens("And the costs?")

    with client.messages.stream(model=MODEL, max_tokens=10, system=system,
                                messages=question) as stream:
        streamed = stream.get_final_message()
    assert streamed.usage.cache_read_input_tokens == prefix

    # another family has its own cache; a changed prefix misses
    haiku = client.messages.create(model="claude-haiku-4-5", max_tokens=10, system=system,
                                   messages=question)
    assert haiku.usage.cache_creation_input_tokens == prefix
    changed = [system[0], {**system[1], "text": document + " Updated."}]
    miss = client.messages.create(model=MODEL, max_tokens=10, system=changed, messages=question)
    assert miss.usage.cache_read_input_tokens == 0 and miss.usage.cache_creation_input_tokens > 0

    # ITPM counts input + cache writes, not cache reads
    sonnet = emulator.stats()["families"]["sonnet-4"]
    assert sonnet["cache_read_input_tokens"] == 2 * prefix
    level = emulator.stats()["buckets"]["sonnet-4"]["input_tokens"]["level"]
    refill = 30000 / 60 * (time.monotonic() - started)  # at most this much came back meanwhile
    charged = sonnet["input_tokens"] + sonnet["cache_creation_input_tokens"]
    assert 30000 - charged - 1 <= level <= 30000 - charged + refill + 1
    emulator.reset()
    assert client.messages.create(model=MODEL, max_tokens=10, system=system,
                                  messages=question).usage.cache_read_input_tokens == 0


def test_tool_use_directive_and_tool_result(client):
    import anthropic

    tools = [{"name": "get_weather", "description": "Weather for a city",
              "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
             {"name": "get_time", "input_schema": {"type": "object"}}]
    ask = [{"role": "user", "content": 'Weather and time?\nEMULATOR: call get_weather '
                                       '{"city": "Paris"}\nEMULATOR: call get_time {}'}]
    message = client.messages.create(model=MODEL, max_tokens=200, tools=tools, messages=ask)
    assert message.stop_reason == "tool_use"
    assert [(b.type, b.name, b.input) for b in message.content] == [
        ("tool_use", "get_weather", {"city": "Paris"}), ("tool_use", "get_time", {})]
    assert all(b.id.startswith("toolu_") for b in message.content)
    again = client.messages.create(model=MODEL, max_tokens=200, tools=tools, messages=ask)
    assert [b.id for b in again.content] == [b.id for b in message.content]

    with client.messages.stream(model=MODEL, max_tokens=200, tools=tools, messages=ask) as stream:
        streamed = stream.get_final_message()
    assert [(b.name, b.input) for b in streamed.content] == [
        ("get_weather", {"city": "Paris"}), ("get_time", {})]
    assert streamed.stop_reason == "tool_use"

    follow_up = ask + [
        {"role": "assistant",
         "content": [b.model_dump(exclude_none=True) for b in message.content]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": message.content[0].id, "content": "Sunny"},
            {"type": "tool_result", "tool_use_id": message.content[1].id,
             "content": [{"type": "text", "text": "12:00"}]}]}]
    answer = client.messages.create(model=MODEL, max_tokens=200, tools=tools, messages=follow_up)
    assert answer.stop_reason == "end_turn" and answer.content[0].type == "text"
    assert answer.content[0].text.startswith("Received 2 tool results:")
    assert "Sunny" in answer.content[0].text and "12:00" in answer.content[0].text

    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model=MODEL, max_tokens=200, tools=tools[:1], messages=ask)
    assert "get_time" in caught.value.body["error"]["message"]


def test_count_tokens_is_free_but_has_its_own_rpm(client, emulator):
    import anthropic

    emulator.configure(limits={"sonnet-4": {"rpm": 2}})
    system = "Be brief."
    counted = client.messages.count_tokens(model=MODEL, system=system, messages=PROMPT)
    assert counted.input_tokens == count_request_input_tokens(
        {"system": system, "messages": PROMPT})
    client.messages.count_tokens(model=MODEL, messages=PROMPT)
    with pytest.raises(anthropic.RateLimitError):
        client.messages.count_tokens(model=MODEL, messages=PROMPT)
    stats = emulator.stats()
    assert stats["count_tokens_requests"] == 2 and stats["families"]["sonnet-4"]["requests"] == 0
    assert client.messages.create(model=MODEL, max_tokens=10, messages=PROMPT)  # bucket untouched


def test_unknown_model_and_invalid_requests(client, emulator):
    import anthropic

    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(model="claude-nope-9", max_tokens=10, messages=PROMPT)
    assert caught.value.body["error"] == {"type": "not_found_error",
                                          "message": "model: claude-nope-9"}
    cases = [({"model": MODEL, "messages": PROMPT}, "max_tokens"),
             ({"model": MODEL, "max_tokens": 0, "messages": PROMPT}, "max_tokens"),
             ({"model": MODEL, "max_tokens": "5", "messages": PROMPT}, "max_tokens"),
             ({"model": MODEL, "max_tokens": 10, "messages": []}, "messages"),
             ({"max_tokens": 10, "messages": PROMPT}, "model"),
             ({"model": MODEL, "max_tokens": 10 ** 6, "messages": PROMPT}, "maximum allowed"),
             ({"model": MODEL, "max_tokens": 10,
               "messages": [{"role": "user", "content": "word " * 200_001}]}, "too long")]
    for payload, fragment in cases:
        status, headers, body = post(emulator, "/v1/messages", payload)
        assert status == 400, payload
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
        assert fragment in body["error"]["message"]
        assert headers["request-id"] == body["request_id"]
    status, _, body = post(emulator, "/v1/messages", cases[0][0], headers={"x-api-key": ""})
    assert status == 401 and body["error"]["type"] == "authentication_error"
    assert all(not any(usage.values()) for usage in emulator.stats()["families"].values())


# -- Bedrock -------------------------------------------------------------------------------------

def test_bedrock_invoke_and_headers(bedrock, emulator):
    raw = bedrock.messages.with_raw_response.create(model=BEDROCK_MODEL, max_tokens=100,
                                                    messages=PROMPT)
    message = raw.parse()
    assert message.model == "claude-sonnet-4-20250514" and message.usage.output_tokens == 50
    assert message.usage.input_tokens == count_request_input_tokens({"messages": PROMPT})
    assert raw.headers["x-amzn-bedrock-input-token-count"] == str(message.usage.input_tokens)
    assert raw.headers["x-amzn-bedrock-output-token-count"] == "50"
    assert "anthropic-ratelimit-requests-limit" not in raw.headers
    # reserved input + 100 x 5, settled to input + 50 x 5
    level = emulator.stats()["buckets"]["bedrock/" + BEDROCK_MODEL]["tokens"]["level"]
    used = message.usage.input_tokens + 5 * 50
    assert 200_000 - used - 1 <= level <= 200_000
    assert emulator.stats()["bedrock"][BEDROCK_MODEL]["output_tokens"] == 50


def test_bedrock_streams_use_event_stream_framing(bedrock, emulator):
    from botocore.eventstream import EventStreamBuffer

    model = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
    with bedrock.messages.stream(model=model, max_tokens=20, messages=PROMPT) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert final.usage.output_tokens == 20 and final.stop_reason == "max_tokens"
    assert text == final.content[0].text and len(text.split()) == 20
    events = [e.type for e in bedrock.messages.create(model=model, max_tokens=2,
                                                      messages=PROMPT, stream=True)]
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert events.count("content_block_delta") == 2

    # the raw bytes: valid prelude and message CRCs (botocore checks both), chunk headers
    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 3, "messages": PROMPT}
    request = urllib.request.Request(
        f"{emulator.bedrock_base_url}/model/{urllib.parse.quote(model, safe='')}"
        "/invoke-with-response-stream", data=json.dumps(body).encode(), method="POST",
        headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["content-type"] == "application/vnd.amazon.eventstream"
        buffer = EventStreamBuffer()
        buffer.add_data(response.read())
    messages = list(buffer)
    assert all(m.headers == {":event-type": "chunk", ":content-type": "application/json",
                             ":message-type": "event"} for m in messages)
    import base64

    decoded = [json.loads(base64.b64decode(json.loads(m.payload)["bytes"])) for m in messages]
    assert decoded[0]["type"] == "message_start" and decoded[-1]["type"] == "message_stop"
    assert decoded[-1]["amazon-bedrock-invocationMetrics"]["outputTokenCount"] == 3


def test_bedrock_throttling_maps_to_rate_limit_error(bedrock, emulator):
    import anthropic

    emulator.configure(bedrock={"tpm": 1000, "rpm": 100})
    bedrock.messages.create(model=BEDROCK_MODEL, max_tokens=100, messages=PROMPT)
    # left: 1000 - (21 + 50 x 5) = 729; the next reserves 21 + 150 x 5 = 771
    with pytest.raises(anthropic.RateLimitError) as caught:
        bedrock.messages.create(model=BEDROCK_MODEL, max_tokens=150, messages=PROMPT)
    err = caught.value
    assert err.response.headers["x-amzn-errortype"] == "ThrottlingException"
    assert err.body == {"message": "Too many tokens, please wait before trying again."}
    # quotas are per model id: another inference profile has its own bucket
    assert bedrock.messages.create(model="anthropic.claude-sonnet-4-20250514-v1:0",
                                   max_tokens=150, messages=PROMPT)
    emulator.configure(bedrock={BEDROCK_MODEL: {"rpm": 1, "tpm": 100_000}})
    bedrock.messages.create(model=BEDROCK_MODEL, max_tokens=10, messages=PROMPT)
    with pytest.raises(anthropic.RateLimitError) as caught:
        bedrock.messages.create(model=BEDROCK_MODEL, max_tokens=10, messages=PROMPT)
    assert "Too many requests" in caught.value.body["message"]
    assert emulator.stats()["rate_limited"] == 2

    with pytest.raises(anthropic.BadRequestError) as caught:
        bedrock.messages.create(model="meta.llama3-70b-instruct-v1:0", max_tokens=10,
                                messages=PROMPT)
    assert caught.value.response.headers["x-amzn-errortype"] == "ValidationException"


# -- process, concurrency, counters --------------------------------------------------------------

def test_sixteen_concurrent_callers_are_served_in_parallel(client, emulator):
    emulator.configure(latency_s=0.2, tier="scale")
    errors = []

    def call():
        try:
            for _ in range(3):
                client.messages.create(model=MODEL, max_tokens=20, messages=PROMPT)
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=call) for _ in range(16)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    stats = emulator.stats()
    assert not errors
    assert stats["responses"] == {"200": 48} and stats["max_in_flight"] >= 12
    assert elapsed < 3 * 0.2 * 4  # serial would take 9.6 s
    assert stats["families"]["sonnet-4"]["output_tokens"] == 48 * 20


def test_stats_counters_and_reset(client, emulator):
    import anthropic

    emulator.configure(limits={"sonnet-4": {"rpm": 1}})
    client.messages.create(model=MODEL, max_tokens=10, messages=PROMPT)
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(model=MODEL, max_tokens=10, messages=PROMPT)
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="claude-nope", max_tokens=10, messages=PROMPT)
    stats = emulator.stats()
    assert stats["requests"] == 3
    assert stats["responses"] == {"200": 1, "429": 1, "404": 1}
    assert stats["rate_limited"] == 1
    assert stats["families"]["sonnet-4"] == {
        "requests": 1, "input_tokens": count_request_input_tokens({"messages": PROMPT}),
        "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 10}
    emulator.reset()
    assert emulator.stats()["requests"] == 0
    assert emulator.get_config()["limits"] == {"sonnet-4": {"rpm": 1}}  # config kept
    client.messages.create(model=MODEL, max_tokens=10, messages=PROMPT)  # buckets full again


def test_bad_config_fails_fast_and_stop_frees_the_port():
    with pytest.raises(RuntimeError, match="tier"):
        ClaudeEmulator({"tier": "tier9"}).start()
    emu = ClaudeEmulator({"latency_s": 0}).start()
    url = emu.base_url
    emu.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "/_emulator/stats", timeout=2)
