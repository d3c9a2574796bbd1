"""The local AWS server's GetMetricData fast path (`index_metric_stat_queries`) answers exactly
what moto's own implementation answers, on datapoints that cross period edges, share names
across namespaces, carry units and dimensions in any order."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _backend():
    from moto.cloudwatch.models import CloudWatchBackend

    backend = CloudWatchBackend("us-east-1", "123456789012")
    rng = random.Random(5)
    for _ in range(600):
        dims = rng.choice([[], [{"Name": "Model", "Value": "a"}],
                           [{"Name": "Model", "Value": "b"}, {"Name": "Tenant", "Value": "t"}],
                           [{"Name": "Tenant", "Value": "t"}, {"Name": "Model", "Value": "b"}]])
        backend.put_metric_data(rng.choice(["Bulwark", "Other"]), [{
            "MetricName": rng.choice(["Requests", "Latency"]),
            "Timestamp": START + timedelta(seconds=rng.randrange(0, 3 * 3600)),
            "Value": rng.choice([1, 2.5, 40]), "Unit": rng.choice([None, "Count"]),
            "Dimensions": dims}])
    return backend


def _queries():
    queries = []
    for i, (ns, name, dims, stat, period, unit) in enumerate([
            ("Bulwark", "Requests", [], "Sum", 300, None),
            ("Other", "Requests", [], "Average", 60, None),
            ("Bulwark", "Latency", [{"Name": "Model", "Value": "a"}], "Maximum", 300, None),
            ("Bulwark", "Requests", [{"Name": "Tenant", "Value": "t"},
                                     {"Name": "Model", "Value": "b"}], "SampleCount", 900, None),
            ("Bulwark", "Requests", [], "Sum", 3600, "Count"),
            ("Bulwark", "Missing", [], "Sum", 300, None)]):
        metric = {"Namespace": ns, "MetricName": name, "Dimensions": dims}
        queries.append({"Id": f"q{i}", "MetricStat": {
            "Metric": metric, "Period": period, "Stat": stat, **({"Unit": unit} if unit else {})},
            "ReturnData": i != 1, **({"Label": "labelled"} if i == 2 else {})})
    return queries


@pytest.mark.parametrize("scan_by", ["TimestampAscending", "TimestampDescending"])
@pytest.mark.parametrize("window", [(0, 3 * 3600), (17, 7_000), (3_000, 3_900)])
def test_the_fast_path_answers_what_moto_answers(scan_by, window):
    from moto.cloudwatch.models import CloudWatchBackend

    from local.fakes.aws_server import index_metric_stat_queries

    moto_own = CloudWatchBackend.get_metric_data
    backend = _backend()
    start, end = (START + timedelta(seconds=s) for s in window)
    expected = moto_own(backend, _queries(), start, end, scan_by)
    try:
        index_metric_stat_queries()
        assert CloudWatchBackend.get_metric_data is not moto_own
        got = CloudWatchBackend.get_metric_data(backend, _queries(), start, end, scan_by)
    finally:
        CloudWatchBackend.get_metric_data = moto_own
    assert got == expected
    assert any(result["values"] for result in got)


def test_a_math_expression_goes_to_moto_and_bad_ranges_are_refused_as_moto_does():
    from moto.cloudwatch.exceptions import ValidationError
    from moto.cloudwatch.models import CloudWatchBackend

    from local.fakes.aws_server import index_metric_stat_queries

    moto_own = CloudWatchBackend.get_metric_data
    backend = _backend()
    queries = _queries()[:1] + [{"Id": "e", "Expression": "q0 * 2"}]
    end = START + timedelta(hours=3)
    expected = moto_own(backend, queries, START, end)
    try:
        index_metric_stat_queries()
        assert CloudWatchBackend.get_metric_data(backend, queries, START, end) == expected
        with pytest.raises(ValidationError, match="must not equal"):
            CloudWatchBackend.get_metric_data(backend, _queries(), START, START)
        with pytest.raises(ValidationError, match="greater than StartTime"):
            CloudWatchBackend.get_metric_data(backend, _queries(), end, START)
    finally:
        CloudWatchBackend.get_metric_data = moto_own
