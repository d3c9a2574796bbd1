"""Model ids: which rate-limit family a Claude model id belongs to, the base model of a Bedrock
model id, and the largest `max_tokens` each model accepts."""

from __future__ import annotations

import re

#: (model id pattern, family) in the order they are tried.
FAMILY_PATTERNS = (
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
