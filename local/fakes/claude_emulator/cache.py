"""Prompt caching: `cache_control` breakpoints as hashes of the prompt prefix, looked up and
written with their time to live (5 minutes or 1 hour)."""

from __future__ import annotations

import hashlib

from local.fakes.claude_emulator.tokens import Segment

CACHE_TTL_S = {"5m": 300.0, "1h": 3600.0}


class PromptCache:
    """The Emulator's prompt cache (`cache`: prefix hash -> expiry, monotonic seconds); uses
    `config["cache_min_tokens"]` of the host. Lookups and commits run under the host's lock."""

    def _breakpoints(self, namespace: str, segments: list[Segment]) -> list[tuple[int, str, str]]:
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
