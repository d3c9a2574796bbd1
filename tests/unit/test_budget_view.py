"""Whether a reservation fits the budget month item as decoded (`guard.budget_view`), without
a store."""

from __future__ import annotations

from datetime import datetime, timezone

from guard import Budget
from guard.budget_view import View, assess


def test_assess_tells_a_spent_window_from_one_held_by_open_reservations():
    now = datetime(2027, 1, 15, 12, tzinfo=timezone.utc).timestamp()
    budgets = {"tenant:a": Budget(usd_per_day=1.0)}

    def view(used, opened, until=now + 60):
        item = {"tenant:a|day": "2027-01-15", "tenant:a|d_used": used,
                "tenant:a|d_open": opened}
        if opened:
            item["r|x"] = {"d": "2027-01-15", "u": opened, "t": 0, "at": now - 5,
                           "until": until, "s": ["tenant:a"]}
        return View(item)

    assert assess(view(500_000, 0), budgets, 500_000, 0, now) is None
    reason, wait, scope, window = assess(view(900_000, 0), budgets, 200_000, 0, now)
    assert (reason, scope, window) == ("budget", "tenant:a", "usd_per_day")
    assert wait == 12 * 3600
    assert assess(view(900_000, 600_000), budgets, 200_000, 0, now)[:2] == (
        "budget_reserved", 60)
    # past its lease an open reservation is spent: it frees nothing
    assert assess(view(900_000, 600_000, until=now - 1), budgets, 200_000, 0, now)[0] == \
        "budget"
