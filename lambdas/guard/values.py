"""Value readers every configuration parser shares: the CDK app's settings (cdk.json context,
`stacks.settings_readers`), the agent Lambda's environment (`agent.config`), the MCP settings
(`agent.mcp.config`) and the guard's own `Limits` and `TenantShare`.

Each reader checks one value and returns it typed, or raises `BadValue` saying what was
expected (`.expected`, e.g. "a whole number" or "a number >= 1"); the caller names the key in
its own form: `context key 'x': expected ...` in the settings, `NAME='raw': expected ...` for a
Lambda variable, `name must be ...` for a guard argument. The standard library only, so
`import guard` stays cheap. It lives in the guard because the guard is the one package every
caller (the stack, the agent, another team's Lambda) has.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable

#: Text that means "not set" where a value may be null (`-c degrade_model=` and the like).
UNSET_TEXTS = ("", "null", "none")


class BadValue(ValueError):
    """A value is not of the expected form. `expected`: what was wanted ("a number >= 1");
    `value`: what was read (after parsing a text); `not_a_number`: not a number at all, as
    opposed to a number out of range."""

    def __init__(self, expected: str, value: Any, *, not_a_number: bool = False) -> None:
        super().__init__(f"expected {expected}, got {value!r}")
        self.expected = expected
        self.value = value
        self.not_a_number = not_a_number


def is_unset(value: Any) -> bool:
    """True for None and for a text that spells "not set" (`UNSET_TEXTS`, any case)."""
    return value is None or (isinstance(value, str) and value.strip().lower() in UNSET_TEXTS)


def read_number(value: Any, *, minimum: float | None = None, above: float | None = None,
                maximum: float | None = None, integer: bool = False, finite: bool = False,
                from_text: bool = False) -> int | float:
    """`value` as a number: an int when `integer`, else a float.

    `from_text`: a string is parsed first (`int()` when `integer`, else `float()`).
    `minimum`: the least allowed (inclusive); `above`: the value must be greater; `maximum`:
    the most allowed (inclusive); `finite`: infinity is refused. NaN is always refused; a bool
    is never a number. Raises `BadValue` with `expected` "a number" or "a whole number" for
    what is not one, "a whole number" for a fraction where `integer`, and for a number out of
    range "a number" followed by its bounds (">= 1", "> 0", "<= 100"; "a finite number" for
    infinity with no bound)."""
    if from_text and isinstance(value, str):
        try:
            value = int(value) if integer else float(value)
        except ValueError:
            raise BadValue("a whole number" if integer else "a number", value,
                           not_a_number=True) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadValue("a number", value, not_a_number=True)
    bounds = [f">= {minimum:g}" if minimum is not None else "",
              f"> {above:g}" if above is not None else "",
              f"<= {maximum:g}" if maximum is not None else ""]
    out_of_range = " and ".join(b for b in bounds if b)
    out_of_range = f"a number {out_of_range}" if out_of_range else "a finite number"
    if value != value:  # NaN
        raise BadValue(out_of_range, value)
    if integer and isinstance(value, float) and not value.is_integer():
        raise BadValue("a whole number", value)
    if (minimum is not None and value < minimum) or (above is not None and not value > above) \
            or (maximum is not None and value > maximum) \
            or (finite and value in (float("inf"), float("-inf"))):
        raise BadValue(out_of_range, value)
    return int(value) if integer else float(value)


def read_choice(value: Any, options: Iterable[str]) -> Any:
    """`value` when it is one of `options`; `BadValue` ("one of a, b, c") otherwise."""
    options = tuple(options)
    if value not in options:
        raise BadValue("one of " + ", ".join(options), value)
    return value


def default_of(cls: type, name: str) -> Any:
    """The default of the dataclass field `name` of `cls` (its factory's value for a field with
    a `default_factory`): where a schema or a parser needs a default, it takes the typed
    model's, so each default is written once."""
    for spec in dataclasses.fields(cls):
        if spec.name == name:
            if spec.default is not dataclasses.MISSING:
                return spec.default
            if spec.default_factory is not dataclasses.MISSING:
                return spec.default_factory()
            raise KeyError(f"{cls.__name__}.{name} has no default")
    raise KeyError(f"{cls.__name__} has no field {name!r}")
