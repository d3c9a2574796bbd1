"""cli.audit's rows: filters by request, tenant and time range, ordering, and the time options."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from cli import audit
from tests.fixtures.audit import END, NOW, START, UTC


def test_filter_by_request_id(trail_rows, audit_dir):
    assert {r.request_id for r in audit.filter_rows(trail_rows, request_id="req-2")} == {"req-2"}
    local = audit.filter_rows(audit.local_rows(audit_dir), request_id="req-1")
    assert len(local) == 3 and {r.request_id for r in local} == {"req-1"}


def test_filter_by_tenant(trail_rows, audit_dir):
    acme = audit.filter_rows(trail_rows, tenant="acme")
    assert {r.request_id for r in acme} == {"req-1"}
    assert any(r.denied for r in acme)  # acme's request tried globex's document
    globex = audit.filter_rows(trail_rows, tenant="globex")
    # req-2's own read, and the attempt on globex's document by acme's request
    assert [(r.request_id, r.outcome) for r in globex] == [("req-1", "DENIED"), ("req-2", "ok")]
    assert audit.filter_rows(trail_rows, tenant="initech") == []
    assert {r.tenant for r in audit.filter_rows(audit.local_rows(audit_dir),
                                                tenant="globex")} == {"globex"}


def test_filter_by_time_range(trail_rows, audit_dir):
    late = audit.filter_rows(trail_rows, start=datetime(2026, 11, 22, 10, 10, tzinfo=UTC))
    assert [r.request_id for r in late] == ["req-2"]
    early = audit.filter_rows(trail_rows, end=datetime(2026, 11, 22, 10, 0, 4, tzinfo=UTC))
    assert [r.action for r in early] == ["sts:AssumeRole", "s3:GetObject", "kms:Decrypt",
                                         "dynamodb:PutItem"]
    window = audit.filter_rows(audit.local_rows(audit_dir),
                               start=datetime(2026, 11, 22, 10, 0, 3, tzinfo=UTC),
                               end=datetime(2026, 11, 22, 10, 30, tzinfo=UTC))
    assert [r.action for r in window] == ["tool:write_note", "tool:read_document",
                                          "tool:write_note"]


def test_rows_are_sorted_oldest_first(trail_rows):
    shuffled = list(reversed(trail_rows))
    times = [r.time for r in audit.filter_rows(shuffled)]
    assert times == sorted(times)


def test_time_options():
    assert audit.parse_time("2026-11-22T10:00Z") == START
    assert audit.parse_time("2026-11-22 10:00:00,000+0000") == START
    assert audit.parse_time("2026-11-22T11:00:00+01:00") == START
    assert audit.parse_time("2026-11-22T10:00") == START  # no zone: UTC
    assert audit.parse_time(START.timestamp()) == START
    assert audit.parse_time(START.timestamp() * 1000) == START
    assert audit.time_range(since=None, minutes=None, until=None, now=NOW,
                            default_minutes=None) == (None, None)
    assert audit.time_range(since=None, minutes=None, until=None, now=NOW,
                            default_minutes=60) == (NOW - timedelta(hours=1), NOW)
    assert audit.time_range(since=None, minutes=15, until="2026-11-22T11:00Z", now=NOW,
                            default_minutes=60) == (END - timedelta(minutes=15), END)
    assert audit.time_range(since="2026-11-22T10:00Z", minutes=None, until=None, now=NOW,
                            default_minutes=60) == (START, NOW)
    with pytest.raises(audit.AuditError, match="ISO 8601"):
        audit.time_range(since="yesterday", minutes=None, until=None, now=NOW,
                         default_minutes=60)
    with pytest.raises(audit.AuditError, match="empty"):
        audit.time_range(since="2026-11-22T12:00Z", minutes=None, until="2026-11-22T11:00Z",
                         now=NOW, default_minutes=60)
