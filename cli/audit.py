"""What did the agent do, for whom, with which permissions?

    python -m cli.audit [--since 2026-11-22T10:00Z | --minutes 60] [--until ...]
                        [--request-id ID] [--tenant T] [--json]
                        (--local PATH | --stack STACK_NAME [--region R] [--log-group NAME])

Two sources, one row model (`Row`):

Every request has a row (``agent:request``: status, model, model and tool calls, tokens,
duration) from the function's own "request finished" log line, since CloudTrail records nothing
of Claude calls; every tool call and AWS action has rows of its own.

* ``--local PATH``: the agent's own lines (one JSON audit line per tool call,
  ``"audit": "tool_call"``, and the "request finished" lines) from a file or a directory of
  ``*.jsonl`` and ``*.log`` (a demo's ``out/demo``). Other lines are skipped. With no time option
  every record is shown.
* ``--stack NAME``: the stack's outputs name the agent's log group (AgentLogGroup: a Logs
  Insights query for the request lines), the trail's CloudWatch Logs group (TrailLogGroup) and
  the kit's two roles (AgentRoleArn, ToolRoleArn); a Logs Insights query reads the events
  over the time range (default: the last 60 minutes), filtered on
  ``userIdentity.sessionContext.sessionIssuer.arn`` and, with ``--request-id``, on the source
  identity (the tool role's sessions carry the request id as SourceIdentity and session name).
  With ``--request-id`` the CloudTrail event history (LookupEvents, Username = request id) is
  read as well: it holds management events even where the trail does not deliver to Logs.

Tenants in CloudTrail: session tags are not recorded on the calls a session makes, so a trail
row's tenant comes from the request's AssumeRole event (its ``tenant`` tag) when that is in the
range, else from a *successful* tenant-scoped access of the same request (IAM only lets the tool
role reach its own tenant's ``docs/<tenant>/`` prefix and notes partition, so success proves the
tag). ``--tenant T`` keeps rows whose request belongs to T *or* whose target lies in T's prefix
or partition (so another tenant's attempt on T's data shows too). A request whose tenant cannot
be established that way (e.g. only KMS calls in the range) is left out by ``--tenant``.

CloudTrail delivers events to CloudWatch Logs about 5 (up to 15) minutes after the call.
Exit status: 0 (also with no rows), 2 for bad options or an AWS problem (message on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from botocore.exceptions import BotoCoreError, ClientError

from cli import aws
from cli.table import aligned, cut
from stacks import outputs

#: Prefix of the tenant documents in the documents bucket (the stack's `docs_prefix`).
DOCS_PREFIX = "docs/"
#: Logs Insights returns at most this many rows per query.
INSIGHTS_MAX_ROWS = 10_000
DEFAULT_MINUTES = 60
#: Columns wider than this are cut in the table (the JSON output is never cut).
MAX_CELL = {"target": 96, "principal": 48}

DENIED = "DENIED"
#: the message of the agent's one log line per request (lambdas/agent/service.py; the batch
#: lane's in queues.py)
REQUEST_FINISHED = "request finished"
SOURCE_TRAIL, SOURCE_LOCAL, SOURCE_LOGS = "trail", "local", "logs"
_LOCAL_OUTCOMES = {"ok": "ok", "denied": DENIED, "error": "error",
                   "invalid_input": "invalid_input"}
_TIME_KEYS = ("timestamp", "time", "@timestamp", "ts")
_TEXT_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?"
                        r"(?:Z|[+-]\d{2}:?\d{2})?")
_ASSUMED_ROLE_ARN = re.compile(r"^arn:[^:]+:sts::\d*:assumed-role/(?P<rest>.+)$")


class AuditError(Exception):
    """A problem the operator must fix (options, stack, AWS access); main() prints it."""


# -- the row model -------------------------------------------------------------------------------

@dataclass
class Row:
    """One agent action, from either source.

    time: when (UTC; None when a local line carries no time). request_id: the agent request
    (CloudTrail: the session's source identity). principal: who acted, "role/session" (local:
    "tool-role/<request id>", the session the tool ran under). tenant: whose data ("" when
    unknown). action: "service:Operation" for AWS calls (eventSource without
    ".amazonaws.com"), "tool:<name>" for tool calls. target: the resource, in the tools' own
    form where possible ("s3://bucket/key", "dynamodb://table/tenant/note_id"), else its ARN.
    outcome: "ok", "DENIED", "invalid_input", "error" or the AWS error code. source: "trail" or
    "local". caller: who invoked the agent (local only). detail: error message, if any.
    """

    time: datetime | None
    request_id: str
    principal: str
    tenant: str
    action: str
    target: str
    outcome: str
    source: str
    caller: str = ""
    detail: str = ""
    #: tenant whose prefix/partition the target lies in ("" if none); for --tenant
    target_tenant: str = field(default="", repr=False)
    event_id: str = field(default="", repr=False)

    @property
    def denied(self) -> bool:
        return self.outcome == DENIED

    def to_json(self) -> dict:
        return {"time": format_time(self.time, json_form=True), "request_id": self.request_id,
                "principal": self.principal, "tenant": self.tenant, "action": self.action,
                "target": self.target, "outcome": self.outcome, "source": self.source,
                "caller": self.caller, "detail": self.detail}


# -- time ----------------------------------------------------------------------------------------

def parse_time(value: Any) -> datetime:
    """ISO 8601 ("2026-11-22T10:00Z", "2026-11-22 10:00:01,123+0000"; no zone = UTC) or epoch
    seconds (milliseconds when larger than 1e11). Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, (int, float)):
        seconds = value / 1000.0 if value > 1e11 else float(value)
        return datetime.fromtimestamp(seconds, tz=timezone.utc)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"not a time: {value!r}")
    text = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return parse_time(float(text))
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 time such as 2026-11-22T10:00Z") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)) \
        .astimezone(timezone.utc)


def format_time(value: datetime | None, *, json_form: bool = False) -> str | None:
    if value is None:
        return None if json_form else "-"
    value = value.astimezone(timezone.utc)
    if json_form:
        return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return value.strftime("%Y-%m-%d %H:%M:%SZ")


def time_range(*, since: str | None, minutes: float | None, until: str | None,
               now: datetime, default_minutes: float | None) -> tuple[datetime | None,
                                                                       datetime | None]:
    """(start, end) from the options; (None, None) when nothing is given and there is no
    default (local mode: every record)."""
    if since is not None and minutes is not None:
        raise AuditError("give --since or --minutes, not both")
    if minutes is not None and minutes <= 0:
        raise AuditError(f"--minutes must be positive, not {minutes:g}")
    try:
        end = parse_time(until) if until is not None else None
        start = parse_time(since) if since is not None else None
    except ValueError as err:
        raise AuditError(str(err)) from None
    if minutes is None and start is None and end is None and default_minutes is None:
        return None, None
    if start is None:
        span = minutes if minutes is not None else default_minutes
        if span is not None:
            start = (end or now) - timedelta(minutes=span)
    if end is None and default_minutes is not None:
        end = now  # account mode always queries a bounded range
    if start is not None and end is not None and start >= end:
        raise AuditError(f"the range is empty: {format_time(start)} is not before "
                         f"{format_time(end)}")
    return start, end


# -- targets and tenants -------------------------------------------------------------------------

def tenant_of_target(target: str, docs_prefix: str = DOCS_PREFIX) -> str:
    """Tenant whose documents prefix or notes partition `target` lies in, or ""."""
    match = re.match(r"^s3://[^/]+/(.*)$", target or "")
    if match:
        key = match.group(1)
        if key.startswith(docs_prefix):
            tenant = key[len(docs_prefix):].split("/", 1)
            return tenant[0] if len(tenant) == 2 else ""
        return ""
    match = re.match(r"^dynamodb://[^/]+/([^/]+)(/|$)", target or "")
    return match.group(1) if match else ""


def _short_service(event_source: str) -> str:
    return event_source[:-len(".amazonaws.com")] if event_source.endswith(".amazonaws.com") \
        else event_source


def is_denied(error_code: str | None) -> bool:
    """The codes the stack's AccessDenied metric filter counts."""
    return bool(error_code) and (error_code.startswith("AccessDenied")
                                 or "Unauthorized" in error_code)


# -- local mode: the agent's audit lines ---------------------------------------------------------

def parse_audit_line(line: str) -> dict | None:
    """The audit record in one log line, or None when the line is not one.

    Accepts a Powertools JSON line (fields at the top level, "message": "tool_call"), a JSON
    line whose "message" holds the record as JSON text, and a text prefix before the JSON (a
    Lambda runtime line "[INFO]\\t<time>\\t<id>\\t{...}"), whose time is used when the record
    has none.
    """
    line = line.strip()
    start = line.find("{")
    if start < 0:
        return None
    try:
        obj = json.loads(line[start:])
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    record = None
    if obj.get("audit") == "tool_call":
        record = dict(obj)
    else:
        message = obj.get("message")
        if isinstance(message, str) and message.lstrip().startswith("{"):
            try:
                message = json.loads(message)
            except ValueError:
                message = None
        if isinstance(message, dict) and message.get("audit") == "tool_call":
            record = {**{k: obj[k] for k in _TIME_KEYS if k in obj}, **message}
    if record is None:
        return None
    if not any(k in record for k in _TIME_KEYS) and start > 0:
        found = _TEXT_TIME.search(line[:start])
        if found:
            record["timestamp"] = found.group(0)
    return record


def parse_request_line(line: str) -> dict | None:
    """The agent's "request finished" log line (one per request, with or without tool calls:
    status, model, model and tool calls, usage, duration), or None."""
    line = line.strip()
    start = line.find("{")
    if start < 0 or "request finished" not in line:
        return None
    try:
        obj = json.loads(line[start:])
    except ValueError:
        return None
    return obj if isinstance(obj, dict) and obj.get("message") == REQUEST_FINISHED \
        and obj.get("request_id") else None


def row_from_request_record(record: dict) -> Row:
    """One agent request as a row: action agent:request, target the model, outcome the status,
    detail the model and tool calls, tokens and duration."""
    usage = record.get("usage") or {}
    tokens = sum(v for k, v in usage.items() if k.endswith("tokens") and isinstance(v, int))
    duration = record.get("duration_ms")
    detail = (f"{record.get('model_calls', 0)} model call(s), {record.get('tool_calls', 0)} "
              f"tool call(s), {tokens:,} tokens"
              + (f", {duration:,.0f} ms" if isinstance(duration, (int, float)) else ""))
    request_id = str(record.get("request_id") or "")
    return Row(time=record_time(record), request_id=request_id,
               principal=f"agent/{request_id}" if request_id else "agent",
               tenant=str(record.get("tenant") or ""), action="agent:request",
               target=f"model:{record.get('model') or '-'}",
               outcome=str(record.get("status") or "?"), source=SOURCE_LOCAL,
               caller=str(record.get("caller") or ""), detail=detail)


def record_time(record: dict) -> datetime | None:
    for key in _TIME_KEYS:
        if key in record:
            try:
                return parse_time(record[key])
            except ValueError:
                continue
    return None


def iter_audit_records(path: str | Path) -> Iterator[dict]:
    """Tool-call audit records and "request finished" records (kind "request") from a file, a
    directory of *.jsonl and *.log (sorted by name; a demo's out/demo), or "-" (stdin)."""
    def records(lines: Iterable[str]) -> Iterator[dict]:
        for line in lines:
            record = parse_audit_line(line)
            if record is None:
                record = parse_request_line(line)
                if record is not None:
                    record = {**record, "audit": "request"}
            if record is not None:
                yield record

    if str(path) == "-":
        yield from records(sys.stdin)
        return
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in [*path.glob("*.jsonl"), *path.glob("*.log")] if p.is_file())
    elif path.is_file():
        files = [path]
    else:
        raise AuditError(f"{path}: no such file or directory")
    for file in files:
        with file.open(encoding="utf-8", errors="replace") as handle:
            yield from records(handle)


def row_from_audit_record(record: dict, docs_prefix: str = DOCS_PREFIX) -> Row:
    request_id = str(record.get("request_id") or "")
    target = str(record.get("target") or "")
    outcome = str(record.get("outcome") or "")
    return Row(time=record_time(record), request_id=request_id,
               principal=f"tool-role/{request_id}" if request_id else "tool-role",
               tenant=str(record.get("tenant") or ""),
               action=f"tool:{record.get('tool') or '?'}", target=target,
               outcome=_LOCAL_OUTCOMES.get(outcome, outcome or "?"), source=SOURCE_LOCAL,
               caller=str(record.get("caller") or ""), detail=str(record.get("detail") or ""),
               target_tenant=tenant_of_target(target, docs_prefix))


def local_rows(path: str | Path, docs_prefix: str = DOCS_PREFIX) -> list[Row]:
    return [row_from_request_record(r) if r.get("audit") == "request"
            else row_from_audit_record(r, docs_prefix) for r in iter_audit_records(path)]


# -- account mode: CloudTrail events ------------------------------------------------------------

def event_issuer(event: dict) -> str:
    """ARN of the role whose session made the call ("" for other identities)."""
    context = (event.get("userIdentity") or {}).get("sessionContext") or {}
    return (context.get("sessionIssuer") or {}).get("arn") or ""


def _event_target(event: dict) -> str:
    params = event.get("requestParameters") or {}
    if not isinstance(params, dict):
        params = {}
    bucket = params.get("bucketName")
    if bucket and params.get("key"):
        return f"s3://{bucket}/{params['key']}"
    if bucket and params.get("prefix") is not None:
        return f"s3://{bucket}/{params['prefix']}"
    table = params.get("tableName")
    if table:
        table = str(table).rsplit("table/", 1)[-1]
        key = params.get("key")
        if isinstance(key, dict) and key:
            ordered = ([key["tenant"]] if "tenant" in key else []) + \
                [v for k, v in key.items() if k != "tenant"]
            return f"dynamodb://{table}/" + "/".join(str(v) for v in ordered)
        return f"dynamodb://{table}"
    if params.get("roleArn"):
        return str(params["roleArn"])
    resources = [r for r in event.get("resources") or [] if isinstance(r, dict)]
    for resource in resources:  # the object before its bucket
        if resource.get("type") != "AWS::S3::Bucket" and resource.get("ARN"):
            return str(resource["ARN"])
    if resources and resources[0].get("ARN"):
        return str(resources[0]["ARN"])
    if bucket:
        return f"s3://{bucket}"
    return ""


def _principal(identity: dict) -> str:
    arn = identity.get("arn") or ""
    match = _ASSUMED_ROLE_ARN.match(arn)
    if match:
        return match.group("rest")
    return arn or identity.get("principalId") or identity.get("type") or "?"


def row_from_cloudtrail_event(event: dict, docs_prefix: str = DOCS_PREFIX) -> Row:
    """Normalise one CloudTrail event (as delivered to CloudWatch Logs or in LookupEvents'
    CloudTrailEvent)."""
    identity = event.get("userIdentity") or {}
    context = identity.get("sessionContext") or {}
    params = event.get("requestParameters") if isinstance(event.get("requestParameters"),
                                                          dict) else {}
    action = f"{_short_service(event.get('eventSource') or '?')}:{event.get('eventName') or '?'}"
    request_id = context.get("sourceIdentity") or ""
    tenant = ""
    if action == "sts:AssumeRole":
        # The agent role assuming the tool role for a request: the request id is the new
        # session's source identity (and name), the tenant is its session tag.
        request_id = params.get("sourceIdentity") or params.get("roleSessionName") or request_id
        for tag in params.get("tags") or []:
            if isinstance(tag, dict) and tag.get("key") == "tenant":
                tenant = str(tag.get("value") or "")
    error_code = event.get("errorCode")
    outcome = DENIED if is_denied(error_code) else (error_code or "ok")
    try:
        when = parse_time(event["eventTime"]) if event.get("eventTime") else None
    except ValueError:
        when = None
    target = _event_target(event)
    target_tenant = tenant_of_target(target, docs_prefix)
    return Row(time=when, request_id=str(request_id), principal=_principal(identity),
               tenant=tenant, action=action, target=target, outcome=str(outcome),
               source=SOURCE_TRAIL, detail=str(event.get("errorMessage") or ""),
               target_tenant=target_tenant, event_id=str(event.get("eventID") or ""))


def assign_tenants(rows: list[Row]) -> None:
    """Fill in the tenant of trail rows from what the rows prove about their request: the
    AssumeRole tenant tag, else a successful access inside one tenant's prefix/partition."""
    by_request: dict[str, str] = {}
    for row in rows:
        if row.action == "sts:AssumeRole" and row.tenant and row.request_id:
            by_request.setdefault(row.request_id, row.tenant)
    for row in rows:
        if (row.source == SOURCE_TRAIL and row.outcome == "ok" and row.target_tenant
                and row.request_id):
            by_request.setdefault(row.request_id, row.target_tenant)
    for row in rows:
        if row.source == SOURCE_TRAIL and not row.tenant:
            row.tenant = by_request.get(row.request_id, "")


@dataclass
class KitResources:
    """What account mode needs from the stack."""

    log_group: str | None
    role_arns: dict[str, str]  # {"agent": arn, "tool": arn}
    agent_log_group: str | None = None


def kit_resources(cloudformation: Any, stack_name: str) -> KitResources:
    """The trail's log group (None when the stack uses an existing trail), the agent's log
    group and the kit's role ARNs, from the stack's outputs."""
    try:
        found = outputs.stack_outputs(cloudformation, stack_name,
                                      need=(outputs.AGENT_ROLE_ARN, outputs.TOOL_ROLE_ARN))
    except outputs.StackOutputsError as err:
        raise AuditError(str(err)) from None
    return KitResources(found.get(outputs.TRAIL_LOG_GROUP),
                        {"agent": found[outputs.AGENT_ROLE_ARN],
                         "tool": found[outputs.TOOL_ROLE_ARN]},
                        found.get(outputs.AGENT_LOG_GROUP))


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def build_query(role_arns: Iterable[str], *, request_id: str | None = None,
                limit: int = INSIGHTS_MAX_ROWS) -> str:
    """The Logs Insights query: the kit roles' events, optionally one request's, oldest
    first. The whole event comes back in @message and is normalised here, not in the query."""
    issuer = "userIdentity.sessionContext.sessionIssuer.arn"
    roles = " or ".join(f"{issuer} = {_quote(arn)}" for arn in sorted(set(role_arns)))
    lines = ["fields @timestamp, @message", f"| filter {roles}"]
    if request_id:
        rid = _quote(request_id)
        lines.append(f"| filter userIdentity.sessionContext.sourceIdentity = {rid}"
                     f" or requestParameters.sourceIdentity = {rid}"
                     f" or requestParameters.roleSessionName = {rid}")
    lines += ["| sort @timestamp asc", f"| limit {int(limit)}"]
    return "\n".join(lines)


def build_request_query(*, request_id: str | None = None,
                        limit: int = INSIGHTS_MAX_ROWS) -> str:
    """The Logs Insights query for the agent's "request finished" lines, oldest first."""
    lines = ["fields @timestamp, @message", f"| filter message = {_quote(REQUEST_FINISHED)}"]
    if request_id:
        lines.append(f"| filter request_id = {_quote(request_id)}")
    lines += ["| sort @timestamp asc", f"| limit {int(limit)}"]
    return "\n".join(lines)


def run_insights_query(logs: Any, log_group: str, query: str, start: datetime, end: datetime,
                       *, timeout_s: float = 120.0, poll_s: float = 1.0,
                       sleep: Callable[[float], None] = time.sleep,
                       clock: Callable[[], float] = time.monotonic,
                       warn: Callable[[str], None] | None = None) -> list[dict]:
    """Run `query` over [start, end] and return the CloudTrail events (@message parsed).

    Polls GetQueryResults every `poll_s` s; after `timeout_s` s the query is stopped and
    AuditError raised. A failed/cancelled query raises AuditError too."""
    started = clock()
    query_id = logs.start_query(logGroupName=log_group, queryString=query,
                                startTime=int(start.timestamp()),
                                endTime=int(end.timestamp()) + 1,
                                limit=INSIGHTS_MAX_ROWS)["queryId"]
    while True:
        response = logs.get_query_results(queryId=query_id)
        status = response.get("status")
        if status == "Complete":
            break
        if status in ("Failed", "Cancelled", "Timeout", "Unknown"):
            raise AuditError(f"Logs Insights query {query_id} ended with status {status}")
        if clock() - started >= timeout_s:
            try:
                logs.stop_query(queryId=query_id)
            except Exception:  # noqa: BLE001 - the query may have finished meanwhile
                pass
            raise AuditError(f"Logs Insights query {query_id} did not finish within "
                             f"{timeout_s:g} s; narrow the time range or raise --timeout")
        sleep(poll_s)
    events, unreadable = [], 0
    results = response.get("results") or []
    for result in results:
        fields = {f.get("field"): f.get("value") for f in result}
        try:
            event = json.loads(fields.get("@message") or "")
        except ValueError:
            unreadable += 1
            continue
        if isinstance(event, dict):
            events.append(event)
    if warn and unreadable:
        warn(f"{unreadable} query result(s) were not JSON CloudTrail events and were skipped")
    if warn and len(results) >= INSIGHTS_MAX_ROWS:
        warn(f"the query returned its maximum of {INSIGHTS_MAX_ROWS} events: rows are "
             "missing; narrow the time range or add --request-id")
    return events


def lookup_events(cloudtrail: Any, request_id: str, start: datetime, end: datetime, *,
                  max_pages: int = 20, warn: Callable[[str], None] | None = None) -> list[dict]:
    """Management events of the request's role sessions from the CloudTrail event history
    (LookupEvents, Username = role session name = request id)."""
    events, token = [], None
    for _ in range(max_pages):
        kwargs = {"LookupAttributes": [{"AttributeKey": "Username",
                                        "AttributeValue": request_id}],
                  "StartTime": start, "EndTime": end, "MaxResults": 50}
        if token:
            kwargs["NextToken"] = token
        page = cloudtrail.lookup_events(**kwargs)
        for item in page.get("Events", []):
            try:
                event = json.loads(item.get("CloudTrailEvent") or "")
            except ValueError:
                continue
            if isinstance(event, dict):
                events.append(event)
        token = page.get("NextToken")
        if not token:
            return events
    if warn:
        warn(f"event history has more than {max_pages * 50} events for {request_id}; "
             "showing the first ones")
    return events


def account_rows(stack_name: str, start: datetime, end: datetime, *, cloudformation: Any,
                 logs: Any, cloudtrail: Any, request_id: str | None = None,
                 log_group: str | None = None, docs_prefix: str = DOCS_PREFIX,
                 timeout_s: float = 120.0, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 warn: Callable[[str], None] | None = None) -> list[Row]:
    """Rows in [start, end] (unfiltered by tenant; see `filter_rows`): one per agent request
    from the function's "request finished" log lines (Logs Insights on its log group:
    CloudTrail records nothing of Claude calls), and CloudTrail rows of the stack's roles.
    Events of other principals are dropped here even if a source returns them."""
    kit = kit_resources(cloudformation, stack_name)
    log_group = log_group or kit.log_group
    if not log_group and not request_id:
        raise AuditError(f"stack {stack_name!r} has no trail log group (it uses an existing "
                         "trail): pass --log-group NAME (the group that trail delivers to), or "
                         "--request-id ID to read the CloudTrail event history")
    events: list[dict] = []
    if log_group:
        query = build_query(kit.role_arns.values(), request_id=request_id)
        events += run_insights_query(logs, log_group, query, start, end, timeout_s=timeout_s,
                                     sleep=sleep, clock=clock, warn=warn)
    elif warn:
        warn("no trail log group: only management events from the CloudTrail event history "
             "are shown (no S3 or DynamoDB data events)")
    if request_id:
        events += lookup_events(cloudtrail, request_id, start, end, warn=warn)
    roles = set(kit.role_arns.values())
    rows, seen = [], set()
    if kit.agent_log_group:
        query = build_request_query(request_id=request_id)
        for record in run_insights_query(logs, kit.agent_log_group, query, start, end,
                                         timeout_s=timeout_s, sleep=sleep, clock=clock,
                                         warn=warn):
            if record.get("message") == REQUEST_FINISHED:
                row = row_from_request_record(record)
                row.source = SOURCE_LOGS
                rows.append(row)
    for event in events:
        if event_issuer(event) not in roles:
            continue
        event_id = event.get("eventID")
        if event_id:
            if event_id in seen:  # in both the trail's log group and the event history
                continue
            seen.add(event_id)
        rows.append(row_from_cloudtrail_event(event, docs_prefix))
    assign_tenants(rows)
    return rows


# -- filtering and output ------------------------------------------------------------------------

def filter_rows(rows: Iterable[Row], *, start: datetime | None = None,
                end: datetime | None = None, request_id: str | None = None,
                tenant: str | None = None) -> list[Row]:
    """Rows in [start, end] (rows without a time are dropped when a bound is given), of one
    request, of one tenant (the row's tenant or its target's); oldest first (rows without a
    time keep their order, before the others)."""
    kept = []
    for row in rows:
        if (start is not None or end is not None) and row.time is None:
            continue
        if start is not None and row.time < start:
            continue
        if end is not None and row.time > end:
            continue
        if request_id and row.request_id != request_id:
            continue
        if tenant and tenant not in (row.tenant, row.target_tenant):
            continue
        kept.append(row)
    epoch = datetime.min.replace(tzinfo=timezone.utc)
    return sorted(kept, key=lambda r: r.time or epoch)


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
    p.add_argument("--region", help="the stack's region (default: the AWS configuration's)")
    p.add_argument("--endpoint-url", default=os.environ.get("AWS_ENDPOINT_URL"),
                   help="AWS endpoint, e.g. local AWS's http://127.0.0.1:PORT")
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
    except (AuditError, BotoCoreError, ClientError) as problem:  # credentials, permissions, missing
        print(f"error: {aws.explain(problem)}", file=err)
        return 2
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


if __name__ == "__main__":
    sys.exit(main())
