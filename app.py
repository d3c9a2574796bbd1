#!/usr/bin/env python3
"""CDK entry point: reads and validates the context once, builds the stack, registers cdk-nag.

    cdk synth -c stage=prod -c tier=build
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "lambdas"))  # tool registry

import aws_cdk as cdk  # noqa: E402
from cdk_nag import AwsSolutionsChecks, ServerlessChecks  # noqa: E402

from stacks.bulwark_stack import BulwarkStack  # noqa: E402
from stacks.settings import SettingsError, load_settings, report_settings_error  # noqa: E402


def build_app(context: dict | None = None, outdir: str | None = None) -> tuple[cdk.App,
                                                                             BulwarkStack]:
    """The app with its stack. Under the CDK CLI the context (cdk.json + `-c`) comes from the
    CLI; in-process callers (tests) pass `context`, applied over cdk.json's defaults."""
    if context is not None:
        defaults = json.loads((Path(__file__).resolve().parent / "cdk.json").read_text())
        context = {**defaults.get("context", {}), **context}
    app = cdk.App(context=context, outdir=outdir)
    region = os.environ.get("CDK_DEFAULT_REGION")
    settings = load_settings(app.node.get_all_context(), region=region)
    env = cdk.Environment(account=os.environ.get("CDK_DEFAULT_ACCOUNT"),
                          region=region or settings.allowed_regions[0])
    stack = BulwarkStack(app, f"Bulwark-{settings.stage}", settings=settings, env=env)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app), ServerlessChecks(app))
    return app, stack


def main() -> int:
    try:
        app, _ = build_app()
    except SettingsError as err:
        report_settings_error(err)
        return 1
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
