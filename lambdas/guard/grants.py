"""What the bucket hands out and takes back: `Grant` (the outcome of an acquire), `Settlement`
(the outcome of a settle or release) and `BucketRequestError` (a request the bucket can never
serve), with the check of a requested amount. Plain data: no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class BucketRequestError(ValueError):
    """A request the bucket can never serve (bad amount, or more than a capacity)."""


@dataclass
class Grant:
    """Outcome of `TokenBucket.try_acquire`.

    `granted` is True when the reservation was recorded. Otherwise `retry_after` (seconds) says
    when it may succeed and `reason` is "quota", "cool_down" or "store_unavailable".
    `reserved` maps each dimension to what was reserved (requests or tokens);
    `quota_used_percent` is the fullest dimension after the acquire (from the item written);
    `store_calls` counts the DynamoDB writes this acquire made, `store_reads` its reads (a
    booking with an old view reads the bucket's state first). `acquired_at` and
    `returned_at` are the bucket clock (epoch seconds) when `try_acquire` started and returned;
    `start_at` is when the reservation's capacity starts (epoch seconds; `returned_at` for a grant
    that may be used at once): send no earlier. `queue_s` is how far ahead it was booked
    (start_at - acquired_at, seconds); `first_attempt` is True when the first write succeeded.
    `tenant` is the tenant the call counted as (None on a bucket without tenants), `priority`
    its class; `ticket` (epoch seconds) is set on a refusal by a bucket with tenants ("fair_share",
    or "quota" when the whole queue is longer than the wait): the caller's place in its tenant's
    queue, to pass back to `try_acquire`.
    """

    granted: bool
    retry_after: float
    reason: str | None
    reserved: dict[str, float] = field(default_factory=dict)
    quota_used_percent: float | None = None
    store_calls: int = 0
    acquired_at: float = 0.0
    bucket_id: str = ""
    store_reads: int = 0
    returned_at: float = 0.0
    start_at: float = 0.0
    queue_s: float = 0.0
    first_attempt: bool = True
    tenant: str | None = None
    priority: str = "interactive"
    ticket: float | None = None
    _settled: bool = field(default=False, repr=False)
    _cap_written: dict[str, str] = field(default_factory=dict, repr=False)
    _returned_mono: float | None = field(default=None, repr=False)
    _written: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.returned_at:
            self.returned_at = self.acquired_at
        if not self.start_at:
            self.start_at = self.returned_at

    @property
    def written_tats(self) -> dict[str, str]:
        """Each charged dimension's `tat` as this grant's write left it (epoch seconds, as
        the DynamoDB number string): a settle can undo exactly its own charge."""
        return self._written

    @property
    def cap_written_tats(self) -> dict[str, str]:
        """The same for its tenant's caps (`guard.fair`)."""
        return self._cap_written

    def mark_settled(self) -> None:
        """Record that this grant was settled or released; BucketRequestError the second
        time."""
        if self._settled:
            raise BucketRequestError("this grant was already settled")
        self._settled = True


@dataclass
class Settlement:
    """Outcome of `TokenBucket.settle` or `release`: `adjustment` per dimension (tokens;
    negative = refund). `forgone` holds the refunds not credited because bookings were pending
    or a lowering to the server's remaining came after the grant
    (tokens or requests per dimension; the reservation stands)."""

    settled: bool
    reason: str | None
    adjustment: dict[str, float]
    store_calls: int
    forgone: dict[str, float] = field(default_factory=dict)


def check_amount(name: str, value: Any) -> int:
    """`value` as an amount of requests or tokens: a whole number >= 0, else
    BucketRequestError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise BucketRequestError(f"{name} must be a whole number, got {type(value).__name__} "
                                 f"{value!r}")
    if value < 0:
        raise BucketRequestError(f"{name} must not be negative, got {value}")
    return value
