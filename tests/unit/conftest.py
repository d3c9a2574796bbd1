"""Fixtures of the audit command's tests (tests/unit/test_audit_*.py)."""

from __future__ import annotations

import pytest


@pytest.fixture
def audit_dir(tmp_path):
    """The agent's logs of requests req-1 and req-2 (`tests.fixtures.audit.write_audit_dir`)."""
    from tests.fixtures.audit import write_audit_dir

    return write_audit_dir(tmp_path)


@pytest.fixture
def trail_rows():
    """The CloudTrail fixture's events as account-mode rows."""
    from tests.fixtures.audit import EVENTS, FakeLogs, account

    return account(FakeLogs(EVENTS, running=0))
