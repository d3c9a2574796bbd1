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

from .account import (INSIGHTS_MAX_ROWS, KitResources, account_rows, build_query,
                      build_request_query, event_issuer, kit_resources, lookup_events,
                      row_from_cloudtrail_event, run_insights_query, assign_tenants)
from .command import MAX_CELL, default_clients, limits_rows, main, parser, render_json, \
    render_table, summary
from .local import (REQUEST_FINISHED, iter_audit_records, local_rows, parse_audit_line,
                    parse_request_line, record_time, row_from_audit_record,
                    row_from_request_record)
from .rows import (DEFAULT_MINUTES, DENIED, DOCS_PREFIX, AuditError, Row, filter_rows,
                   format_time, is_denied, parse_time, tenant_of_target, time_range)

__all__ = [
    "DEFAULT_MINUTES", "DENIED", "DOCS_PREFIX", "INSIGHTS_MAX_ROWS", "MAX_CELL",
    "REQUEST_FINISHED", "AuditError", "KitResources", "Row", "account_rows", "assign_tenants",
    "build_query", "build_request_query", "default_clients", "event_issuer", "filter_rows",
    "format_time", "is_denied", "iter_audit_records", "kit_resources", "limits_rows",
    "local_rows", "lookup_events", "main", "parse_audit_line", "parse_request_line",
    "parse_time", "parser", "record_time", "render_json", "render_table",
    "row_from_audit_record", "row_from_cloudtrail_event", "row_from_request_record",
    "run_insights_query", "summary", "tenant_of_target", "time_range",
]
