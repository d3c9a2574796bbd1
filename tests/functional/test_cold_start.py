"""Cold-starting callers in fresh processes never push the server past its quota."""

from __future__ import annotations

import uuid

import pytest

from bench.cold_fleet import run_cold_fleet
from guard import ensure_table
from local.fakes.claude_emulator import ClaudeEmulator
from local.stats import percentile

LIMITS = {"rpm": 60, "itpm": 600_000, "otpm": 120_000}  # requests bind


@pytest.mark.slow
def test_eight_cold_callers_starting_together_see_no_upstream_429(local_aws, capsys):
    table = f"cold-{uuid.uuid4().hex[:6]}"
    ensure_table(local_aws.client("dynamodb"), table)
    with ClaudeEmulator({"limits": {"sonnet-4": LIMITS}, "latency_s": 0.2,
                         "output_tokens": 20}) as emulator:
        run = run_cold_fleet(emulator.base_url, local_aws.endpoint_url, table, callers=8,
                             duration_s=15, **LIMITS)
        sent_429 = emulator.stats()["rate_limited"]
    delays = run["grant_to_send_s"]
    with capsys.disabled():
        print(f"\ncold fleet: {run['ok']} ok of {run['calls']}, grant-to-send p50 "
              f"{percentile(delays, 50) * 1000:.1f} ms, p99 {percentile(delays, 99) * 1000:.1f} ms")
    assert run["ok"] >= LIMITS["rpm"], "the fleet did not use the quota: nothing was at stake"
    assert run["errors"] == 0
    assert sent_429 == 0 and run["upstream_429_seen"] == 0
    assert len(delays) >= run["ok"]  # every call sent was measured
