"""Credentials for tool calls: the tool role, assumed per agent request.

AssumeRole sets
* RoleSessionName = request_id: the session ARN in CloudTrail names the request;
* SourceIdentity = request_id: CloudTrail records it on every call made with the session (and
  on any role chained from it; it cannot be changed later);
* session tags tenant and agent: IAM policy variables `${aws:PrincipalTag/tenant}` pick the
  tenant's S3 prefix and DynamoDB partition (see `agent.tools`).

The role's trust policy must allow sts:AssumeRole, sts:SetSourceIdentity and sts:TagSession
for the agent's execution role.
"""

from __future__ import annotations

import re
from typing import Any

from .contract import REQUEST_ID_PATTERN, TENANT_PATTERN

#: Session tag values: letters, digits, spaces and _ . : / = + - @; at most 256 characters.
TAG_VALUE_PATTERN = re.compile(r"^[A-Za-z0-9 _.:/=+@-]{1,256}$")
#: AssumeRole accepts 900 s (15 minutes) up to the role's maximum session duration.
MIN_DURATION_S = 900
MAX_DURATION_S = 43_200


def assume_tool_role(sts_client: Any, role_arn: str, *, request_id: str, tenant: str,
                     agent: str, duration_s: int = 900) -> Any:
    """Assume the tool role for one agent request; returns a boto3.Session with its credentials.

    `duration_s`: session lifetime in seconds (900-43,200; within the role's maximum).
    The session's region is the STS client's region. Raises ValueError naming a bad argument
    before any call; STS errors propagate as botocore ClientError.
    """
    if not isinstance(request_id, str) or not REQUEST_ID_PATTERN.match(request_id):
        raise ValueError(f"request_id {request_id!r} must be 2-64 characters of "
                         "[A-Za-z0-9_+=,.@-] (it becomes RoleSessionName and SourceIdentity)")
    if not isinstance(tenant, str) or not TENANT_PATTERN.match(tenant):
        raise ValueError(f"tenant {tenant!r} must be 1-63 characters of [a-z0-9-] starting "
                         "with a letter or digit (it becomes the tenant session tag)")
    if not isinstance(agent, str) or not TAG_VALUE_PATTERN.match(agent):
        raise ValueError(f"agent {agent!r} must be 1-256 characters of letters, digits, "
                         "spaces and _.:/=+-@ (it becomes the agent session tag)")
    if (isinstance(duration_s, bool) or not isinstance(duration_s, int)
            or not MIN_DURATION_S <= duration_s <= MAX_DURATION_S):
        raise ValueError(f"duration_s={duration_s!r} must be an integer number of seconds "
                         f"from {MIN_DURATION_S} to {MAX_DURATION_S}")
    response = sts_client.assume_role(
        RoleArn=role_arn,
        RoleSessionName=request_id,
        SourceIdentity=request_id,
        Tags=[{"Key": "tenant", "Value": tenant}, {"Key": "agent", "Value": agent}],
        DurationSeconds=duration_s,
    )
    credentials = response["Credentials"]
    import boto3

    return boto3.Session(aws_access_key_id=credentials["AccessKeyId"],
                         aws_secret_access_key=credentials["SecretAccessKey"],
                         aws_session_token=credentials["SessionToken"],
                         region_name=sts_client.meta.region_name)

