"""The control endpoints under `/_emulator/`: stats, reset, faults (queue, list), config (read,
change) and limits (change one family's limits while running)."""

from __future__ import annotations

import copy
import json
import time

from local.fakes.claude_emulator.config import POOL_NAME, validated
from local.fakes.claude_emulator.faults import FAULT_KINDS
from local.fakes.claude_emulator.wire import CONTROL_PREFIX, Reply, json_reply


class ControlEndpoints:
    """The Emulator's `/_emulator/*` endpoints and its counters as `stats()`."""

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

    def _control(self, method: str, action: str, body: bytes) -> Reply:
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            return json_reply(400, {"error": "body is not JSON"})
        if not isinstance(payload, dict):
            return json_reply(400, {"error": "body must be a JSON object"})
        try:
            if action == "stats" and method == "GET":
                return json_reply(200, self.stats())
            if action == "reset" and method == "POST":
                with self.lock:
                    if payload.get("config"):
                        self.config = copy.deepcopy(self.initial_config)
                    self.faults.clear()
                    self._reset_state()
                return json_reply(200, {"ok": True})
            if action == "limits" and method == "POST":
                return json_reply(200, self._set_limits(payload))
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
                    if not isinstance(pool, str) or not POOL_NAME.match(pool):
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
                return json_reply(200, {"pending": pending})
            if action == "faults" and method == "GET":
                with self.lock:
                    return json_reply(200, {"faults": list(self.faults)})
            if action == "config" and method == "GET":
                return json_reply(200, self.config)
            if action == "config" and method == "POST":
                with self.lock:
                    config = validated(self.config, payload)
                    rebuild = any(config[k] != self.config[k]
                                  for k in ("tier", "limits", "bedrock", "models", "pools"))
                    self.config = config
                    if rebuild:  # new limits: fresh (full) buckets, counters kept
                        self.reset_buckets()
                return json_reply(200, self.config)
        except ValueError as err:
            return json_reply(400, {"error": str(err)})
        return json_reply(404, {"error": f"no control endpoint {method} {CONTROL_PREFIX}{action}"})
