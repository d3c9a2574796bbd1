"""cli.audit's local mode: the agent's own audit lines and request lines, from a file or a
directory of logs, normalised into rows."""

from __future__ import annotations

import json
from datetime import datetime


from cli import audit
from tests.fixtures.audit import UTC, request_line


def test_local_mode_reads_request_lines_beside_the_tool_calls(tmp_path):
    (tmp_path / "audit.jsonl").write_text(json.dumps({
        "audit": "tool_call", "request_id": "req-1", "tenant": "acme", "tool": "read_note",
        "target": "dynamodb://notes/acme/n1", "outcome": "ok",
        "timestamp": "2026-11-22T10:00:01Z"}) + "\n")
    (tmp_path / "agent.log").write_text("\n".join(json.dumps(line) for line in (
        request_line("req-1", "ok", tool_calls=1, when="2026-11-22T10:00:02Z"),
        request_line("req-2", "rejected", tool_calls=0, when="2026-11-22T10:00:03Z"),
        {"level": "INFO", "message": "something else"})) + "\n")
    rows = audit.local_rows(tmp_path)
    assert sorted((r.request_id, r.action, r.outcome) for r in rows) == [
        ("req-1", "agent:request", "ok"), ("req-1", "tool:read_note", "ok"),
        ("req-2", "agent:request", "rejected")]


def test_local_mode_reads_audit_lines_and_skips_the_rest(audit_dir):
    rows = audit.local_rows(audit_dir)
    assert len(rows) == 6
    assert {r.source for r in rows} == {"local"}
    first = rows[0]
    assert (first.time, first.request_id, first.tenant, first.action, first.outcome) == \
        (datetime(2026, 11, 22, 10, 0, 2, tzinfo=UTC), "req-1", "acme", "tool:read_document",
         "ok")
    assert first.principal == "tool-role/req-1"
    assert first.caller == "arn:aws:iam::111122223333:user/ci"
    assert [r.outcome for r in rows] == ["ok", "ok", "DENIED", "invalid_input", "error",
                                         "error"]
    # a runtime text prefix gives the time of a record that carries none
    assert rows[4].time == datetime(2026, 11, 22, 10, 31, 0, 250000, tzinfo=UTC)
    assert rows[5].time == datetime(2026, 11, 22, 10, 32, tzinfo=UTC)
    one_file = audit.local_rows(audit_dir / "agent.jsonl")
    assert [r.action for r in one_file] == ["tool:read_document", "tool:write_note",
                                            "tool:read_document"]


def test_missing_local_path_is_an_error(tmp_path, capsys):
    assert audit.main(["--local", str(tmp_path / "nope.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err
