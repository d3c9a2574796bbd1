"""Rate limits: the continuously refilled token buckets (per Anthropic model family and pool, per
Bedrock model, pool and service tier), admission of a request against them, the
`anthropic-ratelimit-*` headers and 429 answers, and the settling of output once an answer ends.

Every bucket the emulator keeps is built by `RateLimiting.reset_buckets` (full again) from the
configured limits: the place to change limits at runtime.
"""

from __future__ import annotations

import collections
import math
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from guard.tiers import ANTHROPIC_TIERS, FAMILIES
from local.fakes.claude_emulator.tokens import count_request_input_tokens
from local.fakes.claude_emulator.wire import (ORG_ID, RATE_LIMIT_DOCS, ApiError, Reply, json_reply,
                                              new_request_id, retry_after)

if TYPE_CHECKING:
    from local.fakes.claude_emulator.emulator import Emulator

# (requests, input tokens, output tokens) per minute per family and preset: the same table
# the CDK app deploys (lambdas/guard/tiers.py), so the emulator and the guard agree by
# construction.
PRESETS = ANTHROPIC_TIERS

BEDROCK_DEFAULT = {"rpm": 200, "tpm": 200_000, "output_burndown": 5}

EPS = 1e-9


class Bucket:
    """Continuously refilled token bucket: capacity = limit, refill = limit / 60 per second."""

    __slots__ = ("limit", "rate", "level", "stamp")

    def __init__(self, limit: int, now: float) -> None:
        self.limit = limit
        self.rate = limit / 60.0
        self.level = float(limit)
        self.stamp = now

    def refill(self, now: float) -> None:
        if now > self.stamp:
            self.level = min(float(self.limit), self.level + (now - self.stamp) * self.rate)
            self.stamp = now

    def wait_for(self, need: float) -> float:
        return 0.0 if self.level + EPS >= need else (need - self.level) / self.rate

    def wait_positive(self) -> float:
        return 0.0 if self.level > EPS else (EPS - self.level) / self.rate + 1e-6

    def time_to_full(self) -> float:
        return max(0.0, (self.limit - self.level) / self.rate)

    def set_limit(self, limit: int, now: float) -> None:
        """A new limit from `now` on: what was used stays used (level moves by the change)."""
        self.refill(now)
        self.level += limit - self.limit
        self.limit, self.rate = limit, limit / 60.0


class FamilyState:
    def __init__(self, rpm: int, itpm: int, otpm: int, now: float) -> None:
        self.requests = Bucket(rpm, now)
        self.input = Bucket(itpm, now)
        self.output = Bucket(otpm, now)
        self.count_tokens = Bucket(rpm, now)  # count_tokens has its own RPM
        self.arrivals: collections.deque[float] = collections.deque()  # admitted, monotonic s

    def refill(self, now: float) -> None:
        for bucket in (self.requests, self.input, self.output, self.count_tokens):
            bucket.refill(now)


class BedrockState:
    def __init__(self, quotas: dict, now: float) -> None:
        self.requests = Bucket(int(quotas["rpm"]), now) if quotas.get("rpm") else None
        self.tokens = Bucket(int(quotas["tpm"]), now)
        self.burndown = float(quotas.get("output_burndown", 1))

    def refill(self, now: float) -> None:
        self.tokens.refill(now)
        if self.requests:
            self.requests.refill(now)


def _rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(math.ceil(epoch), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _round_thousand(value: float, limit: int) -> int:
    return min(limit, int(max(0.0, value) / 1000.0 + 0.5) * 1000)


class Admission:
    """Charged capacity of one admitted request, settled when its answer ends."""

    def __init__(self, emulator: "Emulator", key: str, kind: str, state: Any,
                 reserved: float, mode: str, burndown: float = 1.0) -> None:
        self.emulator, self.key, self.kind, self.state = emulator, key, kind, state
        self.reserved, self.mode, self.burndown = reserved, mode, burndown
        self.charged_out = 0
        self.produced = 0
        self.done = False

    def progress(self, tokens: int) -> None:
        """Output produced while streaming: charged now in "produced" mode."""
        self.produced += tokens
        if self.kind == "anthropic" and self.mode == "produced" and tokens:
            with self.emulator.lock:
                self.state.output.refill(time.monotonic())
                self.state.output.level -= tokens
                self.charged_out += tokens

    def finish(self, output_tokens: int) -> None:
        if self.done:
            return
        self.done = True
        em = self.emulator
        with em.lock:
            now = time.monotonic()
            if self.kind == "anthropic":
                bucket = self.state.output
                bucket.refill(now)
                if self.mode == "produced":
                    bucket.level -= output_tokens - self.charged_out
                else:
                    bucket.level = min(float(bucket.limit),
                                       bucket.level + self.reserved - output_tokens)
                em.families_stats[self.key]["output_tokens"] += output_tokens
            else:
                bucket = self.state.tokens
                bucket.refill(now)
                bucket.level = min(float(bucket.limit),
                                   bucket.level + self.reserved - output_tokens * self.burndown)
                em.bedrock_stats[self.key]["output_tokens"] += output_tokens
            em.in_flight -= 1


class RateLimiting:
    """The Emulator's rate limiting: its buckets (`families`, `bedrock`, `pool_states`) and the
    admission of requests; uses `config`, `lock` and the `rate_limited` counters of the host."""

    def reset_buckets(self) -> None:
        """Every bucket full again, built from the configured limits (Bedrock and pool buckets
        are made on first use)."""
        now = time.monotonic()
        self.families: dict[str, FamilyState] = {}
        for family in {*FAMILIES, *self.config["limits"]}:
            self.families[family] = FamilyState(*self.family_limits(family), now)
        self.bedrock: dict[str, BedrockState] = {}
        self.pool_states: dict[str, dict[str, FamilyState]] = {}

    def family_limits(self, family: str) -> tuple[int, int, int]:
        rpm, itpm, otpm = PRESETS[self.config["tier"]].get(family, (None, None, None))
        override = self.config["limits"].get(family, {})
        return (override.get("rpm", rpm), override.get("itpm", itpm), override.get("otpm", otpm))

    def bedrock_quotas(self, model_id: str) -> dict:
        quotas = dict(BEDROCK_DEFAULT)
        cfg = self.config["bedrock"]
        quotas.update({k: v for k, v in cfg.items() if k in BEDROCK_DEFAULT})
        quotas.update(cfg.get("default") or {})
        quotas.update(cfg.get(model_id) or {})
        return quotas

    def pool_bedrock_quotas(self, pool: str | None, model_id: str, tier: str) -> dict:
        """Quotas of one Bedrock pool: the model's, then the pool's, then its tier's."""
        quotas = self.bedrock_quotas(model_id)
        if pool is not None:
            config = self.config["pools"].get(pool) or {}
            quotas.update({k: v for k, v in config.items() if k in BEDROCK_DEFAULT})
            quotas.update((config.get("tiers") or {}).get(tier) or {})
        return quotas

    def pool_families(self, pool: str | None) -> dict[str, "FamilyState"]:
        """The Anthropic API buckets of one pool (the default organisation when None)."""
        if pool is None:
            return self.families
        states = self.pool_states.get(pool)
        if states is None:
            overrides = (self.config["pools"].get(pool) or {}).get("limits") or {}
            now = time.monotonic()
            states = self.pool_states[pool] = {}
            for family in self.families:
                rpm, itpm, otpm = self.family_limits(family)
                limits = overrides.get(family, {})
                states[family] = FamilyState(limits.get("rpm", rpm), limits.get("itpm", itpm),
                                              limits.get("otpm", otpm), now)
        return states


    def _ratelimit_headers(self, state: FamilyState) -> list[tuple[str, str]]:
        wall = time.time()
        headers = []
        token_dims = {}
        for name, bucket in (("requests", state.requests), ("input-tokens", state.input),
                             ("output-tokens", state.output)):
            if name == "requests":
                remaining = max(0, math.floor(bucket.level + EPS))
            else:
                remaining = _round_thousand(bucket.level, bucket.limit)
                token_dims[name] = (bucket.level, bucket.limit, remaining,
                                    _rfc3339(wall + bucket.time_to_full()))
            headers += [(f"anthropic-ratelimit-{name}-limit", str(bucket.limit)),
                        (f"anthropic-ratelimit-{name}-remaining", str(remaining)),
                        (f"anthropic-ratelimit-{name}-reset",
                         _rfc3339(wall + bucket.time_to_full()))]
        level_in, limit_in, rem_in, reset_in = token_dims["input-tokens"]
        level_out, limit_out, rem_out, reset_out = token_dims["output-tokens"]
        tightest = token_dims["input-tokens" if level_in <= level_out else "output-tokens"]
        headers += [("anthropic-ratelimit-tokens-limit", str(tightest[1])),
                    ("anthropic-ratelimit-tokens-remaining", str(tightest[2])),
                    ("anthropic-ratelimit-tokens-reset", tightest[3])]
        return headers

    def _rate_limit_error(self, state: FamilyState, dimension: str, limit: int, wait: float,
                          too_large: bool = False) -> ApiError:
        self.rate_limited += 1
        self.rate_limited_by[dimension] += 1
        message = (f"This request would exceed the rate limit for your organization ({ORG_ID}) "
                   f"of {limit:,} {dimension} per minute. For details, refer to: "
                   f"{RATE_LIMIT_DOCS}. You can see the response headers for current usage. "
                   "Please reduce the prompt length or the maximum tokens requested, or try "
                   "again later. You may also contact sales at "
                   "https://www.anthropic.com/contact-sales to discuss your options for a rate "
                   "limit increase.")
        if too_large:
            message += f" (This prompt alone is larger than {limit:,} {dimension}.)"
        return ApiError(429, "rate_limit_error", message,
                         headers=[*self._ratelimit_headers(state),
                                  ("retry-after", str(retry_after(wait)))])

    # count_tokens ------------------------------------------------------------------------------

    def _count_tokens(self, body: dict) -> Reply:
        model = body.get("model")
        if not model:
            raise ApiError(400, "invalid_request_error", "model: Field required")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ApiError(400, "invalid_request_error", "messages: at least one message is "
                            "required")
        family = self.family_of(str(model))
        if family is None:
            raise ApiError(404, "not_found_error", f"model: {model}")
        tokens = count_request_input_tokens(body)
        with self.lock:
            state = self.families[family]
            state.refill(time.monotonic())
            bucket = state.count_tokens
            wait = bucket.wait_for(1)
            if wait > 0:
                self.rate_limited += 1
                self.rate_limited_by["count_tokens requests"] += 1
                raise ApiError(429, "rate_limit_error", "This request would exceed the rate "
                                f"limit for your organization ({ORG_ID}) of {bucket.limit:,} "
                                f"count_tokens requests per minute. For details, refer to: "
                                f"{RATE_LIMIT_DOCS}.",
                                headers=[*self._count_headers(bucket),
                                         ("retry-after", str(retry_after(wait)))])
            bucket.level -= 1
            self.count_tokens_requests += 1
            headers = self._count_headers(bucket)
        request_id = new_request_id()
        return json_reply(200, {"input_tokens": tokens}, [("request-id", request_id), *headers])

    @staticmethod
    def _count_headers(bucket: Bucket) -> list[tuple[str, str]]:
        return [("anthropic-ratelimit-requests-limit", str(bucket.limit)),
                ("anthropic-ratelimit-requests-remaining",
                 str(max(0, math.floor(bucket.level + EPS)))),
                ("anthropic-ratelimit-requests-reset",
                 _rfc3339(time.time() + bucket.time_to_full()))]

    def _admit_anthropic(self, family: str, counted_input: int, max_tokens: int,
                         now: float, state: FamilyState | None = None,
                         key: str | None = None) -> Admission:
        state = state or self.families[family]
        state.refill(now)
        mode = self.config["otpm_mode"]
        out_need = min(max_tokens, state.output.limit) if mode == "reserve" else 0
        worst = None  # (wait, dimension, limit, too large)
        for dimension, bucket, need in (("requests", state.requests, 1),
                                        ("input tokens", state.input, counted_input),
                                        ("output tokens", state.output, out_need)):
            if dimension == "output tokens" and mode == "produced":
                wait, too_large = bucket.wait_positive(), False
            elif need > bucket.limit:
                wait, too_large = max(bucket.time_to_full(), 1.0), True
            else:
                wait, too_large = bucket.wait_for(need), False
            if wait > 0 and (worst is None or wait > worst[0]):
                worst = (wait, dimension, bucket.limit, too_large)
        if worst is not None:
            raise self._rate_limit_error(state, worst[1], worst[2], worst[0], worst[3])
        fraction = self.config["accel_fraction"]
        if fraction is not None:
            window = float(self.config["accel_window_s"])
            while state.arrivals and state.arrivals[0] <= now - window:
                state.arrivals.popleft()
            if len(state.arrivals) + 1 > fraction * state.requests.limit:
                self.rate_limited += 1
                self.rate_limited_by["acceleration"] += 1
                raise ApiError(429, "rate_limit_error", "Your organization's usage increased "
                                "too sharply (acceleration limit). Please ramp up gradually.",
                                headers=[*self._ratelimit_headers(state),
                                         ("retry-after", str(retry_after(window)))])
            state.arrivals.append(now)
        state.requests.level -= 1
        state.input.level -= counted_input
        state.output.level -= out_need
        return Admission(self, key or family, "anthropic", state, out_need, mode)

    def _admit_bedrock(self, model_id: str, charged_input: int, max_tokens: int,
                       now: float, pool: str | None = None, tier: str = "default",
                       key: str | None = None) -> Admission:
        key = key or model_id
        state = self.bedrock.get(key)
        if state is None:
            state = self.bedrock[key] = BedrockState(
                self.pool_bedrock_quotas(pool, model_id, tier), now)
        state.refill(now)
        # flex runs on spare capacity: it needs the headroom on top of its own charge
        spare = self.config["flex_headroom"] if tier == "flex" else 0.0
        tokens = state.tokens
        if charged_input > tokens.limit:
            self.rate_limited += 1
            self.rate_limited_by["bedrock tokens"] += 1
            raise ApiError(429, "ThrottlingException", "Too many tokens, please wait before "
                            "trying again.")
        reserve = min(charged_input + max_tokens * state.burndown, float(tokens.limit))
        if state.requests is not None and state.requests.wait_for(
                min(1 + spare * state.requests.limit, float(state.requests.limit))) > 0:
            self.rate_limited += 1
            self.rate_limited_by["bedrock requests"] += 1
            raise ApiError(429, "ThrottlingException", "Too many requests, please wait before "
                            "trying again.")
        if tokens.wait_for(min(reserve + spare * tokens.limit, float(tokens.limit))) > 0:
            self.rate_limited += 1
            self.rate_limited_by["bedrock tokens"] += 1
            raise ApiError(429, "ThrottlingException", "Too many tokens, please wait before "
                            "trying again.")
        if state.requests is not None:
            state.requests.level -= 1
        tokens.level -= reserve
        return Admission(self, key, "bedrock", state, reserve, "reserve", state.burndown)
