"""What a failed Claude call means: classify an SDK error into a retry decision and a charge.

`classify_failure` is pure: it reads the SDK exception (status, headers, body) and says how long
to wait before retrying (None: not worth retrying), the reason reported in results and metrics,
and the tokens the failed attempt is charged to the bucket with. Upstream 429/529 honour
`retry-after` and set the shared cool-down; the spend-limit 429 is never retried; 5xx, timeouts
and connection errors retry with backoff. Every attempt is charged honestly: nothing when the
upstream refused it, the input when a 5xx may have read it (and the output on a 504), the whole
reservation when the outcome is unknown (timeout, connection error).

`anthropic` is imported only when an error is classified, so importing this module is cheap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

#: The error code of the 429 that says the organisation's spend limit is reached.
SPEND_LIMIT_CODE = "enforced_spend_limit_reached"
#: Longest retry-after honoured (seconds), as the SDK does.
MAX_RETRY_AFTER_S = 60.0
#: Longest backoff between retries (seconds); the first is 0.5 s, doubling per attempt.
MAX_BACKOFF_S = 8.0


@dataclass
class UpstreamFailure:
    """One failed SDK call, classified.

    `reason`: "spend_limit", "upstream_429", "upstream_529", "upstream_error" (5xx, timeout,
    connection) or "client_error" (another 4xx). `retry_after`: seconds to wait before the next
    attempt, None when the call is not retried (`error` then holds {"type", "message"}).
    `charged`: (input tokens, output tokens) the attempt's grant is settled with. `headers`: the
    response's headers (None without a response). `cool_down`: True when every caller of the
    bucket should back off for `retry_after` (upstream 429 or 529)."""

    reason: str
    retry_after: float | None
    charged: tuple[int, int]
    headers: dict[str, str] | None = None
    error: dict[str, str] | None = None
    cool_down: bool = False


def backoff_s(attempt: int) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based) without a retry-after."""
    return min(0.5 * 2 ** (attempt - 1), MAX_BACKOFF_S)


def retry_after_header(headers: Mapping[str, str] | None) -> float | None:
    """`retry-after-ms` then `retry-after` (seconds), as the SDK reads them; None if absent."""
    if not headers:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            continue
        if 0 <= seconds <= MAX_RETRY_AFTER_S:
            return seconds
        if seconds > MAX_RETRY_AFTER_S and math.isfinite(seconds):
            # A longer value would block the whole fleet through the shared cool-down: cap it
            # (the SDK itself honours only 0-60 s) and let the next refusal say more.
            return MAX_RETRY_AFTER_S
    return None


def is_auth_error(err: Exception) -> bool:
    """True for an upstream 401 (the API key was refused, e.g. rotated)."""
    return getattr(err, "status_code", None) == 401


def classify_failure(err: Exception, estimate: int, max_tokens: int,
                     attempt: int) -> UpstreamFailure | None:
    """The failure an SDK error means for an attempt that reserved `estimate` input and
    `max_tokens` output tokens (its `attempt`-th, 1-based); None for an error that is not the
    SDK's (the caller charges the whole reservation and raises it)."""
    import anthropic

    backoff = backoff_s(attempt)
    if isinstance(err, anthropic.APIStatusError):
        status = err.status_code
        headers = dict(err.response.headers) if err.response is not None else {}
        body_error = (err.body or {}).get("error", {}) if isinstance(err.body, dict) else {}
        if status == 429 and (body_error.get("details") or {}).get("error_code") \
                == SPEND_LIMIT_CODE:
            return UpstreamFailure("spend_limit", None, (0, 0), headers, error={
                "type": "spend_limit_reached", "message": body_error.get("message", str(err))})
        if status in (429, 529):
            wait = retry_after_header(headers)
            wait = backoff if wait is None else wait
            # refused upstream: no tokens used; every caller backs off, not just this one
            return UpstreamFailure(f"upstream_{status}", wait, (0, 0), headers, cool_down=True)
        if status >= 500:
            # The server may have read the input; a 504 may have produced output too.
            return UpstreamFailure("upstream_error", retry_after_header(headers) or backoff,
                                   (estimate, max_tokens if status == 504 else 0), headers)
        return UpstreamFailure("client_error", None, (0, 0), headers, error={
            "type": body_error.get("type", f"http_{status}"),
            "message": body_error.get("message", str(err))})
    if isinstance(err, (anthropic.APITimeoutError, anthropic.APIConnectionError)):
        # Unknown how much the server did: keep the whole reservation.
        return UpstreamFailure("upstream_error", backoff, (estimate, max_tokens))
    return None
