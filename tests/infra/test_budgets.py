"""Budgets in the synthesized template: the per-tenant alarms, the dashboard section, the
config table and its write-only data events, the agent's environment, and (through the IAM
evaluator) what the agent role may do with budget items."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.infra.conftest import BEDROCK_PROFILE
from tests.infra.test_iam_matrix import ALLOWED, IMPLICIT, Deployment, simulate

_CONTEXT = json.loads((Path(__file__).resolve().parents[2] / "cdk.json").read_text())[
    "context"]
_TENANTS = _CONTEXT["tenants"]
BUDGETS = {"budget": {"usd_per_month": 2000}, "tenants": {
    "acme": {**_TENANTS["acme"], "budget": {"usd_per_day": 50, "usd_per_month": 800}},
    "globex": {**_TENANTS["globex"], "budget": {"usd_per_month": 100}}}}


@pytest.fixture(scope="module")
def budgeted(tmp_path_factory, dev) -> Deployment:
    from tests.infra.conftest import reuse_assets

    return Deployment(BUDGETS, reuse_assets(dev, tmp_path_factory.mktemp("budgets")))


def resources(d: Deployment, type_: str) -> dict[str, dict]:
    return {k: v for k, v in d.template["Resources"].items() if v["Type"] == type_}


def test_80_and_100_percent_alarms_per_tenant_and_window_go_to_the_alarm_topic(budgeted):
    alarms = {v["Properties"]["AlarmName"]: v["Properties"]
              for v in resources(budgeted, "AWS::CloudWatch::Alarm").values()
              if "Budget" in v["Properties"]["AlarmName"]
              and v["Properties"]["AlarmName"].endswith(("-acme", "-globex"))}
    assert sorted(alarms) == sorted(f"Bulwark-dev-Budget{w}{p}-{t}" for t, w in (
        ("acme", "Day"), ("acme", "Month"), ("globex", "Month")) for p in (80, 100))
    day80 = alarms["Bulwark-dev-BudgetDay80-acme"]
    assert day80["MetricName"] == "BudgetUsedPercent" and day80["Namespace"] == "Bulwark"
    assert sorted(day80["Dimensions"], key=lambda d: d["Name"]) == [
        {"Name": "Tenant", "Value": "acme"}, {"Name": "Window", "Value": "day"}]
    assert day80["Threshold"] == 80 and day80["Statistic"] == "Maximum"
    assert day80["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    topic = next(iter(resources(budgeted, "AWS::SNS::Topic")))
    assert day80["AlarmActions"] == [{"Ref": topic}]
    assert "cli.limits set tenants.acme.budget.usd_per_day" in day80["AlarmDescription"]


@pytest.fixture(scope="module")
def bedrock_budgeted(tmp_path_factory, dev) -> Deployment:
    """Bedrock (where `models.<id>.tokens_per_day` applies) with a daily token quota on the
    default model and a deployment-wide daily budget."""
    from tests.infra.conftest import _BEDROCK_DEFAULTS, BEDROCK_CONTEXT, reuse_assets

    models = {**_BEDROCK_DEFAULTS["models"], BEDROCK_PROFILE: {
        **_BEDROCK_DEFAULTS["models"][BEDROCK_PROFILE], "tokens_per_day": 5_000_000}}
    return Deployment({**BEDROCK_CONTEXT, "models": models, "budget": {"usd_per_day": 300}},
                      reuse_assets(dev, tmp_path_factory.mktemp("budgets-bedrock")))


def shared_budget_alarms(d: Deployment) -> dict[str, dict]:
    return {v["Properties"]["AlarmName"]: v["Properties"]
            for v in resources(d, "AWS::CloudWatch::Alarm").values()
            if "-BudgetDeployment" in v["Properties"]["AlarmName"]
            or "-BudgetTokens" in v["Properties"]["AlarmName"]}


def test_80_and_100_percent_alarms_for_the_deployment_budget(budgeted):
    alarms = shared_budget_alarms(budgeted)
    assert sorted(alarms) == [f"Bulwark-dev-BudgetDeploymentMonth{p}" for p in (100, 80)]
    topic = next(iter(resources(budgeted, "AWS::SNS::Topic")))
    month = alarms["Bulwark-dev-BudgetDeploymentMonth100"]
    assert month["MetricName"] == "BudgetUsedPercent" and month["Statistic"] == "Maximum"
    assert month["Dimensions"] == [{"Name": "Window", "Value": "month"}]
    assert month["Threshold"] == 100 and month["AlarmActions"] == [{"Ref": topic}]
    assert "cli.limits set budget.usd_per_month" in month["AlarmDescription"]


def test_80_and_100_percent_alarms_for_a_model_daily_tokens(bedrock_budgeted):
    alarms = shared_budget_alarms(bedrock_budgeted)
    tokens = {name: a for name, a in alarms.items() if "-BudgetTokens" in name}
    assert sorted(a["Threshold"] for a in tokens.values()) == [80, 100]
    [eighty] = [a for a in tokens.values() if a["Threshold"] == 80]
    assert sorted(eighty["Dimensions"], key=lambda d: d["Name"]) == [
        {"Name": "Model", "Value": BEDROCK_PROFILE}, {"Name": "Window", "Value": "tokens"}]
    assert eighty["MetricName"] == "BudgetUsedPercent" and eighty["AlarmActions"]
    assert f"models.{BEDROCK_PROFILE}.tokens_per_day" in eighty["AlarmDescription"]
    assert sorted(a["Dimensions"][0]["Value"] for name, a in alarms.items()
                  if "-BudgetDeployment" in name) == ["day", "day"]


def test_the_deployment_alarm_fires_in_the_local_alarm_evaluation(budgeted):
    from local.cloudwatch.alarms import evaluate_all
    from local.cloudwatch.metrics import MetricStore

    t0 = 1_800_000_000 - 1_800_000_000 % 300
    store = MetricStore()
    store.add_emf_lines(json.dumps({
        "_aws": {"Timestamp": (t0 + 60) * 1000, "CloudWatchMetrics": [{
            "Namespace": "Bulwark", "Dimensions": [["Window"]],
            "Metrics": [{"Name": "BudgetUsedPercent", "Unit": "Percent"}]}]},
        "Window": "month", "BudgetUsedPercent": 90}) for _ in range(1))
    fired = {r.alarm.name for r in evaluate_all(budgeted.template, store, t0, t0 + 900)
             if r.fired}
    assert "Bulwark-dev-BudgetDeploymentMonth80" in fired
    assert "Bulwark-dev-BudgetDeploymentMonth100" not in fired


def test_no_budget_no_budget_alarms(dev):
    assert not [v for v in dev.resources("AWS::CloudWatch::Alarm").values()
                if "Budget" in v["Properties"]["AlarmName"]]


def test_dashboard_has_the_budget_section(budgeted):
    [dashboard] = resources(budgeted, "AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for title in ("Top tenants by spend", "Spend against budget",
                  "Projected month-end spend at today's rate"):
        assert title in body
    assert "spend0 * 30.4" in body and "BudgetUsedPercent" in body


def test_agent_gets_the_budgets_and_the_config_table(budgeted):
    function = budgeted.template["Resources"][budgeted.logical_id(budgeted.stack.agent.function)]
    env = function["Properties"]["Environment"]["Variables"]
    limits = json.loads(env["BUDGETS"])
    assert limits["tenants"]["acme"]["budget"]["usd_per_day"] == 50
    assert limits["budget"]["usd_per_month"] == 2000
    assert env["LIMITS_TABLE"] == {"Ref": budgeted.logical_id(budgeted.stack.budgets.table)}


def test_trail_records_writes_to_the_config_table_only(budgeted):
    [trail] = resources(budgeted, "AWS::CloudTrail::Trail").values()
    [selector] = [s for s in trail["Properties"]["AdvancedEventSelectors"]
                  if s["Name"].startswith("Limits changes")]
    fields = {f["Field"]: f for f in selector["FieldSelectors"]}
    assert fields["readOnly"]["Equals"] == ["false"]
    assert fields["resources.ARN"]["Equals"] == [
        {"Fn::GetAtt": [budgeted.logical_id(budgeted.stack.budgets.table), "Arn"]}]


def test_agent_role_reaches_budget_items_and_the_limits_item_only(budgeted):
    d = budgeted
    limits_table = d.arn(d.stack.budgets.table)
    cases = {
        "reserve": (ALLOWED, d.request(d.agent, "dynamodb:UpdateItem", d.bucket_table,
                                       {"dynamodb:LeadingKeys": ["budget#2027-01"]})),
        "read_before_refusing": (ALLOWED, d.request(
            d.agent, "dynamodb:GetItem", d.bucket_table,
            {"dynamodb:LeadingKeys": ["budget#2027-01"]})),
        "delete_budget_item": (IMPLICIT, d.request(
            d.agent, "dynamodb:DeleteItem", d.bucket_table,
            {"dynamodb:LeadingKeys": ["budget#2027-01"]})),
        "read_a_bucket_whole": (IMPLICIT, d.request(
            d.agent, "dynamodb:GetItem", d.bucket_table,
            {"dynamodb:LeadingKeys": ["anthropic#sonnet-4"]})),
        "read_limits": (ALLOWED, d.request(d.agent, "dynamodb:GetItem", limits_table,
                                           {"dynamodb:LeadingKeys": ["limits"]})),
        "write_limits": (IMPLICIT, d.request(d.agent, "dynamodb:PutItem", limits_table,
                                             {"dynamodb:LeadingKeys": ["limits"]})),
        "read_change_records": (IMPLICIT, d.request(
            d.agent, "dynamodb:GetItem", limits_table,
            {"dynamodb:LeadingKeys": ["limits#change#1"]})),
    }
    results = simulate({name: request for name, (_, request) in cases.items()})
    assert {name: results[name]["result"] for name in cases} == {
        name: expect for name, (expect, _) in cases.items()}



def test_the_80_percent_alarm_fires_in_the_local_alarm_evaluation(budgeted):
    from local.cloudwatch.alarms import evaluate_all
    from local.cloudwatch.metrics import MetricStore

    t0 = 1_800_000_000 - 1_800_000_000 % 300
    store = MetricStore()
    store.add_emf_lines(json.dumps({
        "_aws": {"Timestamp": (t0 + 60 + i * 60) * 1000, "CloudWatchMetrics": [{
            "Namespace": "Bulwark", "Dimensions": [["Tenant", "Window"]],
            "Metrics": [{"Name": "BudgetUsedPercent", "Unit": "Percent"}]}]},
        "Tenant": "acme", "Window": "day", "BudgetUsedPercent": percent})
        for i, percent in enumerate((40, 70, 85)))
    results = {r.alarm.name: r for r in evaluate_all(budgeted.template, store, t0, t0 + 900)
               if "Budget" in r.alarm.name}
    assert results["Bulwark-dev-BudgetDay80-acme"].fired
    assert not results["Bulwark-dev-BudgetDay100-acme"].fired
    assert not results["Bulwark-dev-BudgetMonth80-acme"].fired


# --- "budget exhausted at": the month budget at the last 24 hours' spend ---------------------
def _tenant_day(store, t0, tenant, *, used, spend, days_left):
    """A day of one tenant: the month's use and the days left beside it, and its spend."""
    from local.cloudwatch.metrics import Datapoint

    month = {"Tenant": tenant, "Window": "month"}
    for hour in range(24):
        t = t0 + hour * 3600 + 60
        store.add(Datapoint.of(t, "Bulwark", "BudgetUsedPercent", used, month))
        store.add(Datapoint.of(t, "Bulwark", "MonthDaysLeft", days_left - hour / 24, month))
        store.add(Datapoint.of(t, "Bulwark", "CostUSD", spend / 24, {"Tenant": tenant}))


def test_each_tenant_with_a_month_budget_has_an_exhaustion_alarm_that_says_what_to_do(
        budgeted):
    alarms = {a["Properties"]["AlarmName"]: a["Properties"]
              for a in resources(budgeted, "AWS::CloudWatch::Alarm").values()}
    for tenant, usd in (("acme", 800), ("globex", 100)):
        alarm = alarms[f"Bulwark-dev-BudgetExhaustion-{tenant}-Warning"]
        assert alarm["ComparisonOperator"] == "LessThanThreshold" and alarm["Threshold"] == 0
        assert alarm["TreatMissingData"] == "notBreaching"
        text = json.dumps(alarm["Metrics"])
        for name in ("BudgetUsedPercent", "CostUSD", "MonthDaysLeft"):
            assert name in text
        assert f"* {usd} / (100 * FILL(spend" in text
        assert f"tenants.{tenant}.budget.usd_per_month=<USD>" in alarm["AlarmDescription"]
        assert "batch lane" in alarm["AlarmDescription"]


def test_the_exhaustion_alarm_fires_when_the_burn_outruns_the_month_and_not_otherwise(
        budgeted):
    from local.cloudwatch.alarms import evaluate_all
    from local.cloudwatch.metrics import MetricStore

    t0 = 1_800_000_000 // 86_400 * 86_400
    store = MetricStore()
    # acme: half of $800 left, $60 a day: gone in 6.7 days with 10 left in the month
    _tenant_day(store, t0, "acme", used=50, spend=60, days_left=10)
    # globex: 80% of $100 left, $2 a day: 40 days with 10 left
    _tenant_day(store, t0, "globex", used=20, spend=2, days_left=10)
    results = {r.alarm.name: r for r in evaluate_all(budgeted.template, store, t0, t0 + 86_400)
               if "BudgetExhaustion" in r.alarm.name}
    acme = results["Bulwark-dev-BudgetExhaustion-acme-Warning"]
    assert acme.fired
    assert acme.worst == pytest.approx(50 * 800 / (100 * 60) - (10 - 23 / 24))
    assert not results["Bulwark-dev-BudgetExhaustion-globex-Warning"].fired


def test_the_budget_section_draws_when_each_budget_runs_out(budgeted):
    [dashboard] = resources(budgeted, "AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    assert "Budget exhausted in (days" in body and "MonthDaysLeft" in body
