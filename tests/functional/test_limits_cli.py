"""`python -m cli.limits` against the local AWS server's DynamoDB (the stack's outputs and the
function's environment from stand-ins): show, set with validation, history, and a guard that
picks the change up without a redeploy."""

from __future__ import annotations

import io
import json

import pytest

from cli import limits as cli
from guard.spend import LimitsSource

STACK = "Bulwark-test"
MODELS = {"claude-sonnet-4-6": {"prices": {"input": 3, "output": 15}},
          "claude-haiku-4-5": {"prices": {"input": 1, "output": 5}}}


class _CloudFormation:
    def __init__(self, outputs: dict[str, str]) -> None:
        self.outputs = outputs

    def describe_stacks(self, StackName):
        return {"Stacks": [{"StackId": f"arn:aws:cloudformation:us-east-1:123456789012:"
                                       f"stack/{StackName}/x",
                            "Outputs": [{"OutputKey": k, "OutputValue": v}
                                        for k, v in self.outputs.items()]}]}


class _Lambda:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def get_function_configuration(self, FunctionName):
        return {"Environment": {"Variables": self.env}}


@pytest.fixture
def clients(local_aws, dynamodb, bucket_table):
    from guard import ensure_table

    limits_table = bucket_table + "-limits"
    ensure_table(dynamodb, limits_table)
    env = {"TENANTS": json.dumps({"acme": {"principals": []}, "globex": {"principals": []}}),
           "MODELS": json.dumps(MODELS),
           "DEGRADE_MODEL": "claude-haiku-4-5",
           "BUDGETS": json.dumps({"tenants": {"acme": {"budget": {"usd_per_day": 50}}}})}
    return {"cloudformation": _CloudFormation({"LimitsTable": limits_table,
                                               "FunctionName": "agent",
                                               "BucketTable": bucket_table}),
            "dynamodb": dynamodb, "lambda": _Lambda(env), "sts": local_aws.client("sts")}


def run(clients, *argv):
    out, err = io.StringIO(), io.StringIO()
    status = cli.main([*argv, "--stack", STACK], clients=clients, out=out, err=err)
    return status, out.getvalue(), err.getvalue()


def test_show_prints_the_deployed_budgets_until_a_set(clients):
    status, out, _ = run(clients, "show")
    assert status == 0 and "limits from cdk.json (deployed)" in out
    assert "tenant:acme" in out and "50" in out


def test_set_changes_the_limits_every_caller_reads_and_records_who_what_before_after(
        clients):
    status, out, err = run(clients, "set", "tenants.acme.budget.usd_per_day=20",
                           "tenants.globex.budget.usd_per_month=300", "--reason", "quarter end")
    assert status == 0, err
    assert "v0 -> v1" in out
    source = LimitsSource(clients["cloudformation"].outputs["LimitsTable"], clients["dynamodb"])
    from guard.spend import LimitSet

    current = source.current(LimitSet())
    assert current.tenants["acme"].usd_per_day == 20.0
    assert current.tenants["globex"].usd_per_month == 300.0
    status, out, _ = run(clients, "history", "--json")
    [change] = json.loads(out)
    assert change["what"] == ["tenants.acme.budget.usd_per_day=20", "tenants.globex.budget.usd_per_month=300"]
    assert change["who"].startswith("arn:aws:") and change["reason"] == "quarter end"
    assert json.loads(change["before"])["tenants"]["acme"]["budget"]["usd_per_day"] == 50
    assert json.loads(change["after"])["tenants"]["acme"]["budget"]["usd_per_day"] == 20
    assert json.loads(change["after"])["version"] == 1
    assert "config item v1" in run(clients, "show")[1]


@pytest.mark.parametrize("assignment, key", [
    ("tenants.acme.budget.usd_per_day=-5", "tenants.acme.budget.usd_per_day"),
    ("tenants.initech.budget.usd_per_day=5", "tenants.initech"),
    ("budget.currency=EUR", "budget.currency"),
    ('tenants.acme.principals=["arn:aws:iam::1:role/x"]', "tenants.acme.principals"),
    ("tenants.acme.budget.usd_per_week=5", "tenants.acme.budget.usd_per_week"),
    ("models.claude-opus-9.tokens_per_day=5", "models.<model id>"),
])
def test_a_bad_set_changes_nothing_and_says_why(clients, assignment, key):
    status, _, err = run(clients, "set", assignment)
    assert status == 2 and key in err, err
    assert run(clients, "history", "--json")[1].strip() == "[]"
    assert "cdk.json (deployed)" in run(clients, "show")[1]


def test_a_set_against_a_newer_version_is_refused(clients, monkeypatch):
    assert run(clients, "set", "tenants.acme.budget.usd_per_day=20")[0] == 0
    deployment = cli.Deployment(clients, STACK)
    stale = deployment.current

    def older():
        limits, source = stale()
        from dataclasses import replace

        return replace(limits, version=0), source

    monkeypatch.setattr(deployment, "current", older)
    with pytest.raises(cli.LimitsError, match="changed while"):
        cli.set_limits(deployment, ["tenants.acme.budget.usd_per_day=30"], reason=None)


def test_the_audit_cli_lists_limits_changes(clients):
    from cli.audit import filter_rows, limits_rows

    assert run(clients, "set", "tenants.acme.budget.usd_per_day=20")[0] == 0
    [row] = limits_rows(clients["cloudformation"], clients["dynamodb"], STACK)
    assert (row.action, row.target, row.outcome) == ("limits:set",
                                                      "tenants.acme.budget.usd_per_day=20", "ok")
    assert row.principal.startswith("arn:aws:") and " -> " in row.detail
    assert filter_rows([row], tenant="acme") == [row]
    assert filter_rows([row], tenant="globex") == []
