"""The Message Batches endpoints (`anthropic` SDK 2.x: `client.messages.batches.create/retrieve/
list/results/cancel`), each HTTP request guarded by the batch endpoints' own bucket item."""

from __future__ import annotations

import json
from typing import Any, Callable, Iterator


class NotNow(Exception):
    """No capacity for a batch-endpoint request now; try again after `retry_after` seconds."""

    def __init__(self, retry_after: float, reason: str) -> None:
        super().__init__(f"{reason}; retry after {retry_after:.1f} s")
        self.retry_after = retry_after
        self.reason = reason


class Rejected(Exception):
    """The API refused a request for good (4xx other than 429): do not send it again."""


class BatchApi:
    """`client`: an `anthropic.Anthropic` (max_retries=0: every HTTP request is guarded);
    `bucket`: a `guard.TokenBucket` with `Limits(rpm=...)` for the batch endpoints."""

    def __init__(self, client, bucket) -> None:
        self.client = client
        self.bucket = bucket
        self.calls = 0

    def _call(self, fn: Callable[[], Any], requests: int = 1) -> Any:
        import anthropic

        grant = self.bucket.try_acquire(requests=requests)
        if not grant.granted:
            raise NotNow(grant.retry_after, f"batch endpoints: {grant.reason}")
        self.calls += requests
        try:
            return fn()
        except anthropic.RateLimitError as err:
            wait = _retry_after(err.response)
            self.bucket.cool_down(wait)  # every collector and poller backs off
            raise NotNow(wait, "batch endpoints: upstream 429") from None
        except anthropic.APIStatusError as err:
            if err.status_code >= 500:
                raise NotNow(5.0, f"batch endpoints: upstream {err.status_code}") from None
            raise Rejected(f"{err.status_code}: {err.message}") from None
        except anthropic.APIConnectionError as err:
            raise NotNow(5.0, f"batch endpoints: {type(err).__name__}") from None

    def create(self, requests: list[dict]) -> Any:
        return self._call(lambda: self.client.messages.batches.create(requests=requests))

    def retrieve(self, batch_id: str) -> Any:
        return self._call(lambda: self.client.messages.batches.retrieve(batch_id))

    def cancel(self, batch_id: str) -> Any:
        return self._call(lambda: self.client.messages.batches.cancel(batch_id))

    def list_since(self, since: float) -> list[Any]:
        """Batches created at or after `since` (epoch s), newest first (one request a page)."""
        out, after = [], None
        while True:
            kwargs = {"limit": 100, **({"after_id": after} if after else {})}
            page = self._call(lambda: self.client.messages.batches.list(**kwargs))
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
        decoder = self._call(lambda: self.client.messages.batches.results(batch_id), 2)
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
