"""Who may call the agent, on the synthesized default app (cdk.json): Lambda permissions on the
alias for the tenants' roles of other accounts, and the work queue's policy. What they allow
and deny is evaluated in the IAM matrix (test_iam_matrix.py, "callers.*")."""

from __future__ import annotations

import json

from aws_cdk import Token

from policies.callers import caller_permissions, cross_account

STACK_ACCOUNT = "123456789012"  # tests/infra/conftest.py
ACME = "arn:aws:iam::111122223333:role/AcmeApp"
GLOBEX = "arn:aws:iam::444455556666:role/GlobexApp"


def _agent_role_id(dev) -> str:
    return dev.stack.resolve(dev.stack.get_logical_id(dev.stack.agent.role.node.default_child))


def test_each_cross_account_tenant_role_may_use_the_url_and_nothing_else(dev):
    permissions = [r["Properties"] for r in dev.resources("AWS::Lambda::Permission").values()
                   if "AgentLive" in json.dumps(r["Properties"]["FunctionName"])]
    assert sorted((p["Principal"], p["Action"], p.get("FunctionUrlAuthType"),
                   p.get("InvokedViaFunctionUrl")) for p in permissions) == sorted(
        (role, action, auth, via) for role in (ACME, GLOBEX)
        for action, auth, via in (("lambda:InvokeFunctionUrl", "AWS_IAM", None),
                                  ("lambda:InvokeFunction", None, True)))


def test_the_work_queue_denies_sending_to_all_but_the_agent_role(dev):
    [policy] = [r["Properties"] for r in dev.resources("AWS::SQS::QueuePolicy").values()
                if r["Properties"]["Queues"] == [{"Ref": dev.stack.resolve(
                    dev.stack.get_logical_id(dev.stack.state.work_queue.node.default_child))}]]
    statements = {s.get("Sid"): s for s in policy["PolicyDocument"]["Statement"]}
    deny = statements["DenySendWorkFromOthers"]
    assert (deny["Effect"], deny["Principal"], deny["Action"]) == ("Deny", {"AWS": "*"},
                                                                   "sqs:SendMessage")
    [agent_role] = deny["Condition"]["ArnNotLike"]["aws:PrincipalArn"]  # no producers
    assert agent_role == {"Fn::GetAtt": [_agent_role_id(dev), "Arn"]}
    assert statements["SendWorkAgentAndTrustedProducers"]["Principal"] == {"AWS": agent_role}


def test_same_account_roles_get_no_grant_unless_the_account_is_unknown():
    local = f"arn:aws:iam::{STACK_ACCOUNT}:role/apps/LocalApp"
    assert cross_account([local, GLOBEX, GLOBEX], STACK_ACCOUNT) == (GLOBEX,)
    unknown = Token.as_string({"Ref": "AWS::AccountId"})
    assert cross_account([local, GLOBEX], unknown) == (local, GLOBEX)


def test_trusted_invokers_invoke_directly_tenant_roles_only_through_the_url():
    permissions = caller_permissions([GLOBEX], [ACME], STACK_ACCOUNT)
    assert [(p.principal, p.action, p.function_url_auth_type, p.invoked_via_function_url)
            for p in permissions] == [
        (GLOBEX, "lambda:InvokeFunctionUrl", "AWS_IAM", None),
        (GLOBEX, "lambda:InvokeFunction", None, True),
        (ACME, "lambda:InvokeFunction", None, None)]
