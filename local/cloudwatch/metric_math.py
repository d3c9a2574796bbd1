"""CloudWatch metric math for the local alarm evaluation and local CloudWatch: a small parser,
never `eval()`, that evaluates whole series period by period with None for missing.

    evaluate_expression("100 * t / (t + r)", {"t": throttles, "r": requests})

    expr    := or
    or      := and (("OR" | "||") and)*
    and     := not (("AND" | "&&") not)*
    not     := ("NOT" | "!") not | cmp
    cmp     := add [("==" | "!=" | "<" | "<=" | ">" | ">=") add]      -> 1 or 0
    add     := mul (("+" | "-") mul)*
    mul     := unary (("*" | "/") unary)*
    unary   := ("-" | "+") unary | power
    power   := primary ["^" unary]
    primary := number | query id | FUNC "(" args ")" | "(" expr ")"
    FUNC    := IF(cond, a [, b]) | FILL(x, number | expr | REPEAT | LINEAR)
             | ABS(x) | CEIL(x) | FLOOR(x) | PERIOD(x) | DIFF(x)

Any operation with a missing operand is missing; division by zero is missing; IF takes `a`
where `cond` is non-zero, `b` (missing when omitted) where it is zero, missing where `cond`
is missing; FILL replaces missing points (REPEAT: last earlier value, LINEAR: interpolated
between neighbours); DIFF(x) is each value minus the previous value present (missing for the
first one and where x is missing: CloudWatch's series hold only the periods with data).
FILL(x, 0) yields 0 even for a metric with no data at all in the range
(CloudWatch may return no datapoints then), so the stack's rate alarms read 0 % on an idle
model; with their notBreaching treatment both readings give OK.

Not modelled: metric math functions other than the ones above.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

__all__ = ["ExpressionError", "Series", "evaluate_expression"]


class ExpressionError(ValueError):
    """A metric-math expression this evaluator cannot parse or evaluate."""


_TOKEN = re.compile(r"""\s*(?:
    (?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|&&|\|\||[-+*/^(),<>!])
)""", re.VERBOSE)
_FUNCTIONS = {"IF", "FILL", "ABS", "CEIL", "FLOOR", "PERIOD", "DIFF"}
_FILL_MODES = {"REPEAT", "LINEAR"}
_KEYWORDS = {"AND": "&&", "OR": "||", "NOT": "!"}


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise ExpressionError(f"unexpected character at {pos} in {text!r}: "
                                  f"{text[pos:].strip()[:10]!r}")
        pos = match.end()
        if match.group("num") is not None:
            tokens.append(("num", match.group("num")))
        elif match.group("name") is not None:
            name = match.group("name")
            tokens.append(("op", _KEYWORDS[name]) if name in _KEYWORDS else ("name", name))
        else:
            tokens.append(("op", match.group("op")))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, *ops: str) -> str | None:
        token = self.peek()
        if token and token[0] == "op" and token[1] in ops:
            self.pos += 1
            return token[1]
        return None

    def expect(self, op: str) -> None:
        if not self.take(op):
            found = self.peek()
            raise ExpressionError(f"expected {op!r} in {self.text!r}, found "
                                  f"{found[1] if found else 'end of expression'!r}")

    def parse(self):
        if not self.tokens:
            raise ExpressionError("empty expression")
        node = self.or_()
        if self.peek() is not None:
            raise ExpressionError(f"unexpected {self.peek()[1]!r} in {self.text!r}")
        return node

    def chain(self, operand, *ops: str):
        """operand ((ops) operand)*, left-associative: the or, and, add and mul rules."""
        node = operand()
        while (op := self.take(*ops)):
            node = ("bin", op, node, operand())
        return node

    def or_(self):
        return self.chain(self.and_, "||")

    def and_(self):
        return self.chain(self.not_, "&&")

    def not_(self):
        if self.take("!"):
            return ("not", self.not_())
        return self.cmp()

    def cmp(self):
        node = self.add()
        op = self.take("==", "!=", "<=", ">=", "<", ">")
        if op:
            node = ("bin", op, node, self.add())
            if self.take("==", "!=", "<=", ">=", "<", ">"):
                raise ExpressionError(f"chained comparison in {self.text!r}: use AND")
        return node

    def add(self):
        return self.chain(self.mul, "+", "-")

    def mul(self):
        return self.chain(self.unary, "*", "/")

    def unary(self):
        if self.take("-"):
            return ("neg", self.unary())
        if self.take("+"):
            return self.unary()
        return self.power()

    def power(self):
        node = self.primary()
        if self.take("^"):
            node = ("bin", "^", node, self.unary())
        return node

    def primary(self):
        token = self.peek()
        if token is None:
            raise ExpressionError(f"unexpected end of {self.text!r}")
        kind, value = token
        if kind == "num":
            self.pos += 1
            return ("num", float(value))
        if kind == "name":
            self.pos += 1
            upper = value.upper()
            if self.take("("):
                if upper not in _FUNCTIONS:
                    raise ExpressionError(f"unsupported function {value!r} in {self.text!r} "
                                          f"(supported: {', '.join(sorted(_FUNCTIONS))})")
                args = []
                if not self.take(")"):
                    while True:
                        nxt = self.peek()
                        if upper == "FILL" and len(args) == 1 and nxt and nxt[0] == "name" \
                                and nxt[1].upper() in _FILL_MODES:
                            self.pos += 1
                            args.append(("mode", nxt[1].upper()))
                        else:
                            args.append(self.or_())
                        if self.take(")"):
                            break
                        self.expect(",")
                arity = {"IF": (2, 3), "FILL": (2, 2)}.get(upper, (1, 1))
                if not arity[0] <= len(args) <= arity[1]:
                    raise ExpressionError(f"{upper} takes {arity[0]}"
                                          f"{'' if arity[0] == arity[1] else f'-{arity[1]}'} "
                                          f"arguments, got {len(args)} in {self.text!r}")
                return ("call", upper, args)
            return ("id", value)
        if self.take("("):
            node = self.or_()
            self.expect(")")
            return node
        raise ExpressionError(f"unexpected {value!r} in {self.text!r}")


Series = list[float | None]


def _binary(op: str, a: float, b: float) -> float | None:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        return None if b == 0 else a / b
    if op == "^":
        try:
            result = a ** b
        except (OverflowError, ZeroDivisionError):
            return None
        if isinstance(result, complex) or not math.isfinite(result):
            return None
        return float(result)
    if op == "==":
        return float(a == b)
    if op == "!=":
        return float(a != b)
    if op == "<":
        return float(a < b)
    if op == "<=":
        return float(a <= b)
    if op == ">":
        return float(a > b)
    if op == ">=":
        return float(a >= b)
    if op == "&&":
        return float(a != 0 and b != 0)
    if op == "||":
        return float(a != 0 or b != 0)
    raise ExpressionError(f"unknown operator {op!r}")  # pragma: no cover - parser guards


def _fill(values: Series, how) -> Series:
    if how == "REPEAT":
        out, last = [], None
        for v in values:
            last = v if v is not None else last
            out.append(last)
        return out
    if how == "LINEAR":
        out = list(values)
        known = [i for i, v in enumerate(values) if v is not None]
        for left, right in zip(known, known[1:]):
            for i in range(left + 1, right):
                frac = (i - left) / (right - left)
                out[i] = values[left] + frac * (values[right] - values[left])
        return out
    return [v if v is not None else f for v, f in zip(values, how)]


def _diff(values: Series) -> Series:
    out: Series = []
    last = None
    for v in values:
        out.append(None if v is None or last is None else v - last)
        last = v if v is not None else last
    return out


def evaluate_expression(expression: str, variables: Mapping[str, Series],
                        length: int | None = None, period_s: float | None = None) -> Series:
    """Evaluate one metric-math expression over per-period series (None = missing).

    `variables` maps query ids to equally long series; `length` is needed only when there
    are no variables (a constant expression); `period_s` is what PERIOD(x) returns.
    """
    tree = _Parser(expression).parse()
    if length is None:
        lengths = {len(v) for v in variables.values()}
        if len(lengths) > 1:
            raise ExpressionError(f"series of different lengths: {sorted(lengths)}")
        length = lengths.pop() if lengths else 1

    def broadcast(value) -> Series:
        return value if isinstance(value, list) else [value] * length

    def run(node):
        kind = node[0]
        if kind == "num":
            return node[1]
        if kind == "id":
            if node[1] not in variables:
                raise ExpressionError(f"unknown id {node[1]!r} in {expression!r} (known: "
                                      f"{', '.join(sorted(variables)) or 'none'})")
            return list(variables[node[1]])
        if kind == "neg":
            return [None if v is None else -v for v in broadcast(run(node[1]))]
        if kind == "not":
            return [None if v is None else float(v == 0) for v in broadcast(run(node[1]))]
        if kind == "bin":
            _, op, left, right = node
            a, b = broadcast(run(left)), broadcast(run(right))
            return [None if x is None or y is None else _binary(op, x, y)
                    for x, y in zip(a, b)]
        if kind == "call":
            _, fn, args = node
            if fn == "IF":
                cond = broadcast(run(args[0]))
                then = broadcast(run(args[1]))
                other = broadcast(run(args[2])) if len(args) == 3 else [None] * length
                return [None if c is None else (t if c != 0 else o)
                        for c, t, o in zip(cond, then, other)]
            if fn == "FILL":
                values = broadcast(run(args[0]))
                if args[1][0] == "mode":
                    return _fill(values, args[1][1])
                return _fill(values, broadcast(run(args[1])))
            if fn == "PERIOD":
                if period_s is None:
                    raise ExpressionError(f"PERIOD() needs the query's period in {expression!r}")
                return [float(period_s)] * length
            if fn == "DIFF":
                return _diff(broadcast(run(args[0])))
            func = {"ABS": abs, "CEIL": math.ceil, "FLOOR": math.floor}[fn]
            return [None if v is None else float(func(v)) for v in broadcast(run(args[0]))]
        raise ExpressionError(f"cannot evaluate {node!r}")  # pragma: no cover

    return broadcast(run(tree))
