"""The runaway breaker end to end on a simulated clock (`local.demo.runaway`): 14 days of
seasonal history in local CloudWatch's store, two tenants' agents on the local AWS server's
DynamoDB, the breaker evaluating every minute as its scheduled Lambda does; then the stack's
per-tenant alarms, synthesized from the construct the stack builds them with, replayed by the
local evaluation over the history and the run."""

from __future__ import annotations

import pytest

from local.demo import runaway as scenario


@pytest.fixture(scope="module")
def template():
    """The stack's per-tenant alarms as synthesized: `TenantMonitoring` (what the stack builds
    for its configured tenants) with the default tenant bands, in a stack of its own (the
    whole app takes a minute to synthesize; its infra tests check the same construct)."""
    import aws_cdk as cdk
    from aws_cdk import aws_cloudwatch as cloudwatch
    from aws_cdk import aws_sns as sns

    from stacks.settings import AlarmSettings
    from stacks.tenant_monitoring import TenantMonitoring

    app = cdk.App()
    stack = cdk.Stack(app, "RunawayAlarms")
    TenantMonitoring(stack, "Tenants", tenants=scenario.TENANTS,
                     dashboard=cloudwatch.Dashboard(stack, "Dashboard"),
                     alarm_topic=sns.Topic(stack, "Topic"), alarm_name_prefix="Bulwark-test",
                     bands=AlarmSettings().tenant_anomaly)
    return app.synth().get_stack_by_name("RunawayAlarms").template


@pytest.fixture(scope="module")
def store():
    """The metrics of the run (history and live part)."""
    from local.cloudwatch.metrics import MetricStore

    return MetricStore()


@pytest.fixture(scope="module")
def report(local_aws, template, store):
    """One run of the scenario (about 15 s) and its alarms replayed, read by every test
    here."""
    import os

    report = scenario.run(local_aws.client("dynamodb"), table_prefix=f"runaway-{os.getpid()}",
                          store=store)
    report["alarms"] = scenario.replay_alarms(template, store, report)
    return report


def _alarm(report: dict, tenant: str, kind: str) -> dict:
    return next(a for a in report["alarms"] if a["tenant"] == tenant and a["kind"] == kind)


def test_a_tenant_looping_at_ten_times_its_baseline_is_throttled_within_two_minutes(report):
    assert report["time_to_throttle_s"] is not None and report["time_to_throttle_s"] <= 120
    # its agents pick the cap up within their limits refresh interval (30 s) after that, and
    # refuse once the loop (about 100 requests a minute) has spent the cap's burst
    assert report["time_to_first_refusal_s"] <= report["time_to_throttle_s"] + 31 + 10
    acme = report["per_minute"]["acme"]
    throttled_minutes = [m for m in acme if m >= report["normal_minutes"] + 3]
    assert throttled_minutes
    # held to about its baseline (10 requests a minute at 13:00), not the loop's 100
    assert all(acme[m][1] <= 12 for m in throttled_minutes)


def test_the_other_tenant_is_unaffected(report):
    globex = report["per_minute"]["globex"]
    assert all(asked == admitted for asked, admitted, _ in globex.values())


def test_the_breaker_reports_the_tenant_its_rate_and_its_baseline(report):
    assert report["runaway_throttled_points"] >= 1
    line = report["log"][0]
    assert line["message"] == "runaway_throttled" and line["tenant"] == "acme"
    assert line["rate_usd_per_hour"] > 5 * line["baseline_usd_per_hour"]
    assert 3.0 < line["baseline_usd_per_hour"] < 4.5  # 10 requests/min x $0.006 at 13:00
    assert set(line["caps"]) == {"rpm", "itpm", "otpm"}


def test_the_report_says_time_to_throttle(report):
    text = scenario.render(report)
    assert f"time to throttle: {report['time_to_throttle_s']:.0f} s" in text


def test_the_normal_history_trips_nothing(report):
    assert report["false_trip_checks"] > 250 and report["false_trips"] == []


def test_the_runaway_tenants_alarms_fire_and_the_other_tenants_stay_ok(report):
    runaway = _alarm(report, "acme", "RunawayThrottled")
    assert runaway["fired"] and runaway["alarm_after_loop_min"] <= 3
    # the learned bands see it too: its throttle rate at once, its spend when the hour closes
    assert _alarm(report, "acme", "TenantLocalThrottleRateBand")["fired"]
    cost = _alarm(report, "acme", "TenantCostPerHourBand")
    assert cost["fired"] and cost["period_s"] == 3600
    assert cost["value"] > cost["band"][1]
    assert not _alarm(report, "acme", "TenantFailureRateBand")["fired"]
    globex = [a for a in report["alarms"] if a["tenant"] == "globex"]
    assert {a["kind"] for a in globex} >= {"RunawayThrottled", "TenantCostPerHourBand",
                                          "TenantLocalThrottleRateBand"}
    assert [a["name"] for a in globex if a["fired"] or a["final_state"] != "OK"] == []
    g_cost = _alarm(report, "globex", "TenantCostPerHourBand")
    assert g_cost["band"][0] <= g_cost["value"] <= g_cost["band"][1]


def test_the_normal_history_raises_no_false_alarm(report):
    assert len(report["alarms"]) == 16  # 8 per tenant: 6 bands, wait, runaway
    assert {a["name"]: a["false_alarms"] for a in report["alarms"]
            if a["false_alarms"]} == {}


def test_the_report_names_the_band_the_breach_and_when_the_alarms_fired(report):
    text = scenario.render(report)
    cost = _alarm(report, "acme", "TenantCostPerHourBand")
    line = next(row for row in text.splitlines() if cost["name"] in row)
    assert f"entered ALARM at +{cost['alarm_after_loop_min']:.0f} min" in line
    assert (f"breach 13:00+60 min: {cost['value']:.4g} vs band {cost['band'][0]:.4g}.."
            f"{cost['band'][1]:.4g}") in line
    runaway = _alarm(report, "acme", "RunawayThrottled")
    assert f"entered ALARM at +{runaway['alarm_after_loop_min']:.0f} min" in next(
        row for row in text.splitlines() if runaway["name"] in row)
    assert "other tenant: all alarms stayed OK" in text
    assert "false alarms over the normal history (its last 2 days, 16 alarms): 0" in text
    assert scenario.verdict(report)


def test_a_template_without_the_tenant_alarms_is_an_error_naming_them():
    with pytest.raises(ValueError, match="no RunawayThrottled, TenantCostPerHourBand alarm "
                                         "for tenant 'acme'"):
        scenario.tenant_alarms({"Resources": {}})


def test_the_dashboard_page_draws_each_tenants_band_and_the_breach(report, template, store):
    from local.cloudwatch.api import LocalCloudWatch
    from local.fakes.aws_server import LocalAws

    with LocalAws() as aws:  # a server of its own: no other test's Bulwark datapoints
        data = scenario.page_view(template, store, report,
                                  LocalCloudWatch(aws.client("cloudwatch"))).data()
    widgets = {w["title"]: w for d in data["dashboards"] for w in d["widgets"]}
    throttles = widgets["Local throttle rate (%) and its band: tenant acme"]
    lines = {line["label"].split(" \u00b7 ")[0]: line for line in throttles["lines"]}
    upper = next(line for label, line in lines.items() if label.endswith("(upper)"))
    assert upper["has_data"]  # a band over a math expression is drawn
    rate = next(line for label, line in lines.items() if "(" not in label.replace("(%)", ""))
    breach = [v for _, v in rate["points"] if v is not None and v > 10]
    assert breach  # the throttle rate leaves its band
    cost = _alarm(report, "acme", "TenantCostPerHourBand")
    drawn = widgets["Cost per hour (USD) and its band: tenant acme"]
    at = {line["label"].split(" \u00b7 ")[0][-7:]: dict(map(tuple, line["points"]))
          for line in drawn["lines"]}
    # the page's band learns from the same fortnight as the report's (its series start a few
    # hours earlier, so the oldest day's slot has one more neighbour)
    assert at["(upper)"][cost["period_start"]] == pytest.approx(cost["band"][1], rel=0.01)
    alarms = {a["name"]: a for a in data["alarms"]}
    assert alarms[cost["name"]]["fired"]
    assert not any(a["fired"] for name, a in alarms.items() if "globex" in name)
