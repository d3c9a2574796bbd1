"""The statuses and reasons callers can test have one home (`guard.outcomes`), which the bucket,
the client and the docs' table (docs/guard/index.md, "Statuses and reasons") follow."""

from __future__ import annotations

from pathlib import Path

from guard import bucket, fair, outcomes

GUARD_PAGE = (Path(__file__).resolve().parents[2] / "docs" / "guard" / "index.md").read_text()


def test_the_docs_table_lists_every_status_reason_and_error_type():
    section = GUARD_PAGE[GUARD_PAGE.index("\n## Statuses and reasons"):]
    section = section.split("\n## ", 2)[1]  # up to the next section, if any
    for name in [*outcomes.STATUSES, *outcomes.DEFERRAL_REASONS, *outcomes.ERROR_TYPES]:
        assert f"`{name}`" in section, name


def test_the_bucket_and_the_scheduler_refuse_with_the_table_s_reasons():
    assert {bucket.QUOTA, bucket.COOL_DOWN, bucket.STORE_UNAVAILABLE, fair.FAIR_SHARE,
            fair.TENANT_CAP} == set(outcomes.BUCKET_REASONS)
