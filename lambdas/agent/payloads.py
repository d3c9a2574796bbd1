"""Payloads of any size: UTF-8 JSON, and an S3 claim check for what does not fit where it goes.

Answers, deferral envelopes and dead letters are written as UTF-8 JSON (`dumps`: a CJK
character costs 3 bytes, not the 6 of a `\\uXXXX` escape). What is still too large for its
home (a DynamoDB item: 400 KB; an SQS message: the queues' MaximumMessageSize of 1 MiB) is put
in the payload bucket and replaced by a pointer, `{"s3_payload": {...}}` (`PayloadStore`).

The bucket is encrypted with the data key and TLS-only; its lifecycle deletes objects after
`RETENTION_DAYS` (whole days, longer than the DLQ keeps a message). A pointer that carries
`expires_at` (epoch seconds) is refused after that time in code, whatever S3 still holds.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

#: The work queues' and DLQs' MaximumMessageSize (bytes): the largest SQS allows.
MAX_SQS_MESSAGE_BYTES = 1_048_576
#: Largest message body sent inline (bytes, UTF-8); the rest of the limit is left to the
#: message attributes (a dead letter's reason) and their names.
MAX_INLINE_MESSAGE_BYTES = MAX_SQS_MESSAGE_BYTES - 16_384
#: Largest JSON kept inline in a DynamoDB item (bytes; the item limit is 400 KB including
#: attribute names and the item's other attributes).
MAX_INLINE_ITEM_BYTES = 350_000
#: Days the bucket keeps an object (lifecycle): the DLQs' retention (14 days) and one more,
#: so a dead letter's claim check outlives the dead letter.
RETENTION_DAYS = 15
#: The key of a pointer object: {"s3_payload": {"bucket", "key", "bytes", "sha256",
#: "expires_at"?}}.
POINTER = "s3_payload"


class PayloadError(Exception):
    """A payload could not be stored or read; the message names why."""


def dumps(value: Any) -> str:
    """JSON text with non-ASCII characters kept as they are (UTF-8 when encoded)."""
    return json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))


def size(text: str) -> int:
    """Bytes of `text` encoded as UTF-8 (what SQS and DynamoDB count)."""
    return len(text.encode("utf-8"))


def pointer_of(value: Any) -> dict | None:
    """The pointer's fields when `value` is a pointer object, else None."""
    if isinstance(value, dict) and isinstance(value.get(POINTER), dict):
        return value[POINTER]
    return None


@dataclass
class PayloadStore:
    """The payload bucket (`PAYLOAD_BUCKET`) through an injected S3 client. `bucket` None:
    not deployed, and storing a payload raises `PayloadError` naming the variable.
    `clock`: epoch seconds (pointer expiry)."""

    s3: Any
    bucket: str | None
    clock: Callable[[], float] = time.time

    def put(self, kind: str, tenant: str, request_id: str, text: str, *,
            expires_at: float | None = None) -> dict:
        """Store `text` under "<kind>/<tenant>/<request id>/<uuid>.json"; returns the pointer
        object. `expires_at` (epoch seconds): after it `get` refuses the pointer."""
        if not self.bucket:
            raise PayloadError(f"the payload is {size(text):,} bytes, too large to send or "
                               "store inline, and no payload bucket is configured "
                               "(PAYLOAD_BUCKET)")
        body = text.encode("utf-8")
        key = f"{kind}/{tenant}/{request_id}/{uuid.uuid4().hex}.json"
        metadata = {} if expires_at is None else {"expires-at": str(int(expires_at))}
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, Metadata=metadata,
                               ContentType="application/json; charset=utf-8")
        except Exception as err:  # noqa: BLE001 - the caller decides; the message says why
            raise PayloadError(f"could not store the {len(body):,}-byte payload in "
                               f"s3://{self.bucket}/{key}: {err}") from err
        fields = {"bucket": self.bucket, "key": key, "bytes": len(body),
                  "sha256": hashlib.sha256(body).hexdigest()}
        if expires_at is not None:
            fields["expires_at"] = int(expires_at)
        return {POINTER: fields}

    def get(self, pointer: dict) -> str:
        """The text a pointer object (or its fields) names; `PayloadError` when it expired,
        is missing, or is not what was stored (size or SHA-256 differ)."""
        fields = pointer_of(pointer) or pointer
        try:
            bucket, key = fields["bucket"], fields["key"]
        except (KeyError, TypeError):
            raise PayloadError(f"not a payload pointer: {pointer!r}") from None
        expires_at = fields.get("expires_at")
        if expires_at is not None and float(expires_at) < self.clock():
            raise PayloadError(f"the payload s3://{bucket}/{key} expired at {expires_at}")
        try:
            body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as err:  # noqa: BLE001
            raise PayloadError(f"could not read the payload s3://{bucket}/{key}: {err}") \
                from err
        if "sha256" in fields and hashlib.sha256(body).hexdigest() != fields["sha256"]:
            raise PayloadError(f"the payload s3://{bucket}/{key} is not the one stored "
                               "(SHA-256 differs)")
        return body.decode("utf-8")


def fit_text(store: PayloadStore | None, value: dict, *, limit: int, kind: str, tenant: str,
             request_id: str, expires_at: float | None = None,
             keep: tuple[str, ...] = ()) -> str:
    """`value` as UTF-8 JSON text when it is at most `limit` bytes, else a claim check
    {"s3_payload": ..., "request_id", "tenant", <the `keep` fields of value>} with the JSON in
    `store` under `kind` (expiring at `expires_at`, epoch seconds). `PayloadError` when it
    cannot be stored."""
    text = dumps(value)
    if size(text) <= limit:
        return text
    if store is None:
        raise PayloadError(f"the payload of {request_id!r} is {size(text):,} bytes, over the "
                           f"{limit:,}-byte inline limit, and no payload store was given")
    pointer = store.put(kind, tenant, request_id, text, expires_at=expires_at)
    return dumps({**pointer, "request_id": request_id, "tenant": tenant,
                  **{name: value[name] for name in keep if name in value}})


def digest(*parts: Any) -> str:
    """A SHA-256 hex digest of `parts` as canonical JSON (what a request id must keep)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False,
                                     default=str).encode("utf-8")).hexdigest()
