"""The command line of `python -m cli.audit`: options, the sources it reads, the table or
JSON it prints."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable


from cli import aws
from cli.table import aligned, cut

from .account import account_rows
from .local import local_rows
from .rows import (DEFAULT_MINUTES, DENIED, DOCS_PREFIX, AuditError, Row, filter_rows,
                   format_time, time_range)

#: Columns wider than this are cut in the table (the JSON output is never cut).
MAX_CELL = {"target": 96, "principal": 48}


def summary(rows: list[Row]) -> str:
    if not rows:
        return "no agent actions in range"
    denied = sum(r.denied for r in rows)
    errors = sum(1 for r in rows if r.outcome not in ("ok", DENIED))
    requests = len({r.request_id for r in rows if r.request_id})
    line = (f"{len(rows)} agent action{'s' if len(rows) != 1 else ''} from {requests} "
            f"request{'s' if requests != 1 else ''}: {denied} {DENIED}, {errors} "
            f"other failure{'s' if errors != 1 else ''}")
    return ("! " + line + " (marked !)") if denied else line


def render_table(rows: list[Row]) -> str:
    """Aligned columns, oldest first; a denied row starts with "!" and says DENIED."""
    if not rows:
        return summary(rows)
    headers = ["TIME", "REQUEST", "TENANT", "PRINCIPAL", "ACTION", "TARGET", "OUTCOME",
               "SOURCE"]
    table = [[format_time(r.time), r.request_id or "-", r.tenant or "-",
              cut(r.principal, MAX_CELL["principal"], keep_end=True), r.action,
              cut(r.target or "-", MAX_CELL["target"], keep_end=True), r.outcome, r.source]
             for r in rows]
    lines = aligned([headers, *table], marks=[" ", *("!" if r.denied else " " for r in rows)])
    lines.append(summary(rows))
    return "\n".join(lines)


def render_json(rows: list[Row]) -> str:
    return json.dumps([r.to_json() for r in rows], indent=2)


# -- command line --------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cli.audit",
        description="What did the agent do, for whom, with which permissions? Rows from the "
                    "agent's audit lines (--local) or CloudTrail (--stack).")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--since", help="start, ISO 8601 (2026-11-22T10:00Z; no zone = UTC)")
    when.add_argument("--minutes", type=float,
                      help=f"the last N minutes before --until (account default: "
                           f"{DEFAULT_MINUTES})")
    p.add_argument("--until", help="end, ISO 8601 (default: now)")
    p.add_argument("--request-id", help="one agent request (CloudTrail: the source identity)")
    p.add_argument("--tenant", help="one tenant (CloudTrail: the request's AssumeRole tag, or a "
                        "target in the tenant's prefix/partition)")
    p.add_argument("--json", action="store_true", help="print a JSON list of rows")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--local", metavar="PATH",
                       help="audit JSON lines: a file, a directory of *.jsonl, or - (stdin)")
    where.add_argument("--stack", metavar="STACK_NAME", help="a deployed Bulwark stack")
    aws.add_location_arguments(p)
    p.add_argument("--log-group", help="trail log group (default: the stack's own trail's)")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds to wait for the Logs Insights query (default 120)")
    p.add_argument("--docs-prefix", default=DOCS_PREFIX, help=argparse.SUPPRESS)
    p.add_argument("--limits", action="store_true",
                   help="with --stack: also the budget changes `python -m cli.limits set` "
                        "recorded (who, what, before -> after)")
    return p


def limits_rows(cloudformation: Any, dynamodb: Any, stack: str) -> list[Row]:
    """One row per recorded limits change: who set what, the limits before -> after; a change
    to `tenants.<name>.budget.*` counts as that tenant's (for --tenant)."""
    from cli.limits import change_rows

    def tenant_of(what: list[str]) -> str:
        return next((key.split(".")[1] for key in what if key.startswith("tenants.")), "")

    return [Row(time=datetime.fromisoformat(c["at"].replace("Z", "+00:00")), request_id="",
                principal=c["who"], tenant="", action="limits:set", target=" ".join(c["what"]),
                outcome="ok", source="limits",
                detail=f"{c['before']} -> {c['after']}" + (f" ({c['reason']})"
                                                          if c.get("reason") else ""),
                target_tenant=tenant_of(c["what"]))
            for c in change_rows(cloudformation, dynamodb, stack)]


def default_clients(region: str | None, endpoint_url: str | None = None) -> dict[str, Any]:
    return aws.clients(("cloudformation", "logs", "cloudtrail", "dynamodb"), region=region,
                       endpoint_url=endpoint_url)


def main(argv: list[str] | None = None, *, clients: dict[str, Any] | None = None,
         now: Callable[[], datetime] | None = None, out=None, err=None,
         sleep: Callable[[float], None] = time.sleep) -> int:
    """Run the command; returns the exit status. `clients` ({"cloudformation", "logs",
    "cloudtrail"}) replaces the boto3 clients main() would build."""
    out, err = out or sys.stdout, err or sys.stderr
    args = parser().parse_args(argv)

    def warn(message: str) -> None:
        print(f"warning: {message}", file=err)

    current = (now or (lambda: datetime.now(timezone.utc)))()
    try:
        start, end = time_range(since=args.since, minutes=args.minutes, until=args.until,
                                now=current,
                                default_minutes=None if args.local else DEFAULT_MINUTES)
        if args.local:
            rows = local_rows(args.local, args.docs_prefix)
        else:
            if clients is None:
                clients = default_clients(args.region, args.endpoint_url)
            rows = account_rows(args.stack, start, end, request_id=args.request_id,
                                log_group=args.log_group, docs_prefix=args.docs_prefix,
                                timeout_s=args.timeout, sleep=sleep, warn=warn,
                                cloudformation=clients["cloudformation"],
                                logs=clients["logs"], cloudtrail=clients["cloudtrail"])
            if args.limits:
                rows += limits_rows(clients["cloudformation"], clients["dynamodb"], args.stack)
        undated = sum(1 for r in rows if r.time is None) if (start or end) else 0
        rows = filter_rows(rows, start=start, end=end, request_id=args.request_id,
                           tenant=args.tenant)
    except (AuditError, *aws.ERRORS) as problem:  # credentials, permissions, missing
        return aws.failed("error", problem, err)
    if undated:
        warn(f"{undated} audit record(s) carry no time and were left out by the time range")
    if args.json:
        print(render_json(rows), file=out)
    else:
        print(render_table(rows), file=out)
        if not rows and not args.local and end is not None \
                and current - end < timedelta(minutes=15):
            print("(CloudTrail delivers events about 5-15 minutes after the call)", file=out)
    return 0

