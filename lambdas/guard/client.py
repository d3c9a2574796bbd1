"""Guarded Claude client: every Messages call goes through the bucket, the guard owns retries.

    claude = GuardedClaude({"claude-sonnet-4-6": bucket})          # Anthropic API
    result = claude.create(model="claude-sonnet-4-6", max_tokens=512, messages=[...],
                           deadline_s=20)
    result.status  # "ok" (result.message), "deferred" (result.retry_after) or "error"

For each attempt: estimate input tokens, acquire (requests=1, input=estimate,
output=max_tokens), wait `retry_after` when it fits in the caller's deadline or return
"deferred", call the SDK with its own retries off, settle with `usage` (cache tokens included),
observe the rate-limit headers. Upstream 429/529 honour `retry-after`, set the shared cool-down
and retry within bounds; the spend-limit 429 is never retried; 5xx, timeouts and connection
errors retry with backoff. Every attempt is charged honestly (`guard.upstream`).

Grant, then send at once: the SDK client (and the API key) are built, and the SDK's lazily
imported modules loaded, before the first acquire of a call, so nothing slow sits between a grant
and its request. An httpx request hook on the SDK's HTTP client measures every grant-to-send
delay (from `try_acquire`'s return to the moment the request goes out); a grant whose send would
start more than `max_grant_age_s` after it was granted is given back (one refund write) and
acquired again instead of being sent late. With every send within `max_grant_age_s` of its grant,
the server sees at most refill x `max_grant_age_s` more in any window than the bucket admitted
(e.g. 0.2 requests at 50 RPM, 17 at 4,000 RPM with the default 0.25 s).

The client's parts, one module each: `providers` (building, warming and re-keying the SDK
client per provider), `send_timing` (the send hook, stale grants), `scheduling` (waiting for
capacity), `upstream` (classifying SDK errors), `call_budget` (budgets), `stream`
(`GuardedStream`) and `results` (`CallResult`). This module keeps the attempt loop and exports
what callers import from it.

`anthropic` is imported only when the first SDK client is built, so `import guard` stays cheap.
"""

from __future__ import annotations

import logging
import math
import random
import time
from typing import Any, Callable, Mapping

from . import fair
from .bucket import Grant, TokenBucket
from .call_budget import BUDGET_POLL_S, BudgetedCalls
from .estimate import estimate_input_tokens
from .outcomes import DEFERRED, ERROR, OK, REJECTED
from .providers import PROVIDERS, SdkClient
from .results import CallResult
from .scheduling import COOL_DOWN_CHECK_AFTER_S, SCHEDULING_MODES, CapacityWaits
from .send_timing import CURRENT_PROBE, SendProbe, StaleGrant, stale_cause
from .spend import gate_for
from .stream import GuardedStream, settle_usage
from .upstream import MAX_RETRY_AFTER_S, classify_failure, is_auth_error
from .usage import Usage

__all__ = [
    "BUDGET_POLL_S", "COOL_DOWN_CHECK_AFTER_S", "DEFERRED", "ERROR", "MAX_GRANT_AGE_S",
    "MAX_RETRY_AFTER_S", "MIN_CALL_S", "OK", "PROVIDERS", "REJECTED", "SCHEDULING_MODES",
    "CallResult", "GuardedClaude", "GuardedStream", "StaleGrant",
]

log = logging.getLogger(__name__)

#: Oldest a grant may be when its request starts (seconds); older grants are given back.
MAX_GRANT_AGE_S = 0.25
#: Shortest SDK call worth starting (seconds): with less time left the call is deferred.
MIN_CALL_S = 2.0


class GuardedClaude(SdkClient, CapacityWaits, BudgetedCalls):
    """Claude Messages through the distributed bucket.

    `buckets`: model id -> `TokenBucket` (models of one family may share a bucket), or a
    callable returning the bucket or None for an unknown model.
    `provider`: "anthropic" (ANTHROPIC_BASE_URL, API key) or "bedrock" (ANTHROPIC_BEDROCK_BASE_URL,
    SigV4; `model` is the inference profile or model id). `sdk_client`: an `anthropic.Anthropic`
    or `AnthropicBedrock` to use instead of building one (its retries are turned off).
    `api_key`: the key, or a callable returning it; a callable that takes a `refresh` keyword is
    called with `refresh=True` after an upstream 401 (rotated key: bypass any cache).
    `max_attempts`: Claude calls per `create` at most (retries included).
    `default_deadline_s`: how long to wait for capacity when the caller gives no deadline.
    `timeout_s`: longest SDK call (seconds), further bounded per call by `time_left_s`.
    `max_grant_age_s`: a grant older than this (seconds) when its request starts is given back
    and acquired again. `min_call_s`: with less time left than this (seconds) a call is deferred.
    `scheduling`: "fifo" (book the earliest start within the wait allowed, sleep until it) or
    "poll" (refuse and retry after `retry_after`).
    Budgets (`guard.budget`): `prices` (model id -> `Prices`, USD per million tokens),
    `budgets` (tenant -> `Budget`), `budget` (the deployment's `Budget`),
    `model_tokens_per_day` (model id -> tokens per UTC day); `budget_ledger` (default: a
    `BudgetLedger` on the first bucket's table) and `limits_source` (a `guard.spend.
    LimitsSource`: limits changed without a redeploy). A call refused for budget returns
    status "rejected" (reason "budget" or "budget_reserved") or follows the tenant's action.

    Capacity pools: a mapping whose values are lists of `guard.Pool` (logical model -> pools in
    preference order) builds a `guard.pools.PoolRouter`, which routes each call to one pool.
    """

    def __new__(cls, buckets: Any = None, *args: Any, **kwargs: Any):
        if cls is GuardedClaude and isinstance(buckets, Mapping) and any(
                isinstance(value, (list, tuple)) for value in buckets.values()):
            from .pools import PoolRouter

            return super().__new__(PoolRouter)
        return super().__new__(cls)

    def __init__(self, buckets: Mapping[str, TokenBucket] | Callable[[str], TokenBucket | None],
                 *, provider: str = "anthropic", sdk_client: Any = None,
                 api_key: str | Callable[..., str] | None = None, aws_region: str | None = None,
                 max_attempts: int = 4, default_deadline_s: float = 30.0,
                 timeout_s: float = 120.0, max_grant_age_s: float = MAX_GRANT_AGE_S,
                 min_call_s: float = MIN_CALL_S, scheduling: str = "fifo",
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 estimator: Callable[[dict], int] = estimate_input_tokens,
                 rng: random.Random | None = None, prices: Mapping | None = None,
                 budgets: Mapping | None = None, budget: Any = None,
                 model_tokens_per_day: Mapping[str, int] | None = None,
                 budget_ledger: Any = None, limits_source: Any = None) -> None:
        if provider not in PROVIDERS:
            raise ValueError(f"provider must be 'anthropic' or 'bedrock', got {provider!r}")
        self._api = PROVIDERS[provider]
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        if scheduling not in SCHEDULING_MODES:
            raise ValueError(f"scheduling must be one of {SCHEDULING_MODES}, got {scheduling!r}")
        self.scheduling = scheduling
        if not 0 < max_grant_age_s < math.inf:
            raise ValueError(f"max_grant_age_s must be a positive number of seconds, got "
                             f"{max_grant_age_s!r}")
        self._bucket_for = buckets.get if isinstance(buckets, Mapping) else buckets
        self.provider = provider
        self._sdk = sdk_client.with_options(max_retries=0) if sdk_client is not None else None
        self._sdk_ready = False
        self._api_key = api_key
        self._aws_region = aws_region
        self.max_attempts = max_attempts
        self.default_deadline_s = default_deadline_s
        self.timeout_s = timeout_s
        self.max_grant_age_s = max_grant_age_s
        self.min_call_s = min_call_s
        self._clock = clock
        self._sleep = sleep
        self._estimate = estimator
        self._rng = rng or random.Random()
        # budgets (guard.spend): None when none is configured, and then nothing is added
        self._budget = gate_for(buckets, prices, budgets, budget=budget,
                                model_tokens_per_day=model_tokens_per_day,
                                ledger=budget_ledger, source=limits_source)
        #: (bucket id, tenant, priority) -> the ticket holding a deferred call's place
        self._tickets: dict[tuple, float] = {}
        self._bucket_map = buckets if isinstance(buckets, Mapping) else {}

    def writes_by_purpose(self) -> dict[str, int]:
        """DynamoDB writes this client's buckets (a mapping given at construction) and budget
        ledger have made, by purpose: "bucket acquire", "budget reserve", ... (counts)."""
        writes: dict[str, int] = {}
        buckets = {id(b): b for b in self._bucket_map.values()}.values()
        ledger = self._budget.ledger.writes if self._budget is not None else {}
        for name, count in [*((f"bucket {k}", v) for b in buckets
                              for k, v in b.writes_by_purpose.items()),
                            *((f"budget {k}", v) for k, v in ledger.items())]:
            writes[name] = writes.get(name, 0) + count
        return writes

    # -- public API ----------------------------------------------------------------------------

    def create(self, *, deadline_s: float | None = None,
               time_left_s: Callable[[], float] | None = None, tenant: str | None = None,
               priority: str = "interactive", ticket: float | None = None,
               **params: Any) -> CallResult:
        """One guarded `messages.create(**params)` (not streaming). Never raises for upstream or
        store trouble: the result's status says what happened.

        `deadline_s`: seconds from now the call may wait for capacity. `time_left_s`: returns the
        seconds this invocation may still spend (a Lambda's remaining time minus its safety
        margin); it bounds both the wait and each SDK call's timeout.

        `stream=True` (the SDK's own spelling) is served as `stream()`: `result.stream`.

        `tenant`: whose share of the bucket the call uses (a bucket with `Limits(tenants=...)`;
        None counts as "default"; an unconfigured tenant is an "unknown_tenant" error) and
        whose budget it counts against.
        `priority`: "interactive" (default) or "background". `ticket`: a deferred call's
        `result.ticket` (epoch seconds), its place in its tenant's queue; the client also keeps
        the last ticket per bucket, tenant and priority itself, so a caller looping on one
        client needs nothing."""
        return self._call(params, deadline_s, time_left_s, streaming=False,
                          share=(tenant, priority, ticket))

    def stream(self, *, deadline_s: float | None = None,
               time_left_s: Callable[[], float] | None = None, tenant: str | None = None,
               priority: str = "interactive", ticket: float | None = None,
               **params: Any) -> CallResult:
        """Guarded streaming call. On status "ok", iterate `result.stream` (a `GuardedStream`,
        also a context manager); it settles when the stream ends or is closed early.
        `tenant`, `priority`, `ticket`: as for `create`."""
        return self._call(params, deadline_s, time_left_s, streaming=True,
                          share=(tenant, priority, ticket))

    # -- the attempt loop --------------------------------------------------------------------

    def _call(self, params: dict[str, Any], deadline_s: float | None,
              time_left_s: Callable[[], float] | None, streaming: bool,
              share: tuple[str | None, str, float | None] = (None, "interactive", None)
              ) -> CallResult:
        started = self._clock()
        params = dict(params)
        result = CallResult(status=ERROR, model=str(params.get("model")))
        admitted = self._admit(params, streaming, share, result)
        if admitted is None:
            return result
        bucket, place, streaming = admitted
        tenant = share[0]
        deadline = started + (self.default_deadline_s if deadline_s is None else deadline_s)
        if time_left_s is not None:  # a wait must leave time for the call itself
            deadline = min(deadline, started + time_left_s() - self.min_call_s)
        max_tokens = params["max_tokens"]
        estimate = self._estimate(params)
        result.input_estimate = estimate
        self.prepare()
        if self._budget is not None and not self._hold_budget(tenant, estimate, max_tokens,
                                                              deadline, result):
            if result.budget_action == "degrade" and result.degraded_from is None:
                return self._degrade(params, deadline_s, time_left_s, streaming, tenant,
                                     result, share)
            return self._finish(result, started)
        rotated = False  # the API key was fetched again after a 401 (once per call)
        while True:
            held = self._acquire(bucket, estimate, max_tokens, deadline, result, place)
            if held is None:
                return self._finish(result, started)
            grant = held.grant
            timeout = self._call_timeout(time_left_s)
            if timeout is not None and timeout < self.min_call_s:
                bucket.release(grant)
                result.status, result.retry_after, result.reason = DEFERRED, 0.0, "time_left"
                return self._finish(result, started)
            probe = SendProbe(self._clock, held.due(self._clock), self.max_grant_age_s)
            token = CURRENT_PROBE.set(probe)
            try:
                kwargs = {} if timeout is None else {"timeout": timeout}
                raw = self.sdk.messages.with_raw_response.create(
                    **({"stream": True} if streaming else {}), **params, **kwargs)
            except Exception as err:  # noqa: BLE001 - classified below, unknown ones re-raised
                step = self._after_failure(err, probe, bucket, grant, estimate, max_tokens,
                                           deadline, not rotated, result)
                if step == "done":
                    return self._finish(result, started)
                rotated = rotated or step == "rotated"
                continue
            finally:
                CURRENT_PROBE.reset(token)
            result.attempts += 1
            self._record_send(probe, grant, result)
            self._answered(raw, bucket, grant, estimate, max_tokens, streaming, result)
            return self._finish(result, started)

    def _after_failure(self, err: Exception, probe: SendProbe, bucket: TokenBucket,
                       grant: Grant, estimate: int, max_tokens: int, deadline: float,
                       may_rotate: bool, result: CallResult) -> str:
        """What follows an attempt the SDK raised for: "retry" (after any wait, slept here),
        "rotated" (retry with a fresh API key; `may_rotate` False once done in this call) or
        "done" (the result says why). A grant found stale at send was never sent: it is given
        back, and the call deferred after more than `max_attempts` of them. `deadline`: client
        clock seconds."""
        if stale_cause(err) is not None and probe.fired_at is not None:
            # Not sent: give the capacity back and take a fresh grant.
            result.stale_grants += 1
            bucket.release(grant)
            log.warning("grant given back: %s", stale_cause(err))
            if result.stale_grants > self.max_attempts:
                result.status, result.retry_after, result.reason = DEFERRED, 0.0, "stale_grant"
                return "done"
            return "retry"
        result.attempts += 1
        self._record_send(probe, grant, result)
        if is_auth_error(err) and may_rotate and self._rotate_key():
            self._settle_failed(bucket, grant, 0, 0)
            return "rotated"
        wait, reason = self._upstream_failure(err, bucket, grant, estimate, max_tokens,
                                              result.attempts, result)
        if wait is None:
            return "done"
        if result.attempts >= self.max_attempts or self._clock() + wait > deadline:
            result.status, result.retry_after, result.reason = DEFERRED, wait, reason
            return "done"
        self._wait(wait, result)
        return "retry"

    def _admit(self, params: dict[str, Any], streaming: bool,
               share: tuple[str | None, str, float | None], result: CallResult
               ) -> tuple[TokenBucket, tuple, bool] | None:
        """Check a call before anything is reserved: (its bucket, its place in the tenant's
        queue, whether it streams), or None with `result.error` saying what is wrong. Takes
        `stream` out of `params` (the SDK's spelling: create(stream=True) streams)."""
        if "stream" in params:
            wanted = params.pop("stream")
            if not isinstance(wanted, bool) or (streaming and not wanted):
                result.error = {"type": "invalid_request", "message": (
                    f"stream must be True or False, got {wanted!r}" if not isinstance(
                        wanted, bool) else "stream=False contradicts stream(): call create()")}
                return None
            streaming = streaming or wanted
        problem = self._check(params)
        if problem:
            result.error = {"type": "invalid_request", "message": problem}
            return None
        model = params.get("model")
        bucket = self._bucket_for(model)
        if bucket is None:
            result.error = {"type": "unknown_model",
                            "message": f"model {model!r} has no configured rate-limit bucket"}
            return None
        tenant, priority, ticket = share
        try:
            result.tenant = fair.tenant_key(bucket.limits, tenant)
        except ValueError as err:
            result.error = {"type": "unknown_tenant", "message": str(err)}
            return None
        try:
            result.priority = fair.check_priority(priority)
        except ValueError as err:
            result.error = {"type": "invalid_request", "message": str(err)}
            return None
        place = (bucket.bucket_id, result.tenant, priority)
        if ticket is not None:
            self._tickets[place] = ticket
        return bucket, place, streaming

    def _answered(self, raw: Any, bucket: TokenBucket, grant: Grant, estimate: int,
                  max_tokens: int, streaming: bool, result: CallResult) -> None:
        """Fill in `result` from a sent attempt's raw response: settle the grant with the
        message's usage (a stream settles when it ends), then observe the headers."""
        headers = dict(raw.headers)
        result.headers = headers
        result.quota_used_percent = grant.quota_used_percent
        # Headers are observed after settling: the server's "remaining" already reflects
        # actual use, so a refund applied after lowering the bucket would undo the lowering.
        observe = bucket.observe_headers if self._api.reports_remaining else None
        if streaming:
            result.status = OK
            result.stream = GuardedStream(raw.parse(), bucket, grant, estimate, max_tokens,
                                          result, on_settled=lambda: (
                                              observe and observe(headers),
                                              self._settle_budget(result, ended=True)))
            return
        message = raw.parse()
        usage = Usage.of(message.usage)
        self._settle(bucket, grant, usage)
        if observe:
            observe(headers)
        result.status, result.message, result.usage = OK, message, usage

    def _record_send(self, probe: SendProbe, grant: Grant, result: CallResult) -> None:
        """Add a sent attempt's grant-to-send and charge-to-send delays (seconds) to `result`."""
        if probe.fired_at is None:
            return
        to_send = max(0.0, probe.fired_at - probe.due)
        result.grant_to_send_s.append(to_send)
        result.charge_to_send_s.append(to_send + max(0.0, grant.returned_at - grant.acquired_at))

    def _call_timeout(self, time_left_s: Callable[[], float] | None) -> float | None:
        """The SDK call's timeout: the client's own, bounded by the time left (seconds)."""
        if time_left_s is None:
            return None
        configured = getattr(self._sdk, "timeout", None)
        configured = configured if isinstance(configured, (int, float)) else self.timeout_s
        return max(0.0, min(float(configured), time_left_s()))

    def _check(self, params: dict[str, Any]) -> str | None:
        model, max_tokens = params.get("model"), params.get("max_tokens")
        if not isinstance(model, str) or not model:
            return "model must be a non-empty string"
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            return f"max_tokens must be a positive integer, got {max_tokens!r}"
        messages = params.get("messages")
        if not isinstance(messages, list) or not messages:
            return "messages must be a non-empty list"
        return None

    def _upstream_failure(self, err: Exception, bucket: TokenBucket, grant: Grant,
                          estimate: int, max_tokens: int, attempt: int,
                          result: CallResult) -> tuple[float | None, str]:
        """Classify an SDK error (`guard.upstream`), settle the attempt, and return (seconds to
        wait before a retry, reason); a wait of None means do not retry (the result holds the
        error). An error that is not the SDK's is raised once the attempt is charged in full."""
        failure = classify_failure(err, estimate, max_tokens, attempt)
        if failure is None:
            self._settle_failed(bucket, grant, estimate, max_tokens)
            raise err
        if failure.headers is not None:
            result.headers = failure.headers
        if failure.reason == "upstream_429":
            result.upstream_429 += 1
        elif failure.reason == "upstream_529":
            result.upstream_529 += 1
        self._settle_failed(bucket, grant, *failure.charged)
        if failure.error is not None:
            result.status, result.error = ERROR, failure.error
        if failure.reason == "spend_limit":
            log.error("Claude spend limit reached: not retrying")
        if failure.cool_down:
            if self._api.reports_remaining:
                bucket.observe_headers(failure.headers)
            bucket.cool_down(max(failure.retry_after, 0.001))  # every caller backs off
        return failure.retry_after, failure.reason

    def _settle(self, bucket: TokenBucket, grant: Grant, usage: dict[str, int]) -> None:
        """Settle `grant` with a Messages `usage` (token counts)."""
        settle_usage(bucket, grant, usage)

    def _settle_failed(self, bucket: TokenBucket, grant: Grant, input_tokens: int,
                       output_tokens: int) -> None:
        """Settle a failed attempt's grant with the tokens it may have used."""
        self._settle(bucket, grant, Usage(input_tokens, output_tokens))

    def _finish(self, result: CallResult, started: float) -> CallResult:
        """The call's result, its latency (seconds since `started`, client clock) set and its
        budget hold settled (a stream's when it ends)."""
        result.latency_s = self._clock() - started
        self._settle_budget(result, ended=False)
        return result
