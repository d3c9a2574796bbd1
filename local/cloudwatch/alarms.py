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

from local.cloudwatch.alarm_template import AlarmDefinition, MetricQuery, alarms_from_template
from local.cloudwatch.metric_math import ExpressionError, Series, evaluate_expression
from local.cloudwatch.metrics import MetricStore, parse_statistic

__all__ = ["AlarmResult", "evaluate", "evaluate_all", "render_report"]

OK, ALARM, INSUFFICIENT = "OK", "ALARM", "INSUFFICIENT_DATA"


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
