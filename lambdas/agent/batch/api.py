"""The Message Batches endpoints (`anthropic` SDK 2.x: `client.messages.batches.create/retrieve/
list/results/cancel`), each HTTP request guarded by the batch endpoints' own bucket item."""

from __future__ import annotations

import json
from typing import Any, Callable, Iterator


class NotNow(Exception):
    """No batch-endpoint request now, and the one tried had no effect (a local refusal, a 429,
    a 529): try again after `retry_after` seconds."""

    def __init__(self, retry_after: float, reason: str) -> None:
        super().__init__(f"{reason}; retry after {retry_after:.1f} s")
        self.retry_after = retry_after
        self.reason = reason


class Unknown(NotNow):
    """The request may or may not have taken effect (a 5xx other than 529, a timeout, a
    dropped connection): a create may have created a batch."""


class Rejected(Exception):
    """The API refused a request for good (4xx other than 401 and 429): do not send it again."""


class KeyRefused(Exception):
    """The API key was refused (401) again after it was read afresh: nothing more can be done
    until the secret holds a valid key."""


class BatchApi:
    """`client`: an `anthropic.Anthropic` (max_retries=0: every HTTP request is guarded);
    `bucket`: a `guard.TokenBucket` with `Limits(rpm=...)` for the batch endpoints;
    `refresh`: returns a client built with the key read afresh (after a 401: a rotated key),
    None when there is nothing to refresh."""

    def __init__(self, client, bucket, refresh: Callable[[], Any] | None = None) -> None:
        self.client = client
        self.bucket = bucket
        self.refresh = refresh
        self.calls = 0

    def _call(self, fn: Callable[[Any], Any], requests: int = 1) -> Any:
        """`fn(client)` once, guarded; after a 401 once more with a refreshed key."""
        import anthropic

        for refreshed in (False, True):
            grant = self.bucket.try_acquire(requests=requests)
            if not grant.granted:
                raise NotNow(grant.retry_after, f"batch endpoints: {grant.reason}")
            self.calls += requests
            try:
                return fn(self.client)
            except anthropic.AuthenticationError as err:
                if refreshed or self.refresh is None:
                    raise KeyRefused(
                        f"batch endpoints: 401 {err.message}"
                        + (" after a key refresh" if refreshed else
                           "; no key to refresh (API_KEY_SECRET_ARN unset)")) from None
                self.client = self._refreshed(err)
            except anthropic.RateLimitError as err:
                wait = _retry_after(err.response)
                self.bucket.cool_down(wait)  # every collector and poller backs off
                raise NotNow(wait, "batch endpoints: upstream 429") from None
            except anthropic.APIStatusError as err:
                if err.status_code == 529:  # overloaded: refused, nothing done
                    wait = _retry_after(err.response)
                    self.bucket.cool_down(wait)
                    raise NotNow(wait, "batch endpoints: upstream 529") from None
                if err.status_code >= 500:
                    raise Unknown(5.0, f"batch endpoints: upstream {err.status_code}") from None
                raise Rejected(f"{err.status_code}: {err.message}") from None
            except anthropic.APIConnectionError as err:
                raise Unknown(5.0, f"batch endpoints: {type(err).__name__}") from None
        raise AssertionError("unreachable: the second pass returns or raises")

    def _refreshed(self, err: Exception) -> Any:
        try:
            return self.refresh()
        except Exception as failed:  # noqa: BLE001 - any failure to read the key is its reason
            raise KeyRefused(f"batch endpoints: 401 ({err}); the key could not be read "
                             f"afresh: {failed}") from None

    def create(self, requests: list[dict]) -> Any:
        return self._call(lambda c: c.messages.batches.create(requests=requests))

    def retrieve(self, batch_id: str) -> Any:
        return self._call(lambda c: c.messages.batches.retrieve(batch_id))

    def cancel(self, batch_id: str) -> Any:
        return self._call(lambda c: c.messages.batches.cancel(batch_id))

    def list_since(self, since: float) -> list[Any]:
        """Batches created at or after `since` (epoch s), newest first (one request a page)."""
        out, after = [], None
        while True:
            kwargs = {"limit": 100, **({"after_id": after} if after else {})}
            page = self._call(lambda c: c.messages.batches.list(**kwargs))
            batches = list(page.data)
            for batch in batches:
                if batch.created_at.timestamp() < since:
                    return out
                out.append(batch)
            if not page.has_more or not batches:
                return out
            after = page.last_id

    def result_lines(self, batch_id: str) -> Iterator[bytes]:
        """The raw JSONL lines of an ended batch (the SDK's `results` retrieves the batch, then
        streams its results_url: two requests). Raw, so one malformed line cannot stop the
        rest from being read."""
        decoder = self._call(lambda c: c.messages.batches.results(batch_id), 2)
        try:
            yield from decoder.http_response.iter_lines()
        finally:
            decoder.close()


def _retry_after(response) -> float:
    try:
        return max(1.0, float(response.headers.get("retry-after", "")))
    except (TypeError, ValueError):
        return 5.0


def parse_line(line: bytes | str) -> tuple[str | None, dict | None, str | None]:
    """(custom_id, result, problem) of one JSONL results line; a malformed line gives its
    custom_id when it can be read and a problem naming what is wrong."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", "replace")
    if not line.strip():
        return None, None, "empty line"
    try:
        value = json.loads(line)
    except json.JSONDecodeError as err:
        return None, None, f"not JSON: {err.msg}"
    if not isinstance(value, dict):
        return None, None, "not a JSON object"
    custom_id = value.get("custom_id")
    if not isinstance(custom_id, str):
        return None, None, "no custom_id"
    result = value.get("result")
    if not isinstance(result, dict) or result.get("type") not in (
            "succeeded", "errored", "canceled", "expired"):
        return custom_id, None, "no result of a known type"
    if result["type"] == "succeeded" and not isinstance(result.get("message"), dict):
        return custom_id, None, "succeeded without a message"
    return custom_id, result, None


#: errored types worth another try: the provider's trouble, not the request's
TRANSIENT_ERRORS = ("overloaded_error", "api_error", "rate_limit_error")


def classify(result: dict) -> tuple[str, str]:
    """("succeeded" | "retry" | "dead", reason) for one item's result."""
    kind = result["type"]
    if kind == "succeeded":
        return "succeeded", "succeeded"
    if kind in ("expired", "canceled"):
        return "retry", kind
    error = result.get("error") or {}
    inner = error.get("error") if isinstance(error.get("error"), dict) else error
    error_type = inner.get("type", "unknown_error") if isinstance(inner, dict) else "unknown"
    message = inner.get("message", "") if isinstance(inner, dict) else ""
    reason = f"errored: {error_type}" + (f": {message}" if message else "")
    return ("retry" if error_type in TRANSIENT_ERRORS else "dead"), reason
