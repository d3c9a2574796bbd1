"""EMF into local CloudWatch with PutMetricData, read back with GetMetricData; what moto does
not do (percentiles, metric math, bands) through the kit's evaluator."""

from __future__ import annotations

import json

import pytest

from local.cloudwatch.api import LocalCloudWatch, metric_stat

T0 = 1_800_003_600.0  # epoch-aligned to the hour


def _emf(second: float, model: str, **metrics) -> str:
    high = {"Requests"}
    return json.dumps({"_aws": {"Timestamp": int((T0 + second) * 1000), "CloudWatchMetrics": [{
        "Namespace": "BulwarkTest", "Dimensions": [["Model"]],
        "Metrics": [{"Name": n, "Unit": "Milliseconds" if n == "Latency" else "Count",
                     **({"StorageResolution": 1} if n in high else {})} for n in metrics]}]},
        "Model": model, **metrics})


@pytest.fixture
def cloudwatch(local_aws):
    return LocalCloudWatch(local_aws.client("cloudwatch"))


def _sent(client) -> list[dict]:
    requests: list[dict] = []
    client.meta.events.register("provide-client-params.cloudwatch.PutMetricData",
                                lambda params, **_: requests.append(params))
    return requests


def test_ingestion_keeps_dimensions_units_and_resolution(cloudwatch, local_aws):
    sent = _sent(cloudwatch.client)
    lines = [_emf(s, "m-ingest", Requests=1, Latency=100.0 + s) for s in range(0, 60, 5)]
    assert cloudwatch.put_emf_lines(["START RequestId: x", *lines, '{"not": "emf"}']) == 24
    data = sent[0]["MetricData"]
    requests = next(d for d in data if d["MetricName"] == "Requests")
    latency = next(d for d in data if d["MetricName"] == "Latency")
    assert requests["Dimensions"] == [{"Name": "Model", "Value": "m-ingest"}]
    assert (requests["Unit"], requests["StorageResolution"]) == ("Count", 1)
    assert (latency["Unit"], latency["StorageResolution"]) == ("Milliseconds", 60)
    # moto holds them: ListMetrics names the metric with its dimension
    listed = local_aws.client("cloudwatch").list_metrics(Namespace="BulwarkTest",
                                                          MetricName="Latency")["Metrics"]
    assert {"Name": "Model", "Value": "m-ingest"} in [d for m in listed for d in m["Dimensions"]]


def test_high_resolution_metrics_read_at_10_s_standard_ones_at_60_s(cloudwatch):
    cloudwatch.put_emf_lines(_emf(s, "m-res", Requests=1, Latency=10.0) for s in range(0, 60, 5))
    dims = [{"Name": "Model", "Value": "m-res"}]
    results = cloudwatch.get_metric_data([
        {"Id": "r", "MetricStat": {"Metric": {"Namespace": "BulwarkTest",
                                              "MetricName": "Requests", "Dimensions": dims},
                                   "Period": 10, "Stat": "Sum"}},
        {"Id": "l", "MetricStat": {"Metric": {"Namespace": "BulwarkTest",
                                              "MetricName": "Latency", "Dimensions": dims},
                                   "Period": 10, "Stat": "SampleCount"}}], T0, T0 + 60)
    by_id = {r["Id"]: r for r in results}
    assert by_id["r"]["Period"] == 10 and by_id["r"]["Values"] == [2.0] * 6
    assert by_id["l"]["Period"] == 60 and by_id["l"]["Values"] == [12.0]


def test_percentiles_math_and_bands_through_the_evaluator(cloudwatch):
    # two a second for 100 s: minute 0 holds latencies 1..120 ms, minute 1 121..200
    cloudwatch.put_emf_lines(_emf(k * 0.5, "m-eval", Latency=float(k + 1), Requests=1)
                             for k in range(200))
    stat = {"Namespace": "BulwarkTest", "Dimensions": {"Model": "m-eval"}}

    def q(qid, name, statistic, **extra):
        return {"Id": qid, "MetricStat": metric_stat(stat["Namespace"], name,
                                                     stat["Dimensions"], statistic, 60),
                **extra}

    results = {r["Label"]: r for r in cloudwatch.get_metric_data([
        q("p99", "Latency", "p99"), q("p50", "Latency", "p50"),
        q("n", "Requests", "Sum", ReturnData=False),
        q("avg", "Latency", "Average", ReturnData=False),
        {"Id": "per_request", "Expression": "avg / n * 1000", "Label": "math"},
        {"Id": "band", "Expression": "ANOMALY_DETECTION_BAND(n, 1)", "Label": "band"},
    ], T0, T0 + 120)}
    # nearest rank: ceil(0.99 * 120) = 119th, ceil(0.99 * 80) = 80th
    assert results["p99"]["Values"] == [119.0, 200.0]
    assert results["p50"]["Values"] == [60.0, 160.0]
    assert results["math"]["Values"] == [pytest.approx(60.5 / 120 * 1000),
                                         pytest.approx(160.5 / 80 * 1000)]
    # n is 120 then 80: mean 100, standard deviation 20
    assert results["band (upper)"]["Values"] == [120.0, 120.0]
    assert results["band (lower)"]["Values"] == [80.0, 80.0]
    assert "n" not in {r["Id"] for r in results.values()}  # ReturnData false is not returned


def test_alarm_evaluation_reads_local_cloudwatch(cloudwatch):
    from local.cloudwatch.alarm_template import AlarmDefinition, MetricQuery
    from local.cloudwatch.alarms import evaluate

    cloudwatch.put_emf_lines(_emf(s, "m-alarm", Latency=70_000.0) for s in range(0, 180, 10))
    alarm = AlarmDefinition("L", "latency", metric=MetricQuery(
        "BulwarkTest", "Latency", {"Model": "m-alarm"}, "p99", 60), period_s=60,
        threshold=60_000, evaluation_periods=3, treat_missing_data="notBreaching")
    result = evaluate(alarm, cloudwatch, T0, T0 + 180)
    assert result.fired and result.final_state == "ALARM"


def test_a_band_over_days_of_history_follows_the_time_of_day(cloudwatch):
    # two days of one point per hour: 10 at night (00-05 UTC), 100 the rest of the day
    day = 86_400
    hourly = [10.0 if h % 24 < 6 else 100.0 for h in range(48)]
    cloudwatch.put_emf_lines(_emf(h * 3600 + 1, "m-season", Requests=v)
                             for h, v in enumerate(hourly))
    (upper, lower) = cloudwatch.get_metric_data([
        {"Id": "n", "MetricStat": metric_stat("BulwarkTest", "Requests", {"Model": "m-season"},
                                              "Sum", 3600), "ReturnData": False},
        {"Id": "band", "Expression": "ANOMALY_DETECTION_BAND(n, 2)", "Label": "band"},
    ], T0, T0 + 2 * day)
    night, noon = 24 + 3, 24 + 12  # the second day: its band comes from the first day
    assert upper["Points"][night][1] < 20 and lower["Points"][noon][1] > 80
    # the first day has no history: the range's mean +/- 2 sd, the same at every hour
    assert upper["Points"][3][1] == upper["Points"][12][1]
