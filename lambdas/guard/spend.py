"""The budget side of a guarded call: which scopes a call counts against, its maximum cost, the
reserve before the bucket acquire and the settle after the call.

Limits come from the constructor (cdk.json's values, handed down by the stack) and, when a
`LimitsSource` is given, from the limits config item every caller reads (re-read at most every
`ttl_s` seconds), so an operator's `python -m cli.limits set` takes effect within a minute
without a redeploy. The config item, when present, replaces the constructor's values.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .budget import Budget, BudgetError, BudgetLedger, Hold, scopes_for
from .limits import SHARE_KEYS, LimitsError, TenantShare
from .prices import Prices
from .runaway import RunawayError, Throttle, throttled_shares
from .usage import Usage

log = logging.getLogger(__name__)

#: The limits config item's key in the config table.
LIMITS_KEY = "limits"
#: Longest a caller uses limits read from the config item (seconds).
DEFAULT_TTL_S = 30.0


@dataclass(frozen=True)
class LimitSet:
    """Budgets in force: per tenant (`tenants`: tenant -> Budget), the deployment's
    (`deployment`), and each model's tokens per UTC day (`model_tokens_per_day`: model id ->
    tokens). `version` counts the config item's changes (0: the constructor's values)."""

    tenants: Mapping[str, Budget] = field(default_factory=dict)
    deployment: Budget | None = None
    model_tokens_per_day: Mapping[str, int] = field(default_factory=dict)
    version: int = 0
    #: tenant -> TenantShare (weight and caps per minute) set on the config item; None: the
    #: deployed shares (cdk.json's `tenants.<name>.weight/rpm/...`)
    shares: Mapping[str, TenantShare] | None = None
    #: the runaway breaker's throttles in force: tenant (or `guard.runaway.DEPLOYMENT`) ->
    #: Throttle
    runaway: Mapping[str, Throttle] = field(default_factory=dict)

    def tenant_shares(self, deployed: Mapping[str, TenantShare]) -> dict[str, TenantShare]:
        """The shares every bucket enforces: the config item's (else `deployed`, tenant ->
        TenantShare), each configured tenant weight 1 unless set, with the runaway
        throttles' caps applied."""
        chosen = self.shares if self.shares is not None else deployed
        base = {name: chosen.get(name, TenantShare()) for name in deployed}
        base.update(chosen)
        return throttled_shares(base, self.runaway)

    @classmethod
    def decode(cls, raw: Mapping[str, Any]) -> "LimitSet":
        """From the config item's `limits` document: {"budget": {...}?, "tenants": {name:
        {"budget": {...}}}, "models": {id: {"tokens_per_day": n}}, "version": n};
        BudgetError naming the key for a bad value."""
        def budget(where: str, value: Any) -> Budget:
            try:
                return Budget.decode(value)
            except BudgetError as err:
                raise BudgetError(f"{where}: {err}") from None

        tenants, shares = {}, {}
        for name, entry in (raw.get("tenants") or {}).items():
            if isinstance(entry, Mapping) and entry.get("budget") is not None:
                tenants[name] = budget(f"tenants.{name}.budget", entry["budget"])
            share = {k: v for k, v in (entry or {}).items() if k in SHARE_KEYS}
            if share:
                try:
                    shares[name] = TenantShare.decode(share)
                except LimitsError as err:
                    raise BudgetError(f"tenants.{name}: {err}") from None
        runaway = {}
        for scope, entry in (raw.get("runaway") or {}).items():
            try:
                runaway[scope] = Throttle.decode(entry)
            except RunawayError as err:
                raise BudgetError(f"runaway.{scope}: {err}") from None
        models = {}
        for model, entry in (raw.get("models") or {}).items():
            if isinstance(entry, Mapping) and entry.get("tokens_per_day") is not None:
                models[model] = budget(f"models.{model}",
                                       {"tokens_per_day": entry["tokens_per_day"]}
                                       ).tokens_per_day
        deployment = raw.get("budget")
        return cls(tenants, None if deployment is None else budget("budget", deployment),
                   models, int(raw.get("version", 0)), shares or None, runaway)

    def encode(self) -> dict[str, Any]:
        """The document `decode` reads."""
        tenants: dict[str, dict] = {t: {"budget": b.encode()} for t, b in self.tenants.items()}
        for name, share in (self.shares or {}).items():
            tenants.setdefault(name, {}).update(share.encode())
        out: dict[str, Any] = {
            "tenants": dict(sorted(tenants.items())),
            "models": {m: {"tokens_per_day": n}
                       for m, n in sorted(self.model_tokens_per_day.items())},
            "version": self.version}
        if self.deployment is not None:
            out["budget"] = self.deployment.encode()
        if self.runaway:
            out["runaway"] = {scope: t.encode() for scope, t in sorted(self.runaway.items())}
        return out


class LimitsSource:
    """The limits config item (`table_name`, key `pk = "limits"`), read at most every `ttl_s`
    seconds (eventually consistent: a change reaches every caller within ttl_s plus DynamoDB's
    replication, about a second). A read error or a bad item keeps the last good limits and is
    logged. `dynamodb`: a boto3 DynamoDB client; `clock`: seconds."""

    def __init__(self, table_name: str, dynamodb=None, *, ttl_s: float = DEFAULT_TTL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 < ttl_s <= 60:
            raise ValueError(f"ttl_s must be in (0, 60] seconds, got {ttl_s!r}")
        self.table_name = table_name
        self._dynamodb = dynamodb
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: LimitSet | None = None
        self._read_at = -math.inf
        self.reads = 0
        self._listeners: list[Callable[[LimitSet], Any]] = []
        self._notified: int | None = None

    def on_change(self, listener: Callable[[LimitSet], Any]) -> None:
        """Call `listener(limits)` when the limits in force change version (first: on the
        first `current`), in the caller of `current`: the buckets follow the tenant shares."""
        self._listeners.append(listener)

    def current(self, fallback: LimitSet) -> LimitSet:
        """The limits in force: the config item's (at most ttl_s old), else `fallback`."""
        now = self._clock()
        with self._lock:
            fresh = now - self._read_at < self.ttl_s
            if not fresh:
                self._read_at = now
        if not fresh:
            loaded = self._load()
            with self._lock:
                if loaded is not None:
                    self._cached = loaded
        with self._lock:
            limits = self._cached or fallback
            changed = self._listeners and limits.version != self._notified
            if changed:
                self._notified = limits.version
        for listener in self._listeners if changed else ():
            try:
                listener(limits)
            except Exception:  # noqa: BLE001 - a listener's failure keeps the call going
                log.exception("limits listener failed (version %s)", limits.version)
        return limits

    def _load(self) -> LimitSet | None:
        from boto3.dynamodb.types import TypeDeserializer
        from botocore.exceptions import BotoCoreError, ClientError

        if self._dynamodb is None:
            from .bucket_store import default_client

            self._dynamodb = default_client()
        self.reads += 1
        try:
            item = self._dynamodb.get_item(TableName=self.table_name,
                                           Key={"pk": {"S": LIMITS_KEY}}).get("Item")
        except (BotoCoreError, ClientError) as err:
            log.warning("limits config read failed (keeping the last limits): %s", err)
            return None
        if not item:
            return None
        raw = TypeDeserializer().deserialize(item.get("limits", {"M": {}}))
        try:
            return LimitSet.decode(plain_numbers(raw))
        except (BudgetError, TypeError, ValueError) as err:  # LimitsError is a ValueError
            log.error("limits config item is bad (keeping the last limits): %s", err)
            return None


#: Key prefix of the change records kept beside the limits item (who, what, before, after).
CHANGE_PREFIX = LIMITS_KEY + "#change#"


class LimitsConflict(Exception):
    """The limits item changed since it was read: read it again and redo the change."""


def write_limits(dynamodb: Any, table: str, before: LimitSet, after: LimitSet, *, who: str,
                 what: list[str], reason: str = "", at: float) -> None:
    """Replace the limits item with `after` and add its change record (`pk =
    limits#change#<time>#<id>`: who, what, before, after, reason, at), in one transaction,
    conditional on the item still being `before`'s version (two writers never overwrite each
    other unseen); LimitsConflict when it is not. `at`: epoch seconds."""
    import json
    import uuid
    from datetime import datetime, timezone

    from boto3.dynamodb.types import TypeSerializer
    from botocore.exceptions import ClientError

    stamp = datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    serialize = TypeSerializer().serialize
    record = {"pk": f"{CHANGE_PREFIX}{stamp}#{uuid.uuid4().hex[:8]}", "who": who,
              "what": list(what), "before": json.dumps(before.encode(), sort_keys=True),
              "after": json.dumps(after.encode(), sort_keys=True), "at": stamp,
              "reason": reason or ""}
    condition = ({"ConditionExpression": "attribute_not_exists(pk)"} if before.version == 0
                 else {"ConditionExpression": "#l.version = :v",
                       "ExpressionAttributeNames": {"#l": "limits"},
                       "ExpressionAttributeValues": {":v": {"N": str(before.version)}}})
    try:
        dynamodb.transact_write_items(TransactItems=[
            {"Put": {"TableName": table,
                     "Item": {"pk": {"S": LIMITS_KEY}, "limits": serialize(_decimals(
                         after.encode())), "updated_by": {"S": who},
                         "updated_at": {"S": stamp}},
                     **condition}},
            {"Put": {"TableName": table,
                     "Item": {k: serialize(v) for k, v in record.items()}}}])
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") == "TransactionCanceledException":
            raise LimitsConflict(f"the limits changed since version {before.version} was "
                                 "read") from None
        raise


def read_limits_item(dynamodb: Any, table: str) -> LimitSet | None:
    """The limits item, strongly consistent (for a writer about to change it); None when
    there is none. BudgetError for a bad item."""
    from boto3.dynamodb.types import TypeDeserializer

    item = dynamodb.get_item(TableName=table, Key={"pk": {"S": LIMITS_KEY}},
                             ConsistentRead=True).get("Item")
    if not item:
        return None
    return LimitSet.decode(plain_numbers(TypeDeserializer().deserialize(item["limits"])))


def _decimals(value: Any) -> Any:
    """Floats as Decimals, recursively (what the DynamoDB serializer takes)."""
    from decimal import Decimal

    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: _decimals(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decimals(v) for v in value]
    return value


def plain_numbers(value: Any) -> Any:
    """DynamoDB's Decimals as int or float, recursively (as JSON has them)."""
    from decimal import Decimal

    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {k: plain_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_numbers(v) for v in value]
    return value


class BudgetGate:
    """Reserve a call's maximum cost before its bucket acquire, settle its actual cost after.

    `ledger`: a `BudgetLedger`; `prices`: model id -> `Prices`; `limits`: the budgets from
    configuration (`LimitSet`); `source`: the limits config item, when limits may change
    without a redeploy."""

    def __init__(self, ledger: BudgetLedger, prices: Mapping[str, Prices], limits: LimitSet,
                 source: LimitsSource | None = None) -> None:
        for model, price in prices.items():
            if not isinstance(price, Prices):
                raise TypeError(f"prices[{model!r}] must be a guard.Prices, got "
                                f"{type(price).__name__}")
        self.ledger = ledger
        self.prices = dict(prices)
        self._limits = limits
        self._source = source

    def limits(self) -> LimitSet:
        return self._limits if self._source is None else self._source.current(self._limits)

    def budget_of(self, tenant: str | None) -> Budget | None:
        return None if tenant is None else self.limits().tenants.get(tenant)

    def reserve(self, model: str, tenant: str | None, input_tokens: int,
                max_tokens: int) -> Hold | str:
        """Reserve the call's maximum cost (its input estimate and max_tokens at the model's
        prices) and tokens against its scopes: a Hold (granted or refused), or a problem
        (str) when a budget applies but the model has no prices."""
        limits = self.limits()
        scopes = scopes_for(tenant, model, limits.tenants, limits.deployment,
                            limits.model_tokens_per_day)
        if not scopes:
            return Hold(True)
        price = self.prices.get(model)
        usd_scopes = any(not (b.usd_per_day is None and b.usd_per_month is None)
                         for b in scopes.values())
        if price is None and usd_scopes:
            return f"model {model!r} has no prices: a USD budget cannot be enforced"
        usd = price.max_cost_micros(input_tokens, max_tokens) if price else 0
        return self.ledger.reserve(scopes, usd, input_tokens + max_tokens)

    def settle(self, hold: Hold, model: str, usage: Mapping[str, int] | None) -> None:
        """Settle `hold` with the call's `usage` (tokens), or at its maximum when `usage` is
        None (the outcome is unknown). A store error leaves the reservation to expire at its
        maximum (logged)."""
        if not hold.granted or not hold.rid:
            return
        if usage is None:
            usd, tokens = hold.usd_micros, hold.tokens
        else:
            usage = Usage.of(usage)
            price = self.prices.get(model)
            usd = price.cost_micros(usage) if price else 0
            tokens = usage.counted_input + usage["output_tokens"]
        outcome = self.ledger.settle(hold, usd, tokens)
        if not outcome.settled and outcome.reason != "expired":
            log.warning("budget settle failed (%s): the reservation expires at its maximum",
                        outcome.reason)


def gate_for(buckets: Any, prices: Mapping[str, Prices] | None,
             budgets: Mapping[str, Budget] | None, *, budget: Budget | None = None,
             model_tokens_per_day: Mapping[str, int] | None = None,
             ledger: BudgetLedger | None = None,
             source: LimitsSource | None = None) -> BudgetGate | None:
    """GuardedClaude's gate: None when no budget is configured (no write, no read added).
    Without a `ledger` the budget items go to the bucket table of the first bucket in
    `buckets` (a mapping), through its DynamoDB client."""
    limits = LimitSet(dict(budgets or {}), budget, dict(model_tokens_per_day or {}))
    if not (limits.tenants or limits.deployment or limits.model_tokens_per_day or source):
        return None
    for tenant, value in limits.tenants.items():
        if not isinstance(value, Budget):
            raise TypeError(f"budgets[{tenant!r}] must be a guard.Budget, got "
                            f"{type(value).__name__}")
    if ledger is None:
        first = next(iter(buckets.values()), None) if isinstance(buckets, Mapping) else None
        if first is None:
            raise ValueError("budgets need a budget_ledger when buckets is not a mapping")
        ledger = BudgetLedger(first.table_name, first.dynamodb)
    return BudgetGate(ledger, prices or {}, limits, source)
