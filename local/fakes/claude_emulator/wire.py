"""What goes over the wire: API errors, replies, Server-Sent Events and the AWS event-stream
framing of Bedrock's response streams."""

from __future__ import annotations

import base64
import json
import math
import struct
import uuid
import zlib
from typing import Any, Iterator

CONTROL_PREFIX = "/_emulator/"
RATE_LIMIT_DOCS = "https://docs.claude.com/en/api/rate-limits"
ORG_ID = "00000000-0000-4000-8000-000000000000"


def retry_after(wait_s: float) -> int:
    """The `retry-after` header's whole seconds for a wait of `wait_s` seconds (at least 1)."""
    return max(1, math.ceil(wait_s - 1e-9))


class ApiError(Exception):
    def __init__(self, status: int, kind: str, message: str, headers=None, extra=None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message
        self.headers = list(headers or [])
        self.extra = extra or {}


class Reply:
    __slots__ = ("status", "headers", "body", "stream", "on_close")

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes = b"",
                 stream: Iterator[bytes] | None = None, on_close=None) -> None:
        self.status, self.headers, self.body, self.stream = status, headers, body, stream
        self.on_close = on_close  # called once the stream is done or abandoned


def json_reply(status: int, payload: Any, headers=()) -> Reply:
    return Reply(status, [("content-type", "application/json"), *headers],
                  json.dumps(payload).encode())


def new_request_id() -> str:
    return "req_" + uuid.uuid4().hex[:24]


def sse_event(event: str, data: dict) -> bytes:
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


def bedrock_chunk(event: dict) -> bytes:
    raw = json.dumps(event, separators=(",", ":")).encode()
    return event_stream_message(json.dumps({"bytes": base64.b64encode(raw).decode()}).encode())
