"""The demo report's per-tenant lines, from the agent's EMF with dimension Tenant."""

from __future__ import annotations

import json
import time

from local.cloudwatch.metrics import MetricStore
from local.demo.report import _tenant_lines


def emf(tenant: str, at: float, **values: float) -> str:
    return json.dumps({"_aws": {"Timestamp": int(at * 1000), "CloudWatchMetrics": [{
        "Namespace": "Bulwark", "Dimensions": [["Tenant"]],
        "Metrics": [{"Name": name} for name in values]}]}, "Tenant": tenant, **values})


def test_each_tenant_gets_its_own_figures():
    now = time.time()
    store = MetricStore()
    store.add_emf_lines([
        emf("acme", now, Requests=2, InputTokens=100, OutputTokens=40, CostUSD=0.002,
            Succeeded=2, Latency=800, BudgetUsedPercent=85),
        emf("acme", now + 1, BudgetRefused=3, Failed=1),
        emf("globex", now, Requests=1, CostUSD=0.001, Succeeded=1, Upstream429=1,
            Latency=300)])
    header, acme, globex = _tenant_lines(store, ["acme", "globex"], now - 10, now + 10)
    assert header == "per tenant:"
    assert acme.startswith("  acme: 2 model calls, 100 in / 40 out tokens, $0.0020 "
                           "($0.00100 per success), 1 failed, 0 upstream 429s")
    assert "budget 85% used, 3 refused" in acme
    assert "1 upstream 429s" in globex and "budget none, 0 refused" in globex
