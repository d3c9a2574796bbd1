"""`make demo`'s program with a tiny scenario: deploy into local AWS, run the fleet, report."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_tiny_demo_deploys_answers_everything_and_writes_its_outputs(tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'lambdas'}"}
    for name in ("AWS_ENDPOINT_URL", "ANTHROPIC_BASE_URL", "ANTHROPIC_BEDROCK_BASE_URL"):
        env.pop(name, None)
    result = subprocess.run(
        [sys.executable, "-m", "local.demo", "--requests", "8", "--workers", "4",
         "--inject-529", "2", "--dynamodb-throttle", "0.2", "--out", str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "upstream 429s sent by the emulator: 0" in result.stdout
    assert ("acme's role naming tenant globex: HTTP 403 forbidden_tenant (role AcmeApp "
            "(account 123456789012) is not bound to the tenant it named)") in result.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["lost"] == [] and summary["statuses"]["ok"] >= 1
    assert summary["upstream_429"] == 0
    assert summary["totals"]["Upstream529"] == 2  # the injected storm, ridden out
    for chart in ("rates.png", "dashboard.png"):
        assert (tmp_path / chart).stat().st_size > 20_000
    audit = (tmp_path / "audit.jsonl").read_text().splitlines()
    assert audit and all(json.loads(line)["audit"] == "tool_call" for line in audit)
    # each tenant's requests came from a session of its own role, which chose the tenant
    for line in map(json.loads, audit):
        assert line["caller"] == (f"arn:aws:sts::123456789012:assumed-role/"
                                  f"{line['tenant'].capitalize()}App/demo-{line['tenant']}-"
                                  "operator"), line
    assert "alarms that would have fired" in result.stdout
    # MCP: request 6 lists documents through the local AWS MCP Server, request 3 tries a delete
    mcp = {line["request_id"]: line for line in map(json.loads, audit)
           if line["target"].startswith("mcp://")}
    assert mcp["demo-0006"]["outcome"] == "ok"
    assert mcp["demo-0003"]["outcome"] == "denied"
    assert summary["mcp_destructive_allowed"] == []
    decisions = json.loads((tmp_path / "mcp_decisions.json").read_text())
    assert {(d["source_identity"], d["action"], d["result"]) for d in decisions} >= {
        ("demo-0003", "s3:DeleteObject", "ExplicitlyDenied"),
        ("demo-0006", "s3:ListBucket", "Allowed")}
    assert "Why it did not fire" in result.stdout
    assert "the bucket admits in" in result.stdout  # utilisation against the bucket's bound
    # store errors under the injected DynamoDB throttling are counted, not printed one by one
    # (the line lists the guard's warnings most frequent first: lease errors may lead)
    assert re.search(r"^guard log \(in agent\.log\): .*token bucket store error x\d+",
                     result.stdout, re.MULTILINE), result.stdout[-3000:]
    assert "token bucket store error" not in result.stderr
    # the audit covers every request, also those without a tool call
    listing = subprocess.run([sys.executable, "-m", "cli.audit", "--local", str(tmp_path),
                              "--json"], cwd=REPO, env=env, capture_output=True, text=True,
                             timeout=60)
    requests = {row["request_id"] for row in json.loads(listing.stdout)
                if row["action"] == "agent:request"}
    assert {f"demo-{i:04d}" for i in range(8)} <= requests
