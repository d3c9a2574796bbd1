"""Policy-check findings accepted on purpose, recorded on the resource they cover, each with
its reason: cdk-nag's (`acknowledge`, kept in the cloud assembly's metadata and the
validation report) and checkov's (`checkov_skip`, in the resource's template Metadata).
Each construct acknowledges the findings on the resources it makes, where it makes them."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Stack, Validations
from aws_cdk import aws_logs as logs
from constructs import IConstruct

#: reasons shared by the agent's and the batch lane's acknowledgements
XRAY_REASON = ("X-Ray accepts no resource ARNs (the grant is region-conditioned); CDK's tracing "
               "grant adds the same actions.")
LOG_STREAMS_REASON = "Log streams are created per container under this one log group."
#: why the agent and the batch poller write claim-check objects under a prefix wildcard
CLAIM_CHECK_REASON = ("Claim-check objects are named by request (<prefix>/<tenant>/<request id>/"
                      "<uuid>.json) when written: the grant is one prefix per purpose, in this "
                      "account's bucket only (aws:ResourceAccount).")


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge cdk-nag finding `rule` on `scope` (and what is under it), with the reason."""
    Validations.of(scope).acknowledge(Acknowledgment(id=rule, reason=reason))


def wildcard_finding(resource: str) -> str:
    """cdk-nag's rule id for a wildcard `resource` in a policy (it names each finding by its
    resource, as "<LogicalId.Arn>:log-stream:*")."""
    return f"AwsSolutions-IAM5[Resource::{resource}]"


def logical_id(construct: IConstruct) -> str:
    """The CloudFormation logical id of `construct`'s resource (its default child)."""
    return Stack.of(construct).get_logical_id(construct.node.default_child)


def log_streams(log_group: logs.ILogGroup) -> str:
    """The log streams of `log_group` as cdk-nag writes that resource:
    "<LogicalId.Arn>:log-stream:*"."""
    return f"<{logical_id(log_group)}.Arn>:log-stream:*"


def claim_check_objects(bucket: IConstruct, prefix: str) -> str:
    """The payload bucket's objects under `prefix` as cdk-nag writes that resource:
    "<LogicalId.Arn>/<prefix>/*"."""
    return f"<{logical_id(bucket)}.Arn>/{prefix}/*"


def checkov_skip(construct: IConstruct, check_id: str, comment: str) -> None:
    """Acknowledge a checkov finding on the resource itself (its Metadata), with the reason."""
    resource = construct.node.default_child
    metadata = resource.get_metadata("checkov") or {"skip": []}
    metadata["skip"].append({"id": check_id, "comment": comment})
    resource.add_metadata("checkov", metadata)
