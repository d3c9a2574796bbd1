"""Model prices and the cost of a call: what budgets reserve and settle, what metrics report.

`Prices` is in USD per million tokens. Costs are computed in USD (`cost_usd`) and, for the
budget ledger, in whole micro-dollars (`cost_micros`, 1e-6 USD) so that concurrent additions
in DynamoDB are exact: a reservation rounds up, never down.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

#: Cache prices when none are given, as multiples of the input price (Anthropic's list).
CACHE_WRITE_PRICE_FACTOR = 1.25
CACHE_READ_PRICE_FACTOR = 0.1
#: Micro-dollars per USD: the ledger's unit.
MICROS_PER_USD = 1_000_000


class PricesError(ValueError):
    """A price that cannot be used (names the field)."""


def _price(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PricesError(f"{name} must be a number of USD per million tokens, got "
                          f"{type(value).__name__} {value!r}")
    if not 0 <= value < math.inf:
        raise PricesError(f"{name} must be a finite USD price >= 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Prices:
    """USD per million tokens: `input`, `output`, `cache_write` and `cache_read`.

    Cache prices default to the input price times `CACHE_WRITE_PRICE_FACTOR` and
    `CACHE_READ_PRICE_FACTOR`. A negative or non-numeric price raises `PricesError`."""

    input: float
    output: float
    cache_write: float | None = None
    cache_read: float | None = None

    def __post_init__(self) -> None:
        base = _price("input", self.input)
        object.__setattr__(self, "input", base)
        object.__setattr__(self, "output", _price("output", self.output))
        for name, factor in (("cache_write", CACHE_WRITE_PRICE_FACTOR),
                             ("cache_read", CACHE_READ_PRICE_FACTOR)):
            value = getattr(self, name)
            object.__setattr__(self, name, round(base * factor, 9) if value is None
                               else _price(name, value))

    @classmethod
    def of(cls, input: float, output: float, cache_write: float | None = None,
           cache_read: float | None = None) -> "Prices":
        """Same as the constructor (kept for callers that build prices positionally)."""
        return cls(input, output, cache_write, cache_read)

    @classmethod
    def decode(cls, raw: Mapping) -> "Prices":
        """From a `prices` object ({"input", "output", "cache_write"?, "cache_read"?});
        KeyError, TypeError or ValueError when `input` or `output` is missing or a price is
        not a number."""
        def optional(name: str) -> float | None:
            return None if raw.get(name) is None else float(raw[name])

        return cls(float(raw["input"]), float(raw["output"]), optional("cache_write"),
                   optional("cache_read"))

    def encode(self) -> dict[str, float]:
        """The `prices` object `decode` reads."""
        return {"input": self.input, "output": self.output, "cache_write": self.cache_write,
                "cache_read": self.cache_read}

    def _micros(self, usage: Mapping[str, int]) -> float:
        # prices are per million tokens, so tokens x price is in micro-dollars
        return (usage.get("input_tokens", 0) * self.input
                + usage.get("output_tokens", 0) * self.output
                + usage.get("cache_creation_input_tokens", 0) * self.cache_write
                + usage.get("cache_read_input_tokens", 0) * self.cache_read)

    def cost_usd(self, usage: Mapping[str, int]) -> float:
        """Cost of one call's `usage` (a Messages usage dict, tokens) in USD."""
        return self._micros(usage) / MICROS_PER_USD

    def cost_micros(self, usage: Mapping[str, int]) -> int:
        """Cost of `usage` (tokens) in whole micro-dollars (1e-6 USD), rounded up."""
        return math.ceil(round(self._micros(usage), 6))

    def max_cost_micros(self, input_tokens: int, max_tokens: int) -> int:
        """The most a request can cost (micro-dollars): its input estimate at the dearer of
        the input and cache-write prices (a prompt may write the cache) plus `max_tokens`
        output."""
        return math.ceil(round(input_tokens * max(self.input, self.cache_write)
                               + max_tokens * self.output, 6))

    def halved(self) -> "Prices":
        """These prices at 50% (the batch lane's discount)."""
        return Prices(self.input / 2, self.output / 2, self.cache_write / 2,
                      self.cache_read / 2)
