"""The answers: deterministic text (or the scripted `EMULATOR: output|answer|call` directives),
summaries of tool results, batch items, and the stream events of an answer (SSE for the
Anthropic API, event-stream chunks with invocation metrics for Bedrock)."""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
import uuid
from typing import Any, Iterator

from local.fakes.claude_emulator.limits import Admission
from local.fakes.claude_emulator.tokens import canonical, count_request_input_tokens, count_tokens, dumps
from local.fakes.claude_emulator.wire import ApiError, bedrock_chunk, sse_event

VOCABULARY = (
    "the data flow rate time load fast safe node work plan test path unit byte call cost wait "
    "step edge core lane gate pool sync hold tick mesh peak span seed loop sum key map log bit "
    "run end new old team risk note next task goal view list form file code line page open "
    "done good real high low part full half base"
).split()

_OUTPUT_DIRECTIVE = re.compile(r"EMULATOR:[ \t]*output[ \t]+(\d+)")
_ANSWER_DIRECTIVE = re.compile(r"EMULATOR:[ \t]*answer[ \t]+(\d+)[ \t]+(\S+)")
_CALL_DIRECTIVE = re.compile(r"^[ \t]*EMULATOR:[ \t]*call[ \t]+(\S+)[ \t]+(\{.*\})[ \t]*$",
                             re.MULTILINE)


class Answering:
    """What the Emulator answers and how it streams it; uses `config` and `family_of` of the
    host."""

    @staticmethod
    def _sse_frames(events: Any) -> Iterator[bytes]:
        try:
            for event in events:
                yield sse_event(event["type"], event)
        finally:
            events.close()  # settles the admission now, also when the client went away

    def answer_batch_item(self, params: dict) -> dict:
        """One batch item's message: validated like /v1/messages, answered deterministically,
        outside the per-minute limits (batch processing does not count against them)."""
        if not isinstance(params, dict) or not params.get("model"):
            raise ApiError(400, "invalid_request_error", "model: Field required")
        if params.get("stream"):
            raise ApiError(400, "invalid_request_error", "stream: not supported in batches")
        self._validate(params, bedrock=False)
        model = str(params["model"])
        if self.family_of(model) is None:
            raise ApiError(404, "not_found_error", f"model: {model}")
        request_hash = hashlib.sha256(canonical(model, params).encode()).hexdigest()
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
                    raise ApiError(400, "ValidationException" if bedrock
                                    else "invalid_request_error",
                                    f"EMULATOR: call {name}: tool {name!r} is not in tools")
                try:
                    tool_input = json.loads(raw_input)
                except ValueError as err:
                    raise ApiError(400, "ValidationException" if bedrock
                                    else "invalid_request_error",
                                    f"EMULATOR: call {name}: input is not JSON: {err}") from None
                if not isinstance(tool_input, dict):
                    raise ApiError(400, "ValidationException" if bedrock
                                    else "invalid_request_error",
                                    f"EMULATOR: call {name}: input must be a JSON object")
                digest = hashlib.sha256(f"{request_hash}/{index}/{name}".encode()).hexdigest()
                answer.append({"type": "tool_use", "id": "toolu_" + digest[:24], "name": name,
                               "input": tool_input})
                tokens += count_tokens(name) + count_tokens(dumps(tool_input))
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

    def _stream_events(self, message: dict, admission: Admission, latency: float,
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
                    raw = dumps(block["input"])
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
                yield bedrock_chunk(event)
        finally:
            events.close()
