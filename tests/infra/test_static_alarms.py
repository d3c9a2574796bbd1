"""`stacks.static_alarms`: each model alarm is one `AlarmSpec` (no synth: the specs are data;
the synthesized alarms are asserted in test_monitoring.py and test_docs_alarms.py)."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import aws_cloudwatch as cloudwatch

from stacks.settings import AlarmSettings
from stacks.static_alarms import model_alarm_specs

OPERATIONS = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
MODEL = "claude-sonnet-4-6"


def test_each_model_alarm_names_its_docs_row_and_its_row_is_written():
    specs = model_alarm_specs(MODEL, AlarmSettings())
    assert [spec.docs_row for spec in specs] == [
        "<model>-Upstream429-Critical", "<model>-LocalThrottleRate-Warning",
        "<model>-QuotaUsedPercent-Warning", "<model>-LatencyP99-Warning",
        "<model>-FailureRate-Critical", "<model>-CostPerHour-Warning"]
    assert [spec.docs_row for spec in specs if f"| `{spec.docs_row}` |" not in OPERATIONS] == []


def test_the_thresholds_come_from_the_alarm_settings_and_the_description_says_them():
    settings = AlarmSettings(local_throttle_rate_percent=25, quota_used_percent=85,
                             latency_p99_ms=45_000, failure_rate_percent=7,
                             cost_per_hour_usd=3)
    specs = {spec.name: spec for spec in model_alarm_specs(MODEL, settings)}
    assert {name: spec.threshold for name, spec in specs.items()} == {
        "Upstream429": 0, "LocalThrottleRate": 25, "QuotaUsedPercent": 85,
        "LatencyP99": 45_000, "FailureRate": 7, "CostPerHour": 3}
    assert "45000 ms" in specs["LatencyP99"].description
    assert all(MODEL in spec.description for spec in specs.values())
    assert specs["QuotaUsedPercent"].comparison \
        == cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
    assert (specs["FailureRate"].periods, specs["FailureRate"].datapoints) == (3, 2)
