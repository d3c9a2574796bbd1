"""`agent.payloads` without I/O: UTF-8 sizes, inline or claim check at the limit, pointer
integrity and expiry checked in code, and the request digest."""

from __future__ import annotations

import io
import json

import pytest

from agent.payloads import (MAX_INLINE_MESSAGE_BYTES, PayloadError, PayloadStore, digest, dumps,
                            fit_text, pointer_of, size)


class MemoryS3:
    """put_object / get_object on a dict; `fail` makes every call raise."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}
        self.fail = False

    def put_object(self, *, Bucket, Key, Body, **_):
        if self.fail:
            raise RuntimeError("S3 is down")
        self.objects[(Bucket, Key)] = Body

    def get_object(self, *, Bucket, Key):
        if self.fail:
            raise RuntimeError("S3 is down")
        return {"Body": io.BytesIO(self.objects[(Bucket, Key)])}


def test_non_ascii_costs_its_utf8_bytes_not_an_escape():
    text = dumps({"answer": "漢" * 10})
    assert "\\u" not in text and size(text) == len(text.encode()) == 10 * 3 + len('{"answer":""}')


def test_a_value_at_the_limit_stays_inline_and_a_larger_one_is_a_claim_check():
    s3 = MemoryS3()
    store = PayloadStore(s3, "payloads", lambda: 100.0)
    value = {"x": "a" * (MAX_INLINE_MESSAGE_BYTES - len('{"x":""}'))}
    assert fit_text(store, value, limit=MAX_INLINE_MESSAGE_BYTES, kind="queue", tenant="acme",
                    request_id="r1") == dumps(value)
    bigger = {"x": value["x"] + "a", "dlq_reason": "why"}
    text = fit_text(store, bigger, limit=MAX_INLINE_MESSAGE_BYTES, kind="dlq",
                    tenant="acme", request_id="r1", keep=("dlq_reason",))
    claim = json.loads(text)
    assert claim["request_id"] == "r1" and claim["tenant"] == "acme"
    assert claim["dlq_reason"] == "why" and pointer_of(claim)["key"].startswith("dlq/acme/r1/")
    assert json.loads(store.get(claim)) == bigger


def test_without_a_bucket_a_large_payload_is_refused_naming_the_variable():
    store = PayloadStore(MemoryS3(), None)
    with pytest.raises(PayloadError, match="PAYLOAD_BUCKET"):
        fit_text(store, {"x": "a" * 100}, limit=10, kind="results", tenant="acme",
                 request_id="r1")
    with pytest.raises(PayloadError, match="no payload store was given"):
        fit_text(None, {"x": "a" * 100}, limit=10, kind="results", tenant="acme",
                 request_id="r1")


def test_a_pointer_is_refused_when_expired_changed_or_unreadable():
    s3, now = MemoryS3(), [100.0]
    store = PayloadStore(s3, "payloads", lambda: now[0])
    pointer = store.put("results", "acme", "r1", "答え", expires_at=200)
    assert store.get(pointer) == "答え"
    now[0] = 201.0
    with pytest.raises(PayloadError, match="expired at 200"):
        store.get(pointer)
    now[0] = 100.0
    key = (pointer["s3_payload"]["bucket"], pointer["s3_payload"]["key"])
    s3.objects[key] = "別".encode()
    with pytest.raises(PayloadError, match="SHA-256 differs"):
        store.get(pointer)
    s3.fail = True
    with pytest.raises(PayloadError, match="could not read"):
        store.get(pointer)
    with pytest.raises(PayloadError, match="could not store"):
        store.put("results", "acme", "r1", "x")


def test_the_digest_changes_with_any_part_and_not_with_key_order():
    base = digest("prompt", "model", 100, "interactive")
    assert base == digest("prompt", "model", 100, "interactive")
    assert len({base, digest("prompt!", "model", 100, "interactive"),
                digest("prompt", "other", 100, "interactive"),
                digest("prompt", "model", 101, "interactive"),
                digest("prompt", "model", 100, "batch")}) == 5
    assert digest({"a": 1, "b": 2}) == digest({"b": 2, "a": 1})
