"""What one bucket client knows of the shared item, and how it times its bookings.

The item as the last write or read returned it (decoded: seconds per attribute) and when it was
seen, the capacities in force on it (configured, or learned from the server's headers: every
`tat` is in their seconds) and the `guard.gcra.Shape` they give, the recent store round trips,
and when this client last lost a race. From these: the start a booking asks for (a slack after
the earliest start seen), the idle margin it is charged, and how old a view may be before a
booking reads the item first. No I/O: `guard.bucket.TokenBucket` feeds it every item it sees.
"""

from __future__ import annotations

import math
import threading
from typing import Callable, Mapping

from . import gcra

#: For this long (seconds) after a client lost a race, its bookings leave room for a whole
#: concurrent booking (see `BucketView.booking_start`).
CONTENTION_MEMORY_S = 60.0

#: A booking reads the bucket's state first when its view is older than this many store
#: round trips (and older than the floor below): a queue extrapolated across a long wait is
#: a guess, and a wrong guess costs a refused write; a read costs no write capacity.
BOOKING_VIEW_MAX_ROUND_TRIPS = 2
BOOKING_VIEW_MAX_AGE_FLOOR_S = 0.2


class BucketView:
    """One client's view of the bucket item. `configured`: capacity per dimension (per
    minute); `burst_tolerance_s`: the bucket's burst tolerance (seconds); `clock`: epoch
    seconds; `clamp_margin_s`, `max_slack_s`: as `TokenBucket` takes them (seconds)."""

    def __init__(self, configured: Mapping[str, float], burst_tolerance_s: float,
                 clock: Callable[[], float], clamp_margin_s: float, max_slack_s: float) -> None:
        self.configured = dict(configured)
        self.capacities = dict(self.configured)  # in force: configured or learned
        self._burst_tolerance_s = burst_tolerance_s
        self.shape = gcra.Shape(self.capacities, burst_tolerance_s)
        self._clock = clock
        self._margin = float(clamp_margin_s)
        self._max_slack = float(max_slack_s)
        self._lock = threading.Lock()
        self._seen: dict[str, float] = {}  # last item seen: attribute -> seconds
        self._seen_at = float("-inf")  # when it was seen (clock seconds)
        self._raced_at = -math.inf  # when an acquire of this client last lost a race
        self._round_trips: list[float] = []  # recent write latencies (clock seconds)

    def note_lost_race(self) -> None:
        """An acquire of this client lost a race (its write was refused): for
        `CONTENTION_MEMORY_S` its bookings leave room for a whole concurrent booking."""
        self._raced_at = self._clock()

    def booking_start(self, costs: dict[str, float], seen: dict[str, float], now: float,
                      max_wait_s: float, seen_age_s: float = 0.0, lost_by_s: float = 0.0) -> float:
        """The start to book: now without waiting; otherwise the earliest start seen plus a
        slack, so that bookings other callers made meanwhile still fit.

        The slack is about one store round trip (p99) plus one request's cost, at most
        `max_slack_s`; for `CONTENTION_MEMORY_S` after this client lost a race, the whole
        cost however large: a booking another caller makes during the round trip moves the
        queue end by its cost, and only a slack of at least that cost leaves this booking
        room (at 50 RPM one request costs 1.2 s). After a lost race it also covers
        `lost_by_s`, how far the queue head moved during that attempt: the callers that lost
        together retry together, and the queue moves about as far again while they do. A
        view that showed a queue is
        `seen_age_s` old: a saturated queue grows in real time, so its earliest start is moved
        on by that age. With `max_slack_s` 0 there is no slack, after a lost race neither: a
        bucket whose burst is about one request (a few requests per second) would lose the
        gap for good, so a booking that loses its race is rewritten at the new queue end."""
        if max_wait_s <= 0:
            return now
        earliest = self.shape.earliest_start(costs, seen, -math.inf)  # not clamped to now
        if earliest > now - seen_age_s:  # the view showed a queue: it has grown since
            earliest += min(seen_age_s, max_wait_s)
        slack = self.round_trip_s() + max(costs.values(), default=0.0)
        if self._max_slack == 0:
            slack = 0.0
        else:
            if self._clock() - self._raced_at > CONTENTION_MEMORY_S:
                slack = min(self._max_slack, slack)
            slack += lost_by_s
        return min(max(now, earliest + slack), now + max_wait_s)

    def idle_margin(self, costs: Mapping[str, float], start: float, now: float) -> float:
        """Seconds an idle dimension is charged beyond exact GCRA for a reservation starting at
        `start`: `clamp_margin_s` (the bucket's) for a start of now; for a booking, at least
        `gcra.BOOKING_MARGIN_S` and the slack of one (a round trip plus one request's cost).
        Concurrent bookings start up to a few seconds apart, and the idle form sets an
        absolute value that refuses every write made meanwhile; a dimension left this far
        ahead stays busy for the bookings that follow, whose linear form holds whatever was
        booked meanwhile. Only a dimension that is not binding takes the idle form, so the
        extra charge costs capacity only where there is capacity to spare."""
        if start <= now:
            return self._margin
        return max(self._margin, gcra.BOOKING_MARGIN_S,
                   self.round_trip_s() + max(costs.values(), default=0.0))

    def round_trip_s(self) -> float:
        """About one store round trip (seconds): the p99 of recent writes, within
        [0.01, max_slack_s]; 0.1 before any write. Bookings start this much after the
        earliest start seen, and a booked caller reads the cool-down this long before."""
        with self._lock:
            samples = sorted(self._round_trips)
        if not samples:
            return min(self._max_slack, 0.1)
        p99 = samples[min(len(samples) - 1, int(0.99 * (len(samples) - 1) + 0.5))]
        return min(self._max_slack, max(0.01, p99))

    def booking_view_max_age(self) -> float:
        """Seconds a view may age before a booking reads the bucket's state first."""
        return max(BOOKING_VIEW_MAX_AGE_FLOOR_S,
                   BOOKING_VIEW_MAX_ROUND_TRIPS * self.round_trip_s())

    def snapshot(self) -> dict[str, float]:
        """A copy of the last item seen (seconds per attribute)."""
        with self._lock:
            return dict(self._seen)

    def snapshot_with_age(self) -> tuple[dict[str, float], float]:
        """A copy of the last item seen, and when it was seen (clock seconds)."""
        with self._lock:
            return dict(self._seen), self._seen_at

    def remember(self, item: dict[str, float], write_round_trip: float | None = None) -> None:
        """`item` (decoded) is the latest seen, now; adopt the capacities it holds. A write's
        `write_round_trip` (seconds) joins the round-trip samples."""
        capacities = gcra.learned_capacities(self.configured, item)
        with self._lock:
            self._seen = item
            self._seen_at = self._clock()
            if capacities != self.capacities:  # adopt the item's: its tats are in their seconds
                self.capacities = capacities
                self.shape = gcra.Shape(capacities, self._burst_tolerance_s)
        if write_round_trip is not None:
            self.note_round_trip(write_round_trip)

    def note_round_trip(self, seconds: float) -> None:
        """One store round trip (seconds); the last 100 are kept."""
        with self._lock:
            self._round_trips.append(seconds)
            del self._round_trips[:-100]
