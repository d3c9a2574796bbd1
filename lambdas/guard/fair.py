"""Weighted fair shares, priority classes and tickets on the bucket item: pure, no I/O.

Safety stays with the bucket's `tat_*` dimensions (`guard.gcra`): every admission is charged
there as of its start, exactly as without tenants. Fairness decides *who* may book, and is kept
in one map attribute, `tenants`, with per tenant (short field names: every write is billed on
the item's size):

* `v`: the tenant's virtual finish time (epoch seconds). A booking of binding cost `c` seconds
  (the largest of its per-dimension costs) moves it to `max(v, s) + c * W / w`, where `s` is
  the booking's start, `w` the tenant's weight and `W` the weights of the tenants with a
  pending booking (this one included; the reserve counts as `1 / background_reserve`).
* `bk`: the latest start (or ticket) the tenant has pending, in whole `ACTIVE_STEP_S`; a
  tenant with `bk > now` is "active" and counts in `W`.
* `p`: the tenant's pending share (epoch seconds), kept only while another tenant has
  recent demand: each admission that books ahead moves it to `max(p, now) + c * W / w`, so
  `(p - now) * w / W` is about how much of the booked queue (seconds) the tenant holds.
* `r`, `i`, `o`, `t`: the tenant's own GCRA tats for its caps (requests, input, output,
  Bedrock tokens per minute), charged as of `s` with the bucket's forms.

Admission, when a queue exists (the bucket has no capacity now): a booking's virtual place
`max(v, s) + c * W / w` must lie within `H = c * W / w + min(class horizon, FAIR_TOLERANCE_S)`
of its start `s` (class horizon: how far ahead of now its class books, which the bucket also
applies to the start: the caller's wait for interactive work, `BACKGROUND_HORIZON_S` for
background booking by itself).
A tenant with nothing pending beyond `s` (`v <= s`) may always book; one with places pending
beyond `s` may not. So each tenant's virtual time
advances `W / w` times faster than the queue end while it books, and under contention it books
`w / W` of the slots, whatever its caller count (start-time fair queueing over the bucket's
queue). When there is capacity now, anyone is admitted (work-conserving), uncharged: a
tenant's use of idle capacity does not count against it later (a tenant alone restarts `v` from
the start; one sharing keeps it, since it holds its ticket holders' places). A tenant alone
shares with nobody (`W = w`): its virtual time moves as fast as the queue end. While another
tenant is active, a tenant whose `v` fell behind the start keeps up to one step of that lag
(`v` restarts no lower than `s - c * W / w`): a tenant with few callers often comes back just
after its turn, and losing the turn each time would hand a share of its slots to the tenant
with the most callers.

While another tenant has recent demand (`bk` within `ACTIVE_STEP_S` of now), a tenant may
hold at most `w / W` of `PENDING_SHARE_S` of the booked queue (`p <= now + PENDING_SHARE_S -
c * W / w` before a booking): a tenant with many callers could otherwise fill the queue up to
its callers' wait, and a tenant with few callers, all of them waiting in that queue, cannot
keep half of it booked (Little's law: 4 callers over a 20 s queue make 12 requests a minute),
so its share would follow the queue length instead of its weight. With every tenant at its
bound the queue is `PENDING_SHARE_S` long and each books `w / W` of it. The bound yields while
the queue ahead of the start is shorter than one request plus `FAIR_TOLERANCE_S`, so the
bucket never idles for it (work-conserving); a tenant alone is not bounded.

Refused for its share, or because the whole queue is longer than its wait, a caller gets a
*ticket*: the write moves `v` on by its cost, marks the tenant active and returns the new `v`,
its place in the tenant's virtual queue. A ticket holder is admitted, without being charged
again, once `ticket <= s + H`; later arrivals of its tenant queue behind it (they start from
the moved `v`), so a deferred request keeps its place. A lost ticket costs only its tenant. A
ticket is void after `TICKET_MAX_AGE_S`, or once `v` restarted below it (capacity was free).

Background work books at most `BACKGROUND_HORIZON_S` ahead, so it never sits in front of
interactive work arriving later; when the queue is longer it books through the reserve, a
pseudo-tenant `~background` whose bookings advance its virtual time by `c / background_reserve`
(and the tenants' by `1 / (1 - background_reserve)` more while it is active): while
interactive work fills the queue, background keeps that fraction of the slots. A background
caller refused by the reserve comes back when the queue is short enough to book directly, if
that comes first; a reserve ticket due only after that would never be used, so that refusal
writes nothing.

The condition of a write names only the acquiring tenant's own fields (a stale `W` is a
fairness error, never a safety one), and a refusal for fairness or a cap never books a later
start instead: a start past the queue end would take the idle form and waste capacity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

from . import gcra
from .outcomes import FAIR_SHARE, QUOTA, TENANT_CAP
from .limits import (DEFAULT_TENANT, INPUT_TOKENS, OUTPUT_TOKENS, REQUESTS, TOKENS, WINDOW_S,
                     Limits, TenantShare)

TENANTS = gcra.TENANTS
V, BK = "v", "bk"
#: dimension -> field of a tenant's cap tat
CAP_FIELDS = {REQUESTS: "r", INPUT_TOKENS: "i", OUTPUT_TOKENS: "o", TOKENS: "t"}

INTERACTIVE, BACKGROUND = "interactive", "background"
PRIORITIES = (INTERACTIVE, BACKGROUND)
#: The pseudo-tenant background work books through when the queue is longer than its horizon.
RESERVE = "~background"
#: How far ahead background work books by itself (seconds).
BACKGROUND_HORIZON_S = 0.5
#: `bk` is kept in whole steps of this many seconds (rounded up), so concurrent bookings of
#: one tenant within a step write the same value and never race (the bucket's
#: `booked_until` step: bookings a few seconds apart mostly fall in one step).
ACTIVE_STEP_S = gcra.BOOKED_STEP_S
#: How far (seconds) beyond its start a booking's virtual place may lie, on top of one step.
FAIR_TOLERANCE_S = 1.0
#: How much earlier (seconds) than its issuing refusal said a ticket holder's booking may
#: start and still be admitted: a start is the queue end plus a slack of one store round trip
#: (at most 0.5 s), and the round trip measured at the return differs from the one at issue.
TICKET_TOLERANCE_S = 0.5
#: A ticket older than this (seconds) is void: its holder queues as a new arrival.
TICKET_MAX_AGE_S = WINDOW_S
#: While another tenant has recent demand, a tenant holds at most `w / W` of this much of the
#: booked queue (seconds; see the module docstring): the queue stays short enough for a
#: tenant with few callers to keep its share booked.
PENDING_SHARE_S = 6.0
#: Ticket holders refused for their tenant's share of the queue come back in the order of
#: their places, the places due up to this many steps apart (older ones come back first):
#: returning together, the order among them would be the order of their writes.
TICKET_ORDER_STEPS = 4
#: The pending share field of a tenant's entry.
P = "p"

ADMIT, TICKET, REFUSE = "admit", "ticket", "refuse"


def tenant_key(limits: Limits, tenant: str | None) -> str | None:
    """The key a call is shared under: None for a bucket without tenants, "default" for a call
    without a tenant; raises ValueError naming an unknown tenant."""
    if not limits.tenants:
        if tenant is not None and not isinstance(tenant, str):
            raise ValueError(f"tenant must be a string, got {type(tenant).__name__}")
        return None
    if tenant is None:
        return DEFAULT_TENANT
    if tenant not in limits.tenants:
        shown = ", ".join(sorted(t for t in limits.tenants if t != DEFAULT_TENANT))
        raise ValueError(f"unknown tenant {tenant!r}: this bucket shares its capacity among "
                         f"{shown or 'no named tenants'} (and calls without a tenant)")
    return tenant


def check_priority(priority: str) -> str:
    if priority not in PRIORITIES:
        raise ValueError(f"priority must be 'interactive' or 'background', got {priority!r}")
    return priority


def weight_of(limits: Limits, key: str) -> float:
    share = limits.tenants.get(key)
    return share.weight if share is not None else TenantShare().weight


def active_weight(limits: Limits, entries: Mapping[str, Mapping[str, float]], key: str,
                  now: float) -> float:
    """W / w for `key`: the weights of the tenants with a pending booking (this one included)
    over its own weight. The reserve's is 1 / background_reserve: it holds that fraction of
    the queue whoever else is active."""
    f = limits.background_reserve
    if key == RESERVE:
        return 1.0 / f
    own = weight_of(limits, key)
    total = own + sum(weight_of(limits, name) for name, entry in entries.items()
                      if name not in (key, RESERVE) and entry.get(BK, -math.inf) > now)
    if entries.get(RESERVE, {}).get(BK, -math.inf) > now:
        total /= 1 - f
    return total / own


@dataclass
class Decision:
    """What a tenant's acquire does: admit (with the `form` its `v` takes), issue a ticket, or
    refuse without a write (`reason`, `wait` seconds)."""

    outcome: str
    form: str = ""
    step: float = 0.0  # seconds of virtual time charged
    reason: str | None = None
    wait: float = 0.0
    caps: dict[str, float] = field(default_factory=dict)  # cap costs, seconds per dimension
    window: float = 0.0  # seconds beyond the start a virtual place may be and still book
    credit: float = 0.0  # seconds the tenant's virtual time may lag its start and be kept
    pend: float = 0.0  # seconds the pending share `p` moves on (0: `p` is not kept)
    pend_hi: float | None = None  # the most `p` may be before the booking (epoch s; None: any)
    keep: bool = False  # an admission on idle capacity leaves `v` where it is


def cap_shape(limits: Limits, key: str | None) -> gcra.Shape | None:
    share = limits.tenants.get(key) if key is not None else None
    caps = share.caps() if share is not None else {}
    return gcra.Shape(caps, limits.burst_tolerance_s) if caps else None


def cap_view(entry: Mapping[str, float]) -> dict[str, float]:
    """A tenant entry as a `gcra` view: {dimension: cap tat, "booked_until": bk}."""
    view = {dim: entry[name] for dim, name in CAP_FIELDS.items() if name in entry}
    if BK in entry:
        view[gcra.BOOKED_UNTIL] = entry[BK]
    return view


def recent_weight(limits: Limits, entries: Mapping[str, Mapping[str, float]], key: str,
                  now: float) -> float:
    """W / w for `key` over the named tenants with recent demand (a pending mark within
    `ACTIVE_STEP_S` of now, this one included); 1.0 when no other has any: then `key` shares
    its pending queue with nobody. Counting recent demand, not only pending bookings, keeps a
    tenant whose callers are all between bookings in `W`."""
    own = weight_of(limits, key)
    others = sum(weight_of(limits, name) for name, entry in entries.items()
                 if name not in (key, RESERVE) and isinstance(entry, Mapping)
                 and entry.get(BK, -math.inf) > now - ACTIVE_STEP_S)
    return (own + others) / own


def pending_bound(limits: Limits, entries: Mapping[str, Mapping[str, float]], key: str,
                  costs: Mapping[str, float], s: float, now: float
                  ) -> tuple[float, float | None, float]:
    """The pending share a booking of `key` at start `s` charges: (seconds `p` moves on, the
    most `p` may be before it (None: no bound), seconds until `p` is within that bound). No
    charge for the reserve or a tenant without others' recent demand; no bound while the
    queue ahead of `s` is shorter than one request plus `FAIR_TOLERANCE_S`."""
    ratio = recent_weight(limits, entries, key, now) if key != RESERVE else 1.0
    if ratio <= 1.0:
        return 0.0, None, 0.0
    cost = max(costs.values(), default=0.0)
    step = cost * ratio
    if s - now <= cost + FAIR_TOLERANCE_S:
        return step, None, 0.0
    hi = now + max(0.0, PENDING_SHARE_S - step)
    return step, hi, max(0.0, entries.get(key, {}).get(P, -math.inf) - hi)


def decide(limits: Limits, key: str, cap_key: str | None, costs: Mapping[str, float],
           reserved: Mapping[str, float], seen: Mapping, s: float, now: float,
           horizon: float, queued: bool, ticket: float | None) -> Decision:
    """The decision for `key` booking `costs` (seconds per dimension; `reserved` in tokens or
    requests) at start `s`, with `horizon` seconds of queue allowed for its class; `cap_key`
    is the tenant whose caps apply (its entry must exist when it is not `key`); `queued`: the
    bucket has no capacity now (the start is a booking)."""
    entries = seen.get(TENANTS, {})
    entry = entries.get(key, {})
    shape = cap_shape(limits, cap_key)
    caps: dict[str, float] = {}
    if shape is not None:
        caps = {dim: shape.seconds(dim, reserved[dim]) for dim in shape.capacities
                if reserved.get(dim)}
        earliest = shape.earliest_start(caps, cap_view(entries.get(cap_key, {})), -math.inf)
        if earliest > s:  # refuse: booking past the queue end would waste capacity
            return Decision(REFUSE, reason=TENANT_CAP, wait=max(0.0, earliest - now))
    v = entry.get(V)
    ratio = active_weight(limits, entries, key, now)
    step = max(costs.values(), default=0.0) * ratio
    # a booking's virtual place must be within one step (and a tolerance, at most how far
    # ahead its class books) of the start it gets: so tickets are served in their order, and
    # later arrivals queue behind them; background booking by itself then leaves its tenant's
    # virtual time within reach of the tenant's interactive work
    window = step + min(horizon, FAIR_TOLERANCE_S)
    # more than its share of the booked queue (queued only: capacity now is anyone's)
    pend, pend_hi, pend_wait = pending_bound(limits, entries, key, costs, s, now) \
        if queued else (0.0, None, 0.0)
    if ticket is not None and v is not None and now - TICKET_MAX_AGE_S < ticket <= v + 1e-6:
        if not queued:
            return Decision(ADMIT, "ticket", caps=caps, window=window)
        if ticket <= s + window + TICKET_TOLERANCE_S:
            if pend_wait > 0:  # its place is due, its tenant's share of the queue is not:
                # back in the order of the places (the tenant books one a step)
                return Decision(REFUSE, reason=FAIR_SHARE, wait=max(0.01, pend_wait + max(
                    0.0, ticket - s - window + TICKET_ORDER_STEPS * step)))
            return Decision(ADMIT, "ticket", caps=caps, window=window, pend=pend,
                            pend_hi=pend_hi)
        return Decision(REFUSE, reason=FAIR_SHARE,
                        wait=max(0.01, ticket - window - TICKET_TOLERANCE_S - s, pend_wait))
    # sharing with others, a tenant keeps up to one step of lag: a caller of a tenant with few
    # callers often comes back just after its turn, and restarting its virtual time at the
    # start would hand that turn to the tenant with the most callers, every time
    credit = step if key != RESERVE and any(
        other.get(BK, -math.inf) > now for name, other in entries.items()
        if name not in (key, RESERVE)) else 0.0
    if not queued and v is not None and v > s:
        # capacity now: for anyone, uncharged. Alone, the tenant's past no longer counts (`v`
        # restarts); while another tenant has recent demand, `v` stays: it holds the places
        # of the tenant's ticket holders, and a restart below them would void them, then
        # revive them once `v` grew past them again (each a free booking, in no order)
        return Decision(ADMIT, "open", step, caps=caps, window=window,
                        keep=key != RESERVE and recent_weight(limits, entries, key, now) > 1)
    if v is None or v <= s or v + step <= s + window:
        if pend_wait > 0:  # its turn, but it holds its share of the queue: a place for later
            return Decision(TICKET, "ticket_share", step, reason=FAIR_SHARE, wait=pend_wait,
                            window=window, credit=credit)
        return Decision(ADMIT, "idle" if v is None or v <= s else "busy", step, caps=caps,
                        window=window, credit=credit if v is None or v <= s else 0.0,
                        pend=pend, pend_hi=pend_hi)
    due = v + step - window - s  # seconds until a ticket issued now would be admitted
    if key == RESERVE and due >= s - now - BACKGROUND_HORIZON_S:
        # its caller books directly before then (the queue ahead of `s` is shorter than the
        # wait for the ticket): a ticket would cost a write and never be used
        return Decision(REFUSE, reason=FAIR_SHARE, wait=max(0.01, due))
    return Decision(TICKET, "ticket_issue", step, reason=FAIR_SHARE, wait=max(0.01, due),
                    window=window)


def holds_ticket(seen: Mapping, key: str, ticket: float | None, now: float) -> bool:
    """True when `ticket` is a live place in `key`'s queue (issued, not void)."""
    v = seen.get(TENANTS, {}).get(key, {}).get(V)
    return (ticket is not None and v is not None
            and now - TICKET_MAX_AGE_S < ticket <= v + 1e-6)


def lane(limits: Limits, shape: gcra.Shape, priority: str, cap_key: str | None,
         costs: Mapping[str, float], view: Mapping, now: float, max_wait_s: float,
         ticket: float | None) -> tuple[str | None, float, float, float | None]:
    """Where an acquire of `priority` books, from the item `view`: (key whose virtual time is
    charged, the wait allowed (seconds), the class horizon (seconds), the ticket that holds a
    place there). Background books directly when the queue is short, else through the
    reserve, where its tickets hold places."""
    if priority == INTERACTIVE:
        return cap_key, max_wait_s, max_wait_s, ticket
    short = min(max_wait_s, BACKGROUND_HORIZON_S)
    direct_wait, _ = shape.refusal(costs, view, now)
    capped_elsewhere = (cap_shape(limits, cap_key) is not None
                        and cap_key not in view.get(TENANTS, {}))
    if direct_wait <= short or max_wait_s <= short or capped_elsewhere:
        return cap_key, short, short, None
    return RESERVE, max_wait_s, max_wait_s, ticket


def queue_refusal_wait(view: Mapping, wait: float, allowed: float, key: str | None,
                       reason: str | None, held: float | None, now: float,
                       max_wait_s: float) -> float | None:
    """The retry_after (seconds) of a refusal for a queue longer than the wait allowed, or
    None when a tenant without a ticket should take one (its place in the queue). Polling
    (`max_wait_s=0`) takes no ticket: a poller is admitted only when there is capacity now,
    and then any poller is, so a place in the queue would buy it nothing and cost a write per
    refusal."""
    if key is None or reason != QUOTA or max_wait_s <= 0:
        return wait
    if holds_ticket(view, key, held, now):
        return max(0.01, wait - allowed)  # back when the queue fits the wait
    return None


def background_retry(shape: gcra.Shape, costs: Mapping[str, float], view: Mapping,
                     now: float, wait: float) -> float:
    """The retry_after (seconds) of a refusal of background work allowed to wait beyond its
    own horizon: back when the queue is short enough to book directly, if that comes before
    `wait`."""
    direct_wait, _ = shape.refusal(costs, view, now)
    if direct_wait > BACKGROUND_HORIZON_S:
        wait = min(wait, direct_wait - BACKGROUND_HORIZON_S)
    return wait


def queue_ticket(limits: Limits, key: str, costs: Mapping[str, float], seen: Mapping,
                 s: float, now: float, wait: float) -> Decision:
    """A place for a caller whose wait the whole queue exceeds: its tenant becomes active (so
    others' shares shrink to make room) and it keeps its place; no capacity is booked.
    `s`: where the queue ends (epoch s); `wait`: when to try again (seconds)."""
    step = max(costs.values(), default=0.0) * active_weight(
        limits, seen.get(TENANTS, {}), key, now)
    return Decision(TICKET, "ticket_at", step, reason=FAIR_SHARE, wait=wait)


def _mark(at: float) -> float:
    return math.ceil(at / ACTIVE_STEP_S) * ACTIVE_STEP_S


def terms(update: gcra.Update, key: str, cap_key: str | None, decision: Decision,
          seen: Mapping, s: float, now: float, horizon: float, margin_s: float,
          limits: Limits, ticket: float | None) -> None:
    """Add the acquiring tenant's own conditions and sets to `update` (and nothing of other
    tenants): `key`'s virtual time and pending mark, `cap_key`'s caps."""
    entries = seen.get(TENANTS)
    entry = (entries or {}).get(key)
    cell = gcra.cell
    issuing = decision.outcome == TICKET
    pending = (s + horizon if decision.form == "ticket_at" else s if not issuing
               else ticket_mark(decision, entry or {}, s, decision.window))
    pending = pending if pending > now else None
    shape = cap_shape(limits, cap_key)
    if decision.caps and not issuing and cap_key != key:
        gcra.charge_forms(update, shape, decision.caps, cap_view(entries[cap_key]), s,
                          margin_s, lambda dim: update.path(TENANTS, cap_key, CAP_FIELDS[dim]))
    if entry is None:
        # a tenant new to the item: write its whole entry (the idle forms)
        new: dict[str, str] = {V: cell(s + decision.step, "up")}
        if decision.pend:
            new[P] = cell(now + decision.pend, "up")
        if pending is not None:
            new[BK] = cell(_mark(pending), "up")
        for dim, cost in (decision.caps.items() if cap_key == key else ()):
            new[CAP_FIELDS[dim]] = cell(gcra.idle_tat(shape, cost, s, margin_s), "up")
        if entries is None:
            top = update.name(TENANTS)
            update.conditions.append(f"attribute_not_exists({top})")
            update.sets.append(f"{top} = {update.map_value({key: new})}")
        else:
            path = update.path(TENANTS, key)
            update.conditions.append(f"attribute_not_exists({path})")
            update.sets.append(f"{path} = {update.map_value(new)}")
        return
    v = update.path(TENANTS, key, V)
    form = decision.form
    if form in ("idle", "busy"):  # admitted: at most `window` of virtual time beyond s
        advance(update, v, entry.get(V), s, decision.step,
                max(s, s + decision.window - decision.step), decision.credit)
    elif form == "open" and decision.keep:  # (an expression must use every name it lists)
        update.conditions.append(f"attribute_exists({v})")
    elif form == "open":
        update.sets.append(f"{v} = {update.value(cell(s + decision.step, 'up'))}")
    elif form == "ticket_issue":
        update.conditions.append(
            f"{v} > {update.value(cell(max(s, s + decision.window - decision.step), 'down'))}")
        update.sets.append(f"{v} = {v} + {update.value(cell(decision.step, 'up'))}")
    elif form == "ticket":
        update.conditions.append(f"{v} >= {update.value(cell(ticket, 'down'))}")
    elif form == "ticket_at":
        advance(update, v, entry.get(V), s, decision.step, None)
    elif form == "ticket_share":  # `p` only grows: the bound that refused still holds
        advance(update, v, entry.get(V), s, decision.step, None, decision.credit)
    if decision.pend and not issuing:
        # the pending share moves as virtual time does, restarted at now when it is behind
        advance(update, update.path(TENANTS, key, P), entry.get(P), now, decision.pend,
                decision.pend_hi)
    if pending is not None:
        bk = update.path(TENANTS, key, BK)
        mark = update.value(cell(_mark(pending), "up"))
        if entry.get(BK, -math.inf) < _mark(pending):
            update.conditions.append(f"(attribute_not_exists({bk}) OR {bk} <= {mark})")
            update.sets.append(f"{bk} = {mark}")
        else:
            update.conditions.append(f"{bk} >= {mark}")
    if decision.caps and not issuing and cap_key == key:
        gcra.charge_forms(update, shape, decision.caps, cap_view(entry), s, margin_s,
                          lambda dim: update.path(TENANTS, key, CAP_FIELDS[dim]))


def advance(update: gcra.Update, v: str, seen_v: float | None, s: float, step: float,
            hi: float | None, credit: float = 0.0) -> None:
    """Move the virtual time at document path `v` on by `step` seconds for a booking or place
    starting at `s`, with at most `hi` (None: any) before it, in the form `seen_v` predicts:
    linear (`v + step`) when `v` is at `s - credit` or beyond, else restarted at
    `s - credit + step` (a tenant carries at most `credit` seconds from idle time; `credit`
    is one step while other tenants are active, else 0). Both conditions are exact: a
    concurrent booking of the tenant refuses the write rather than go uncharged (each race
    won that way would hand the tenant with the most callers one more step)."""
    cell = gcra.cell
    floor = s - credit
    if seen_v is None or seen_v < floor:
        update.conditions.append(f"(attribute_not_exists({v}) OR {v} <= "
                                 f"{update.value(cell(floor, 'down'))})")
        update.sets.append(f"{v} = {update.value(cell(floor + step, 'up'))}")
        return
    lo = update.value(cell(floor, "up"))
    update.conditions.append(f"{v} >= {lo}" if hi is None else
                             f"{v} BETWEEN {lo} AND {update.value(cell(hi, 'down'))}")
    update.sets.append(f"{v} = {v} + {update.value(cell(step, 'up'))}")


def ticket_mark(decision: Decision, entry: Mapping[str, float], s: float,
                horizon: float) -> float:
    """When a ticket being issued will book: its tenant is active until then (epoch s)."""
    return max(s, entry.get(V, s) + decision.step - horizon)
