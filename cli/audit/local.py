"""Local mode: the agent's own audit lines (one JSON line per tool call, `"audit":
"tool_call"`, and the "request finished" lines) from a file or a directory of `*.jsonl` and
`*.log`, as rows."""

from __future__ import annotations

import re
import sys
from datetime import datetime
from pathlib import Path
from typing import Iterable, Iterator

from agent.contract import LogEvent

from .rows import (DENIED, DOCS_PREFIX, SOURCE_LOCAL, AuditError, Row, json_object, parse_time,
                   tenant_of_target)

#: the message of the agent's one log line per request (also a batch-lane request's)
REQUEST_FINISHED = LogEvent.REQUEST_FINISHED
_LOCAL_OUTCOMES = {"ok": "ok", "denied": DENIED, "error": "error",
                   "invalid_input": "invalid_input"}
_TIME_KEYS = ("timestamp", "time", "@timestamp", "ts")
_TEXT_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?"
                        r"(?:Z|[+-]\d{2}:?\d{2})?")


# -- local mode: the agent's audit lines ---------------------------------------------------------

def parse_audit_line(line: str) -> dict | None:
    """The audit record in one log line, or None when the line is not one.

    Accepts a Powertools JSON line (fields at the top level, "message": "tool_call"), a JSON
    line whose "message" holds the record as JSON text, and a text prefix before the JSON (a
    Lambda runtime line "[INFO]\\t<time>\\t<id>\\t{...}"), whose time is used when the record
    has none.
    """
    line = line.strip()
    start, obj = _json_tail(line)
    if obj is None:
        return None
    record = None
    if obj.get("audit") == LogEvent.TOOL_CALL:
        record = dict(obj)
    else:
        message = obj.get("message")
        if isinstance(message, str):
            message = json_object(message)
        if isinstance(message, dict) and message.get("audit") == LogEvent.TOOL_CALL:
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
    if REQUEST_FINISHED not in line:
        return None
    obj = _json_tail(line.strip())[1]
    return obj if obj is not None and obj.get("message") == REQUEST_FINISHED \
        and obj.get("request_id") else None


def _json_tail(line: str) -> tuple[int, dict | None]:
    """Where the JSON object a log line ends with starts (after a text prefix such as the
    Lambda runtime's) and the object; None when the line holds no JSON object there."""
    start = line.find("{")
    return start, json_object(line[start:]) if start >= 0 else None


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
