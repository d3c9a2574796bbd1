"""The runaway breaker end to end on a simulated clock (`local.demo.runaway`): 14 days of
seasonal history in local CloudWatch's store, two tenants' agents on the local AWS server's
DynamoDB, the breaker evaluating every minute as its scheduled Lambda does."""

from __future__ import annotations

import pytest

from local.demo import runaway as scenario


@pytest.fixture(scope="module")
def report(local_aws):
    """One run of the scenario (about 10 s), read by every test here."""
    import os

    return scenario.run(local_aws.client("dynamodb"), table_prefix=f"runaway-{os.getpid()}")


def test_a_tenant_looping_at_ten_times_its_baseline_is_throttled_within_two_minutes(report):
    assert report["time_to_throttle_s"] is not None and report["time_to_throttle_s"] <= 120
    # its agents enforce the cap within their limits refresh interval (30 s) after that
    assert report["time_to_first_refusal_s"] <= report["time_to_throttle_s"] + 31
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
