"""Capacity pools on the dashboard and in the alarms, from the synthesized pools app
(tests/infra/conftest.py `pooled`): the row "where the traffic went" and an alarm per pool
whose breaker stays open."""

from __future__ import annotations

import json

from stacks.monitoring import POOL_BREAKER_ALARM_MINUTES

POOLS = ["bedrock@us-east-1", "bedrock@us-west-2/flex", "bedrock@eu-west-1"]


def _alarms(synth, metric):
    return {k: v["Properties"] for k, v in synth.resources("AWS::CloudWatch::Alarm").items()
            if v["Properties"].get("MetricName") == metric}


def test_one_alarm_per_pool_when_its_breaker_stays_open(pooled):
    alarms = _alarms(pooled, "PoolBreakerOpen")
    by_pool = {next(d["Value"] for d in p["Dimensions"] if d["Name"] == "Pool"): p
               for p in alarms.values()}
    assert sorted(by_pool) == sorted(POOLS)
    for pool, props in by_pool.items():
        assert props["Namespace"] == "Bulwark"
        assert {d["Name"]: d["Value"] for d in props["Dimensions"]} == {"Model": "sonnet",
                                                                        "Pool": pool}
        assert (props["Statistic"], props["Period"], props["Threshold"]) == ("Minimum", 60, 1)
        assert props["EvaluationPeriods"] == props["DatapointsToAlarm"] == \
            POOL_BREAKER_ALARM_MINUTES
        assert props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert props["TreatMissingData"] == "notBreaching"
        assert props["AlarmActions"], "the alarm notifies the alarm topic"
    assert pooled.stack.monitoring.alarms["PoolBreakerOpen/sonnet/bedrock@us-east-1"]


def test_the_dashboard_shows_where_the_traffic_went(pooled):
    [dashboard] = pooled.resources("AWS::CloudWatch::Dashboard").values()
    body = pooled.stack.resolve(dashboard["Properties"]["DashboardBody"])
    text = body if isinstance(body, str) else json.dumps(body)
    text = text.replace('\\"', '"')
    assert "Where the traffic went: sonnet" in text
    assert "Pool breakers (1 = open) and 529s: sonnet" in text
    for pool in POOLS:
        for metric in ("Requests", "CostUSD", "PoolBreakerOpen", "Upstream529"):
            assert f'"{metric}","Model","sonnet","Pool","{pool}"' in text, (metric, pool)


def test_an_app_without_pools_has_no_pool_row_or_alarm(dev):
    assert not _alarms(dev, "PoolBreakerOpen")
    assert "Where the traffic went" not in json.dumps(dev.json)
