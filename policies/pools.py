"""Bedrock invoke permissions per capacity pool: exactly the configured model ids, inference
profiles and regions, nothing else.

Per Bedrock pool (`stacks.pool_settings.PoolSettings`):
- inference profile: the profile ARN in the pool's region, plus the foundation-model ARNs in
  each region the profile routes to, reachable only through that profile (a global profile:
  the regionless foundation-model ARN, as Bedrock documents);
- foundation model: the foundation-model ARN in the pool's region.

Every pool also has a circuit breaker item in the bucket table (`guard.breaker`), which the
agent reads and writes (`breaker_statement`).
"""

from __future__ import annotations

from typing import Iterable

from aws_cdk import aws_iam as iam

ACTIONS = ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]


def breaker_ids(models: Iterable, provider: str) -> list[str]:
    """The breaker items the pool router uses: "breaker#<model>#<pool name>" for each pool of
    each model (a model without pools is one pool named after the deployment's provider)."""
    from guard.breaker import KEY_PREFIX

    return sorted(f"{KEY_PREFIX}{m.model_id}#{name}" for m in models
                  for name in ([p.name for p in m.pools] if m.pools else [provider]))


def breaker_statement(table_arn: str, ids: Iterable[str]) -> iam.PolicyStatement:
    """The pools' shared circuit breakers: one conditional UpdateItem per state change or
    counted failure, one GetItem when a cached view is stale."""
    return iam.PolicyStatement(
        sid="PoolBreakers", actions=["dynamodb:UpdateItem", "dynamodb:GetItem"],
        resources=[table_arn],
        conditions={
            # dynamodb:LeadingKeys: only the configured pools' breaker items, so the role
            # cannot open another pool's breaker nor touch a token bucket through this grant.
            "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": sorted(set(ids))}})


def pool_statements(pools: Iterable, *, partition: str, account: str
                    ) -> list[iam.PolicyStatement]:
    """One statement per purpose and Bedrock pool (Anthropic API pools need no IAM)."""
    statements = []
    for index, pool in enumerate(p for p in pools if p.provider == "bedrock"):
        if pool.addressing == "foundation_model":
            statements.append(iam.PolicyStatement(
                sid=f"InvokePoolModel{index}", actions=ACTIONS,
                resources=[f"arn:{partition}:bedrock:{pool.region}::foundation-model/"
                           f"{pool.model}"],
                conditions={
                    # aws:RequestedRegion: the model is called in the pool's region only.
                    "StringEquals": {"aws:RequestedRegion": pool.region}}))
            continue
        profile_arn = (f"arn:{partition}:bedrock:{pool.region}:{account}:inference-profile/"
                       f"{pool.model}")
        statements.append(iam.PolicyStatement(
            sid=f"InvokePoolProfile{index}", actions=ACTIONS, resources=[profile_arn],
            conditions={
                # aws:RequestedRegion: the profile is called in the pool's region only.
                "StringEquals": {"aws:RequestedRegion": pool.region}}))
        model = pool.foundation_model_id
        if pool.model.startswith("global."):
            statements.append(iam.PolicyStatement(
                sid=f"InvokePoolGlobalModel{index}", actions=ACTIONS,
                resources=[f"arn:{partition}:bedrock:::foundation-model/{model}"],
                conditions={
                    # "unspecified" region + the profile ARN: the global model only as routed
                    # by this pool's profile.
                    "StringEquals": {"aws:RequestedRegion": "unspecified",
                                     "bedrock:InferenceProfileArn": profile_arn}}))
            continue
        statements.append(iam.PolicyStatement(
            sid=f"InvokePoolRoutedModels{index}", actions=ACTIONS,
            resources=[f"arn:{partition}:bedrock:{region}::foundation-model/{model}"
                       for region in pool.routes_to_regions],
            conditions={
                # bedrock:InferenceProfileArn: the routed regions' models only through this
                # pool's profile, never invoked directly.
                "StringEquals": {"bedrock:InferenceProfileArn": profile_arn}}))
    return statements
