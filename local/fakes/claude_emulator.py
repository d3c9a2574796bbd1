"""Local Claude: the Messages API (Anthropic API and the Bedrock runtime paths) with the published
rate-limit semantics, so tests and benchmarks can prove a client never gets a 429.

    python -m local.fakes.claude_emulator --config '{"tier": "tier1"}'  # prints {"port": N}

From Python, `ClaudeEmulator()` starts it in a child process and stops it on exit:

    with ClaudeEmulator({"limits": {"sonnet-4": {"rpm": 60}}}) as emu:
        client = anthropic.Anthropic(base_url=emu.base_url, api_key="test")
        bedrock = anthropic.AnthropicBedrock(base_url=emu.bedrock_base_url, aws_region="us-east-1",
                                             aws_access_key="testing", aws_secret_key="testing")
        emu.inject("529", count=2); emu.stats(); emu.reset()

What it enforces (Anthropic's and Amazon Bedrock's published rate-limit rules):

- Anthropic API: per model family (Sonnet 4.x, Opus 4.x, Haiku 4.5) continuously refilled token
  buckets for requests, input tokens (input + cache writes, + cache reads only with
  `counts_cache_reads`) and output tokens; capacity = the per-minute limit, refill = limit / 60
  per second, starting full. A request is admitted only if every dimension has enough; otherwise
  429 `rate_limit_error` with `retry-after` (whole seconds, >= 1) and nothing is consumed. Output
  is reserved as `max_tokens` at the start and settled to the actual output at the end
  (`otpm_mode` "reserve"), or charged as produced when the bucket is above zero ("produced").
  Every response carries the `anthropic-ratelimit-*` headers.
- Bedrock (`POST /model/{id}/invoke[-with-response-stream]`, no SigV4 check): per model id, a
  tokens-per-minute bucket charged input + cache write + output x burndown (reserving
  input + max_tokens x burndown at the start), plus requests per minute; throttling is 429
  `ThrottlingException`. Streams use the AWS event-stream framing.
- Several pools at once: a path prefix `/pool/<name>` (e.g. a Bedrock region, or a second
  Anthropic organisation) gets its own buckets; `pools.<name>` overrides its limits
  (`rpm`/`tpm`/`output_burndown` for Bedrock, `limits` per family for the Anthropic API) and
  `pools.<name>.tiers.<tier>` a Bedrock service tier's. Each Bedrock service tier
  (`X-Amzn-Bedrock-Service-Tier`: priority, default, flex, reserved) has its own buckets; `flex`
  is refused while its buckets hold less than `flex_headroom` of their capacity, so it is
  throttled first under load. `POST /_emulator/faults {"kind": "529", "pool": name,
  "for_s": 30}` makes a pool answer with that fault for 30 s (an outage), any number of requests.
- Deterministic answers; `EMULATOR: output N`, `EMULATOR: answer N <text>` (the answer is
  <text> repeated N times) and `EMULATOR: call <tool> <json>` lines in the last user message
  script the output; prompt caching with `cache_control` breakpoints; fault
  injection (529, 500, 504, 429, spend_limit, slow) through `/_emulator/faults`.

A reservation that can never fit (max_tokens above the OTPM limit, or max_tokens x burndown above
the Bedrock TPM) is clamped to the bucket's capacity, i.e. such a request needs a full bucket. A
prompt larger than the input limit itself is always refused (429, with a message saying so).
"""

from __future__ import annotations

import argparse
import base64
import collections
import copy
import hashlib
import json
import math
import os
import random
import re
import signal
import struct
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zlib
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

from guard.tiers import ANTHROPIC_TIERS, FAMILIES
from local.fakes.child import ChildServer, announce_port, exit_with_parent
from local.fakes.claude_batches import BATCH_CONFIG, BatchService, validate_batch_config

CONTROL_PREFIX = "/_emulator/"

# (requests, input tokens, output tokens) per minute per family and preset: the same table
# the CDK app deploys (lambdas/guard/tiers.py), so the emulator and the guard agree by
# construction.
PRESETS = ANTHROPIC_TIERS

BEDROCK_DEFAULT = {"rpm": 200, "tpm": 200_000, "output_burndown": 5}

DEFAULT_CONFIG: dict[str, Any] = {
    "tier": "tier1",
    "limits": {},            # family -> {"rpm", "itpm", "otpm"} overrides (new families allowed)
    "models": {},            # extra model id -> family, e.g. {"claude-3-5-haiku-20241022": "h35"}
    "bedrock": {},           # {"rpm", "tpm", "output_burndown"} defaults and/or model id -> quotas
    "latency_s": 0.0,        # base latency of every answer
    "token_latency_s": 0.0,  # per output token, streaming only
    "output_tokens": 50,     # default answer length (capped by max_tokens)
    "otpm_mode": "reserve",  # "reserve" (max_tokens at start, settle at end) or "produced"
    "counts_cache_reads": False,
    "context_window": 200_000,
    "cache_min_tokens": 0,   # shortest cacheable prefix (the real API: 1024-4096 by model)
    "revoked_api_keys": [],  # API keys (x-api-key or bearer) answered with 401
    # "acceleration limits" (unpublished rule, configurable here): refuse a request when more
    # than accel_fraction of the RPM capacity arrived within the last accel_window_s seconds
    "accel_fraction": None,
    "accel_window_s": 1.0,
    # pools: `/pool/<name>` path prefix -> {"rpm", "tpm", "output_burndown", "limits": {family:
    # {...}}, "tiers": {tier: {"rpm", "tpm", "output_burndown"}}}; unknown names use the defaults
    "pools": {},
    "flex_headroom": 0.5,    # flex admitted only while its buckets keep this fraction of capacity
    # Message Batches (local.fakes.claude_batches): processing time, per-batch and queue limits
    **BATCH_CONFIG,
}

FAULT_KINDS = ("529", "500", "504", "429", "spend_limit", "slow")
#: Bedrock service tiers (the `X-Amzn-Bedrock-Service-Tier` header; absent means "default").
SERVICE_TIERS = ("priority", "default", "flex", "reserved")
SERVICE_TIER_HEADER = "x-amzn-bedrock-service-tier"
POOL_PREFIX = "/pool/"
_POOL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

IMAGE_TOKENS = 1600
PER_MESSAGE_TOKENS = 3
PER_REQUEST_TOKENS = 10
CACHE_TTL_S = {"5m": 300.0, "1h": 3600.0}
EPS = 1e-9
RATE_LIMIT_DOCS = "https://docs.claude.com/en/api/rate-limits"
ORG_ID = "00000000-0000-4000-8000-000000000000"

#: Short words, one token each under `count_tokens` (every word is 1-4 ASCII letters).
VOCABULARY = (
    "the data flow rate time load fast safe node work plan test path unit byte call cost wait "
    "step edge core lane gate pool sync hold tick mesh peak span seed loop sum key map log bit "
    "run end new old team risk note next task goal view list form file code line page open "
    "done good real high low part full half base"
).split()


# -- token counting ------------------------------------------------------------------------------

_WORD_RE = re.compile(r"[A-Za-z]+")
_DIGITS_RE = re.compile(r"[0-9]+")
_OTHER_RE = re.compile(r"[^ \t\n\r\f\vA-Za-z0-9]")  # punctuation, symbols, any non-ASCII char


def count_tokens(text: str) -> int:
    """The emulator's own tokenizer: ASCII words ceil(len/4) tokens (min 1), digit runs
    ceil(len/3), every other non-whitespace character (punctuation, symbols, non-ASCII) 1."""
    if not text:
        return 0
    tokens = sum((len(word) + 3) // 4 for word in _WORD_RE.findall(text))
    tokens += sum((len(run) + 2) // 3 for run in _DIGITS_RE.findall(text))
    return tokens + len(_OTHER_RE.findall(text))


def _strip_cache_control(block: Any) -> Any:
    if isinstance(block, dict) and "cache_control" in block:
        return {k: v for k, v in block.items() if k != "cache_control"}
    return block


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _block_tokens(block: Any) -> int:
    if isinstance(block, str):
        return count_tokens(block)
    if not isinstance(block, dict):
        return count_tokens(_dumps(block))
    kind = block.get("type")
    if kind == "text":
        return count_tokens(str(block.get("text", "")))
    if kind == "image":
        return IMAGE_TOKENS
    if kind == "document":
        source = block.get("source") or {}
        if source.get("type") == "text":
            return count_tokens(str(source.get("data", "")))
        if source.get("type") == "content" and isinstance(source.get("content"), list):
            return sum(_block_tokens(b) for b in source["content"])
        return IMAGE_TOKENS
    if kind in ("tool_use", "server_tool_use"):
        return count_tokens(_dumps(block.get("input", {})))
    if kind == "tool_result":
        content = block.get("content")
        if isinstance(content, list):
            return sum(_block_tokens(b) for b in content)
        return count_tokens(content if isinstance(content, str) else "" if content is None
                            else _dumps(content))
    if kind == "thinking":
        return count_tokens(str(block.get("thinking", "")))
    if kind == "redacted_thinking":
        return count_tokens(str(block.get("data", "")))
    return count_tokens(_dumps(_strip_cache_control(block)))


class _Segment:
    """One cacheable unit of the prompt, in cache order (tools, system, messages)."""

    __slots__ = ("tokens", "canonical", "ttl")

    def __init__(self, tokens: int, canonical: str, ttl: str | None) -> None:
        self.tokens, self.canonical, self.ttl = tokens, canonical, ttl


def _ttl_of(block: Any) -> str | None:
    if not isinstance(block, dict) or not isinstance(block.get("cache_control"), dict):
        return None
    return "1h" if block["cache_control"].get("ttl") == "1h" else "5m"


def _canonical(*parts: Any) -> str:
    return json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _segments(body: dict) -> list[_Segment]:
    segments = [_Segment(PER_REQUEST_TOKENS, "request", None)]
    for tool in body.get("tools") or []:
        plain = _strip_cache_control(tool)
        segments.append(_Segment(count_tokens(_dumps(plain)), _canonical("tool", plain),
                                 _ttl_of(tool)))
    system = body.get("system")
    if isinstance(system, str):
        segments.append(_Segment(count_tokens(system), _canonical("system", system), None))
    elif isinstance(system, list):
        for block in system:
            segments.append(_Segment(_block_tokens(block),
                                     _canonical("system", _strip_cache_control(block)),
                                     _ttl_of(block)))
    for index, message in enumerate(body.get("messages") or []):
        role = message.get("role") if isinstance(message, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        blocks = [content] if isinstance(content, str) else content if isinstance(content, list) \
            else []
        if not blocks:
            segments.append(_Segment(PER_MESSAGE_TOKENS, _canonical("msg", index, role), None))
            continue
        for position, block in enumerate(blocks):
            overhead = PER_MESSAGE_TOKENS if position == 0 else 0
            segments.append(_Segment(_block_tokens(block) + overhead,
                                     _canonical("msg", index, role, position,
                                                _strip_cache_control(block)),
                                     _ttl_of(block)))
    return segments


def count_request_input_tokens(body: dict) -> int:
    """Input tokens of a whole Messages request: 10 per request, 3 per message, system, text
    blocks, tool_use inputs and tool_result contents, tool definitions (JSON), 1600 per image."""
    return sum(segment.tokens for segment in _segments(body))


# -- model ids -----------------------------------------------------------------------------------

_FAMILY_PATTERNS = (
    (re.compile(r"^claude-sonnet-4(?:-\d)?(?:-\d{8})?$"), "sonnet-4"),
    (re.compile(r"^claude-opus-4(?:-\d)?(?:-\d{8})?$"), "opus-4"),
    (re.compile(r"^claude-haiku-4-5(?:-\d{8})?$"), "haiku-4.5"),
)
_BEDROCK_ID = re.compile(
    r"^(?:[a-z]{2,6}(?:-[a-z]+)?\.)?anthropic\.(claude-[a-z0-9-]+?)(?:-v\d+(?::\d+)?)?$")
_OPUS_32K = re.compile(r"^claude-opus-4(?:-[01])?(?:-\d{8})?$")
_64K = re.compile(r"^claude-(?:sonnet-4(?:-[05])?|haiku-4-5|opus-4-5)(?:-\d{8})?$")


def bedrock_base_model(model_id: str) -> str | None:
    """"us.anthropic.claude-sonnet-4-20250514-v1:0" (or an ARN ending in it) ->
    "claude-sonnet-4-20250514"; None if it is not an Anthropic model id."""
    match = _BEDROCK_ID.match(model_id.rsplit("/", 1)[-1])
    return match.group(1) if match else None


def max_output_tokens(model: str) -> int:
    """Largest max_tokens a model accepts: Opus 4 / 4.1 32k; Sonnet 4 / 4.5, Haiku 4.5,
    Opus 4.5 64k; newer 4.x versions 128k."""
    if _OPUS_32K.match(model):
        return 32_000
    return 64_000 if _64K.match(model) else 128_000


# -- buckets -------------------------------------------------------------------------------------

class _Bucket:
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


class _FamilyState:
    def __init__(self, rpm: int, itpm: int, otpm: int, now: float) -> None:
        self.requests = _Bucket(rpm, now)
        self.input = _Bucket(itpm, now)
        self.output = _Bucket(otpm, now)
        self.count_tokens = _Bucket(rpm, now)  # count_tokens has its own RPM
        self.arrivals: collections.deque[float] = collections.deque()  # admitted, monotonic s

    def refill(self, now: float) -> None:
        for bucket in (self.requests, self.input, self.output, self.count_tokens):
            bucket.refill(now)


class _BedrockState:
    def __init__(self, quotas: dict, now: float) -> None:
        self.requests = _Bucket(int(quotas["rpm"]), now) if quotas.get("rpm") else None
        self.tokens = _Bucket(int(quotas["tpm"]), now)
        self.burndown = float(quotas.get("output_burndown", 1))

    def refill(self, now: float) -> None:
        self.tokens.refill(now)
        if self.requests:
            self.requests.refill(now)


def _rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(math.ceil(epoch), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _round_thousand(value: float, limit: int) -> int:
    return min(limit, int(max(0.0, value) / 1000.0 + 0.5) * 1000)


def _retry_after(wait_s: float) -> int:
    return max(1, math.ceil(wait_s - 1e-9))


# -- requests and replies ------------------------------------------------------------------------

class _ApiError(Exception):
    def __init__(self, status: int, kind: str, message: str, headers=None, extra=None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message
        self.headers = list(headers or [])
        self.extra = extra or {}


class _Reply:
    __slots__ = ("status", "headers", "body", "stream", "on_close")

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes = b"",
                 stream: Iterator[bytes] | None = None, on_close=None) -> None:
        self.status, self.headers, self.body, self.stream = status, headers, body, stream
        self.on_close = on_close  # called once the stream is done or abandoned


def _json_reply(status: int, payload: Any, headers=()) -> _Reply:
    return _Reply(status, [("content-type", "application/json"), *headers],
                  json.dumps(payload).encode())


def _request_id() -> str:
    return "req_" + uuid.uuid4().hex[:24]


def _sse(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _es_header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return (struct.pack("!B", len(raw_name)) + raw_name + b"\x07"
            + struct.pack("!H", len(raw_value)) + raw_value)


_CHUNK_HEADERS = (_es_header(":event-type", "chunk")
                  + _es_header(":content-type", "application/json")
                  + _es_header(":message-type", "event"))


def event_stream_message(payload: bytes, headers: bytes = _CHUNK_HEADERS) -> bytes:
    """One AWS event-stream message: prelude (total length, headers length), prelude CRC32,
    headers, payload, message CRC32 (all big-endian)."""
    prelude = struct.pack("!II", 16 + len(headers) + len(payload), len(headers))
    message = prelude + struct.pack("!I", zlib.crc32(prelude)) + headers + payload
    return message + struct.pack("!I", zlib.crc32(message))


def _bedrock_chunk(event: dict) -> bytes:
    raw = json.dumps(event, separators=(",", ":")).encode()
    return event_stream_message(json.dumps({"bytes": base64.b64encode(raw).decode()}).encode())


_OUTPUT_DIRECTIVE = re.compile(r"EMULATOR:[ \t]*output[ \t]+(\d+)")
_ANSWER_DIRECTIVE = re.compile(r"EMULATOR:[ \t]*answer[ \t]+(\d+)[ \t]+(\S+)")
_CALL_DIRECTIVE = re.compile(r"^[ \t]*EMULATOR:[ \t]*call[ \t]+(\S+)[ \t]+(\{.*\})[ \t]*$",
                             re.MULTILINE)


class _Admission:
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


# -- the emulator --------------------------------------------------------------------------------

class Emulator:
    """All state of one emulator process; HTTP-agnostic (`handle` returns a `_Reply`)."""

    def __init__(self, config: dict | None = None) -> None:
        self.lock = threading.Lock()
        self.initial_config = self._validated(copy.deepcopy(DEFAULT_CONFIG), config or {})
        self.config = copy.deepcopy(self.initial_config)
        self.faults: collections.deque[dict] = collections.deque()
        self._reset_state()
        self.batch_service = BatchService(self)

    # config ------------------------------------------------------------------------------------

    @staticmethod
    def _validated(base: dict, changes: dict) -> dict:
        if not isinstance(changes, dict):
            raise ValueError("config must be a JSON object")
        unknown = set(changes) - set(DEFAULT_CONFIG)
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        config = copy.deepcopy(base)
        for key, value in changes.items():
            if key in ("limits", "bedrock", "models"):
                if not isinstance(value, dict):
                    raise ValueError(f"{key} must be an object")
                merged = dict(config[key])
                for name, item in value.items():
                    if isinstance(item, dict) and isinstance(merged.get(name), dict):
                        merged[name] = {**merged[name], **item}
                    else:
                        merged[name] = item
                config[key] = merged
            else:
                config[key] = value
        if config["tier"] not in PRESETS:
            raise ValueError(f"tier must be one of {sorted(PRESETS)}, got {config['tier']!r}")
        if config["otpm_mode"] not in ("reserve", "produced"):
            raise ValueError("otpm_mode must be 'reserve' or 'produced'")
        for name, limits in config["limits"].items():
            if not isinstance(limits, dict) or set(limits) - {"rpm", "itpm", "otpm"}:
                raise ValueError(f"limits[{name!r}] must hold only rpm, itpm, otpm")
            if name not in FAMILIES and set(limits) != {"rpm", "itpm", "otpm"}:
                raise ValueError(f"limits for the new family {name!r} need rpm, itpm and otpm")
            for dim, value in limits.items():
                if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                    raise ValueError(f"limits[{name!r}][{dim!r}] must be a positive integer")
        for name, quotas in config["bedrock"].items():
            if name in BEDROCK_DEFAULT:
                if not isinstance(quotas, (int, float)) or quotas < 0:
                    raise ValueError(f"bedrock[{name!r}] must be a non-negative number")
            elif not isinstance(quotas, dict) or set(quotas) - set(BEDROCK_DEFAULT):
                raise ValueError(f"bedrock[{name!r}] must hold only {sorted(BEDROCK_DEFAULT)}")
        if not isinstance(config["pools"], dict):
            raise ValueError("pools must be an object")
        for name, pool in config["pools"].items():
            if not _POOL_NAME.match(name) or not isinstance(pool, dict) \
                    or set(pool) - {*BEDROCK_DEFAULT, "limits", "tiers"}:
                raise ValueError(f"pools[{name!r}] must be an object of {sorted(BEDROCK_DEFAULT)}, "
                                 "limits and tiers")
            for tier, quotas in (pool.get("tiers") or {}).items():
                if tier not in SERVICE_TIERS or not isinstance(quotas, dict) \
                        or set(quotas) - set(BEDROCK_DEFAULT):
                    raise ValueError(f"pools[{name!r}].tiers: a tier is one of {SERVICE_TIERS} "
                                     f"with only {sorted(BEDROCK_DEFAULT)}, got {tier!r}")
            for family, limits in (pool.get("limits") or {}).items():
                if family not in FAMILIES or not isinstance(limits, dict) \
                        or set(limits) - {"rpm", "itpm", "otpm"}:
                    raise ValueError(f"pools[{name!r}].limits[{family!r}] must be a known family "
                                     "with only rpm, itpm, otpm")
        headroom = config["flex_headroom"]
        if isinstance(headroom, bool) or not isinstance(headroom, (int, float)) \
                or not 0 <= headroom < 1:
            raise ValueError("flex_headroom must be a number in [0, 1)")
        for model, family in config["models"].items():
            if family not in FAMILIES and family not in config["limits"]:
                raise ValueError(f"models[{model!r}]: family {family!r} has no limits")
        for key in ("latency_s", "token_latency_s"):
            if not isinstance(config[key], (int, float)) or config[key] < 0:
                raise ValueError(f"{key} must be a non-negative number")
        if config["accel_fraction"] is not None and not (
                isinstance(config["accel_fraction"], (int, float))
                and 0 < config["accel_fraction"] <= 1):
            raise ValueError("accel_fraction must be null or a number in (0, 1]")
        if not isinstance(config["accel_window_s"], (int, float)) or config["accel_window_s"] <= 0:
            raise ValueError("accel_window_s must be a positive number of seconds")
        if not isinstance(config["revoked_api_keys"], list) or not all(
                isinstance(key, str) for key in config["revoked_api_keys"]):
            raise ValueError("revoked_api_keys must be a list of strings")
        validate_batch_config(config)
        for key in ("output_tokens", "context_window", "cache_min_tokens"):
            if isinstance(config[key], bool) or not isinstance(config[key], int) \
                    or config[key] < 0:
                raise ValueError(f"{key} must be a non-negative integer")
        return config

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

    def pool_families(self, pool: str | None) -> dict[str, "_FamilyState"]:
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
                states[family] = _FamilyState(limits.get("rpm", rpm), limits.get("itpm", itpm),
                                              limits.get("otpm", otpm), now)
        return states

    def family_of(self, model: str) -> str | None:
        if model in self.config["models"]:
            return self.config["models"][model]
        for pattern, family in _FAMILY_PATTERNS:
            if pattern.match(model):
                return family
        return None

    def _reset_state(self) -> None:
        now = time.monotonic()
        self.families: dict[str, _FamilyState] = {}
        for family in {*FAMILIES, *self.config["limits"]}:
            self.families[family] = _FamilyState(*self.family_limits(family), now)
        self.bedrock: dict[str, _BedrockState] = {}
        self.pool_states: dict[str, dict[str, _FamilyState]] = {}
        #: pool name ("" for no prefix) -> {"admitted", "throttled", "faults"}
        self.pool_stats: dict[str, collections.Counter[str]] = collections.defaultdict(
            collections.Counter)
        self.cache: dict[str, float] = {}  # prefix hash -> expiry (monotonic)
        self.total_requests = 0
        self.responses: collections.Counter[str] = collections.Counter()
        self.rate_limited = 0
        self.rate_limited_by: collections.Counter[str] = collections.Counter()
        self.injected: collections.Counter[str] = collections.Counter()
        self.count_tokens_requests = 0
        self.families_stats: dict[str, dict[str, int]] = collections.defaultdict(self._zero_usage)
        self.bedrock_stats: dict[str, dict[str, int]] = collections.defaultdict(self._zero_usage)
        for family in self.families:  # every family listed, zeros until it admits something
            self.families_stats[family]
        self.in_flight = getattr(self, "in_flight", 0)  # answers still running survive a reset
        if hasattr(self, "batch_service"):
            self.batch_service.reset()
        self.max_in_flight = self.in_flight

    @staticmethod
    def _zero_usage() -> dict[str, int]:
        return {"requests": 0, "input_tokens": 0, "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0, "output_tokens": 0}

    # dispatch ----------------------------------------------------------------------------------

    def handle(self, method: str, target: str, body: bytes, headers: dict[str, str]) -> _Reply:
        path = target.split("?", 1)[0]
        if path.startswith(CONTROL_PREFIX):
            return self._control(method, path[len(CONTROL_PREFIX):], body)
        with self.lock:
            self.total_requests += 1
        try:
            reply = self._route(method, path, body, headers, target)
        except _ApiError as err:
            reply = self._error_reply(err, bedrock="/model/" in path)
        except Exception as err:  # noqa: BLE001 - a bug here must still answer like an API
            reply = self._error_reply(_ApiError(500, "api_error", f"emulator bug: {err!r}"),
                                      bedrock="/model/" in path)
        with self.lock:
            self.responses[str(reply.status)] += 1
        return reply

    def _route(self, method: str, path: str, body: bytes, headers: dict[str, str],
               target: str = "") -> _Reply:
        pool = None
        if path.startswith(POOL_PREFIX):
            pool, _, rest = path[len(POOL_PREFIX):].partition("/")
            if not _POOL_NAME.match(pool):
                raise _ApiError(404, "not_found_error", f"Not found: {method} {path}")
            path, target = "/" + rest, "/" + target[len(POOL_PREFIX) + len(pool) + 1:]
        if path.startswith("/v1/messages/batches"):
            self._check_anthropic_headers(headers)
            status, payload = self.batch_service.route(method, target or path, body, headers,
                                                       _ApiError)
            if isinstance(payload, bytes):  # results: JSONL
                return _Reply(status, [("content-type", "application/binary"),
                                       ("request-id", _request_id())], payload)
            return _json_reply(status, payload, [("request-id", _request_id())])
        if path == "/v1/messages" and method == "POST":
            self._check_anthropic_headers(headers)
            return self._messages(self._parse_json(body), bedrock_model=None, stream=None,
                                  pool=pool)
        if path == "/v1/messages/count_tokens" and method == "POST":
            self._check_anthropic_headers(headers)
            return self._count_tokens(self._parse_json(body))
        parts = path.split("/")
        if len(parts) == 4 and parts[1] == "model" and method == "POST" \
                and parts[3] in ("invoke", "invoke-with-response-stream"):
            model_id = urllib.parse.unquote(parts[2])
            try:
                request = json.loads(body or b"null")
            except ValueError:
                raise _ApiError(400, "ValidationException", "Malformed input request, please "
                                "reformat your input and try again.") from None
            tier = headers.get(SERVICE_TIER_HEADER, "default")
            if tier not in SERVICE_TIERS:
                raise _ApiError(400, "ValidationException", f"Invalid service tier {tier!r}: "
                                f"expected one of {', '.join(SERVICE_TIERS)}.")
            return self._messages(request, bedrock_model=model_id,
                                  stream=parts[3] == "invoke-with-response-stream", pool=pool,
                                  tier=tier)
        if path.startswith("/model/"):
            raise _ApiError(404, "UnknownOperationException", f"Unknown operation {path}")
        raise _ApiError(404, "not_found_error", f"Not found: {method} {path}")

    def _check_anthropic_headers(self, headers: dict[str, str]) -> None:
        if not headers.get("x-api-key") and not headers.get("authorization"):
            raise _ApiError(401, "authentication_error", "x-api-key header is required")
        bearer = headers.get("authorization", "")
        key = headers.get("x-api-key") or (bearer[7:] if bearer[:7].lower() == "bearer " else "")
        if key in self.config["revoked_api_keys"]:
            raise _ApiError(401, "authentication_error", "invalid x-api-key")
        if not headers.get("anthropic-version"):
            raise _ApiError(400, "invalid_request_error", "anthropic-version: header is required")

    @staticmethod
    def _parse_json(body: bytes) -> dict:
        try:
            value = json.loads(body or b"null")
        except ValueError as err:
            raise _ApiError(400, "invalid_request_error", f"request body is not valid JSON: {err}")
        if not isinstance(value, dict):
            raise _ApiError(400, "invalid_request_error", "request body must be a JSON object")
        return value

    def _error_reply(self, err: _ApiError, *, bedrock: bool) -> _Reply:
        request_id = _request_id()
        if bedrock:
            return _json_reply(err.status, {"message": err.message},
                               [("x-amzn-ErrorType", err.kind), ("x-amzn-RequestId", request_id),
                                *err.headers])
        error = {"type": err.kind, "message": err.message, **err.extra}
        return _json_reply(err.status, {"type": "error", "error": error, "request_id": request_id},
                           [("request-id", request_id), *err.headers])

    # validation --------------------------------------------------------------------------------

    def _validate(self, body: dict, *, bedrock: bool) -> None:
        def bad(message: str) -> _ApiError:
            if bedrock:
                return _ApiError(400, "ValidationException", f"Malformed input request: {message}, "
                                 "please reformat your input and try again.")
            return _ApiError(400, "invalid_request_error", message)

        if not isinstance(body, dict):
            raise bad("#: expected type: JSONObject")
        if bedrock:
            if "model" in body:
                raise bad("#: extraneous key [model] is not permitted")
            if "stream" in body:
                raise bad("#: extraneous key [stream] is not permitted")
            if not body.get("anthropic_version"):
                raise bad("#: required key [anthropic_version] not found")
        elif not body.get("model"):
            raise bad("model: Field required")
        max_tokens = body.get("max_tokens")
        if max_tokens is None:
            raise bad("max_tokens: Field required")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise bad(f"max_tokens: must be a positive integer, got {max_tokens!r}")
        messages = body.get("messages")
        if messages is None:
            raise bad("messages: Field required")
        if not isinstance(messages, list) or not messages:
            raise bad("messages: at least one message is required")
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
                raise bad(f"messages.{index}.role: must be 'user' or 'assistant'")
            content = message.get("content")
            if not isinstance(content, (str, list)):
                raise bad(f"messages.{index}.content: Field required")
            if isinstance(content, list):
                for position, block in enumerate(content):
                    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                        raise bad(f"messages.{index}.content.{position}.type: Field required")
        tools = body.get("tools")
        if tools is not None and (not isinstance(tools, list) or not all(
                isinstance(t, dict) and isinstance(t.get("name"), str) for t in tools)):
            raise bad("tools: each tool needs a name")
        system = body.get("system")
        if system is not None and not isinstance(system, (str, list)):
            raise bad("system: must be a string or a list of text blocks")
        if not bedrock and "stream" in body and not isinstance(body["stream"], bool):
            raise bad("stream: Input should be a valid boolean")

    # faults ------------------------------------------------------------------------------------

    def _take_fault(self, model: str, family: str, pool: str | None = None) -> dict | None:
        with self.lock:
            now = time.monotonic()
            for fault in list(self.faults):
                if fault.get("pool") is not None:
                    if fault["until"] <= now:
                        self.faults.remove(fault)
                    elif fault["pool"] == pool:
                        self.injected[fault["kind"]] += 1
                        return fault
                    continue

                target = fault.get("model")
                if target is None or target == model or target == family \
                        or self.family_of(bedrock_base_model(target) or target) == family:
                    self.faults.remove(fault)
                    self.injected[fault["kind"]] += 1
                    return fault
        return None

    def _fault_error(self, fault: dict, *, bedrock: bool, headers: list) -> _ApiError:
        kind, delay = fault["kind"], fault.get("delay_s")
        retry = [("retry-after", str(_retry_after(delay)))] if delay is not None else []
        if bedrock:
            status, error_type, message = {
                "529": (503, "ServiceUnavailableException", "Bedrock is unable to process your "
                        "request."),
                "500": (500, "InternalServerException", "The server encountered an internal "
                        "error while processing the request."),
                "504": (408, "ModelTimeoutException", "Model has timed out in processing the "
                        "request. Try your request again."),
                "429": (429, "ThrottlingException", "Too many tokens, please wait before trying "
                        "again."),
                "spend_limit": (429, "ThrottlingException", "Too many tokens per day, please "
                                "wait before trying again."),
            }[kind]
            return _ApiError(status, error_type, message, headers=retry if kind != "spend_limit"
                             else [])
        if kind == "429":
            return _ApiError(429, "rate_limit_error", "This request would exceed the rate limit "
                             f"for your organization ({ORG_ID}). For details, refer to: "
                             f"{RATE_LIMIT_DOCS}. (injected fault)",
                             headers=[*headers, ("retry-after", str(_retry_after(delay or 1)))])
        if kind == "spend_limit":
            return _ApiError(429, "rate_limit_error", "You have reached your specified API usage "
                             "limits. You will regain access on the first day of next month at "
                             "00:00 UTC.", headers=headers,
                             extra={"details": {"error_code": "enforced_spend_limit_reached"}})
        status, error_type, message = {
            "529": (529, "overloaded_error", "Overloaded"),
            "500": (500, "api_error", "Internal server error"),
            "504": (504, "timeout_error", "Request timed out"),
        }[kind]
        return _ApiError(status, error_type, message, headers=[*headers, *retry])

    # rate limiting -----------------------------------------------------------------------------

    def _ratelimit_headers(self, state: _FamilyState) -> list[tuple[str, str]]:
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

    def _rate_limit_error(self, state: _FamilyState, dimension: str, limit: int, wait: float,
                          too_large: bool = False) -> _ApiError:
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
        return _ApiError(429, "rate_limit_error", message,
                         headers=[*self._ratelimit_headers(state),
                                  ("retry-after", str(_retry_after(wait)))])

    def _breakpoints(self, namespace: str, segments: list[_Segment]) -> list[tuple[int, str, str]]:
        """(prefix tokens, prefix hash, ttl) for every cacheable breakpoint, in prompt order."""
        running = hashlib.sha256(namespace.encode())
        cumulative = 0
        breakpoints = []
        minimum = self.config["cache_min_tokens"]
        for segment in segments:
            running.update(segment.canonical.encode())
            running.update(b"\x00")
            cumulative += segment.tokens
            if segment.ttl and cumulative >= minimum:
                breakpoints.append((cumulative, running.copy().hexdigest(), segment.ttl))
        return breakpoints

    def _cache_lookup(self, breakpoints: list[tuple[int, str, str]], now: float):
        """(read tokens, creation tokens, creation by ttl, entries to write, hit). Under lock."""
        if not breakpoints:
            return 0, 0, {}, [], None
        hit = None
        for point in reversed(breakpoints):
            expiry = self.cache.get(point[1])
            if expiry is not None and expiry > now:
                hit = point
                break
        read = hit[0] if hit else 0
        creation_by_ttl = {"5m": 0, "1h": 0}
        writes, previous = [], read
        for tokens, key, ttl in breakpoints:
            if tokens > read:
                creation_by_ttl[ttl] += tokens - previous
                previous = tokens
                writes.append((key, ttl))
        return read, sum(creation_by_ttl.values()), creation_by_ttl, writes, \
            (hit[1], hit[2]) if hit else None

    def _cache_commit(self, writes, hit, now: float) -> None:
        for key, ttl in writes:
            self.cache[key] = now + CACHE_TTL_S[ttl]
        if hit:
            self.cache[hit[0]] = max(self.cache.get(hit[0], 0.0), now + CACHE_TTL_S[hit[1]])
        if len(self.cache) > 50_000:
            for key in [k for k, expiry in self.cache.items() if expiry <= now]:
                del self.cache[key]

    # count_tokens ------------------------------------------------------------------------------

    def _count_tokens(self, body: dict) -> _Reply:
        model = body.get("model")
        if not model:
            raise _ApiError(400, "invalid_request_error", "model: Field required")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _ApiError(400, "invalid_request_error", "messages: at least one message is "
                            "required")
        family = self.family_of(str(model))
        if family is None:
            raise _ApiError(404, "not_found_error", f"model: {model}")
        tokens = count_request_input_tokens(body)
        with self.lock:
            state = self.families[family]
            state.refill(time.monotonic())
            bucket = state.count_tokens
            wait = bucket.wait_for(1)
            if wait > 0:
                self.rate_limited += 1
                self.rate_limited_by["count_tokens requests"] += 1
                raise _ApiError(429, "rate_limit_error", "This request would exceed the rate "
                                f"limit for your organization ({ORG_ID}) of {bucket.limit:,} "
                                f"count_tokens requests per minute. For details, refer to: "
                                f"{RATE_LIMIT_DOCS}.",
                                headers=[*self._count_headers(bucket),
                                         ("retry-after", str(_retry_after(wait)))])
            bucket.level -= 1
            self.count_tokens_requests += 1
            headers = self._count_headers(bucket)
        request_id = _request_id()
        return _json_reply(200, {"input_tokens": tokens}, [("request-id", request_id), *headers])

    @staticmethod
    def _count_headers(bucket: _Bucket) -> list[tuple[str, str]]:
        return [("anthropic-ratelimit-requests-limit", str(bucket.limit)),
                ("anthropic-ratelimit-requests-remaining",
                 str(max(0, math.floor(bucket.level + EPS)))),
                ("anthropic-ratelimit-requests-reset",
                 _rfc3339(time.time() + bucket.time_to_full()))]

    # messages ----------------------------------------------------------------------------------

    def _messages(self, body: Any, *, bedrock_model: str | None, stream: bool | None,
                  pool: str | None = None, tier: str = "default") -> _Reply:
        bedrock = bedrock_model is not None
        if bedrock:
            base_model = bedrock_base_model(bedrock_model)
            family = self.family_of(base_model) if base_model else None
            if family is None:
                raise _ApiError(400, "ValidationException", "The provided model identifier is "
                                "invalid.")
            self._validate(body, bedrock=True)
            model = base_model
        else:
            if not isinstance(body, dict) or not body.get("model"):
                raise _ApiError(400, "invalid_request_error", "model: Field required")
            model = str(body["model"])
            self._validate(body, bedrock=False)
            family = self.family_of(model)
            if family is None:
                raise _ApiError(404, "not_found_error", f"model: {model}")
            stream = bool(body.get("stream", False))
        max_tokens = body["max_tokens"]
        limit = max_output_tokens(model)
        if max_tokens > limit:
            message = (f"max_tokens: {max_tokens} > {limit}, which is the maximum allowed number "
                       f"of output tokens for {model}")
            raise _ApiError(400, "ValidationException" if bedrock else "invalid_request_error",
                            message)

        segments = _segments(body)
        total_input = sum(segment.tokens for segment in segments)
        if total_input > self.config["context_window"]:
            message = (f"prompt is too long: {total_input} tokens > "
                       f"{self.config['context_window']} maximum")
            raise _ApiError(400, "ValidationException" if bedrock else "invalid_request_error",
                            message)
        # the answer depends on the request, not on how it is delivered
        request_hash = hashlib.sha256(_canonical(
            model, {k: v for k, v in body.items() if k != "stream"}).encode()).hexdigest()
        content, output_tokens, stop_reason = self._answer(body, max_tokens, request_hash,
                                                           bedrock=bedrock)

        fault = self._take_fault(bedrock_model or model, family, pool)
        with self.lock:
            families = self.pool_families(pool)
        if fault is not None and fault["kind"] != "slow":
            state_headers: list = []
            with self.lock:
                self.pool_stats[pool or ""]["faults"] += 1
            if not bedrock:
                with self.lock:
                    state = families[family]
                    state.refill(time.monotonic())
                    state_headers = self._ratelimit_headers(state)
            raise self._fault_error(fault, bedrock=bedrock, headers=state_headers)

        namespace = f"bedrock/{bedrock_model}" if bedrock else f"anthropic/{family}"
        if pool is not None:
            namespace = f"{pool}/{namespace}"
        breakpoints = self._breakpoints(namespace, segments)
        # Without a pool prefix or a tier, the keys are the model id and the family as before.
        bedrock_key = bedrock_model if pool is None and tier == "default" else \
            f"{pool or ''}/{tier}/{bedrock_model}"
        family_key = family if pool is None else f"{pool}/{family}"
        with self.lock:
            now = time.monotonic()
            read, creation, creation_by_ttl, writes, hit = self._cache_lookup(breakpoints, now)
            uncached = total_input - read - creation
            try:
                if bedrock:
                    admission = self._admit_bedrock(bedrock_model, uncached + creation,
                                                    max_tokens, now, pool=pool, tier=tier,
                                                    key=bedrock_key)
                    headers = []
                else:
                    counted = uncached + creation + (read if self.config["counts_cache_reads"]
                                                     else 0)
                    admission = self._admit_anthropic(family, counted, max_tokens, now,
                                                      state=families[family], key=family_key)
                    headers = self._ratelimit_headers(families[family])
            except _ApiError:
                self.pool_stats[pool or ""]["throttled"] += 1
                raise
            self.pool_stats[pool or ""]["admitted"] += 1
            self._cache_commit(writes, hit, now)
            stats = (self.bedrock_stats[bedrock_key] if bedrock
                     else self.families_stats[family_key])
            stats["requests"] += 1
            stats["input_tokens"] += uncached
            stats["cache_creation_input_tokens"] += creation
            stats["cache_read_input_tokens"] += read
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            latency = float(self.config["latency_s"])
            token_latency = float(self.config["token_latency_s"])

        if fault is not None:  # "slow": admitted, then answers late
            latency += float(fault.get("delay_s") if fault.get("delay_s") is not None else 1.0)
        usage = {"input_tokens": uncached, "cache_creation_input_tokens": creation,
                 "cache_read_input_tokens": read, "output_tokens": output_tokens,
                 "cache_creation": {"ephemeral_5m_input_tokens": creation_by_ttl.get("5m", 0),
                                    "ephemeral_1h_input_tokens": creation_by_ttl.get("1h", 0)},
                 "service_tier": tier if bedrock else "standard"}
        message = {"id": "msg_" + uuid.uuid4().hex[:24], "type": "message", "role": "assistant",
                   "model": model, "content": content, "stop_reason": stop_reason,
                   "stop_sequence": None, "usage": usage}
        request_id = _request_id()
        if bedrock:
            headers = [("x-amzn-RequestId", request_id),
                       ("x-amzn-bedrock-input-token-count", str(uncached)),
                       ("x-amzn-bedrock-output-token-count", str(output_tokens)),
                       ("x-amzn-bedrock-cache-read-input-token-count", str(read)),
                       ("x-amzn-bedrock-cache-write-input-token-count", str(creation)),
                       ("x-amzn-bedrock-invocation-latency", str(int(latency * 1000)))]
        else:
            headers = [("request-id", request_id), ("anthropic-organization-id", ORG_ID), *headers]

        if not stream:
            try:
                if latency:
                    time.sleep(latency)
            finally:
                admission.finish(output_tokens)
            return _json_reply(200, message, headers)
        events = self._stream_events(message, admission, latency, token_latency)
        settle = lambda: admission.finish(admission.produced)  # noqa: E731
        if bedrock:
            return _Reply(200, [("content-type", "application/vnd.amazon.eventstream"),
                                ("x-amzn-bedrock-content-type", "application/json"), *headers],
                          stream=self._bedrock_frames(events, message, latency), on_close=settle)
        return _Reply(200, [("content-type", "text/event-stream; charset=utf-8"),
                            ("cache-control", "no-cache"), *headers],
                      stream=self._sse_frames(events), on_close=settle)

    @staticmethod
    def _sse_frames(events: Any) -> Iterator[bytes]:
        try:
            for event in events:
                yield _sse(event["type"], event)
        finally:
            events.close()  # settles the admission now, also when the client went away

    def _admit_anthropic(self, family: str, counted_input: int, max_tokens: int,
                         now: float, state: _FamilyState | None = None,
                         key: str | None = None) -> _Admission:
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
                raise _ApiError(429, "rate_limit_error", "Your organization's usage increased "
                                "too sharply (acceleration limit). Please ramp up gradually.",
                                headers=[*self._ratelimit_headers(state),
                                         ("retry-after", str(_retry_after(window)))])
            state.arrivals.append(now)
        state.requests.level -= 1
        state.input.level -= counted_input
        state.output.level -= out_need
        return _Admission(self, key or family, "anthropic", state, out_need, mode)

    def _admit_bedrock(self, model_id: str, charged_input: int, max_tokens: int,
                       now: float, pool: str | None = None, tier: str = "default",
                       key: str | None = None) -> _Admission:
        key = key or model_id
        state = self.bedrock.get(key)
        if state is None:
            state = self.bedrock[key] = _BedrockState(
                self.pool_bedrock_quotas(pool, model_id, tier), now)
        state.refill(now)
        # flex runs on spare capacity: it needs the headroom on top of its own charge
        spare = self.config["flex_headroom"] if tier == "flex" else 0.0
        tokens = state.tokens
        if charged_input > tokens.limit:
            self.rate_limited += 1
            self.rate_limited_by["bedrock tokens"] += 1
            raise _ApiError(429, "ThrottlingException", "Too many tokens, please wait before "
                            "trying again.")
        reserve = min(charged_input + max_tokens * state.burndown, float(tokens.limit))
        if state.requests is not None and state.requests.wait_for(
                min(1 + spare * state.requests.limit, float(state.requests.limit))) > 0:
            self.rate_limited += 1
            self.rate_limited_by["bedrock requests"] += 1
            raise _ApiError(429, "ThrottlingException", "Too many requests, please wait before "
                            "trying again.")
        if tokens.wait_for(min(reserve + spare * tokens.limit, float(tokens.limit))) > 0:
            self.rate_limited += 1
            self.rate_limited_by["bedrock tokens"] += 1
            raise _ApiError(429, "ThrottlingException", "Too many tokens, please wait before "
                            "trying again.")
        if state.requests is not None:
            state.requests.level -= 1
        tokens.level -= reserve
        return _Admission(self, key, "bedrock", state, reserve, "reserve", state.burndown)

    def answer_batch_item(self, params: dict) -> dict:
        """One batch item's message: validated like /v1/messages, answered deterministically,
        outside the per-minute limits (batch processing does not count against them)."""
        if not isinstance(params, dict) or not params.get("model"):
            raise _ApiError(400, "invalid_request_error", "model: Field required")
        if params.get("stream"):
            raise _ApiError(400, "invalid_request_error", "stream: not supported in batches")
        self._validate(params, bedrock=False)
        model = str(params["model"])
        if self.family_of(model) is None:
            raise _ApiError(404, "not_found_error", f"model: {model}")
        request_hash = hashlib.sha256(_canonical(model, params).encode()).hexdigest()
        content, output_tokens, stop_reason = self._answer(params, params["max_tokens"],
                                                           request_hash, bedrock=False)
        usage = {"input_tokens": count_request_input_tokens(params),
                 "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                 "output_tokens": output_tokens, "service_tier": "batch"}
        return {"id": "msg_" + uuid.uuid4().hex[:24], "type": "message", "role": "assistant",
                "model": model, "content": content, "stop_reason": stop_reason,
                "stop_sequence": None, "usage": usage}

    def _answer(self, body: dict, max_tokens: int, request_hash: str,
                *, bedrock: bool) -> tuple[list[dict], int, str]:
        last_user = next((m for m in reversed(body["messages"]) if m.get("role") == "user"), None)
        content = last_user.get("content") if last_user else ""
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        text = "\n".join(str(b.get("text", "")) for b in blocks if b.get("type") == "text")
        results = [b for b in blocks if b.get("type") == "tool_result"]

        calls = _CALL_DIRECTIVE.findall(text)
        if calls:
            tool_names = {tool.get("name") for tool in body.get("tools") or []}
            answer, tokens = [], 0
            for index, (name, raw_input) in enumerate(calls):
                if name not in tool_names:
                    raise _ApiError(400, "ValidationException" if bedrock
                                    else "invalid_request_error",
                                    f"EMULATOR: call {name}: tool {name!r} is not in tools")
                try:
                    tool_input = json.loads(raw_input)
                except ValueError as err:
                    raise _ApiError(400, "ValidationException" if bedrock
                                    else "invalid_request_error",
                                    f"EMULATOR: call {name}: input is not JSON: {err}") from None
                if not isinstance(tool_input, dict):
                    raise _ApiError(400, "ValidationException" if bedrock
                                    else "invalid_request_error",
                                    f"EMULATOR: call {name}: input must be a JSON object")
                digest = hashlib.sha256(f"{request_hash}/{index}/{name}".encode()).hexdigest()
                answer.append({"type": "tool_use", "id": "toolu_" + digest[:24], "name": name,
                               "input": tool_input})
                tokens += count_tokens(name) + count_tokens(_dumps(tool_input))
            return answer, max(1, min(max_tokens, tokens)), "tool_use"

        if results:
            summaries = []
            for result in results:
                inner = result.get("content")
                if isinstance(inner, list):
                    inner = " ".join(str(b.get("text", "")) for b in inner
                                     if isinstance(b, dict) and b.get("type") == "text")
                inner = "" if inner is None else str(inner)
                flag = " (error)" if result.get("is_error") else ""
                summaries.append(f"{result.get('tool_use_id')}{flag}: {inner[:60]}")
            summary = f"Received {len(results)} tool results: " + "; ".join(summaries)
            tokens = max(1, min(max_tokens, count_tokens(summary)))
            return [{"type": "text", "text": summary}], tokens, "end_turn"

        scripted = _ANSWER_DIRECTIVE.findall(text)
        if scripted:  # the text as given, its tokens capped at max_tokens
            answer = scripted[-1][1] * int(scripted[-1][0])
            return ([{"type": "text", "text": answer}],
                    max(1, min(max_tokens, count_tokens(answer))), "end_turn")
        directive = _OUTPUT_DIRECTIVE.findall(text)
        wanted = int(directive[-1]) if directive else int(self.config["output_tokens"])
        wanted = max(1, wanted)
        length = min(max_tokens, wanted)
        rng = random.Random(int(request_hash[:16], 16))
        words = [rng.choice(VOCABULARY) for _ in range(length)]
        words[0] = words[0].capitalize()
        stop = "max_tokens" if wanted > max_tokens else "end_turn"
        return [{"type": "text", "text": " ".join(words)}], length, stop

    def _stream_events(self, message: dict, admission: _Admission, latency: float,
                       token_latency: float) -> Iterator[dict]:
        """The Messages stream events of `message`; settles the admission when it ends (also
        when the client goes away: then with the output produced so far)."""
        produced = 0
        try:
            if latency:
                time.sleep(latency)
            usage = message["usage"]
            start_usage = {k: usage[k] for k in ("input_tokens", "cache_creation_input_tokens",
                                                 "cache_read_input_tokens")}
            start_usage.update(output_tokens=1, cache_creation=usage["cache_creation"],
                               service_tier="standard")
            yield {"type": "message_start",
                   "message": {**message, "content": [], "stop_reason": None,
                               "usage": start_usage}}
            yield {"type": "ping"}
            total = usage["output_tokens"]
            for index, block in enumerate(message["content"]):
                if block["type"] == "text":
                    yield {"type": "content_block_start", "index": index,
                           "content_block": {"type": "text", "text": ""}}
                    words = block["text"].split(" ")
                    per_word = total / max(1, len(words)) if len(message["content"]) == 1 else 1
                    for position, word in enumerate(words):
                        piece = word if position == 0 else " " + word
                        step = (int(round((position + 1) * per_word))
                                - int(round(position * per_word)))
                        step = min(step, total - produced)
                        if token_latency and step:
                            time.sleep(token_latency * step)
                        produced += step
                        admission.progress(step)
                        yield {"type": "content_block_delta", "index": index,
                               "delta": {"type": "text_delta", "text": piece}}
                else:
                    yield {"type": "content_block_start", "index": index,
                           "content_block": {**block, "input": {}}}
                    raw = _dumps(block["input"])
                    pieces = [raw[i:i + 16] for i in range(0, len(raw), 16)] or [""]
                    for piece in pieces:
                        yield {"type": "content_block_delta", "index": index,
                               "delta": {"type": "input_json_delta", "partial_json": piece}}
                yield {"type": "content_block_stop", "index": index}
            rest = total - produced
            if rest > 0:
                if token_latency:
                    time.sleep(token_latency * rest)
                admission.progress(rest)
                produced = total
            final_usage = {k: usage[k] for k in ("input_tokens", "cache_creation_input_tokens",
                                                 "cache_read_input_tokens", "output_tokens")}
            yield {"type": "message_delta",
                   "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                   "usage": final_usage}
            yield {"type": "message_stop"}
        finally:
            admission.finish(admission.produced)

    @staticmethod
    def _bedrock_frames(events: Any, message: dict, latency: float) -> Iterator[bytes]:
        started = time.monotonic()
        first_byte = None
        try:
            for event in events:
                if event["type"] == "ping":
                    continue
                if first_byte is None:
                    first_byte = int((time.monotonic() - started) * 1000)
                if event["type"] == "message_stop":
                    usage = message["usage"]
                    event = {**event, "amazon-bedrock-invocationMetrics": {
                        "inputTokenCount": usage["input_tokens"],
                        "outputTokenCount": usage["output_tokens"],
                        "invocationLatency": int((time.monotonic() - started) * 1000),
                        "firstByteLatency": first_byte,
                        "cacheReadInputTokenCount": usage["cache_read_input_tokens"],
                        "cacheWriteInputTokenCount": usage["cache_creation_input_tokens"]}}
                yield _bedrock_chunk(event)
        finally:
            events.close()

    # control -----------------------------------------------------------------------------------

    def stats(self) -> dict:
        with self.lock:
            now = time.monotonic()
            buckets = {}
            for family, state in self.families.items():
                state.refill(now)
                buckets[family] = {name: {"limit": b.limit, "level": round(b.level, 3)}
                                   for name, b in (("requests", state.requests),
                                                   ("input_tokens", state.input),
                                                   ("output_tokens", state.output))}
            for model_id, state in self.bedrock.items():
                state.refill(now)
                entry = {"tokens": {"limit": state.tokens.limit,
                                    "level": round(state.tokens.level, 3)}}
                if state.requests:
                    entry["requests"] = {"limit": state.requests.limit,
                                         "level": round(state.requests.level, 3)}
                buckets["bedrock/" + model_id] = entry
            return {
                "requests": self.total_requests,
                "responses": dict(self.responses),
                "rate_limited": self.rate_limited,
                "rate_limited_by": dict(self.rate_limited_by),
                "injected": dict(self.injected),
                "families": {k: dict(v) for k, v in self.families_stats.items()},
                "bedrock": {k: dict(v) for k, v in self.bedrock_stats.items()},
                "count_tokens_requests": self.count_tokens_requests,
                "in_flight": self.in_flight,
                "max_in_flight": self.max_in_flight,
                "faults_pending": len(self.faults),
                "pools": {name: dict(counts) for name, counts in self.pool_stats.items()},
                "cache_entries": len(self.cache),
                "buckets": buckets,
                "message_batches": self.batch_service.stats(),
            }

    def _set_limits(self, payload: dict) -> dict:
        """Change one family's limits while running (a tier upgrade): {"family", "rpm"?,
        "itpm"?, "otpm"?}, each a positive whole number; what was used stays used."""
        family = payload.get("family")
        if family not in self.families:
            raise ValueError(f"family must be one of {sorted(self.families)}, got {family!r}")
        changes = {key: payload[key] for key in ("rpm", "itpm", "otpm") if key in payload}
        for key, value in changes.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a positive whole number, got {value!r}")
        if not changes:
            raise ValueError("name at least one of rpm, itpm, otpm")
        now = time.monotonic()
        with self.lock:
            state = self.families[family]
            buckets = {"rpm": (state.requests, state.count_tokens), "itpm": (state.input,),
                       "otpm": (state.output,)}
            for key, value in changes.items():
                for bucket in buckets[key]:
                    bucket.set_limit(value, now)
            self.config["limits"][family] = {**self.config["limits"].get(family, {}),
                                             **changes}
        return {"family": family, **changes}

    def _control(self, method: str, action: str, body: bytes) -> _Reply:
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            return _json_reply(400, {"error": "body is not JSON"})
        if not isinstance(payload, dict):
            return _json_reply(400, {"error": "body must be a JSON object"})
        try:
            if action == "stats" and method == "GET":
                return _json_reply(200, self.stats())
            if action == "reset" and method == "POST":
                with self.lock:
                    if payload.get("config"):
                        self.config = copy.deepcopy(self.initial_config)
                    self.faults.clear()
                    self._reset_state()
                return _json_reply(200, {"ok": True})
            if action == "limits" and method == "POST":
                return _json_reply(200, self._set_limits(payload))
            if action == "faults" and method == "POST":
                kind = str(payload.get("kind"))
                count = payload.get("count", 1)
                if kind not in FAULT_KINDS:
                    raise ValueError(f"kind must be one of {FAULT_KINDS}, got {kind!r}")
                if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                    raise ValueError("count must be a positive integer")
                delay = payload.get("delay_s")
                if delay is not None and (not isinstance(delay, (int, float)) or delay < 0):
                    raise ValueError("delay_s must be a non-negative number")
                fault = {"kind": kind, "model": payload.get("model"), "delay_s": delay}
                pool, for_s = payload.get("pool"), payload.get("for_s")
                if (pool is None) != (for_s is None):
                    raise ValueError("an outage needs both pool and for_s")
                if pool is not None:
                    if not isinstance(pool, str) or not _POOL_NAME.match(pool):
                        raise ValueError(f"pool must be a pool name, got {pool!r}")
                    if isinstance(for_s, bool) or not isinstance(for_s, (int, float)) \
                            or not 0 < for_s <= 3600:
                        raise ValueError("for_s must be a number of seconds in (0, 3600]")
                    if kind in ("slow", "spend_limit"):
                        raise ValueError(f"an outage answers 529, 500, 504 or 429, not {kind}")
                    fault.update(pool=pool, until=time.monotonic() + for_s)
                    count = 1
                with self.lock:
                    self.faults.extend(dict(fault) for _ in range(count))
                    pending = len(self.faults)
                return _json_reply(200, {"pending": pending})
            if action == "faults" and method == "GET":
                with self.lock:
                    return _json_reply(200, {"faults": list(self.faults)})
            if action == "config" and method == "GET":
                return _json_reply(200, self.config)
            if action == "config" and method == "POST":
                with self.lock:
                    config = self._validated(self.config, payload)
                    rebuild = any(config[k] != self.config[k]
                                  for k in ("tier", "limits", "bedrock", "models", "pools"))
                    self.config = config
                    if rebuild:  # new limits: fresh (full) buckets, counters kept
                        now = time.monotonic()
                        self.families = {f: _FamilyState(*self.family_limits(f), now)
                                         for f in {*FAMILIES, *config["limits"]}}
                        self.bedrock = {}
                        self.pool_states = {}
                return _json_reply(200, self.config)
        except ValueError as err:
            return _json_reply(400, {"error": str(err)})
        return _json_reply(404, {"error": f"no control endpoint {method} {CONTROL_PREFIX}{action}"})


# -- HTTP ----------------------------------------------------------------------------------------

_REASONS = {529: "Overloaded", 429: "Too Many Requests"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "claude-emulator"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self, method: str) -> None:
        body = self._read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        emulator: Emulator = self.server.emulator  # type: ignore[attr-defined]
        reply = emulator.handle(method, self.path, body, headers)
        self.send_response(reply.status, _REASONS.get(reply.status))
        for name, value in reply.headers:
            self.send_header(name, value)
        if reply.stream is None:
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(reply.body)
            return
        self.send_header("Transfer-Encoding", "chunked")
        stream = reply.stream
        try:
            self.end_headers()
            buffered: list[bytes] = []
            for chunk in stream:
                buffered.append(chunk)
                # without per-token latency everything is ready at once: one write
                if emulator.config["token_latency_s"]:
                    self._write_chunk(b"".join(buffered))
                    buffered.clear()
            if buffered:
                self._write_chunk(b"".join(buffered))
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True
        finally:
            close = getattr(stream, "close", None)
            if close:
                close()
            if reply.on_close:
                reply.on_close()

    def _write_chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True


def serve(config: dict | None = None, port: int = 0, host: str = "127.0.0.1") -> None:
    emulator = Emulator(config)
    exit_with_parent(os.getppid())
    server = _Server((host, port), _Handler)
    server.emulator = emulator  # type: ignore[attr-defined]
    announce_port(server.server_port)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    server.serve_forever(poll_interval=0.2)


# -- parent side ---------------------------------------------------------------------------------

class ClaudeEmulator(ChildServer):
    """Starts the emulator in a child process; `stop()` (or leaving the `with` block) ends it.

    `base_url` is for `anthropic.Anthropic(base_url=...)` / ANTHROPIC_BASE_URL, `bedrock_base_url`
    for `anthropic.AnthropicBedrock(base_url=..., aws_region="us-east-1")` (same server)."""

    module = "local.fakes.claude_emulator"
    name = "Claude emulator"

    def __init__(self, config: dict | None = None, startup_timeout_s: float = 30.0) -> None:
        super().__init__(startup_timeout_s)
        self.config = dict(config or {})

    @property
    def bedrock_base_url(self) -> str:
        return self.base_url

    def pool_url(self, name: str) -> str:
        """Base URL of pool `name` (its own buckets): for `Anthropic(base_url=...)` or
        `AnthropicBedrock(base_url=...)`, e.g. one per Bedrock region."""
        if not _POOL_NAME.match(name):
            raise ValueError(f"pool name must match {_POOL_NAME.pattern}, got {name!r}")
        return f"{self.base_url}{POOL_PREFIX}{name}"

    def outage(self, pool: str, for_s: float, kind: str = "529") -> None:
        """Pool `pool` answers `kind` (529, 500, 504 or 429) to every request for `for_s` s."""
        self._call("POST", "faults", {"kind": kind, "pool": pool, "for_s": for_s})

    def args(self) -> list[str]:
        return ["--config", json.dumps(self.config)]

    def probe(self) -> None:
        self.stats()

    def _call(self, method: str, action: str, payload: dict | None = None) -> Any:
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(self.base_url + CONTROL_PREFIX + action, data=data,
                                         method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")
            raise ValueError(f"emulator refused {method} {action}: {detail}") from None

    def stats(self) -> dict:
        """Counters: requests, responses (by status), rate_limited (+ rate_limited_by
        dimension), injected (by kind), families / bedrock (admitted requests and tokens),
        in_flight, max_in_flight, faults_pending, cache_entries, buckets (levels now)."""
        return self._call("GET", "stats")

    def reset(self, config: bool = False) -> None:
        """Clear counters, buckets (full again), cache and pending faults; with `config=True`
        also restore the configuration given at start."""
        self._call("POST", "reset", {"config": bool(config)})

    def set_limits(self, family: str, **limits: int) -> dict:
        """Change `family`'s limits while running (rpm=, itpm=, otpm=: per minute), as a tier
        upgrade does: what was used stays used, the headers show the new limits at once."""
        return self._call("POST", "limits", {"family": family, **limits})

    def inject(self, kind: str, count: int = 1, model: str | None = None,
               delay_s: float | None = None) -> int:
        """Queue `count` faults of `kind` ("529", "500", "504", "429", "spend_limit", "slow"),
        optionally only for one model id or family; returns how many are pending."""
        payload = {"kind": str(kind), "count": count, "model": model, "delay_s": delay_s}
        return self._call("POST", "faults", payload)["pending"]

    def configure(self, **changes: Any) -> dict:
        """Change config keys (latency_s, output_tokens, limits, ...); returns the config."""
        return self._call("POST", "config", changes)

    def get_config(self) -> dict:
        return self._call("GET", "config")

    def env(self) -> dict[str, str]:
        return {"ANTHROPIC_BASE_URL": self.base_url, "ANTHROPIC_API_KEY": "test-key",
                "ANTHROPIC_BEDROCK_BASE_URL": self.bedrock_base_url}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--config", default="{}", help="JSON object (see DEFAULT_CONFIG)")
    args = parser.parse_args(argv)
    try:
        config = json.loads(args.config)
        Emulator(config)  # validate before printing the port
    except ValueError as err:
        print(f"invalid --config: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
    serve(config, args.port)


if __name__ == "__main__":
    main()
