"""What a budget limits: `Budget` (USD per UTC day and month, tokens per UTC day, and what a
refused call does), read from configuration with `Budget.decode`; `BudgetError` names the bad
field."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from .prices import MICROS_PER_USD

#: What a tenant's refused call does: refuse it, call the cheaper model, or queue it on the
#: batch lane (half price).
ACTIONS = ("reject", "degrade", "batch")
#: Windows a budget limits: USD per UTC day, USD per UTC month, tokens per UTC day.
WINDOWS = ("usd_per_day", "usd_per_month", "tokens_per_day")


class BudgetError(ValueError):
    """A budget that cannot be enforced (the message names the field)."""


def _limit(name: str, value: object, *, whole: bool = False) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BudgetError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if not 0 <= value < math.inf:
        raise BudgetError(f"{name} must be a finite number >= 0 (0 blocks all calls), got "
                          f"{value!r}")
    if whole:
        if value != int(value):
            raise BudgetError(f"{name} must be a whole number of tokens, got {value!r}")
        return int(value)
    return float(value)


@dataclass(frozen=True)
class Budget:
    """Spend limits of one scope (a tenant, or the deployment): `usd_per_day` and
    `usd_per_month` (USD per UTC day and UTC month) and `tokens_per_day` (tokens per UTC day:
    input + cache write + output). None: no limit; 0: blocked.

    `action`: what a call refused for budget does: "reject", "degrade" (call `degrade_to`, a
    cheaper model, if its maximum cost fits) or "batch" (queue on the batch lane)."""

    usd_per_day: float | None = None
    usd_per_month: float | None = None
    tokens_per_day: int | None = None
    action: str = "reject"
    degrade_to: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "usd_per_day", _limit("usd_per_day", self.usd_per_day))
        object.__setattr__(self, "usd_per_month", _limit("usd_per_month", self.usd_per_month))
        object.__setattr__(self, "tokens_per_day",
                           _limit("tokens_per_day", self.tokens_per_day, whole=True))
        if self.action not in ACTIONS:
            raise BudgetError(f"action must be one of {', '.join(ACTIONS)}, got "
                              f"{self.action!r}")
        if self.action == "degrade" and not (isinstance(self.degrade_to, str)
                                             and self.degrade_to):
            raise BudgetError("degrade_to must name the cheaper model when action is "
                              "'degrade'")

    def limits_micros(self) -> dict[str, int]:
        """The limits this budget sets, per window, in the ledger's units (micro-USD or
        tokens)."""
        limits = {}
        for window in WINDOWS:
            value = getattr(self, window)
            if value is not None:
                limits[window] = (value if window == "tokens_per_day"
                                  else int(round(value * MICROS_PER_USD)))
        return limits

    @property
    def unlimited(self) -> bool:
        return all(getattr(self, window) is None for window in WINDOWS)

    @classmethod
    def decode(cls, raw: Mapping[str, Any]) -> "Budget":
        """From a `budget` object (cdk.json, the MODELS/BUDGETS environment, a config item);
        BudgetError naming the key for an unknown key or a bad value. `currency` may be
        given and must be "USD"."""
        if not isinstance(raw, Mapping):
            raise BudgetError(f"a budget must be an object, got {type(raw).__name__}")
        known = {*WINDOWS, "action", "degrade_to", "currency"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise BudgetError(f"{unknown[0]} is not a budget key (known: "
                              f"{', '.join(sorted(known))})")
        currency = raw.get("currency", "USD")
        if currency != "USD":
            raise BudgetError(f"currency must be 'USD' (prices are USD per million tokens), "
                              f"got {currency!r}")
        return cls(**{key: value for key, value in raw.items() if key != "currency"})

    def encode(self) -> dict[str, Any]:
        """The `budget` object `decode` reads (limits that are set, the action)."""
        out: dict[str, Any] = {w: getattr(self, w) for w in WINDOWS
                               if getattr(self, w) is not None}
        out["action"] = self.action
        if self.degrade_to:
            out["degrade_to"] = self.degrade_to
        return out

