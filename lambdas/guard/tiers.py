"""Published Anthropic rate-limit presets (Anthropic's rate-limits page, both published versions).

Figures change: every number here is a default that `cdk.json` context overrides. Values are
(requests, input tokens, output tokens) per minute, per model family bucket: the `rpm`, `itpm`
and `otpm` of a `guard.Limits`. Sonnet 4.x and Opus 4.x versions each share one bucket across
versions.

One home, beside `Limits`, for everything that needs the published figures: the stack's
settings (`stacks/settings.py` fills a model's limits from its tier), the Claude emulator
(enforces the same table) and `bench/claude_bench.py`. Plain data: no CDK, no SDK imports.
"""

from __future__ import annotations

FAMILIES = ("sonnet-4", "opus-4", "haiku-4.5")

#: tier -> family -> (RPM, ITPM, OTPM)
ANTHROPIC_TIERS: dict[str, dict[str, tuple[int, int, int]]] = {
    "tier1": {"sonnet-4": (50, 30_000, 8_000), "opus-4": (50, 30_000, 8_000),
              "haiku-4.5": (50, 50_000, 10_000)},
    "tier2": {f: (1_000, 450_000, 90_000) for f in FAMILIES},
    "tier3": {"sonnet-4": (2_000, 800_000, 160_000), "opus-4": (2_000, 800_000, 160_000),
              "haiku-4.5": (2_000, 1_000_000, 200_000)},
    "tier4": {"sonnet-4": (4_000, 2_000_000, 400_000), "opus-4": (4_000, 2_000_000, 400_000),
              "haiku-4.5": (4_000, 4_000_000, 800_000)},
    "start": {f: (1_000, 2_000_000, 400_000) for f in FAMILIES},
    "build": {f: (5_000, 5_000_000, 1_000_000) for f in FAMILIES},
    "scale": {f: (10_000, 10_000_000, 2_000_000) for f in FAMILIES},
}


def family_of(model_id: str) -> str | None:
    """The rate-limit family of an Anthropic model id (None when unknown)."""
    for prefix, family in (("claude-sonnet-4", "sonnet-4"), ("claude-opus-4", "opus-4"),
                           ("claude-haiku-4-5", "haiku-4.5")):
        if model_id.startswith(prefix):
            return family
    return None


#: tier -> (batch endpoints' requests per minute, requests waiting in the batch processing
#: queue). Conservative defaults after Anthropic's published Message Batches limits (not
#: verified here): `batch.requests_per_minute` / `batch.max_queued_requests` override them.
BATCH_TIERS: dict[str, tuple[int, int]] = {
    "tier1": (50, 100_000), "tier2": (1_000, 200_000), "tier3": (2_000, 300_000),
    "tier4": (4_000, 500_000), "start": (1_000, 200_000), "build": (2_000, 300_000),
    "scale": (4_000, 500_000),
}
