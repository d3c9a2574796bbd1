"""local.cloudwatch.alarms: CloudWatch alarm semantics on synthetic series, alarms with metric
math, template parsing (no I/O; the expression grammar: test_cloudwatch_metric_math)."""

from __future__ import annotations

import pytest

from local.cloudwatch.alarm_template import (
    AlarmDefinition,
    MetricDataQuery,
    MetricQuery,
    alarms_from_template,
)
from local.cloudwatch.alarms import evaluate, evaluate_all, render_report
from local.cloudwatch.metric_math import ExpressionError
from local.cloudwatch.metrics import Datapoint, MetricStore

T0 = 1_800_000_000 // 3600 * 3600
P = 60
X = 9.0  # breaching (threshold 5)
O = 1.0  # not breaching  # noqa: E741


def store_of(values, name="M", period=P, dims=None, start=T0) -> MetricStore:
    """One datapoint per period (None = no datapoint), a second into the period."""
    store = MetricStore()
    for i, v in enumerate(values):
        if v is not None:
            store.add(Datapoint.of(start + i * period + 1, "Test", name, v, dims))
    return store


def alarm(m=1, n=1, missing="notBreaching", comparison="GreaterThanThreshold", threshold=5.0,
          statistic="Maximum", period=P, **kw) -> AlarmDefinition:
    return AlarmDefinition(
        logical_id="TestAlarm", name="test-alarm", description="synthetic",
        metric=MetricQuery("Test", "M", {}, statistic, period), period_s=period,
        threshold=threshold, comparison=comparison, evaluation_periods=n,
        datapoints_to_alarm=m, treat_missing_data=missing, **kw)


def states(result):
    return [s for _, s in result.states]


def run(values, **kw):
    return evaluate(alarm(**kw), store_of(values), T0, T0 + len(values) * P)


# --- M of N --------------------------------------------------------------------------------
def test_three_of_five_fires_on_the_third_breach_inside_the_window():
    result = run([X, O, X, O, X, O, O, O], m=3, n=5)
    assert states(result) == ["OK", "OK", "OK", "OK", "ALARM", "OK", "OK", "OK"]
    assert result.fired
    assert result.first_alarm_at == T0 + 5 * P  # evaluated at the end of the 5th minute
    assert [t for t, _ in result.states] == [T0 + (i + 1) * P for i in range(8)]
    assert result.worst == X


def test_three_breaches_spread_over_more_than_five_periods_do_not_fire():
    result = run([X, O, X, O, O, X, O], m=3, n=5)
    assert not result.fired
    assert result.first_alarm_at is None
    assert set(states(result)) == {"OK"}


def test_the_window_reaches_back_before_start():
    store = store_of([X, X, X, O])  # two breaches before the evaluated range
    result = evaluate(alarm(m=3, n=3), store, T0 + 2 * P, T0 + 4 * P)
    assert states(result) == ["ALARM", "OK"]
    assert [v for _, v in result.values] == [X, O]


def test_unaligned_start_is_floored_to_the_period_grid():
    result = evaluate(alarm(), store_of([O, X]), T0 + 30, T0 + 2 * P)
    assert [t for t, _ in result.states] == [T0 + P, T0 + 2 * P]
    assert result.first_alarm_at == T0 + 2 * P


# --- comparison at the threshold -----------------------------------------------------------
@pytest.mark.parametrize("comparison, fires", [
    ("GreaterThanThreshold", False), ("GreaterThanOrEqualToThreshold", True),
    ("LessThanThreshold", False), ("LessThanOrEqualToThreshold", True),
])
def test_a_value_equal_to_the_threshold(comparison, fires):
    result = run([80.0], comparison=comparison, threshold=80.0)
    assert result.fired is fires


def test_less_than_alarms_report_the_lowest_value_as_worst():
    result = run([30.0, 10.0, 20.0], comparison="LessThanThreshold", threshold=15.0)
    assert result.worst == 10.0
    assert states(result) == ["OK", "ALARM", "OK"]


# --- missing data --------------------------------------------------------------------------
# CloudWatch's 3-of-5 examples (- missing, X breaching, 0 not breaching): the state after the
# last period of each pattern. For "--X--" ignore keeps the state it took when X arrived.
@pytest.mark.parametrize("pattern, expected", [
    ("0-X-X", {"missing": "OK", "ignore": "OK", "breaching": "ALARM", "notBreaching": "OK"}),
    ("----0", {"missing": "OK", "ignore": "OK", "breaching": "ALARM", "notBreaching": "OK"}),
    ("0XX-X", {"missing": "ALARM", "ignore": "ALARM", "breaching": "ALARM",
               "notBreaching": "ALARM"}),
    ("--X--", {"missing": "ALARM", "ignore": "ALARM", "breaching": "ALARM",
               "notBreaching": "OK"}),
])
@pytest.mark.parametrize("mode", ["missing", "ignore", "breaching", "notBreaching"])
def test_missing_data_treatments_on_a_three_of_five_window(pattern, expected, mode):
    values = [{"-": None, "X": X, "0": O}[c] for c in pattern]
    result = run(values, m=3, n=5, missing=mode)
    assert result.states[-1] == (T0 + 5 * P, expected[mode])


def test_all_missing_window_modes():
    # one breach, then silence for longer than the window
    values = [X, None, None, None, None, None]
    by_mode = {mode: states(run(values, m=1, n=3, missing=mode))
               for mode in ("missing", "ignore", "breaching", "notBreaching")}
    assert by_mode["notBreaching"] == ["ALARM", "ALARM", "ALARM", "OK", "OK", "OK"]
    assert by_mode["breaching"] == ["ALARM"] * 6
    # ignore keeps the last state; missing goes to INSUFFICIENT_DATA once the window is empty
    assert by_mode["ignore"] == ["ALARM"] * 6
    assert by_mode["missing"] == ["ALARM", "ALARM", "ALARM", "INSUFFICIENT_DATA",
                                  "INSUFFICIENT_DATA", "INSUFFICIENT_DATA"]


def test_ignore_uses_the_last_n_periods_that_have_data():
    # 2 of 3: the breaches at minutes 1 and 5 are 4 periods apart but adjacent in the data
    values = [O, X, None, None, None, X, O]
    result = run(values, m=2, n=3, missing="ignore")
    assert states(result) == ["OK", "OK", "OK", "OK", "OK", "ALARM", "ALARM"]
    assert not run(values, m=2, n=3, missing="notBreaching").fired
    # "missing" looks at a fixed window: a lone breach with fewer than M points present alarms
    assert states(run(values, m=2, n=3, missing="missing")) == [
        "OK", "OK", "OK", "ALARM", "INSUFFICIENT_DATA", "ALARM", "OK"]


@pytest.mark.parametrize("mode, state, fired", [
    ("missing", "INSUFFICIENT_DATA", False), ("ignore", "INSUFFICIENT_DATA", False),
    ("notBreaching", "OK", False), ("breaching", "ALARM", True),
])
def test_an_alarm_that_never_gets_data(mode, state, fired):
    result = evaluate(alarm(m=2, n=3, missing=mode), MetricStore(), T0, T0 + 10 * P)
    assert states(result) == [state] * 10
    assert result.fired is fired
    assert result.worst is None
    assert result.first_alarm_at == (T0 + P if fired else None)
    assert result.values == [(T0 + i * P, None) for i in range(10)]


# --- percentile alarms with few samples ----------------------------------------------------
def test_low_sample_percentile_ignore_keeps_the_state():
    store = MetricStore()
    for i in range(5):  # five very slow calls in one period: far fewer than 1000 samples
        store.add(Datapoint.of(T0 + i, "Test", "M", 90_000.0))
    kw = dict(statistic="p99", threshold=60_000.0)
    ignored = evaluate(alarm(evaluate_low_sample_count_percentile="ignore", **kw), store, T0,
                       T0 + P)
    assert states(ignored) == ["INSUFFICIENT_DATA"]
    evaluated = evaluate(alarm(evaluate_low_sample_count_percentile="evaluate", **kw), store,
                         T0, T0 + P)
    assert states(evaluated) == ["ALARM"]
    for i in range(1000):  # enough samples: evaluated even with "ignore"
        store.add(Datapoint.of(T0 + P + i / 100, "Test", "M", 90_000.0))
    again = evaluate(alarm(evaluate_low_sample_count_percentile="ignore", **kw), store, T0,
                     T0 + 2 * P)
    assert states(again) == ["INSUFFICIENT_DATA", "ALARM"]


# --- metric math ---------------------------------------------------------------------------
SHARE = ("IF((FILL(requests, 0) + FILL(throttles, 0)) > 0, "
         "100 * FILL(throttles, 0) / (FILL(requests, 0) + FILL(throttles, 0)), 0)")


def rate_alarm(missing="notBreaching") -> AlarmDefinition:
    def stat(name):
        return MetricQuery("Bulwark", name, {"Model": "m"}, "Sum", 300)

    return AlarmDefinition(
        logical_id="Rate", name="throttle-rate", metric=None, period_s=300, threshold=20.0,
        comparison="GreaterThanThreshold", evaluation_periods=3, datapoints_to_alarm=3,
        treat_missing_data=missing,
        queries=[MetricDataQuery("expr_1", expression=SHARE),
                 MetricDataQuery("throttles", metric=stat("LocalThrottles"), return_data=False),
                 MetricDataQuery("requests", metric=stat("Requests"), return_data=False)])


def test_rate_percent_alarm_with_fill_and_if():
    store = MetricStore()
    # per 5-minute period: (requests, throttles); None = no datapoint at all
    periods = [(3, 1), (3, 1), (None, 1), (3, None), (None, None), (1, 1), (1, 1), (1, 1)]
    for i, (requests, throttles) in enumerate(periods):
        for name, value in (("Requests", requests), ("LocalThrottles", throttles)):
            if value is not None:
                store.add(Datapoint.of(T0 + i * 300 + 5, "Bulwark", name, value, {"Model": "m"}))
    result = evaluate(rate_alarm(), store, T0, T0 + len(periods) * 300)
    assert [v for _, v in result.values] == [25.0, 25.0, 100.0, 0.0, 0.0, 50.0, 50.0, 50.0]
    assert states(result) == ["OK", "OK", "ALARM", "OK", "OK", "OK", "OK", "ALARM"]
    assert result.first_alarm_at == T0 + 3 * 300
    assert result.worst == 100.0


def test_rate_alarm_on_an_idle_model_reads_zero_not_missing():
    result = evaluate(rate_alarm(missing="missing"), MetricStore(), T0, T0 + 900)
    assert states(result) == ["OK", "OK", "OK"]
    assert [v for _, v in result.values] == [0.0, 0.0, 0.0]


def test_expressions_may_refer_to_other_expressions():
    base = MetricQuery("Test", "M", {}, "Sum", P)
    definition = AlarmDefinition(
        logical_id="Chain", name="chain", period_s=P, threshold=10.0,
        queries=[MetricDataQuery("m", metric=base, return_data=False),
                 MetricDataQuery("doubled", expression="m * 2", return_data=False),
                 MetricDataQuery("out", expression="doubled + 1")])
    result = evaluate(definition, store_of([1.0, 5.0]), T0, T0 + 2 * P)
    assert [v for _, v in result.values] == [3.0, 11.0]
    assert states(result) == ["OK", "ALARM"]
    cycle = AlarmDefinition(
        logical_id="Cycle", name="cycle", period_s=P,
        queries=[MetricDataQuery("a", expression="b + 1", return_data=False),
                 MetricDataQuery("b", expression="a + 1")])
    with pytest.raises(ExpressionError, match="cycle"):
        evaluate(cycle, MetricStore(), T0, T0 + P)


# --- definitions and templates -------------------------------------------------------------
def test_definition_validation():
    assert alarm(n=4, m=None).datapoints_to_alarm == 4  # CloudWatch default: M = N
    with pytest.raises(ValueError, match="ComparisonOperator"):
        alarm(comparison="GreaterThanUpperThreshold")
    with pytest.raises(ValueError, match="DatapointsToAlarm"):
        alarm(m=4, n=3)
    with pytest.raises(ValueError, match="TreatMissingData"):
        alarm(missing="zero")
    with pytest.raises(ValueError, match="ReturnData"):
        AlarmDefinition(logical_id="X", name="x", queries=[
            MetricDataQuery("a", expression="1", return_data=False)])


TEMPLATE = {"Resources": {
    "Fn": {"Type": "AWS::Lambda::Function", "Properties": {}},
    "Classic": {"Type": "AWS::CloudWatch::Alarm", "Properties": {
        "AlarmName": {"Fn::Join": ["-", [{"Ref": "AWS::StackName"}, "latency"]]},
        "Namespace": "Bulwark", "MetricName": "Latency", "ExtendedStatistic": "p99",
        "Dimensions": [{"Name": "FunctionName", "Value": {"Ref": "Fn"}}],
        "Period": "300", "EvaluationPeriods": 3, "Threshold": 100,
        "ComparisonOperator": "GreaterThanThreshold"}},
    "Math": {"Type": "AWS::CloudWatch::Alarm", "Properties": {
        "AlarmName": "rate", "AlarmDescription": "share", "EvaluationPeriods": 2,
        "DatapointsToAlarm": 1, "Threshold": 50,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold", "TreatMissingData": "breaching",
        "Metrics": [
            {"Id": "e", "Expression": "100 * a / b", "ReturnData": True},
            {"Id": "a", "ReturnData": False, "MetricStat": {"Period": 60, "Stat": "Sum",
             "Metric": {"Namespace": "Q", "MetricName": "A",
                        "Dimensions": [{"Name": "QueueName",
                                        "Value": {"Fn::GetAtt": ["Queue", "QueueName"]}}]}}},
            {"Id": "b", "ReturnData": False, "MetricStat": {"Period": 60, "Stat": "Sum",
             "Metric": {"Namespace": "Q", "MetricName": "B"}}}]}},
}}


def test_alarms_from_template_reads_both_forms_with_placeholders():
    classic, math_alarm = alarms_from_template(TEMPLATE)
    assert classic.logical_id == "Classic"
    assert classic.name == "AWS::StackName-latency"
    assert classic.metric == MetricQuery("Bulwark", "Latency", {"FunctionName": "Fn"}, "p99", 300)
    assert (classic.period_s, classic.threshold, classic.evaluation_periods,
            classic.datapoints_to_alarm, classic.treat_missing_data) == (300, 100.0, 3, 3,
                                                                          "missing")
    assert classic.queries == []
    assert math_alarm.metric is None
    assert [q.id for q in math_alarm.queries] == ["e", "a", "b"]
    assert math_alarm.return_query().expression == "100 * a / b"
    assert math_alarm.queries[1].metric.dimensions == {"QueueName": "Queue.QueueName"}
    assert (math_alarm.period_s, math_alarm.datapoints_to_alarm, math_alarm.comparison,
            math_alarm.treat_missing_data) == (60, 1, "GreaterThanOrEqualToThreshold",
                                               "breaching")


def test_alarms_from_template_sends_intrinsics_through_resolve():
    seen = []

    def resolve(value):
        seen.append(value)
        return {"Ref": "agent-fn", "Fn::GetAtt": "work-dlq"}.get(next(iter(value)), "stack")

    classic, math_alarm = alarms_from_template(TEMPLATE, resolve)
    assert classic.metric.dimensions == {"FunctionName": "agent-fn"}
    assert math_alarm.queries[1].metric.dimensions == {"QueueName": "work-dlq"}
    assert {"Ref": "Fn"} in seen and {"Fn::GetAtt": ["Queue", "QueueName"]} in seen


def test_unsupported_alarms_are_refused_by_name():
    template = {"Resources": {"Band": {"Type": "AWS::CloudWatch::Alarm", "Properties": {
        "ThresholdMetricId": "ad1", "EvaluationPeriods": 1, "Metrics": [],
        "ComparisonOperator": "LessThanLowerOrGreaterThanUpperThreshold"}}}}
    with pytest.raises(ValueError, match="Band.*ThresholdMetricId"):
        alarms_from_template(template)
    band = band_template()
    band["Resources"]["Band"]["Properties"]["Metrics"][0]["Expression"] = "m0 * 2"
    with pytest.raises(ValueError, match="Band.*ANOMALY_DETECTION_BAND"):
        alarms_from_template(band)
    band = band_template()
    band["Resources"]["Band"]["Properties"]["ComparisonOperator"] = "GreaterThanThreshold"
    with pytest.raises(ValueError, match="Band.*GreaterThanThreshold.*anomaly-detection"):
        alarms_from_template(band)
    template = {"Resources": {"NoStat": {"Type": "AWS::CloudWatch::Alarm", "Properties": {
        "MetricName": "M", "Namespace": "N", "EvaluationPeriods": 1, "Threshold": 1,
        "ComparisonOperator": "GreaterThanThreshold"}}}}
    with pytest.raises(ValueError, match="NoStat.*Statistic"):
        alarms_from_template(template)


def test_evaluate_all_and_report():
    store = MetricStore()
    for minute in range(3):
        store.add(Datapoint.of(T0 + minute * 60, "Q", "A", 3.0,
                               {"QueueName": "Queue.QueueName"}))
        store.add(Datapoint.of(T0 + minute * 60, "Q", "B", 4.0))
    classic, math_alarm = evaluate_all(TEMPLATE, store, T0, T0 + 180)
    assert not classic.fired
    assert states(classic) == ["INSUFFICIENT_DATA"]  # one 300 s period, no latency at all
    assert math_alarm.fired and math_alarm.worst == 75.0
    report = render_report([classic, math_alarm])
    lines = report.splitlines()
    assert lines[0].split()[:2] == ["Alarm", "Fired"]
    row = next(line for line in lines if line.startswith("rate "))
    assert "YES" in row and "75 >= 50" in row and "1 of 2 x 60s" in row and "breaching" in row
    assert "2027-01-15 08:01:00Z" in row
    latency_row = next(line for line in lines if line.startswith("AWS::StackName-latency"))
    assert " no " in latency_row and "no data > 100" in latency_row
    assert lines[-1] == "1 of 2 alarms fired"


def test_an_alarm_that_breached_without_firing_says_why():
    short = evaluate(alarm(m=3, n=3, period=300), store_of([X], period=300), T0, T0 + 72)
    assert not short.fired
    assert short.why_not(run_s=72) == "needs 3 of 3 periods of 300 s; 1 breached; the run " \
                                      "lasted 72 s"
    row = next(line for line in render_report([short], run_s=72).splitlines()
               if line.startswith("test-alarm"))
    assert row.endswith("needs 3 of 3 periods of 300 s; 1 breached; the run lasted 72 s")
    assert run([X, X, X], m=3, n=3).why_not(180) == ""  # it fired
    assert run([O, O, O], m=3, n=3).why_not(180) == ""  # it never breached


def test_the_chart_line_is_what_the_bucket_admits_per_minute():
    from local.cloudwatch.charts import enforced_per_minute

    # idle: a full bucket's capacity plus the refill so far, then capacity + 60 s of refill
    idle = enforced_per_minute(50, [0.0] * 24)
    assert idle[0] == pytest.approx(50 + 50 * 5 / 60) and idle[11] == idle[-1] == 100
    # a burst of the whole capacity at the start, then kept busy at the refill rate: once the
    # burst is out of the window the bucket admits its refill alone: 50 per minute, plus the
    # one step of refill it held when the window opened
    busy = enforced_per_minute(50, [50.0] + [50 * 5 / 60] * 23)
    assert busy[11] == pytest.approx(100)  # the first minute: capacity + refill
    assert busy[12:] == pytest.approx([50 + 50 * 5 / 60] * 12)


# --- anomaly bands (the local band model: local.cloudwatch.bands) --------------------------
DAY = 86_400
BAND_P = 300


def band_template(comparison="GreaterThanUpperThreshold", k=3, periods=3, datapoints=3):
    """An anomaly-detection alarm as CDK's AnomalyDetectionAlarm writes it."""
    return {"Resources": {"Band": {"Type": "AWS::CloudWatch::Alarm", "Properties": {
        "AlarmName": "band", "ComparisonOperator": comparison, "EvaluationPeriods": periods,
        "DatapointsToAlarm": datapoints, "TreatMissingData": "notBreaching",
        "ThresholdMetricId": "expr_1",
        "Metrics": [
            {"Id": "expr_1", "Expression": f"ANOMALY_DETECTION_BAND(m0, {k})",
             "ReturnData": True},
            {"Id": "m0", "ReturnData": True, "MetricStat": {
                "Metric": {"Namespace": "Test", "MetricName": "M"}, "Period": BAND_P,
                "Stat": "Sum"}}]}}}}


def seasonal_history(days: int, seed: int = 7) -> list[float]:
    """5-minute sums with a daily cycle (peak mid-day, 4x the night) and 8% noise."""
    import math
    import random
    rng = random.Random(seed)
    per_day = DAY // BAND_P
    return [100 * (1.5 - math.cos(2 * math.pi * (i % per_day) / per_day))
            * rng.gauss(1, 0.08) for i in range(days * per_day)]


def test_an_anomaly_alarm_is_read_with_its_band_and_compared_value():
    (band,) = alarms_from_template(band_template(k=2.5))
    assert band.threshold_metric_id == "expr_1"
    assert band.return_query().id == "m0"
    assert band.band_query() == ("m0", 2.5)
    assert band.period_s == BAND_P
    assert band.breaches(10, (1, 5)) and not band.breaches(3, (1, 5))


def test_a_step_well_outside_the_band_alarms_and_normal_seasonality_does_not():
    values = seasonal_history(21)
    start = T0 + 14 * DAY  # a week of normal days is evaluated against two weeks of history
    (definition,) = alarms_from_template(band_template())
    normal = evaluate(definition, store_of(values, period=BAND_P), start, T0 + 21 * DAY)
    assert not normal.fired, [t for t, s in normal.states if s == "ALARM"][:3]
    assert all(b is not None for b in normal.bands)  # trained on the history before start

    step_at = len(values) - 24  # two hours before the end: 3x the usual for this time of day
    stepped = values[:step_at] + [v * 3 for v in values[step_at:]]
    result = evaluate(definition, store_of(stepped, period=BAND_P), start, T0 + 21 * DAY)
    assert result.fired
    assert result.first_alarm_at == T0 + (step_at + 3) * BAND_P  # the third bad period's end


def test_a_drop_alarms_only_when_the_direction_says_so():
    values = seasonal_history(16)
    dropped = values[:-12] + [v / 5 for v in values[-12:]]
    start = T0 + 15 * DAY
    for comparison, fires in (("GreaterThanUpperThreshold", False),
                               ("LessThanLowerThreshold", True),
                               ("LessThanLowerOrGreaterThanUpperThreshold", True)):
        (definition,) = alarms_from_template(band_template(comparison))
        result = evaluate(definition, store_of(dropped, period=BAND_P), start, T0 + 16 * DAY)
        assert result.fired is fires, comparison


def test_a_band_without_history_stays_quiet_as_a_new_deployment_does():
    values = seasonal_history(1)[:240]  # the first 20 hours of a deployment
    spiked = values[:-6] + [v * 50 for v in values[-6:]]
    (definition,) = alarms_from_template(band_template())
    result = evaluate(definition, store_of(spiked, period=BAND_P), T0, T0 + 240 * BAND_P)
    assert not result.fired
    assert set(result.bands) == {None}
    assert "not trained" in render_report([result])


def test_seasonal_bands_refuse_bad_arguments():
    from local.cloudwatch.bands import seasonal_bands
    with pytest.raises(ValueError, match="divide a day"):
        seasonal_bands([1.0], 7, 2)
    with pytest.raises(ValueError, match="standard deviations"):
        seasonal_bands([1.0], 300, 0)


# --- composite alarms ----------------------------------------------------------------------
def test_composite_rules_hold_on_their_children_states():
    from local.cloudwatch.alarms import rule_holds
    rule = '(ALARM("Long.Arn") AND ALARM("Short.Arn")) OR NOT OK("Other.Arn")'
    assert rule_holds(rule, {"Long": "ALARM", "Short": "ALARM", "Other": "OK"})
    assert not rule_holds(rule, {"Long": "ALARM", "Short": "OK", "Other": "OK"})
    assert rule_holds(rule, {"Long": "OK", "Short": "OK"})  # Other: INSUFFICIENT_DATA
    with pytest.raises(ValueError, match="alarm rule"):
        rule_holds('ALARM("a") AND', {})
    with pytest.raises(ValueError, match="alarm rule"):
        rule_holds('ALARM("a") XOR ALARM("b")', {})


def test_a_composite_alarm_fires_only_while_both_windows_breach():
    from local.cloudwatch.alarms import evaluate_composites

    def child(logical_id, period):
        return {"Type": "AWS::CloudWatch::Alarm", "Properties": {
            "AlarmName": logical_id, "MetricName": "M", "Namespace": "Test",
            "Statistic": "Sum", "Period": period, "EvaluationPeriods": 1, "Threshold": 5,
            "ComparisonOperator": "GreaterThanThreshold", "TreatMissingData": "notBreaching"}}

    template = {"Resources": {
        "Long": child("Long", 600), "Short": child("Short", 60),
        "Page": {"Type": "AWS::CloudWatch::CompositeAlarm", "Properties": {
            "AlarmName": "page", "AlarmRule": {"Fn::Join": ["", [
                '(ALARM("', {"Fn::GetAtt": ["Long", "Arn"]}, '") AND ALARM("',
                {"Fn::GetAtt": ["Short", "Arn"]}, '"))']]}}}}}
    # one value per minute: a burst of 3 per minute for minutes 2..5, then quiet
    values = [0, 0, 3, 3, 3, 3, 0, 0, 0, 0, 0, 0]
    store = store_of(values, period=60)
    results = evaluate_all(template, store, T0, T0 + 12 * 60)
    (page,) = evaluate_composites(template, results)
    # the 10-minute window sums 12 > 5 at its end (T0+600); the 1-minute window is quiet then
    assert not page.fired
    store = store_of([0, 0, 3, 3, 3, 3, 0, 0, 0, 6, 0, 0], period=60)
    results = evaluate_all(template, store, T0, T0 + 12 * 60)
    (page,) = evaluate_composites(template, results)
    assert page.fired and page.first_alarm_at == T0 + 600
    assert page.final_state == "OK"  # the short window cleared a minute later
