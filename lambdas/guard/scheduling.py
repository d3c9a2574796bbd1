"""Waiting for capacity: how a guarded client gets a grant within the caller's deadline.

fifo: book the earliest start within the deadline (at most a window ahead) and sleep until it;
a booked wait longer than `COOL_DOWN_CHECK_AFTER_S` reads the shared cool-down about one round
trip before its start and books again when a cool-down set after the booking covers it.
poll: take capacity only if it is there now, else sleep the refusal's `retry_after`.

`CapacityWaits` is a part of `GuardedClaude` (its base class): it uses the client's `_clock`
and `_sleep` (seconds), `_rng` (jitter), `scheduling` and `_tickets` (a deferred call's place
in its tenant's queue, per bucket, tenant and priority).
"""

from __future__ import annotations

import logging

from .bucket import BucketRequestError, TokenBucket
from .limits import WINDOW_S
from .outcomes import DEFERRED, ERROR
from .results import CallResult
from .send_timing import StampedGrant

log = logging.getLogger(__name__)

#: Scheduling of waits for capacity: book a start once and sleep until it ("fifo", first come
#: first served), or refuse and retry after `retry_after` ("poll", the behaviour before
#: bookings; deploy it while clients without booking-safe refunds may still run).
SCHEDULING_MODES = ("fifo", "poll")
#: A booked wait longer than this (seconds) reads the shared cool-down one round trip before
#: its start, so a cool-down set after the booking is not sent into.
COOL_DOWN_CHECK_AFTER_S = 1.0


class CapacityWaits:
    """Acquire, book and sleep for a guarded client (see the module docstring)."""

    def _acquire_once(self, bucket: TokenBucket, estimate: int, max_tokens: int,
                      max_wait: float, tenant: str | None, priority: str,
                      ticket: float | None, result: CallResult) -> StampedGrant | None:
        """One `try_acquire` of a call (booking up to `max_wait` seconds ahead), its store calls
        counted in `result` and a grant stamped with this client's clock when it came back;
        None (result filled in) when the request can never fit."""
        try:
            grant = bucket.try_acquire(1, estimate, max_tokens, max_wait_s=max_wait,
                                       tenant=tenant, priority=priority, ticket=ticket)
        except BucketRequestError as err:
            result.status = ERROR
            result.error = {"type": "request_too_large", "message": str(err)}
            return None
        result.store_calls += grant.store_calls
        result.store_reads += grant.store_reads
        return StampedGrant(grant, self._clock() if grant.granted else None)

    def _acquire(self, bucket: TokenBucket, estimate: int, max_tokens: int, deadline: float,
                 result: CallResult, place: tuple = (None, None, "interactive")
                 ) -> StampedGrant | None:
        """Wait for a grant within the deadline (client clock, seconds); None (result filled
        in) when it cannot be had.

        fifo: book the earliest start within the deadline (at most a minute ahead) and sleep
        until it; poll: take capacity only if it is there now, else sleep `retry_after`."""
        while True:
            now = self._clock()
            max_wait = 0.0 if self.scheduling == "poll" else max(0.0, min(WINDOW_S,
                                                                          deadline - now))
            held = self._acquire_once(bucket, estimate, max_tokens, max_wait, place[1],
                                      place[2], self._tickets.get(place), result)
            if held is None:
                return None
            grant = held.grant
            if grant.ticket is not None and not grant.granted:
                self._tickets[place] = result.ticket = grant.ticket
            if grant.granted:
                self._tickets.pop(place, None)
                result.ticket = None
                if grant.start_at > grant.returned_at and not self.sleep_until_start(
                        bucket, held, result):
                    continue  # a cool-down was set after the booking: book again
                return held
            result.local_throttles += 1
            if self._clock() + grant.retry_after > deadline:
                result.status, result.retry_after, result.reason = (DEFERRED, grant.retry_after,
                                                                    grant.reason)
                return None
            self._wait(grant.retry_after, result)

    def sleep_until_start(self, bucket: TokenBucket, held: StampedGrant,
                          result: CallResult) -> bool:
        """Sleep until a booked grant's start; False (grant given back) when a cool-down set
        after the booking covers the start. The sleep is added to `result.waited_s`."""
        grant = held.grant
        wait = grant.start_at - grant.returned_at
        result.queue_s = max(result.queue_s, wait)
        due = held.returned_mono + wait
        if wait > COOL_DOWN_CHECK_AFTER_S:
            lead = min(0.5, max(0.05, 2 * bucket.round_trip_s()))  # about one round trip before
            self._pause_until(due - lead, result)
            result.store_reads += 1
            cool_until = bucket.cool_down_until()
            if cool_until is not None and cool_until > grant.start_at:
                bucket.release(grant)
                result.cool_down_rebooks += 1
                log.info("booking given back: a cool-down until %.3f covers its start",
                         cool_until)
                return False
        self._pause_until(due, result)
        return True

    def _pause_until(self, due: float, result: CallResult) -> None:
        """Sleep until the client clock reads `due` (seconds), counted in `result.waited_s`."""
        pause = due - self._clock()
        if pause > 0:
            self._sleep(pause)
            result.waited_s += pause

    def _wait(self, seconds: float, result: CallResult) -> None:
        """Sleep `seconds` plus jitter, counted in `result.waited_s`."""
        # Up to 10% + 20 ms of jitter so callers refused together do not return together.
        pause = seconds + self._rng.uniform(0, 0.1 * seconds + 0.02)
        self._sleep(pause)
        result.waited_s += pause
