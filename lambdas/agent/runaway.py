"""The runaway breaker's scheduled Lambda: every few minutes, each tenant's and the
deployment's spend rate against its baseline (`guard.runaway`), the throttles written on the
limits config item (`guard.spend.write_limits`: version + 1 and a change record by this
function's role), a `RunawayThrottled` metric (1 per evaluation while throttled, dimension
Tenant) and a `runaway_throttled` log line per throttled scope naming its rate and baseline.

The agent's callers pick the throttles up with the limits item within its refresh interval
and apply them as tenant caps through the bucket item (`guard.shares`): the hot path pays no
extra write. Baselines come from CloudWatch (GetMetricData of CostUSD), so they survive cold
starts and need no state of their own.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Callable, Mapping

from guard.runaway import (DEPLOYMENT, THROTTLED_EVENT, THROTTLED_METRIC, RunawayBreaker,
                           RunawaySettings, runaway_change, scopes)
from guard.spend import LimitsConflict, LimitSet, read_limits_item, write_limits

from .contract import DIMENSION, NAMESPACE, TENANT_DIMENSION, Env, decode_models, decode_tenants


def cap_keys(models) -> list[str]:
    """The cap keys every model's bucket enforces (a throttle caps only those)."""
    keys = None
    for spec in models:
        limits = spec.limits
        have = {k for k in ("rpm", "itpm", "otpm", "tpm") if getattr(limits, k) is not None}
        keys = have if keys is None else keys & have
    return sorted(keys or ())


def cloudwatch_reader(cloudwatch) -> Callable[[list[dict], float, float], dict]:
    """`RunawayBreaker`'s `read` over a boto3 CloudWatch client (GetMetricData, paginated)."""
    from datetime import datetime, timezone

    def read(queries: list[dict], start: float, end: float) -> dict:
        out: dict[str, list] = {}
        for i in range(0, len(queries), 500):  # GetMetricData's most queries per call
            pages = cloudwatch.get_paginator("get_metric_data").paginate(
                MetricDataQueries=queries[i:i + 500],
                StartTime=datetime.fromtimestamp(start, timezone.utc),
                EndTime=datetime.fromtimestamp(end, timezone.utc))
            for page in pages:
                for result in page["MetricDataResults"]:
                    out.setdefault(result["Id"], []).extend(
                        (t.timestamp(), v) for t, v in zip(result["Timestamps"],
                                                           result["Values"]))
        return out

    return read


def evaluate_once(breaker: RunawayBreaker, dynamodb: Any, table: str, deployed: LimitSet, *,
                  who: str, emit: Callable[[str, float], None], log: Callable[..., None]
                  ) -> dict[str, Any]:
    """One evaluation: read the limits item (else the deployed limits), judge every scope,
    write the changed throttles (once more on a concurrent change), emit the metric per
    throttled scope and log each. Returns {"throttled": {scope: guard.runaway.Throttle},
    "verdicts": {scope: guard.runaway.Verdict}}."""
    for attempt in range(2):
        before = read_limits_item(dynamodb, table) or deployed
        after_throttles, verdicts = breaker.evaluate(before.runaway)
        changed = sorted(set(after_throttles) ^ set(before.runaway))
        if not changed:
            break
        after = dataclasses.replace(before, version=before.version + 1,
                                    runaway=after_throttles)
        what = [runaway_change(s, "throttled" if s in after_throttles else "cleared")
                for s in changed]
        try:
            write_limits(dynamodb, table, before, after, who=who, what=what,
                         reason="runaway breaker", at=breaker.clock())
            break
        except LimitsConflict:
            if attempt:
                raise
    for scope, throttle in sorted(after_throttles.items()):
        emit(scope, 1.0)
        log(THROTTLED_EVENT, tenant=scope, rate_usd_per_hour=round(throttle.rate * 60, 6),
            baseline_usd_per_hour=round(throttle.baseline * 60, 6),
            current_usd_per_hour=round(verdicts[scope].rate * 60, 6)
            if scope in verdicts else None, since=throttle.since, caps=dict(throttle.caps))
    return {"throttled": after_throttles, "verdicts": verdicts}


def breaker_from_env(env: Mapping[str, str], read, clock=time.time
                     ) -> tuple[RunawayBreaker, LimitSet]:
    """The breaker and the deployed limits from the function's environment."""
    settings = RunawaySettings(**json.loads(env.get(Env.RUNAWAY) or "{}"))
    models = decode_models(env[Env.MODELS])
    tenants = decode_tenants(env.get(Env.TENANTS, ""))
    deployed = LimitSet.decode(json.loads(env.get(Env.BUDGETS) or "{}"))
    if any(spec.shares for spec in tenants):
        deployed = dataclasses.replace(deployed,
                                       shares={spec.name: spec.share for spec in tenants})
    breaker = RunawayBreaker(settings, scopes([t.name for t in tenants], list(models),
                                              TENANT_DIMENSION, DIMENSION),
                             read=read, namespace=NAMESPACE, cap_keys=cap_keys(models.values()),
                             clock=clock)
    return breaker, deployed


def emf_emitter(namespace: str = NAMESPACE) -> Callable[[str, float], None]:
    """`emit(scope, value)`: one RunawayThrottled datum (dimension Tenant) through
    Powertools' EMF."""
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    def emit(scope: str, value: float) -> None:
        with single_metric(name=THROTTLED_METRIC, unit=MetricUnit.Count, value=value,
                           namespace=namespace,
                           default_dimensions={TENANT_DIMENSION: scope}):
            pass

    return emit


_state: dict[str, Any] = {}


def handler(event, context):
    """The scheduled entry point (EventBridge): one evaluation."""
    import boto3
    from aws_lambda_powertools import Logger

    if not _state:
        logger = Logger(service=os.environ.get(Env.POWERTOOLS_SERVICE_NAME, "bulwark-runaway"))
        breaker, deployed = breaker_from_env(os.environ,
                                             cloudwatch_reader(boto3.client("cloudwatch")))
        dynamodb = boto3.client("dynamodb")
        who = boto3.client("sts").get_caller_identity()["Arn"]
        _state.update(logger=logger, breaker=breaker, deployed=deployed, dynamodb=dynamodb,
                      who=who, emit=emf_emitter())
    logger = _state["logger"]
    result = evaluate_once(
        _state["breaker"], _state["dynamodb"], os.environ[Env.LIMITS_TABLE],
        _state["deployed"], who=_state["who"], emit=_state["emit"],
        log=lambda event_name, **fields: logger.warning(event_name, extra=fields))
    return {"throttled": sorted(result["throttled"]),
            "deployment_throttled": DEPLOYMENT in result["throttled"]}

