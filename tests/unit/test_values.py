"""`guard.values`: the one set of value readers the settings, the Lambda's environment, the MCP
settings and the guard's Limits share; each says what it expected."""

from __future__ import annotations

import dataclasses

import pytest

from guard.values import BadValue, default_of, is_unset, read_choice, read_number


@pytest.mark.parametrize(("value", "options", "expected"), [
    (5, {}, 5.0),
    ("2.5", {"from_text": True}, 2.5),
    ("7", {"integer": True, "from_text": True}, 7),
    (3.0, {"integer": True}, 3),
    (0.5, {"above": 0}, 0.5),
    (100, {"minimum": 1, "maximum": 100}, 100.0),
])
def test_a_number_in_range_is_returned_typed(value, options, expected):
    result = read_number(value, **options)
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize(("value", "options", "expected", "not_a_number"), [
    ("5", {}, "a number", True),  # text only with from_text
    (True, {}, "a number", True),
    ([1], {"from_text": True}, "a number", True),
    ("five", {"from_text": True}, "a number", True),
    ("2.5", {"integer": True, "from_text": True}, "a whole number", True),
    (2.5, {"integer": True}, "a whole number", False),
    (0, {"minimum": 1}, "a number >= 1", False),
    (0, {"above": 0}, "a number > 0", False),
    (101, {"minimum": 1, "maximum": 100}, "a number >= 1 and <= 100", False),
    (float("nan"), {"minimum": 0}, "a number >= 0", False),
    (float("nan"), {"integer": True, "minimum": 1}, "a number >= 1", False),
    (float("inf"), {"finite": True}, "a finite number", False),
    (float("inf"), {"integer": True}, "a whole number", False),
])
def test_a_bad_number_says_what_was_expected(value, options, expected, not_a_number):
    with pytest.raises(BadValue) as raised:
        read_number(value, **options)
    assert raised.value.expected == expected
    assert raised.value.not_a_number is not_a_number


def test_choice_unset_and_dataclass_defaults():
    assert read_choice("fifo", ("fifo", "poll")) == "fifo"
    with pytest.raises(BadValue, match="expected one of fifo, poll, got 'lifo'"):
        read_choice("lifo", ("fifo", "poll"))
    assert all(map(is_unset, (None, "", " NULL ", "none")))
    assert not any(map(is_unset, (0, False, "x")))

    @dataclasses.dataclass
    class Example:
        required: int
        size: int = 3
        names: list = dataclasses.field(default_factory=lambda: ["a"])

    assert (default_of(Example, "size"), default_of(Example, "names")) == (3, ["a"])
    with pytest.raises(KeyError):
        default_of(Example, "required")
    with pytest.raises(KeyError):
        default_of(Example, "nope")


@pytest.mark.parametrize(("name", "raw", "words"), [
    ("MAX_ITERATIONS", "many", ("MAX_ITERATIONS='many'", "expected a whole number")),
    ("MAX_DEFERRAL_AGE_S", "nan", ("MAX_DEFERRAL_AGE_S='nan'", "expected a number >= 1")),
    ("RESULT_TTL_S", "59", ("RESULT_TTL_S='59'", "expected a number >= 60")),
])
def test_the_lambdas_environment_is_read_by_the_same_readers(name, raw, words):
    from agent.config import ConfigError, number_env

    with pytest.raises(ConfigError) as raised:
        number_env({name: raw}, name, 1, float if name == "MAX_DEFERRAL_AGE_S" else int,
                   60 if name == "RESULT_TTL_S" else 1)
    for word in words:
        assert word in str(raised.value)
