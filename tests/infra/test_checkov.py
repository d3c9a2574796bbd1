"""checkov on the synthesized templates: 0 failed checks; every skip sits on its resource with
a reason. checkov runs from its own venv (`make setup`: .venv-checkov, requirements/
checkov.txt) and offline: no platform download, no mapping or guideline API, no GitHub
config fetch, and a proxy that goes nowhere, so any attempt would fail rather than leak."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"
OFFLINE = {"BC_SKIP_MAPPING": "TRUE", "CKV_GITHUB_CONFIG_FETCH_DATA": "False",
           "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
           "NO_PROXY": "", "LOG_LEVEL": "WARNING"}


def test_checkov_reports_no_failed_check_and_every_skip_has_a_reason(dev, prod_bedrock):
    assert CHECKOV.exists(), "run `make setup` (it installs checkov into .venv-checkov)"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BC_", "PRISMA_"))}
    result = subprocess.run(
        [str(CHECKOV), "--framework", "cloudformation", "--skip-download", "--quiet",
         "--compact", "-o", "json", "-f", str(dev.template_path),
         str(prod_bedrock.template_path)],
        env={**env, **OFFLINE}, capture_output=True, text=True, timeout=300)
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [(c["check_id"], c["resource"]) for r in reports
              for c in r["results"]["failed_checks"]]
    assert failed == []
    summary = [r["summary"] for r in reports]
    assert sum(s["parsing_errors"] for s in summary) == 0, summary
    # 3 in each template, + CKV_AWS_117 on the batch collector and poller (Anthropic only)
    # and CKV_AWS_116 and 117 on the runaway breaker (each template)
    assert sum(s["skipped"] for s in summary) == 12, summary
    assert sum(s["resource_count"] for s in summary) > 80, summary
    # --quiet leaves passed and skipped checks out of the report: the skips are read from the
    # templates, where checkov reads them too (no failure above means each one applied).
    skipped = {skip["id"] for synth in (dev, prod_bedrock)
               for resource in synth.json["Resources"].values()
               for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])}
    assert skipped == {"CKV_AWS_18", "CKV_AWS_116", "CKV_AWS_117"}
    for synth in (dev, prod_bedrock):
        for resource in synth.json["Resources"].values():
            for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
                assert len(skip["comment"]) > 40, skip
    assert "Failed to get" not in result.stderr  # no network attempt was made
