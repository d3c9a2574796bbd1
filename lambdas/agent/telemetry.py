"""The agent's metrics: CloudWatch EMF through Powertools, namespace `Bulwark`, dimension `Model`.

One request may touch two models (degrade), so numbers are collected per model and flushed as
one EMF document per model at the end of the request. The names, units and namespace are
`agent.contract`'s; alarms and the dashboard use exactly these (docs/monitoring.md, "Metrics").
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Callable

from guard.budget import DEPLOYMENT as DEPLOYMENT_SCOPE
from guard.budget import MODEL_SCOPE_PREFIX, next_month_start

from .contract import (BUDGET_WINDOWS, CAPACITY_DIMENSIONS, CAPACITY_METRICS, DIMENSION,
                       HIGH_RESOLUTION, METRICS, MONTH_DAYS_LEFT_METRIC, NAMESPACE,
                       POOL_DIMENSION, POOL_METRICS, POOL_ONLY_METRICS, TENANT_DIMENSION,
                       TENANT_METRICS, TENANT_ONLY_METRICS, WINDOW_DIMENSION)

#: every metric this module emits -> its unit
_UNITS = {**METRICS, **TENANT_ONLY_METRICS, MONTH_DAYS_LEFT_METRIC: "NoUnit"}

#: metrics that take the largest value seen in a request rather than the sum
_MAXIMA = {"QuotaUsedPercent", "RetryAfterSeconds", "GrantToSendMs", "QueueSeconds",
           "BatchInFlight", "BudgetUsedPercent"}
#: the key under which tenant-only metrics (budgets) are collected
_TENANT_ONLY = "<tenant>"


def _shared_scope(scope: str) -> tuple[tuple[str, str], ...] | None:
    """The dimensions (besides Window) of a budget scope shared by every tenant: none for the
    deployment's, Model for a model's tokens per day; None for a tenant's scope."""
    if scope == DEPLOYMENT_SCOPE:
        return ()
    if scope.startswith(MODEL_SCOPE_PREFIX):
        return ((DIMENSION, scope[len(MODEL_SCOPE_PREFIX):]),)
    return None


class RequestMetrics:
    """Accumulates one request's metrics per model; `flush()` writes them as EMF to stdout."""

    def __init__(self, tenant: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        #: epoch seconds now: dates MonthDaysLeft
        self.clock = clock
        self.values: dict[str, dict[str, float]] = defaultdict(dict)
        #: the request's tenant: TENANT_METRICS are also emitted with dimension Tenant
        self.tenant = tenant
        #: BudgetUsedPercent per budget window (dimensions Tenant, Window)
        self.windows: dict[str, float] = {}
        #: BudgetUsedPercent of the deployment's windows (dimension Window) and of each
        #: model's tokens per day (dimensions Model, Window): dimension pairs -> percent
        self.shared_windows: dict[tuple[tuple[str, str], ...], float] = {}
        #: (tenant, priority) -> metric -> values (each call's, as EMF lists them)
        self.tenant_values: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(
            lambda: defaultdict(list))
        #: (model, pool) -> the POOL_METRICS of calls a capacity pool served
        self.pool_values: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)

    def record_tenant(self, tenant: str, priority: str, result) -> None:
        """Who got the capacity: one guarded call of a configured tenant in its class: an
        answer with its wait for capacity (seconds), or a deferral."""
        values = self.tenant_values[(tenant, priority)]
        if result.status == "ok":
            values["TenantAnswers"].append(1.0)
            values["TenantWaitSeconds"].append(float(result.waited_s))
        elif result.status == "deferred":
            values["TenantDeferred"].append(1.0)

    def add(self, model: str, name: str, value: float = 1.0) -> None:
        if name not in _UNITS:
            raise KeyError(f"{name} is not one of the agent's metrics (agent.contract)")
        current = self.values[model].get(name)
        if current is None:
            self.values[model][name] = float(value)
        elif name in _MAXIMA:
            self.values[model][name] = max(current, float(value))
        else:
            self.values[model][name] = current + float(value)

    def record_call(self, model: str, result, prices) -> None:
        """Numbers from one guarded Claude call (`guard.CallResult`) and its cost."""
        self.add(model, "LocalThrottles", result.local_throttles)
        self.add(model, "Upstream429", result.upstream_429)
        self.add(model, "Upstream529", result.upstream_529)
        if result.quota_used_percent is not None:
            self.add(model, "QuotaUsedPercent", result.quota_used_percent)
        if result.queue_s:
            self.add(model, "QueueSeconds", result.queue_s)
        if result.grant_to_send_s:
            self.add(model, "GrantToSendMs", max(result.grant_to_send_s) * 1000)
        if result.retry_after:
            self.add(model, "RetryAfterSeconds", result.retry_after)
        if result.status == "ok" and result.usage:
            usage = result.usage
            self.add(model, "Requests", 1)
            self.add(model, "InputTokens", usage["input_tokens"])
            self.add(model, "OutputTokens", usage["output_tokens"])
            self.add(model, "CacheWriteTokens", usage["cache_creation_input_tokens"])
            self.add(model, "CacheReadTokens", usage["cache_read_input_tokens"])
            # a pooled call is priced at the pool (and service tier) that served it
            cost = result.cost_usd if getattr(result, "cost_usd", None) is not None \
                else prices.cost_usd(usage)
            self.add(model, "CostUSD", cost)
            self.add(model, "Latency", result.latency_s * 1000)
        windows = (result.budget_used_percent or {}).get(f"tenant:{self.tenant}", {})
        if windows:
            self.add(_TENANT_ONLY, "BudgetUsedPercent", max(windows.values()))
        for window, used in windows.items():
            name = BUDGET_WINDOWS[window]
            self.windows[name] = max(self.windows.get(name, 0.0), used)
        for scope, used_by_window in (result.budget_used_percent or {}).items():
            dimensions = _shared_scope(scope)
            for window, used in (used_by_window.items() if dimensions is not None else ()):
                key = (*dimensions, (WINDOW_DIMENSION, BUDGET_WINDOWS[window]))
                self.shared_windows[key] = max(self.shared_windows.get(key, 0.0), used)
        if result.status == "rejected" and (result.reason or "").startswith("budget"):
            self.add(_TENANT_ONLY, "BudgetRefused", 1)
        pool = getattr(result, "pool", None)
        if pool:
            values = self.pool_values[(model, pool)]
            ok = result.status == "ok" and bool(result.usage)
            for name, value in (("Requests", 1.0 if ok else 0.0),
                                ("CostUSD", cost if ok else 0.0),
                                ("Upstream529", result.upstream_529),
                                ("Failed", 0.0 if ok else 1.0)):
                values[name] = values.get(name, 0.0) + float(value)
        for pool_name, is_open in (getattr(result, "pool_breakers", None) or {}).items():
            values = self.pool_values[(model, pool_name)]
            values["PoolBreakerOpen"] = max(values.get("PoolBreakerOpen", 0.0), float(is_open))

    def flush(self) -> None:
        from aws_lambda_powertools.metrics import EphemeralMetrics, MetricResolution, MetricUnit

        documents = [({DIMENSION: model}, values) for model, values in self.values.items()
                     if model != _TENANT_ONLY]
        if self.tenant is not None:
            documents.append(({TENANT_DIMENSION: self.tenant}, self._per_tenant()))
            documents += [({TENANT_DIMENSION: self.tenant, WINDOW_DIMENSION: window},
                           {"BudgetUsedPercent": used, **self._month_days_left(window)})
                          for window, used in self.windows.items()]
        documents += [(dict(key), {"BudgetUsedPercent": used})
                      for key, used in self.shared_windows.items()]
        for dimensions, values in documents:
            if not values:
                continue
            metrics = EphemeralMetrics(namespace=NAMESPACE)
            metrics.service = None  # else POWERTOOLS_SERVICE_NAME adds a second dimension
            for dimension, value_of_dimension in dimensions.items():
                metrics.add_dimension(name=dimension, value=value_of_dimension)
            for name, value in values.items():
                metrics.add_metric(name=name, unit=getattr(MetricUnit, _UNITS[name]),
                                   value=value, resolution=MetricResolution.High
                                   if name in HIGH_RESOLUTION else MetricResolution.Standard)
            metrics.flush_metrics()
        for (model, pool), values in self.pool_values.items():
            metrics = EphemeralMetrics(namespace=NAMESPACE)
            metrics.service = None
            metrics.add_dimension(name=DIMENSION, value=model)
            metrics.add_dimension(name=POOL_DIMENSION, value=pool)
            for name in POOL_METRICS:
                unit = POOL_ONLY_METRICS.get(name) or METRICS[name]
                metrics.add_metric(name=name, unit=getattr(MetricUnit, unit),
                                   value=values.get(name, 0.0))
            metrics.flush_metrics()
        self.values.clear()
        self.windows.clear()
        self.shared_windows.clear()
        for (tenant, priority), values in self.tenant_values.items():
            metrics = EphemeralMetrics(namespace=NAMESPACE)
            metrics.service = None
            for name, value in zip(CAPACITY_DIMENSIONS, (tenant, priority)):
                metrics.add_dimension(name=name, value=value)
            for name, numbers in values.items():
                for number in numbers:
                    metrics.add_metric(name=name, unit=getattr(MetricUnit, CAPACITY_METRICS[name]),
                                       value=number)
            metrics.flush_metrics()
        self.tenant_values.clear()
        self.pool_values.clear()

    def _month_days_left(self, window: str) -> dict[str, float]:
        """MonthDaysLeft beside the month window's BudgetUsedPercent (days to the next 1st,
        00:00 UTC); nothing for other windows."""
        if window != BUDGET_WINDOWS["usd_per_month"]:
            return {}
        now = self.clock()
        return {MONTH_DAYS_LEFT_METRIC: (next_month_start(now) - now) / 86_400}

    def _per_tenant(self) -> dict[str, float]:
        """TENANT_METRICS summed over the request's models (maxima for _MAXIMA)."""
        out: dict[str, float] = {}
        for values in self.values.values():
            for name, value in values.items():
                if name not in TENANT_METRICS:
                    continue
                out[name] = (max(out.get(name, value), value) if name in _MAXIMA
                             else out.get(name, 0.0) + value)
        return out
