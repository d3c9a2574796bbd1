"""cli.audit's command: the table (denied attempts stand out), the summary, --json, and the exit
status."""

from __future__ import annotations

import json

import pytest

from cli import audit
from tests.fixtures.audit import EVENTS, FakeLogs, NOW, NoCalls, STACK, START, stubbed_stack


# -- output --------------------------------------------------------------------------------------

def test_table_marks_denied_attempts_and_counts_them(trail_rows):
    text = audit.render_table(audit.filter_rows(trail_rows))
    lines = text.splitlines()
    header, body, last = lines[0], lines[1:-1], lines[-1]
    assert header.split() == ["TIME", "REQUEST", "TENANT", "PRINCIPAL", "ACTION", "TARGET",
                              "OUTCOME", "SOURCE"]
    assert len(body) == 6
    denied = [line for line in body if line.startswith("!")]
    assert len(denied) == 1
    assert " DENIED " in denied[0] and "docs/globex/contracts/merger.txt" in denied[0]
    assert all(line.startswith("  ") for line in body if line not in denied)
    # aligned: every column starts at the header's position
    for column in ("REQUEST", "ACTION", "OUTCOME", "SOURCE"):
        at = header.index(column)
        assert all(line[at - 2:at] == "  " and line[at] != " " for line in body)
    assert body[-1].split()[1:3] == ["10:30:00Z", "req-2"]  # newest last
    assert last == "! 6 agent actions from 2 requests: 1 DENIED, 0 other failures (marked !)"


def test_summary_without_denials():
    row = audit.Row(START, "req-9", "tool-role/req-9", "acme", "tool:read_document",
                    "s3://b/docs/acme/x", "ok", "local")
    assert audit.summary([row]) == "1 agent action from 1 request: 0 DENIED, 0 other failures"
    assert audit.render_table([]) == "no agent actions in range"


def test_long_targets_are_cut_in_the_table_only():
    target = "s3://bulwark-docs/docs/acme/" + "deep/" * 30 + "file.txt"
    row = audit.Row(START, "req-9", "tool-role/req-9", "acme", "tool:read_document", target,
                    "ok", "local")
    table = audit.render_table([row])
    cell = table.splitlines()[1].split()[6]
    assert len(cell) == audit.MAX_CELL["target"] and "..." in cell
    assert cell.startswith("s3://bulwark-docs/docs/acme/") and cell.endswith("/file.txt")
    assert json.loads(audit.render_json([row]))[0]["target"] == target


def test_main_local_table_and_json(audit_dir, capsys):
    assert audit.main(["--local", str(audit_dir), "--tenant", "acme"]) == 0
    out = capsys.readouterr().out
    assert out.count("tool:") == 3 and "! 3 agent actions from 1 request: 1 DENIED" in out

    assert audit.main(["--local", str(audit_dir), "--request-id", "req-2", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["action"] for r in rows] == ["tool:write_note", "tool:list_documents",
                                           "tool:list_documents"]
    assert set(rows[0]) == {"time", "request_id", "principal", "tenant", "action", "target",
                            "outcome", "source", "caller", "detail"}
    assert rows[0]["time"] == "2026-11-22T10:30:00.000Z" and rows[0]["source"] == "local"


def test_main_with_no_rows_exits_zero(audit_dir, capsys):
    argv = ["--local", str(audit_dir), "--since", "2027-01-01T00:00Z",
            "--until", "2027-01-02T00:00Z"]
    assert audit.main(argv) == 0
    assert capsys.readouterr().out.strip() == "no agent actions in range"
    assert audit.main(argv + ["--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_main_account_mode_with_injected_clients(capsys):
    cfn, _ = stubbed_stack()
    logs = FakeLogs(EVENTS, running=0)
    clients = {"cloudformation": cfn, "logs": logs, "cloudtrail": NoCalls()}
    code = audit.main(["--stack", STACK, "--since", "2026-11-22T10:00Z", "--until",
                       "2026-11-22T11:00Z", "--tenant", "acme"], clients=clients,
                      now=lambda: NOW, sleep=lambda s: None)
    out = capsys.readouterr().out
    assert code == 0
    assert logs.started["startTime"] == int(START.timestamp())
    assert "! 5 agent actions from 1 request: 1 DENIED" in out
    assert "alice" not in out and "req-2" not in out


def test_main_reports_bad_options_with_status_2(capsys):
    assert audit.main(["--local", "x", "--since", "2026-11-22T10:00Z", "--until",
                       "2026-11-22T09:00Z"]) == 2
    assert "empty" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        audit.main(["--since", "2026-11-22T10:00Z"])  # neither --local nor --stack
