"""The emulator's tokenizer: tokens of a text, of content blocks and of a whole Messages request,
and the request cut into cacheable segments (tools, system, messages, in cache order)."""

from __future__ import annotations

import json
import re
from typing import Any

IMAGE_TOKENS = 1600
PER_MESSAGE_TOKENS = 3
PER_REQUEST_TOKENS = 10


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


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _block_tokens(block: Any) -> int:
    if isinstance(block, str):
        return count_tokens(block)
    if not isinstance(block, dict):
        return count_tokens(dumps(block))
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
        return count_tokens(dumps(block.get("input", {})))
    if kind == "tool_result":
        content = block.get("content")
        if isinstance(content, list):
            return sum(_block_tokens(b) for b in content)
        return count_tokens(content if isinstance(content, str) else "" if content is None
                            else dumps(content))
    if kind == "thinking":
        return count_tokens(str(block.get("thinking", "")))
    if kind == "redacted_thinking":
        return count_tokens(str(block.get("data", "")))
    return count_tokens(dumps(_strip_cache_control(block)))


class Segment:
    """One cacheable unit of the prompt, in cache order (tools, system, messages)."""

    __slots__ = ("tokens", "canonical", "ttl")

    def __init__(self, tokens: int, canonical: str, ttl: str | None) -> None:
        self.tokens, self.canonical, self.ttl = tokens, canonical, ttl


def _ttl_of(block: Any) -> str | None:
    if not isinstance(block, dict) or not isinstance(block.get("cache_control"), dict):
        return None
    return "1h" if block["cache_control"].get("ttl") == "1h" else "5m"


def canonical(*parts: Any) -> str:
    return json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def prompt_segments(body: dict) -> list[Segment]:
    segments = [Segment(PER_REQUEST_TOKENS, "request", None)]
    for tool in body.get("tools") or []:
        plain = _strip_cache_control(tool)
        segments.append(Segment(count_tokens(dumps(plain)), canonical("tool", plain),
                                 _ttl_of(tool)))
    system = body.get("system")
    if isinstance(system, str):
        segments.append(Segment(count_tokens(system), canonical("system", system), None))
    elif isinstance(system, list):
        for block in system:
            segments.append(Segment(_block_tokens(block),
                                     canonical("system", _strip_cache_control(block)),
                                     _ttl_of(block)))
    for index, message in enumerate(body.get("messages") or []):
        role = message.get("role") if isinstance(message, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        blocks = [content] if isinstance(content, str) else content if isinstance(content, list) \
            else []
        if not blocks:
            segments.append(Segment(PER_MESSAGE_TOKENS, canonical("msg", index, role), None))
            continue
        for position, block in enumerate(blocks):
            overhead = PER_MESSAGE_TOKENS if position == 0 else 0
            segments.append(Segment(_block_tokens(block) + overhead,
                                     canonical("msg", index, role, position,
                                                _strip_cache_control(block)),
                                     _ttl_of(block)))
    return segments


def count_request_input_tokens(body: dict) -> int:
    """Input tokens of a whole Messages request: 10 per request, 3 per message, system, text
    blocks, tool_use inputs and tool_result contents, tool definitions (JSON), 1600 per image."""
    return sum(segment.tokens for segment in prompt_segments(body))
