"""Evaluate the stack's CloudWatch alarms locally against a `local.cloudwatch.metrics.MetricStore`.

    template = json.loads(Path("cdk.out/Bulwark-dev.template.json").read_text())
    store = MetricStore(); store.add_emf_lines(agent_stdout.splitlines())
    results = evaluate_all(template, store, start, end)
    print(render_report(results))

`alarms_from_template` reads every `AWS::CloudWatch::Alarm` of a synthesized template, both
the classic form (MetricName/Namespace/Dimensions/Period with Statistic or
ExtendedStatistic) and the `Metrics` form (MetricStat and Expression entries, one with
ReturnData true) that cdk-monitoring-constructs emits. Values that are CloudFormation
intrinsics (Ref, Fn::GetAtt, Fn::Join, ...) go through `resolve`; the default, `placeholder`,
turns them into readable names such as "AgentFunctionB8994DEA" or
"StateDeadLetterQueue9C4930C8.QueueName".

Evaluation (`evaluate`) follows CloudWatch:

- Periods are epoch-aligned multiples of the alarm's period. Every period whose start lies in
  [floor(start), end) is evaluated once, at its end (the time CloudWatch would evaluate it),
  over the window of the last `evaluation_periods` periods, reaching back before `start`
  where needed. `states` holds (evaluation time = period end, state).
- The alarm is in ALARM when at least `datapoints_to_alarm` (M) of the window's N datapoints
  breach; the state before the first evaluation is INSUFFICIENT_DATA.
- Missing data (a period without a datapoint, or a math result of None):
  * notBreaching: missing counts as not breaching.
  * breaching: missing counts as breaching.
  * ignore: a period without a datapoint leaves the state unchanged (INSUFFICIENT_DATA if
    there never was one); a period with one is evaluated over the last N periods that have
    data (looking back as far as the fetched range: N-1 periods before `start`), with the
    rule of "missing" below when fewer than N are present. Because a missing newest point
    never changes the state, this equals "the window is the last N periods with data".
  * missing (CloudWatch's default): when every point of the window is missing the state is
    INSUFFICIENT_DATA — always, even after the alarm had an OK/ALARM state; this is
    CloudWatch's documented behaviour ("If all data points in the alarm evaluation range are
    missing, the alarm transitions to INSUFFICIENT_DATA"). Otherwise only the present
    points count: ALARM when at least min(M, present) of them breach, i.e. when fewer than M
    points are present, all of them must breach (CloudWatch's table for 3-of-5: "- - X - -"
    is ALARM, "0 - X - X" is OK).
- EvaluateLowSampleCountPercentile "ignore" on a percentile alarm: when the newest period
  has fewer than 10/(1-p) samples (10/p below p50) but more than zero, the state is
  unchanged (CloudWatch: "the alarm state does not change during periods with too few data
  points"); with "evaluate" or unset it is evaluated like any other period.

Metric math (`evaluate_expression`) is a small parser, never `eval()`; it evaluates whole
series period by period with None for missing:

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
             | ABS(x) | CEIL(x) | FLOOR(x) | PERIOD(x)

Any operation with a missing operand is missing; division by zero is missing; IF takes `a`
where `cond` is non-zero, `b` (missing when omitted) where it is zero, missing where `cond`
is missing; FILL replaces missing points (REPEAT: last earlier value, LINEAR: interpolated
between neighbours). FILL(x, 0) yields 0 even for a metric with no data at all in the range
(CloudWatch may return no datapoints then), so the stack's rate alarms read 0 % on an idle
model; with their notBreaching treatment both readings give OK.

What is not modelled: anomaly-detection alarms (ThresholdMetricId) and the band comparison
operators (rejected with ValueError), the alarm Unit filter, metric math functions other than
the ones above, per-query periods that differ from the alarm's period (every query is read
at the alarm's period), and the delay before CloudWatch sees a datapoint.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from local.cloudwatch.metrics import MetricStore, parse_statistic

__all__ = [
    "AlarmDefinition", "AlarmResult", "ExpressionError", "MetricDataQuery", "MetricQuery",
    "alarms_from_template", "evaluate", "evaluate_all", "evaluate_expression", "placeholder",
    "render_report",
]

COMPARISONS = {
    "GreaterThanThreshold": (">", lambda v, t: v > t),
    "GreaterThanOrEqualToThreshold": (">=", lambda v, t: v >= t),
    "LessThanThreshold": ("<", lambda v, t: v < t),
    "LessThanOrEqualToThreshold": ("<=", lambda v, t: v <= t),
}
MISSING_DATA = ("missing", "notBreaching", "breaching", "ignore")
OK, ALARM, INSUFFICIENT = "OK", "ALARM", "INSUFFICIENT_DATA"


# --- definitions ---------------------------------------------------------------------------
@dataclass(frozen=True)
class MetricQuery:
    """One metric with a statistic over a period (a MetricStat, or a classic alarm's metric)."""

    namespace: str
    name: str
    dimensions: dict[str, str]
    statistic: str  # Sum, Average, Minimum, Maximum, SampleCount or pNN[.N]
    period_s: int


@dataclass(frozen=True)
class MetricDataQuery:
    """One entry of an alarm's `Metrics` list: a `metric` or an `expression` over other ids."""

    id: str
    expression: str | None = None
    metric: MetricQuery | None = None
    return_data: bool = True
    label: str | None = None


@dataclass
class AlarmDefinition:
    """A CloudWatch alarm as `evaluate` needs it.

    `metric` is set for a single-metric alarm (the classic properties, or a `Metrics` list
    that is one MetricStat); `queries` is the `Metrics` list as written (empty for the
    classic form). `datapoints_to_alarm` defaults to `evaluation_periods`, as in CloudWatch.
    """

    logical_id: str
    name: str
    description: str = ""
    metric: MetricQuery | None = None
    queries: list[MetricDataQuery] = field(default_factory=list)
    period_s: int = 60
    threshold: float = 0.0
    comparison: str = "GreaterThanThreshold"
    evaluation_periods: int = 1
    datapoints_to_alarm: int | None = None
    treat_missing_data: str = "missing"
    evaluate_low_sample_count_percentile: str | None = None

    def __post_init__(self) -> None:
        if self.datapoints_to_alarm is None:
            self.datapoints_to_alarm = self.evaluation_periods
        where = f"alarm {self.logical_id}"
        if self.comparison not in COMPARISONS:
            raise ValueError(f"{where}: unsupported ComparisonOperator {self.comparison!r} "
                             f"(supported: {', '.join(COMPARISONS)})")
        if self.treat_missing_data not in MISSING_DATA:
            raise ValueError(f"{where}: TreatMissingData must be one of "
                             f"{', '.join(MISSING_DATA)}, got {self.treat_missing_data!r}")
        if not (isinstance(self.period_s, int) and self.period_s > 0):
            raise ValueError(f"{where}: period_s must be a positive integer, "
                             f"got {self.period_s!r}")
        if not 1 <= self.datapoints_to_alarm <= self.evaluation_periods:
            raise ValueError(f"{where}: need 1 <= DatapointsToAlarm ({self.datapoints_to_alarm})"
                             f" <= EvaluationPeriods ({self.evaluation_periods})")
        if self.metric is None and not self.queries:
            raise ValueError(f"{where}: has neither a metric nor Metrics queries")
        if self.metric is None:
            self.return_query()  # validates ReturnData

    @property
    def operator(self) -> str:
        return COMPARISONS[self.comparison][0]

    def breaches(self, value: float) -> bool:
        return COMPARISONS[self.comparison][1](value, self.threshold)

    def return_query(self) -> MetricDataQuery:
        """The query whose values the alarm compares (ReturnData true)."""
        returned = [q for q in self.queries if q.return_data]
        if len(returned) != 1:
            raise ValueError(f"alarm {self.logical_id}: exactly one Metrics entry must have "
                             f"ReturnData true, got {[q.id for q in returned]}")
        return returned[0]


@dataclass
class AlarmResult:
    """`states`: (evaluation time = end of the newest period, state) per evaluated period;
    `values`: (period start, value compared against the threshold) for the same periods;
    `worst`: the most breaching-direction value seen (max for Greater*, min for Less*)."""

    alarm: AlarmDefinition
    fired: bool
    first_alarm_at: float | None
    states: list[tuple[float, str]]
    worst: float | None
    values: list[tuple[float, float | None]] = field(default_factory=list)

    @property
    def final_state(self) -> str:
        return self.states[-1][1] if self.states else INSUFFICIENT

    def why_not(self, run_s: float | None = None) -> str:
        """Why an alarm whose metric breached did not fire ("" when it fired or never
        breached), e.g. "needs 3 of 3 periods of 300 s; 1 breached; the run lasted 72 s"."""
        a = self.alarm
        breached = sum(1 for _, v in self.values if v is not None and a.breaches(v))
        if self.fired or not breached:
            return ""
        why = (f"needs {a.datapoints_to_alarm} of {a.evaluation_periods} periods of "
               f"{a.period_s} s; {breached} breached")
        if run_s is not None:
            why += f"; the run lasted {run_s:.0f} s"
        return why


# --- template ------------------------------------------------------------------------------
def placeholder(value: Any) -> str:
    """A readable stand-in for a CloudFormation intrinsic: Ref -> the logical id, GetAtt ->
    "LogicalId.Attribute", Join -> the joined parts, Sub -> its template string."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, dict) and len(value) == 1:
        (fn, arg), = value.items()
        if fn == "Ref" and isinstance(arg, str):
            return arg
        if fn == "Fn::GetAtt":
            if isinstance(arg, list):
                return ".".join(placeholder(a) for a in arg)
            return str(arg)
        if fn == "Fn::Join" and isinstance(arg, list) and len(arg) == 2 \
                and isinstance(arg[1], list):
            return str(arg[0]).join(placeholder(p) for p in arg[1])
        if fn == "Fn::Sub":
            return arg[0] if isinstance(arg, list) else str(arg)
        if fn == "Fn::Select" and isinstance(arg, list) and len(arg) == 2 \
                and isinstance(arg[1], list):
            try:
                return placeholder(arg[1][int(arg[0])])
            except (ValueError, IndexError):
                pass
    return json.dumps(value, sort_keys=True)


def _number(value: Any, what: str, resolve: Callable[[Any], str]) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    text = value if isinstance(value, str) else resolve(value)
    try:
        return float(text)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None


def _text(value: Any, resolve: Callable[[Any], str]) -> str:
    return value if isinstance(value, str) else str(resolve(value))


def _dimensions(raw: Any, resolve: Callable[[Any], str], what: str) -> dict[str, str]:
    dims: dict[str, str] = {}
    for entry in raw or []:
        if not isinstance(entry, dict) or "Name" not in entry or "Value" not in entry:
            raise ValueError(f"{what}: a dimension needs Name and Value, got {entry!r}")
        dims[_text(entry["Name"], resolve)] = _text(entry["Value"], resolve)
    return dims


def _return_data(raw: Any) -> bool:
    if isinstance(raw, str):
        return raw.lower() != "false"
    return True if raw is None else bool(raw)


def alarms_from_template(template: Mapping[str, Any],
                         resolve: Callable[[Any], str] | None = None) -> list[AlarmDefinition]:
    """Every `AWS::CloudWatch::Alarm` of a synthesized template, in template order."""
    res = resolve or placeholder
    alarms: list[AlarmDefinition] = []
    for logical_id, resource in (template.get("Resources") or {}).items():
        if not isinstance(resource, dict) or resource.get("Type") != "AWS::CloudWatch::Alarm":
            continue
        props = resource.get("Properties") or {}
        what = f"alarm {logical_id}"
        if "ThresholdMetricId" in props:
            raise ValueError(f"{what}: anomaly-detection alarms (ThresholdMetricId) are not "
                             "supported")
        evaluation_periods = int(_number(props.get("EvaluationPeriods"),
                                         f"{what} EvaluationPeriods", res))
        datapoints = props.get("DatapointsToAlarm")
        metric: MetricQuery | None = None
        queries: list[MetricDataQuery] = []
        if props.get("Metrics"):
            for entry in props["Metrics"]:
                qid = _text(entry.get("Id", ""), res)
                stat = entry.get("MetricStat")
                query_metric = None
                if stat:
                    m = stat.get("Metric") or {}
                    query_metric = MetricQuery(
                        namespace=_text(m.get("Namespace", ""), res),
                        name=_text(m.get("MetricName", ""), res),
                        dimensions=_dimensions(m.get("Dimensions"), res, f"{what} {qid}"),
                        statistic=_text(stat.get("Stat", ""), res),
                        period_s=int(_number(stat.get("Period", entry.get("Period", 60)),
                                             f"{what} {qid} Period", res)))
                    parse_statistic(query_metric.statistic)
                expression = entry.get("Expression")
                if query_metric is None and expression is None:
                    raise ValueError(f"{what}: Metrics entry {qid!r} has neither MetricStat nor "
                                     "Expression")
                queries.append(MetricDataQuery(
                    id=qid, expression=None if expression is None else _text(expression, res),
                    metric=query_metric, return_data=_return_data(entry.get("ReturnData")),
                    label=entry.get("Label") if isinstance(entry.get("Label"), str) else None))
            returned = [q for q in queries if q.return_data]
            if len(returned) > 1:  # ReturnData defaults to true: keep the explicit one
                explicit = [q for q, e in zip(queries, props["Metrics"])
                            if q.return_data and "ReturnData" in e]
                returned = explicit if len(explicit) == 1 else returned
                queries = [q if any(q is r for r in returned) else MetricDataQuery(
                    q.id, q.expression, q.metric, False, q.label) for q in queries]
            if len(queries) == 1 and queries[0].metric is not None:
                metric = queries[0].metric
            stat_periods = [q.metric.period_s for q in queries if q.metric is not None]
            ret = [q for q in queries if q.return_data]
            if ret and ret[0].metric is not None:
                period = ret[0].metric.period_s
            elif "Period" in props:
                period = int(_number(props["Period"], f"{what} Period", res))
            elif stat_periods:
                period = max(stat_periods)
            else:
                period = 60
        else:
            if "ExtendedStatistic" in props:
                statistic = _text(props["ExtendedStatistic"], res)
            elif "Statistic" in props:
                statistic = _text(props["Statistic"], res)
            else:
                raise ValueError(f"{what}: needs Statistic, ExtendedStatistic or Metrics")
            parse_statistic(statistic)
            period = int(_number(props.get("Period", 60), f"{what} Period", res))
            metric = MetricQuery(
                namespace=_text(props.get("Namespace", ""), res),
                name=_text(props.get("MetricName", ""), res),
                dimensions=_dimensions(props.get("Dimensions"), res, what),
                statistic=statistic, period_s=period)
        alarms.append(AlarmDefinition(
            logical_id=logical_id,
            name=_text(props.get("AlarmName", logical_id), res),
            description=_text(props.get("AlarmDescription", ""), res),
            metric=metric, queries=queries, period_s=period,
            threshold=_number(props.get("Threshold"), f"{what} Threshold", res),
            comparison=_text(props.get("ComparisonOperator", ""), res),
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=None if datapoints is None else int(
                _number(datapoints, f"{what} DatapointsToAlarm", res)),
            treat_missing_data=_text(props.get("TreatMissingData", "missing"), res),
            evaluate_low_sample_count_percentile=props.get("EvaluateLowSampleCountPercentile")))
    return alarms


# --- metric math ---------------------------------------------------------------------------
class ExpressionError(ValueError):
    """A metric-math expression this evaluator cannot parse or evaluate."""


_TOKEN = re.compile(r"""\s*(?:
    (?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|&&|\|\||[-+*/^(),<>!])
)""", re.VERBOSE)
_FUNCTIONS = {"IF", "FILL", "ABS", "CEIL", "FLOOR", "PERIOD"}
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

    def or_(self):
        node = self.and_()
        while self.take("||"):
            node = ("bin", "||", node, self.and_())
        return node

    def and_(self):
        node = self.not_()
        while self.take("&&"):
            node = ("bin", "&&", node, self.not_())
        return node

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
        node = self.mul()
        while (op := self.take("+", "-")):
            node = ("bin", op, node, self.mul())
        return node

    def mul(self):
        node = self.unary()
        while (op := self.take("*", "/")):
            node = ("bin", op, node, self.unary())
        return node

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
            func = {"ABS": abs, "CEIL": math.ceil, "FLOOR": math.floor}[fn]
            return [None if v is None else float(func(v)) for v in broadcast(run(args[0]))]
        raise ExpressionError(f"cannot evaluate {node!r}")  # pragma: no cover

    return broadcast(run(tree))


def _query_values(alarm: AlarmDefinition, store: MetricStore, start: float,
                  end: float) -> list[tuple[float, float | None]]:
    """The series the alarm compares, one value per alarm period in [start, end)."""
    period = alarm.period_s

    def fetch(m: MetricQuery) -> list[tuple[float, float | None]]:
        return store.series(m.namespace, m.name, m.dimensions, m.statistic, period, start, end)

    if alarm.metric is not None:
        return fetch(alarm.metric)
    grid = [start + k * period for k in range(math.ceil((end - start) / period))]
    by_id = {q.id: q for q in alarm.queries}
    done: dict[str, Series] = {}
    busy: set[str] = set()

    def values_of(qid: str) -> Series:
        if qid in done:
            return done[qid]
        if qid in busy:
            raise ExpressionError(f"alarm {alarm.logical_id}: Metrics ids refer to each other "
                                  f"in a cycle through {qid!r}")
        query = by_id[qid]
        busy.add(qid)
        if query.metric is not None:
            result = [v for _, v in fetch(query.metric)]
        else:
            names = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", query.expression))
            variables = {n: values_of(n) for n in names if n in by_id}
            result = evaluate_expression(query.expression, variables, len(grid), period)
        busy.discard(qid)
        done[qid] = result
        return result

    return list(zip(grid, values_of(alarm.return_query().id)))


# --- evaluation ----------------------------------------------------------------------------
def _low_sample_threshold(statistic: str) -> float | None:
    kind, p = parse_statistic(statistic)  # p in percent: 10/(1-p/100) == 1000/(100-p)
    if kind != "p" or p in (0, 100):
        return None
    return 1000 / (100 - p) if p >= 50 else 1000 / p


def _window_state(alarm: AlarmDefinition, window: list[float | None],
                  previous: str) -> str:
    m = alarm.datapoints_to_alarm
    mode = alarm.treat_missing_data
    if mode in ("notBreaching", "breaching"):
        missing_breaches = mode == "breaching"
        breaching = sum(missing_breaches if v is None else alarm.breaches(v) for v in window)
        return ALARM if breaching >= m else OK
    present = [v for v in window if v is not None]
    if not present:
        return previous if mode == "ignore" else INSUFFICIENT
    breaching = sum(alarm.breaches(v) for v in present)
    return ALARM if breaching >= min(m, len(present)) else OK


def evaluate(alarm: AlarmDefinition, store: MetricStore, start: float,
             end: float) -> AlarmResult:
    """Replay the alarm over [start, end) (see the module docstring for the rules)."""
    period, n = alarm.period_s, alarm.evaluation_periods
    first = math.floor(start / period) * period
    lookback = n - 1
    values = _query_values(alarm, store, first - lookback * period, end)
    need = None
    samples: list[tuple[float, float | None]] = []
    if (alarm.metric is not None and alarm.evaluate_low_sample_count_percentile == "ignore"
            and (need := _low_sample_threshold(alarm.metric.statistic)) is not None):
        m = alarm.metric
        samples = store.series(m.namespace, m.name, m.dimensions, "SampleCount", period,
                               first - lookback * period, end)
    state = INSUFFICIENT
    states: list[tuple[float, str]] = []
    for i in range(lookback, len(values)):
        count = samples[i][1] if samples else None
        if need is not None and count and count < need:
            pass  # too few samples for the percentile: the state does not change
        elif alarm.treat_missing_data == "ignore":
            if values[i][1] is not None:  # no new datapoint: the state does not change
                window = [v for _, v in values[:i + 1] if v is not None][-n:]
                state = _window_state(alarm, window, state)
        else:
            state = _window_state(alarm, [v for _, v in values[i - lookback:i + 1]], state)
        states.append((values[i][0] + period, state))
    evaluated = values[lookback:]
    present = [v for _, v in evaluated if v is not None]
    worst = None
    if present:
        worst = max(present) if alarm.comparison.startswith("Greater") else min(present)
    first_alarm = next((t for t, s in states if s == ALARM), None)
    return AlarmResult(alarm=alarm, fired=first_alarm is not None, first_alarm_at=first_alarm,
                       states=states, worst=worst, values=evaluated)


def evaluate_all(template: Mapping[str, Any], store: MetricStore, start: float, end: float,
                 resolve: Callable[[Any], str] | None = None) -> list[AlarmResult]:
    """`evaluate` for every alarm of the template."""
    return [evaluate(a, store, start, end) for a in alarms_from_template(template, resolve)]


# --- report --------------------------------------------------------------------------------
def _when(t: float | None) -> str:
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _num(v: float | None) -> str:
    if v is None:
        return "no data"
    return f"{v:.6g}"


def render_report(results: Iterable[AlarmResult], run_s: float | None = None) -> str:
    """A fixed-width table: alarm name, fired?, first ALARM time (UTC), worst value against the
    threshold, M of N, missing-data treatment, the final state and, for an alarm whose metric
    breached without firing, why not (`run_s`: how long the run lasted); then a total."""
    results = list(results)
    header = ("Alarm", "Fired", "First ALARM (UTC)", "Worst vs threshold", "M of N",
              "Missing data", "Final state", "Why it did not fire")
    rows = []
    for r in results:
        a = r.alarm
        rows.append((
            a.name, "YES" if r.fired else "no", _when(r.first_alarm_at),
            f"{_num(r.worst)} {a.operator} {_num(a.threshold)}",
            f"{a.datapoints_to_alarm} of {a.evaluation_periods} x {a.period_s}s",
            a.treat_missing_data, r.final_state, r.why_not(run_s) or "-"))
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]

    def line(row) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip()

    out = [line(header), line(["-" * w for w in widths])]
    out += [line(row) for row in rows]
    fired = sum(r.fired for r in results)
    out.append(f"{fired} of {len(results)} alarms fired")
    return "\n".join(out)
