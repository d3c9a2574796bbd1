"""The runaway breaker's scheduled function in the synthesized template: its schedule, its
environment, its one role and what that role may do."""

from __future__ import annotations

import json

from aws_cdk.assertions import Match


def _function(synth):
    [(logical_id, function)] = [
        (k, v) for k, v in synth.resources("AWS::Lambda::Function").items()
        if v["Properties"].get("Handler") == "agent.runaway.handler"]
    return logical_id, function["Properties"]


def _statements(synth):
    [policy] = [v for k, v in synth.resources("AWS::IAM::Policy").items()
                if k.startswith("RunawayPolicy")]
    return {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}


def test_the_breaker_runs_on_a_schedule_one_at_a_time_with_the_runaway_settings(dev):
    logical_id, props = _function(dev)
    assert props["ReservedConcurrentExecutions"] == 1
    assert props["TracingConfig"] == {"Mode": "Active"}
    env = props["Environment"]["Variables"]
    assert json.loads(env["RUNAWAY"]) == {"k": 5.0, "min_baseline_usd_per_hour": 0.5,
                                          "window_minutes": 2, "history_days": 14,
                                          "clear_below": 0.5}
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "Bulwark"
    dev.template.has_resource_properties("AWS::Events::Rule", {
        "ScheduleExpression": "rate(1 minute)",
        "Targets": Match.array_with([Match.object_like({
            "Arn": {"Fn::GetAtt": [logical_id, "Arn"]}})])})


def test_the_breaker_writes_only_the_limits_item_and_its_change_records(dev):
    statement = _statements(dev)["RunawayLimitsItem"]
    assert sorted(statement["Action"]) == ["dynamodb:GetItem", "dynamodb:PutItem"]
    assert statement["Condition"] == {"ForAllValues:StringLike": {
        "dynamodb:LeadingKeys": ["limits", "limits#change#*"]}}


def test_the_breakers_wildcard_grants_are_region_conditioned(dev):
    statements = _statements(dev)
    for sid in ("RunawayReadSpendMetrics", "RunawayXRayTraces"):
        assert statements[sid]["Resource"] == "*"
        assert statements[sid]["Condition"] == {"StringEquals": {
            "aws:RequestedRegion": ["us-east-1"]}}
    assert statements["RunawayReadSpendMetrics"]["Action"] == "cloudwatch:GetMetricData"


def test_runaway_enabled_false_deploys_no_breaker(tmp_path_factory, dev):
    from tests.infra.conftest import Synthesized, reuse_assets

    off = Synthesized({"runaway": {"enabled": False}},
                      reuse_assets(dev, tmp_path_factory.mktemp("cdk-no-runaway")))
    assert not [v for v in off.resources("AWS::Lambda::Function").values()
                if v["Properties"].get("Handler") == "agent.runaway.handler"]
