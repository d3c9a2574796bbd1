"""Input-token estimate for a Messages request, made before the call (no network, no SDK).

The bucket reserves this estimate at acquire and `settle` corrects it to the `usage` Claude
reports, so the estimate only has to be good, and better too high than too low: an
under-estimate is carried as debt after the call, but for the duration of the call the bucket
believed more was left than there was.

Rule (deliberately conservative; Claude averages about 4 characters per English token):
    16 tokens per request + 4 per message
    + for every piece of text: ceil(ASCII letters, digits and whitespace / 3)
                               + 1 per ASCII punctuation or symbol character
                               + 1 per non-ASCII character
    + 1,600 per image or document block.
Text is the system prompt, every text block, tool_use inputs and tool_result contents (as JSON
or text) and each tool definition (as JSON). `bench/claude_bench.py` and the guard tests
measure how often it under-estimates against the emulator's own count.
"""

from __future__ import annotations

import json
import math
from typing import Any

REQUEST_OVERHEAD = 16
MESSAGE_OVERHEAD = 4
MEDIA_BLOCK = 1600


def text_tokens(text: str) -> int:
    """Conservative token estimate for one piece of text (tokens)."""
    plain = symbols = other = 0
    for char in text:
        if char.isascii():
            if char.isalnum() or char.isspace():
                plain += 1
            else:
                symbols += 1
        else:
            other += 1
    return math.ceil(plain / 3) + symbols + other


def _content_tokens(content: Any) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return text_tokens(content)
    if isinstance(content, list):
        return sum(_block_tokens(block) for block in content)
    return text_tokens(json.dumps(content, default=str))


def _block_tokens(block: Any) -> int:
    if not isinstance(block, dict):
        return text_tokens(str(block))
    kind = block.get("type")
    if kind == "text":
        return text_tokens(str(block.get("text", "")))
    if kind in ("image", "document"):
        return MEDIA_BLOCK
    if kind == "tool_use":
        return text_tokens(str(block.get("name", ""))) + text_tokens(
            json.dumps(block.get("input", {}), default=str))
    if kind == "tool_result":
        return _content_tokens(block.get("content"))
    return text_tokens(json.dumps(block, default=str))


def estimate_input_tokens(params: dict[str, Any]) -> int:
    """Estimated input tokens of a Messages API request body (`messages.create` kwargs)."""
    total = REQUEST_OVERHEAD
    total += _content_tokens(params.get("system"))
    for tool in params.get("tools") or []:
        total += text_tokens(json.dumps(tool, default=str, separators=(",", ":")))
    for message in params.get("messages") or []:
        total += MESSAGE_OVERHEAD
        if isinstance(message, dict):
            total += _content_tokens(message.get("content"))
        else:
            total += text_tokens(str(message))
    return total
