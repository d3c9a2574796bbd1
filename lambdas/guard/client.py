"""Guarded Claude client: every Messages call goes through the bucket, the guard owns retries.

    claude = GuardedClaude({"claude-sonnet-4-5": bucket})          # Anthropic API
    result = claude.create(model="claude-sonnet-4-5", max_tokens=512, messages=[...],
                           deadline_s=20)
    result.status  # "ok" (result.message), "deferred" (result.retry_after) or "error"

For each attempt: estimate input tokens, acquire (requests=1, input=estimate,
output=max_tokens), wait `retry_after` when it fits in the caller's deadline or return
"deferred", call the SDK with its own retries off, settle with `usage` (cache tokens included),
observe the rate-limit headers. Upstream 429/529 honour `retry-after`, set the shared cool-down
and retry within bounds; the spend-limit 429 is never retried; 5xx, timeouts and connection
errors retry with backoff. Every attempt is charged honestly (see `_settle_failed`).

Grant, then send at once: the SDK client (and the API key) are built, and the SDK's lazily
imported modules loaded, before the first acquire of a call, so nothing slow sits between a grant
and its request. An httpx request hook on the SDK's HTTP client measures every grant-to-send
delay (from `try_acquire`'s return to the moment the request goes out); a grant whose send would
start more than `max_grant_age_s` after it was granted is given back (one refund write) and
acquired again instead of being sent late. With every send within `max_grant_age_s` of its grant,
the server sees at most refill x `max_grant_age_s` more in any window than the bucket admitted
(e.g. 0.2 requests at 50 RPM, 17 at 4,000 RPM with the default 0.25 s).

`anthropic` is imported only when the first SDK client is built, so `import guard` stays cheap.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from . import fair
from .bucket import BucketRequestError, Grant, TokenBucket
from .spend import gate_for
from .limits import WINDOW_S
from .outcomes import DEFERRED, ERROR, OK, REJECTED
from .usage import Usage
from .estimate import estimate_input_tokens

log = logging.getLogger(__name__)

#: Longest pause (seconds) between budget checks while open reservations are in the way.
BUDGET_POLL_S = 0.5

#: SDK exception -> (reason used in results and metrics, retryable)
_SPEND_LIMIT_CODE = "enforced_spend_limit_reached"
#: Longest retry-after honoured (seconds), as the SDK does.
MAX_RETRY_AFTER_S = 60.0
#: Oldest a grant may be when its request starts (seconds); older grants are given back.
MAX_GRANT_AGE_S = 0.25
#: Shortest SDK call worth starting (seconds): with less time left the call is deferred.
MIN_CALL_S = 2.0
#: Scheduling of waits for capacity: book a start once and sleep until it ("fifo", first come
#: first served), or refuse and retry after `retry_after` ("poll", the behaviour before
#: bookings; deploy it while clients without booking-safe refunds may still run).
SCHEDULING_MODES = ("fifo", "poll")
#: A booked wait longer than this (seconds) reads the shared cool-down one round trip before
#: its start, so a cool-down set after the booking is not sent into.
COOL_DOWN_CHECK_AFTER_S = 1.0


class StaleGrant(Exception):
    """Raised by the send hook (inside the SDK, before any byte is sent) when a grant is older
    than `max_grant_age_s`: the request is not sent and the grant is given back."""

    def __init__(self, age_s: float) -> None:
        super().__init__(f"grant is {age_s * 1000:.0f} ms old at send")
        self.age_s = age_s


class _SendProbe:
    """One attempt's grant, armed just before the SDK call; the request hook fires it.

    `due`: the guard clock's reading when the grant's capacity starts (its return from
    `try_acquire`, or its booked start). `fired_at`: when the request started to go out."""

    def __init__(self, clock: Callable[[], float], due: float, max_age_s: float) -> None:
        self.clock = clock
        self.due = due
        self.max_age_s = max_age_s
        self.fired_at: float | None = None

    def fire(self) -> None:
        if self.fired_at is not None:
            return
        self.fired_at = self.clock()
        age = self.fired_at - self.due
        if age > self.max_age_s:
            raise StaleGrant(age)


_PROBE: contextvars.ContextVar[_SendProbe | None] = contextvars.ContextVar("bulwark_send_probe",
                                                                         default=None)


def _on_request(request) -> None:
    """httpx request hook: fires the current attempt's probe (no-op for other requests)."""
    probe = _PROBE.get()
    if probe is not None:
        probe.fire()


def _install_send_hook(sdk: Any) -> None:
    """Put `_on_request` on the SDK client's httpx client (once; shared by its copies)."""
    http = getattr(sdk, "_client", None)
    hooks = getattr(http, "event_hooks", None)
    if not isinstance(hooks, dict):
        log.warning("SDK client has no httpx event hooks: grant-to-send is not measured")
        return
    if _on_request not in hooks.get("request", []):
        http.event_hooks = {**hooks, "request": [*hooks.get("request", []), _on_request]}


def _stale_cause(err: BaseException) -> StaleGrant | None:
    while err is not None:
        if isinstance(err, StaleGrant):
            return err
        err = err.__cause__ or err.__context__
    return None


@dataclass
class CallResult:
    """Outcome of one guarded call (all attempts).

    status "ok": `message` is the SDK's Message (or `stream` a `GuardedStream`), `usage` a dict
    of token counts. "deferred": capacity or the upstream did not allow the call within the
    deadline; `retry_after` (seconds) says when to try again, `reason` why (one of
    `guard.outcomes.DEFERRAL_REASONS`). "error": `error` = {"type", "message"} (types in
    `guard.outcomes.ERROR_TYPES`, or the upstream's own); not worth retrying as is.
    Counters: `attempts` (Claude calls made), `local_throttles` (bucket refusals),
    `upstream_429`, `upstream_529`, `waited_s` (seconds slept for capacity or backoff).
    `queue_s`: the longest booked wait (seconds from acquire to the booked start);
    `cool_down_rebooks`: bookings given back because a cool-down was set after them.
    `tenant` (the tenant the call counted as; None on a bucket without tenants) and `priority`;
    `ticket` (epoch seconds): on "deferred", the call's place in its tenant's queue, to pass
    back as `create(ticket=...)` (the deferred message carries it).
    Per attempt sent: `grant_to_send_s` (from `try_acquire`'s return, or a booked start, to the
    request going out) and `charge_to_send_s` (from the grant's `acquired_at`, store round trip
    included), in seconds. `stale_grants`: grants given back because their send came too late.
    """

    status: str
    model: str
    message: Any = None
    stream: "GuardedStream | None" = None
    usage: Usage | None = None
    retry_after: float | None = None
    reason: str | None = None
    error: dict[str, str] | None = None
    attempts: int = 0
    local_throttles: int = 0
    upstream_429: int = 0
    upstream_529: int = 0
    waited_s: float = 0.0
    latency_s: float = 0.0
    input_estimate: int = 0
    quota_used_percent: float | None = None
    store_calls: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    grant_to_send_s: list[float] = field(default_factory=list)
    charge_to_send_s: list[float] = field(default_factory=list)
    stale_grants: int = 0
    queue_s: float = 0.0
    cool_down_rebooks: int = 0
    store_reads: int = 0
    #: Budgets: the tenant's `action` on a budget refusal ("reject", "degrade", "batch"), the
    #: scope and window that refused, percent used per scope and window, budget writes made.
    budget_action: str | None = None
    budget_scope: str | None = None
    budget_window: str | None = None
    budget_used_percent: dict[str, dict[str, float]] = field(default_factory=dict)
    budget_store_calls: int = 0
    degraded_from: str | None = None
    _hold: Any = field(default=None, repr=False)
    tenant: str | None = None
    priority: str = "interactive"
    ticket: float | None = None
    #: the capacity pool that served the call (`guard.pools`; None without pools) and the
    #: call's cost at that pool's prices (USD; None without prices)
    pool: str | None = None
    cost_usd: float | None = None
    #: pool -> True when the call saw that pool's breaker open or half-open (every pool of a
    #: pooled model, from the views the call held; no extra read)
    pool_breakers: dict[str, bool] = field(default_factory=dict)

    def take_budget_hold(self, other: "CallResult") -> None:
        """Carry `other`'s open budget hold over to this result (a pool router's answer holds
        the logical model's reservation its pool's client never saw)."""
        self._hold, other._hold = other._hold, None


def _retry_after_header(headers: Mapping[str, str] | None) -> float | None:
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


def _settle_usage(bucket: TokenBucket, grant: Grant, usage: dict[str, int]) -> None:
    """Settle a grant with a Messages `usage` dict (tokens); a store error leaves the
    reservation in place (conservative) and is logged."""
    settlement = bucket.settle(grant, usage["input_tokens"], usage["output_tokens"],
                               cache_creation_tokens=usage["cache_creation_input_tokens"],
                               cache_read_tokens=usage["cache_read_input_tokens"])
    if not settlement.settled:
        log.warning("settle failed (%s): the reservation stands", settlement.reason)


class _AnthropicApi:
    """The Anthropic API: API key, `anthropic-ratelimit-*` headers, keys that rotate."""

    name = "anthropic"
    reports_remaining = True  # responses carry anthropic-ratelimit-*-remaining
    rotates_keys = True

    @staticmethod
    def build(anthropic, *, api_key, aws_region, timeout_s):
        return anthropic.Anthropic(api_key=api_key(), max_retries=0, timeout=timeout_s)

    @staticmethod
    def warm(sdk) -> None:
        """Nothing beyond the client: the key is in it already."""


class _BedrockApi:
    """Amazon Bedrock: SigV4 from the AWS credentials, no rate-limit headers."""

    name = "bedrock"
    reports_remaining = False
    rotates_keys = False

    @staticmethod
    def build(anthropic, *, api_key, aws_region, timeout_s):
        return anthropic.AnthropicBedrock(aws_region=aws_region, max_retries=0,
                                          timeout=timeout_s)

    @staticmethod
    def warm(sdk) -> None:
        """Resolve credentials and load botocore's signer now, not after a grant."""
        try:
            import httpx2

            sdk._prepare_request(httpx2.Request("POST", str(sdk.base_url), content=b"{}"))
        except Exception as err:  # noqa: BLE001 - the real request will report it
            log.warning("could not pre-sign a Bedrock request: %s", err)


PROVIDERS = {api.name: api for api in (_AnthropicApi, _BedrockApi)}


class GuardedClaude:
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

    # -- SDK -----------------------------------------------------------------------------------

    @property
    def sdk(self):
        """The SDK client, built on first use with SDK retries off (the guard owns them)."""
        if self._sdk is None:
            import anthropic

            self._sdk = self._api.build(anthropic, api_key=lambda: self._key(refresh=False),
                                        aws_region=self._aws_region, timeout_s=self.timeout_s)
            self._sdk_ready = False
        return self._sdk

    def prepare(self) -> None:
        """Make the SDK ready to send at once: client and API key built, the modules it imports
        on first use loaded, SigV4 credentials resolved (Bedrock), the send hook installed.

        Called inside the first `create()`/`stream()` before it acquires; a SnapStart init may
        call it before the snapshot. Paths that never call Claude never pay for it."""
        if self._sdk_ready and self._sdk is not None:
            return
        sdk = self.sdk
        _install_send_hook(sdk)
        _ = sdk.messages.with_raw_response  # lazily imported resource modules
        self._api.warm(sdk)
        self._sdk_ready = True

    def _key(self, *, refresh: bool) -> str | None:
        source = self._api_key
        if not callable(source):
            return source
        try:
            takes_refresh = "refresh" in inspect.signature(source).parameters
        except (TypeError, ValueError):
            takes_refresh = False
        return source(refresh=refresh) if takes_refresh else source()

    def _rotate_key(self) -> bool:
        """After a 401: fetch the key again (bypassing caches) and rebuild the SDK client.
        False when there is nothing to refresh (a fixed key, Bedrock or an injected client)."""
        if not self._api.rotates_keys or not callable(self._api_key):
            return False
        old = getattr(self._sdk, "api_key", None)
        key = self._key(refresh=True)
        log.warning("upstream 401: API key refreshed%s",
                    "" if key != old else " (unchanged: the secret still holds the same key)")
        import anthropic

        base = self._sdk
        self._sdk = (base.with_options(api_key=key) if base is not None else
                     anthropic.Anthropic(api_key=key, max_retries=0, timeout=self.timeout_s))
        self._sdk_ready = False
        return True

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
        model = params.get("model")
        result = CallResult(status=ERROR, model=str(model))
        if "stream" in params:  # the SDK's spelling: create(stream=True) streams
            wanted = params.pop("stream")
            if not isinstance(wanted, bool) or (streaming and not wanted):
                result.error = {"type": "invalid_request", "message": (
                    f"stream must be True or False, got {wanted!r}" if not isinstance(
                        wanted, bool) else "stream=False contradicts stream(): call create()")}
                return result
            streaming = streaming or wanted
        problem = self._check(params)
        if problem:
            result.error = {"type": "invalid_request", "message": problem}
            return result
        bucket = self._bucket_for(model)
        if bucket is None:
            result.error = {"type": "unknown_model",
                            "message": f"model {model!r} has no configured rate-limit bucket"}
            return result
        tenant, priority, ticket = share
        try:
            result.tenant = fair.tenant_key(bucket.limits, tenant)
        except ValueError as err:
            result.error = {"type": "unknown_tenant", "message": str(err)}
            return result
        try:
            result.priority = fair.check_priority(priority)
        except ValueError as err:
            result.error = {"type": "invalid_request", "message": str(err)}
            return result
        place = (bucket.bucket_id, result.tenant, priority)
        if ticket is not None:
            self._tickets[place] = ticket
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
        attempt = stale = 0
        rotated = False
        while True:
            grant = self._acquire(bucket, estimate, max_tokens, deadline, result, place)
            if grant is None:
                return self._finish(result, started)
            timeout = self._call_timeout(time_left_s)
            if timeout is not None and timeout < self.min_call_s:
                bucket.release(grant)
                result.status, result.retry_after, result.reason = DEFERRED, 0.0, "time_left"
                return self._finish(result, started)
            probe = _SendProbe(self._clock, self._due(grant), self.max_grant_age_s)
            token = _PROBE.set(probe)
            try:
                kwargs = {} if timeout is None else {"timeout": timeout}
                raw = self.sdk.messages.with_raw_response.create(
                    **({"stream": True} if streaming else {}), **params, **kwargs)
            except Exception as err:  # noqa: BLE001 - classified below, unknown ones re-raised
                if _stale_cause(err) is not None and probe.fired_at is not None:
                    # Not sent: give the capacity back and take a fresh grant.
                    stale += 1
                    result.stale_grants = stale
                    bucket.release(grant)
                    log.warning("grant given back: %s", _stale_cause(err))
                    if stale > self.max_attempts:
                        result.status, result.retry_after, result.reason = (DEFERRED, 0.0,
                                                                            "stale_grant")
                        return self._finish(result, started)
                    continue
                attempt += 1
                result.attempts = attempt
                self._record_send(probe, grant, result)
                if self._is_auth_error(err) and not rotated and self._rotate_key():
                    rotated = True
                    self._settle_failed(bucket, grant, 0, 0)
                    continue
                wait, reason = self._upstream_failure(err, bucket, grant, estimate, max_tokens,
                                                      attempt, result)
                if wait is None:
                    return self._finish(result, started)
                if attempt >= self.max_attempts or self._clock() + wait > deadline:
                    result.status, result.retry_after, result.reason = DEFERRED, wait, reason
                    return self._finish(result, started)
                self._wait(wait, result)
                continue
            finally:
                _PROBE.reset(token)
            attempt += 1
            result.attempts = attempt
            self._record_send(probe, grant, result)
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
                return self._finish(result, started)
            message = raw.parse()
            usage = Usage.of(message.usage)
            self._settle(bucket, grant, usage)
            if observe:
                observe(headers)
            result.status, result.message, result.usage = OK, message, usage
            return self._finish(result, started)

    def _due(self, grant: Grant) -> float:
        """The guard clock's reading at which `grant`'s capacity starts: its return from
        `try_acquire`, moved to its booked start when it has one (bucket clock seconds)."""
        returned = getattr(grant, "_returned_mono", None)
        if returned is None:
            returned = self._clock()
        return returned + max(0.0, grant.start_at - grant.returned_at)

    def _record_send(self, probe: _SendProbe, grant: Grant, result: CallResult) -> None:
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

    @staticmethod
    def _is_auth_error(err: Exception) -> bool:
        return getattr(err, "status_code", None) == 401

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

    def _acquire_once(self, bucket: TokenBucket, estimate: int, max_tokens: int,
                      max_wait: float, tenant: str | None, priority: str,
                      ticket: float | None, result: CallResult) -> Grant | None:
        """One `try_acquire` of a call (booking up to `max_wait` seconds ahead), its store calls
        counted in `result` and a grant stamped with this client's clock when it came back;
        None (result filled in) when the request can never fit."""
        try:
            grant = bucket.try_acquire(1, estimate, max_tokens, max_wait_s=max_wait,
                                       tenant=tenant, priority=priority, ticket=ticket)
        except BucketRequestError as err:
            result.status = ERROR
            result.error = {"type": "request_too_large", "message": str(err)}
            return None
        result.store_calls += grant.store_calls
        result.store_reads += grant.store_reads
        if grant.granted:
            grant._returned_mono = self._clock()
        return grant

    def _acquire(self, bucket: TokenBucket, estimate: int, max_tokens: int, deadline: float,
                 result: CallResult, place: tuple = (None, None, "interactive")
                 ) -> Grant | None:
        """Wait for a grant within the deadline; None (result filled in) when it cannot be had.

        fifo: book the earliest start within the deadline (at most a minute ahead) and sleep
        until it; poll: take capacity only if it is there now, else sleep `retry_after`."""
        while True:
            now = self._clock()
            max_wait = 0.0 if self.scheduling == "poll" else max(0.0, min(WINDOW_S,
                                                                          deadline - now))
            grant = self._acquire_once(bucket, estimate, max_tokens, max_wait, place[1],
                                       place[2], self._tickets.get(place), result)
            if grant is None:
                return None
            if grant.ticket is not None and not grant.granted:
                self._tickets[place] = result.ticket = grant.ticket
            if grant.granted:
                self._tickets.pop(place, None)
                result.ticket = None
                if grant.start_at > grant.returned_at and not self._sleep_until_start(
                        bucket, grant, result):
                    continue  # a cool-down was set after the booking: book again
                return grant
            result.local_throttles += 1
            if self._clock() + grant.retry_after > deadline:
                result.status, result.retry_after, result.reason = (DEFERRED, grant.retry_after,
                                                                    grant.reason)
                return None
            self._wait(grant.retry_after, result)

    def _sleep_until_start(self, bucket: TokenBucket, grant: Grant,
                           result: CallResult) -> bool:
        """Sleep until a booked grant's start; False (grant given back) when a cool-down set
        after the booking covers the start."""
        wait = grant.start_at - grant.returned_at
        result.queue_s = max(result.queue_s, wait)
        due = grant._returned_mono + wait
        if wait > COOL_DOWN_CHECK_AFTER_S:
            lead = min(0.5, max(0.05, 2 * bucket.round_trip_s()))  # about one round trip before
            self._pause_until(due - lead, result)
            result.store_reads += 1
            cool_until = bucket.cool_down_until()
            if cool_until is not None and cool_until > grant.start_at:
                bucket.release(grant)
                result.cool_down_rebooks += 1
                log.info("booking given back: a cool-down until %.3f covers its start",
                         cool_until)
                return False
        self._pause_until(due, result)
        return True

    def _pause_until(self, due: float, result: CallResult) -> None:
        pause = due - self._clock()
        if pause > 0:
            self._sleep(pause)
            result.waited_s += pause

    def _wait(self, seconds: float, result: CallResult) -> None:
        # Up to 10% + 20 ms of jitter so callers refused together do not return together.
        pause = seconds + self._rng.uniform(0, 0.1 * seconds + 0.02)
        self._sleep(pause)
        result.waited_s += pause

    def _upstream_failure(self, err: Exception, bucket: TokenBucket, grant: Grant,
                          estimate: int, max_tokens: int, attempt: int,
                          result: CallResult) -> tuple[float | None, str]:
        """Classify an SDK error, settle the attempt, and return (wait before retry, reason); a
        wait of None means do not retry (the result holds the error)."""
        import anthropic

        backoff = min(0.5 * 2 ** (attempt - 1), 8.0)
        if isinstance(err, anthropic.APIStatusError):
            status = err.status_code
            headers = dict(err.response.headers) if err.response is not None else {}
            result.headers = headers
            body_error = (err.body or {}).get("error", {}) if isinstance(err.body, dict) else {}
            if status == 429 and (body_error.get("details") or {}).get("error_code") \
                    == _SPEND_LIMIT_CODE:
                self._settle_failed(bucket, grant, 0, 0)
                result.status = ERROR
                result.error = {"type": "spend_limit_reached",
                                "message": body_error.get("message", str(err))}
                log.error("Claude spend limit reached: not retrying")
                return None, "spend_limit"
            if status in (429, 529):
                wait = _retry_after_header(headers)
                wait = backoff if wait is None else wait
                if status == 429:
                    result.upstream_429 += 1
                else:
                    result.upstream_529 += 1
                self._settle_failed(bucket, grant, 0, 0)  # refused upstream: no tokens used
                if self._api.reports_remaining:
                    bucket.observe_headers(headers)
                bucket.cool_down(max(wait, 0.001))  # every caller backs off, not just this one
                return wait, f"upstream_{status}"
            if status >= 500:
                # The server may have read the input; a 504 may have produced output too.
                self._settle_failed(bucket, grant, estimate, max_tokens if status == 504 else 0)
                return _retry_after_header(headers) or backoff, "upstream_error"
            self._settle_failed(bucket, grant, 0, 0)
            result.status = ERROR
            result.error = {"type": body_error.get("type", f"http_{status}"),
                            "message": body_error.get("message", str(err))}
            return None, "client_error"
        if isinstance(err, (anthropic.APITimeoutError, anthropic.APIConnectionError)):
            # Unknown how much the server did: keep the whole reservation.
            self._settle_failed(bucket, grant, estimate, max_tokens)
            return backoff, "upstream_error"
        self._settle_failed(bucket, grant, estimate, max_tokens)
        raise err

    def _settle(self, bucket: TokenBucket, grant: Grant, usage: dict[str, int]) -> None:
        _settle_usage(bucket, grant, usage)

    def _settle_failed(self, bucket: TokenBucket, grant: Grant, input_tokens: int,
                       output_tokens: int) -> None:
        self._settle(bucket, grant, Usage(input_tokens, output_tokens))

    def _finish(self, result: CallResult, started: float) -> CallResult:
        result.latency_s = self._clock() - started
        self._settle_budget(result, ended=False)
        return result

    # -- budgets (guard.spend) -----------------------------------------------------------------

    def _hold_budget(self, tenant: str | None, estimate: int, max_tokens: int,
                     deadline: float, result: CallResult) -> bool:
        """Reserve the call's maximum cost; while only open reservations are in the way, check
        again every BUDGET_POLL_S seconds within the deadline. False: refused (result filled
        in: status "rejected", reason, retry_after, the tenant's action), or deferred when the
        budget store could not be reached (reason "store_unavailable": never a grant, never a
        refusal for budget)."""
        while True:
            hold = self._budget.reserve(result.model, tenant, estimate, max_tokens)
            if isinstance(hold, str):
                result.error = {"type": "unpriced_model", "message": hold}
                return False
            result.budget_store_calls += hold.store_calls
            result.budget_used_percent = hold.used_percent
            if hold.granted:
                result._hold = hold
                return True
            pause = min(hold.retry_after, BUDGET_POLL_S)
            if hold.reason != "budget_reserved" or self._clock() + pause > deadline:
                break
            self._wait(pause, result)
        if hold.reason == "store_unavailable":  # says nothing about the budget: try again later
            result.status, result.reason = DEFERRED, hold.reason
            result.retry_after = max(hold.retry_after, BUDGET_POLL_S)
            return False
        budget = self._budget.budget_of(tenant)
        result.status, result.reason, result.retry_after = REJECTED, hold.reason, \
            hold.retry_after
        result.budget_scope, result.budget_window = hold.scope, hold.window
        result.budget_action = budget.action if budget is not None else "reject"
        return False

    def _degrade(self, params: dict[str, Any], deadline_s: float | None,
                 time_left_s: Callable[[], float] | None, streaming: bool,
                 tenant: str | None, refused: CallResult,
                 share: tuple[str | None, str, float | None] | None = None) -> CallResult:
        """The tenant's action "degrade": the same call on its cheaper model, once (with the
        call's `share`: tenant, priority and ticket)."""
        cheaper = self._budget.budget_of(tenant).degrade_to
        if cheaper == params["model"]:  # the cheaper model is refused too
            return refused
        result = self._call({**params, "model": cheaper}, deadline_s, time_left_s, streaming,
                            share=(tenant, "interactive", None) if share is None else share)
        result.degraded_from = refused.model
        result.budget_action = "degrade"
        return result

    def _settle_budget(self, result: CallResult, *, ended: bool) -> None:
        """Settle the call's budget hold once: with its usage when it succeeded, at its
        maximum when a sent attempt's outcome is unknown (timeout, connection error, 5xx),
        else at nothing (refused upstream or never sent). A stream settles when it ends."""
        hold = result._hold
        if hold is None or (result.stream is not None and not ended):
            return
        result._hold = None
        if result.status == OK:
            usage = result.usage
        elif result.attempts and result.reason in ("upstream_error", "time_left"):
            usage = None
        else:
            usage = {}
        self._budget.settle(hold, self._budget_price_key(result), usage)

    def _budget_price_key(self, result: CallResult) -> str:
        """The budget gate's prices key a call's actual cost is taken from: its model."""
        return result.model


class GuardedStream:
    """Iterates the SDK's raw stream events and settles the grant exactly once: with the
    reported usage when the stream ends, or, when the caller stops early (close, `with` exit,
    error), with the input reported at message_start and the whole output reservation, since
    the server may have produced more than was read."""

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
        _settle_usage(self._bucket, self._grant, usage)
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
