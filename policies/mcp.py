"""IAM for what the agent may do through the AWS MCP Server (Agent Toolkit for AWS).

The server calls AWS with the CALLER's credentials: here, the tool role's per-request session
(source identity = request id, tenant session tag), so every downstream action is attributable.
IAM sees such calls with two global keys (the AWS MCP Server documentation):

* `aws:ViaAWSMCPService` (Bool): true for a call made through any AWS-managed MCP server;
* `aws:CalledViaAWSMCP` (String): that server's service principal, `aws-mcp.amazonaws.com`
  for the AWS MCP Server (`eks-mcp.amazonaws.com`, `ecs-mcp.amazonaws.com` for others). It is
  compared with StringEquals: comparing it with "true" never matches.

Three guardrails, on the tool role and again in the permissions boundary:
1. `mcp_allow_statements`: the operator's allowlist (cdk.json `mcp.allow`), each statement
   conditioned on `aws:CalledViaAWSMCP` = `aws-mcp.amazonaws.com`, so these grants exist only
   through that one server;
2. `mcp_deny_statement`: destructive and privilege-changing actions denied whenever
   `aws:ViaAWSMCPService` is true, whatever any other policy allows;
3. `builtin_outside_mcp`: the built-in tools' grants carry `Null aws:ViaAWSMCPService`, so
   they keep working outside MCP, unchanged, but cannot be reached through any MCP server.
"""

from __future__ import annotations

import copy
import fnmatch
from typing import Iterable, Mapping

from aws_cdk import aws_iam as iam

from agent.mcp.config import McpAllow
# the registry's placeholder substitution: the same ${Name} templates as tool permissions
from agent.tools.base import substitute

AWS_MCP_PRINCIPAL = "aws-mcp.amazonaws.com"

#: Denied through any AWS-managed MCP server: deletes, terminations, policy and permission
#: changes, credentials and role passing, key destruction, audit tampering. Patterns are per
#: service (IAM has no cross-service action wildcard); `mcp.deny_actions` adds more.
DESTRUCTIVE_ACTIONS: tuple[str, ...] = (
    "s3:Delete*", "s3:PutBucketPolicy", "s3:PutBucketAcl", "s3:PutObjectAcl",
    "s3:PutLifecycleConfiguration", "s3:PutBucketPublicAccessBlock",
    "dynamodb:Delete*", "dynamodb:UpdateTable",
    "sqs:Delete*", "sqs:PurgeQueue", "sqs:SetQueueAttributes", "sqs:AddPermission",
    "sns:Delete*", "sns:SetTopicAttributes", "sns:AddPermission",
    "lambda:Delete*", "lambda:AddPermission", "lambda:UpdateFunctionCode",
    "lambda:UpdateFunctionConfiguration",
    "ec2:Terminate*", "ec2:Delete*", "ec2:StopInstances", "ec2:ModifyInstanceAttribute",
    "rds:Delete*", "logs:Delete*", "logs:PutRetentionPolicy",
    "cloudtrail:Delete*", "cloudtrail:StopLogging", "cloudtrail:UpdateTrail",
    "cloudtrail:PutEventSelectors",
    "kms:ScheduleKeyDeletion", "kms:DisableKey", "kms:PutKeyPolicy", "kms:CreateGrant",
    "kms:RevokeGrant",
    "secretsmanager:DeleteSecret", "secretsmanager:PutResourcePolicy",
    "secretsmanager:PutSecretValue",
    "cloudformation:DeleteStack", "cloudformation:UpdateStack",
    "iam:Delete*", "iam:Put*", "iam:Attach*", "iam:Detach*", "iam:Create*", "iam:Update*",
    "iam:Add*", "iam:Remove*", "iam:PassRole", "iam:SetDefaultPolicyVersion",
    "iam:UploadSSHPublicKey", "iam:UploadServerCertificate", "iam:UploadSigningCertificate",
    "sts:AssumeRole", "sts:AssumeRoleWithSAML", "sts:AssumeRoleWithWebIdentity",
    "sts:GetFederationToken",
    "organizations:Leave*", "organizations:Delete*", "organizations:Remove*",
)


def denied_action_patterns(extra: Iterable[str] = ()) -> list[str]:
    return list(dict.fromkeys([*DESTRUCTIVE_ACTIONS, *extra]))


def denied_by(action: str, patterns: Iterable[str]) -> str | None:
    """The first pattern that denies `action` (IAM matches actions case-insensitively)."""
    for pattern in patterns:
        if fnmatch.fnmatchcase(action.lower(), pattern.lower()):
            return pattern
    return None


def mcp_allow_statements(allow: Iterable[McpAllow], values: Mapping[str, str],
                         deny_patterns: Iterable[str] = DESTRUCTIVE_ACTIONS
                         ) -> list[iam.PolicyStatement]:
    """The allowlist as tool-role statements. `values` fills the ARN placeholders
    (${Partition}, ${Region}, ${Account}, ${DocsBucket}, ${DocsPrefix}, ${NotesTable},
    ${WorkQueueArn}); IAM policy variables such as ${aws:PrincipalTag/tenant} stay for IAM.
    An allowlisted action that the destructive-action deny would refuse is a configuration
    error (it could never succeed), raised as ValueError naming it."""
    deny_patterns = list(deny_patterns)
    statements = []
    for entry in allow:
        for action in entry.actions:
            pattern = denied_by(action, deny_patterns)
            if pattern:
                raise ValueError(f"mcp.allow {entry.sid}: {action} is denied through MCP by "
                                 f"{pattern!r}; remove it from the allowlist")
        conditions = copy.deepcopy(substitute(entry.conditions, values))
        # aws:CalledViaAWSMCP = aws-mcp.amazonaws.com: the grant exists only for calls the AWS
        # MCP Server makes with these credentials; not for direct calls (a built-in tool, a
        # leaked session) nor through another MCP server (eks-mcp, ecs-mcp).
        conditions.setdefault("StringEquals", {})["aws:CalledViaAWSMCP"] = AWS_MCP_PRINCIPAL
        statements.append(iam.PolicyStatement(
            sid=entry.sid, actions=list(entry.actions),
            resources=substitute(list(entry.resources), values), conditions=conditions))
    return statements


def mcp_deny_statement(patterns: Iterable[str]) -> iam.PolicyStatement:
    return iam.PolicyStatement(
        sid="DenyDestructiveViaMcp", effect=iam.Effect.DENY, actions=list(patterns),
        # "*" on a Deny only narrows: these actions on any resource, but only through MCP.
        resources=["*"],
        conditions={
            # aws:ViaAWSMCPService: through ANY AWS-managed MCP server these actions are refused,
            # so a prompt-injected "delete"/"attach policy"/"create access key" cannot succeed
            # even if some other policy later grants it.
            "Bool": {"aws:ViaAWSMCPService": "true"}})


def builtin_outside_mcp(statement: iam.PolicyStatement) -> iam.PolicyStatement:
    """A built-in tool's grant, usable only outside MCP (same actions, resources and keys)."""
    document = statement.to_statement_json()
    conditions = copy.deepcopy(document.get("Condition", {}))
    # aws:ViaAWSMCPService must be absent: the built-in tools' grants (tenant documents,
    # notes) are not reachable through an MCP server; through MCP only the allowlist applies.
    conditions.setdefault("Null", {})["aws:ViaAWSMCPService"] = "true"
    document["Condition"] = conditions
    return iam.PolicyStatement.from_json(document)


def mcp_boundary_statements(allowed: Iterable[iam.PolicyStatement],
                            allowed_regions: Iterable[str],
                            deny: iam.PolicyStatement) -> list[iam.PolicyStatement]:
    """The boundary's share: each allowlist statement capped to the allowed regions and to
    the AWS MCP Server, plus the same destructive-action deny."""
    caps = []
    for index, statement in enumerate(allowed):
        document = statement.to_statement_json()
        actions = document["Action"]
        resources = document["Resource"]
        caps.append(iam.PolicyStatement(
            sid=f"CapMcp{index}{document.get('Sid', '')}"[:100],
            actions=[actions] if isinstance(actions, str) else actions,
            resources=[resources] if isinstance(resources, str) else resources,
            conditions={
                # aws:RequestedRegion: MCP calls stay in the deployment's allowed regions;
                # aws:CalledViaAWSMCP: and these grants are capped to the AWS MCP Server.
                "StringEquals": {"aws:RequestedRegion": list(allowed_regions),
                                 "aws:CalledViaAWSMCP": AWS_MCP_PRINCIPAL}}))
    return caps + [deny]


def mcp_agent_statements(bearer_secret_arns: Iterable[str]) -> list[iam.PolicyStatement]:
    """The agent role reads the bearer tokens of MCP servers configured with one."""
    arns = list(dict.fromkeys(bearer_secret_arns))
    if not arns:
        return []
    return [iam.PolicyStatement(
        sid="ReadMcpBearerTokens", actions=["secretsmanager:GetSecretValue"], resources=arns,
        conditions={
            # secretsmanager:VersionStage: only the current token, not staged or old ones.
            "StringEquals": {"secretsmanager:VersionStage": "AWSCURRENT"}})]
