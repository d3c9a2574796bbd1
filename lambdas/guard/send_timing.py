"""Grant, then send at once: the grant a call holds, and the send hook that times its request.

An httpx request hook on the SDK's HTTP client (`install_send_hook`) fires the current attempt's
`SendProbe` the moment the request starts to go out, inside the SDK and before any byte is sent.
The probe measures the grant-to-send delay (seconds) and raises `StaleGrant` when the grant is
older than the client's `max_grant_age_s`: the request is not sent and the grant is given back.

`StampedGrant` is a bucket's answer with the client's clock reading when it came back, so the
client knows when the grant's capacity starts on its own clock (a booked start included).
"""

from __future__ import annotations

import contextvars
import logging
from dataclasses import dataclass
from typing import Any, Callable

from .bucket import Grant

log = logging.getLogger(__name__)


class StaleGrant(Exception):
    """Raised by the send hook (inside the SDK, before any byte is sent) when a grant is older
    than `max_grant_age_s`: the request is not sent and the grant is given back."""

    def __init__(self, age_s: float) -> None:
        super().__init__(f"grant is {age_s * 1000:.0f} ms old at send")
        self.age_s = age_s


@dataclass(eq=False)
class StampedGrant:
    """A bucket's answer to `try_acquire`, with the client's clock reading when it came back.

    `returned_mono`: the client clock (seconds) at the return of a granted acquire (None for a
    refusal). `started`: True once a caller has slept until the grant's booked start (a pool
    router does, before its pool's client sends)."""

    grant: Grant
    returned_mono: float | None = None
    started: bool = False

    @property
    def booked_wait_s(self) -> float:
        """Seconds from the grant's return to its booked start (0 for a grant usable at once)."""
        return max(0.0, self.grant.start_at - self.grant.returned_at)

    def due(self, clock: Callable[[], float]) -> float:
        """The client clock's reading when the grant's capacity starts: its return, moved to its
        booked start when it has one (seconds; `clock()` stands in for an unstamped return)."""
        returned = self.returned_mono if self.returned_mono is not None else clock()
        return returned + self.booked_wait_s


class SendProbe:
    """One attempt's grant, armed just before the SDK call; the request hook fires it.

    `due`: the client clock's reading when the grant's capacity starts (its return from
    `try_acquire`, or its booked start). `fired_at`: when the request started to go out.
    `max_age_s`: the oldest (seconds) a grant may be at its send."""

    def __init__(self, clock: Callable[[], float], due: float, max_age_s: float) -> None:
        self.clock = clock
        self.due = due
        self.max_age_s = max_age_s
        self.fired_at: float | None = None

    def fire(self) -> None:
        """Note the send's time (client clock, once per attempt); raise `StaleGrant` when the
        grant is then older than `max_age_s` seconds."""
        if self.fired_at is not None:
            return
        self.fired_at = self.clock()
        age = self.fired_at - self.due
        if age > self.max_age_s:
            raise StaleGrant(age)


#: The probe of the attempt being sent in this context (None outside a guarded SDK call).
CURRENT_PROBE: contextvars.ContextVar[SendProbe | None] = contextvars.ContextVar(
    "bulwark_send_probe", default=None)


def on_request(request) -> None:
    """httpx request hook: fires the current attempt's probe (no-op for other requests)."""
    probe = CURRENT_PROBE.get()
    if probe is not None:
        probe.fire()


def install_send_hook(sdk: Any) -> None:
    """Put `on_request` on the SDK client's httpx client (once; shared by its copies)."""
    http = getattr(sdk, "_client", None)
    hooks = getattr(http, "event_hooks", None)
    if not isinstance(hooks, dict):
        log.warning("SDK client has no httpx event hooks: grant-to-send is not measured")
        return
    if on_request not in hooks.get("request", []):
        http.event_hooks = {**hooks, "request": [*hooks.get("request", []), on_request]}


def stale_cause(err: BaseException | None) -> StaleGrant | None:
    """The `StaleGrant` an SDK error was raised from (its cause or context chain), if any."""
    while err is not None:
        if isinstance(err, StaleGrant):
            return err
        err = err.__cause__ or err.__context__
    return None
