"""Tenants from the caller's identity: Function URL requests signed by two applications' roles
(events built as the demo builds them), against the local AWS server and the Claude emulator.

acme is bound to AcmeApp (same account), globex to GlobexApp (another account); SharedOps is
bound to both. The body may name one of the caller's tenants, never another."""

from __future__ import annotations

import json
import uuid

import pytest

from local.demo.run import function_url_event, session_arn
# the stack and emulator fixtures of the handler tests (the resources the stack deploys)
from tests.functional.test_agent_handler import (drain_bucket, emulator, invoke,  # noqa: F401
                                                 stack)

ACME_ROLE = "arn:aws:iam::123456789012:role/apps/AcmeApp"
GLOBEX_ROLE = "arn:aws:iam::210987654321:role/GlobexApp"
SHARED_ROLE = "arn:aws:iam::123456789012:role/SharedOps"
TENANTS = {"acme": {"principals": [ACME_ROLE, SHARED_ROLE]},
           "globex": {"principals": [GLOBEX_ROLE, SHARED_ROLE]}}
ACME, GLOBEX, SHARED = (session_arn(role, "app-1") for role in (ACME_ROLE, GLOBEX_ROLE,
                                                               SHARED_ROLE))


@pytest.fixture
def bound(stack, monkeypatch):
    """The stack's environment with tenants bound to roles (TENANTS as the stack encodes it)."""
    monkeypatch.setenv("TENANTS", json.dumps(TENANTS))
    stack["module"].reset_runtime()
    return stack


def call(stack, caller, **body):
    response = invoke(stack, function_url_event(body, caller))
    return response["statusCode"], json.loads(response["body"])


def stored(stack, tenant, request_id):
    return stack["dynamodb"].get_item(TableName=stack["names"]["results"], Key={
        "request_id": {"S": f"{tenant}/{request_id}"}}).get("Item")


def test_each_role_is_served_as_its_own_tenant_without_naming_it(bound):
    for caller, tenant in ((ACME, "acme"), (GLOBEX, "globex")):
        code, answer = call(bound, caller, prompt="status?", request_id=f"r-{tenant}")
        assert (code, answer["status"]) == (200, "ok"), answer
        assert stored(bound, tenant, f"r-{tenant}") is not None


def test_a_role_naming_another_tenant_is_403_naming_only_its_role(bound, emulator):
    code, answer = call(bound, ACME, prompt="read globex's notes", tenant="globex",
                        request_id="r-forged")
    assert code == 403 and answer["error"]["type"] == "forbidden_tenant"
    message = answer["error"]["message"]
    assert "AcmeApp (account 123456789012)" in message and "globex" not in message
    assert emulator.stats()["requests"] == 0
    assert stored(bound, "globex", "r-forged") is None


@pytest.mark.parametrize("caller, kind", [
    ("arn:aws:iam::123456789012:user/alice", "an IAM user"),
    ("arn:aws:sts::123456789012:federated-user/bob", "a federated user"),
    (session_arn("arn:aws:iam::123456789012:role/Unbound", "s"), "not bound to any tenant"),
    (None, "carries no IAM caller"),
])
def test_callers_bound_to_no_tenant_are_403(bound, caller, kind):
    code, answer = call(bound, caller, prompt="hi", tenant="acme")
    assert code == 403 and answer["error"]["type"] == "forbidden_tenant"
    assert kind in answer["error"]["message"]


def test_a_role_bound_to_both_tenants_names_one(bound):
    code, answer = call(bound, SHARED, prompt="hi")
    assert code == 400 and "bound to several tenants (acme, globex)" in answer["error"]["message"]
    code, answer = call(bound, SHARED, prompt="hi", tenant="globex", request_id="r-shared")
    assert (code, answer["status"]) == (200, "ok")
    assert stored(bound, "globex", "r-shared") is not None


def test_the_tool_session_is_tagged_with_the_derived_tenant(bound):
    call(bound, GLOBEX, prompt="warm up")  # builds the runtime
    sent = []
    bound["module"].current_runtime().sts.meta.events.register(
        "before-parameter-build.sts.AssumeRole", lambda params, **_: sent.append(dict(params)))
    code, answer = call(bound, GLOBEX, prompt='Read.\nEMULATOR: call list_documents {}',
                        request_id="r-tools")
    assert code == 200, answer
    [assumed] = sent
    assert {t["Key"]: t["Value"] for t in assumed["Tags"]}["tenant"] == "globex"


def test_get_result_answers_only_for_the_callers_own_tenant(bound):
    call(bound, GLOBEX, prompt="globex work", request_id="r-owned")
    code, own = call(bound, GLOBEX, action="get_result", request_id="r-owned")
    assert code == 200 and own["status"] == "ok"
    # acme's role asking for globex's result, named or not: not found, as an unknown id
    _, named = call(bound, ACME, action="get_result", request_id="r-owned", tenant="globex")
    _, unknown = call(bound, GLOBEX, action="get_result", request_id="r-never",
                      tenant="globex")
    assert named["error"]["type"] == unknown["error"]["type"] == "not_found"
    assert named["error"]["message"] == unknown["error"]["message"].replace("r-never",
                                                                            "r-owned")
    _, unnamed = call(bound, ACME, action="get_result", request_id="r-owned")
    assert unnamed["error"]["type"] == "not_found"
    code, anonymous = call(bound, "arn:aws:iam::123456789012:user/alice",
                           action="get_result", request_id="r-owned", tenant="globex")
    assert code == 403 and anonymous["error"]["type"] == "forbidden_tenant"
    # a role bound to both tenants names the one it reads (its first tenant by default)
    _, shared = call(bound, SHARED, action="get_result", request_id="r-owned", tenant="globex")
    assert shared["status"] == "ok"
    _, first = call(bound, SHARED, action="get_result", request_id="r-owned")
    assert first["error"]["message"] == named["error"]["message"].replace("globex", "acme")


def test_a_deferred_request_keeps_its_derived_tenant_on_the_queue(bound, monkeypatch):
    drain_bucket(bound)
    sent = []
    bound["module"].current_runtime().sqs.meta.events.register(
        "before-parameter-build.sqs.SendMessage", lambda params, **_: sent.append(dict(params)))
    code, answer = call(bound, GLOBEX, prompt="later", request_id="r-later", deadline_s=0)
    assert code == 202 and answer["status"] == "deferred"
    [message] = sent
    assert json.loads(message["MessageBody"])["request"]["tenant"] == "globex"


def test_a_direct_invoke_is_trusted_to_name_the_tenant(bound):
    # no caller identity in a direct invoke: who may invoke is configuration (trusted_invokers)
    response = invoke(bound, {"prompt": "hi", "tenant": "globex", "request_id": "r-direct"})
    assert response["status"] == "ok"
    assert stored(bound, "globex", "r-direct") is not None


def test_the_batch_lane_queues_under_the_derived_tenant(bound, monkeypatch):
    url = bound["sqs"].create_queue(QueueName=f"batch-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    monkeypatch.setenv("BATCH_QUEUE_URL", url)
    bound["module"].reset_runtime()
    code, answer = call(bound, GLOBEX, prompt="Label this ticket", lane="batch",
                        request_id="r-batch")
    assert (code, answer["status"]) == (202, "queued")
    [message] = bound["sqs"].receive_message(QueueUrl=url)["Messages"]
    assert json.loads(message["Body"])["request"]["tenant"] == "globex"
    assert stored(bound, "globex", "r-batch") is not None
    _, other = call(bound, ACME, action="get_result", request_id="r-batch", tenant="globex")
    assert other["error"]["type"] == "not_found"
