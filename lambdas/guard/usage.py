"""One Messages `usage` type for the guard, the agent loop and the metrics.

`Usage` is a dict with exactly the four token counts of a Messages response, so it serialises
into responses and results as before and reads the same everywhere."""

from __future__ import annotations

from typing import Any

#: The token counts of a Messages `usage` (tokens).
USAGE_KEYS = ("input_tokens", "output_tokens", "cache_creation_input_tokens",
              "cache_read_input_tokens")


class Usage(dict):
    """Token counts of one or more Claude calls: input, output, cache write, cache read."""

    def __init__(self, input_tokens: int = 0, output_tokens: int = 0,
                 cache_creation_input_tokens: int = 0, cache_read_input_tokens: int = 0) -> None:
        super().__init__(input_tokens=int(input_tokens), output_tokens=int(output_tokens),
                         cache_creation_input_tokens=int(cache_creation_input_tokens),
                         cache_read_input_tokens=int(cache_read_input_tokens))

    @classmethod
    def of(cls, usage: Any) -> "Usage":
        """From the SDK's `Usage` model (or a dict of the same fields); missing fields are 0."""
        def get(name: str) -> int:
            value = usage.get(name) if isinstance(usage, dict) else getattr(usage, name, None)
            return int(value or 0)

        return cls(*(get(name) for name in USAGE_KEYS))

    def add(self, other: "Usage | dict") -> None:
        """Add another call's counts to these (in place)."""
        for name in USAGE_KEYS:
            self[name] += int(other.get(name, 0) or 0)

    @property
    def counted_input(self) -> int:
        """Input tokens an input-tokens-per-minute limit counts (input + cache write)."""
        return self["input_tokens"] + self["cache_creation_input_tokens"]
