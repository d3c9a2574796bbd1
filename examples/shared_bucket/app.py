#!/usr/bin/env python3
"""A CDK app of its own whose function calls Claude through the bucket Bulwark deployed.

Rate limits are per organisation: this second caller must acquire from the same bucket items
as the agent, or the two together exceed them. From the repository root:

    npx cdk synth --app "python3 examples/shared_bucket/app.py" \\
        -c bucket_table_arn=arn:aws:dynamodb:us-east-1:123456789012:table/<BucketTable output> \\
        -c data_key_arn=arn:aws:kms:us-east-1:123456789012:key/<id> \\
        -c api_key_secret_arn=<ApiKeySecretArn output> \\
        -c bucket_id=anthropic#sonnet-4 -c model=claude-sonnet-4-6 -c rpm=50 -c itpm=30000 -c otpm=8000

The function's code is Bulwark's Lambda asset (the `guard` package and its locked
dependencies, `stacks/packaging.py`) plus `caller/handler.py`.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path[:0] = [str(REPO), str(REPO / "lambdas")]

import aws_cdk as cdk  # noqa: E402
import jsii  # noqa: E402
from aws_cdk import aws_lambda as lambda_  # noqa: E402
from aws_cdk import aws_secretsmanager as secretsmanager  # noqa: E402
from constructs import Construct  # noqa: E402

from stacks.bucket_table import GuardBucketTable  # noqa: E402
from stacks.packaging import ARCHITECTURE, RUNTIME, LocalPythonBundler, source_hash  # noqa: E402

HANDLER = HERE / "caller" / "handler.py"
#: context keys the app needs, and what each is
CONTEXT = {"bucket_table_arn": "ARN of the table Bulwark's BucketTable output names",
           "api_key_secret_arn": "Bulwark's ApiKeySecretArn output",
           "bucket_id": "the bucket item to share, e.g. anthropic#sonnet-4",
           "model": "the model id the function calls", "rpm": "requests per minute",
           "itpm": "input tokens per minute", "otpm": "output tokens per minute"}


@jsii.implements(cdk.ILocalBundling)
class CallerBundler(LocalPythonBundler):
    """Bulwark's Lambda asset plus the caller's handler at its root."""

    def try_bundle(self, output_dir: str, *, image=None, **options) -> bool:
        super().try_bundle(output_dir, image=image, **options)
        shutil.copy2(HANDLER, Path(output_dir) / "caller.py")
        return True


def caller_code() -> lambda_.Code:
    digest = source_hash() + HANDLER.read_text()
    return lambda_.Code.from_asset(
        str(HERE / "caller"), asset_hash_type=cdk.AssetHashType.CUSTOM, asset_hash=digest,
        bundling=cdk.BundlingOptions(image=cdk.DockerImage.from_registry("local-bundling-only"),
                                     local=CallerBundler()))


class SharedBucketCallerStack(cdk.Stack):
    """One function, its role allowed to acquire from one bucket of the shared table."""

    def __init__(self, scope: Construct, id: str, *, context: dict[str, str], **kwargs) -> None:
        super().__init__(scope, id, **kwargs)
        buckets = GuardBucketTable(self, "SharedBucket", table_arn=context["bucket_table_arn"],
                                   key_arn=context.get("data_key_arn"))
        secret = secretsmanager.Secret.from_secret_complete_arn(
            self, "ApiKey", context["api_key_secret_arn"])
        self.function = lambda_.Function(
            self, "Caller", runtime=RUNTIME, architecture=ARCHITECTURE, code=caller_code(),
            handler="caller.handler", timeout=cdk.Duration.seconds(30), memory_size=512,
            environment={"BUCKET_TABLE": buckets.table.table_name,
                         "BUCKET_ID": context["bucket_id"], "MODEL": context["model"],
                         "RPM": str(context["rpm"]), "ITPM": str(context["itpm"]),
                         "OTPM": str(context["otpm"]), "API_KEY_SECRET_ARN": secret.secret_arn})
        buckets.grant_acquire(self.function, [context["bucket_id"]])
        secret.grant_read(self.function)


def build_app(context: dict | None = None, outdir: str | None = None
              ) -> tuple[cdk.App, SharedBucketCallerStack]:
    """The app; `context` as `-c` gives it (tests pass it in-process)."""
    app = cdk.App(context=context, outdir=outdir)
    values = {key: app.node.try_get_context(key) for key in (*CONTEXT, "data_key_arn")}
    missing = [f"{key} ({CONTEXT[key]})" for key in CONTEXT if values[key] in (None, "")]
    if missing:
        raise SystemExit("missing context: " + "; ".join(missing))
    stack = SharedBucketCallerStack(app, "SharedBucketCaller", context=values)
    return app, stack


if __name__ == "__main__":
    build_app()[0].synth()
