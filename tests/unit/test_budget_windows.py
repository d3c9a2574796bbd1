"""The UTC calendar windows the budget ledger charges to (`guard.budget_windows`)."""

from __future__ import annotations

from datetime import datetime, timezone

from guard.budget_windows import day_of, month_fraction, next_day_start, next_month_start


def test_utc_windows():
    t = datetime(2027, 12, 31, 23, 30, tzinfo=timezone.utc).timestamp()
    assert day_of(t) == "2027-12-31"
    assert next_day_start(t) - t == 1800
    assert next_month_start(t) == datetime(2028, 1, 1, tzinfo=timezone.utc).timestamp()
    assert month_fraction(datetime(2027, 2, 15, tzinfo=timezone.utc).timestamp()) == 0.5
