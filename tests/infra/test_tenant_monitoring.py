"""The tenant row and wait alarms (`stacks.tenant_monitoring`) in the synthesized default app
(cdk.json's tenants acme and globex)."""

from __future__ import annotations

import json

from agent.contract import CAPACITY_METRICS


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
