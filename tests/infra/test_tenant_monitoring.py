"""The tenant row and wait alarms (`stacks.tenant_monitoring`) in the synthesized default app
(cdk.json's tenants acme and globex)."""

from __future__ import annotations

import json

import pytest

from agent.contract import CAPACITY_METRICS
from local.cloudwatch.alarms import evaluate_all


def test_each_tenant_has_a_wait_p99_alarm_to_the_alarm_topic(dev):
    alarms = {props["Properties"]["AlarmName"]: props["Properties"] for props in
              dev.resources("AWS::CloudWatch::Alarm").values()
              if "TenantWait" in props["Properties"].get("AlarmName", "")}
    assert sorted(alarms) == ["Bulwark-dev-TenantWait-acme-Warning",
                              "Bulwark-dev-TenantWait-globex-Warning"]
    acme = alarms["Bulwark-dev-TenantWait-acme-Warning"]
    assert (acme["MetricName"], acme["Namespace"], acme["ExtendedStatistic"]) == (
        "TenantWaitSeconds", "Bulwark", "p99")
    assert acme["Dimensions"] == [{"Name": "Priority", "Value": "interactive"},
                                  {"Name": "Tenant", "Value": "acme"}] or acme["Dimensions"] == [
        {"Name": "Tenant", "Value": "acme"}, {"Name": "Priority", "Value": "interactive"}]
    assert (acme["Threshold"], acme["Period"], acme["EvaluationPeriods"]) == (20, 300, 3)
    assert acme["ComparisonOperator"] == "GreaterThanThreshold"
    assert acme["TreatMissingData"] == "notBreaching"
    topics = dev.resources("AWS::SNS::Topic")
    assert len(acme["AlarmActions"]) == 1 and acme["AlarmActions"][0]["Ref"] in topics


def test_the_dashboard_shows_who_got_the_capacity(dev):
    dashboards = dev.resources("AWS::CloudWatch::Dashboard")
    body = json.dumps([d["Properties"]["DashboardBody"] for d in dashboards.values()])
    assert "Who got the capacity" in body
    for name in CAPACITY_METRICS:
        assert name in body, name
    for tenant in ("acme", "globex"):
        assert f'\\\\"Tenant\\\\",\\\\"{tenant}\\\\"' in body or f"{tenant} interactive" in body
    dev.template.resource_count_is("AWS::CloudWatch::Dashboard", len(dashboards))


# --- learned bands per tenant and the runaway breaker's alarm ------------------------------
TENANT_BAND_KINDS = ("TenantCostPerHourBand", "TenantCostPerSuccessBand",
                     "TenantFailureRateBand", "TenantUpstream429RateBand",
                     "TenantLocalThrottleRateBand", "TenantLatencyP99Band")


def _alarms_by_name(synthesized) -> dict[str, dict]:
    return {props["Properties"]["AlarmName"]: props["Properties"] for props in
            synthesized.resources("AWS::CloudWatch::Alarm").values()}


def test_each_tenant_has_band_alarms_on_its_own_metrics_with_explicit_detectors(dev):
    alarms = _alarms_by_name(dev)
    detectors = [d["Properties"] for d in dev.resources("AWS::CloudWatch::AnomalyDetector")
                 .values()]
    for tenant in ("acme", "globex"):
        for kind in TENANT_BAND_KINDS:
            alarm = alarms[f"Bulwark-dev-{kind}-{tenant}-Warning"]
            assert alarm["ComparisonOperator"] == "GreaterThanUpperThreshold"  # cdk.json
            band = next(m for m in alarm["Metrics"] if m["Id"] == alarm["ThresholdMetricId"])
            assert band["Expression"] == "ANOMALY_DETECTION_BAND(m0, 3)"
            stats = [m["MetricStat"]["Metric"] for m in alarm["Metrics"] if "MetricStat" in m]
            assert stats and all(s["Dimensions"] == [{"Name": "Tenant", "Value": tenant}]
                                 for s in stats)
            assert f"tenant {tenant}" in alarm["AlarmDescription"]
        single = [d["SingleMetricAnomalyDetector"] for d in detectors
                  if d.get("SingleMetricAnomalyDetector", {}).get("Dimensions") == [
                      {"Name": "Tenant", "Value": tenant}]]
        assert sorted((d["MetricName"], d["Stat"]) for d in single) == [
            ("CostUSD", "Sum"), ("Latency", "p99")]
        ratios = [json.dumps(d["MetricMathAnomalyDetector"]) for d in detectors
                  if tenant in json.dumps(d.get("MetricMathAnomalyDetector", {}))]
        # cost per success, failure rate, upstream 429 rate and local throttle rate
        assert len(ratios) == 4
        upstream = next(r for r in ratios if "Upstream429" in r)
        assert "IF(FILL(upstream429, 0) >= 3" in upstream  # counted only with enough 429s
        assert any("usd / succeeded" in r for r in ratios)


def test_the_new_tenant_bands_mirror_the_models_on_the_tenants_metrics(dev):
    alarms = _alarms_by_name(dev)
    for tenant in ("acme", "globex"):
        latency = alarms[f"Bulwark-dev-TenantLatencyP99Band-{tenant}-Warning"]
        stat = next(m["MetricStat"] for m in latency["Metrics"] if "MetricStat" in m)
        assert (stat["Metric"]["MetricName"], stat["Stat"], stat["Period"]) == (
            "Latency", "p99", 300)
        assert (latency["EvaluationPeriods"], latency["DatapointsToAlarm"]) == (3, 3)
        for kind, names in (("TenantCostPerSuccessBand", {"CostUSD", "Succeeded"}),
                            ("TenantUpstream429RateBand", {"Upstream429", "Requests"})):
            alarm = alarms[f"Bulwark-dev-{kind}-{tenant}-Warning"]
            assert {m["MetricStat"]["Metric"]["MetricName"] for m in alarm["Metrics"]
                    if "MetricStat" in m} == names
            assert f"cli.audit --tenant {tenant}" in alarm["AlarmDescription"]


def test_each_tenant_has_a_runaway_alarm_that_says_what_to_do(dev):
    alarms = _alarms_by_name(dev)
    for tenant in ("acme", "globex"):
        alarm = alarms[f"Bulwark-dev-RunawayThrottled-{tenant}-Warning"]
        assert (alarm["MetricName"], alarm["Namespace"], alarm["Statistic"]) == (
            "RunawayThrottled", "Bulwark", "Sum")
        assert alarm["Dimensions"] == [{"Name": "Tenant", "Value": tenant}]
        assert (alarm["Threshold"], alarm["Period"], alarm["EvaluationPeriods"]) == (1, 60, 1)
        assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert alarm["TreatMissingData"] == "notBreaching"
        assert f"cli.audit --tenant {tenant}" in alarm["AlarmDescription"]
        assert "clear the breaker" in alarm["AlarmDescription"]
        assert len(alarm["AlarmActions"]) == 1


def test_the_tenant_section_draws_the_bands_and_the_runaway_breaker(dev):
    body = json.dumps([d["Properties"]["DashboardBody"]
                       for d in dev.resources("AWS::CloudWatch::Dashboard").values()])
    assert "Learned bands per tenant" in body
    assert "Runaway breaker" in body and "RunawayThrottled" in body
    for tenant in ("acme", "globex"):
        for title in ("Cost per hour (USD)", "Cost per success (USD)", "Failure rate (%)",
                      "Upstream 429 rate (%)", "Local throttle rate (%)", "Latency p99 (ms)"):
            assert f"{title} and its band: tenant {tenant}" in body, title


def test_a_tenant_spending_ten_times_its_history_alarms_and_the_other_tenant_does_not(dev):
    from local.cloudwatch.bands import DAY_S
    from local.cloudwatch.history import replay_seasonal_history
    from local.cloudwatch.metrics import Datapoint, MetricStore

    store = MetricStore()
    start = 1_800_000_000 // DAY_S * DAY_S
    for seed, tenant in enumerate(("acme", "globex")):
        replay_seasonal_history(store, {"CostUSD": 0.2, "Requests": 40, "Succeeded": 40,
                                        "Failed": 0, "LocalThrottles": 0},
                                {"Tenant": tenant}, start=start, days=15, seed=seed)
    loop = start + 14 * DAY_S + 10 * 3600  # 10:00 on the 15th day: acme's agent loops
    for k in range(12):
        store.add(Datapoint.of(loop + k * 300 + 2, "Bulwark", "CostUSD", 9 * 0.2,
                               {"Tenant": "acme"}))
    store.add(Datapoint.of(loop + 90, "Bulwark", "RunawayThrottled", 7, {"Tenant": "acme"}))
    results = evaluate_all(dev.json, store, start + 14 * DAY_S, start + 15 * DAY_S)
    fired = {r.alarm.name for r in results if r.fired}
    assert {"Bulwark-dev-TenantCostPerHourBand-acme-Warning",
            "Bulwark-dev-RunawayThrottled-acme-Warning"} <= fired
    assert not any("globex" in name for name in fired), fired
    runaway = next(r for r in results if r.alarm.name.endswith("RunawayThrottled-acme-Warning"))
    assert runaway.first_alarm_at == loop + 120  # the minute it held calls, evaluated at its end


def test_tenant_bands_take_the_width_and_direction_given_and_refuse_unknown_metrics():
    from aws_cdk import App, Stack
    from aws_cdk import aws_cloudwatch as cloudwatch
    from aws_cdk import aws_sns as sns
    from aws_cdk.assertions import Match, Template

    from stacks.settings import AnomalyBand
    from stacks.tenant_monitoring import TenantMonitoring

    stack = Stack(App(), "T")
    common = dict(tenants=("acme",), dashboard=cloudwatch.Dashboard(stack, "D"),
                  alarm_topic=sns.Topic(stack, "Topic"), alarm_name_prefix="T-dev")
    TenantMonitoring(stack, "M", bands={"failure_rate": AnomalyBand(4, "outside")}, **common)
    template = Template.from_stack(stack)
    template.has_resource_properties("AWS::CloudWatch::Alarm", {
        "AlarmName": "T-dev-TenantFailureRateBand-acme-Warning",
        "ComparisonOperator": "LessThanLowerOrGreaterThanUpperThreshold",
        "Metrics": Match.array_with([Match.object_like(
            {"Expression": "ANOMALY_DETECTION_BAND(m0, 4)"})])})
    template.resource_count_is("AWS::CloudWatch::AnomalyDetector", 1)
    with pytest.raises(ValueError, match="unknown metrics \\['quota_used'\\]"):
        TenantMonitoring(stack, "N", bands={"quota_used": AnomalyBand()}, **common)


@pytest.mark.parametrize(("key", "kind"), [("cost_per_success", "TenantCostPerSuccessBand"),
                                           ("upstream_429_rate", "TenantUpstream429RateBand"),
                                           ("latency_p99", "TenantLatencyP99Band")])
def test_the_new_tenant_bands_take_their_width_and_direction_from_the_config(key, kind):
    from aws_cdk import App, Stack
    from aws_cdk import aws_cloudwatch as cloudwatch
    from aws_cdk import aws_sns as sns
    from aws_cdk.assertions import Match, Template

    from stacks.settings import AlarmSettings, AnomalyBand
    from stacks.tenant_monitoring import TenantMonitoring

    settings = AlarmSettings(tenant_anomaly={key: AnomalyBand(2.5, "below")}).tenant_anomaly
    assert AlarmSettings().tenant_anomaly[key] == AnomalyBand(3.0, "above")  # the default
    stack = Stack(App(), "T")
    TenantMonitoring(stack, "M", tenants=("acme",), dashboard=cloudwatch.Dashboard(stack, "D"),
                     alarm_topic=sns.Topic(stack, "Topic"), alarm_name_prefix="T-dev",
                     bands=settings)
    template = Template.from_stack(stack)
    template.has_resource_properties("AWS::CloudWatch::Alarm", {
        "AlarmName": f"T-dev-{kind}-acme-Warning",
        "ComparisonOperator": "LessThanLowerThreshold",
        "Metrics": Match.array_with([Match.object_like(
            {"Expression": "ANOMALY_DETECTION_BAND(m0, 2.5)"})])})
