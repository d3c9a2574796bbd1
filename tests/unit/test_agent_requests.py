"""Parsing agent requests (the request contract: `agent.requests`): direct events, Function URL bodies and
work-queue messages. Each bad field is refused with a message naming it; no AWS, no Claude."""

from __future__ import annotations

import base64
import json

import pytest

from agent.contract import REQUEST_ID_PATTERN
from agent.queues import dead_letter_reason
from agent.requests import (MAX_DEADLINE_S, MAX_PROMPT_CHARS, BadRequest, MalformedMessage,
                            function_url_payload, is_function_url_event, parse_request,
                            parse_work_message)
from tests.fixtures.agent_env import MAIN, MODELS, SMALL, agent_config

NOW = 1_800_000_000.0  # epoch seconds
CONFIG = agent_config()
GOOD = {"prompt": "Summarise the Q3 report.", "model": SMALL, "max_tokens": 256,
        "request_id": "req-42", "tenant": "globex", "deadline_s": 7.5}


def test_a_full_request_is_kept_as_sent():
    request = parse_request(GOOD, CONFIG, caller="arn:aws:iam::123456789012:user/ops")
    assert request.to_dict() == {**GOOD, "caller": "arn:aws:iam::123456789012:user/ops",
                                 "lane": "interactive", "priority": "interactive",
                                 "ticket": None}


def test_priority_is_a_field_of_the_request_that_survives_deferral():
    request = parse_request({**GOOD, "priority": "background", "ticket": 1.0}, CONFIG)
    assert (request.priority, request.ticket) == ("background", None)   # a caller's is ignored
    with pytest.raises(BadRequest, match="priority must be one of interactive, background"):
        parse_request({**GOOD, "priority": "urgent"}, CONFIG)
    envelope = {"request": request.to_dict(), "deferrals": 1, "first_received_at": NOW,
                "ticket": NOW + 12.5}   # what the agent's deferral writes
    message = parse_work_message(json.dumps(envelope), CONFIG, now=NOW)
    assert (message.request.priority, message.request.ticket) == ("background", NOW + 12.5)


def test_absent_fields_take_their_defaults():
    request = parse_request({"prompt": "hi"}, CONFIG)
    assert (request.model, request.max_tokens, request.tenant) == (MAIN, 1024, "acme")
    assert request.deadline_s == CONFIG.default_deadline_s
    assert (request.caller, request.lane) == (None, "interactive")
    assert REQUEST_ID_PATTERN.match(request.request_id) and request.request_id.startswith("req-")
    assert parse_request({"prompt": "hi"}, CONFIG).request_id != request.request_id


def test_default_max_tokens_stays_within_a_small_model():
    small_output = json.dumps({MAIN: {**MODELS[MAIN], "max_output_tokens": 500}})
    config = agent_config(MODELS=small_output)
    assert parse_request({"prompt": "hi"}, config).max_tokens == 500


@pytest.mark.parametrize("event, words", [
    ("prompt", "event must be a JSON object, got str"),
    ([GOOD], "event must be a JSON object, got list"),
    ({}, "prompt is required"),
    ({"prompt": 42}, "prompt must be a string, got int"),
    ({"prompt": "  \n "}, "prompt is empty"),
    ({"prompt": "x" * (MAX_PROMPT_CHARS + 1)}, "prompt is 1,000,001 characters"),
    ({"model": 4}, "model must be a string, got int"),
    ({"model": "claude-unknown"}, "unknown model 'claude-unknown'"),
    ({"max_tokens": "100"}, "max_tokens must be an integer, got str"),
    ({"max_tokens": True}, "max_tokens must be an integer, got bool"),
    ({"max_tokens": 0}, "max_tokens must be between 1 and 4000"),
    ({"max_tokens": 4001}, "max_tokens must be between 1 and 4000"),
    ({"request_id": "x"}, "request_id must be 2-64 characters"),
    ({"request_id": "has space"}, "request_id must be 2-64 characters"),
    ({"request_id": "r" * 65}, "request_id must be 2-64 characters"),
    ({"request_id": 42}, "request_id must be 2-64 characters"),
    ({"tenant": "initech"}, "unknown tenant 'initech'"),
    ({"tenant": ["acme"]}, "unknown tenant ['acme']"),
    ({"deadline_s": -1}, "deadline_s must be a number of seconds"),
    ({"deadline_s": MAX_DEADLINE_S + 1}, "deadline_s must be a number of seconds"),
    ({"deadline_s": "5"}, "deadline_s must be a number of seconds"),
    ({"deadline_s": False}, "deadline_s must be a number of seconds"),
    ({"lane": "express"}, "unknown lane 'express'"),
])
def test_each_bad_field_is_refused_by_name(event, words):
    if isinstance(event, dict):
        event = {**GOOD, **event} if event else {}
    with pytest.raises(BadRequest) as raised:
        parse_request(event, CONFIG)
    assert words in str(raised.value)


def test_a_prompt_over_the_context_window_is_refused():
    narrow = json.dumps({MAIN: {**MODELS[MAIN], "context_window": 1_000}})
    with pytest.raises(BadRequest, match="exceeds claude-sonnet-4-6's context window of 1,000"):
        parse_request({"prompt": "word " * 2_000, "max_tokens": 100}, agent_config(MODELS=narrow))


def test_a_prompt_over_the_input_quota_could_never_be_admitted():
    small_quota = json.dumps({MAIN: {**MODELS[MAIN], "itpm": 1_000}})
    with pytest.raises(BadRequest, match="per-minute input quota of claude-sonnet-4-6"):
        parse_request({"prompt": "word " * 2_000}, agent_config(MODELS=small_quota))


def test_bedrock_max_tokens_times_burndown_over_the_quota_is_named_as_the_cause():
    bedrock = json.dumps({MAIN: {"bucket": "bedrock#sonnet-4", "rpm": 200, "tpm": 200_000,
                                 "output_burndown": 5, "context_window": 200_000,
                                 "max_output_tokens": 64_000, "prices": MODELS[MAIN]["prices"]}})
    config = agent_config(PROVIDER="bedrock", API_KEY_SECRET_ARN=None, MODELS=bedrock)
    with pytest.raises(BadRequest) as raised:
        parse_request({"prompt": "hi", "max_tokens": 48_000}, config)
    assert "max_tokens 48,000 x output_burndown 5 = 240,000 tokens" in str(raised.value)
    assert "input quota" not in str(raised.value)


def test_max_tokens_over_the_output_quota_is_refused_up_front():
    roomy = json.dumps({MAIN: {**MODELS[MAIN], "max_output_tokens": 64_000}})
    with pytest.raises(BadRequest, match=r"output_tokens reservation of 9000 exceeds the bucket "
                                         r"capacity of 8000 per minute \(max_tokens 9,000\)"):
        parse_request({"prompt": "hi", "max_tokens": 9_000}, agent_config(MODELS=roomy))


def test_the_batch_lane_refuses_what_it_cannot_do():
    config = agent_config(BATCH_QUEUE_URL="https://sqs.example/batch")
    assert parse_request({**GOOD, "lane": "batch"}, config).lane == "batch"
    for extra, words in (({"stream": True}, "stream is not available in lane 'batch'"),
                         ({"tools": ["x"]}, "tools are not available in lane 'batch'")):
        with pytest.raises(BadRequest, match=words):
            parse_request({**GOOD, "lane": "batch", **extra}, config)
    bedrock = agent_config(PROVIDER="bedrock", API_KEY_SECRET_ARN=None)
    with pytest.raises(BadRequest, match="not available with provider=bedrock"):
        parse_request({**GOOD, "lane": "batch"}, bedrock)
    roomy = agent_config(BATCH_QUEUE_URL="https://sqs.example/batch", MODELS=json.dumps(
        {**MODELS, SMALL: {**MODELS[SMALL], "itpm": 1_000_000}}))
    with pytest.raises(BadRequest, match="over the batch lane's limit of 200,000 bytes"):
        parse_request({**GOOD, "lane": "batch", "prompt": "x" * 250_000}, roomy)


# -- Function URL events ---------------------------------------------------------------------

def url_event(body, *, encoded: bool = False, caller: str | None = "arn:aws:iam::1:user/ops"):
    event = {"version": "2.0", "body": body, "isBase64Encoded": encoded,
             "requestContext": {"http": {"method": "POST", "path": "/"}}}
    if caller:
        event["requestContext"]["authorizer"] = {"iam": {"userArn": caller}}
    return event


def test_a_function_url_body_and_its_caller():
    assert is_function_url_event(url_event("{}"))
    assert not is_function_url_event(GOOD) and not is_function_url_event("{}")
    assert function_url_payload(url_event(json.dumps(GOOD))) == (GOOD, "arn:aws:iam::1:user/ops")
    encoded = base64.b64encode(json.dumps(GOOD).encode()).decode()
    assert function_url_payload(url_event(encoded, encoded=True, caller=None)) == (GOOD, None)


@pytest.mark.parametrize("event, words", [
    (url_event(None), "the HTTP request has no body"),
    (url_event(42), "the HTTP body must be a string, got int"),
    (url_event("not base64!", encoded=True), "not valid base64-encoded UTF-8"),
    (url_event("{\"prompt\": ", encoded=False), "the HTTP body is not valid JSON"),
])
def test_a_bad_function_url_body_is_named(event, words):
    with pytest.raises(BadRequest, match=words):
        function_url_payload(event)


# -- work-queue messages ---------------------------------------------------------------------

def test_a_deferred_request_s_envelope():
    transcript = [{"role": "user", "content": "Summarise the Q3 report."}]
    body = {"request": {**GOOD, "caller": "arn:aws:iam::1:user/ops"}, "deferrals": 2,
            "first_received_at": NOW - 60, "transcript": transcript, "model": MAIN}
    message = parse_work_message(json.dumps(body), CONFIG, now=NOW)
    assert message.body == body
    assert (message.deferrals, message.first_received_at) == (2, NOW - 60)
    assert (message.transcript, message.model) == (transcript, MAIN)
    assert message.request.caller == "arn:aws:iam::1:user/ops"
    assert message.request.request_id == "req-42"


def test_a_bare_request_arrives_now_and_may_wait_the_default_deadline():
    message = parse_work_message(json.dumps(GOOD), CONFIG, now=NOW)
    assert (message.deferrals, message.first_received_at) == (0, NOW)
    assert (message.transcript, message.model) == (None, None)
    # queued work is asynchronous: the caller's 7.5 s becomes DEFAULT_DEADLINE_S (20 s)
    assert message.request.deadline_s == CONFIG.default_deadline_s


@pytest.mark.parametrize("raw, reason, dead_letter", [
    ('{"request": ', "malformed body: not JSON (Expecting value", '{"request": '),
    (None, "malformed body: not JSON (the JSON object must be str", None),
    ("[1, 2]", "malformed body: not a JSON object", [1, 2]),
    (json.dumps({"request": GOOD, "deferrals": "many"}), "malformed request: invalid literal",
     {"request": GOOD, "deferrals": "many"}),
    (json.dumps({"request": GOOD, "first_received_at": "Infinity"}),
     "malformed request: first_received_at must be a time",
     {"request": GOOD, "first_received_at": "Infinity"}),
    (json.dumps({"request": GOOD, "model": "claude-unknown"}),
     "malformed request: unknown model 'claude-unknown' in the envelope",
     {"request": GOOD, "model": "claude-unknown"}),
    (json.dumps({"request": {**GOOD, "tenant": "initech"}}),
     "malformed request: unknown tenant 'initech'", {"request": {**GOOD, "tenant": "initech"}}),
    (json.dumps({"request": None}), "malformed request: event must be a JSON object",
     {"request": None}),
])
def test_a_malformed_message_names_why_and_what_to_dead_letter(raw, reason, dead_letter):
    with pytest.raises(MalformedMessage) as raised:
        parse_work_message(raw, CONFIG, now=NOW)
    assert str(raised.value).startswith(reason)
    assert raised.value.body == dead_letter


@pytest.mark.parametrize("deferrals, age_s, reason", [
    (5, 3600, None),
    (6, 0, "deferred 6 times, more than MAX_DEFERRALS=5"),
    (0, 3601, "3601 s old, older than MAX_DEFERRAL_AGE_S=3600"),
])
def test_a_message_deferred_too_often_or_too_old_is_dead_lettered(deferrals, age_s, reason):
    body = {"request": GOOD, "deferrals": deferrals, "first_received_at": NOW - age_s}
    message = parse_work_message(json.dumps(body), CONFIG, now=NOW)
    assert dead_letter_reason(message, CONFIG, now=NOW) == reason


# -- what a queued request carries (budgets, the prompt once, its digest) -----------------------

def test_a_deferred_envelope_carries_what_the_request_spent():
    body = json.dumps({"request": GOOD, "deferrals": 2, "first_received_at": NOW,
                       "spent": {"model_calls": 3, "tokens": 41_000}})
    message = parse_work_message(body, CONFIG, now=NOW)
    assert (message.spent.model_calls, message.spent.tokens) == (3, 41_000)
    assert parse_work_message(json.dumps({"request": GOOD}), CONFIG, now=NOW).spent.tokens == 0


@pytest.mark.parametrize("spent, words", [
    ([1, 2], "spent must be an object"),
    ({"model_calls": -1}, "spent.model_calls must be a non-negative integer"),
    ({"tokens": "many"}, "spent.tokens must be a non-negative integer"),
    ({"tokens": True}, "spent.tokens must be a non-negative integer"),
])
def test_a_bad_spent_object_is_a_malformed_message(spent, words):
    body = json.dumps({"request": GOOD, "deferrals": 1, "spent": spent})
    with pytest.raises(MalformedMessage, match=words):
        parse_work_message(body, CONFIG, now=NOW)


def test_a_batch_body_carries_the_prompt_once_and_parses_back_whole():
    from agent.requests import batch_body, request_digest

    request = parse_request({**GOOD, "prompt": "漢字 " * 100, "lane": "batch"}, CONFIG)
    body = batch_body(request, CONFIG, queued_at=NOW)
    assert "prompt" not in body["request"] and body["digest"] == request_digest(request)
    assert body["params"]["messages"] == [{"role": "user", "content": request.prompt}]
    back = parse_work_message(json.dumps(body, ensure_ascii=False), CONFIG, now=NOW).request
    fields = ("prompt", "model", "max_tokens", "request_id", "tenant", "lane")
    assert [getattr(back, f) for f in fields] == [getattr(request, f) for f in fields]


def test_the_digest_names_prompt_model_max_tokens_and_lane():
    from agent.requests import request_digest

    base = parse_request(GOOD, CONFIG)
    same = parse_request({**GOOD, "deadline_s": 1.0, "request_id": "req-43"}, CONFIG)
    assert request_digest(base) == request_digest(same)  # not part of what the id stands for
    for change in ({"prompt": "Another question."}, {"model": MAIN}, {"max_tokens": 255}):
        assert request_digest(parse_request({**GOOD, **change}, CONFIG)) != request_digest(base)
