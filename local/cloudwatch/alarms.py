"""Evaluate the stack's CloudWatch alarms locally against a run's metrics (a
`local.cloudwatch.metrics.MetricStore`, or local CloudWatch: `local.cloudwatch.api`).

    template = json.loads(Path("cdk.out/Bulwark-dev.template.json").read_text())
    store = MetricStore(); store.add_emf_lines(agent_stdout.splitlines())
    results = evaluate_all(template, store, start, end)
    print(render_report(results))

The alarms come from `local.cloudwatch.alarm_template.alarms_from_template`, metric math from
`local.cloudwatch.metric_math.evaluate_expression`.

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

Anomaly-detection alarms (`ThresholdMetricId`): the band of each period comes from
`local.cloudwatch.bands.seasonal_bands` over the compared series, read back
`BAND_HISTORY_DAYS` days before `start` (the history a band learns from); a period whose band
is not trained yet (too little history) counts as missing, so a new deployment's band alarms
stay quiet. Composite alarms: `evaluate_composites` replays each rule over the states of the
alarms it names (a child's state holds from its evaluation until its next one).

Not modelled: the alarm Unit filter, per-query periods that differ from the alarm's period
(every query is read at the alarm's period), and the delay before CloudWatch sees a datapoint.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from local.cloudwatch.alarm_template import (RULE_TERM, AlarmDefinition, CompositeDefinition,
                                             MetricQuery, alarms_from_template,
                                             composites_from_template)
from local.cloudwatch.bands import DAY_S, seasonal_bands
from local.cloudwatch.metric_math import ExpressionError, Series, evaluate_expression
from local.cloudwatch.metrics import MetricStore, parse_statistic

__all__ = ["AlarmResult", "CompositeResult", "evaluate", "evaluate_all",
           "evaluate_composites", "render_report"]

OK, ALARM, INSUFFICIENT = "OK", "ALARM", "INSUFFICIENT_DATA"
#: days of history an anomaly-detection alarm's band is computed from (CloudWatch: two weeks)
BAND_HISTORY_DAYS = 14


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
    #: per evaluated period: whether it breached (None: missing, or a band not trained yet)
    breached: list[bool | None] = field(default_factory=list)
    #: anomaly-detection alarms: the band (lower, upper) per evaluated period, or None
    bands: list[tuple[float, float] | None] = field(default_factory=list)

    @property
    def final_state(self) -> str:
        return self.states[-1][1] if self.states else INSUFFICIENT

    def why_not(self, run_s: float | None = None) -> str:
        """Why an alarm whose metric breached did not fire ("" when it fired or never
        breached), e.g. "needs 3 of 3 periods of 300 s; 1 breached; the run lasted 72 s"."""
        a = self.alarm
        breached = sum(1 for b in self.breached if b)
        if self.fired or not breached:
            return ""
        why = (f"needs {a.datapoints_to_alarm} of {a.evaluation_periods} periods of "
               f"{a.period_s} s; {breached} breached")
        if run_s is not None:
            why += f"; the run lasted {run_s:.0f} s"
        return why


def _query_values(alarm: AlarmDefinition, store: MetricStore, start: float, end: float,
                  qid: str | None = None) -> list[tuple[float, float | None]]:
    """The series the alarm compares (or its Metrics entry `qid`), one value per alarm period
    in [start, end)."""
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

    return list(zip(grid, values_of(qid or alarm.return_query().id)))


# --- evaluation ----------------------------------------------------------------------------
def _low_sample_threshold(statistic: str) -> float | None:
    kind, p = parse_statistic(statistic)  # p in percent: 10/(1-p/100) == 1000/(100-p)
    if kind != "p" or p in (0, 100):
        return None
    return 1000 / (100 - p) if p >= 50 else 1000 / p


def _window_state(alarm: AlarmDefinition, window: list[bool | None],
                  previous: str) -> str:
    """The state from the window's breach flags (None: missing)."""
    m = alarm.datapoints_to_alarm
    mode = alarm.treat_missing_data
    if mode in ("notBreaching", "breaching"):
        missing_breaches = mode == "breaching"
        breaching = sum(missing_breaches if b is None else b for b in window)
        return ALARM if breaching >= m else OK
    present = [b for b in window if b is not None]
    if not present:
        return previous if mode == "ignore" else INSUFFICIENT
    breaching = sum(present)
    return ALARM if breaching >= min(m, len(present)) else OK


def evaluate(alarm: AlarmDefinition, store: MetricStore, start: float,
             end: float) -> AlarmResult:
    """Replay the alarm over [start, end) (see the module docstring for the rules)."""
    period, n = alarm.period_s, alarm.evaluation_periods
    first = math.floor(start / period) * period
    lookback = n - 1
    bands: list[tuple[float, float] | None] = []
    if alarm.threshold_metric_id:
        history = BAND_HISTORY_DAYS * DAY_S // period
        values = _query_values(alarm, store, first - (lookback + history) * period, end)
        band_id, k = alarm.band_query()
        source = values if band_id == alarm.return_query().id else _query_values(
            alarm, store, first - (lookback + history) * period, end, band_id)
        bands = seasonal_bands([v for _, v in source], period, k)[history:]
        values = values[history:]
        flags = [None if v is None or b is None else alarm.breaches(v, b)
                 for (_, v), b in zip(values, bands)]
    else:
        values = _query_values(alarm, store, first - lookback * period, end)
        flags = [None if v is None else alarm.breaches(v) for _, v in values]
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
            if flags[i] is not None:  # no new datapoint: the state does not change
                window = [b for b in flags[:i + 1] if b is not None][-n:]
                state = _window_state(alarm, window, state)
        else:
            state = _window_state(alarm, flags[i - lookback:i + 1], state)
        states.append((values[i][0] + period, state))
    evaluated = values[lookback:]
    present = [v for _, v in evaluated if v is not None]
    worst = None
    if present:
        worst = max(present) if alarm.comparison.startswith("Greater") else min(present)
    first_alarm = next((t for t, s in states if s == ALARM), None)
    return AlarmResult(alarm=alarm, fired=first_alarm is not None, first_alarm_at=first_alarm,
                       states=states, worst=worst, values=evaluated,
                       breached=flags[lookback:], bands=bands[lookback:])


def evaluate_all(template: Mapping[str, Any], store: MetricStore, start: float, end: float,
                 resolve: Callable[[Any], str] | None = None) -> list[AlarmResult]:
    """`evaluate` for every alarm of the template."""
    return [evaluate(a, store, start, end) for a in alarms_from_template(template, resolve)]


# --- composite alarms ----------------------------------------------------------------------
@dataclass
class CompositeResult:
    """A composite alarm replayed: `states` (time, state) at every change of a child."""

    composite: CompositeDefinition
    fired: bool
    first_alarm_at: float | None
    states: list[tuple[float, str]]

    @property
    def final_state(self) -> str:
        return self.states[-1][1] if self.states else INSUFFICIENT


_RULE_TOKEN = re.compile(r"\s*(?:(?P<term>(?:ALARM|OK|INSUFFICIENT_DATA)\([^)]*\))"
                         r"|(?P<word>AND|OR|NOT|TRUE|FALSE)\b|(?P<paren>[()]))")


def rule_holds(rule: str, states: Mapping[str, str]) -> bool:
    """Whether a composite alarm's rule holds for `states` (child logical id -> state).

    Grammar: or := and ("OR" and)*; and := not ("AND" not)*; not := "NOT" not | atom;
    atom := ALARM("ref") | OK("ref") | INSUFFICIENT_DATA("ref") | TRUE | FALSE | "(" or ")".
    A child not in `states` is INSUFFICIENT_DATA."""
    tokens, pos = [], 0
    while pos < len(rule.rstrip()):
        match = _RULE_TOKEN.match(rule, pos)
        if not match:
            raise ValueError(f"cannot read the alarm rule {rule!r} at {pos}: "
                             f"{rule[pos:pos + 20]!r}")
        tokens.append(match.group(match.lastgroup))
        pos = match.end()
    at = 0

    def take(word: str) -> bool:
        nonlocal at
        if at < len(tokens) and tokens[at] == word:
            at += 1
            return True
        return False

    def or_() -> bool:
        value = and_()
        while take("OR"):
            value = and_() or value
        return value

    def and_() -> bool:
        value = not_()
        while take("AND"):
            value = not_() and value
        return value

    def not_() -> bool:
        return not not_() if take("NOT") else atom()

    def atom() -> bool:
        nonlocal at
        if take("("):
            value = or_()
            if not take(")"):
                raise ValueError(f"unbalanced parentheses in the alarm rule {rule!r}")
            return value
        if take("TRUE"):
            return True
        if take("FALSE"):
            return False
        if at >= len(tokens):
            raise ValueError(f"the alarm rule {rule!r} ends early")
        term = RULE_TERM.match(tokens[at])
        if not term:
            raise ValueError(f"unexpected {tokens[at]!r} in the alarm rule {rule!r}")
        at += 1
        child = term.group(2).split(".")[0]
        return states.get(child, INSUFFICIENT) == term.group(1)

    value = or_()
    if at != len(tokens):
        raise ValueError(f"unexpected {tokens[at]!r} in the alarm rule {rule!r}")
    return value


def evaluate_composites(template: Mapping[str, Any], results: Iterable[AlarmResult],
                        resolve: Callable[[Any], str] | None = None) -> list[CompositeResult]:
    """Replay every composite alarm of the template over its children's replayed `results`
    (children are matched by logical id)."""
    by_id = {r.alarm.logical_id: r for r in results}
    out = []
    for composite in composites_from_template(template, resolve):
        missing = [c for c in composite.children if c not in by_id]
        if missing:
            raise ValueError(f"composite alarm {composite.logical_id}: its rule names alarms "
                             f"without results: {missing}")
        events = sorted({t for c in composite.children for t, _ in by_id[c].states})
        cursor = {c: 0 for c in composite.children}
        current: dict[str, str] = {}
        states: list[tuple[float, str]] = []
        for t in events:
            for c in composite.children:
                child_states = by_id[c].states
                while cursor[c] < len(child_states) and child_states[cursor[c]][0] <= t:
                    current[c] = child_states[cursor[c]][1]
                    cursor[c] += 1
            states.append((t, ALARM if rule_holds(composite.rule, current) else OK))
        first = next((t for t, s in states if s == ALARM), None)
        out.append(CompositeResult(composite, first is not None, first, states))
    return out


# --- report --------------------------------------------------------------------------------
def _when(t: float | None) -> str:
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _num(v: float | None) -> str:
    if v is None:
        return "no data"
    return f"{v:.6g}"


def _threshold_text(r: AlarmResult) -> str:
    if not r.alarm.threshold_metric_id:
        return _num(r.alarm.threshold)
    trained = [b for b in r.bands if b is not None]
    if not trained:
        return "band (not trained: no history)"
    return f"band ({_num(trained[-1][0])}..{_num(trained[-1][1])} at the end)"


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
            f"{_num(r.worst)} {a.operator} {_threshold_text(r)}",
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
