"""Settling a grant with a call's usage, and `GuardedStream`, the stream that settles once."""

from __future__ import annotations

import logging

from .bucket import Grant, TokenBucket
from .results import CallResult
from .usage import Usage

log = logging.getLogger(__name__)


def settle_usage(bucket: TokenBucket, grant: Grant, usage: dict[str, int]) -> None:
    """Settle a grant with a Messages `usage` dict (tokens); a store error leaves the
    reservation in place (conservative) and is logged."""
    settlement = bucket.settle(grant, usage["input_tokens"], usage["output_tokens"],
                               cache_creation_tokens=usage["cache_creation_input_tokens"],
                               cache_read_tokens=usage["cache_read_input_tokens"])
    if not settlement.settled:
        log.warning("settle failed (%s): the reservation stands", settlement.reason)


class GuardedStream:
    """Iterates the SDK's raw stream events and settles the grant exactly once: with the
    reported usage when the stream ends, or, when the caller stops early (close, `with` exit,
    error), with the input reported at message_start and the whole output reservation, since
    the server may have produced more than was read.

    `events`: the SDK's raw stream; `estimate`: the input tokens reserved (settled with until
    message_start reports them); `max_tokens`: the output tokens reserved; `result`: the call's
    `CallResult` (its `usage` is set on settling); `on_settled`: called once, after settling."""

    def __init__(self, events, bucket: TokenBucket, grant: Grant, estimate: int,
                 max_tokens: int, result: CallResult, on_settled=None) -> None:
        self._on_settled = on_settled
        self._events = events
        self._bucket = bucket
        self._grant = grant
        self._max_tokens = max_tokens
        self._result = result
        self._usage = Usage(input_tokens=estimate)
        self._done = False
        self.text_parts: list[str] = []
        self.stop_reason: str | None = None

    def __iter__(self):
        try:
            for event in self._events:
                self._track(event)
                yield event
        except GeneratorExit:
            self.close()
            raise
        except Exception:
            self.close()
            raise
        self._settle(complete=True)

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    def _track(self, event) -> None:
        kind = getattr(event, "type", None)
        if kind == "message_start":
            usage = Usage.of(event.message.usage)
            self._usage.update({k: usage[k] for k in ("input_tokens",
                                                      "cache_creation_input_tokens",
                                                      "cache_read_input_tokens")})
            self._usage["output_tokens"] = usage["output_tokens"]
        elif kind == "content_block_delta" and getattr(event.delta, "type", "") == "text_delta":
            self.text_parts.append(event.delta.text)
        elif kind == "message_delta":
            self._usage["output_tokens"] = int(getattr(event.usage, "output_tokens", 0) or 0)
            self.stop_reason = getattr(event.delta, "stop_reason", None)
        elif kind == "message_stop":
            self._settle(complete=True)

    def _settle(self, complete: bool) -> None:
        if self._done:
            return
        self._done = True
        usage = Usage.of(self._usage)
        if not complete:
            usage["output_tokens"] = self._max_tokens
        self._result.usage = usage
        settle_usage(self._bucket, self._grant, usage)
        if self._on_settled is not None:
            self._on_settled()

    def close(self) -> None:
        """Stop reading; settles conservatively if the stream had not ended."""
        if not self._done:
            close = getattr(self._events, "close", None)
            if close:
                close()
            self._settle(complete=False)

    def __enter__(self) -> "GuardedStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
