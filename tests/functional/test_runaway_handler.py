"""The breaker's Lambda wiring (`agent.runaway`) against the local AWS server: its settings
and scopes from the function's environment, GetMetricData through boto3 on the server's
CloudWatch, the throttle written on the limits item with its change record, the metric and
the log line."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

from agent.contract import ModelSpec, Prices, encode_models
from agent.runaway import breaker_from_env, cloudwatch_reader, evaluate_once
from guard import Limits, ensure_table
from guard.spend import LimitsSource, LimitSet


def _put(cloudwatch, at: float, name: str, value: float, dims: dict) -> None:
    cloudwatch.put_metric_data(Namespace="Bulwark", MetricData=[{
        "MetricName": name, "Value": value, "Timestamp": datetime.fromtimestamp(at, timezone.utc),
        "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()]}])


def test_a_runaway_tenant_is_throttled_on_the_limits_item_with_a_metric_and_a_log_line(
        local_aws, dynamodb, bucket_table):
    cloudwatch = local_aws.client("cloudwatch")
    limits_table = bucket_table + "-limits"
    ensure_table(dynamodb, limits_table)
    now = time.time()
    tenant = f"t{int(now * 1000) % 10**9}"  # metrics outlive a test: a name of its own
    model = ModelSpec(model_id="claude-sonnet-4-6", bucket_id="anthropic#sonnet",
                      limits=Limits(600, 300_000, 60_000), prices=Prices(3.0, 15.0))
    env = {"MODELS": encode_models([model]), "LIMITS_TABLE": limits_table,
           "TENANTS": json.dumps({tenant: {"principals": []}}), "BUDGETS": "{}",
           "RUNAWAY": json.dumps({"k": 5, "min_baseline_usd_per_hour": 0.6})}
    for days_ago in (1, 2, 3):  # the same hour on earlier days: the usual, little spend
        _put(cloudwatch, now - days_ago * 86_400, "CostUSD", 0.01, {"Tenant": tenant})
    for seconds_ago in (20, 50, 80):  # the last two minutes: $1.50 and 150 requests
        _put(cloudwatch, now - seconds_ago, "CostUSD", 0.5, {"Tenant": tenant})
        _put(cloudwatch, now - seconds_ago, "Requests", 50, {"Tenant": tenant})
    breaker, deployed = breaker_from_env(env, cloudwatch_reader(cloudwatch), clock=time.time)
    assert breaker.cap_keys == ("itpm", "otpm", "rpm")
    emitted, logged = [], []
    result = evaluate_once(breaker, dynamodb, limits_table, deployed, who="breaker-role",
                           emit=lambda scope, value: emitted.append((scope, value)),
                           log=lambda event, **fields: logged.append((event, fields)))
    assert tenant in result["throttled"]
    limits = LimitsSource(limits_table, dynamodb).current(LimitSet())
    throttle = limits.runaway[tenant]
    assert throttle.baseline == 0.6 / 60  # the minimum: little history that hour
    assert throttle.caps["rpm"] < 150 / 2  # scaled down from its rate to the baseline
    assert (tenant, 1.0) in emitted
    [(event, fields)] = [entry for entry in logged if entry[1]["tenant"] == tenant]
    assert event == "runaway_throttled" and fields["baseline_usd_per_hour"] == 0.6
    assert fields["rate_usd_per_hour"] > 5 * 0.6
    # a second run keeps it (one more metric, no new write while nothing changes)
    version = limits.version
    evaluate_once(breaker, dynamodb, limits_table, deployed, who="breaker-role",
                  emit=lambda scope, value: emitted.append((scope, value)),
                  log=lambda event, **fields: None)
    assert emitted.count((tenant, 1.0)) == 2
    assert LimitsSource(limits_table, dynamodb).current(LimitSet()).version == version
