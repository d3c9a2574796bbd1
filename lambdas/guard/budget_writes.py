"""The budget ledger's writes, built without I/O: each is one conditional UpdateItem on the
month's item (`BudgetWrite.request` gives its parameters), so a call that counts against
several scopes is still one write.

    reserve_write   hold a call's maximum in every scope, under each limit
    settle_write    replace a reservation with the call's actual cost
    charge_write    add spend made without a reservation (no limit condition)

Amounts are micro-USD and tokens; times are epoch seconds."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from . import gcra
from .budget_view import (COUNTERS, DAY_COUNTERS, PARTITION_KEY, RESERVATION_PREFIX, Open,
                          View, window_amount)
from .budget_windows import day_of

if TYPE_CHECKING:
    from .budget_limits import Budget

#: Expired reservations folded into one acquire's write at most.
MAX_FOLDS = 8


class BudgetWrite(gcra.Update):
    """An UpdateItem under construction: SET additions summed per attribute, assignments,
    REMOVEs and ANDed conditions, with placeholders for every name (`n`) and value (`v`, any
    type the boto3 serializer takes)."""

    def __init__(self) -> None:
        super().__init__()
        self.adds: dict[str, int] = {}        # attribute -> delta, starting from 0 if missing
        self.assign: dict[str, Any] = {}      # attribute -> value
        self.removes: list[str] = []

    def n(self, attribute: str) -> str:
        return self.name(attribute)

    def v(self, value: Any) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = value
        return placeholder

    def add(self, attribute: str, delta: int) -> None:
        self.adds[attribute] = self.adds.get(attribute, 0) + delta

    def request(self, table: str, key: str) -> dict[str, Any]:
        from boto3.dynamodb.types import TypeSerializer

        sets = [f"{self.n(a)} = {self.v(value)}" for a, value in self.assign.items()]
        zero = None
        for attribute, delta in self.adds.items():
            if attribute in self.assign:
                continue
            zero = zero or self.v(0)
            sets.append(f"{self.n(attribute)} = if_not_exists({self.n(attribute)}, {zero}) + "
                        f"{self.v(delta)}")
        expression = "SET " + ", ".join(sets)
        if self.removes:
            expression += " REMOVE " + ", ".join(self.n(a) for a in self.removes)
        serialize = TypeSerializer().serialize
        request: dict[str, Any] = {
            "TableName": table, "Key": {PARTITION_KEY: {"S": key}},
            "UpdateExpression": expression, "ExpressionAttributeNames": self.names,
            "ExpressionAttributeValues": {k: serialize(v) for k, v in self.values.items()},
            "ReturnValues": "ALL_NEW", "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
        if self.conditions:
            request["ConditionExpression"] = " AND ".join(f"({c})" for c in self.conditions)
        return request


def _attr(scope: str, counter: str) -> str:
    return f"{scope}|{counter}"


def _day_condition(write: BudgetWrite, scope: str, day: str) -> None:
    write.conditions.append(f"{write.n(_attr(scope, 'day'))} = {write.v(day)}")


def _fold(write: BudgetWrite, view: View, reservation: Open, usd: int, tokens: int) -> None:
    """Close `reservation`: drop it from `open` everywhere and move used by (actual - reserved)
    with actual = `usd`, `tokens`; its day counters only where the scope is still on its day."""
    attribute = RESERVATION_PREFIX + reservation.rid
    write.removes.append(attribute)
    write.conditions.append(f"attribute_exists({write.n(attribute)})")
    for scope in reservation.scopes:
        write.add(_attr(scope, "m_used"), usd - reservation.usd)
        write.add(_attr(scope, "m_open"), -reservation.usd)
        if view.day(scope) == reservation.day:
            _day_condition(write, scope, reservation.day)
            write.add(_attr(scope, "d_used"), usd - reservation.usd)
            write.add(_attr(scope, "d_open"), -reservation.usd)
            write.add(_attr(scope, "t_used"), tokens - reservation.tokens)
            write.add(_attr(scope, "t_open"), -reservation.tokens)
        else:  # the scope moved on to a later day: that day's counters are gone
            write.conditions.append(f"{write.n(_attr(scope, 'day'))} <> "
                                    f"{write.v(reservation.day)}")


def reserve_write(view: View, budgets: Mapping[str, Budget], rid: str, usd: int, tokens: int,
                  now: float, lease_s: float) -> BudgetWrite:
    """The one write that reserves `usd` (micro-USD) and `tokens` in every scope of `budgets`
    under each limit, folding in the expired reservations `view` shows (at most MAX_FOLDS)."""
    write = BudgetWrite()
    today = day_of(now)
    scopes = tuple(budgets)
    new_day = {scope for scope in scopes if view.day(scope) != today}
    for reservation in sorted(view.open.values(), key=lambda r: r.until)[:MAX_FOLDS]:
        if reservation.until >= now:
            break
        touches_new_day = any(s in new_day and reservation.day == today
                              for s in reservation.scopes)
        if not touches_new_day:
            _fold(write, view, reservation, reservation.usd, reservation.tokens)
    for scope, budget in budgets.items():
        limits = budget.limits_micros()
        day = write.n(_attr(scope, "day"))
        if scope in new_day:
            write.assign[_attr(scope, "day")] = today
            for counter in DAY_COUNTERS:
                write.assign[_attr(scope, counter)] = tokens if counter[0] == "t" else usd
            write.conditions.append(f"attribute_not_exists({day}) OR {day} < {write.v(today)}")
        else:
            _day_condition(write, scope, today)
            for counter in DAY_COUNTERS:
                write.add(_attr(scope, counter), tokens if counter[0] == "t" else usd)
        write.add(_attr(scope, "m_used"), usd)
        write.add(_attr(scope, "m_open"), usd)
        for window, limit in limits.items():
            used = _attr(scope, COUNTERS[window][0])
            room = limit - window_amount(window, usd, tokens)
            if scope in new_day and window != "usd_per_month":
                continue  # the fresh day's counter is the amount itself: fits (checked first)
            name = write.n(used)
            write.conditions.append(f"attribute_not_exists({name}) OR {name} <= "
                                    f"{write.v(room)}")
    write.assign[RESERVATION_PREFIX + rid] = {
        "d": today, "u": usd, "t": tokens, "at": _decimal(now), "until": _decimal(now + lease_s),
        "s": list(scopes)}
    return write


def charge_write(view: View, scopes: Iterable[str], usd: int, tokens: int,
                 now: float) -> BudgetWrite:
    """The one write that adds spend already made (`usd` micro-USD, `tokens`) to the UTC day
    and month of `now` in every scope: no limit condition (the money is spent), only the day
    each scope is on, so a concurrent day change makes it retry on the fresh view."""
    write = BudgetWrite()
    today = day_of(now)
    for scope in scopes:
        day = write.n(_attr(scope, "day"))
        if view.day(scope) == today:
            _day_condition(write, scope, today)
            write.add(_attr(scope, "d_used"), usd)
            write.add(_attr(scope, "t_used"), tokens)
        else:  # the scope's first spend of the day: its day counters start afresh
            write.assign[_attr(scope, "day")] = today
            for counter in DAY_COUNTERS:
                write.assign[_attr(scope, counter)] = (
                    0 if counter.endswith("open") else tokens if counter[0] == "t" else usd)
            write.conditions.append(f"attribute_not_exists({day}) OR {day} < {write.v(today)}")
        write.add(_attr(scope, "m_used"), usd)
    return write


def settle_write(view: View, reservation: Open, usd: int, tokens: int) -> BudgetWrite:
    """The one write that replaces `reservation` with the actual cost (`usd` micro-USD,
    `tokens`); refused when the reservation is gone (expired and folded in) or a scope's day
    moved on since `view`."""
    write = BudgetWrite()
    _fold(write, view, reservation, usd, tokens)
    return write


def _decimal(seconds: float) -> Decimal:
    return Decimal(str(round(seconds, 3)))
