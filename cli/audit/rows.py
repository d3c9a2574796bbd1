"""The audit's row model: one agent action from either source (`Row`), the time range, the
tenant a target belongs to, and the filter every source's rows go through."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from agent.contract import DOCUMENTS_PREFIX

#: Prefix of the tenant documents in the documents bucket (the stack's `docs_prefix`).
DOCS_PREFIX = DOCUMENTS_PREFIX
DEFAULT_MINUTES = 60
DENIED = "DENIED"
#: where a row comes from: CloudTrail, the agent's local lines, its log group
SOURCE_TRAIL, SOURCE_LOCAL, SOURCE_LOGS = "trail", "local", "logs"


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

def json_object(text: str | None) -> dict | None:
    """The JSON object `text` holds (a CloudTrail event, a log record); None when it is not
    JSON or not an object."""
    try:
        value = json.loads(text or "")
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


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


def is_denied(error_code: str | None) -> bool:
    """The codes the stack's AccessDenied metric filter counts."""
    return bool(error_code) and (error_code.startswith("AccessDenied")
                                 or "Unauthorized" in error_code)


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
