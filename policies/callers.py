"""Who may call the agent: the Function URL's and the function's resource policies (Lambda
permissions on the "live" alias) and the work queue's policy. Each condition carries a
one-line comment on what it prevents.

What these can and cannot do: a Lambda permission only allows. A principal of the function's
own account whose identity policy grants `lambda:InvokeFunctionUrl`/`lambda:InvokeFunction`
needs no resource-policy grant, so the permissions here govern cross-account callers; the
tenant a Function URL request acts for is enforced in code (`agent.tenancy`), from the signer's
identity. A direct invoke carries no caller identity: whoever may invoke the function directly
(`trusted_invokers`, or same-account principals with `lambda:InvokeFunction` outside a function
URL) is trusted to name the tenant. The queue policy can deny: work that names a tenant comes
only from the agent role and `trusted_producers`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from aws_cdk import Token
from aws_cdk import aws_iam as iam

from agent.contract import role_identity

#: The Function URL's auth type; the Lambda permissions name it.
URL_AUTH_TYPE = "AWS_IAM"


@dataclass(frozen=True)
class InvokePermission:
    """One Lambda permission (a statement of the alias's resource policy): `principal` (an IAM
    role ARN) may call `action`. `function_url_auth_type` and `invoked_via_function_url` set
    the conditions Lambda writes for them."""

    id: str
    principal: str
    action: str
    function_url_auth_type: str | None = None
    invoked_via_function_url: bool | None = None


def cross_account(principals: Iterable[str], account: str) -> tuple[str, ...]:
    """The role ARNs outside `account`, in order without repeats; every one when the account
    is not known at synth (a token): a grant to a same-account role is harmless."""
    unique = tuple(dict.fromkeys(principals))
    if Token.is_unresolved(account):
        return unique
    return tuple(p for p in unique if role_identity(p)[1] != account)


def caller_permissions(tenant_principals: Iterable[str], trusted_invokers: Iterable[str],
                       account: str) -> list[InvokePermission]:
    """The alias's resource policy: cross-account tenant roles through the Function URL only,
    cross-account trusted invokers directly."""
    permissions = []
    for index, principal in enumerate(cross_account(tenant_principals, account)):
        # lambda:FunctionUrlAuthType = AWS_IAM: the grant holds only for the IAM-authenticated
        # URL, whose signer the handler maps to a tenant.
        permissions.append(InvokePermission(f"TenantUrl{index}", principal,
                                            "lambda:InvokeFunctionUrl",
                                            function_url_auth_type=URL_AUTH_TYPE))
        # lambda:InvokedViaFunctionUrl = true: the InvokeFunction a URL request also needs,
        # and no direct invoke, where the body's tenant would be trusted.
        permissions.append(InvokePermission(f"TenantUrlInvoke{index}", principal,
                                            "lambda:InvokeFunction",
                                            invoked_via_function_url=True))
    for index, principal in enumerate(cross_account(trusted_invokers, account)):
        # No condition: a trusted invoker (a front door that derived the tenant) invokes
        # directly and names the tenant itself.
        permissions.append(InvokePermission(f"TrustedInvoker{index}", principal,
                                            "lambda:InvokeFunction"))
    return permissions


def role_patterns(role_arn: str) -> list[str]:
    """`aws:PrincipalArn` patterns of a role, with or without a path (a role name is unique in
    its account, so account and name identify it)."""
    partition, account, name = role_identity(role_arn)
    prefix = f"arn:{partition}:iam::{account}:role/"
    return [f"{prefix}{name}", f"{prefix}*/{name}"]


def work_queue_statements(queue_arn: str, agent_role_arn: str,
                          producers: Iterable[str]) -> list[iam.PolicyStatement]:
    """The work queue's policy: the agent role and the trusted producers may send work (which
    names its tenant); everyone else is denied."""
    producers = tuple(dict.fromkeys(producers))
    allowed = [agent_role_arn, *(p for arn in producers for p in role_patterns(arn))]
    return [
        iam.PolicyStatement(
            sid="SendWorkAgentAndTrustedProducers",
            principals=[iam.ArnPrincipal(agent_role_arn),
                        *(iam.ArnPrincipal(arn) for arn in producers)],
            actions=["sqs:SendMessage"], resources=[queue_arn]),
        iam.PolicyStatement(
            sid="DenySendWorkFromOthers", effect=iam.Effect.DENY,
            principals=[iam.AnyPrincipal()], actions=["sqs:SendMessage"], resources=[queue_arn],
            conditions={
                # aws:PrincipalArn: a queued message's tenant is trusted, so nobody else (not
                # even an account principal allowed sqs:* by its own policy) may queue work.
                "ArnNotLike": {"aws:PrincipalArn": allowed}}),
    ]


def producer_key_statement(producers: Iterable[str], account: str, region: str
                           ) -> iam.PolicyStatement | None:
    """The data key's policy statement for trusted producers of other accounts (the work queue
    is encrypted with it; a same-account producer's own policy suffices); None when there are
    none."""
    others = cross_account(producers, account)
    if not others:
        return None
    return iam.PolicyStatement(
        sid="TrustedProducersSendWork",
        principals=[iam.ArnPrincipal(arn) for arn in others],
        actions=["kms:GenerateDataKey", "kms:Decrypt"],
        resources=["*"],  # in a key policy "*" means this key
        conditions={
            # kms:ViaService: only as SQS encrypts a message they send, never to decrypt or
            # wrap data of their own with the stack's key.
            "StringEquals": {"kms:ViaService": f"sqs.{region}.amazonaws.com"}})
