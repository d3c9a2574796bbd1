"""IAM for the runaway breaker's scheduled function (one role): read the kit's spend metrics,
read and write the limits config item and its change records. Each condition carries a
one-line comment on what it prevents."""

from __future__ import annotations

from aws_cdk import aws_iam as iam

from guard.spend import CHANGE_PREFIX, LIMITS_KEY


def runaway_statements(*, limits_table_arn: str, data_key_arn: str, log_group_arn: str,
                       region: str, allowed_regions: tuple[str, ...]
                       ) -> list[iam.PolicyStatement]:
    """The breaker's statements: GetMetricData, the limits item (a consistent GetItem, then
    one transaction of two Puts: the item and its change record), the data key through
    DynamoDB, its own log group and X-Ray."""
    return [
        iam.PolicyStatement(
            sid="RunawayReadSpendMetrics",
            # GetMetricData has no resource-level permissions: "*" is the only resource.
            actions=["cloudwatch:GetMetricData"],
            resources=["*"],
            conditions={
                # aws:RequestedRegion: metrics of the deployment's regions only.
                "StringEquals": {"aws:RequestedRegion": list(allowed_regions)}}),
        iam.PolicyStatement(
            sid="RunawayLimitsItem",
            # TransactWriteItems is authorised per item as PutItem.
            actions=["dynamodb:GetItem", "dynamodb:PutItem"],
            resources=[limits_table_arn],
            conditions={
                # dynamodb:LeadingKeys: the limits item and new change records only, not any
                # other item of the table (no deletes, no updates of old records).
                "ForAllValues:StringLike": {"dynamodb:LeadingKeys": [
                    LIMITS_KEY, CHANGE_PREFIX + "*"]}}),
        iam.PolicyStatement(
            sid="RunawayDataKeyThroughDynamoDB",
            actions=["kms:Decrypt", "kms:GenerateDataKey"],
            resources=[data_key_arn],
            conditions={
                # kms:ViaService: the key only through DynamoDB, never to decrypt directly.
                "StringEquals": {"kms:ViaService": f"dynamodb.{region}.amazonaws.com"}}),
        iam.PolicyStatement(
            sid="RunawayOwnLogGroup",
            actions=["logs:CreateLogStream", "logs:PutLogEvents"],
            resources=[log_group_arn, f"{log_group_arn}:log-stream:*"]),
        iam.PolicyStatement(
            sid="RunawayXRayTraces",
            # X-Ray has no resource-level permissions: "*" is the only resource it accepts.
            actions=["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
            resources=["*"],
            conditions={
                # aws:RequestedRegion: traces only go to the deployment's allowed regions.
                "StringEquals": {"aws:RequestedRegion": list(allowed_regions)}}),
    ]
