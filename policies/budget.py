"""IAM for budgets: the agent's reservations in the bucket table and its read of the limits
config item, and the batch poller's charges. Each condition carries a one-line comment on what
it prevents."""

from __future__ import annotations

from aws_cdk import aws_iam as iam

from guard.budget import ITEM_PREFIX
from guard.spend import LIMITS_KEY


def budget_statements(bucket_table_arn: str, limits_table_arn: str
                      ) -> list[iam.PolicyStatement]:
    """The agent role's budget statements: one conditional UpdateItem per reserve and settle
    on the month's budget item, a consistent GetItem of it before a refusal, and a GetItem of
    the limits config item (at most every 30 s)."""
    return [
        iam.PolicyStatement(
            sid="BudgetLedger",
            actions=["dynamodb:UpdateItem", "dynamodb:GetItem"],
            resources=[bucket_table_arn],
            conditions={
                # dynamodb:LeadingKeys: only the monthly budget items ("budget#YYYY-MM"), not
                # the rate-limit buckets (their own statement) or anything else in the table.
                "ForAllValues:StringLike": {"dynamodb:LeadingKeys": [ITEM_PREFIX + "*"]},
            }),
        iam.PolicyStatement(
            sid="LimitsConfigRead",
            actions=["dynamodb:GetItem"],
            resources=[limits_table_arn],
            conditions={
                # dynamodb:LeadingKeys: the limits item only; the change records stay with
                # the operators (cli.limits) and the audit.
                "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [LIMITS_KEY]},
            }),
    ]


def budget_charge_statement(bucket_table_arn: str, sid: str) -> iam.PolicyStatement:
    """The batch poller's charge of an answered batch item to its budgets: one UpdateItem on
    the month's budget item (no read: the write returns the item)."""
    return iam.PolicyStatement(
        sid=sid,
        actions=["dynamodb:UpdateItem"],
        resources=[bucket_table_arn],
        conditions={
            # dynamodb:LeadingKeys: only the monthly budget items ("budget#YYYY-MM"), never
            # the rate-limit buckets the batch lane must not drain.
            "ForAllValues:StringLike": {"dynamodb:LeadingKeys": [ITEM_PREFIX + "*"]},
        })
