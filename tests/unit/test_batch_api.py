"""How the batch lane reads each answer of the Message Batches endpoints (no I/O: the SDK's own
client over a scripted transport): which failures prove nothing was done, which leave the
outcome unknown, and the one key refresh after a 401."""

from __future__ import annotations

import json

import pytest

BATCH = {"id": "msgbatch_1", "type": "message_batch", "processing_status": "in_progress",
         "request_counts": {"processing": 1, "succeeded": 0, "errored": 0, "canceled": 0,
                            "expired": 0},
         "created_at": "2026-01-01T00:00:00Z", "expires_at": "2026-01-02T00:00:00Z",
         "ended_at": None, "archived_at": None, "cancel_initiated_at": None,
         "results_url": None}


class Grants:
    """A batch bucket that always grants and records cool-downs (seconds)."""

    def __init__(self) -> None:
        self.cooled: list[float] = []

    def try_acquire(self, requests: int = 1):
        return type("Grant", (), {"granted": True, "retry_after": 0.0, "reason": None})()

    def cool_down(self, seconds: float) -> None:
        self.cooled.append(seconds)


def _client(answers: list, keys: list[str] | None = None, api_key: str = "k1"):
    """An SDK client whose requests get `answers` in turn: a status (an error body) or an
    exception to raise (a transport failure); afterwards 200 with a batch. Keys sent go to
    `keys`."""
    import anthropic
    import httpx2

    def handle(request):
        if keys is not None:
            keys.append(request.headers.get("x-api-key")
                        or request.headers.get("authorization", "").removeprefix("Bearer "))
        if answers:
            answer = answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return httpx2.Response(answer, headers={"retry-after": "3"}, json={
                "type": "error", "error": {"type": "error", "message": f"status {answer}"}})
        return httpx2.Response(200, json=BATCH)

    return anthropic.Anthropic(api_key=api_key, base_url="http://batches.test", max_retries=0,
                               http_client=anthropic.DefaultHttpxClient(
                                   transport=httpx2.MockTransport(handle)))


def _create(answers: list, refresh=None):
    from agent.batch.api import BatchApi

    bucket = Grants()
    api = BatchApi(_client(answers), bucket, refresh)
    return api, bucket, lambda: api.create([{"custom_id": "i1-0", "params": {}}])


@pytest.mark.parametrize("status", [429, 529])
def test_a_refusal_proves_nothing_was_created_and_cools_the_bucket(status):
    from agent.batch.api import NotNow, Unknown

    _, bucket, create = _create([status])
    with pytest.raises(NotNow) as refused:
        create()
    assert not isinstance(refused.value, Unknown)
    assert refused.value.retry_after == 3.0 and bucket.cooled == [3.0]


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_server_error_leaves_the_outcome_unknown(status):
    from agent.batch.api import Unknown

    _, _, create = _create([status])
    with pytest.raises(Unknown, match=str(status)):
        create()


@pytest.mark.parametrize("failure", ["ReadTimeout", "ConnectError", "RemoteProtocolError"])
def test_a_timeout_or_a_dropped_connection_leaves_the_outcome_unknown(failure):
    import httpx2

    from agent.batch.api import Unknown

    _, _, create = _create([getattr(httpx2, failure)("injected")])
    with pytest.raises(Unknown):
        create()


@pytest.mark.parametrize("status", [400, 403, 404, 413])
def test_other_client_errors_are_rejected_for_good(status):
    from agent.batch.api import Rejected

    _, _, create = _create([status])
    with pytest.raises(Rejected, match=str(status)):
        create()


def test_a_401_refreshes_the_key_once_then_goes_on():
    from agent.batch.api import BatchApi

    keys: list[str] = []
    refreshed = []

    def refresh():
        refreshed.append(True)
        return _client([], keys, api_key="k2")

    api = BatchApi(_client([401], keys), Grants(), refresh)
    assert api.retrieve("msgbatch_1").id == "msgbatch_1"
    assert keys == ["k1", "k2"] and refreshed == [True]
    api.retrieve("msgbatch_1")  # the refreshed client is kept
    assert keys == ["k1", "k2", "k2"] and refreshed == [True]


def test_a_second_401_stops_with_a_reason():
    from agent.batch.api import BatchApi, KeyRefused

    api = BatchApi(_client([401]), Grants(), lambda: _client([401]))
    with pytest.raises(KeyRefused, match="401.*after a key refresh"):
        api.cancel("msgbatch_1")


def test_a_401_without_a_secret_or_with_an_unreadable_one_names_why():
    from agent.batch.api import BatchApi, KeyRefused

    with pytest.raises(KeyRefused, match="no key to refresh"):
        BatchApi(_client([401]), Grants()).retrieve("msgbatch_1")

    def broken():
        raise RuntimeError("AccessDenied on the secret")

    with pytest.raises(KeyRefused, match="could not be read afresh: AccessDenied"):
        BatchApi(_client([401]), Grants(), broken).list_since(0)


def test_the_bodies_are_what_the_sdk_sent():
    """The scripted transport answers the SDK's real requests (no shortcut in the fake)."""
    import anthropic
    import httpx2

    seen = []

    def handle(request):
        seen.append((request.method, request.url.path, json.loads(request.content or b"{}")))
        return httpx2.Response(200, json=BATCH)

    client = anthropic.Anthropic(api_key="k", base_url="http://batches.test", max_retries=0,
                                 http_client=anthropic.DefaultHttpxClient(
                                     transport=httpx2.MockTransport(handle)))
    from agent.batch.api import BatchApi

    BatchApi(client, Grants()).create([{"custom_id": "i1-0", "params": {"model": "m"}}])
    assert seen == [("POST", "/v1/messages/batches",
                     {"requests": [{"custom_id": "i1-0", "params": {"model": "m"}}]})]
