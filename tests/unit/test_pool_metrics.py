"""Metrics of calls served by capacity pools: CostUSD at the pool's prices and a (Model, Pool)
EMF document per pool."""

from __future__ import annotations

import json

import pytest

from agent.contract import Prices
from agent.telemetry import RequestMetrics
from guard import CallResult, Usage


def pooled(pool, cost, status="ok", upstream_529=0):
    return CallResult(status=status, model="sonnet", usage=Usage(1000, 100) if status == "ok"
                      else None, pool=pool, cost_usd=cost if status == "ok" else None,
                      upstream_529=upstream_529)


def documents(capsys):
    """EMF documents printed, with single-value lists unwrapped."""
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    return [{k: v[0] if isinstance(v, list) and len(v) == 1 else v for k, v in d.items()}
            for d in docs]


def test_cost_is_the_pools_and_each_pool_gets_its_own_document(capsys):
    model_prices = Prices.of(3.0, 15.0)
    metrics = RequestMetrics()
    metrics.record_call("sonnet", pooled("bedrock@us-west-2/flex", 0.001), model_prices)
    metrics.record_call("sonnet", pooled("bedrock@us-east-1", 0.0045, upstream_529=1),
                        model_prices)
    metrics.record_call("sonnet", pooled("bedrock@us-east-1", None, status="deferred"),
                        model_prices)
    metrics.flush()
    docs = documents(capsys)
    by_model = [d for d in docs if "Pool" not in d]
    assert by_model[0]["CostUSD"] == pytest.approx(0.001 + 0.0045)  # not the model's list price (0.0045 each)
    by_pool = {d["Pool"]: d for d in docs if "Pool" in d}
    assert by_pool["bedrock@us-west-2/flex"]["Requests"] == 1
    assert by_pool["bedrock@us-west-2/flex"]["CostUSD"] == 0.001
    east = by_pool["bedrock@us-east-1"]
    assert (east["Requests"], east["Upstream529"], east["Failed"]) == (1, 1, 1)
    assert east["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Model", "Pool"]]


def test_calls_without_pools_emit_no_pool_documents(capsys):
    metrics = RequestMetrics()
    metrics.record_call("sonnet", CallResult(status="ok", model="sonnet", usage=Usage(10, 1)),
                        Prices.of(3.0, 15.0))
    metrics.flush()
    assert all("Pool" not in d for d in documents(capsys))


def test_each_pool_of_the_model_reports_whether_the_call_saw_its_breaker_open(capsys):
    """PoolBreakerOpen (dimensions Model, Pool): 1 for a pool whose breaker a call found open,
    0 for the others, also on a call no pool served."""
    metrics = RequestMetrics()
    result = pooled("bedrock@us-west-2", 0.001)
    result.pool_breakers = {"bedrock@us-east-1": True, "bedrock@us-west-2": False}
    deferred = pooled(None, None, status="deferred")
    deferred.pool_breakers = {"bedrock@us-east-1": True, "bedrock@us-west-2": True}
    metrics.record_call("sonnet", result, Prices.of(3.0, 15.0))
    metrics.flush()
    metrics.record_call("sonnet", deferred, Prices.of(3.0, 15.0))
    metrics.flush()
    docs = [d for d in documents(capsys) if "Pool" in d]
    seen = [(d["Pool"], d["PoolBreakerOpen"]) for d in docs]
    assert seen == [("bedrock@us-west-2", 0.0), ("bedrock@us-east-1", 1.0),
                    ("bedrock@us-east-1", 1.0), ("bedrock@us-west-2", 1.0)]
    assert all(d["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Model", "Pool"]]
               for d in docs)
