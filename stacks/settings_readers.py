"""Value readers of the CDK app's settings: each reads one context value (as cdk.json holds it, or
a `-c key=value` string) and returns it typed, or reports the problem naming the key and
returns None, so one load collects every problem (`Problems`, `SettingsError`).

The checks themselves (what is a number, a whole number, at least a minimum) are
`guard.values`', which the Lambda's environment parsing uses too.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable

from agent.contract import REGION_PATTERN, ROLE_ARN_PATTERN
from guard.values import BadValue, is_unset, read_choice, read_number

EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

#: CloudWatch Logs accepts only these retention periods (days)
RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827,
                  2192, 2557, 2922, 3288, 3653)


class SettingsError(ValueError):
    """The context has problems; `.problems` lists each (key, expected form, value given)."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class Problems:
    """Collects every problem of one load; readers return None for a bad value."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def bad(self, key: str, expected: str, value: Any) -> None:
        self.items.append(f"context key {key!r}: expected {expected}, got {value!r}")

    def say(self, message: str) -> None:
        self.items.append(message)


#: A reader: (problems, key, value) -> the value typed, or None with the problem reported.
Reader = Callable[[Problems, str, Any], Any]


def parse_json_text(value: Any) -> Any:
    """`value`, or the JSON object or list it spells when it is a text starting with { or [
    (how `-c key=value` gives a section)."""
    if isinstance(value, str) and value.strip()[:1] in "{[":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def parse_list_text(value: Any) -> Any:
    """`value`, or the list a text spells: a JSON list, or names separated by commas (blank
    ones dropped), as `-c tenants=a,b` gives them."""
    value = parse_json_text(value)
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    return value


def choice(*options: str) -> Reader:
    def read(problems: Problems, key: str, value: Any):
        try:
            return read_choice(value, options)
        except BadValue as err:
            return problems.bad(key, err.expected, value)
    return read


def number(minimum: float = 0, *, integer: bool = False, nullable: bool = False) -> Reader:
    """A number >= `minimum` (a whole number when `integer`), given as one or as text; with
    `nullable`, None or an unset text (`is_unset`) reads as None."""
    def read(problems: Problems, key: str, value: Any):
        if nullable and is_unset(value):
            return None
        try:
            return read_number(value, minimum=minimum, integer=integer, from_text=True)
        except BadValue as err:
            return problems.bad(key, err.expected, err.value)
    return read


def matching(pattern: re.Pattern, expected: str, *, nullable: bool = False) -> Reader:
    def read(problems: Problems, key: str, value: Any):
        if nullable and is_unset(value):
            return None
        if not isinstance(value, str) or not pattern.match(value):
            return problems.bad(key, expected, value)
        return value
    return read


def string_list(item: re.Pattern, expected: str) -> Reader:
    def read(problems: Problems, key: str, value: Any):
        value = parse_list_text(value)
        if not isinstance(value, list) or not value or not all(isinstance(v, str)
                                                               for v in value):
            return problems.bad(key, "a non-empty list of strings (or comma-separated)", value)
        wrong = [v for v in value if not item.match(v)]
        if wrong:
            return problems.bad(key, expected, wrong[0] if len(wrong) == 1 else wrong)
        return tuple(value)
    return read


def text(*, nullable: bool = True) -> Reader:
    def read(problems: Problems, key: str, value: Any):
        if nullable and is_unset(value):
            return None  # "" (-c degrade_model=) unsets
        if not isinstance(value, str):
            return problems.bad(key, "a string", value)
        return value
    return read


def boolean(problems: Problems, key: str, value: Any):
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool):
        return problems.bad(key, "true or false", value)
    return value



def fraction(problems: Problems, key: str, value: Any):
    share = number()(problems, key, value)
    if share is not None and not 0 < share <= 1:
        return problems.bad(key, "a share of the per-minute capacity in (0, 1]", value)
    return share



def retention(problems: Problems, key: str, value: Any):
    days = number(1, integer=True)(problems, key, value)
    if days is not None and days not in RETENTION_DAYS:
        return problems.bad(key, "one of CloudWatch's periods: "
                            + ", ".join(map(str, RETENTION_DAYS)), value)
    return days


def percent(problems: Problems, key: str, value: Any):
    share = number(0)(problems, key, value)
    if share is not None and not 0 < share <= 100:
        return problems.bad(key, "a percentage in (0, 100]", value)
    return share


def positive(problems: Problems, key: str, value: Any):
    amount = number(0)(problems, key, value)
    if amount == 0:
        return problems.bad(key, "a number > 0", value)
    return amount


_ROLE_ARNS = ("IAM role ARNs such as arn:aws:iam::111122223333:role/AppRole (not users, "
              "groups or assumed-role session ARNs)")


def role_arns(problems: Problems, key: str, value: Any):
    """A list (or comma-separated) of IAM role ARNs, possibly empty."""
    value = parse_list_text(value)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return problems.bad(key, "a list of " + _ROLE_ARNS, value)
    wrong = [v for v in value if not ROLE_ARN_PATTERN.match(v)]
    if wrong:
        return problems.bad(key, _ROLE_ARNS, wrong[0] if len(wrong) == 1 else wrong)
    return tuple(dict.fromkeys(value))


def region_map(problems: Problems, key: str, value: Any):
    value = parse_json_text(value)
    if not isinstance(value, dict) or not value:
        return problems.bad(key, 'an object of profile prefix -> regions, e.g. {"us": '
                            '["us-east-1", "us-east-2", "us-west-2"]}', value)
    read = string_list(REGION_PATTERN, "AWS region names such as us-east-1")
    return {prefix: read(problems, f"{key}.{prefix}", regions)
            for prefix, regions in value.items()}

