"""The runaway breaker: a tenant (or the whole deployment) spending at more than k times its own
trailing baseline is throttled to that baseline until an operator clears it or its spend falls
back. Pure decisions here; `guard.runaway_store` reads the metrics and writes the throttle.

Rates are USD per minute. The baseline of a scope at time t is the median, over the last
`history_days` days, of its spend rate in the same UTC hour of day (from the kit's own
`CostUSD` metric), never below `min_baseline_usd_per_hour / 60`. The current rate is the spend
over the last `window_minutes`. A throttle is a set of tenant caps (requests and tokens per
minute: the tenant's usage over the window scaled down by baseline / rate), written on the
limits config item, so every caller applies it through the live tenant shares (`guard.shares`)
and the hot path pays no extra write.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from .limits import CAP_KEYS, LimitsError, TenantShare

#: The scope of the whole deployment's spend (the Tenant dimension value of its metric).
DEPLOYMENT = "*deployment*"
SECONDS_PER_HOUR = 3600.0
SECONDS_PER_DAY = 86_400.0
#: The least a throttle caps a dimension to (per minute): a throttled tenant keeps a trickle.
MIN_CAP = 1.0


class RunawayError(ValueError):
    """A bad runaway setting or throttle document (names the key)."""


@dataclass(frozen=True)
class RunawaySettings:
    """`k`: a rate above k x baseline trips the breaker (> 1). `min_baseline_usd_per_hour`:
    the least baseline (USD per hour; a scope with little history is not tripped by pennies).
    `window_minutes`: the span the current rate is measured over. `history_days`: days of the
    same hour the baseline is taken from. `clear_below`: a throttled scope whose rate falls
    under this fraction of its baseline is released (0 < f < 1)."""

    k: float = 5.0
    min_baseline_usd_per_hour: float = 0.5
    window_minutes: int = 2
    history_days: int = 14
    clear_below: float = 0.5

    def __post_init__(self) -> None:
        checks = (("k", self.k > 1, "a number above 1"),
                  ("min_baseline_usd_per_hour", self.min_baseline_usd_per_hour > 0,
                   "a positive number of USD per hour"),
                  ("window_minutes", 1 <= self.window_minutes <= 60, "1-60 minutes"),
                  ("history_days", 1 <= self.history_days <= 63, "1-63 days"),
                  ("clear_below", 0 < self.clear_below < 1, "a fraction in (0, 1)"))
        for name, ok, expected in checks:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or not ok:
                raise RunawayError(f"runaway.{name} must be {expected}, got {value!r}")

    @property
    def min_baseline(self) -> float:
        """The least baseline, USD per minute."""
        return self.min_baseline_usd_per_hour / 60.0


@dataclass(frozen=True)
class Throttle:
    """A scope held to its baseline: since when (epoch s), the rate that tripped it and the
    baseline (USD per minute), and the caps it imposes (cap key of `guard.limits.CAP_KEYS` ->
    per minute; the deployment's are split among the tenants by weight)."""

    since: float
    rate: float
    baseline: float
    caps: Mapping[str, float] = field(default_factory=dict)

    def encode(self) -> dict:
        return {"since": self.since, "rate": self.rate, "baseline": self.baseline,
                "caps": dict(sorted(self.caps.items()))}

    @classmethod
    def decode(cls, raw: Mapping) -> "Throttle":
        try:
            caps = {str(k): float(v) for k, v in (raw.get("caps") or {}).items()}
            throttle = cls(float(raw["since"]), float(raw["rate"]), float(raw["baseline"]),
                           caps)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise RunawayError(f"a runaway throttle needs since, rate, baseline and caps: "
                               f"{err}") from None
        unknown = sorted(set(caps) - set(CAP_KEYS))
        if unknown or any(not v > 0 for v in caps.values()):
            raise RunawayError(f"a runaway throttle's caps must be positive {CAP_KEYS}, got "
                               f"{caps}")
        return throttle


def baseline(samples: Iterable[tuple[float, float]], now: float, settings: RunawaySettings
             ) -> float:
    """The scope's baseline (USD per minute) at `now` (epoch s) from hourly spend `samples`
    ((hour start epoch s, USD spent in that hour)): the median over the last `history_days`
    days of the hour of day `now` is in, never below the minimum. Hours without a sample
    count as no spend only when some hour of that day has one (a day before the deployment
    existed does not count)."""
    hour_of_day = math.floor(now % SECONDS_PER_DAY / SECONDS_PER_HOUR)
    today = math.floor(now / SECONDS_PER_DAY)
    by_day: dict[int, float] = {}
    seen_days: set[int] = set()
    for start, usd in samples:
        day = math.floor(start / SECONDS_PER_DAY)
        if not today - settings.history_days <= day < today:
            continue
        seen_days.add(day)
        if math.floor(start % SECONDS_PER_DAY / SECONDS_PER_HOUR) == hour_of_day:
            by_day[day] = by_day.get(day, 0.0) + usd
    rates = [by_day.get(day, 0.0) / 60.0 for day in seen_days]
    learned = statistics.median(rates) if rates else 0.0
    return max(learned, settings.min_baseline)


@dataclass(frozen=True)
class Verdict:
    """What one evaluation decides for a scope: "trip" (throttle it), "hold" (keep its
    throttle), "clear" (release it) or "ok"."""

    action: str
    rate: float
    baseline: float


def judge(rate: float, base: float, throttled: bool, settings: RunawaySettings) -> Verdict:
    """The verdict for a scope spending `rate` against its baseline `base` (USD per minute)."""
    if throttled:
        return Verdict("clear" if rate < settings.clear_below * base else "hold", rate, base)
    return Verdict("trip" if rate > settings.k * base else "ok", rate, base)


def caps_for(usage_per_minute: Mapping[str, float], rate: float, base: float,
             dimensions: Iterable[str]) -> dict[str, float]:
    """Caps that hold a scope to its baseline: its usage per minute in each cap dimension
    (`usage_per_minute`: cap key -> requests or tokens per minute over the window) scaled by
    base / rate, at least MIN_CAP; only the `dimensions` every bucket enforces."""
    scale = base / rate if rate > 0 else 1.0
    return {key: max(MIN_CAP, math.floor(usage_per_minute.get(key, 0.0) * scale))
            for key in dimensions if key in CAP_KEYS}


def runaway_change(scope: str, what: str) -> str:
    """A change record's entry for a throttle of `scope` ("throttled" or "cleared"), in the
    KEY=VALUE form the audit CLI attributes to the tenant."""
    key = "runaway" if scope == DEPLOYMENT else f"tenants.{scope}.runaway"
    return f"{key}={what}"


def throttled_shares(shares: Mapping[str, TenantShare], throttles: Mapping[str, Throttle]
                     ) -> dict[str, TenantShare]:
    """`shares` with the throttles' caps applied: a tenant's own, and the deployment's split
    among every tenant by weight (each the lower where a cap is already set)."""
    out = dict(shares)
    deployment = throttles.get(DEPLOYMENT)
    total = sum(share.weight for share in shares.values()) or 1.0
    for name, share in shares.items():
        if deployment is not None:
            share = share.capped({k: max(MIN_CAP, v * share.weight / total)
                                  for k, v in deployment.caps.items()})
        own = throttles.get(name)
        if own is not None:
            share = share.capped(own.caps)
        out[name] = share
    for name in throttles:
        if name != DEPLOYMENT and name not in shares:
            raise LimitsError(f"runaway throttle for unknown tenant {name!r}")
    return out


# -- the evaluation: metrics in, throttles out ------------------------------------------------

#: The metric the breaker emits per evaluation while a scope is throttled (value 1, dimension
#: Tenant; the deployment's scope is DEPLOYMENT).
THROTTLED_METRIC = "RunawayThrottled"
#: The structured log event naming a throttled scope, its rate and its baseline.
THROTTLED_EVENT = "runaway_throttled"
#: Per-tenant usage metric -> the cap key its rate limits.
USAGE_METRICS = {"Requests": "rpm", "InputTokens": "itpm", "OutputTokens": "otpm"}


@dataclass(frozen=True)
class Scope:
    """What the breaker watches: a tenant (`dimensions` {"Tenant": name}) or the deployment
    (one dimension set per model: {"Model": id}, summed)."""

    name: str
    dimensions: tuple[Mapping[str, str], ...]


def scopes(tenants: Iterable[str], models: Iterable[str], tenant_dimension: str = "Tenant",
           model_dimension: str = "Model") -> list[Scope]:
    """Every configured tenant, then the deployment (every model's spend)."""
    out = [Scope(t, ({tenant_dimension: t},)) for t in tenants]
    out.append(Scope(DEPLOYMENT, tuple({model_dimension: m} for m in models)))
    return out


class RunawayBreaker:
    """One evaluation of every scope: its spend rate over the last `window_minutes` and its
    baseline from `history_days` of hourly spend (`read(queries, start, end)`: CloudWatch
    GetMetricData's MetricDataQueries over [start, end) epoch s -> {query id: [(period start,
    value)]}), then the throttles written on the limits item (`write(before, after, what)`)
    when they change. `namespace`: the metrics' namespace; `cap_keys`: the cap keys every
    bucket enforces; `clock`: epoch seconds."""

    def __init__(self, settings: RunawaySettings, scopes: list[Scope], *, read, namespace: str,
                 cap_keys: Iterable[str], clock) -> None:
        self.settings = settings
        self.scopes = scopes
        self.read = read
        self.namespace = namespace
        self.cap_keys = tuple(cap_keys)
        self.clock = clock
        #: (its end: today's start, the hourly spend history): kept until the day changes,
        #: so a warm container reads the history once a day, not every evaluation
        self._history: tuple[float, dict] | None = None

    def _stat(self, qid: str, name: str, dims: Mapping[str, str], period: int) -> dict:
        return {"Id": qid, "ReturnData": True, "MetricStat": {
            "Metric": {"Namespace": self.namespace, "MetricName": name,
                       "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()]},
            "Period": period, "Stat": "Sum"}}

    def measure(self, now: float) -> dict[str, tuple[float, float, dict[str, float]]]:
        """Per scope: (rate, baseline) in USD per minute and its usage per minute per cap
        key over the window."""
        window_s = self.settings.window_minutes * 60
        start = math.floor((now - window_s) / 60) * 60
        recent, history = [], []
        for i, scope in enumerate(self.scopes):
            for j, dims in enumerate(scope.dimensions):
                recent.append(self._stat(f"c{i}_{j}", "CostUSD", dims, 60))
                history.append(self._stat(f"h{i}_{j}", "CostUSD", dims, 3600))
                if scope.name != DEPLOYMENT:
                    recent += [self._stat(f"u{i}_{j}_{m}", m, dims, 60)
                               for m in USAGE_METRICS]
        got = self.read(recent, start, now)
        day = SECONDS_PER_DAY
        history_end = math.floor(now / day) * day
        if self._history is None or self._history[0] != history_end:
            history_start = history_end - self.settings.history_days * day
            self._history = (history_end, self.read(history, history_start, history_end))
        got.update(self._history[1])
        out = {}
        minutes = (now - start) / 60.0
        for i, scope in enumerate(self.scopes):
            spent = sum(v for j in range(len(scope.dimensions))
                        for _, v in got.get(f"c{i}_{j}", ()) if v is not None)
            samples = [(t, v) for j in range(len(scope.dimensions))
                       for t, v in got.get(f"h{i}_{j}", ()) if v is not None]
            usage = {key: sum(v for j in range(len(scope.dimensions))
                              for _, v in got.get(f"u{i}_{j}_{m}", ()) if v is not None)
                     / minutes for m, key in USAGE_METRICS.items()}
            out[scope.name] = (spent / minutes, baseline(samples, now, self.settings), usage)
        return out

    def evaluate(self, throttles: Mapping[str, Throttle]
                 ) -> tuple[dict[str, Throttle], dict[str, Verdict]]:
        """(the throttles to have in force, each scope's verdict) given those in force."""
        now = self.clock()
        measured = self.measure(now)
        after = dict(throttles)
        verdicts = {}
        for name, (rate, base, usage) in measured.items():
            verdict = judge(rate, base, name in throttles, self.settings)
            verdicts[name] = verdict
            if verdict.action == "trip":
                caps = caps_for(self._usage(name, usage, measured), rate, base, self.cap_keys)
                after[name] = Throttle(now, rate, base, caps)
            elif verdict.action == "clear":
                after.pop(name, None)
        return after, verdicts

    def _usage(self, name: str, usage: dict[str, float], measured) -> dict[str, float]:
        """The scope's usage per cap key: the deployment's is every tenant's together."""
        if name != DEPLOYMENT:
            return {**usage, "tpm": usage.get("itpm", 0.0) + usage.get("otpm", 0.0)}
        total: dict[str, float] = {}
        for other, (_, _, theirs) in measured.items():
            if other != DEPLOYMENT:
                for key, value in self._usage(other, theirs, measured).items():
                    total[key] = total.get(key, 0.0) + value
        return total
