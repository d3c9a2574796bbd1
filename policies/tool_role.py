"""IAM for the tool role: who may assume it (trust) and what tools may do (from the registry).

The tool role is the only identity that touches tenant data. Its permissions come from each
tool's declared `ToolPermission`s (`agent.tools.tool_role_statements`), so adding a tool changes
the policy in one place; they use `${aws:PrincipalTag/tenant}` (ABAC): the session tag set at
AssumeRole picks the S3 prefix and the DynamoDB partition.
"""

from __future__ import annotations

from aws_cdk import aws_iam as iam

from agent.tools import ToolResources, tool_role_statements


def tool_trust_statement(agent_role_arn: str, tenants: tuple[str, ...],
                         agent_name: str) -> iam.PolicyStatement:
    """The tool role's only trust statement: the agent role, with a source identity and the
    expected session tags, for sts:AssumeRole, sts:TagSession and sts:SetSourceIdentity."""
    return iam.PolicyStatement(
        sid="AgentRoleWithRequestIdentity",
        actions=["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"],
        principals=[iam.ArnPrincipal(agent_role_arn)],
        conditions={
            # aws:PrincipalArn: no other principal in the account, even with sts:AssumeRole *.
            "ArnEquals": {"aws:PrincipalArn": agent_role_arn},
            # sts:SourceIdentity: 2+ characters; STS itself limits it to the request-id
            # alphabet [A-Za-z0-9_+=,.@-] and 64 characters. No session without one.
            "StringLike": {"sts:SourceIdentity": "??*"},
            # aws:RequestTag/*: the tenant tag is one of the configured tenants, and the agent
            # tag names this deployment's agent, so ABAC grants cannot be widened by a caller.
            "StringEquals": {"aws:RequestTag/tenant": list(tenants),
                             "aws:RequestTag/agent": agent_name},
            # aws:TagKeys: exactly these session tags, nothing a policy might trust by mistake.
            "ForAllValues:StringEquals": {"aws:TagKeys": ["tenant", "agent"]},
        })


def tool_permission_statements(partition: str, region: str, account: str,
                               resources: ToolResources) -> list[iam.PolicyStatement]:
    """The registry's statements as CDK objects (each carries its own condition keys)."""
    return [iam.PolicyStatement.from_json(statement)
            for statement in tool_role_statements(partition, region, account, resources)]


def tool_data_key_statement(data_key_arn: str, region: str) -> iam.PolicyStatement:
    return iam.PolicyStatement(
        sid="DataKeyThroughS3AndDynamoDB",
        actions=["kms:Decrypt", "kms:GenerateDataKey"],
        resources=[data_key_arn],
        conditions={
            # kms:ViaService: tenant data is decrypted only through S3 and DynamoDB reads.
            "StringEquals": {"kms:ViaService": [f"s3.{region}.amazonaws.com",
                                                f"dynamodb.{region}.amazonaws.com"]},
        })
