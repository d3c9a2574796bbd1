"""The contract between the stack and the agent Lambda: one home, imported by both sides.

The CDK app (`stacks/`, which maps cdk.json context to these types in `stacks/settings.py`)
and the Lambda (`agent.config`, which maps the environment to them) read every shared rule
from here, so the two sides cannot drift:

* the model spec (`ModelSpec`, `Prices`) and its environment encoding, `encode_models` /
  `decode_models` (the `MODELS` variable);
* the tenant and request-id patterns, the lanes, the providers and the overflow policies;
* the tenant spec (`TenantSpec`: a tenant and the IAM roles bound to it) and its environment
  encoding, `encode_tenants` / `decode_tenants` (the `TENANTS` variable);
* the environment variable names the stack sets and the Lambda reads (`Env`);
* the metric namespace, dimension and names the Lambda emits and the
  alarms and dashboard read.

No CDK, boto3 or anthropic import: the Lambda loads this at cold start.

It is longer than the other modules (about 550 lines) on purpose: it is the one place both sides
read, so a rule kept here cannot drift between the stack and the Lambda; each section below is a
table or a small type with its encoding, not logic.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields
from typing import Iterable, Mapping

from guard.client import SCHEDULING_MODES
from guard.limits import Limits, TenantShare
# One home for prices: the guard reserves budgets with them, the metrics report cost.
from guard.prices import CACHE_READ_PRICE_FACTOR, CACHE_WRITE_PRICE_FACTOR, Prices
from guard.runaway import DEPLOYMENT as RUNAWAY_DEPLOYMENT
from guard.runaway import THROTTLED_METRIC
from guard.tiers import BATCH_TIERS

__all__ = [
    "ACCESS_DENIED_METRIC", "BATCH_BUCKET_ID", "CACHE_READ_PRICE_FACTOR",
    "CACHE_WRITE_PRICE_FACTOR", "ContractError", "DEFAULT_AGENT_NAME", "FieldError",
    "DEFAULT_CONTEXT_WINDOW", "DEFAULT_MAX_OUTPUT_TOKENS", "DIMENSION", "LEARNABLE_LIMITS",
    "POOL_DIMENSION",
    "POOL_METRICS", "POOL_ONLY_METRICS", "DOCUMENTS_PREFIX",
    "Env", "HIGH_RESOLUTION", "LANES", "METRICS", "ModelSpec", "NAMESPACE",
    "OVERFLOW_POLICIES", "PoolSpec", "PROVIDERS", "Prices", "REQUEST_ID_PATTERN",
    "ROLE_ARN_PATTERN", "RUNAWAY_DEPLOYMENT", "RUNAWAY_METRICS",
    "CAPACITY_DIMENSIONS", "CAPACITY_METRICS", "SCHEDULING_MODES", "SHARE_FIELDS",
    "TENANT_METRICS",
    "TENANT_PATTERN", "TenantSpec", "decode_models", "decode_tenants",
    "encode_models", "encode_tenants", "role_identity",
]


class ContractError(ValueError):
    """A value one side hands the other breaks the contract (the message names it)."""


class FieldError(ValueError):
    """One field of a spec is bad: `field` names it (its MODELS key), the message says why."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field} {problem}")
        self.field = field
        self.problem = problem


# -- rules both sides check --------------------------------------------------------------------

PROVIDERS = ("anthropic", "bedrock")
#: What a request does when capacity is short (docs/index.md, "Data flow"): re-queue, smaller model, error.
OVERFLOW_POLICIES = ("defer", "degrade", "reject")
#: How a request is served: "interactive" (the Messages API now) or "batch" (Message Batches).
LANES = ("interactive", "batch")
#: Tenant names become an S3 prefix segment, a DynamoDB partition key and the tenant session
#: tag: 1-63 characters of [a-z0-9-], starting with a letter or digit.
TENANT_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
#: An IAM role ARN (any path): arn:<partition>:iam::<12-digit account>:role/<path/><name>. The
#: groups are the partition, the account and the role name.
ROLE_ARN_PATTERN = re.compile(
    r"^arn:(aws[a-z-]*):iam::(\d{12}):role/(?:[!-~]*/)?([\w+=,.@-]{1,64})$")
#: An AWS region name (us-east-1, us-gov-west-1) and any ARN: what cdk.json and the MCP settings
#: accept where they name one.
REGION_PATTERN = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
ARN_PATTERN = re.compile(r"^arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:\d{0,12}:.+$")
#: Request ids become the tool session's RoleSessionName and SourceIdentity: 2-64 characters.
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9_+=,.@-]{2,64}$")

#: The agent's name (session tag `agent`, Powertools service name) when none is configured.
DEFAULT_AGENT_NAME = "bulwark-agent"
#: Where a tenant's documents live in the documents bucket: f"{DOCUMENTS_PREFIX}{tenant}/".
DOCUMENTS_PREFIX = "docs/"
#: The batch lane's bucket item (requests per minute of the Message Batches endpoints).
BATCH_BUCKET_ID = "anthropic#message-batches"
#: Seconds a received batch-queue message stays hidden while a collector run decides: the
#: queue's visibility timeout (stacks.batch) and the collector's receive (agent.batch.config).
BATCH_VISIBILITY_TIMEOUT_S = 900
#: The batch lane's tunables when cdk.json's `batch` section and the collector's environment
#: leave them out: `stacks.settings_types.BatchSettings` (the stack) and
#: `agent.batch.config.BatchConfig` (the collector and poller) both default to these. Requests
#: per batch; seconds the oldest queued request waits before a partial batch is submitted;
#: times an item is queued again (transient error, expiry, cancel) before the dead-letter queue.
DEFAULT_BATCH_MAX_ITEMS = 1_000
DEFAULT_BATCH_MAX_WAIT_S = 300
DEFAULT_BATCH_MAX_RETRIES = 3
#: The batch endpoints' requests per minute and the most requests waiting in the provider's
#: processing queue when no tier says: the tier1 preset (`guard.tiers.BATCH_TIERS`).
DEFAULT_BATCH_RPM, DEFAULT_BATCH_QUEUE_CAP = BATCH_TIERS["tier1"]
#: The most requests one batch may hold (Anthropic Message Batches' published cap).
BATCH_MAX_REQUESTS = 100_000


class LogEvent:
    """The `message` of the agent's log lines that other code reads (the audit CLI, the demo)."""

    #: one line per request, with its status, model, usage and duration (also a queued one)
    REQUEST_FINISHED = "request finished"
    #: one audit line per tool call; its `audit` field holds the same value
    TOOL_CALL = "tool_call"
    #: a request the agent gave up on and sent to the dead-letter queue, with its reason
    DEAD_LETTERED = "request dead-lettered"
    #: an MCP tool the agent stopped offering (its server failed or misbehaved)
    MCP_TOOL_DISABLED = "MCP tool disabled"


class Env:
    """Names of the environment variables the stack sets and the Lambda reads
    (docs/agent/index.md, "Agent Lambda environment"; docs/agent/batch.md)."""

    PROVIDER = "PROVIDER"
    MODELS = "MODELS"
    DEFAULT_MODEL = "DEFAULT_MODEL"
    DEGRADE_MODEL = "DEGRADE_MODEL"
    OVERFLOW_POLICY = "OVERFLOW_POLICY"
    SCHEDULING = "SCHEDULING"
    TENANTS = "TENANTS"
    AGENT_NAME = "AGENT_NAME"
    API_KEY_SECRET_ARN = "API_KEY_SECRET_ARN"
    MCP_SERVERS = "MCP_SERVERS"
    BUCKET_TABLE = "BUCKET_TABLE"
    RESULTS_TABLE = "RESULTS_TABLE"
    IDEMPOTENCY_TABLE = "IDEMPOTENCY_TABLE"
    NOTES_TABLE = "NOTES_TABLE"
    DOCS_BUCKET = "DOCS_BUCKET"
    DOCS_PREFIX = "DOCS_PREFIX"
    WORK_QUEUE_URL = "WORK_QUEUE_URL"
    DLQ_URL = "DLQ_URL"
    #: the payload bucket: answers and queue messages too large to keep inline (claim checks)
    PAYLOAD_BUCKET = "PAYLOAD_BUCKET"
    TOOL_ROLE_ARN = "TOOL_ROLE_ARN"
    MAX_DEFERRALS = "MAX_DEFERRALS"
    MAX_DEFERRAL_AGE_S = "MAX_DEFERRAL_AGE_S"
    POWERTOOLS_SERVICE_NAME = "POWERTOOLS_SERVICE_NAME"
    POWERTOOLS_METRICS_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"
    # the batch lane (the agent queues into it; the collector and poller read the rest)
    BATCH_QUEUE_URL = "BATCH_QUEUE_URL"
    BATCH_DLQ_URL = "BATCH_DLQ_URL"
    BATCH_TABLE = "BATCH_TABLE"
    BATCH_BUCKET_ID = "BATCH_BUCKET_ID"
    BATCH_RPM = "BATCH_RPM"
    BATCH_QUEUE_CAP = "BATCH_QUEUE_CAP"
    BATCH_MAX_ITEMS = "BATCH_MAX_ITEMS"
    BATCH_MAX_WAIT_S = "BATCH_MAX_WAIT_S"
    BATCH_MAX_RETRIES = "BATCH_MAX_RETRIES"
    BATCH_CANCEL_AFTER_S = "BATCH_CANCEL_AFTER_S"
    # budgets: the limits on deploy (`guard.spend.LimitSet` as JSON) and the config table
    # whose limits item replaces them without a redeploy
    BUDGETS = "BUDGETS"
    LIMITS_TABLE = "LIMITS_TABLE"
    #: the runaway breaker's settings (JSON of guard.runaway.RunawaySettings' fields)
    RUNAWAY = "RUNAWAY"


# -- metrics --------------------------------------------------------------------------------------

NAMESPACE = "Bulwark"
DIMENSION = "Model"
#: Second dimension of a call's metrics when a capacity pool served it (guard.pools): the
#: pool's name, so the dashboard shows where the traffic went and what it cost there.
POOL_DIMENSION = "Pool"
#: The metrics repeated per (Model, Pool).
POOL_METRICS = ("Requests", "CostUSD", "Upstream529", "Failed", "PoolBreakerOpen")

#: metric name -> Powertools MetricUnit name (EMF, dimension `Model`)
METRICS = {
    "Requests": "Count", "InputTokens": "Count", "OutputTokens": "Count",
    "CacheWriteTokens": "Count", "CacheReadTokens": "Count", "LocalThrottles": "Count",
    "Upstream429": "Count", "Upstream529": "Count", "RetryAfterSeconds": "Seconds",
    "Deferred": "Count", "Degraded": "Count", "Rejected": "Count", "Latency": "Milliseconds",
    "CostUSD": "NoUnit", "Succeeded": "Count", "Failed": "Count", "QuotaUsedPercent": "Percent",
    "GrantToSendMs": "Milliseconds", "QueueSeconds": "Seconds",
    # a queued request that ended in the DLQ (its error answer is stored with the reason)
    "DeadLettered": "Count",
    # the batch lane (agent.batch); BatchInFlight: requests held by open batches (a gauge)
    "BatchQueued": "Count", "BatchSubmitted": "Count", "BatchSucceeded": "Count",
    "BatchErrored": "Count", "BatchExpired": "Count", "BatchCostUSD": "NoUnit",
    "BatchSavedUSD": "NoUnit", "BatchInFlight": "Count",
}

#: Capacity pools: metric name -> unit, dimensions Model and Pool only (never Model alone).
#: PoolBreakerOpen is 1 when a call saw the pool's shared breaker open or half-open, else 0: a
#: gauge whose Minimum over a minute is 1 when every call of that minute found it open.
POOL_ONLY_METRICS = {"PoolBreakerOpen": "Count"}

#: Budgets: metric name -> unit, dimension Tenant only (never Model): the fullest window's
#: spent + open as a percentage of its limit, and calls refused for budget
TENANT_ONLY_METRICS = {"BudgetUsedPercent": "Percent", "BudgetRefused": "Count"}
#: Days (fractional, NoUnit) from the request to the end of its UTC month, emitted beside a
#: tenant's month BudgetUsedPercent (dimensions Tenant, Window=month): metric math has no
#: calendar, and "budget exhausted before month end" compares with it
MONTH_DAYS_LEFT_METRIC = "MonthDaysLeft"
#: The runaway breaker: calls it held to a tenant's own trailing baseline (Count, dimension
#: Tenant only, configured tenants); the stack alarms on its Sum per tenant
RUNAWAY_METRIC = THROTTLED_METRIC

#: The runaway breaker's metric (`guard.runaway`, emitted by `agent.runaway`): 1 per evaluation
#: while a scope is throttled, dimension Tenant only (the deployment's scope:
#: RUNAWAY_DEPLOYMENT); metric name -> unit
RUNAWAY_METRICS = {THROTTLED_METRIC: "Count"}

#: Per-tenant figures: these metrics are also emitted with dimension `Tenant` (configured
#: tenants only, so the cardinality is bounded)
TENANT_DIMENSION = "Tenant"
#: BudgetUsedPercent is also emitted per budget window: dimensions Tenant and Window, the
#: window named by BUDGET_WINDOWS (guard.budget's window -> Window value); alarms read these
WINDOW_DIMENSION = "Window"
BUDGET_WINDOWS = {"usd_per_day": "day", "usd_per_month": "month", "tokens_per_day": "tokens"}
TENANT_METRICS = frozenset({"Requests", "InputTokens", "OutputTokens", "CostUSD", "Succeeded",
                            "Failed", "Upstream429", "Latency", "BudgetUsedPercent",
                            "BudgetRefused", "LocalThrottles"})

#: high-resolution (StorageResolution 1) metrics: the dashboard's "last 15 minutes" rate-limit
#: row reads them at 10 s (docs/local.md, "The dashboard page": the extra cost)
HIGH_RESOLUTION = frozenset({"Requests", "InputTokens", "OutputTokens", "CacheWriteTokens",
                             "LocalThrottles", "Upstream429", "Deferred", "QueueSeconds"})

#: Who got the capacity: per tenant and class (dimensions Tenant and Priority, configured
#: tenants only, one EMF document per request). TenantWaitSeconds holds every call's wait for
#: capacity (seconds), so its p99 is the wait alarm's statistic. metric name -> unit.
CAPACITY_DIMENSIONS = ("Tenant", "Priority")
CAPACITY_METRICS = {"TenantAnswers": "Count", "TenantWaitSeconds": "Seconds",
                  "TenantDeferred": "Count"}

#: AccessDenied/Unauthorized calls by the kit's roles: a CloudTrail metric filter (namespace
#: `Bulwark`, no dimension), not EMF
ACCESS_DENIED_METRIC = "AccessDenied"


# -- the model spec and its environment encoding -------------------------------------------

#: Tokens of context and the largest max_tokens a model accepts when its spec does not say.
DEFAULT_CONTEXT_WINDOW = 200_000
DEFAULT_MAX_OUTPUT_TOKENS = 64_000
@dataclass(frozen=True, kw_only=True)
class PoolSpec:
    """One capacity pool of a logical model (`guard.Pool`) as the stack hands it to the Lambda:
    its `name` (the `Pool` metric dimension), `provider` ("anthropic" | "bedrock"), the `model`
    id sent upstream (Bedrock: an inference profile or foundation model id), its own bucket
    (`bucket_id`) and per-minute `limits`, Bedrock's `region`, the `service_tier`, the endpoint
    (`base_url`; None: the SDK's for the provider and region) and its `prices` (USD per million
    tokens; None: the logical model's)."""

    name: str
    provider: str
    model: str
    bucket_id: str
    limits: Limits
    region: str | None = None
    service_tier: str | None = None
    base_url: str | None = None
    prices: Prices | None = None

    def __post_init__(self) -> None:
        if self.provider not in PROVIDERS:
            raise FieldError("provider", f"must be one of {PROVIDERS}, got {self.provider!r}")
        for name in ("name", "model", "bucket_id"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise FieldError(name, f"must be a non-empty string, got "
                                       f"{getattr(self, name)!r}")


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """One callable model as the stack hands it to the Lambda: its rate-limit bucket and that
    bucket's per-minute `limits` (`guard.Limits`), its context (tokens) and its prices (USD per
    million tokens). A spec that cannot be served raises ValueError naming the field."""

    model_id: str
    bucket_id: str
    limits: Limits
    prices: Prices
    context_window: int = DEFAULT_CONTEXT_WINDOW
    max_output_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS
    #: capacity pools in preference order (empty: the model is served by `bucket_id` alone;
    #: with pools, `bucket_id` and `limits` are the first pool's)
    pools: tuple[PoolSpec, ...] = ()
    #: per-minute ceilings by limit name (LEARNABLE_LIMITS: "rpm", "itpm", "otpm") the bucket
    #: may rise to when the server's `anthropic-ratelimit-*-limit` headers show a higher limit
    #: (`guard.TokenBucket(learn_up_to=...)`); each at least the configured limit; None: the
    #: bucket keeps its configured limits
    learn_up_to: Mapping[str, float] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.model_id, str) or not self.model_id.strip():
            raise ValueError(f"model_id must be a non-empty string, got {self.model_id!r}")
        if not isinstance(self.bucket_id, str) or not self.bucket_id:
            raise FieldError("bucket", "must name the rate-limit bucket (e.g. "
                                       "'anthropic#sonnet-4')")
        for name in ("context_window", "max_output_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise FieldError(name, f"must be a positive integer, got {value!r}")
        if self.learn_up_to is not None and self.pools:
            raise FieldError("learn_up_to", "applies to a model without pools (each pool has "
                                            "its own bucket)")
        if self.learn_up_to is not None:
            object.__setattr__(self, "learn_up_to", _check_learn_up_to(self.learn_up_to,
                                                                       self.limits))


#: The limits a bucket can learn from the Anthropic API's `anthropic-ratelimit-*-limit`
#: headers (Bedrock sends none): `ModelSpec.learn_up_to`'s keys.
LEARNABLE_LIMITS = ("rpm", "itpm", "otpm")


def _check_learn_up_to(ceilings: object, limits: Limits) -> dict[str, float]:
    """`ceilings` (limit name -> per minute) as a dict; FieldError("learn_up_to") naming the
    first bad entry: not an object, empty, a name outside LEARNABLE_LIMITS or one the limits do
    not set, or a ceiling below the configured limit."""
    if not isinstance(ceilings, Mapping) or not ceilings:
        raise FieldError("learn_up_to", f"must be an object of {', '.join(LEARNABLE_LIMITS)} "
                                        f"-> ceiling per minute, got {ceilings!r}")
    checked = {}
    for name, ceiling in ceilings.items():
        configured = getattr(limits, name) if name in LEARNABLE_LIMITS else None
        if configured is None:
            raise FieldError("learn_up_to", f"names {name!r}, not a per-minute limit of this "
                                            f"model (learnable: {', '.join(LEARNABLE_LIMITS)}, "
                                            "those the model sets)")
        if isinstance(ceiling, bool) or not isinstance(ceiling, (int, float)) \
                or not configured <= ceiling < float("inf"):
            raise FieldError("learn_up_to", f"[{name!r}] must be a ceiling per minute at least "
                                            f"the configured {configured:g}, got {ceiling!r}")
        checked[name] = ceiling
    return checked


def _encode_model(spec: ModelSpec) -> dict:
    entry: dict = {"bucket": spec.bucket_id, "prices": spec.prices.encode(),
                   "context_window": spec.context_window,
                   "max_output_tokens": spec.max_output_tokens, **_encode_limits(spec.limits)}
    if spec.pools:
        entry["pools"] = [_encode_pool(pool) for pool in spec.pools]
    if spec.learn_up_to is not None:
        entry["learn_up_to"] = dict(spec.learn_up_to)
    return entry


def _encode_pool(pool: PoolSpec) -> dict:
    entry = {"name": pool.name, "provider": pool.provider, "model": pool.model,
             "bucket": pool.bucket_id, **_encode_limits(pool.limits)}
    for key in ("region", "service_tier", "base_url"):
        if getattr(pool, key) is not None:
            entry[key] = getattr(pool, key)
    if pool.prices is not None:
        entry["prices"] = pool.prices.encode()
    return entry


def _encode_limits(limits: Limits) -> dict:
    entry: dict = {}
    for key in ("rpm", "itpm", "otpm", "tpm"):
        if getattr(limits, key) is not None:
            entry[key] = getattr(limits, key)
    if limits.bedrock:
        entry["output_burndown"] = limits.output_burndown
    if limits.counts_cache_reads:
        entry["counts_cache_reads"] = True
    if limits.burst_fraction < 1.0:
        entry["burst_fraction"] = limits.burst_fraction
    return entry


def _decode_limits(entry: dict) -> Limits:
    return Limits(entry.get("rpm"), entry.get("itpm"), entry.get("otpm"),
                  tpm=entry.get("tpm"), output_burndown=entry.get("output_burndown", 1.0),
                  counts_cache_reads=entry.get("counts_cache_reads", False),
                  burst_fraction=entry.get("burst_fraction", 1.0))


def _decode_pool(where: str, entry: object) -> PoolSpec:
    if not isinstance(entry, dict):
        raise ContractError(f"{where} must be an object")
    try:
        prices = Prices.decode(entry["prices"]) if "prices" in entry else None
    except (KeyError, TypeError, ValueError):
        raise ContractError(f"{where}.prices needs numeric 'input' and 'output' USD per "
                            "million tokens") from None
    try:
        return PoolSpec(name=entry.get("name"), provider=entry.get("provider"),
                        model=entry.get("model"), bucket_id=entry.get("bucket"),
                        limits=_decode_limits(entry), region=entry.get("region"),
                        service_tier=entry.get("service_tier"),
                        base_url=entry.get("base_url"), prices=prices)
    except FieldError as err:
        raise ContractError(f"{where}.{err.field}: {err.problem}") from None
    except ValueError as err:  # guard.LimitsError included
        raise ContractError(f"{where}: {err}") from None


def encode_models(specs: Iterable[ModelSpec]) -> str:
    """The MODELS variable: a JSON object of model id -> entry (`decode_models` reads it)."""
    return json.dumps({spec.model_id: _encode_model(spec) for spec in specs}, sort_keys=True)


def _decode_model(model_id: str, entry: object) -> ModelSpec:
    where = f"{Env.MODELS}[{model_id!r}]"
    if not isinstance(entry, dict):
        raise ContractError(f"{where} must be an object")
    try:
        prices = Prices.decode(entry.get("prices", {}))
    except (KeyError, TypeError, ValueError):
        raise ContractError(f"{where}.prices needs numeric 'input' and 'output' USD per "
                            "million tokens") from None
    raw_pools = entry.get("pools", [])
    if not isinstance(raw_pools, list):
        raise ContractError(f"{where}.pools must be a list of pools")
    pools = tuple(_decode_pool(f"{where}.pools[{i}]", pool) for i, pool in enumerate(raw_pools))
    try:
        return ModelSpec(
            model_id=model_id, bucket_id=entry.get("bucket"), limits=_decode_limits(entry),
            prices=prices, context_window=entry.get("context_window", DEFAULT_CONTEXT_WINDOW),
            max_output_tokens=entry.get("max_output_tokens", DEFAULT_MAX_OUTPUT_TOKENS),
            pools=pools, learn_up_to=entry.get("learn_up_to"))
    except FieldError as err:
        raise ContractError(f"{where}.{err.field}: {err.problem}") from None
    except ValueError as err:  # guard.LimitsError included
        raise ContractError(f"{where}: {err}") from None


def _json_object(variable: str, raw: str, what: str) -> dict:
    """A variable's non-empty JSON object (`what` says of what); ContractError naming it."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ContractError(f"{variable} is not valid JSON: {err}") from None
    if not isinstance(data, dict) or not data:
        raise ContractError(f"{variable} must be a non-empty JSON object of {what}")
    return data


def decode_models(raw: str) -> dict[str, ModelSpec]:
    """Model id -> spec from the MODELS variable (`encode_models` writes it); ContractError
    naming the first bad entry."""
    data = _json_object(Env.MODELS, raw, "model id -> settings")
    return {model_id: _decode_model(model_id, entry) for model_id, entry in data.items()}


# -- tenants and the roles bound to them; their environment encoding --------------------------

def role_identity(role_arn: str) -> tuple[str, str, str]:
    """(partition, account, role name) of an IAM role ARN; the path is dropped, as it is from
    the assumed-role ARN of a session of that role (role names are unique in an account).
    ValueError naming the expected form when `role_arn` is not a role ARN."""
    match = ROLE_ARN_PATTERN.match(role_arn) if isinstance(role_arn, str) else None
    if match is None:
        raise ValueError(f"expected an IAM role ARN such as arn:aws:iam::111122223333:role/"
                         f"AppRole, got {role_arn!r}")
    return match.group(1), match.group(2), match.group(3)


#: TenantSpec fields that make its guard.TenantShare
SHARE_FIELDS = ("weight", "rpm", "itpm", "otpm", "tpm")


@dataclass(frozen=True, kw_only=True)
class TenantSpec:
    """One tenant as the stack hands it to the Lambda: its name (`TENANT_PATTERN`) and the IAM
    roles whose sessions act for it (`principals`, role ARNs; empty: unbound, deployable only
    with `allow_unbound_tenants`). Per-tenant settings are fields of this class: a new one is
    a field with a default, checked in `__post_init__` (FieldError naming it); `encode` and
    `decode` carry every field."""

    name: str
    principals: tuple[str, ...] = ()
    #: the tenant's share of every model's bucket (guard.TenantShare): weight under contention
    #: and optional caps per minute; None everywhere: the tenant sets no share
    weight: float | None = None
    rpm: float | None = None
    itpm: float | None = None
    otpm: float | None = None
    tpm: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not TENANT_PATTERN.match(self.name):
            raise ValueError(f"tenant name must be 1-63 characters of [a-z0-9-], got "
                             f"{self.name!r}")
        if isinstance(self.principals, str) or not all(
                isinstance(p, str) for p in self.principals):
            raise FieldError("principals", "must be a list of IAM role ARNs")
        object.__setattr__(self, "principals", tuple(self.principals))
        for principal in self.principals:
            try:
                role_identity(principal)
            except ValueError as err:
                raise FieldError("principals", str(err)) from None
        for name in SHARE_FIELDS:
            if getattr(self, name) is not None:
                try:
                    TenantShare(**{name: getattr(self, name)})
                except ValueError as err:
                    raise FieldError(name, str(err)) from None

    @property
    def shares(self) -> bool:
        """True when the tenant sets a weight or a cap (the buckets then share by tenant)."""
        return any(getattr(self, name) is not None for name in SHARE_FIELDS)

    @property
    def share(self) -> TenantShare:
        """The tenant's `guard.TenantShare` (weight 1 unless set)."""
        return TenantShare(**{name: getattr(self, name) for name in SHARE_FIELDS
                              if getattr(self, name) is not None})

    @property
    def bound(self) -> bool:
        """True when roles are bound to the tenant (False: unbound)."""
        return bool(self.principals)

    def encode(self) -> dict:
        """The tenant's entry of the TENANTS variable (every field but the name)."""
        return {f.name: list(value) if isinstance(value, tuple) else value
                for f in fields(self) if f.name != "name"
                for value in (getattr(self, f.name),)
                if not (f.name in SHARE_FIELDS and value is None)}

    @classmethod
    def decode(cls, name: str, entry: object) -> "TenantSpec":
        """From a TENANTS entry; ContractError naming the tenant and the bad key."""
        where = f"{Env.TENANTS}[{name!r}]"
        if not isinstance(entry, dict):
            raise ContractError(f"{where} must be an object such as "
                                '{"principals": ["arn:aws:iam::111122223333:role/AppRole"]}')
        known = {f.name for f in fields(cls)} - {"name"}
        unknown = sorted(set(entry) - known)
        if unknown:
            raise ContractError(f"{where}: unknown key {unknown[0]!r} (known: "
                                f"{', '.join(sorted(known))})")
        try:
            return cls(name=name, **{key: tuple(value) if isinstance(value, list) else value
                                     for key, value in entry.items()})
        except FieldError as err:
            raise ContractError(f"{where}.{err.field}: {err.problem}") from None
        except (TypeError, ValueError) as err:
            raise ContractError(f"{where}: {err}") from None


def encode_tenants(specs: Iterable[TenantSpec]) -> str:
    """The TENANTS variable: a JSON object of tenant name -> entry, in the configured order
    (`decode_tenants` reads it)."""
    return json.dumps({spec.name: spec.encode() for spec in specs})


def decode_tenants(raw: str) -> tuple[TenantSpec, ...]:
    """The tenants from the TENANTS variable (`encode_tenants` writes it), in order. A
    comma-separated list of names is read as unbound tenants (hand-written local settings).
    ContractError naming the first bad entry."""
    text = raw.strip()
    if not text.startswith("{"):
        names = [part.strip() for part in text.split(",") if part.strip()]
        if not names:
            raise ContractError(f"{Env.TENANTS} names no tenant")
        try:
            return tuple(TenantSpec(name=name) for name in names)
        except ValueError as err:
            raise ContractError(f"{Env.TENANTS}: {err}") from None
    data = _json_object(Env.TENANTS, text, "tenant name -> settings")
    return tuple(TenantSpec.decode(name, entry) for name, entry in data.items())
