"""Synthesize the app once per session per configuration (each synth costs ~10 s)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("CDK_DEFAULT_ACCOUNT", "123456789012")
os.environ.setdefault("CDK_DEFAULT_REGION", "us-east-1")

#: Bedrock in one step: `-c provider=bedrock` and nothing else Bedrock-specific takes cdk.json's
#: provider defaults (the prod stage and an alarm e-mail are this fixture's own choices).
_BEDROCK_DEFAULTS = json.loads((Path(__file__).resolve().parents[2] / "cdk.json").read_text())[
    "context"]["provider_defaults"]["bedrock"]
BEDROCK_PROFILE = _BEDROCK_DEFAULTS["default_model"]
BEDROCK_CONTEXT = {"stage": "prod", "provider": "bedrock",
                   "alarms": {"email": "oncall@example.com"}}

#: Capacity pools: one logical model on Bedrock, served by a "us." profile called in the deploy
#: region, the same profile in us-west-2 at the flex tier, and a foundation model in eu-west-1.
POOL_PROFILE = "us.anthropic.claude-sonnet-4-6"
POOL_EU_MODEL = "anthropic.claude-haiku-4-5-20251001-v1:0"
POOLS_CONTEXT = {
    "provider": "bedrock", "default_model": "sonnet", "degrade_model": "",
    "models": {"sonnet": {"prices": {"input": 3, "output": 15}, "pools": [
        {"provider": "bedrock", "model": POOL_PROFILE, "region": "us-east-1", "tpm": 200000,
         "rpm": 200},
        {"provider": "bedrock", "model": POOL_PROFILE, "region": "us-west-2", "tpm": 100000,
         "rpm": 100, "service_tier": "flex", "prices": {"input": 1.5, "output": 7.5}},
        {"provider": "bedrock", "model": POOL_EU_MODEL, "region": "eu-west-1", "tpm": 50000,
         "rpm": 50}]}}}


#: The pools page: its worked examples are contexts the tests load and synthesize.
POOLS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "guard" / "pools.md"


def pools_page_example(name: str) -> dict:
    """The context of the worked example `name` on docs/guard/pools.md: the ```json block
    after the line `<!-- pools-example: name -->`."""
    text = POOLS_PAGE.read_text()
    marker = f"<!-- pools-example: {name} -->\n```json\n"
    if marker not in text:
        raise LookupError(f"docs/guard/pools.md has no example {name!r} (a json block after "
                          f"{marker.splitlines()[0]!r})")
    body = text.split(marker, 1)[1].split("\n```", 1)[0]
    return json.loads(body)


def reuse_assets(synth: "Synthesized", outdir: Path) -> Path:
    """Link an earlier synth's bundled assets into `outdir`: the CDK skips bundling an asset
    whose directory exists (the hash covers the code and the lock), saving ~20 s a synth."""
    outdir.mkdir(parents=True, exist_ok=True)
    for asset in synth.outdir.glob("asset.*"):
        (outdir / asset.name).symlink_to(asset.resolve(), target_is_directory=asset.is_dir())
    return outdir


class Synthesized:
    def __init__(self, context: dict, outdir: Path) -> None:
        import app
        from aws_cdk.assertions import Template

        cdk_app, self.stack = app.build_app(context, outdir=str(outdir))
        assembly = cdk_app.synth()
        self.outdir = outdir
        self.template_path = outdir / f"{self.stack.stack_name}.template.json"
        self.json = json.loads(self.template_path.read_text())
        self.template = Template.from_json(self.json)  # from_stack would synthesize again
        report = outdir / "validation-report.json"
        self.validation = json.loads(report.read_text()) if report.exists() else {}
        self.assembly = assembly

    def resources(self, type_: str) -> dict[str, dict]:
        return {k: v for k, v in self.json["Resources"].items() if v["Type"] == type_}


@pytest.fixture(scope="session")
def dev(tmp_path_factory) -> Synthesized:
    """The default app (cdk.json): dev stage, Anthropic API."""
    return Synthesized({}, tmp_path_factory.mktemp("cdk-dev"))


@pytest.fixture(scope="session")
def prod_bedrock(tmp_path_factory, dev) -> Synthesized:
    """prod stage on Bedrock (cdk.json's Bedrock defaults) with an alarm e-mail."""
    return Synthesized(BEDROCK_CONTEXT, reuse_assets(dev, tmp_path_factory.mktemp("cdk-prod")))


@pytest.fixture(scope="session")
def pooled(tmp_path_factory, dev) -> Synthesized:
    """Bedrock with one model served by capacity pools (POOLS_CONTEXT)."""
    return Synthesized(POOLS_CONTEXT, reuse_assets(dev, tmp_path_factory.mktemp("cdk-pools")))


@pytest.fixture(scope="session")
def pooled_api_bedrock(tmp_path_factory, dev) -> Synthesized:
    """The Anthropic API with a Bedrock pool beside it, as docs/guard/pools.md's example
    "anthropic-api-plus-bedrock" configures it."""
    return Synthesized(pools_page_example("anthropic-api-plus-bedrock"),
                       reuse_assets(dev, tmp_path_factory.mktemp("cdk-pools-api")))
