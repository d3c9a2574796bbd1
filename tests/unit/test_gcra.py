"""The bucket's GCRA maths and update forms, evaluated without a store.

`Item` applies an UpdateItem the way DynamoDB does (condition, then SET), so a sequence of
writes can be replayed exactly with an injected clock."""

from __future__ import annotations

import re

import pytest

from guard import gcra
from guard.limits import Limits

T0 = 1_800_000_000.0


class Item:
    """One DynamoDB item under conditional updates (the subset of the grammar gcra emits)."""

    def __init__(self) -> None:
        self.attrs: dict[str, float] = {}

    def apply(self, update: gcra.Update) -> bool:
        names, values = update.names, {k: float(v["N"]) for k, v in update.values.items()}

        def val(token: str) -> float | None:
            token = token.strip()
            return values[token] if token.startswith(":") else self.attrs.get(names[token])

        for cond in update.conditions:
            if not self._holds(cond, val, names):
                return False
        new = dict(self.attrs)
        for assignment in update.sets:
            target, expr = (part.strip() for part in assignment.split("=", 1))
            terms = re.split(r"\s*([+-])\s*", expr)
            total, sign = 0.0, 1
            for term in terms:
                if term in "+-":
                    sign = 1 if term == "+" else -1
                    continue
                total += sign * val(term)
            new[names[target]] = total
        self.attrs = new
        return True

    @staticmethod
    def _holds(cond, val, names) -> bool:
        cond = cond.strip()
        if cond.startswith("(") and " OR " in cond:
            inner = cond[1:-1]
            return any(Item._holds(part, val, names) for part in inner.split(" OR "))
        m = re.fullmatch(r"attribute_not_exists\((#a\d+)\)", cond)
        if m:
            return val(m.group(1)) is None
        m = re.fullmatch(r"(#a\d+) BETWEEN (:v\d+) AND (:v\d+)", cond)
        if m:
            x = val(m.group(1))
            return x is not None and val(m.group(2)) <= x <= val(m.group(3))
        m = re.fullmatch(r"(#a\d+) (<=|>=|<|>|=) (:v\d+)", cond)
        assert m, cond
        x, y = val(m.group(1)), val(m.group(3))
        if x is None:
            return False
        return {"<=": x <= y, ">=": x >= y, "<": x < y, ">": x > y, "=": x == y}[m.group(2)]

    def raw(self) -> dict[str, str]:
        return {k: f"{v:.6f}" for k, v in self.attrs.items()}

    def seen(self) -> dict[str, float]:
        return gcra.decode({k: {"N": v} for k, v in self.raw().items()})


def shape(**limits) -> gcra.Shape:
    lim = Limits(**limits)
    return gcra.Shape(lim.capacities(), lim.burst_tolerance_s)


def book(item: Item, sh: gcra.Shape, tokens: dict[str, float], start: float, now: float,
         margin: float = 1.0) -> dict[str, str] | None:
    costs = {d: sh.seconds(d, n) for d, n in tokens.items()}
    ok = item.apply(gcra.acquire_update(sh, costs, item.seen(), start, now, margin))
    return {d: item.raw()["tat_" + d] for d in costs} if ok else None


def test_earliest_start_is_the_slowest_dimension_and_never_inside_a_cool_down():
    sh = shape(rpm=60, itpm=60_000)
    costs = {"requests": 1.0, "input_tokens": sh.seconds("input_tokens", 30_000)}
    item = {"requests": T0 + 10, "input_tokens": T0 + 70, gcra.COOL_UNTIL: T0 + 5}
    # input: tat + 30 s - 60 s = T0 + 40; requests: T0 + 10 + 1 - 60 < now
    assert sh.earliest_start(costs, item, T0) == pytest.approx(T0 + 40)
    item[gcra.COOL_UNTIL] = T0 + 50
    assert sh.earliest_start(costs, item, T0) == pytest.approx(T0 + 50)
    assert sh.refusal(costs, item, T0) == (pytest.approx(50.0), "cool_down")


def test_a_booking_is_charged_as_of_its_start_in_every_dimension():
    """The issue's example: RPM 60, ITPM 60k, requests booked 25 s ahead. Six 10k-token calls
    charged at their start leave the input dimension as full as the server sees it."""
    sh = shape(rpm=60, itpm=60_000)
    item = Item()
    item.attrs = {"tat_requests": T0 + 59 + 25}  # the next request slot is 25 s from now
    for i in range(6):
        start = T0 + 25 + i  # each at its own requests slot
        assert book(item, sh, {"requests": 1, "input_tokens": 10_000}, start, T0, margin=0)
    # at 30 s the bucket must agree with the server: 60k sent within 25-30 s, ~5k refilled
    assert sh.level("input_tokens", item.seen(), T0 + 30) == pytest.approx(5_000, abs=1)
    costs = {"requests": 1.0, "input_tokens": sh.seconds("input_tokens", 20_000)}
    assert sh.earliest_start(costs, item.seen(), T0 + 30) == pytest.approx(T0 + 45)


def test_a_start_in_a_cool_down_is_refused_by_the_condition():
    sh = shape(rpm=60)
    item = Item()
    item.attrs = {"cool_until": T0 + 10}
    assert book(item, sh, {"requests": 1}, T0 + 5, T0) is None
    assert book(item, sh, {"requests": 1}, T0 + 10, T0) is not None


def test_refunds_with_a_booking_pending_never_erase_it():
    """The issue's worked sequence: OTPM 60k, margin 1 s. Without the rule, 63k would be sent
    at 20 s against a 60k capacity."""
    sh = shape(rpm=None, otpm=60_000)
    item = Item()
    j = book(item, sh, {"output_tokens": 10_000}, T0, T0)          # j sends at 0: tat 11
    assert item.attrs["tat_output_tokens"] == pytest.approx(T0 + 11)
    assert book(item, sh, {"output_tokens": 4_000}, T0 + 20, T0)   # k books 20: tat 25
    assert item.attrs["tat_output_tokens"] == pytest.approx(T0 + 25)
    # j settles at 5 having used nothing: tat - 10 would give 15 and k's charge would be gone
    plan = gcra.settle_update(sh, {"output_tokens": -10.0}, item.seen(), T0 + 5, j)
    assert plan.forgone == {"output_tokens": 10.0} and plan.update.empty
    # m wants 56k at 20 and n 3k at 20: the bucket refuses the rest of what would overflow
    assert book(item, sh, {"output_tokens": 56_000}, T0 + 20, T0 + 5) is None
    assert sh.earliest_start({"output_tokens": 56.0}, item.seen(), T0 + 5) > T0 + 20
    sent_at_20 = 4_000
    for tokens in (56_000, 3_000):
        if book(item, sh, {"output_tokens": tokens}, T0 + 20, T0 + 5):
            sent_at_20 += tokens
    assert sent_at_20 <= 60_000


def test_a_full_bucket_refund_is_never_taken_while_bookings_are_pending():
    sh = shape(rpm=60)
    item = Item()
    j = book(item, sh, {"requests": 1}, T0, T0)
    book(item, sh, {"requests": 1}, T0 + 30, T0)   # another caller books 30 s ahead
    before = dict(item.attrs)
    plan = gcra.settle_update(sh, {"requests": -1.0}, item.seen(), T0 + 1, j)
    assert plan.forgone and plan.update.empty
    assert item.attrs == before


def test_a_refund_is_an_exact_undo_while_nothing_was_stacked_on_the_grant():
    sh = shape(rpm=None, otpm=60_000)
    item = Item()
    book(item, sh, {"output_tokens": 6_000}, T0 + 20, T0)          # someone else's booking
    mine = book(item, sh, {"output_tokens": 10_000}, T0 + 20, T0)  # mine, stacked on it
    tat_before = item.attrs["tat_output_tokens"]
    plan = gcra.settle_update(sh, {"output_tokens": -4.0}, item.seen(), T0 + 1, mine)
    assert plan.credited == {"output_tokens": 4.0} and not plan.forgone
    assert item.apply(plan.update)
    assert item.attrs["tat_output_tokens"] == pytest.approx(tat_before - 4.0, abs=1e-5)
    # stacked on: the undo's condition fails rather than lower someone else's booking
    item.attrs["tat_output_tokens"] += 1.0
    assert not item.apply(plan.update)


def test_with_no_booking_pending_refunds_are_credited_as_before():
    sh = shape(rpm=None, otpm=60_000)
    item = Item()
    j = book(item, sh, {"output_tokens": 10_000}, T0, T0)
    book(item, sh, {"output_tokens": 10_000}, T0, T0)   # stacked on j: no exact undo
    plan = gcra.settle_update(sh, {"output_tokens": -5.0}, item.seen(), T0 + 2, j)
    assert plan.credited == {"output_tokens": 5.0}
    assert item.apply(plan.update)
    assert item.attrs["tat_output_tokens"] == pytest.approx(T0 + 21 - 5, abs=1e-5)


def test_booked_until_only_grows():
    sh = shape(rpm=60)
    item = Item()
    book(item, sh, {"requests": 1}, T0 + 31, T0)
    assert item.attrs["booked_until"] == pytest.approx(T0 + 35)   # whole 5 s steps, rounded up
    book(item, sh, {"requests": 1}, T0 + 10, T0)   # an earlier start keeps the later mark
    assert item.attrs["booked_until"] == pytest.approx(T0 + 35)
    book(item, sh, {"requests": 1}, T0 + 33, T0)   # same step: the same value, no race
    assert item.attrs["booked_until"] == pytest.approx(T0 + 35)


def test_burst_fraction_caps_what_a_full_bucket_hands_out_at_once():
    sh = shape(rpm=60, burst_fraction=0.25)   # 15 requests at once, then 1/s
    item = Item()
    granted = sum(book(item, sh, {"requests": 1}, T0, T0, margin=0) is not None
                  for _ in range(30))
    assert granted == 15
    assert sh.earliest_start({"requests": 1.0}, item.seen(), T0) == pytest.approx(T0 + 1)


def test_a_request_larger_than_the_burst_still_fits_alone():
    sh = shape(rpm=None, itpm=60_000, burst_fraction=0.1)   # burst 6k tokens
    item = Item()
    assert book(item, sh, {"input_tokens": 20_000}, T0, T0, margin=0)
    assert not book(item, sh, {"input_tokens": 1_000}, T0, T0, margin=0)


def test_quota_used_percent_is_as_of_the_start_and_stays_within_0_to_100():
    sh = shape(rpm=60)
    item = {"requests": T0 + 130}   # booked a minute ahead and more
    assert sh.used_percent(item, T0) == 100.0
    assert sh.used_percent(item, T0 + 100) == pytest.approx(50.0)


def test_every_name_and_value_placeholder_of_a_write_is_used():
    """DynamoDB rejects unused placeholders (ValidationException): forgone and skipped
    refunds must not leave any behind."""
    sh = shape(rpm=60, itpm=60_000, otpm=6_000)
    seen = {"requests": T0 + 30, "input_tokens": T0 - 5, "output_tokens": T0 + 40,
            "booked_until": T0 + 20}
    plan = gcra.settle_update(sh, {"input_tokens": -1.0, "output_tokens": -2.0,
                                   "requests": 0.5}, seen, T0, {})
    assert plan.forgone == {"output_tokens": 2.0}
    text = " ".join(plan.update.sets + plan.update.conditions)
    for placeholder in [*plan.update.names, *plan.update.values]:
        assert re.search(re.escape(placeholder) + r"\b", text), placeholder


# -- lowering to the server's remaining, with refunds in flight ------------------------------

class ServerModel:
    """The upstream's own bucket, frozen in time: input counted at the start; output reserved
    as max_tokens at the start and settled at the end ("reserve"), or counted as produced
    ("produced"), as the Claude emulator's `otpm_mode` does (tokens)."""

    def __init__(self, capacities: dict[str, float], mode: str) -> None:
        self.level = dict(capacities)
        self.mode = mode
        self.refusals = 0

    def start(self, actual_input: float, max_tokens: float) -> bool:
        output_now = max_tokens if self.mode == "reserve" else 0.0
        if self.level["input_tokens"] < actual_input or self.level["output_tokens"] < output_now:
            self.refusals += 1
            return False
        self.level["input_tokens"] -= actual_input
        self.level["output_tokens"] -= output_now
        return True

    def finish(self, max_tokens: float, output: float) -> None:
        self.level["output_tokens"] += (max_tokens - output) if self.mode == "reserve" \
            else -output


def _settle(item: Item, sh: gcra.Shape, written, granted_at, reserved, actual, now):
    deltas = {d: sh.seconds(d, actual[d] - reserved[d]) for d in reserved
              if actual[d] != reserved[d]}
    plan = gcra.settle_update(sh, deltas, item.seen(), now, written, granted_at,
                              {d: sh.seconds(d, n) for d, n in reserved.items()})
    assert plan.update.empty or item.apply(plan.update)
    return plan


def _lower(item: Item, sh: gcra.Shape, server: ServerModel, now: float) -> None:
    targets = {d: level for d, level in server.level.items()
               if sh.level(d, item.seen(), now) > level + 1}
    if targets:
        assert item.apply(gcra.lower_update(sh, targets, now, item.seen()))


@pytest.mark.parametrize("mode", ["reserve", "produced"])
def test_a_refund_in_flight_across_a_lowering_is_not_credited_twice(mode):
    """Another application drew half the quota: the guard lowers to the server's remaining
    while B is in flight; B's settle must not refund into the server's view (which already
    counts B's input), nor keep output the server counts as produced."""
    sh = shape(rpm=None, itpm=60_000, otpm=12_000)
    server = ServerModel({"input_tokens": 60_000, "output_tokens": 12_000}, mode)
    server.level = {"input_tokens": 30_000, "output_tokens": 6_000}   # the other application
    item = Item()
    reserved = {"input_tokens": 10_000, "output_tokens": 4_000}
    written = book(item, sh, reserved, T0, T0, margin=0)            # B: estimate 10k, max 4k
    assert server.start(2_000, 4_000)                              # B actually sends 2k
    _lower(item, sh, server, T0 + 0.01)                            # another call's headers
    server.finish(4_000, 1_000)                                    # B produced 1k
    plan = _settle(item, sh, written, T0, reserved,
                   {"input_tokens": 2_000, "output_tokens": 1_000}, T0 + 0.02)
    for dim, level in server.level.items():   # the guard never shows more than the server
        refill = sh.capacities[dim] / 60 * 0.02
        assert sh.level(dim, item.seen(), T0 + 0.02) <= level + refill, dim
    assert plan.forgone["input_tokens"] == pytest.approx(8.0)   # seconds: 8k at 1k/s


def test_a_grant_written_after_a_lowering_is_refunded_as_before():
    sh = shape(rpm=None, itpm=60_000, otpm=12_000)
    item = Item()
    server = ServerModel({"input_tokens": 20_000, "output_tokens": 12_000}, "reserve")
    _lower(item, sh, server, T0)
    reserved = {"input_tokens": 10_000, "output_tokens": 4_000}
    written = book(item, sh, reserved, T0 + 1, T0 + 1, margin=0)
    plan = _settle(item, sh, written, T0 + 1, reserved,
                   {"input_tokens": 2_000, "output_tokens": 1_000}, T0 + 1)
    assert not plan.forgone
    assert plan.credited == {"input_tokens": pytest.approx(8.0), "output_tokens":
                             pytest.approx(15.0)}


def test_a_refund_planned_before_a_lowering_lands_is_refused_by_its_condition():
    sh = shape(rpm=None, itpm=60_000)
    item = Item()
    reserved = {"input_tokens": 10_000}
    written = book(item, sh, reserved, T0, T0, margin=0)
    stale_view = item.seen()
    server = ServerModel({"input_tokens": 20_000}, "reserve")
    _lower(item, sh, server, T0 + 0.5)   # lands between the settle's view and its write
    plan = gcra.settle_update(sh, {"input_tokens": -5.0}, stale_view, T0 + 1, written, T0,
                              {"input_tokens": 10.0})
    assert plan.credited and not item.apply(plan.update)
    replanned = gcra.settle_update(sh, {"input_tokens": -5.0}, item.seen(), T0 + 1, written, T0,
                                   {"input_tokens": 10.0})
    assert replanned.forgone == {"input_tokens": 5.0} and replanned.update.empty


@pytest.mark.parametrize("seed", [7, 8])
@pytest.mark.parametrize("mode", ["reserve", "produced"])
def test_ledger_with_lowering_in_the_mix_never_admits_what_the_server_refuses(mode, seed):
    """Callers overestimate input 3x, another application draws on the same quota and is seen
    through the headers, and each answer's headers are observed a while after its settle
    (other callers settle and acquire in between), in a seeded random order: the server never
    refuses a call the guard admitted."""
    import random

    rng = random.Random(seed)
    sh = shape(rpm=None, itpm=60_000, otpm=12_000)
    item = Item()
    server = ServerModel({"input_tokens": 60_000, "output_tokens": 12_000}, mode)
    now, in_flight, headers, admitted = T0, [], [], 0
    for _ in range(1000):
        now += 0.05
        for dim, cap in (("input_tokens", 60_000), ("output_tokens", 12_000)):  # refill
            server.level[dim] = min(cap, server.level[dim] + cap / 60 * 0.05)
        roll = rng.random()
        if roll < 0.1:   # the other application, seen through the next headers
            server.level["input_tokens"] -= 1_000
            _lower(item, sh, server, now)
        elif roll < 0.6:
            actual_in = rng.randint(100, 600)
            reserved = {"input_tokens": actual_in * 3, "output_tokens": 200}
            costs = {d: sh.seconds(d, n) for d, n in reserved.items()}
            if sh.earliest_start(costs, item.seen(), now) > now:
                continue
            written = book(item, sh, reserved, now, now, margin=0)
            if written is None:
                continue
            admitted += 1
            if server.start(actual_in, 200):
                in_flight.append((written, now, reserved, actual_in, rng.randint(10, 200)))
        elif in_flight:
            written, at, reserved, actual_in, out = in_flight.pop(rng.randrange(len(in_flight)))
            server.finish(200, out)
            _settle(item, sh, written, at, reserved,
                    {"input_tokens": actual_in, "output_tokens": out}, now)
            headers.append(dict(server.level))   # this answer's remaining
            if rng.random() < 0.3:   # observed later (a stale remaining only lowers more)
                remaining = headers.pop(0)
                targets = {d: level for d, level in remaining.items()
                           if sh.level(d, item.seen(), now) > level + 1}
                if targets:
                    assert item.apply(gcra.lower_update(sh, targets, now, item.seen()))
    assert admitted > 100
    assert server.refusals == 0
