"""The real stack's alarms, read from the synthesized template and replayed locally
(`local.cloudwatch.alarms`) against metrics the agent's own telemetry code prints as EMF."""

from __future__ import annotations

import json

import pytest
from agent.telemetry import RequestMetrics

from local.cloudwatch.alarm_template import alarms_from_template, composites_from_template
from local.cloudwatch.alarms import evaluate, evaluate_all, render_report
from local.cloudwatch.metrics import Datapoint, MetricStore
from local.cloudwatch.references import resolve as placeholder

T0 = 1_800_000_000 // 3600 * 3600  # an hour boundary: the 1 h cost period aligns too
MINUTE = 60
DAY = 86_400


def logical_ids(dev) -> dict[str, str]:
    """Monitoring's alarm names ("Upstream429/<model>", "LambdaErrors", ...) -> logical id."""
    return {name: dev.stack.get_logical_id(alarm.node.default_child)
            for name, alarm in dev.stack.monitoring.alarms.items()}


def emit(capsys, store: MetricStore, ts: float, model: str, values: dict[str, float]) -> None:
    """Record `values` through the agent's RequestMetrics, flush its EMF to stdout, and feed
    that output to the store as if it had been logged at `ts`."""
    metrics = RequestMetrics()
    for name, value in values.items():
        metrics.add(model, name, value)
    metrics.flush()
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert docs, "RequestMetrics.flush printed no EMF"
    for doc in docs:
        doc["_aws"]["Timestamp"] = int(ts * 1000)
        assert store.add_emf(doc) == len(values)


def normal_minute(model_cost: float = 0.01) -> dict[str, float]:
    return {"Requests": 1, "Succeeded": 1, "InputTokens": 1000, "OutputTokens": 200,
            "CostUSD": model_cost, "Latency": 2000, "LocalThrottles": 0, "Upstream429": 0,
            "QuotaUsedPercent": 40}


def test_every_alarm_of_the_stack_is_loaded(dev):
    alarms = alarms_from_template(dev.json)
    settings = dev.stack.settings
    access_denied = 1 if dev.stack.audit.log_group is not None else 0
    assert len(alarms) == len(dev.resources("AWS::CloudWatch::Alarm"))
    # the batch lane: oldest queued request, batch DLQ, BatchErrored per model
    # and the batch lane's SLO: 4 burn-rate windows per model
    batch = 2 + 5 * len(settings.models) if dev.stack.batch is not None else 0
    # per model: 6 static, 6 anomaly bands, 1 quota forecast, 4 SLO burn-rate windows
    # stacks.tenant_monitoring, per tenant: the wait, the runaway breaker, 6 anomaly bands
    per_tenant = (1 + 1 + 6) * len(settings.tenants)
    assert len(alarms) == ((6 + 6 + 1 + 4) * len(settings.models) + 3 + batch + access_denied
                           + per_tenant)
    # every alarm of the stack goes through the monitoring construct, AccessDenied included
    composites = composites_from_template(dev.json)
    assert len(alarms) + len(composites) == len(dev.stack.monitoring.alarms)
    assert ("AccessDenied" in dev.stack.monitoring.alarms) == bool(access_denied)
    assert {a.logical_id for a in alarms} | {c.logical_id for c in composites} >= set(
        logical_ids(dev).values())
    slo = settings.alarms.slo
    windows = {60 * m for m in (slo.fast_window_minutes, slo.fast_short_window_minutes,
                                slo.slow_window_minutes, slo.slow_short_window_minutes,
                                settings.alarms.forecast.period_minutes)}
    assert sum(a.threshold_metric_id is not None for a in alarms) == (
        6 * len(settings.models) + 6 * len(settings.tenants))
    lanes = ["interactive"] + (["batch"] if dev.stack.batch is not None else [])
    assert {c.name.split("-", 3)[2] for c in composites} == {"SloFastBurn", "SloSlowBurn"}
    assert len(composites) == 2 * len(lanes) * len(settings.models)
    for lane in lanes:
        for model in settings.models:
            assert f"SloFastBurn/{lane}/{model}" in dev.stack.monitoring.alarms
    for a in alarms:
        assert a.period_s in {60, 300, 3600} | windows, a.logical_id
        assert a.threshold >= 0, a.logical_id
        assert a.comparison in ("GreaterThanThreshold", "GreaterThanOrEqualToThreshold",
                                "GreaterThanUpperThreshold"), a.logical_id
        assert 1 <= a.datapoints_to_alarm <= a.evaluation_periods, a.logical_id
        assert a.treat_missing_data == "notBreaching", a.logical_id
        compared = a.metric or a.return_query().metric or a.return_query().expression
        assert compared, a.logical_id
    by_id = {a.logical_id: a for a in alarms}
    ids = logical_ids(dev)
    for model in settings.models:
        quota = by_id[ids[f"QuotaUsedPercent/{model}"]]
        assert (quota.metric.namespace, quota.metric.name, quota.metric.dimensions,
                quota.metric.statistic) == ("Bulwark", "QuotaUsedPercent", {"Model": model},
                                            "Maximum")
        assert (quota.evaluation_periods, quota.datapoints_to_alarm, quota.threshold) == (
            5, 3, settings.alarms.quota_used_percent)
        assert by_id[ids[f"LatencyP99/{model}"]].metric.statistic == "p99"
        rate = by_id[ids[f"FailureRate/{model}"]]
        assert rate.metric is None
        assert {q.metric.name for q in rate.queries if q.metric} == {"Failed", "Succeeded"}
        assert "FILL(" in rate.return_query().expression


def test_one_429_and_three_of_five_hot_minutes_fire_exactly_those_alarms(dev, capsys):
    settings = dev.stack.settings
    hot = settings.default_model
    threshold = settings.alarms.quota_used_percent
    store = MetricStore()
    for minute in range(10):
        for model in settings.models:
            values = normal_minute()
            if model == hot and minute in (2, 4, 5):
                values["QuotaUsedPercent"] = threshold  # at the threshold: ">=" breaches
            if model == hot and minute == 7:
                values["Upstream429"] = 1
            emit(capsys, store, T0 + minute * MINUTE + 5, model, values)

    results = evaluate_all(dev.json, store, T0, T0 + 3600)
    ids = logical_ids(dev)
    fired = {r.alarm.logical_id for r in results if r.fired}
    assert fired == {ids[f"Upstream429/{hot}"], ids[f"QuotaUsedPercent/{hot}"]}

    by_id = {r.alarm.logical_id: r for r in results}
    upstream = by_id[ids[f"Upstream429/{hot}"]]
    assert upstream.first_alarm_at == T0 + 8 * MINUTE  # the end of minute 7
    assert upstream.worst == 1.0
    assert [s for _, s in upstream.states].count("ALARM") == 1  # one minute, then OK again
    quota = by_id[ids[f"QuotaUsedPercent/{hot}"]]
    assert quota.first_alarm_at == T0 + 6 * MINUTE  # minutes 1..5 hold the third breach
    assert quota.worst == threshold
    cost = by_id[ids[f"CostPerHour/{hot}"]]
    assert not cost.fired
    assert cost.worst == pytest.approx(0.1)
    for model in settings.models:
        if model != hot:
            assert by_id[ids[f"Upstream429/{model}"]].worst == 0.0
            assert by_id[ids[f"QuotaUsedPercent/{model}"]].worst == 40.0
        assert by_id[ids[f"FailureRate/{model}"]].worst == 0.0
        assert by_id[ids[f"LatencyP99/{model}"]].worst == 2000.0

    report = render_report(results)
    assert report.splitlines()[-1] == f"2 of {len(results)} alarms fired"
    for r in results:
        assert r.alarm.name in report


def test_the_failure_rate_math_alarm_fires_on_two_of_three_bad_periods(dev, capsys):
    settings = dev.stack.settings
    model = settings.default_model
    rate = next(a for a in alarms_from_template(dev.json)
                if a.logical_id == logical_ids(dev)[f"FailureRate/{model}"])
    store = MetricStore()
    for period, failed in enumerate((1, 0, 1)):  # 10 %, 0 %, 10 % of 10 requests
        emit(capsys, store, T0 + period * 300 + 30, model,
             {"Succeeded": 10 - failed, "Failed": failed})
    result = evaluate(rate, store, T0, T0 + 900)
    assert [v for _, v in result.values] == [10.0, 0.0, 10.0]
    assert [s for _, s in result.states] == ["OK", "OK", "ALARM"]
    assert result.first_alarm_at == T0 + 900
    assert settings.alarms.failure_rate_percent < 10


def test_intrinsic_dimensions_resolve_to_physical_names(dev):
    dlq = dev.stack.get_logical_id(dev.stack.state.dead_letter_queue.node.default_child)

    def resolve(value):
        if value == {"Fn::GetAtt": [dlq, "QueueName"]}:
            return "bulwark-dev-dlq"
        return placeholder(value)

    store = MetricStore()
    store.add(Datapoint.of(T0 + 10, "AWS/SQS", "ApproximateNumberOfMessagesVisible", 2,
                           {"QueueName": "bulwark-dev-dlq"}))
    dlq_alarm = logical_ids(dev)["DeadLetterQueueNotEmpty"]

    def fired(resolver) -> bool:
        results = evaluate_all(dev.json, store, T0, T0 + 300, resolve=resolver)
        return next(r for r in results if r.alarm.logical_id == dlq_alarm).fired

    assert fired(resolve)
    assert not fired(None)  # the placeholder "<id>.QueueName" is a different metric


@pytest.mark.parametrize("deployment", ["dev", "prod_bedrock"])
def test_every_alarm_is_named_after_the_stack_and_its_severity(deployment, request):
    synthesized = request.getfixturevalue(deployment)
    names = [alarm["Properties"].get("AlarmName")
             for alarm in synthesized.resources("AWS::CloudWatch::Alarm").values()]
    prefix = synthesized.stack.stack_name
    assert names and all(isinstance(n, str) and n.startswith(prefix + "-")
                         and n.rsplit("-", 1)[-1] in ("Warning", "Critical") for n in names), names
    assert len(set(names)) == len(names)


# --- thresholds that learn, replayed on synthetic histories (local.demo.ramp) ---------------
def test_the_quota_forecast_fires_at_least_20_minutes_before_the_bucket_is_full(dev, tmp_path):
    from local.cloudwatch.charts import plot_forecast
    from local.demo.ramp import render, replay_normal, replay_ramp

    ramped = replay_ramp(dev.json)
    assert ramped.quota_full_at is not None, "the ramp must fill the bucket"
    assert ramped.forecast_alarm_at is not None
    assert ramped.lead_minutes >= 20, ramped.lead_minutes
    fired = {r.alarm.name for r in ramped.results if r.fired}
    # the ramping model's throttle rate leaves its band; the other model stays quiet
    assert f"{dev.stack.stack_name}-LocalThrottleRateBand-{ramped.model_id}-Warning" in fired
    others = [m for m in dev.stack.settings.models if m != ramped.model_id]
    assert others and not any(m in name for m in others for name in fired), fired
    band = ramped.result("LocalThrottleRateBand")
    chart = plot_forecast(ramped.store, ramped.result("QuotaForecast"), band, ramped.model_id,
                          ramped.ramp_start - 3600, ramped.ramp_start + 7200,
                          tmp_path / "ramp.png", origin=ramped.ramp_start)
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = render(replay_normal(dev.json, days=1), ramped)
    assert f"lead time: {ramped.lead_minutes:.0f} min" in text


def test_a_normal_fortnight_raises_next_to_no_false_alarms(dev):
    from local.demo.ramp import replay_normal

    normal = replay_normal(dev.json, days=14)
    learned = [r for r in normal.results if r.alarm.threshold_metric_id]
    # the models' six bands and the tenants' six (the tenants share the traffic)
    assert len(learned) == 6 * len(dev.stack.settings.models) + 6 * len(
        dev.stack.settings.tenants)
    assert all(any(b is not None for b in r.bands) for r in learned)  # the bands trained
    assert len(normal.composites) >= 2 * len(dev.stack.settings.models)
    # one seeded fortnight of every model's and tenant's daily cycle, noise and 0.3%
    # failures: no alarm
    assert normal.false_alarms == {}


def test_a_failure_rate_step_well_outside_its_band_alarms_where_single_failures_do_not(dev):
    import random

    from local.demo.ramp import EPOCH, normal_history, shapes_from_template

    shapes = shapes_from_template(dev.json)
    model = shapes[0].model_id
    store = MetricStore()
    normal_history(store, shapes[:1], EPOCH, EPOCH + 15 * DAY, random.Random(1))
    step = EPOCH + 14 * DAY + 3 * 3600  # 03:00, the quiet hours: ~40 requests per 5 min
    for k in range(6):  # 30 minutes of 10 extra failures per 5 minutes (about 20%)
        store.add(Datapoint.of(step + k * 300 + 2, "Bulwark", "Failed", 10, {"Model": model}))
    band = next(a for a in alarms_from_template(dev.json)
                if a.name.endswith(f"-FailureRateBand-{model}-Warning"))
    result = evaluate(band, store, EPOCH + 14 * DAY, EPOCH + 15 * DAY)
    assert result.fired
    assert step < result.first_alarm_at <= step + 15 * 60
    entries = [t for (t, s), (_, p) in zip(result.states, [(0, None), *result.states])
               if s == "ALARM" and p != "ALARM"]
    assert entries == [result.first_alarm_at]  # the rest of the day stays quiet


@pytest.mark.parametrize("deployment", ["dev", "prod_bedrock"])
def test_no_alarm_of_the_template_is_skipped_by_the_local_evaluation(deployment, request):
    from local.cloudwatch.alarms import evaluate_composites

    synthesized = request.getfixturevalue(deployment)
    kinds = {r["Type"] for r in synthesized.json["Resources"].values()
             if r["Type"].startswith("AWS::CloudWatch::")}
    # alarm-like kinds the evaluator reads; a new kind must be taught to it, not skipped
    assert kinds <= {"AWS::CloudWatch::Alarm", "AWS::CloudWatch::CompositeAlarm",
                     "AWS::CloudWatch::AnomalyDetector", "AWS::CloudWatch::Dashboard"}, kinds
    start = T0
    results = evaluate_all(synthesized.json, MetricStore(), start, start + 3600)
    composites = evaluate_composites(synthesized.json, results)
    assert {r.alarm.logical_id for r in results} == set(
        synthesized.resources("AWS::CloudWatch::Alarm"))
    assert {c.composite.logical_id for c in composites} == set(
        synthesized.resources("AWS::CloudWatch::CompositeAlarm"))
    assert all(r.states for r in results)  # each one evaluated at least one period
    # every kind is among them: static thresholds, metric math, bands, composites of windows
    assert any(r.alarm.threshold_metric_id for r in results)
    assert any(r.alarm.metric is None and not r.alarm.threshold_metric_id for r in results)
    assert any(r.alarm.metric is not None for r in results) and composites


def test_an_alarm_form_the_evaluator_cannot_read_is_an_error_naming_it():
    template = {"Resources": {"Odd": {"Type": "AWS::CloudWatch::Alarm", "Properties": {
        "AlarmName": "odd", "EvaluationPeriods": 1, "Threshold": 1,
        "ComparisonOperator": "GreaterThanUpperThreshold",
        "Metrics": [{"Id": "m0", "Expression": "SELECT AVG(CPUUtilization) FROM SCHEMA(x)"}],
        "ThresholdMetricId": "m0"}}}}
    with pytest.raises(ValueError, match="alarm Odd"):
        alarms_from_template(template)
