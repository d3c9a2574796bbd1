"""The "runaway" scenario: one tenant's agent loops at 10x its usual spend and the breaker
throttles it, on a simulated clock.

    make demo DEMO_ARGS="--scenario runaway"
    python -m local.demo.runaway [--seed 7] [--out out/runaway]

1. History: 14 days of both tenants' `CostUSD`, `Requests`, `InputTokens` and `OutputTokens`
   (dimension Tenant, and CostUSD per Model for the deployment) in 5-minute periods, with a
   daily cycle (night at a third of the 13:00 peak) and noise, written into the store local
   CloudWatch keeps behind its API (`MetricStore`, as `local.demo.ramp` does: moto scans
   every datapoint per period).
2. Live, from 13:00 UTC on day 15: each tenant's agent (its own bucket client and limits
   source, as a Lambda container has, on the local AWS server's DynamoDB) sends its usual
   requests; after `normal_minutes` acme's loop sends 10x as many. The breaker
   (`agent.runaway.evaluate_once`, as the scheduled Lambda runs it) evaluates every minute
   from the same metrics and writes its throttle on the limits item; the agents pick it up
   within their refresh interval and their buckets enforce it as acme's cap.

Before the live part, the breaker judges the last 2 days of the normal history every 30
minutes (no writes): each trip there is a false one. The report gives those, the time from
the loop's start to the throttle and to its first refusal,
each tenant's requests and spend per minute before and after, and the `RunawayThrottled`
datapoints and `runaway_throttled` log lines the breaker emitted.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from pathlib import Path
from types import SimpleNamespace

from agent.contract import DIMENSION, NAMESPACE, TENANT_DIMENSION, TenantSpec
from agent.runaway import evaluate_once
from agent.runtime import follow_shares
from guard import Limits, TokenBucket, ensure_table
from guard.runaway import THROTTLED_METRIC, RunawayBreaker, RunawaySettings, judge, scopes
from guard.spend import LimitSet, LimitsSource
from local.cloudwatch.metrics import Datapoint, MetricStore

REPO_ROOT = Path(__file__).resolve().parents[2]
DAY_S = 86_400
#: a Monday 00:00 UTC: the history starts on a day boundary
EPOCH = 1_798_761_600 // DAY_S * DAY_S
MODEL = "claude-sonnet-4-6"
TENANTS = ("acme", "globex")
INPUT_TOKENS, OUTPUT_TOKENS = 1_000, 200
PRICE_INPUT, PRICE_OUTPUT = 3.0, 15.0  # USD per million tokens
REQUEST_USD = (INPUT_TOKENS * PRICE_INPUT + OUTPUT_TOKENS * PRICE_OUTPUT) / 1e6
#: requests per minute at the 13:00 peak, per tenant
PEAK_RPM = {"acme": 10.0, "globex": 6.0}
LOOP_FACTOR = 10.0
HISTORY_DAYS = 14
START_HOUR = 13


def seasonal_rpm(tenant: str, t: float) -> float:
    """A tenant's usual requests per minute at epoch `t`: a daily cycle peaking at 13:00 UTC,
    a third of the peak at night."""
    hour = (t % DAY_S) / 3600.0
    cycle = (1 + math.cos((hour - START_HOUR) / 24 * 2 * math.pi)) / 2  # 1 at 13:00, 0 at 01:00
    return PEAK_RPM[tenant] * (1 / 3 + 2 / 3 * cycle)


def write_history(store: MetricStore, rng: random.Random, start: float, end: float) -> int:
    """Both tenants' metrics in 5-minute periods over [start, end); returns datapoints."""
    count = 0
    for t in range(int(start), int(end), 300):
        for tenant in TENANTS:
            requests = max(0.0, seasonal_rpm(tenant, t) * 5 * rng.gauss(1.0, 0.15))
            usd = requests * REQUEST_USD
            for name, value, dims in (
                    ("CostUSD", usd, {TENANT_DIMENSION: tenant}),
                    ("CostUSD", usd, {DIMENSION: MODEL}),
                    ("Requests", requests, {TENANT_DIMENSION: tenant}),
                    ("InputTokens", requests * INPUT_TOKENS, {TENANT_DIMENSION: tenant}),
                    ("OutputTokens", requests * OUTPUT_TOKENS, {TENANT_DIMENSION: tenant})):
                store.add(Datapoint.of(t, NAMESPACE, name, value, dims))
                count += 1
    return count


def store_reader(store: MetricStore):
    """`RunawayBreaker`'s `read` over the local store: GetMetricData's MetricStat queries
    (Sum) over [start, end), epoch-aligned periods."""
    def read(queries: list[dict], start: float, end: float) -> dict:
        out = {}
        for q in queries:
            stat = q["MetricStat"]
            metric, period = stat["Metric"], int(stat["Period"])
            dims = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
            aligned = math.floor(start / period) * period
            out[q["Id"]] = [(t, v) for t, v in store.series(
                metric["Namespace"], metric["MetricName"], dims, stat["Stat"], period,
                aligned, end) if v is not None and t >= start - period]
        return out

    return read


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def run(dynamodb, *, seed: int = 7, normal_minutes: int = 3, loop_minutes: int = 8,
        table_prefix: str = "runaway") -> dict:
    """The scenario against `dynamodb` (a client of the local AWS server); returns the
    report's figures."""
    rng = random.Random(seed)
    store = MetricStore()
    history_start = EPOCH
    live_start = EPOCH + HISTORY_DAYS * DAY_S + START_HOUR * 3600
    # 14 days, and the live day's morning: the window before the loop has the usual spend
    write_history(store, rng, history_start, live_start)
    bucket_table, limits_table = f"{table_prefix}-buckets", f"{table_prefix}-limits"
    ensure_table(dynamodb, bucket_table)
    ensure_table(dynamodb, limits_table)
    clock = Clock(live_start)
    specs = tuple(TenantSpec(name=t) for t in TENANTS)
    config = SimpleNamespace(tenant_specs=specs, tenant_shares={})
    limits = Limits(1_000, 450_000, 90_000)
    agents = {}
    for tenant in TENANTS:  # one container per tenant's agent
        bucket = TokenBucket(bucket_table, "anthropic#sonnet", limits, dynamodb, clock=clock)
        source = LimitsSource(limits_table, dynamodb, clock=clock)
        follow_shares(source, config, [bucket])
        agents[tenant] = (bucket, source)
    settings = RunawaySettings()
    breaker = RunawayBreaker(settings, scopes(TENANTS, [MODEL], TENANT_DIMENSION, DIMENSION),
                             read=store_reader(store), namespace=NAMESPACE,
                             cap_keys=("rpm", "itpm", "otpm"), clock=clock)
    log_lines: list[dict] = []

    def emit(scope: str, value: float) -> None:
        store.add(Datapoint.of(clock.now, NAMESPACE, THROTTLED_METRIC, value,
                               {TENANT_DIMENSION: scope}, "Count"))

    def log(event: str, **fields) -> None:
        log_lines.append({"message": event, "at": clock.now, **fields})

    false_trips, checked = normal_history_trips(breaker, clock, live_start, settings)
    loop_at = live_start + normal_minutes * 60
    end = loop_at + loop_minutes * 60
    per_minute = {t: {} for t in TENANTS}  # minute -> [asked, admitted, refused for cap]
    throttled_at = refused_at = None
    events = []
    for minute in range(int((end - live_start) // 60)):
        m0 = live_start + minute * 60
        for tenant in TENANTS:
            rpm = seasonal_rpm(tenant, m0)
            if tenant == "acme" and m0 >= loop_at:
                rpm *= LOOP_FACTOR
            n = max(1, round(rpm))
            events += [(m0 + (i + rng.random()) * 60 / n, tenant) for i in range(n)]
    events.sort()
    next_evaluation = live_start + 60
    for at, tenant in events:
        while next_evaluation <= at:
            clock.now = next_evaluation
            result = evaluate_once(breaker, dynamodb, limits_table, LimitSet(),
                                   who="arn:aws:sts::123456789012:assumed-role/runaway/demo",
                                   emit=emit, log=log)
            if "acme" in result["throttled"] and throttled_at is None:
                throttled_at = clock.now
            next_evaluation += 60
        clock.now = at
        bucket, source = agents[tenant]
        source.current(LimitSet())  # what the agent's budget gate does on every call
        grant = bucket.try_acquire(1, INPUT_TOKENS, OUTPUT_TOKENS, tenant=tenant)
        minute = int((at - live_start) // 60)
        row = per_minute[tenant].setdefault(minute, [0, 0, 0])
        row[0] += 1
        if grant.granted:
            row[1] += 1
            for name, value, dims in (
                    ("CostUSD", REQUEST_USD, {TENANT_DIMENSION: tenant}),
                    ("CostUSD", REQUEST_USD, {DIMENSION: MODEL}),
                    ("Requests", 1.0, {TENANT_DIMENSION: tenant}),
                    ("InputTokens", float(INPUT_TOKENS), {TENANT_DIMENSION: tenant}),
                    ("OutputTokens", float(OUTPUT_TOKENS), {TENANT_DIMENSION: tenant})):
                store.add(Datapoint.of(at, NAMESPACE, name, value, dims))
        elif grant.reason == "tenant_cap":
            row[2] += 1
            if tenant == "acme" and refused_at is None:
                refused_at = at
    return {
        "loop_started_at": loop_at, "throttled_at": throttled_at, "first_refusal_at": refused_at,
        "time_to_throttle_s": None if throttled_at is None else throttled_at - loop_at,
        "time_to_first_refusal_s": None if refused_at is None else refused_at - loop_at,
        "per_minute": {t: {m: tuple(v) for m, v in sorted(rows.items())}
                       for t, rows in per_minute.items()},
        "normal_minutes": normal_minutes,
        "false_trips": false_trips, "false_trip_checks": checked,
        "runaway_throttled_points": len(store.datapoints(NAMESPACE, THROTTLED_METRIC,
                                                         {TENANT_DIMENSION: "acme"})),
        "log": log_lines,
        "settings": {"k": settings.k, "window_minutes": settings.window_minutes,
                     "min_baseline_usd_per_hour": settings.min_baseline_usd_per_hour},
    }


def normal_history_trips(breaker: RunawayBreaker, clock: Clock, until: float,
                         settings: RunawaySettings, days: int = 2, step_s: int = 1800
                         ) -> tuple[list[tuple[float, str]], int]:
    """The breaker's verdicts on the normal history's last `days` before `until`, every
    `step_s` (no writes): the (time, scope) of each trip, and how many checks were made."""
    trips, checked = [], 0
    saved = clock.now
    for t in range(int(until - days * DAY_S), int(until), step_s):
        clock.now = float(t)
        for scope, (rate, base, _) in breaker.measure(float(t)).items():
            checked += 1
            if judge(rate, base, False, settings).action == "trip":
                trips.append((float(t), scope))
    clock.now = saved
    return trips, checked


def render(report: dict) -> str:
    """The report as text."""
    lines = ["Runaway scenario: acme's agent loops at "
             f"{LOOP_FACTOR:g}x its usual rate after {report['normal_minutes']} minutes "
             f"(breaker: k={report['settings']['k']:g}, window "
             f"{report['settings']['window_minutes']} min)", ""]
    ttt = report["time_to_throttle_s"]
    lines.append(f"false trips in the normal history: {len(report['false_trips'])} of "
                 f"{report['false_trip_checks']} checks (every 30 min over its last 2 days, "
                 "each tenant and the deployment)")
    lines.append("time to throttle: " + ("never" if ttt is None else f"{ttt:.0f} s "
                                         "(simulated) from the loop's start"))
    ttr = report["time_to_first_refusal_s"]
    lines.append("first refusal for acme's cap: " + ("none" if ttr is None else
                                                     f"{ttr:.0f} s after the loop's start"))
    lines += ["", "minute  acme asked/admitted/capped  globex asked/admitted/capped"]
    minutes = sorted(set(report["per_minute"]["acme"]) | set(report["per_minute"]["globex"]))
    for m in minutes:
        a = report["per_minute"]["acme"].get(m, (0, 0, 0))
        g = report["per_minute"]["globex"].get(m, (0, 0, 0))
        lines.append(f"{m:6d}  {a[0]:5d} {a[1]:5d} {a[2]:5d}              "
                     f"{g[0]:5d} {g[1]:5d} {g[2]:5d}")
    lines += ["", f"RunawayThrottled datapoints (Tenant=acme): "
                  f"{report['runaway_throttled_points']}"]
    for entry in report["log"][:3]:
        lines.append("log: " + json.dumps(entry, sort_keys=True))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m local.demo.runaway",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", default="runaway")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", default=str(REPO_ROOT / "out" / "runaway"))
    args = p.parse_args(argv)
    from local.fakes.aws_server import LocalAws

    with LocalAws() as aws:
        report = run(aws.client("dynamodb"), seed=args.seed)
    text = render(report)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.txt").write_text(text + "\n")
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(text)
    ok = report["time_to_throttle_s"] is not None and report["time_to_throttle_s"] <= 120
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
