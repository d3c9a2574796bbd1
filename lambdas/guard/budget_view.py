"""The budget month item and what it allows, without I/O: the item's layout (one item per UTC
month, `pk = "budget#YYYY-MM"`, attributes `<scope>|<counter>` and `r|<id>` per open
reservation), `View` (the item decoded), and `assess` / `used_percent` (whether a reservation
fits every scope's limits, and how full each window is)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from .budget_windows import day_of, next_day_start, next_month_start

if TYPE_CHECKING:
    from .budget_limits import Budget

PARTITION_KEY = "pk"
ITEM_PREFIX = "budget#"
RESERVATION_PREFIX = "r|"
#: Refusal reasons: the window's spend alone leaves no room; open reservations are in the way.
BUDGET, BUDGET_RESERVED = "budget", "budget_reserved"
#: Counters per window: (used, open) attribute suffixes.
COUNTERS = {"usd_per_day": ("d_used", "d_open"), "usd_per_month": ("m_used", "m_open"),
            "tokens_per_day": ("t_used", "t_open")}
#: The counters that start afresh each UTC day.
DAY_COUNTERS = ("d_used", "d_open", "t_used", "t_open")


def item_key(month: str) -> str:
    """The partition key of a UTC month's item (`month` "YYYY-MM")."""
    return ITEM_PREFIX + month


@dataclass(frozen=True)
class Open:
    """One open reservation as the store holds it (micro-USD, tokens, epoch seconds)."""

    rid: str
    day: str
    usd: int
    tokens: int
    at: float
    until: float
    scopes: tuple[str, ...]


class View:
    """A month item decoded: counters per scope and the open reservations."""

    def __init__(self, item: Mapping[str, Any] | None = None) -> None:
        item = item or {}
        self.counters: dict[str, dict[str, Any]] = {}
        self.open: dict[str, Open] = {}
        for attribute, value in item.items():
            if attribute == PARTITION_KEY:
                continue
            if attribute.startswith(RESERVATION_PREFIX):
                rid = attribute[len(RESERVATION_PREFIX):]
                self.open[rid] = Open(rid, value["d"], int(value["u"]), int(value["t"]),
                                      float(value["at"]), float(value["until"]),
                                      tuple(value.get("s", ())))
            elif "|" in attribute:
                scope, counter = attribute.rsplit("|", 1)
                self.counters.setdefault(scope, {})[counter] = (
                    value if counter == "day" else int(value))

    def day(self, scope: str) -> str | None:
        return self.counters.get(scope, {}).get("day")

    def used_open(self, scope: str, window: str, today: str) -> tuple[int, int]:
        """(spent + open, open) of `scope` in `window` as of `today` (day windows of another
        day count as empty)."""
        counters = self.counters.get(scope, {})
        used, opened = COUNTERS[window]
        if window != "usd_per_month" and counters.get("day") != today:
            return 0, 0
        return counters.get(used, 0), counters.get(opened, 0)


def window_amount(window: str, usd: int, tokens: int) -> int:
    """What a call of `usd` (micro-USD) and `tokens` counts in `window` (micro-USD or tokens)."""
    return tokens if window == "tokens_per_day" else usd


def assess(view: View, budgets: Mapping[str, Budget], usd: int, tokens: int,
           now: float) -> tuple[str, float, str, str] | None:
    """Whether a reservation of `usd` (micro-USD) and `tokens` fits every scope's limits in
    `view` at `now`: None when it fits, else (reason, retry_after seconds, scope, window).

    "budget" (the window's spend alone leaves no room; retry at the next window's start) wins
    over "budget_reserved" (open reservations are in the way; retry when the oldest one's lease
    ends)."""
    today = day_of(now)
    spent_out: list[tuple[float, str, str]] = []
    reserved_out: list[tuple[float, str, str]] = []
    for scope, budget in budgets.items():
        for window, limit in budget.limits_micros().items():
            amount = window_amount(window, usd, tokens)
            used, _ = view.used_open(scope, window, today)
            if used + amount <= limit:
                continue
            # open reservations past their lease are spent at their maximum: they free nothing
            live = [r for r in view.open.values() if scope in r.scopes and r.until >= now
                    and (window == "usd_per_month" or r.day == today)]
            if used - sum(window_amount(window, r.usd, r.tokens) for r in live) + amount > limit:
                start = next_month_start(now) if window == "usd_per_month" else \
                    next_day_start(now)
                spent_out.append((start - now, scope, window))
            else:
                oldest = min(live, key=lambda r: r.at)
                reserved_out.append((max(0.05, oldest.until - now), scope, window))
    if spent_out:
        wait, scope, window = max(spent_out)
        return BUDGET, wait, scope, window
    if reserved_out:
        wait, scope, window = min(reserved_out)
        return BUDGET_RESERVED, wait, scope, window
    return None


def used_percent(view: View, budgets: Mapping[str, Budget],
                 now: float) -> dict[str, dict[str, float]]:
    """Per scope and window: spent plus open as a percentage of the limit (a limit of 0
    reads 100)."""
    today = day_of(now)
    out: dict[str, dict[str, float]] = {}
    for scope, budget in budgets.items():
        for window, limit in budget.limits_micros().items():
            used, _ = view.used_open(scope, window, today)
            out.setdefault(scope, {})[window] = 100.0 * used / limit if limit else 100.0
    return out

