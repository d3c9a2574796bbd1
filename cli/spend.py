"""Per-tenant figures from CloudWatch: requests, tokens, cost, cost per success, failures,
429s, latency p99 and budget use, per UTC day.

    python -m cli.spend --stack STACK --tenant acme [--days 7] [--region R]
                        [--endpoint-url URL] [--json]

Reads the agent's per-tenant metrics (namespace `Bulwark`, dimension `Tenant`; docs/monitoring.md,
"Metrics") with one GetMetricData call per run, never the tables: the numbers are what the
dashboard and the alarms see. `--stack` checks the stack exists and that the tenant is one of
its configured tenants (only those have metrics). The last line projects the month-end spend:
this month's spend so far plus the last 24 hours' spend for each day left.

Exit status: 0; 2 for a bad option, an unknown tenant or an AWS problem (message on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable


from agent.contract import NAMESPACE, TENANT_DIMENSION
from cli import aws
from cli.limits import function_environment, tenant_names
from cli.table import aligned
from stacks import outputs

DAY_S = 86_400
#: column -> (metric, statistic)
FIGURES = {
    "requests": ("Requests", "Sum"), "input_tokens": ("InputTokens", "Sum"),
    "output_tokens": ("OutputTokens", "Sum"), "cost_usd": ("CostUSD", "Sum"),
    "succeeded": ("Succeeded", "Sum"), "failed": ("Failed", "Sum"),
    "upstream_429": ("Upstream429", "Sum"), "latency_p99_ms": ("Latency", "p99"),
    "budget_used_percent": ("BudgetUsedPercent", "Maximum"),
    "budget_refused": ("BudgetRefused", "Sum"),
}


class SpendError(Exception):
    """A problem the operator must fix; main() prints it (status 2)."""


def _day_start(t: datetime) -> datetime:
    return t.replace(hour=0, minute=0, second=0, microsecond=0)


def figures(cloudwatch: Any, tenant: str, days: int, now: datetime) -> dict[str, Any]:
    """Per UTC day (the last `days`, today included) every FIGURES column for `tenant`, the
    totals, cost per success and the projected month-end spend (USD)."""
    end = now
    start = _day_start(now) - timedelta(days=days - 1)
    month_start = _day_start(now).replace(day=1)
    queries = [{"Id": f"q{i}", "ReturnData": True, "MetricStat": {
        "Metric": {"Namespace": NAMESPACE, "MetricName": metric,
                   "Dimensions": [{"Name": TENANT_DIMENSION, "Value": tenant}]},
        "Period": DAY_S, "Stat": stat}} for i, (metric, stat) in enumerate(FIGURES.values())]
    series: dict[str, dict[str, float]] = {}
    token = None
    while True:
        page = cloudwatch.get_metric_data(
            MetricDataQueries=queries, StartTime=min(start, month_start), EndTime=end,
            ScanBy="TimestampAscending", **({"NextToken": token} if token else {}))
        for result in page.get("MetricDataResults", []):
            by_day = series.setdefault(result["Id"], {})
            for stamp, value in zip(result.get("Timestamps", []), result.get("Values", [])):
                by_day[stamp.astimezone(timezone.utc).strftime("%Y-%m-%d")] = value
        token = page.get("NextToken")
        if not token:
            break
    names = list(FIGURES)
    rows = []
    for offset in range(days):
        day = (start + timedelta(days=offset)).strftime("%Y-%m-%d")
        rows.append({"day": day, **{name: series.get(f"q{i}", {}).get(day)
                                    for i, name in enumerate(names)}})
    totals = {name: sum(r[name] or 0.0 for r in rows) for name in names
              if FIGURES[name][1] == "Sum"}
    totals["latency_p99_ms"] = max((r["latency_p99_ms"] for r in rows
                                    if r["latency_p99_ms"] is not None), default=None)
    totals["cost_per_success_usd"] = (totals["cost_usd"] / totals["succeeded"]
                                      if totals["succeeded"] else None)
    cost = series.get(f"q{names.index('cost_usd')}", {})
    month_so_far = sum(v for day, v in cost.items() if day >= month_start.strftime("%Y-%m-%d"))
    next_month = (month_start + timedelta(days=32)).replace(day=1)
    days_left = (next_month - now).total_seconds() / DAY_S
    today = cost.get(now.strftime("%Y-%m-%d"), 0.0)
    elapsed_today = max((now - _day_start(now)).total_seconds() / DAY_S, 1 / 24)
    rate = today / elapsed_today  # USD per day at today's rate
    return {"tenant": tenant, "days": rows, "totals": totals,
            "month_to_date_usd": month_so_far,
            "projected_month_end_usd": month_so_far + rate * days_left}


def render(report: dict[str, Any]) -> str:
    def cell(value: Any, digits: int = 0) -> str:
        if value is None:
            return "-"
        return f"{value:,.{digits}f}"

    header = ["day", "requests", "in tok", "out tok", "cost $", "$/success", "failed", "429",
              "p99 ms", "budget %", "refused"]
    rows = [header]
    for r in report["days"] + [{"day": "total", **report["totals"]}]:
        per_success = (r["cost_usd"] / r["succeeded"]
                       if r.get("cost_usd") is not None and r.get("succeeded") else None)
        rows.append([r["day"], cell(r.get("requests")), cell(r.get("input_tokens")),
                     cell(r.get("output_tokens")), cell(r.get("cost_usd"), 4),
                     cell(per_success, 5), cell(r.get("failed")), cell(r.get("upstream_429")),
                     cell(r.get("latency_p99_ms")), cell(r.get("budget_used_percent"), 1),
                     cell(r.get("budget_refused"))])
    return "\n".join([f"tenant {report['tenant']}", *aligned(rows),
                      f"month to date ${report['month_to_date_usd']:.4f}; projected month-end "
                      f"${report['projected_month_end_usd']:.4f} at today's rate"])


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cli.spend", description=__doc__.split("\n\n")[0])
    p.add_argument("--stack", required=True)
    p.add_argument("--tenant", required=True)
    p.add_argument("--days", type=int, default=7)
    aws.add_location_arguments(p)
    p.add_argument("--json", action="store_true")
    return p


def main(argv: list[str] | None = None, *, clients: dict[str, Any] | None = None,
         now: Callable[[], float] = time.time, out=None, err=None) -> int:
    """Run the command; returns the exit status. `clients` ({"cloudformation", "cloudwatch",
    "lambda"}) replaces the boto3 clients."""
    out, err = out or sys.stdout, err or sys.stderr
    args = parser().parse_args(argv)
    try:
        if not 1 <= args.days <= 455:
            raise SpendError(f"--days must be 1-455 (CloudWatch keeps daily data 455 days), "
                             f"got {args.days}")
        clients = clients or aws.clients(("cloudformation", "cloudwatch", "lambda"),
                                         region=args.region, endpoint_url=args.endpoint_url)
        found = outputs.stack_outputs(clients["cloudformation"], args.stack,
                                      need=(outputs.FUNCTION_NAME,))
        tenants = tenant_names(function_environment(clients, found))
        if args.tenant not in tenants:
            raise SpendError(f"tenant {args.tenant!r} is not configured in {args.stack} "
                             f"(tenants: {', '.join(tenants)}): only those have metrics")
        report = figures(clients["cloudwatch"], args.tenant, args.days,
                         datetime.fromtimestamp(now(), timezone.utc))
        print(json.dumps(report, indent=2) if args.json else render(report), file=out)
        return 0
    except (SpendError, outputs.StackOutputsError, *aws.ERRORS) as problem:
        return aws.failed("cli.spend", problem, err)


if __name__ == "__main__":
    sys.exit(main())
