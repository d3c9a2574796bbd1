"""The budget ledger against the local AWS server: reserve, settle, windows, expiry, races."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest

from guard.budget import (DEPLOYMENT, Budget, BudgetError, BudgetLedger, View, day_of,
                          item_key, month_of)

# 2027-01-15 12:00 UTC
NOON = datetime(2027, 1, 15, 12, tzinfo=timezone.utc).timestamp()
ACME = "tenant:acme"


@pytest.fixture
def clock():
    from tests.conftest import FakeClock

    return FakeClock(NOON)


@pytest.fixture
def ledger(bucket_table, dynamodb, clock):
    return BudgetLedger(bucket_table, dynamodb, clock=clock, lease_s=300)


def usd(micros: int) -> float:
    return micros / 1e6


def counters(ledger, scope=ACME):
    return ledger.snapshot().counters.get(scope, {})


def test_reserve_then_settle_moves_the_reservation_to_actual_spend(ledger):
    budgets = {ACME: Budget(usd_per_day=1.0, usd_per_month=10.0)}
    hold = ledger.reserve(budgets, 300_000, 2000)
    assert hold.granted and hold.store_calls == 1
    assert counters(ledger) == {"day": "2027-01-15", "d_used": 300_000, "d_open": 300_000,
                                "m_used": 300_000, "m_open": 300_000, "t_used": 2000,
                                "t_open": 2000}
    assert hold.used_percent[ACME] == {"usd_per_day": 30.0, "usd_per_month": 3.0}
    settled = ledger.settle(hold, 120_000, 900)
    assert settled.settled and settled.store_calls == 1
    assert counters(ledger) == {"day": "2027-01-15", "d_used": 120_000, "d_open": 0,
                                "m_used": 120_000, "m_open": 0, "t_used": 900, "t_open": 0}
    assert ledger.snapshot().open == {}


def test_a_spent_day_refuses_with_budget_until_midnight_utc(ledger, clock):
    budgets = {ACME: Budget(usd_per_day=0.5)}
    hold = ledger.reserve(budgets, 400_000, 10)
    ledger.settle(hold, 400_000, 10)
    refused = ledger.reserve(budgets, 200_000, 10)
    assert not refused.granted
    assert (refused.reason, refused.scope, refused.window) == ("budget", ACME, "usd_per_day")
    assert refused.retry_after == pytest.approx(12 * 3600)
    assert refused.store_calls == 0  # refused on a read, not a write
    clock.advance(12 * 3600)  # 00:00 UTC the next day
    again = ledger.reserve(budgets, 200_000, 10)
    assert again.granted and again.day == "2027-01-16"
    assert counters(ledger)["d_used"] == 200_000 and counters(ledger)["m_used"] == 600_000


def test_open_reservations_refuse_with_budget_reserved_until_they_settle(ledger, clock):
    budgets = {ACME: Budget(usd_per_day=1.0)}
    first = ledger.reserve(budgets, 700_000, 10)
    clock.advance(5)
    refused = ledger.reserve(budgets, 500_000, 10)
    assert (refused.granted, refused.reason) == (False, "budget_reserved")
    assert refused.retry_after == pytest.approx(300 - 5)  # the oldest reservation's lease end
    ledger.settle(first, 100_000, 10)
    assert ledger.reserve(budgets, 500_000, 10).granted


def test_the_month_window_resets_on_the_first(ledger, clock):
    clock.now = datetime(2027, 1, 31, 23, tzinfo=timezone.utc).timestamp()
    budgets = {ACME: Budget(usd_per_month=1.0)}
    ledger.settle(ledger.reserve(budgets, 900_000, 1), 900_000, 1)
    refused = ledger.reserve(budgets, 200_000, 1)
    assert (refused.reason, refused.window) == ("budget", "usd_per_month")
    assert refused.retry_after == pytest.approx(3600)
    clock.advance(3600)
    hold = ledger.reserve(budgets, 200_000, 1)
    assert hold.granted and hold.key == item_key("2027-02")


def test_a_call_settled_after_midnight_is_charged_to_its_reservation_day(ledger, clock):
    clock.now = datetime(2027, 1, 15, 23, 59, 59, tzinfo=timezone.utc).timestamp()
    budgets = {ACME: Budget(usd_per_day=1.0)}
    hold = ledger.reserve(budgets, 500_000, 10)
    clock.advance(2)  # the next day; another call opens it
    ledger.settle(ledger.reserve(budgets, 100_000, 10), 100_000, 10)
    assert ledger.settle(hold, 300_000, 10).settled
    state = counters(ledger)
    assert state["day"] == "2027-01-16" and state["d_used"] == 100_000 \
        and state["d_open"] == 0
    assert state["m_used"] == 400_000 and state["m_open"] == 0


def test_every_scope_is_checked_in_the_same_single_write(ledger):
    budgets = {ACME: Budget(usd_per_day=10.0), DEPLOYMENT: Budget(usd_per_day=0.5)}
    hold = ledger.reserve(budgets, 400_000, 10)
    assert hold.granted and hold.store_calls == 1
    refused = ledger.reserve({"tenant:globex": Budget(usd_per_day=10.0),
                              DEPLOYMENT: budgets[DEPLOYMENT]}, 200_000, 10)
    assert (refused.reason, refused.scope) == ("budget_reserved", DEPLOYMENT)


def test_tokens_per_day_limits_tokens(ledger):
    budgets = {"model:claude-sonnet-4-6": Budget(tokens_per_day=1000)}
    assert ledger.reserve(budgets, 0, 800).granted
    refused = ledger.reserve(budgets, 0, 300)
    assert (refused.reason, refused.window) == ("budget_reserved", "tokens_per_day")


def test_a_crashed_callers_reservation_expires_into_spend_at_its_maximum(ledger, clock):
    budgets = {ACME: Budget(usd_per_day=1.0)}
    crashed = ledger.reserve(budgets, 600_000, 10)  # never settled
    clock.advance(301)  # past its lease
    refused = ledger.reserve(budgets, 500_000, 10)
    assert refused.reason == "budget"  # expired: spent, it frees nothing
    hold = ledger.reserve(budgets, 300_000, 10)
    assert hold.granted
    view = ledger.snapshot()
    assert crashed.rid not in view.open  # folded into that write
    assert view.counters[ACME]["d_used"] == 900_000
    assert view.counters[ACME]["d_open"] == 300_000
    late = ledger.settle(crashed, 100_000, 10)  # the caller was only slow
    assert (late.settled, late.reason) == (False, "expired")
    assert counters(ledger)["d_used"] == 900_000


def test_zero_blocks_and_bad_budgets_name_the_key():
    assert Budget(usd_per_day=0).limits_micros() == {"usd_per_day": 0}
    with pytest.raises(BudgetError, match="usd_per_day"):
        Budget(usd_per_day=-1)
    with pytest.raises(BudgetError, match="tokens_per_day"):
        Budget(tokens_per_day=1.5)
    with pytest.raises(BudgetError, match="currency"):
        Budget.decode({"usd_per_day": 1, "currency": "EUR"})
    with pytest.raises(BudgetError, match="usd_per_week"):
        Budget.decode({"usd_per_week": 1})
    with pytest.raises(BudgetError, match="degrade_to"):
        Budget(usd_per_day=1, action="degrade")


def test_blocked_tenant_is_refused(ledger):
    refused = ledger.reserve({ACME: Budget(usd_per_day=0)}, 1, 1)
    assert refused.reason == "budget"


def test_threads_racing_never_spend_or_hold_more_than_the_budget(ledger, bucket_table,
                                                                 dynamodb, clock):
    budgets = {ACME: Budget(usd_per_day=0.1)}
    ledgers = [BudgetLedger(bucket_table, dynamodb, clock=clock, lease_s=300)
               for _ in range(8)]
    granted: list[int] = []
    lock = threading.Lock()

    def spend(one: BudgetLedger) -> None:
        for _ in range(15):
            hold = one.reserve(budgets, 9_000, 10)
            if hold.granted:
                one.settle(hold, 6_000, 10)
                with lock:
                    granted.append(6_000)

    threads = [threading.Thread(target=spend, args=(one,)) for one in ledgers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    state = counters(ledger)
    assert state["d_open"] == 0
    assert state["d_used"] == sum(granted) <= 100_000
    assert month_of(clock()) == "2027-01" and day_of(clock()) == "2027-01-15"


def test_view_ignores_other_days():
    view = View({"tenant:a|day": "2027-01-14", "tenant:a|d_used": 5, "tenant:a|d_open": 0,
                 "tenant:a|m_used": 5, "tenant:a|m_open": 0})
    assert view.used_open("tenant:a", "usd_per_day", "2027-01-15") == (0, 0)
    assert view.used_open("tenant:a", "usd_per_month", "2027-01-15") == (5, 0)


def test_a_charge_adds_spend_made_without_a_reservation_to_today_and_the_month(ledger,
                                                                              clock):
    budgets = {ACME: Budget(usd_per_day=1.0)}
    ledger.settle(ledger.reserve(budgets, 300_000, 100), 200_000, 100)
    charged = ledger.charge([ACME, DEPLOYMENT], 900_000, 5000)  # over what is left: spent
    assert charged.settled and charged.store_calls == 1
    assert counters(ledger) == {"day": "2027-01-15", "d_used": 1_100_000, "d_open": 0,
                                "m_used": 1_100_000, "m_open": 0, "t_used": 5100, "t_open": 0}
    assert counters(ledger, DEPLOYMENT)["d_used"] == 900_000
    refused = ledger.reserve(budgets, 1, 1)  # the charge counts against the budget
    assert (refused.granted, refused.reason) == (False, "budget")
    clock.advance(86_400)  # the next UTC day: its counters start from the charge
    assert ledger.charge([ACME], 50_000, 10).settled
    assert counters(ledger) == {"day": "2027-01-16", "d_used": 50_000, "d_open": 0,
                                "m_used": 1_150_000, "m_open": 0, "t_used": 10, "t_open": 0}


def test_a_charge_with_a_stale_day_retries_on_the_fresh_view(bucket_table, dynamodb, clock):
    budgets = {ACME: Budget(usd_per_day=1.0)}
    first = BudgetLedger(bucket_table, dynamodb, clock=clock, lease_s=300)
    second = BudgetLedger(bucket_table, dynamodb, clock=clock, lease_s=300)
    first.settle(first.reserve(budgets, 100_000, 10), 100_000, 10)
    second.snapshot()  # sees 2027-01-15
    clock.advance(86_400)
    first.settle(first.reserve(budgets, 100_000, 10), 100_000, 10)  # moves acme to the 16th
    charged = second.charge([ACME], 40_000, 4)  # its view still says the 15th
    assert charged.settled and charged.store_calls == 2
    assert counters(first) == {"day": "2027-01-16", "d_used": 140_000, "d_open": 0,
                               "m_used": 240_000, "m_open": 0, "t_used": 14, "t_open": 0}


def test_a_charge_of_a_negative_amount_is_refused_naming_it(ledger):
    with pytest.raises(BudgetError, match="usd_micros"):
        ledger.charge([ACME], -1, 0)
