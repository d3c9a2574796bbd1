"""The parent side: `ClaudeEmulator` starts the emulator in a child process and drives its
control endpoints."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from local.fakes.child import ChildServer
from local.fakes.claude_emulator.config import POOL_NAME, POOL_PREFIX
from local.fakes.claude_emulator.wire import CONTROL_PREFIX

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
        if not POOL_NAME.match(name):
            raise ValueError(f"pool name must match {POOL_NAME.pattern}, got {name!r}")
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
