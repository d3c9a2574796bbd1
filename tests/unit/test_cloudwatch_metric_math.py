"""local.cloudwatch.metric_math: the metric-math grammar, missing data and errors (no I/O)."""

from __future__ import annotations

import pytest

from local.cloudwatch.metric_math import ExpressionError, evaluate_expression


@pytest.mark.parametrize("expression, expected", [
    ("1 + 2 * 3", 7.0), ("(1 + 2) * 3", 9.0), ("10 / 4", 2.5), ("7 - 2 - 1", 4.0),
    ("-2 ^ 2", -4.0), ("2 ^ 3 ^ 2", 512.0), ("2 ^ -1", 0.5), ("1.5e2", 150.0), (".5", 0.5),
    ("3 > 2", 1.0), ("3 >= 4", 0.0), ("2 == 2", 1.0), ("2 != 2", 0.0), ("1 < 2 AND 2 < 1", 0.0),
    ("1 < 2 OR 2 < 1", 1.0), ("NOT 0", 1.0), ("!(1 && 1)", 0.0), ("1 || 0", 1.0),
    ("IF(1, 10, 20)", 10.0), ("IF(0, 10, 20)", 20.0), ("IF(0, 10)", None),
    ("ABS(-3)", 3.0), ("CEIL(1.2)", 2.0), ("FLOOR(1.8)", 1.0),
    ("1 / 0", None), ("IF(0, 1 / 0, 7)", 7.0), ("FILL(1 / 0, 4)", 4.0), ("(-8) ^ 0.5", None),
])
def test_expression_grammar(expression, expected):
    assert evaluate_expression(expression, {}, length=1) == [expected]


def test_missing_propagates_and_fill_replaces_it():
    a = [1.0, None, None, 4.0, None]
    b = [2.0, 2.0, None, 0.0, None]
    assert evaluate_expression("a + b", {"a": a, "b": b}) == [3.0, None, None, 4.0, None]
    assert evaluate_expression("a / b", {"a": a, "b": b}) == [0.5, None, None, None, None]
    assert evaluate_expression("FILL(a, 0)", {"a": a}) == [1.0, 0.0, 0.0, 4.0, 0.0]
    assert evaluate_expression("FILL(a, b)", {"a": a, "b": b}) == [1.0, 2.0, None, 4.0, None]
    assert evaluate_expression("FILL(a, REPEAT)", {"a": a}) == [1.0, 1.0, 1.0, 4.0, 4.0]
    assert evaluate_expression("FILL(a, LINEAR)", {"a": a}) == [1.0, 2.0, 3.0, 4.0, None]
    assert evaluate_expression("IF(b, a, 0)", {"a": a, "b": b}) == [1.0, None, None, 0.0, None]


@pytest.mark.parametrize("expression, problem", [
    ("__import__('os').system('true')", "unexpected character"),
    ("a.b", "unexpected character"),
    ("SUM(a)", "unsupported function"),
    ("nope + 1", "unknown id"),
    ("1 +", "unexpected end"),
    ("(1 + 2", r"expected '\)'"),
    ("1 2", "unexpected '2'"),
    ("1 < 2 < 3", "chained comparison"),
    ("IF(1)", "IF takes 2-3"),
    ("FILL(a)", "FILL takes 2"),
    ("", "empty"),
])
def test_expression_errors(expression, problem):
    with pytest.raises(ExpressionError, match=problem):
        evaluate_expression(expression, {"a": [1.0]})


def test_diff_is_the_change_from_the_previous_value_present():
    now = [10.0, 12.0, None, 20.0, 18.0]
    assert evaluate_expression("DIFF(now)", {"now": now}) == [None, 2.0, None, 8.0, -2.0]
    # the quota forecast's projection: a rising rate projects ahead, a falling one to itself
    assert evaluate_expression("now + IF(DIFF(now) > 0, DIFF(now) * 6, 0)", {"now": now}) == [
        None, 24.0, None, 68.0, 18.0]
