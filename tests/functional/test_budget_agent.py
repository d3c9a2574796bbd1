"""Budgets through the agent Lambda: the environment's budgets, the tenant's action, the
per-tenant metrics, and limits changed in the config table without a redeploy."""

from __future__ import annotations

import json

import pytest

from tests.functional.test_agent_handler import (MAIN, emitted, emulator, invoke,  # noqa: F401
                                                 queued, stack)


def set_budgets(stack, monkeypatch, limits: dict, **extra) -> None:
    monkeypatch.setenv("BUDGETS", json.dumps(limits))
    for name, value in extra.items():
        monkeypatch.setenv(name, value)
    stack["module"].reset_runtime()


def test_a_tenant_over_budget_is_rejected_and_the_other_tenant_is_served(stack, monkeypatch,
                                                                         capsys):
    set_budgets(stack, monkeypatch, {"tenants": {"acme": {"budget": {"usd_per_day": 0}}}})
    refused = invoke(stack, {"prompt": "hello", "tenant": "acme", "request_id": "b-1"})
    assert refused["status"] == "rejected" and refused["error"]["type"] == "budget"
    assert refused["retry_after"] > 0
    served = invoke(stack, {"prompt": "hello", "tenant": "globex", "request_id": "b-2"})
    assert served["status"] == "ok", served
    emf, _ = emitted(capsys)
    acme = [d for d in emf if d.get("Tenant") == "acme" and "Window" not in d
                and "Priority" not in d]
    globex = [d for d in emf if d.get("Tenant") == "globex"]
    assert acme and acme[0]["BudgetRefused"] == [1.0]
    assert acme[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Tenant"]]
    assert globex and globex[0]["Requests"] == [1.0] and globex[0]["CostUSD"][0] > 0


def test_budget_used_percent_is_emitted_per_tenant(stack, monkeypatch, capsys):
    set_budgets(stack, monkeypatch, {"tenants": {"acme": {"budget": {"usd_per_day": 1.0}}}})
    assert invoke(stack, {"prompt": "hello", "tenant": "acme"})["status"] == "ok"
    emf, _ = emitted(capsys)
    [doc] = [d for d in emf if d.get("Tenant") == "acme" and "BudgetUsedPercent" in d
             and "Window" not in d]
    assert 0 < doc["BudgetUsedPercent"][0] < 100
    [day] = [d for d in emf if d.get("Tenant") == "acme" and d.get("Window") == "day"]
    assert day["BudgetUsedPercent"] == doc["BudgetUsedPercent"]
    assert day["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Tenant", "Window"]]


def test_the_deployment_budget_and_a_model_daily_tokens_are_emitted_for_their_alarms(
        stack, monkeypatch, capsys):
    model = MAIN
    set_budgets(stack, monkeypatch, {"budget": {"usd_per_day": 1.0},
                                     "models": {model: {"tokens_per_day": 1_000_000}}})
    assert invoke(stack, {"prompt": "hello", "tenant": "acme"})["status"] == "ok"
    emf, _ = emitted(capsys)
    [day] = [d for d in emf if d.get("Window") == "day" and "Tenant" not in d]
    assert day["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Window"]]
    assert 0 < day["BudgetUsedPercent"][0] < 100
    [tokens] = [d for d in emf if d.get("Window") == "tokens"]
    assert tokens["Model"] == model and 0 < tokens["BudgetUsedPercent"][0] < 100
    assert sorted(tokens["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]) == [
        "Model", "Window"]


def test_a_limit_set_in_the_config_table_applies_without_a_redeploy(stack, monkeypatch):
    from guard.spend import LIMITS_KEY

    table = stack["names"]["bucket"]  # any table with key pk serves as the config table here
    set_budgets(stack, monkeypatch, {}, LIMITS_TABLE=table)
    assert invoke(stack, {"prompt": "hello", "tenant": "acme"})["status"] == "ok"
    stack["dynamodb"].put_item(TableName=table, Item={
        "pk": {"S": LIMITS_KEY}, "limits": {"M": {"tenants": {"M": {"acme": {"M": {
            "budget": {"M": {"usd_per_day": {"N": "0"}}}}}}}}}})
    source = stack["module"].current_runtime().claude._budget._source
    source._read_at = float("-inf")  # as if its 30 s had passed
    assert invoke(stack, {"prompt": "hello", "tenant": "acme"})["status"] == "rejected"


@pytest.mark.parametrize("raw, words", [
    ("{not json", "BUDGETS"),
    (json.dumps({"tenants": {"acme": {"budget": {"usd_per_day": -1}}}}),
     "tenants.acme.budget"),
])
def test_a_bad_budgets_variable_is_reported_naming_it(stack, monkeypatch, raw, words):
    monkeypatch.setenv("BUDGETS", raw)
    stack["module"].reset_runtime()
    response = invoke(stack, {"prompt": "hello", "tenant": "acme"})
    assert response["status"] == "error" and words in response["error"]["message"]


def test_open_reservations_in_the_way_defer_the_request_instead_of_rejecting_it(stack,
                                                                               monkeypatch):
    from guard import Budget
    from guard.budget import BudgetLedger

    set_budgets(stack, monkeypatch, {"tenants": {"acme": {"budget": {"usd_per_day": 1.0}}}})
    # another caller holds almost all of acme's day (its call is still running)
    hold = BudgetLedger(stack["names"]["bucket"], stack["dynamodb"]).reserve(
        {"tenant:acme": Budget(usd_per_day=1.0)}, 990_000, 100)
    assert hold.granted
    response = invoke(stack, {"prompt": "hello", "tenant": "acme", "deadline_s": 0})
    assert response["status"] == "deferred" and response["reason"] == "budget_reserved"
    assert 0 < response["retry_after"] <= 15
    [message] = queued(stack, wait_s=0) or queued(stack, wait_s=16)
    assert json.loads(message["Body"])["request"]["tenant"] == "acme"


def test_action_batch_queues_the_request_on_the_batch_lane(stack, monkeypatch):
    url = stack["sqs"].create_queue(QueueName=f"batch-budget-{id(stack)}")["QueueUrl"]
    set_budgets(stack, monkeypatch, {"tenants": {"acme": {"budget": {
        "usd_per_day": 0, "action": "batch"}}}}, BATCH_QUEUE_URL=url)
    response = invoke(stack, {"prompt": "Label this ticket", "tenant": "acme",
                              "request_id": "budget-batch-1"})
    assert response["status"] == "queued" and response["lane"] == "batch", response
    [message] = stack["sqs"].receive_message(QueueUrl=url,
                                             MaxNumberOfMessages=10)["Messages"]
    body = json.loads(message["Body"])
    assert body["request"]["tenant"] == "acme"
    assert body["budget_scopes"] == ["tenant:acme", "deployment"]  # what the poller charges
    assert invoke(stack, {"action": "get_result", "request_id": "budget-batch-1",
                          "tenant": "acme"})["status"] == "queued"
