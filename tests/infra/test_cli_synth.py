"""The real CDK CLI on a fresh checkout's terms: `npx cdk synth -c provider=bedrock` works on
its own and prints nothing a user need not act on (one synth, ~25 s)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: progress lines the CDK prints that ask nothing of the user (not printed here: the asset is
#: reused)
_PROGRESS = ("Bundling asset ",)


def test_cdk_synth_with_provider_bedrock_alone_is_clean(tmp_path, dev):
    from tests.infra.conftest import reuse_assets

    reuse_assets(dev, tmp_path / "cdk.out")  # no second bundling of the same asset
    env = {k: v for k, v in os.environ.items()
           if k not in ("CDK_DEFAULT_ACCOUNT", "CDK_DEFAULT_REGION")
           and not k.startswith("JSII_")}  # no silencing: a banner would show
    env.update({"CDK_DISABLE_VERSION_CHECK": "1", "CDK_DISABLE_CLI_TELEMETRY": "true"})
    result = subprocess.run(
        ["npx", "cdk", "synth", "-q", "-c", "provider=bedrock", "--no-notices",
         "--output", str(tmp_path / "cdk.out")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    noise = [line for line in (result.stdout + result.stderr).splitlines()
             if line.strip() and not line.startswith(_PROGRESS)]
    assert noise == []
    template = json.loads((tmp_path / "cdk.out" / "Bulwark-dev.template.json").read_text())
    [function] = [r for r in template["Resources"].values()  # the agent: not the breaker
                  if r["Type"] == "AWS::Lambda::Function"
                  and r["Properties"].get("Handler") != "agent.runaway.handler"]
    variables = function["Properties"]["Environment"]["Variables"]
    assert variables["PROVIDER"] == "bedrock"
    assert variables["DEFAULT_MODEL"].startswith("us.anthropic.")
    assert "API_KEY_SECRET_ARN" not in variables
