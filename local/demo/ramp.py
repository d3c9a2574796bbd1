"""The "ramp" scenario: the stack's learned thresholds replayed on synthetic histories.

    make demo DEMO_ARGS="--scenario ramp"
    python -m local.demo.ramp [--template cdk.out/Bulwark-dev.template.json] [--out out/ramp]

Two replays against the synthesized template's alarms (`local.cloudwatch.alarms`), with no
AWS and no Claude: the histories are written straight into a `MetricStore` (the store local
CloudWatch keeps behind its API, `LocalCloudWatch.raw`) as the agent's EMF would put them
(namespace `Bulwark`, dimension `Model`). They skip moto's PutMetricData/GetMetricData: four
weeks of two models are ~180,000 datapoints, and moto scans every datapoint per period.

1. Normal: 28 days of every model's metrics in 5-minute periods, a daily cycle (night at a
   third of the noon peak, which uses `peak_share` of the fullest limit) with noise and a
   0.3% failure rate; the configured tenants share each period's requests, failures,
   throttles and cost at random and see the model's latency (their own per-tenant series,
   as the agent emits them).
   The first 14 days train the bands; every alarm (and composite) is
   replayed over the last 14 and each time one enters ALARM is a false alarm.
2. Ramp: 14 normal days, then the default model's demand grows linearly from its seasonal
   level to 150% of its limits over two hours, minute by minute. The guard admits up to the
   limit and throttles the rest; `QuotaUsedPercent` follows a fluid token bucket (capacity
   one minute of the limit, a tenth-of-a-minute burst on top of the deficit). The report
   gives the minute the 30-minute quota forecast alarm fired, the minute QuotaUsedPercent
   first reached 100, and the lead time between them.

Figures are from a seeded generator (`--seed`): the same seed gives the same report.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

from agent.contract import DIMENSION, NAMESPACE, TENANT_DIMENSION
from local.cloudwatch.alarms import (ALARM, AlarmResult, CompositeResult, evaluate_all,
                                     evaluate_composites, render_report)
from local.cloudwatch.charts import plot_forecast
from local.cloudwatch.history import daily_factor
from local.cloudwatch.metrics import Datapoint, MetricStore

REPO_ROOT = Path(__file__).resolve().parents[2]
DAY_S = 86_400
#: a Monday 00:00 UTC, so the histories start on a day boundary
EPOCH = 1_798_761_600 // DAY_S * DAY_S
FAILURE_RATE = 0.003
BURST_SHARE = 1 / 10  # the part of a minute's demand that arrives at once
PEAK_SHARE = 0.45  # the noon peak's use of the fullest limit


@dataclass(frozen=True)
class Shape:
    """Per request of one model: tokens and price (from the template's own limits)."""

    model_id: str
    rpm: float
    input_per_request: float
    output_per_request: float
    price_input: float  # USD per million tokens
    price_output: float
    #: the configured tenants, who share the model's traffic evenly (dimension Tenant)
    tenants: tuple[str, ...] = ()


@dataclass
class RampReport:
    """What the ramp replay found; times are epoch seconds."""

    model_id: str
    ramp_start: float
    forecast_alarm_at: float | None
    quota_full_at: float | None
    results: list[AlarmResult] = field(default_factory=list)
    composites: list[CompositeResult] = field(default_factory=list)
    store: MetricStore | None = None

    def result(self, kind: str) -> AlarmResult | None:
        """The ramping model's alarm whose name holds "-<kind>-" ("QuotaForecast", ...)."""
        return next((r for r in self.results if f"-{kind}-{self.model_id}-" in r.alarm.name),
                    None)

    @property
    def lead_minutes(self) -> float | None:
        if self.forecast_alarm_at is None or self.quota_full_at is None:
            return None
        return (self.quota_full_at - self.forecast_alarm_at) / 60


@dataclass
class NormalReport:
    """False alarms over the measured normal days: alarm name -> times it entered ALARM."""

    days: int
    false_alarms: dict[str, int]
    results: list[AlarmResult] = field(default_factory=list)
    composites: list[CompositeResult] = field(default_factory=list)


def shapes_from_template(template: dict) -> list[Shape]:
    """Each model's limits and prices, as the agent Lambda's environment in the template
    carries them (`agent.contract.decode_models`)."""
    from agent.contract import decode_models, decode_tenants

    for resource in template["Resources"].values():
        env = (resource.get("Properties", {}).get("Environment") or {}).get("Variables") or {}
        if resource.get("Type") == "AWS::Lambda::Function" and "MODELS" in env:
            specs = decode_models(env["MODELS"])
            raw = env.get("TENANTS")
            tenants = tuple(t.name for t in decode_tenants(raw)) \
                if isinstance(raw, str) and raw.strip() else ()
            break
    else:
        raise ValueError("the template has no agent function with MODELS")
    shapes = []
    for spec in specs.values():
        limits, prices = spec.limits, spec.prices
        rpm = limits.rpm or 60.0
        if limits.tpm:  # input plus output x burndown fill 90% of tpm at full rpm
            output = 0.1 * limits.tpm / rpm / limits.output_burndown
            inp = 0.8 * limits.tpm / rpm
        else:
            inp = 0.9 * (limits.itpm or 1e9) / rpm
            output = 0.8 * (limits.otpm or 1e9) / rpm
        shapes.append(Shape(spec.model_id, rpm, inp, output,
                            prices.input if prices else 3.0, prices.output if prices else 15.0,
                            tenants))
    return shapes


def _period_points(shape: Shape, t: float, minutes: float, share: float, admitted: float,
                   quota_used: float, rng: random.Random) -> list[Datapoint]:
    """One period's datapoints: `share` of the limit demanded per minute, `admitted` of it
    granted (the rest throttled locally)."""
    requests = round(admitted * shape.rpm * minutes)
    throttled = round(max(0.0, share - admitted) * shape.rpm * minutes)
    failed = sum(rng.random() < FAILURE_RATE for _ in range(requests))
    inp = requests * shape.input_per_request * rng.gauss(1, 0.03)
    out = requests * shape.output_per_request * rng.gauss(1, 0.03)
    cost = (inp * shape.price_input + out * shape.price_output) / 1e6
    latency = 4000 * (0.9 + 0.2 * share) * math.exp(rng.gauss(0, 0.08))
    values = {"Requests": requests, "Succeeded": requests - failed, "Failed": failed,
              "InputTokens": inp, "OutputTokens": out, "CacheWriteTokens": 0,
              "CostUSD": cost, "LocalThrottles": throttled, "Upstream429": 0,
              "QuotaUsedPercent": quota_used}
    stamp = t + 1
    points = [Datapoint.of(stamp, NAMESPACE, name, value, {DIMENSION: shape.model_id})
              for name, value in values.items()]
    if requests:
        points.append(Datapoint.of(stamp, NAMESPACE, "Latency", latency,
                                   {DIMENSION: shape.model_id}))
    return points + _tenant_points(shape, t, requests, failed, throttled, cost, latency)


def _tenant_points(shape: Shape, t: float, requests: int, failed: int, throttled: int,
                   cost: float, latency: float) -> list[Datapoint]:
    """The period's requests, failures and throttles dealt to the tenants at random (each
    request, failure and throttle to one tenant, evenly), with the cost pro rata, no
    upstream 429 and the model's latency for a tenant with requests, as the agent emits
    them per tenant. A generator of its own per period and model, so the model series are
    the same with or without tenants."""
    if not shape.tenants:
        return []
    deal = random.Random(f"{shape.model_id}:{t}")
    n = len(shape.tenants)
    owners = [deal.randrange(n) for _ in range(requests)]  # the first `failed` ones failed
    throttles = [deal.randrange(n) for _ in range(throttled)]
    points = []
    for i, tenant in enumerate(shape.tenants):
        mine = owners.count(i)
        lost = owners[:failed].count(i)
        values = {"Requests": mine, "Succeeded": mine - lost, "Failed": lost,
                  "LocalThrottles": throttles.count(i),
                  "CostUSD": cost * mine / requests if requests else 0.0, "Upstream429": 0}
        if mine:
            values["Latency"] = latency
        points += [Datapoint.of(t + 1, NAMESPACE, name, value, {TENANT_DIMENSION: tenant})
                   for name, value in values.items()]
    return points


def normal_history(store: MetricStore, shapes: list[Shape], start: float, end: float,
                   rng: random.Random, peak_share: float = PEAK_SHARE) -> None:
    """Normal traffic in 5-minute periods over [start, end) for every model."""
    for shape in shapes:
        for k in range(int(end - start) // 300):
            t = start + k * 300
            share = peak_share * daily_factor(t) * rng.gauss(1, 0.05)
            quota = min(100.0, 100 * share * BURST_SHARE * rng.uniform(0.8, 1.2))
            for point in _period_points(shape, t, 5, share, share, quota, rng):
                store.add(point)


def ramp(store: MetricStore, shape: Shape, start: float, minutes: int, to_share: float,
         rng: random.Random, peak_share: float = PEAK_SHARE) -> float | None:
    """Demand of `shape` grows linearly from its seasonal level to `to_share` of its limits
    over `minutes`, minute by minute; returns when QuotaUsedPercent first reached 100."""
    first = peak_share * daily_factor(start)
    deficit = 0.0  # minutes of the limit the bucket owes (a fluid token bucket)
    full_at = None
    for minute in range(minutes):
        t = start + minute * 60
        share = (first + (to_share - first) * minute / minutes) * rng.gauss(1, 0.02)
        deficit = min(1.0, max(0.0, deficit + share - 1.0))
        admitted = share if deficit < 1.0 else 1.0
        quota = min(100.0, 100 * (deficit + share * BURST_SHARE))
        if quota >= 100 and full_at is None:
            full_at = t
        for point in _period_points(shape, t, 1, share, admitted, quota, rng):
            store.add(point)
    return full_at


def alarm_entries(states: list[tuple[float, str]]) -> int:
    """How many times a state sequence enters ALARM."""
    count, previous = 0, None
    for _, state in states:
        if state == ALARM and previous != ALARM:
            count += 1
        previous = state
    return count


def replay_normal(template: dict, *, days: int = 14, seed: int = 1) -> NormalReport:
    """14 training days, then `days` measured: every alarm's entries into ALARM."""
    rng = random.Random(seed)
    shapes = shapes_from_template(template)
    store = MetricStore()
    normal_history(store, shapes, EPOCH, EPOCH + (14 + days) * DAY_S, rng)
    start, end = EPOCH + 14 * DAY_S, EPOCH + (14 + days) * DAY_S
    results = evaluate_all(template, store, start, end)
    composites = evaluate_composites(template, results)
    alarms = {r.alarm.name: alarm_entries(r.states) for r in results}
    alarms.update({c.composite.name: alarm_entries(c.states) for c in composites})
    return NormalReport(days, {k: v for k, v in alarms.items() if v}, results, composites)


def replay_ramp(template: dict, *, model_id: str | None = None, minutes: int = 120,
                to_share: float = 1.5, seed: int = 1) -> RampReport:
    """14 normal days, then a two-hour ramp of one model (the first in the template by
    default) starting at 09:00 UTC; the forecast alarm's first ALARM and QuotaUsedPercent's
    first 100."""
    rng = random.Random(seed)
    shapes = shapes_from_template(template)
    shape = next((s for s in shapes if s.model_id == (model_id or s.model_id)), None)
    if shape is None:
        raise ValueError(f"model {model_id!r} is not in the template "
                         f"({', '.join(s.model_id for s in shapes)})")
    store = MetricStore()
    ramp_start = EPOCH + 14 * DAY_S + 9 * 3600
    normal_history(store, shapes, EPOCH, ramp_start, rng)
    normal_history(store, [s for s in shapes if s is not shape], ramp_start,
                   EPOCH + 15 * DAY_S, rng)
    full_at = ramp(store, shape, ramp_start, minutes, to_share, rng)
    results = evaluate_all(template, store, ramp_start - 3600, ramp_start + minutes * 60)
    report = RampReport(shape.model_id, ramp_start, None, full_at, results,
                        evaluate_composites(template, results), store)
    forecast = report.result("QuotaForecast")
    if forecast is None:
        raise ValueError("the template has no QuotaForecast alarm for " + shape.model_id)
    report.forecast_alarm_at = forecast.first_alarm_at
    return report


def _clock(t: float | None, since: float) -> str:
    return "never" if t is None else f"+{(t - since) / 60:.0f} min"


def render(normal: NormalReport, ramped: RampReport) -> str:
    """The scenario's text report."""
    line = ramped.result("QuotaForecast").alarm.threshold
    lines = [
        f"Ramp: {ramped.model_id} from its 09:00 level to 150% of its limits in 2 h",
        "  " + f"quota forecast alarm (at {line:g}%):".ljust(34)
        + _clock(ramped.forecast_alarm_at, ramped.ramp_start),
        "  " + "QuotaUsedPercent reached 100:".ljust(34)
        + _clock(ramped.quota_full_at, ramped.ramp_start),
        "  lead time: " + ("n/a" if ramped.lead_minutes is None
                           else f"{ramped.lead_minutes:.0f} min"),
        "",
        f"Normal history: {normal.days} days after 14 days of training, "
        f"{len(normal.results)} alarms and {len(normal.composites)} composite alarms replayed",
        f"  false alarms: {sum(normal.false_alarms.values())}"
        + "".join(f"\n    {name}: {count}" for name, count in
                  sorted(normal.false_alarms.items())),
        "",
        "Alarms during the ramp:",
        render_report(ramped.results),
    ]
    return "\n".join(lines)


def load_template(path: Path | None) -> dict:
    """The template at `path`, or the app's, synthesized (about a minute)."""
    if path is not None:
        return json.loads(path.read_text())
    sys.path.insert(0, str(REPO_ROOT))
    import app

    cdk_app, stack = app.build_app({})
    return cdk_app.synth().get_stack_by_name(stack.stack_name).template


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", choices=["ramp"], default="ramp")
    parser.add_argument("--template", type=Path, default=None,
                        help="a synthesized template (default: synthesize the app)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "out" / "ramp")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--days", type=int, default=14, help="normal days to measure")
    args = parser.parse_args(argv)
    template = load_template(args.template)
    normal = replay_normal(template, days=args.days, seed=args.seed)
    ramped = replay_ramp(template, seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    chart = plot_forecast(ramped.store, ramped.result("QuotaForecast"),
                          ramped.result("LocalThrottleRateBand"), ramped.model_id,
                          ramped.ramp_start - 3600, ramped.ramp_start + 120 * 60,
                          args.out / "ramp.png", origin=ramped.ramp_start)
    text = render(normal, ramped) + f"\nchart: {chart}"
    (args.out / "report.txt").write_text(text + "\n")
    print(text)
    print(f"\nreport: {args.out / 'report.txt'}")
    return 0 if ramped.lead_minutes is not None and ramped.lead_minutes >= 20 else 1


if __name__ == "__main__":
    sys.exit(main())
