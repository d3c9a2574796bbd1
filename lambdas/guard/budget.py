"""Spend budgets that concurrent callers cannot race past: reserve the most a call can cost,
settle to what it cost, in one conditional write each.

    ledger = BudgetLedger(table_name)
    hold = ledger.reserve({"tenant:acme": Budget(usd_per_day=50), "deployment": Budget(...)},
                          usd_micros=prices.max_cost_micros(estimate, max_tokens),
                          tokens=estimate + max_tokens)
    ...call Claude...
    ledger.settle(hold, usd_micros=prices.cost_micros(usage), tokens=...)

Windows are UTC calendar windows: the day (00:00 UTC) and the month (the 1st, 00:00 UTC). A
call is charged to the day and month of its reservation, whenever it settles.

Store: one item per month in the bucket table, `pk = "budget#YYYY-MM"`, holding every scope
(a tenant, the deployment, a model's daily token quota) of that month, so a call that counts
against several scopes is still one write. Per scope `s` (attribute names `s|<counter>`):

    day            the UTC day the day counters are for ("YYYY-MM-DD")
    d_used, d_open the day's spend plus open reservations, and the open part (micro-USD)
    m_used, m_open the same for the month (micro-USD)
    t_used, t_open the day's tokens, spent plus open, and the open part (tokens)

and one attribute `r|<id>` per open reservation: {d: day, u: micro-USD, t: tokens,
at: reserved at, until: lease end (epoch s), s: [scopes]}. A reservation is written only when
`used + amount <= limit` holds in the store (the condition), so spent plus open never exceeds a
limit; settling moves `open` to actual spend. An actual cost above the reservation (an input
estimate that was too low) is charged in full.

Crashed callers: a reservation not settled by its lease end (`until`) expires into spend at its
maximum. The next acquire that sees it folds it in (removes `r|<id>`, drops it from `open` and
leaves it in `used`) in the same write; the late caller's settle then finds it gone and changes
nothing, so the reservation's maximum stands as its cost (never less than actual).

Refusals: "budget" when the window's spend alone leaves no room (`retry_after` = the next
window's start, seconds); "budget_reserved" when open reservations are in the way
(`retry_after` = when the oldest open reservation's lease ends, the latest it can free). A
refusal is decided from a consistent read, never a write: only a reservation that fits is
written.

Scale: every budgeted acquire and settle is one write to the month's item, about 1,000 writes/s
per partition key, i.e. ~500 budgeted calls/s for the deployment.

The parts, one job each (everything is importable from here):

    budget_limits   Budget: the limits and the action of a scope, from configuration
    budget_scopes   which scopes a call counts against
    budget_windows  UTC day and month windows
    budget_view     the month item's layout, decoded, and whether a reservation fits (no I/O)
    budget_writes   the conditional UpdateItems that reserve, settle and charge (no I/O)
    budget_ledger   BudgetLedger: reads and writes the item in DynamoDB
"""

from __future__ import annotations

from .budget_ledger import (DEFAULT_LEASE_S, LOCAL_REFUSAL_MAX_AGE_S, STORE_UNAVAILABLE,
                            BudgetLedger, BudgetSettlement, Hold)
from .budget_limits import ACTIONS, WINDOWS, Budget, BudgetError
from .budget_scopes import DEPLOYMENT, MODEL_SCOPE_PREFIX, scope_names, scopes_for
from .budget_view import (BUDGET, BUDGET_RESERVED, ITEM_PREFIX, PARTITION_KEY,
                          RESERVATION_PREFIX, Open, View, assess, item_key, used_percent)
from .budget_windows import day_of, month_fraction, month_of, next_day_start, next_month_start
from .budget_writes import MAX_FOLDS, BudgetWrite, charge_write, reserve_write, settle_write

__all__ = [
    "ACTIONS", "BUDGET", "BUDGET_RESERVED", "DEFAULT_LEASE_S", "DEPLOYMENT", "ITEM_PREFIX",
    "LOCAL_REFUSAL_MAX_AGE_S", "MAX_FOLDS", "MODEL_SCOPE_PREFIX", "PARTITION_KEY",
    "RESERVATION_PREFIX", "STORE_UNAVAILABLE", "WINDOWS", "Budget", "BudgetError",
    "BudgetLedger", "BudgetSettlement", "BudgetWrite", "Hold", "Open", "View", "assess",
    "charge_write", "day_of", "item_key", "month_fraction", "month_of", "next_day_start",
    "next_month_start", "reserve_write", "scope_names", "scopes_for", "settle_write",
    "used_percent",
]
