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


# -- `python -m cli.limits set` of weights and caps, followed by every caller ---------------

@pytest.fixture
def deployment(local_aws, dynamodb, bucket_table):
    """The outputs and function environment of a stack with two tenants, acme capped at
    60 requests per minute, and one Anthropic model (no Bedrock tpm)."""
    from agent.contract import ModelSpec, Prices, encode_models
    from guard import Limits, ensure_table

    limits_table = bucket_table + "-limits"
    ensure_table(dynamodb, limits_table)
    model = ModelSpec(model_id="claude-sonnet-4-6", bucket_id="anthropic#sonnet",
                      limits=Limits(600, 300_000, 60_000), prices=Prices(3.0, 15.0))
    env = {"TENANTS": json.dumps({"acme": {"principals": [], "rpm": 60},
                                  "globex": {"principals": []}}),
           "MODELS": encode_models([model]), "BUDGETS": "{}"}
    return {"cloudformation": _CloudFormation({"LimitsTable": limits_table, "FunctionName": "agent",
                                        "BucketTable": bucket_table}),
            "dynamodb": dynamodb, "lambda": _Lambda(env), "sts": local_aws.client("sts")}


def _callers(clients, clock, n=2):
    """`n` agent containers: their buckets follow the limits item through
    `agent.runtime.follow_shares`, each with its own LimitsSource on the simulated clock."""
    from types import SimpleNamespace

    from agent.contract import decode_tenants
    from agent.runtime import follow_shares
    from guard.spend import LimitsSource

    specs = decode_tenants(clients["lambda"].env["TENANTS"])
    config = SimpleNamespace(tenant_specs=specs,
                             tenant_shares={spec.name: spec.share for spec in specs})
    from guard import Limits, TokenBucket

    out = []
    for _ in range(n):
        bucket = TokenBucket(clients["cloudformation"].outputs["BucketTable"],
                             "anthropic#sonnet", Limits(600, tenants=config.tenant_shares),
                             clients["dynamodb"], clock=clock)
        source = LimitsSource(clients["cloudformation"].outputs["LimitsTable"],
                              clients["dynamodb"], clock=clock)
        follow_shares(source, config, [bucket])
        out.append((bucket, source))
    return out


def test_a_set_of_weights_and_caps_reaches_every_caller_within_a_minute(deployment):
    from guard.spend import LimitSet

    clock = _Clock()
    callers = _callers(deployment, clock)
    for _, source in callers:
        source.current(LimitSet())  # each container's first call reads the limits: v0
    assert all(bucket.shares_version == 0 for bucket, _ in callers)
    status, out, err = run(deployment, "set", "tenants.acme.weight=3",
                            "tenants.globex.rpm=20")
    assert status == 0, err
    clock.now += 31  # past the config item's refresh interval
    first, _ = callers[0]
    callers[0][1].current(LimitSet())  # only the first container has read it yet
    assert first.limits.tenants["globex"].rpm == 20
    late, _ = callers[1]
    granted = first.try_acquire(1, tenant="globex").granted  # the switch, then the grant
    granted += sum(late.try_acquire(1, tenant="globex").granted for _ in range(30))
    granted += sum(first.try_acquire(1, tenant="globex").granted for _ in range(30))
    # globex's new cap, a burst of 20 (less the idle form's 1 s margin), whichever container
    # asked; its old share (no cap on a 600 rpm bucket) would have granted all 61
    assert 19 <= granted <= 20
    assert late.limits.tenants["acme"].weight == 3
    assert late.limits.tenants["acme"].rpm == 60  # the deployed cap stays


@pytest.mark.parametrize("assignment, key", [
    ("tenants.acme.weight=-1", "tenants.acme.weight"),
    ("tenants.acme.rpm=0", "tenants.acme.rpm"),
    ("tenants.acme.tpm=1000", "caps tokens, which this bucket does not enforce"),
    ("tenants.initech.weight=2", "tenants.initech"),
    ("tenants.acme.wieght=2", "tenants.acme.wieght"),
])
def test_a_bad_share_changes_nothing_and_says_why(deployment, assignment, key):
    status, _, err = run(deployment, "set", assignment)
    assert status == 2 and key in err and "nothing changed" in err, err
    assert "cdk.json (deployed)" in run(deployment, "show")[1]


def test_show_lists_the_shares_and_a_set_keeps_the_deployed_ones(deployment):
    assert run(deployment, "set", "tenants.globex.weight=2")[0] == 0
    out = run(deployment, "show")[1]
    assert "config item v1" in out
    acme = next(line for line in out.splitlines() if line.startswith("acme "))
    assert acme.split()[1:3] == ["1", "60"]  # weight 1, the deployed rpm cap of 60


def test_clear_runaway_of_a_tenant_not_throttled_says_so(deployment):
    status, _, err = run(deployment, "clear-runaway", "--tenant", "acme")
    assert status == 2 and "not throttled" in err


class _Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_clear_runaway_releases_a_throttled_tenant_and_a_set_keeps_the_others(deployment):
    from guard.runaway import DEPLOYMENT, Throttle
    from guard.spend import LimitSet, LimitsSource, write_limits

    table = deployment["cloudformation"].outputs["LimitsTable"]
    throttles = {"acme": Throttle(1.8e9, 0.5, 0.05, {"rpm": 3}),
                 DEPLOYMENT: Throttle(1.8e9, 2.0, 0.2, {"rpm": 30})}
    write_limits(deployment["dynamodb"], table, LimitSet(), LimitSet(version=1,
                 runaway=throttles), who="breaker", what=["tenants.acme.runaway=throttled"],
                 at=1.7e9)  # before the CLI's changes (history is in time order)
    assert "runaway: acme throttled" in run(deployment, "show")[1]
    assert run(deployment, "set", "tenants.globex.weight=2")[0] == 0  # keeps the throttles
    status, out, err = run(deployment, "clear-runaway", "--tenant", "acme", "--reason", "fixed")
    assert status == 0 and "v2 -> v3" in out, err
    limits = LimitsSource(table, deployment["dynamodb"]).current(LimitSet())
    assert set(limits.runaway) == {DEPLOYMENT}
    assert limits.shares["globex"].weight == 2
    history = json.loads(run(deployment, "history", "--json")[1])
    assert history[-1]["what"] == ["tenants.acme.runaway=cleared"]
    assert run(deployment, "clear-runaway", "--deployment")[0] == 0
