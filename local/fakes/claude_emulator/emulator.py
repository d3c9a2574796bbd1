"""The emulator's state and request handling: routing (Anthropic API, Bedrock, pools, batches,
control), request validation and the Messages call from admission to answer. HTTP-agnostic:
`Emulator.handle` returns a `Reply`; local.fakes.claude_emulator.server serves it.

`Emulator` is composed of one class per concern, each in its own module: rate limits
(limits.py), the prompt cache (cache.py), faults (faults.py), answers and streams (answers.py)
and the control endpoints (control.py).
"""

from __future__ import annotations

import collections
import copy
import hashlib
import json
import threading
import time
import urllib.parse
import uuid
from typing import Any

from local.fakes.claude_batches import BatchService
from local.fakes.claude_emulator.answers import Answering
from local.fakes.claude_emulator.cache import PromptCache
from local.fakes.claude_emulator.config import (DEFAULT_CONFIG, POOL_NAME, POOL_PREFIX,
                                                SERVICE_TIER_HEADER, SERVICE_TIERS, validated)
from local.fakes.claude_emulator.control import ControlEndpoints
from local.fakes.claude_emulator.faults import FaultInjection
from local.fakes.claude_emulator.limits import RateLimiting
from local.fakes.claude_emulator.models import FAMILY_PATTERNS, bedrock_base_model, max_output_tokens
from local.fakes.claude_emulator.tokens import canonical, prompt_segments
from local.fakes.claude_emulator.wire import (CONTROL_PREFIX, ORG_ID, ApiError, Reply, json_reply,
                                              new_request_id)


class Emulator(RateLimiting, PromptCache, FaultInjection, Answering, ControlEndpoints):
    """All state of one emulator process; HTTP-agnostic (`handle` returns a `Reply`)."""

    def __init__(self, config: dict | None = None) -> None:
        self.lock = threading.Lock()
        self.initial_config = validated(copy.deepcopy(DEFAULT_CONFIG), config or {})
        self.config = copy.deepcopy(self.initial_config)
        self.faults: collections.deque[dict] = collections.deque()
        self._reset_state()
        self.batch_service = BatchService(self)

    def family_of(self, model: str) -> str | None:
        if model in self.config["models"]:
            return self.config["models"][model]
        for pattern, family in FAMILY_PATTERNS:
            if pattern.match(model):
                return family
        return None

    def _reset_state(self) -> None:
        self.reset_buckets()
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

    def handle(self, method: str, target: str, body: bytes, headers: dict[str, str]) -> Reply:
        path = target.split("?", 1)[0]
        if path.startswith(CONTROL_PREFIX):
            return self._control(method, path[len(CONTROL_PREFIX):], body)
        with self.lock:
            self.total_requests += 1
        try:
            reply = self._route(method, path, body, headers, target)
        except ApiError as err:
            reply = self._error_reply(err, bedrock="/model/" in path)
        except Exception as err:  # noqa: BLE001 - a bug here must still answer like an API
            reply = self._error_reply(ApiError(500, "api_error", f"emulator bug: {err!r}"),
                                      bedrock="/model/" in path)
        with self.lock:
            self.responses[str(reply.status)] += 1
        return reply

    def _route(self, method: str, path: str, body: bytes, headers: dict[str, str],
               target: str = "") -> Reply:
        pool = None
        if path.startswith(POOL_PREFIX):
            pool, _, rest = path[len(POOL_PREFIX):].partition("/")
            if not POOL_NAME.match(pool):
                raise ApiError(404, "not_found_error", f"Not found: {method} {path}")
            path, target = "/" + rest, "/" + target[len(POOL_PREFIX) + len(pool) + 1:]
        if path.startswith("/v1/messages/batches"):
            self._check_anthropic_headers(headers)
            status, payload = self.batch_service.route(method, target or path, body, headers,
                                                       ApiError)
            if isinstance(payload, bytes):  # results: JSONL
                return Reply(status, [("content-type", "application/binary"),
                                       ("request-id", new_request_id())], payload)
            return json_reply(status, payload, [("request-id", new_request_id())])
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
                raise ApiError(400, "ValidationException", "Malformed input request, please "
                                "reformat your input and try again.") from None
            tier = headers.get(SERVICE_TIER_HEADER, "default")
            if tier not in SERVICE_TIERS:
                raise ApiError(400, "ValidationException", f"Invalid service tier {tier!r}: "
                                f"expected one of {', '.join(SERVICE_TIERS)}.")
            return self._messages(request, bedrock_model=model_id,
                                  stream=parts[3] == "invoke-with-response-stream", pool=pool,
                                  tier=tier)
        if path.startswith("/model/"):
            raise ApiError(404, "UnknownOperationException", f"Unknown operation {path}")
        raise ApiError(404, "not_found_error", f"Not found: {method} {path}")

    def _check_anthropic_headers(self, headers: dict[str, str]) -> None:
        if not headers.get("x-api-key") and not headers.get("authorization"):
            raise ApiError(401, "authentication_error", "x-api-key header is required")
        bearer = headers.get("authorization", "")
        key = headers.get("x-api-key") or (bearer[7:] if bearer[:7].lower() == "bearer " else "")
        if key in self.config["revoked_api_keys"]:
            raise ApiError(401, "authentication_error", "invalid x-api-key")
        if not headers.get("anthropic-version"):
            raise ApiError(400, "invalid_request_error", "anthropic-version: header is required")

    @staticmethod
    def _parse_json(body: bytes) -> dict:
        try:
            value = json.loads(body or b"null")
        except ValueError as err:
            raise ApiError(400, "invalid_request_error", f"request body is not valid JSON: {err}")
        if not isinstance(value, dict):
            raise ApiError(400, "invalid_request_error", "request body must be a JSON object")
        return value

    def _error_reply(self, err: ApiError, *, bedrock: bool) -> Reply:
        request_id = new_request_id()
        if bedrock:
            return json_reply(err.status, {"message": err.message},
                               [("x-amzn-ErrorType", err.kind), ("x-amzn-RequestId", request_id),
                                *err.headers])
        error = {"type": err.kind, "message": err.message, **err.extra}
        return json_reply(err.status, {"type": "error", "error": error, "request_id": request_id},
                           [("request-id", request_id), *err.headers])

    # validation --------------------------------------------------------------------------------

    def _validate(self, body: dict, *, bedrock: bool) -> None:
        def bad(message: str) -> ApiError:
            if bedrock:
                return ApiError(400, "ValidationException", f"Malformed input request: {message}, "
                                 "please reformat your input and try again.")
            return ApiError(400, "invalid_request_error", message)

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

    # messages ----------------------------------------------------------------------------------

    def _messages(self, body: Any, *, bedrock_model: str | None, stream: bool | None,
                  pool: str | None = None, tier: str = "default") -> Reply:
        bedrock = bedrock_model is not None
        if bedrock:
            base_model = bedrock_base_model(bedrock_model)
            family = self.family_of(base_model) if base_model else None
            if family is None:
                raise ApiError(400, "ValidationException", "The provided model identifier is "
                                "invalid.")
            self._validate(body, bedrock=True)
            model = base_model
        else:
            if not isinstance(body, dict) or not body.get("model"):
                raise ApiError(400, "invalid_request_error", "model: Field required")
            model = str(body["model"])
            self._validate(body, bedrock=False)
            family = self.family_of(model)
            if family is None:
                raise ApiError(404, "not_found_error", f"model: {model}")
            stream = bool(body.get("stream", False))
        max_tokens = body["max_tokens"]
        limit = max_output_tokens(model)
        if max_tokens > limit:
            message = (f"max_tokens: {max_tokens} > {limit}, which is the maximum allowed number "
                       f"of output tokens for {model}")
            raise ApiError(400, "ValidationException" if bedrock else "invalid_request_error",
                            message)

        segments = prompt_segments(body)
        total_input = sum(segment.tokens for segment in segments)
        if total_input > self.config["context_window"]:
            message = (f"prompt is too long: {total_input} tokens > "
                       f"{self.config['context_window']} maximum")
            raise ApiError(400, "ValidationException" if bedrock else "invalid_request_error",
                            message)
        # the answer depends on the request, not on how it is delivered
        request_hash = hashlib.sha256(canonical(
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
        # Without a pool prefix or a tier, the keys are the bare model id and family.
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
            except ApiError:
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
        request_id = new_request_id()
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
            return json_reply(200, message, headers)
        events = self._stream_events(message, admission, latency, token_latency)
        settle = lambda: admission.finish(admission.produced)  # noqa: E731
        if bedrock:
            return Reply(200, [("content-type", "application/vnd.amazon.eventstream"),
                                ("x-amzn-bedrock-content-type", "application/json"), *headers],
                          stream=self._bedrock_frames(events, message, latency), on_close=settle)
        return Reply(200, [("content-type", "text/event-stream; charset=utf-8"),
                            ("cache-control", "no-cache"), *headers],
                      stream=self._sse_frames(events), on_close=settle)
