"""The permissions boundary on every role the kit creates, and service-principal trust.

The boundary caps each role at the union of what the kit's roles are granted (same actions,
same resources) inside the allowed regions, and explicitly denies those actions elsewhere. A
policy later attached by mistake (or by an attacker with iam:AttachRolePolicy) cannot reach
beyond it.
"""

from __future__ import annotations

from aws_cdk import aws_iam as iam


def boundary_statements(granted: list[iam.PolicyStatement], allowed_regions: tuple[str, ...],
                        *, global_endpoints: bool = False) -> list[iam.PolicyStatement]:
    """Allow what `granted` allows (without its narrower conditions) within the regions, and
    deny the same actions in any other region. `global_endpoints`: Bedrock global inference
    profiles, whose global model ARN is requested with aws:RequestedRegion "unspecified"."""
    regions = list(allowed_regions) + (["unspecified"] if global_endpoints else [])
    allows: list[iam.PolicyStatement] = []
    actions: list[str] = []
    for index, statement in enumerate(granted):
        document = statement.to_statement_json()
        statement_actions = document["Action"]
        statement_actions = [statement_actions] if isinstance(statement_actions, str) \
            else statement_actions
        resources = document["Resource"]
        resources = [resources] if isinstance(resources, str) else resources
        actions += [a for a in statement_actions if a not in actions]
        allows.append(iam.PolicyStatement(
            sid=f"Cap{index}{document.get('Sid', '')}"[:100],
            actions=statement_actions, resources=resources,
            conditions={
                # aws:RequestedRegion: nothing outside the deployment's allowed regions.
                "StringEquals": {"aws:RequestedRegion": regions}}))
    deny = iam.PolicyStatement(
        sid="DenyOutsideAllowedRegions", effect=iam.Effect.DENY, actions=actions,
        # "*" on a Deny only narrows: every resource, but only outside the allowed regions.
        resources=["*"],
        conditions={
            # aws:RequestedRegion: explicit deny, so no other policy can re-allow elsewhere.
            "StringNotEquals": {"aws:RequestedRegion": regions}})
    return allows + [deny]


def service_trust(service: str, account: str, source_arn: str | None = None
                  ) -> iam.PrincipalBase:
    """`service` (e.g. "lambda.amazonaws.com") may assume the role only for this account
    (and `source_arn` when given)."""
    conditions = {
        # aws:SourceAccount: the service acts for this account only (confused deputy).
        "StringEquals": {"aws:SourceAccount": account}}
    if source_arn is not None:
        # aws:SourceArn: ... and only for this one resource.
        conditions["ArnLike"] = {"aws:SourceArn": source_arn}
    return iam.ServicePrincipal(service, conditions=conditions)
