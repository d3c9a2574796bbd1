"""The "runaway" scenario: one tenant's agent loops at 10x its usual spend and the breaker
throttles it, on a simulated clock. (One module of a little over 450 lines: its steps below
run in order and share the run's store and clock; the pieces other scenarios reuse live in
`local.cloudwatch` and `local.demo.ramp`.)

    make demo DEMO_ARGS="--scenario runaway"
    python -m local.demo.runaway [--seed 7] [--template cdk.out/Bulwark-dev.template.json]
                                 [--out out/runaway]

1. History: 14 days of both tenants' `CostUSD`, `Requests`, `Succeeded`, `InputTokens` and
   `OutputTokens` (dimension Tenant, and CostUSD per Model for the deployment) in 5-minute
   periods, with a daily cycle (night at a third of the 13:00 peak) and noise, written into the store local
   CloudWatch keeps behind its API (`MetricStore`, as `local.demo.ramp` does: moto scans
   every datapoint per period).
2. Live, from 13:45 UTC on day 15: each tenant's agent (its own bucket client and limits
   source, as a Lambda container has, on the local AWS server's DynamoDB) sends its usual
   requests; after `normal_minutes` acme's loop sends 10x as many. The breaker
   (`agent.runaway.evaluate_once`, as the scheduled Lambda runs it) evaluates every minute
   from the same metrics and writes its throttle on the limits item; the agents pick it up
   within their refresh interval and their buckets enforce it as acme's cap. Each refusal
   is a `LocalThrottles` datapoint of the tenant, as the agent emits it.
3. Alarms: the stack's per-tenant alarms, read from the synthesized template
   (`Tenant<Kind>-<tenant>-Warning` bands and `RunawayThrottled-<tenant>`), replayed by the
   local evaluation (`local.cloudwatch.alarms`, bands from `local.cloudwatch.bands`) over the
   live part's complete periods, and over the normal history's last 2 days (each entry into
   ALARM there is a false alarm). The live part runs until 14:01 so the hourly cost band's
   13:00 hour closes inside the run.

Before the live part, the breaker judges the last 2 days of the normal history every 30
minutes (no writes): each trip there is a false one. The report gives those, the time from
the loop's start to the throttle and to its first refusal, each tenant's requests per
minute before and after, the `RunawayThrottled` datapoints and `runaway_throttled` log lines
the breaker emitted, and per tenant alarm when it entered ALARM (simulated minutes after the
loop's start), its value against its band or threshold at the breach, and its false alarms.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from agent.contract import DIMENSION, NAMESPACE, TENANT_DIMENSION, TenantSpec
from agent.runaway import evaluate_once
from agent.runtime import follow_shares
from guard import Limits, TokenBucket, ensure_table
from guard.runaway import THROTTLED_METRIC, RunawayBreaker, RunawaySettings, judge, scopes
from guard.spend import LimitSet, LimitsSource
from local.cloudwatch.alarm_template import AlarmDefinition, alarms_from_template
from local.cloudwatch.alarms import evaluate
from local.cloudwatch.metrics import Datapoint, MetricStore
from local.demo.ramp import alarm_entries, load_template

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
#: the learned band on a tenant's cost per hour (`stacks.anomaly.TenantBands`)
COST_BAND = "TenantCostPerHourBand"


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
                    ("Succeeded", requests, {TENANT_DIMENSION: tenant}),
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


def run(dynamodb, *, seed: int = 7, normal_minutes: int = 3, loop_minutes: int = 13,
        start_minute: int = 45, table_prefix: str = "runaway",
        store: MetricStore | None = None) -> dict:
    """The scenario against `dynamodb` (a client of the local AWS server); returns the
    report's figures. `store` (default: a new one) receives the history and the live
    part's metrics; the live part starts `start_minute` minutes after 13:00."""
    rng = random.Random(seed)
    store = MetricStore() if store is None else store
    history_start = EPOCH
    live_start = EPOCH + HISTORY_DAYS * DAY_S + START_HOUR * 3600 + start_minute * 60
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
                    ("Succeeded", 1.0, {TENANT_DIMENSION: tenant}),
                    ("InputTokens", float(INPUT_TOKENS), {TENANT_DIMENSION: tenant}),
                    ("OutputTokens", float(OUTPUT_TOKENS), {TENANT_DIMENSION: tenant})):
                store.add(Datapoint.of(at, NAMESPACE, name, value, dims))
        elif grant.reason == "tenant_cap":
            row[2] += 1
            for dims in ({TENANT_DIMENSION: tenant}, {DIMENSION: MODEL}):
                store.add(Datapoint.of(at, NAMESPACE, "LocalThrottles", 1.0, dims, "Count"))
            if tenant == "acme" and refused_at is None:
                refused_at = at
    return {
        "live_started_at": live_start, "ended_at": end,
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


#: a per-tenant alarm of the stack: "<prefix>-Tenant<Kind>-<tenant>-Warning" (the learned
#: bands, TenantWait) or "<prefix>-RunawayThrottled-<tenant>-Warning"
TENANT_ALARM = re.compile(r"-(?P<kind>Tenant[A-Za-z0-9]+|" + THROTTLED_METRIC
                          + r")-(?P<tenant>.+)-Warning$")
#: days of the normal history, before the live part, whose alarm entries are false alarms
FALSE_ALARM_DAYS = 2


def tenant_alarms(template: dict) -> list[tuple[str, str, AlarmDefinition]]:
    """(tenant, kind, alarm) for each alarm of the template on one of the scenario's tenants;
    ValueError when the template has no RunawayThrottled or cost-band alarm for each."""
    found = []
    for alarm in alarms_from_template(template):
        match = TENANT_ALARM.search(alarm.name)
        if match and match["tenant"] in TENANTS:
            found.append((match["tenant"], match["kind"], alarm))
    for tenant in TENANTS:
        kinds = {kind for t, kind, _ in found if t == tenant}
        missing = {THROTTLED_METRIC, COST_BAND} - kinds
        if missing:
            raise ValueError(f"the template has no {', '.join(sorted(missing))} alarm for "
                             f"tenant {tenant!r}: synthesize it with the tenants "
                             f"{', '.join(TENANTS)} configured (cdk.json `tenants`)")
    return found


def replay_alarms(template: dict, store: MetricStore, report: dict) -> list[dict]:
    """The template's per-tenant alarms replayed over `store` after `run` (its `report`):
    one entry per alarm with the minutes from the loop's start to its first ALARM (None:
    it stayed out of ALARM), its final state, the value and band (USD per hour, percent,
    ...; None for a threshold alarm) at its first breaching period (else at its last
    period in the run), and its entries into ALARM over the normal history's last
    `FALSE_ALARM_DAYS` days. Only complete periods are judged: an alarm of period P is
    evaluated over the periods that end by the run's end."""
    live, end, loop = report["live_started_at"], report["ended_at"], report["loop_started_at"]
    out = []
    for tenant, kind, alarm in tenant_alarms(template):
        period = alarm.period_s
        done = math.floor(end / period) * period  # the last complete period ends here
        ran = evaluate(alarm, store, live, done)
        normal = evaluate(alarm, store, live - FALSE_ALARM_DAYS * DAY_S,
                          math.floor(live / period) * period)
        breached = [i for i, b in enumerate(ran.breached) if b]
        at = breached[0] if breached else len(ran.values) - 1
        period_start, value = ran.values[at] if ran.values else (None, None)
        band = ran.bands[at] if ran.bands and at >= 0 else None
        out.append({
            "tenant": tenant, "kind": kind, "name": alarm.name, "period_s": period,
            "threshold": None if alarm.threshold_metric_id else alarm.threshold,
            "operator": alarm.operator, "fired": ran.fired,
            "alarm_at": ran.first_alarm_at,
            "alarm_after_loop_min": None if ran.first_alarm_at is None
            else (ran.first_alarm_at - loop) / 60,
            "final_state": ran.final_state, "breached": bool(breached),
            "period_start": period_start, "value": value,
            "band": None if band is None else [band[0], band[1]],
            "false_alarms": alarm_entries(normal.states)})
    return out


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
    if report.get("alarms") is not None:
        lines += ["", *render_alarms(report)]
    return "\n".join(lines)


def _hhmm(t: float | None) -> str:
    return "-" if t is None else time.strftime("%H:%M", time.gmtime(t))


def render_alarms(report: dict) -> list[str]:
    """The alarm part of the report: per tenant alarm when it entered ALARM (simulated
    minutes after the loop's start), its value against its band or threshold at the breach
    (else at its last period), and the false alarms of the normal history."""
    alarms = report["alarms"]
    lines = [f"Alarms of the template ({report.get('template', 'synthesized')}), replayed "
             f"over the run's complete periods ({_hhmm(report['live_started_at'])} to "
             f"{_hhmm(report['ended_at'])} UTC; loop from {_hhmm(report['loop_started_at'])}):"]
    width = max(len(a["name"]) for a in alarms)
    for a in sorted(alarms, key=lambda a: (a["tenant"] != "acme", a["tenant"], a["kind"])):
        when = ("entered ALARM at +" + f"{a['alarm_after_loop_min']:.0f} min"
                if a["fired"] else f"stayed {a['final_state']}")
        if a["value"] is None:
            what = "no data"
        elif a["band"] is not None:
            what = (f"{a['value']:.4g} vs band {a['band'][0]:.4g}..{a['band'][1]:.4g}")
        else:
            what = f"{a['value']:.4g} {a['operator']} {a['threshold']:g}"
        where = "breach" if a["breached"] else "last period"
        span = f"{_hhmm(a['period_start'])}+{a['period_s'] // 60} min"
        lines.append(f"  {a['name'].ljust(width)}  {when:<26}  {where} {span}: {what}")
    others = [a for a in alarms if a["tenant"] != "acme"]
    lines.append("other tenant: " + ("all alarms stayed OK" if not any(
        a["fired"] for a in others) else "ALARM on " + ", ".join(
        a["name"] for a in others if a["fired"])))
    false = sum(a["false_alarms"] for a in alarms)
    lines.append(f"false alarms over the normal history (its last {FALSE_ALARM_DAYS} days, "
                 f"{len(alarms)} alarms): {false}" + "".join(
                     f"\n    {a['name']}: {a['false_alarms']}" for a in alarms
                     if a["false_alarms"]))
    return lines


#: hours of the normal history the dashboard page draws before the live part, on top of the
#: day a drawn band learns from (`local.cloudwatch.api`: the same time on the previous day)
PAGE_HOURS = 3
#: the metric whose band is hourly (`TenantCostPerHourBand`): its older history goes to the
#: page as hourly sums, so that band learns from the whole history as the report's does
HOURLY_HISTORY = "CostUSD"


def page_points(store: MetricStore, report: dict) -> list[Datapoint]:
    """The store's datapoints the dashboard page needs, with the kit's units
    (`agent.contract.METRICS`): everything from a day plus `PAGE_HOURS` before the live part
    to its end, and before that `HOURLY_HISTORY` as one sum per hour (what an hourly Sum
    reads; local AWS scans every datapoint per period, so the rest of the fortnight at
    5-minute resolution would make the page slow)."""
    from agent.contract import METRICS

    since = report["live_started_at"] - DAY_S - PAGE_HOURS * 3600
    since -= since % 3600
    units = {**METRICS, THROTTLED_METRIC: "Count"}
    points = []
    for namespace, name in sorted(store.names()):
        unit = units.get(name, "None")
        for dims in store.dimension_sets(namespace, name):
            hours: dict[float, float] = {}
            for t, v in store.datapoints(namespace, name, dims):
                if since <= t < report["ended_at"]:
                    points.append(Datapoint.of(t, namespace, name, v, dims, unit))
                elif t < since and name == HOURLY_HISTORY:
                    hour = t - t % 3600 + 1
                    hours[hour] = hours.get(hour, 0.0) + v
            points += [Datapoint.of(t, namespace, name, v, dims, unit)
                       for t, v in hours.items()]
    return points


def page_view(template: dict, store: MetricStore, report: dict, cloudwatch):
    """The dashboard page's view (`local.cloudwatch.dashboard.DashboardView`) of the run:
    `page_points` put into `cloudwatch` (a `LocalCloudWatch`), drawn from `PAGE_HOURS` hours
    before the live part to its end."""
    from local.cloudwatch.dashboard import DashboardView
    from local.cloudwatch.references import resolver

    cloudwatch.put(page_points(store, report))
    window = (report["live_started_at"] - PAGE_HOURS * 3600, report["ended_at"])
    return DashboardView(template, cloudwatch, lambda: window, resolver({}))


def save_page(out: Path, template: dict, store: MetricStore, report: dict, aws) -> str:
    """The run saved for the dashboard page (`run.json` with the template and the page's
    datapoints as the run's own, an empty `emf.jsonl`: `python -m local.cloudwatch.dashboard
    --run out` replays it) and a screenshot (`dashboard.png`) when Chromium is installed.
    Returns a line for the report."""
    from local.cloudwatch.api import LocalCloudWatch
    from local.cloudwatch.dashboard import save_run, screenshot_note

    view = page_view(template, store, report, LocalCloudWatch(aws.client("cloudwatch")))
    start, end = view.window()
    (out / "emf.jsonl").write_text("")
    save_run(out, template=template, resources={}, start=start, end=end,
             extra=page_points(store, report))
    data = view.data()
    fired = sorted(a["name"] for a in data["alarms"] if a["fired"])
    text = (f"dashboard page: {data['run']['widgets']} widgets, {data['run']['with_data']} "
            f"with data; alarms in ALARM on the page: {', '.join(fired) or 'none'}")
    return text + screenshot_note(view, out / "dashboard.png") + (
        f"; open it: python -m local.cloudwatch.dashboard --run {out}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m local.demo.runaway",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", default="runaway")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--template", type=Path, default=None,
                   help="a synthesized template (default: synthesize the app, about a minute)")
    p.add_argument("--out", default=str(REPO_ROOT / "out" / "runaway"))
    args = p.parse_args(argv)
    from local.fakes.aws_server import LocalAws

    template = load_template(args.template)
    store = MetricStore()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with LocalAws() as aws:
        report = run(aws.client("dynamodb"), seed=args.seed, store=store)
        report["template"] = str(args.template) if args.template else "the app, synthesized"
        report["alarms"] = replay_alarms(template, store, report)
        page = save_page(out, template, store, report, aws)
    text = render(report) + "\n" + page
    (out / "report.txt").write_text(text + "\n")
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(text)
    return 0 if verdict(report) else 1


def verdict(report: dict) -> bool:
    """Whether the run shows what the scenario promises: acme throttled within 2 minutes
    and its RunawayThrottled alarm in ALARM, no alarm of the other tenant, no false alarm."""
    ttt = report["time_to_throttle_s"]
    alarms = report.get("alarms") or []
    runaway = [a for a in alarms if a["tenant"] == "acme" and a["kind"] == THROTTLED_METRIC]
    return (ttt is not None and ttt <= 120 and all(a["fired"] for a in runaway)
            and not any(a["fired"] for a in alarms if a["tenant"] != "acme")
            and not any(a["false_alarms"] for a in alarms))


if __name__ == "__main__":
    sys.exit(main())
