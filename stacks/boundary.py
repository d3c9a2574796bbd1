"""The permissions boundary: one managed policy, built from `policies/boundary.py`, that caps
every role of the stack at what the kit's roles are granted, inside the allowed regions."""

from __future__ import annotations

from typing import Iterable

from aws_cdk import aws_iam as iam
from constructs import Construct

from policies.boundary import boundary_statements

from .acknowledgements import acknowledge, wildcard_finding


class PermissionsBoundary(Construct):
    """The boundary policy (`policy`); `apply_to(scope)` sets it on every role under `scope`.

    `granted`: every statement the kit's roles are granted (conditions are not carried over;
    the boundary caps actions and resources by region). `bedrock_profile_arns`,
    `bedrock_routed_regions`, `global_endpoints`: Bedrock's cross-region inference, allowed
    only through the configured profiles; `bedrock_call_regions`: where capacity pools call
    Bedrock directly. `extra_statements` are added as they are (the MCP
    allowlist's caps and deny).
    """

    def __init__(self, scope: Construct, id: str, *, granted: Iterable[iam.PolicyStatement],
                 allowed_regions: tuple[str, ...], bedrock_profile_arns: tuple[str, ...] = (),
                 bedrock_routed_regions: tuple[str, ...] = (), global_endpoints: bool = False,
                 extra_statements: Iterable[iam.PolicyStatement] = (),
                 bedrock_call_regions: tuple[str, ...] = ()) -> None:
        super().__init__(scope, id)
        # "Default": the policy keeps the logical id it had as a direct child of the stack.
        self.policy = iam.ManagedPolicy(
            self, "Default", description="Bulwark: the most any role of this stack may do",
            statements=boundary_statements(
                list(granted), allowed_regions, bedrock_profile_arns=bedrock_profile_arns,
                bedrock_routed_regions=bedrock_routed_regions,
                global_endpoints=global_endpoints,
                bedrock_call_regions=bedrock_call_regions) + list(extra_statements))
        acknowledge(self.policy, wildcard_finding("*"),
                    "The boundary's only '*' resources mirror the X-Ray grant and the explicit "
                    "Deny outside the allowed regions.")

    def apply_to(self, scope: Construct) -> None:
        """Set this boundary on every IAM role created under `scope` (e.g. the stack)."""
        iam.PermissionsBoundary.of(scope).apply(self.policy)
