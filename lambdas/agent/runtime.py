"""What the agent Lambda builds once per container, at init (before a SnapStart snapshot): the
parsed environment, the AWS clients, the guarded Claude client with one bucket per model
family, the idempotency store, the MCP toolbox, and the Powertools logger and tracer every
agent module writes with. Nothing here imports `anthropic`: the guard loads it on the first
Claude call.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

from guard import GuardedClaude, Pool, TokenBucket
from guard.pool_spec import capacity_fractions, pool_tenant_caps
from guard.shares import CAP_DIMENSION
from guard.spend import LimitsSource

from .config import AgentConfig, load_config
from .contract import DEFAULT_AGENT_NAME, Env
from .mcp.toolbox import McpToolbox
from .payloads import PayloadStore

_SERVICE = os.environ.get(Env.POWERTOOLS_SERVICE_NAME, DEFAULT_AGENT_NAME)
logger = Logger(service=_SERVICE)
tracer = Tracer(service=_SERVICE)


@dataclass
class Runtime:
    """Everything built once per container (at init, before a SnapStart snapshot)."""

    config: AgentConfig
    dynamodb: Any
    sqs: Any
    sts: Any
    claude: GuardedClaude
    persistence: DynamoDBPersistenceLayer
    #: epoch seconds: result expiry, deferral ages, dead-letter stamps
    clock: Any = time.time
    #: MCP tool sources (None when MCP_SERVERS is empty); the SDK loads on the first MCP call
    mcp: McpToolbox | None = None
    #: S3, for the payload bucket (`payloads`)
    s3: Any = None

    @property
    def payloads(self) -> PayloadStore:
        """The payload bucket (claim checks for answers and messages too large to keep
        inline), expiring by this runtime's clock."""
        return PayloadStore(self.s3, self.config.payload_bucket, self.clock)


def build_runtime(env=os.environ, *, dynamodb=None, sqs=None, sts=None, secrets=None,
                  sdk_client=None, s3=None) -> Runtime:
    """Parse the environment and build clients; injected clients are used as given (tests)."""
    import boto3

    config = load_config(env)
    dynamodb = dynamodb or boto3.client("dynamodb")
    buckets: dict[str, TokenBucket] = {}
    shared: dict[str, TokenBucket] = {}
    for model_id, model in config.models.items():
        if model.bucket_id not in shared:  # a model family shares one bucket
            limits = dataclasses.replace(model.limits, tenants=config.tenant_shares) \
                if config.tenant_shares else model.limits  # shared by tenant
            shared[model.bucket_id] = TokenBucket(config.bucket_table, model.bucket_id,
                                                  limits, dynamodb,
                                                  learn_up_to=learn_ceilings(model))
        buckets[model_id] = shared[model.bucket_id]

    read_secret = _secret_reader(lambda: secrets or boto3.client("secretsmanager"))

    def api_key(refresh: bool = False) -> str:
        """The API key ({"api_key": ...} or plain), cached 300 s; `refresh` (after an upstream
        401) bypasses the cache so a rotated key is used at once."""
        return read_secret(config.api_key_secret_arn, "api_key", refresh=refresh)

    options = budget_options(config, dynamodb)
    pool_buckets: dict[str, tuple[TokenBucket, float]] = {}
    served = pooled_models(config, buckets, dynamodb, built=pool_buckets)
    unpooled = {m.bucket_id: shared[m.bucket_id] for m in config.models.values() if not m.pools}
    follow_shares(options["limits_source"], config, unpooled.values(),
                  list(pool_buckets.values()))
    claude = GuardedClaude(served,
                           provider=config.provider, sdk_client=sdk_client,
                           api_key=api_key if config.provider == "anthropic" else None,
                           aws_region=config.aws_region, scheduling=config.scheduling,
                           **options)
    persistence = DynamoDBPersistenceLayer(table_name=config.idempotency_table,
                                           boto3_client=dynamodb)
    mcp = None
    if config.mcp_servers:
        def secret(arn: str) -> str:
            """A bearer token ({"token": ...} or plain), read afresh for every session."""
            return read_secret(arn, "token", refresh=True)

        mcp = McpToolbox.shared(config.mcp_servers, table=config.bucket_table,
                                dynamodb=dynamodb, logger=logger, secret=secret)
    return Runtime(config, dynamodb, sqs or boto3.client("sqs"), sts or boto3.client("sts"),
                   claude, persistence, mcp=mcp,
                   s3=s3 or (boto3.client("s3") if config.payload_bucket else None))


def pooled_models(config: AgentConfig, buckets: dict[str, TokenBucket], dynamodb, *,
                  built: dict[str, tuple[TokenBucket, float]] | None = None
                  ) -> dict[str, TokenBucket | list[Pool]]:
    """What `GuardedClaude` serves: a model without pools keeps its bucket; a model with pools
    (`ModelSpec.pools`) gets one `guard.Pool` per pool in preference order, each with its own
    bucket (models naming the same pool bucket share it), its endpoint, region and service
    tier, and its prices (the model's when it sets none). A Bedrock pool's SDK client signs
    with the function's credentials (the role) in the pool's region. Every pool carries the
    tenants' weights; a tenant's absolute caps are split across a model's pools in proportion
    to their requests per minute (evenly when a pool sets none), so they hold on the sum.
    `built`, when given, receives each pool bucket built, by bucket id, with the fraction its
    tenant caps were split by (that of the first model naming the bucket)."""
    shared: dict[str, TokenBucket] = {}
    served: dict[str, TokenBucket | list[Pool]] = {}
    for model_id, spec in config.models.items():
        if not spec.pools:
            served[model_id] = buckets[model_id]
            continue
        pools = []
        for pool, fraction in zip(spec.pools, pool_fractions(spec)):
            if pool.bucket_id not in shared:
                tenants = pool_tenant_caps(config.tenant_shares, fraction)
                limits = dataclasses.replace(pool.limits, tenants=tenants) if tenants \
                    else pool.limits
                shared[pool.bucket_id] = TokenBucket(config.bucket_table, pool.bucket_id,
                                                     limits, dynamodb)
                if built is not None:
                    built[pool.bucket_id] = (shared[pool.bucket_id], fraction)
            pools.append(Pool(shared[pool.bucket_id], provider=pool.provider, model=pool.model,
                              base_url=pool.base_url, aws_region=pool.region,
                              service_tier=pool.service_tier, prices=pool.prices or spec.prices,
                              name=pool.name))
        served[model_id] = pools
    return served


def learn_ceilings(model) -> dict[str, float] | None:
    """`TokenBucket`'s `learn_up_to` for a model (`ModelSpec.learn_up_to`, limit name -> per
    minute, keyed by the bucket's dimensions instead); None when the model sets none."""
    if model.learn_up_to is None:
        return None
    return {CAP_DIMENSION[name]: ceiling for name, ceiling in model.learn_up_to.items()}


def pool_fractions(spec) -> list[float]:
    """Each pool's part of a pooled model's capacity, in `spec.pools` order, by the pools'
    requests per minute (`guard.pool_spec.capacity_fractions`)."""
    return capacity_fractions([pool.limits.rpm for pool in spec.pools])


def budget_options(config, dynamodb) -> dict[str, Any]:
    """GuardedClaude's budget arguments: the models' prices, the budgets on deploy, and the
    limits config item (LIMITS_TABLE) that replaces them within 30 s of a change."""
    limits = config.limits
    source = LimitsSource(config.limits_table, dynamodb) if config.limits_table else None
    return {"prices": {m: spec.prices for m, spec in config.models.items()},
            "budgets": limits.tenants, "budget": limits.deployment,
            "model_tokens_per_day": limits.model_tokens_per_day, "limits_source": source}


def follow_shares(source: LimitsSource | None, config, buckets,
                  pools: list[tuple[TokenBucket, float]] = ()) -> None:
    """Every bucket takes the tenants' weights and caps (and the runaway breaker's throttles)
    from the limits config item when it changes version (`TokenBucket.set_shares`: all callers
    agree through the bucket item); without a config table or tenants they stay as deployed.
    `pools`: capacity pools' buckets with their fraction of the model's capacity: they take the
    caps split as at init (`guard.pool_spec.pool_tenant_caps`), so a changed cap holds on the
    sum of the pools."""
    if source is None or not config.tenant_specs:
        return
    deployed = {spec.name: spec.share for spec in config.tenant_specs}
    targets = [(bucket, 1.0) for bucket in buckets] + list(pools)

    def apply(limits) -> None:
        tenants = limits.tenant_shares(deployed)
        sharing = config.tenant_shares or limits.shares or limits.runaway
        for bucket, fraction in targets:
            bucket.set_shares(pool_tenant_caps(tenants, fraction) if sharing else {},
                              limits.version)

    source.on_change(apply)


def _secret_reader(client: Callable[[], Any]) -> Callable[..., str]:
    """`read(arn, field, refresh=False)`: a secret's AWSCURRENT value through one Powertools
    provider (built on the first read, from `client()`), cached 300 s unless `refresh`: the
    JSON object's `field`, or the whole value when it is not an object holding it."""
    provider = []

    def read(arn: str, field: str, *, refresh: bool = False) -> str:
        from aws_lambda_powertools.utilities.parameters import SecretsProvider

        if not provider:
            provider.append(SecretsProvider(boto3_client=client()))
        # VersionStage named explicitly: the role may read only AWSCURRENT (IAM condition).
        value = provider[0].get(arn, max_age=300, force_fetch=refresh, VersionStage="AWSCURRENT")
        value = value.decode() if isinstance(value, bytes) else value
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return value
        return parsed.get(field, value) if isinstance(parsed, dict) else value

    return read
