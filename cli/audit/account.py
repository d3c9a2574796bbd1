"""Account mode: the agent's request lines (Logs Insights on its log group) and the CloudTrail
events of the kit's roles (Logs Insights on the trail's log group, and the event history), as
rows."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterable

from stacks import outputs

from .local import REQUEST_FINISHED, row_from_request_record
from .rows import (DENIED, DOCS_PREFIX, SOURCE_LOGS, SOURCE_TRAIL, AuditError, Row, is_denied,
                   json_object, parse_time, tenant_of_target)

#: Logs Insights returns at most this many rows per query.
INSIGHTS_MAX_ROWS = 10_000
_ASSUMED_ROLE_ARN = re.compile(r"^arn:[^:]+:sts::\d*:assumed-role/(?P<rest>.+)$")


def _short_service(event_source: str) -> str:
    return event_source[:-len(".amazonaws.com")] if event_source.endswith(".amazonaws.com") \
        else event_source


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
        event = json_object(fields.get("@message"))
        if event is None:
            unreadable += 1
        else:
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
        events += filter(None, (json_object(item.get("CloudTrailEvent"))
                                for item in page.get("Events", [])))
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
