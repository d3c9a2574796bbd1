"""A capacity pool as configured (`Pool`), and the pure rules over a model's pools: the order a
call of each class takes them in (`order_for`) and tenant caps split across them in
proportion to their capacities (`capacity_fractions`, `pool_tenant_caps`, `split_tenant_caps`:
the one rule the guard and the agent both use). Routing calls over pools is `guard.pools`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from .bucket import TokenBucket
from .limits import CAP_KEYS, TenantShare
from .providers import PROVIDERS

#: Bedrock service tiers (sent as the `X-Amzn-Bedrock-Service-Tier` header).
BEDROCK_SERVICE_TIERS = ("priority", "default", "flex", "reserved")
#: The Anthropic API's `service_tier` request parameter.
ANTHROPIC_SERVICE_TIERS = ("auto", "standard_only")
SERVICE_TIER_HEADER = "X-Amzn-Bedrock-Service-Tier"


@dataclass(eq=False)
class Pool:
    """One provider route of a logical model.

    `bucket`: the pool's `TokenBucket` (its quota). `provider`: "anthropic" or "bedrock".
    `model`: the id sent upstream: an Anthropic model id, or on Bedrock an inference profile id
    ("us.anthropic...", "global.anthropic...") or a foundation model id ("anthropic...").
    `base_url`: the endpoint (None: the SDK's environment, ANTHROPIC_BASE_URL or
    ANTHROPIC_BEDROCK_BASE_URL). `aws_region`: Bedrock's region. `service_tier`: Bedrock
    "priority" | "default" | "flex" | "reserved", or the Anthropic API's "auto" |
    "standard_only" (None: the provider's default). `prices`: an object with
    `cost_usd(usage) -> float` (USD for one call's token usage, e.g. `agent.contract.Prices`)
    for this pool and tier. `sdk_client`: an SDK client to use instead of building one.
    `name`: the pool's label in results and metrics (default "<provider>[@<region>][/<tier>]").
    """

    bucket: TokenBucket
    provider: str
    model: str
    base_url: str | None = None
    aws_region: str | None = None
    service_tier: str | None = None
    prices: Any = None
    sdk_client: Any = None
    name: str | None = None

    def __init__(self, bucket: TokenBucket, *, provider: str, model: str,
                 base_url: str | None = None, aws_region: str | None = None,
                 service_tier: str | None = None, prices: Any = None, sdk_client: Any = None,
                 name: str | None = None) -> None:
        if provider not in PROVIDERS:
            raise ValueError(f"pool provider must be one of {sorted(PROVIDERS)}, got "
                             f"{provider!r}")
        if not isinstance(model, str) or not model:
            raise ValueError(f"pool model must be a non-empty string, got {model!r}")
        tiers = BEDROCK_SERVICE_TIERS if provider == "bedrock" else ANTHROPIC_SERVICE_TIERS
        if service_tier is not None and service_tier not in tiers:
            raise ValueError(f"service_tier for a {provider} pool must be one of {tiers}, got "
                             f"{service_tier!r}")
        if provider == "anthropic" and aws_region is not None:
            raise ValueError("aws_region applies to bedrock pools only")
        if prices is not None and not callable(getattr(prices, "cost_usd", None)):
            raise TypeError("prices must have cost_usd(usage), e.g. agent.contract.Prices")
        self.bucket, self.provider, self.model = bucket, provider, model
        self.base_url, self.aws_region, self.service_tier = base_url, aws_region, service_tier
        self.prices, self.sdk_client = prices, sdk_client
        self.name = name or (provider + (f"@{aws_region}" if aws_region else "")
                             + (f"/{service_tier}" if service_tier else ""))

    @property
    def tier(self) -> str:
        """The tier as routing sees it: "priority", "flex" or "default"."""
        return self.service_tier if self.service_tier in ("priority", "flex") else "default"


def order_for(pools: Sequence[Pool], priority: str) -> list[Pool]:
    """The pools a call of class `priority` may use, in the order it tries them (see the module
    docstring). Pure."""
    if priority == "background":
        usable = [p for p in pools if p.tier != "priority"]
        return [p for p in usable if p.tier == "flex"] + [p for p in usable if p.tier != "flex"]
    return [p for p in pools if p.tier != "flex"] + [p for p in pools if p.tier == "flex"]


def capacity_fractions(capacities: Sequence[float | None]) -> list[float]:
    """Each pool's part of a logical model's capacity, in the pools' order: its capacity (per
    minute, e.g. requests per minute) over the pools' sum; evenly when a pool states none
    (None). The fractions add up to 1. Pure; ValueError for no pools or a sum that is not
    positive."""
    if not capacities:
        raise ValueError("a pooled model needs at least one pool")
    if None in capacities:
        return [1 / len(capacities)] * len(capacities)
    total = sum(capacities)
    if total <= 0:
        raise ValueError(f"pool capacities must add up to more than zero, got {list(capacities)}")
    return [capacity / total for capacity in capacities]


def pool_tenant_caps(tenants: Mapping[str, TenantShare], fraction: float
                     ) -> dict[str, TenantShare]:
    """The tenant shares of one pool holding `fraction` (0-1) of its logical model's capacity:
    each absolute cap (per minute) times `fraction`, so a cap holds on the sum of the pools;
    weights unchanged (a weighted share holds in every pool, hence on the sum). Pure."""
    return {name: dataclasses.replace(share, **{
        cap: getattr(share, cap) * fraction for cap in CAP_KEYS
        if getattr(share, cap) is not None}) for name, share in tenants.items()}


def split_tenant_caps(tenants: Mapping[str, TenantShare],
                      capacities: Sequence[float | None]) -> list[dict[str, TenantShare]]:
    """A logical model's tenant shares split across its pools (`pool_tenant_caps` of each
    pool's `capacity_fractions` part), in the pools' order. Pure."""
    return [pool_tenant_caps(tenants, fraction) for fraction in capacity_fractions(capacities)]
