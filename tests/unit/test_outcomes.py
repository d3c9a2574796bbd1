"""The statuses and reasons callers can test have one home (`guard.outcomes`), which the bucket,
the client and the README's table follow."""

from __future__ import annotations

from pathlib import Path

from guard import bucket, fair, outcomes

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_the_readme_table_lists_every_status_reason_and_error_type():
    section = README[README.index("### Statuses and reasons"):]
    section = section[:section.index("\n## ")]
    for name in [*outcomes.STATUSES, *outcomes.DEFERRAL_REASONS, *outcomes.ERROR_TYPES]:
        assert f"`{name}`" in section, name


def test_the_bucket_and_the_scheduler_refuse_with_the_table_s_reasons():
    assert {bucket.QUOTA, bucket.COOL_DOWN, bucket.STORE_UNAVAILABLE, fair.FAIR_SHARE,
            fair.TENANT_CAP} == set(outcomes.BUCKET_REASONS)
