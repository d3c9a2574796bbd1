"""The deployed dashboard on the local page: its data endpoint against known series, the replay
of a saved run, and what a person sees in headless Chromium."""

from __future__ import annotations

import contextlib
import io
import json
import urllib.request

import pytest

from agent.telemetry import RequestMetrics
from local.cloudwatch.api import LocalCloudWatch
from local.cloudwatch.dashboard import (NO_DATA, DashboardServer, browser_available, replay,
                                        save_run, screenshot)
from local.cloudwatch.metrics import Datapoint

T0 = 1_800_007_200.0  # epoch-aligned; a range no other test writes to
MODEL = "claude-sonnet-4-6"
RUN_S = 180


def _run_lines() -> list[str]:
    """Three minutes of one model: a request every 2 s (latency rising), a local throttle
    every 10 s, and upstream 429s in the last minute (the Upstream429 alarm fires)."""
    lines = []
    for second in range(0, RUN_S, 2):
        metrics = RequestMetrics()
        metrics.add(MODEL, "Requests")
        metrics.add(MODEL, "Succeeded")
        metrics.add(MODEL, "InputTokens", 400)
        metrics.add(MODEL, "OutputTokens", 60)
        metrics.add(MODEL, "Latency", 1000 + 10 * second)
        metrics.add(MODEL, "CostUSD", 0.002)
        if second % 10 == 0:
            metrics.add(MODEL, "LocalThrottles")
        if second >= 120:
            metrics.add(MODEL, "Upstream429")
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            metrics.flush()
        for line in buffer.getvalue().splitlines():
            doc = json.loads(line)
            doc["_aws"]["Timestamp"] = int((T0 + second) * 1000)
            lines.append(json.dumps(doc))
    return lines


@pytest.fixture(scope="module")
def saved_run(dev, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    (out / "emf.jsonl").write_text("\n".join(_run_lines()) + "\n")
    save_run(out, template=dev.json, resources={}, start=T0, end=T0 + RUN_S,
             extra=[Datapoint.of(T0, "AWS/Lambda", "Errors", 0.0,
                                 {"FunctionName": "AgentFunctionB8994DEA"}, "Count")])
    return out


@pytest.fixture(scope="module")
def view(saved_run, local_aws):
    return replay(saved_run, LocalCloudWatch(local_aws.client("cloudwatch")))


def _widget(data, title: str) -> dict:
    return next(w for d in data["dashboards"] for w in d["widgets"] if w["title"] == title)


def test_replay_ingests_the_saved_run_and_draws_every_widget_or_says_no_data(view):
    data = view.data()
    run = data["run"]
    assert run["datapoints"] == len(view.cloudwatch.raw) > 90 * 6
    widgets = [w for d in data["dashboards"] for w in d["widgets"] if w["type"] == "metric"]
    assert run["widgets"] == len(widgets) >= 40
    assert all(w["has_data"] or w["reason"] == NO_DATA for w in widgets)
    assert 10 <= run["with_data"] < len(widgets)  # DynamoDB, SQS: nothing in this run
    assert _widget(data, "Errors")["has_data"]  # the saved platform datapoint, replayed


def test_data_endpoint_serves_known_series_math_and_percentiles(view):
    with DashboardServer(view) as server:
        with urllib.request.urlopen(server.url + "api/dashboard") as response:
            data = json.loads(response.read())
    requests = {line["label"]: line for line in _widget(data, "Requests (per minute)")["lines"]}
    sonnet = requests[f"Requests {MODEL}"]
    assert (sonnet["stat"], sonnet["period"], sonnet["unit"]) == ("Sum", 60, "Count")
    assert [v for _, v in sonnet["points"] if v is not None] == [30.0, 30.0, 30.0]
    assert not requests["Requests claude-haiku-4-5"]["has_data"]
    latency = {line["label"]: line for line in _widget(data, "Latency p99 (ms)")["lines"]}
    # one 5-minute period of latencies 1000, 1020, ..., 2780 ms: rank ceil(0.99 * 90) = 90
    assert [v for _, v in latency["Latency"]["points"] if v is not None] == [2780.0]
    rate = next(w for w in data["dashboards"][0]["widgets"]
                if w["title"] == "Local throttle rate (%)" and w["has_data"])
    # 18 throttles against 90 requests in the 5-minute period: 100 * 18 / 108
    assert [round(v, 3) for _, v in rate["lines"][0]["points"] if v] == [16.667]
    limits = _widget(data, f"Tokens vs limits: {MODEL}")["annotations"]
    assert {a["label"] for a in limits} >= {"ITPM limit 30,000", "RPM limit 50"}
    alarms = {a["name"]: a for a in data["alarms"]}
    upstream = alarms[f"Bulwark-dev-{MODEL}-Upstream429-Critical"]
    assert upstream["state"] == "ALARM" and upstream["fired"]
    assert [h["state"] for h in upstream["history"]] == ["OK", "ALARM"]


def test_a_person_sees_every_widget_the_limits_and_the_fired_alarm(view, tmp_path):
    # `make test` installs both; a missing browser fails here instead of skipping unseen
    assert browser_available(), "needs /usr/bin/chromium and playwright: run `make setup`"
    from playwright.sync_api import sync_playwright

    from local.cloudwatch.dashboard import CHROMIUM, CHROMIUM_ARGS

    with DashboardServer(view) as server:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                page.goto(server.url)
                page.wait_for_selector("body[data-ready='true']", timeout=60_000)
                widgets = page.locator(".widget.metric")
                count = widgets.count()
                assert count == view.data()["run"]["widgets"]
                for i in range(count):
                    widget = widgets.nth(i)
                    if widget.get_attribute("data-has-data") == "true":
                        box = widget.locator("canvas").bounding_box()
                        assert box and box["width"] > 100 and box["height"] > 40
                    else:
                        text = widget.locator(".no-data").inner_text()
                        assert text.startswith("No data in this run")
                tokens = page.locator(f".widget[data-title='Tokens vs limits: {MODEL}']")
                assert "ITPM limit 30,000: 30,000" in tokens.locator(".legend").inner_text()
                assert "RPM limit 50: 50" in tokens.locator(".legend").inner_text()
                name = f"Bulwark-dev-{MODEL}-Upstream429-Critical"
                fired = page.locator(f".alarm[data-alarm='{name}']")
                assert fired.locator(".state").inner_text() == "ALARM"
                upstream = page.locator(".widget[data-title='Upstream 429 (alarm: any)']").first
                assert upstream.locator("[data-alarm-state]").inner_text() == "ALARM"
            finally:
                browser.close()
        shot = screenshot(server.url, tmp_path / "dashboard.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 100_000


def test_the_last_15_minutes_row_reads_high_resolution_requests_at_10_s(view):
    widget = _widget(view.data(), f"Requests: {MODEL}, last 15 min (10 s)")
    assert (widget["period"], widget["range_label"]) == (10, "last 15 minutes")
    line = widget["lines"][0]
    # the agent emits Requests at StorageResolution 1, so the 10 s periods hold 5 requests each
    assert line["period"] == 10 and [v for _, v in line["points"] if v] == [5.0] * 18
    assert [a["label"] for a in widget["annotations"]] == ["RPM 50/min: refill 8.3 per 10 s"]
