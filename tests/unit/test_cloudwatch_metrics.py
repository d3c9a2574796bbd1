"""local.cloudwatch.metrics.MetricStore: EMF parsing, per-period statistics, exact dimensions
(no I/O)."""

from __future__ import annotations

import json
import threading

import pytest

from local.cloudwatch.metrics import Datapoint, EmfError, MetricStore, parse_statistic

T0 = 1_800_000_000 // 3600 * 3600  # an hour boundary, so 60/300/3600 s periods all align


def emf(ts: float, dims: list[list[str]] | None = None, namespace: str = "Bulwark",
        units: dict[str, str] | None = None, **fields) -> dict:
    """A Powertools-shaped EMF document; every field that is not a dimension is a metric."""
    dims = [["Model"]] if dims is None else dims
    metrics = [k for k in fields if not any(k in names for names in dims)]
    units = units or {}
    return {"_aws": {"Timestamp": int(ts * 1000), "CloudWatchMetrics": [{
        "Namespace": namespace, "Dimensions": dims,
        "Metrics": [{"Name": m, "Unit": units.get(m, "Count")} for m in metrics]}]},
        **fields}


def test_powertools_document_yields_one_datapoint_per_list_element():
    store = MetricStore()
    doc = {"_aws": {"Timestamp": T0 * 1000 + 1500, "CloudWatchMetrics": [{
        "Namespace": "Bulwark", "Dimensions": [["Model"]],
        "Metrics": [{"Name": "Requests", "Unit": "Count"},
                    {"Name": "Latency", "Unit": "Milliseconds"}]}]},
        "Model": "m", "Requests": [1.0], "Latency": [120.0, 80.0, 100.0]}
    assert store.add_emf(doc) == 4
    assert store.names() == {("Bulwark", "Requests"), ("Bulwark", "Latency")}
    assert store.datapoints("Bulwark", "Requests", {"Model": "m"}) == [(T0 + 1.5, 1.0)]
    assert store.series("Bulwark", "Latency", {"Model": "m"}, "SampleCount", 60, T0,
                        T0 + 60) == [(T0, 3.0)]
    assert store.dimension_sets("Bulwark", "Latency") == [{"Model": "m"}]


def test_scalar_values_and_every_dimension_set_of_a_directive():
    store = MetricStore()
    doc = emf(T0, dims=[["Model"], [], ["Model", "Tenant"]], Model="m", Tenant="acme",
              Requests=2)
    assert store.add_emf(doc) == 3
    for dims in ({"Model": "m"}, None, {"Tenant": "acme", "Model": "m"}):
        assert store.series("Bulwark", "Requests", dims, "Sum", 60, T0, T0 + 60) == [(T0, 2.0)]
    assert sorted(map(len, store.dimension_sets("Bulwark", "Requests"))) == [0, 1, 2]


def test_units_are_kept_and_declared_but_absent_metrics_are_skipped():
    store = MetricStore()
    doc = emf(T0, Model="m", Requests=1, units={"Requests": "Count"})
    doc["_aws"]["CloudWatchMetrics"][0]["Metrics"].append({"Name": "Failed"})
    assert store.add_emf(doc) == 1
    assert store.names() == {("Bulwark", "Requests")}


def test_the_agent_telemetry_output_parses(capsys):
    from agent.telemetry import RequestMetrics

    metrics = RequestMetrics()
    metrics.add("claude-a", "Requests")
    metrics.add("claude-a", "QuotaUsedPercent", 85)
    metrics.add("claude-a", "QuotaUsedPercent", 40)  # a maximum, not a sum
    metrics.add("claude-b", "Upstream429")
    metrics.flush()
    store = MetricStore()
    assert store.add_emf_lines(capsys.readouterr().out.splitlines()) == 3
    stamp = store.datapoints("Bulwark", "Requests", {"Model": "claude-a"})[0][0]
    start = stamp // 60 * 60

    def one(name, model):
        return store.series("Bulwark", name, {"Model": model}, "Maximum", 60, start,
                            start + 60)[0][1]

    assert one("QuotaUsedPercent", "claude-a") == 85.0
    assert one("Upstream429", "claude-b") == 1.0
    assert one("Upstream429", "claude-a") is None


def test_tenant_metrics_are_published_per_tenant_and_class_with_every_wait(capsys):
    from types import SimpleNamespace

    from agent.telemetry import RequestMetrics

    metrics = RequestMetrics()
    for waited in (0.5, 12.0):
        metrics.record_tenant("acme", "interactive", SimpleNamespace(status="ok",
                                                                     waited_s=waited))
    metrics.record_tenant("globex", "background", SimpleNamespace(status="deferred",
                                                                  waited_s=20.0))
    metrics.flush()
    store = MetricStore()
    store.add_emf_lines(capsys.readouterr().out.splitlines())
    acme = {"Tenant": "acme", "Priority": "interactive"}
    waits = store.datapoints("Bulwark", "TenantWaitSeconds", acme)
    assert sorted(value for _, value in waits) == [0.5, 12.0]
    assert len(store.datapoints("Bulwark", "TenantAnswers", acme)) == 2
    assert store.datapoints("Bulwark", "TenantDeferred",
                            {"Tenant": "globex", "Priority": "background"})


def test_emf_lines_skip_text_json_and_bad_emf():
    store = MetricStore()
    good = json.dumps(emf(T0, Model="m", Requests=[1.0, 1.0]))
    bad = emf(T0, Requests=1)  # declares dimension Model but has no Model field
    lines = [
        "START RequestId: 1f0e Version: $LATEST",
        "not json {",
        json.dumps({"level": "INFO", "message": "hello"}),
        json.dumps([1, 2, 3]),
        good,
        f"2026-01-01T00:00:00.000Z\t1f0e\tINFO\t{good}",  # a log prefix before the document
        json.dumps(bad),
        "",
    ]
    assert store.add_emf_lines(lines) == 4
    assert store.rejected_lines == 1
    assert len(store) == 4


@pytest.mark.parametrize("doc, problem", [
    ({"_aws": {"CloudWatchMetrics": []}, "X": 1}, "Timestamp"),
    ({"_aws": {"Timestamp": "yesterday", "CloudWatchMetrics": []}}, "Timestamp"),
    ({"Requests": 1}, "not an EMF document"),
    (emf(T0, Requests=1), "dimension 'Model'"),
    (emf(T0, Model="m", Requests="many"), "number or a list"),
    (emf(T0, Model="m", Requests=[1, "x"]), "number or a list"),
    ({"_aws": {"Timestamp": 0, "CloudWatchMetrics": [{"Metrics": []}]}}, "Namespace"),
])
def test_malformed_emf_is_refused(doc, problem):
    with pytest.raises(EmfError, match=problem):
        MetricStore().add_emf(doc)


def test_a_bad_document_adds_nothing_not_even_its_good_metrics():
    store = MetricStore()
    doc = emf(T0, Model="m", Requests=1, Failed="x")
    with pytest.raises(EmfError, match="'Failed'"):
        store.add_emf(doc)
    assert len(store) == 0


def test_statistics_per_period_with_gaps_and_boundaries():
    store = MetricStore()
    for offset, value in [(0, 4.0), (10, 1.0), (59.999, 7.0),  # period 0
                          (60 * 2, 5.0),                        # period 2 (period 1 empty)
                          (60 * 3, 2.0)]:                       # exactly on a boundary
        store.add(Datapoint.of(T0 + offset, "Bulwark", "Latency", value, {"Model": "m"}))

    def stat(name):
        return [v for _, v in store.series("Bulwark", "Latency", {"Model": "m"}, name, 60, T0,
                                           T0 + 240)]

    assert stat("Sum") == [12.0, None, 5.0, 2.0]
    assert stat("Average") == [4.0, None, 5.0, 2.0]
    assert stat("Minimum") == [1.0, None, 5.0, 2.0]
    assert stat("Maximum") == [7.0, None, 5.0, 2.0]
    assert stat("SampleCount") == [3.0, None, 1.0, 1.0]
    starts = [t for t, _ in store.series("Bulwark", "Latency", {"Model": "m"}, "Sum", 60, T0,
                                         T0 + 241)]
    assert starts == [T0, T0 + 60, T0 + 120, T0 + 180, T0 + 240]  # a partial last period too
    assert store.series("Bulwark", "Latency", {"Model": "m"}, "Sum", 300, T0, T0) == []


def test_percentiles_use_nearest_rank():
    store = MetricStore()
    for v in range(100, 0, -1):  # 1..100, added out of order
        store.add(Datapoint.of(T0 + v / 10, "Bulwark", "Latency", float(v)))
    for v in (10.0, 20.0, 30.0):
        store.add(Datapoint.of(T0 + 60, "Bulwark", "Latency", v))

    def pct(p):
        return [v for _, v in store.series("Bulwark", "Latency", None, p, 60, T0, T0 + 120)]

    assert pct("p50") == [50.0, 20.0]
    assert pct("p99") == [99.0, 30.0]
    assert pct("p99.9") == [100.0, 30.0]
    assert pct("p100") == [100.0, 30.0]
    assert pct("p0") == [1.0, 10.0]
    assert pct("P90") == [90.0, 30.0]


@pytest.mark.parametrize("bad", ["Median", "p101", "tm99", "p", "", "pp9"])
def test_unknown_statistics_are_refused(bad):
    with pytest.raises(ValueError, match="statistic"):
        parse_statistic(bad)
    with pytest.raises(ValueError):
        MetricStore().series("Bulwark", "Latency", None, bad, 60, T0, T0 + 60)


def test_dimensions_must_match_exactly():
    store = MetricStore()
    store.add(Datapoint.of(T0, "Bulwark", "Requests", 1, {"Model": "a"}))
    store.add(Datapoint.of(T0, "Bulwark", "Requests", 10, {"Model": "a", "Tenant": "t"}))
    store.add(Datapoint.of(T0, "Bulwark", "Requests", 100))
    store.add(Datapoint.of(T0, "Other", "Requests", 1000, {"Model": "a"}))

    def total(dims, namespace="Bulwark"):
        return store.series(namespace, "Requests", dims, "Sum", 60, T0, T0 + 60)[0][1]

    assert total({"Model": "a"}) == 1.0
    assert total({"Tenant": "t", "Model": "a"}) == 10.0  # dimension order does not matter
    assert total(None) == 100.0
    assert total({}) == 100.0
    assert total({"Model": "b"}) is None
    assert total({"Model": "a"}, "Other") == 1000.0
    assert store.series("Bulwark", "Nope", None, "Sum", 60, T0, T0 + 120) == [
        (T0, None), (T0 + 60, None)]


def test_invalid_datapoints_are_refused():
    store = MetricStore()
    with pytest.raises(ValueError, match="finite"):
        store.add(Datapoint.of(T0, "Bulwark", "Requests", float("nan")))
    with pytest.raises(ValueError, match="repeat"):
        store.add(Datapoint(T0, "Bulwark", "Requests", (("Model", "a"), ("Model", "b")), 1.0))
    with pytest.raises(ValueError, match="period_s"):
        store.series("Bulwark", "Requests", None, "Sum", 0, T0, T0 + 60)


def test_concurrent_adds_and_queries_lose_nothing():
    store = MetricStore()
    errors: list[BaseException] = []

    def writer(worker: int) -> None:
        try:
            for i in range(2000):
                store.add_emf(emf(T0 + (i * 7 + worker) % 600, Model="m", Requests=1))
                if i % 500 == 0:
                    store.series("Bulwark", "Requests", {"Model": "m"}, "p99", 60, T0, T0 + 600)
        except BaseException as exc:  # noqa: BLE001  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(store) == 16000
    sums = store.series("Bulwark", "Requests", {"Model": "m"}, "Sum", 600, T0, T0 + 600)
    assert sums == [(T0, 16000.0)]


def test_a_tenants_local_throttles_are_published_under_its_name_for_its_throttle_band(capsys):
    from agent.telemetry import RequestMetrics

    metrics = RequestMetrics(tenant="acme")
    metrics.add("claude-sonnet-4-6", "LocalThrottles", 2)
    metrics.add("claude-haiku-4-5", "LocalThrottles", 1)
    metrics.add("claude-sonnet-4-6", "Requests", 1)
    metrics.flush()
    store = MetricStore()
    store.add_emf_lines(capsys.readouterr().out.splitlines())
    assert [v for _, v in store.datapoints("Bulwark", "LocalThrottles", {"Tenant": "acme"})] \
        == [3.0]


def test_the_month_budget_use_carries_the_days_left_in_the_utc_month(capsys):
    from datetime import datetime, timezone

    from agent.telemetry import RequestMetrics

    noon = datetime(2026, 12, 21, 12, tzinfo=timezone.utc).timestamp()
    metrics = RequestMetrics(tenant="acme", clock=lambda: noon)
    metrics.windows.update({"month": 40.0, "day": 90.0})
    metrics.flush()
    store = MetricStore()
    store.add_emf_lines(capsys.readouterr().out.splitlines())
    month = {"Tenant": "acme", "Window": "month"}
    assert [v for _, v in store.datapoints("Bulwark", "MonthDaysLeft", month)] == [10.5]
    assert not store.datapoints("Bulwark", "MonthDaysLeft", {"Tenant": "acme", "Window": "day"})
