"""The permissions boundary on every role the kit creates, and service-principal trust.

The boundary caps each role at the union of what the kit's roles are granted (same actions,
same resources) inside the allowed regions, and explicitly denies those actions elsewhere. A
policy later attached by mistake (or by an attacker with iam:AttachRolePolicy) cannot reach
beyond it.
"""

from __future__ import annotations

from aws_cdk import aws_iam as iam


def boundary_statements(granted: list[iam.PolicyStatement], allowed_regions: tuple[str, ...],
                        *, bedrock_profile_arns: tuple[str, ...] = (),
                        bedrock_routed_regions: tuple[str, ...] = (),
                        global_endpoints: bool = False,
                        bedrock_call_regions: tuple[str, ...] = ()
                        ) -> list[iam.PolicyStatement]:
    """Allow what `granted` allows (without its narrower conditions) within the regions, and
    deny the same actions in any other region.

    Bedrock is the one exception to "allowed regions only": an inference profile routes each
    call to a model in one of its regions, and IAM checks that call with aws:RequestedRegion =
    the destination region (or "unspecified" for a global profile's global model ARN). Those
    regions are allowed for Bedrock actions only, and only through a configured profile.
    `bedrock_call_regions`: regions capacity pools call Bedrock in directly (their profile or
    model), allowed for Bedrock actions only."""
    home = list(allowed_regions)
    bedrock_home = home + [r for r in bedrock_call_regions if r not in home]
    bedrock_regions = bedrock_home + [r for r in bedrock_routed_regions
                                      if r not in bedrock_home] + (
        ["unspecified"] if global_endpoints else [])
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
        bedrock = any(a.startswith("bedrock:") for a in statement_actions)
        allows.append(iam.PolicyStatement(
            sid=f"Cap{index}{document.get('Sid', '')}"[:100],
            actions=statement_actions, resources=resources,
            conditions={
                # aws:RequestedRegion: nothing outside the deployment's allowed regions (Bedrock:
                # plus the regions its inference profiles route to).
                "StringEquals": {"aws:RequestedRegion": bedrock_regions if bedrock else home}}))
    other_actions = [a for a in actions if not a.startswith("bedrock:")]
    bedrock_actions = [a for a in actions if a.startswith("bedrock:")]
    denies = [iam.PolicyStatement(
        sid="DenyOutsideAllowedRegions", effect=iam.Effect.DENY, actions=other_actions,
        # "*" on a Deny only narrows: every resource, but only outside the allowed regions.
        resources=["*"],
        conditions={
            # aws:RequestedRegion: explicit deny, so no other policy can re-allow elsewhere.
            "StringNotEquals": {"aws:RequestedRegion": home}})]
    if bedrock_actions:
        denies.append(iam.PolicyStatement(
            sid="DenyBedrockOutsideRegionsExceptThroughProfiles", effect=iam.Effect.DENY,
            actions=bedrock_actions, resources=["*"],
            conditions={
                # aws:RequestedRegion + bedrock:InferenceProfileArn: away from the home region
                # (and the pools' regions) only as routed by a configured inference profile (a
                # missing key also denies).
                "StringNotEquals": {"aws:RequestedRegion": bedrock_home,
                                    "bedrock:InferenceProfileArn": list(bedrock_profile_arns)}}))
        denies.append(iam.PolicyStatement(
            sid="DenyBedrockOutsideRoutedRegions", effect=iam.Effect.DENY,
            actions=bedrock_actions, resources=["*"],
            conditions={
                # aws:RequestedRegion: never beyond the regions the profiles route to.
                "StringNotEquals": {"aws:RequestedRegion": bedrock_regions}}))
    return allows + denies


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
