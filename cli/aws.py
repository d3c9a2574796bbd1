"""AWS clients for the operator commands and what to say when AWS cannot be reached."""

from __future__ import annotations

import argparse
import os
from typing import Any, TextIO

from botocore.exceptions import (BotoCoreError, ClientError, EndpointConnectionError,
                                 NoCredentialsError, NoRegionError, PartialCredentialsError)

#: What the AWS SDK raises for a call that failed (no credentials, unreachable, refused): the
#: commands report these with `failed` instead of a traceback.
ERRORS = (BotoCoreError, ClientError)


def clients(names: tuple[str, ...], *, region: str | None, endpoint_url: str | None = None
            ) -> dict[str, Any]:
    """boto3 clients from the default credential chain (`endpoint_url`: local AWS)."""
    import boto3

    session = boto3.Session(region_name=region)
    return {name: session.client(name, endpoint_url=endpoint_url) for name in names}


def explain(problem: Exception) -> str:
    """The problem, with a hint where botocore's own message gives none."""
    if isinstance(problem, NoRegionError):
        return ("no AWS region: pass --region REGION (the stack's region) or set AWS_REGION")
    if isinstance(problem, (NoCredentialsError, PartialCredentialsError)):
        return (f"{problem}: give credentials for the stack's account (AWS_PROFILE, "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or `aws sso login`); for local AWS "
                "pass --endpoint-url (any non-empty test credentials work there)")
    if isinstance(problem, EndpointConnectionError):
        return (f"{problem}: is the endpoint up? (local AWS: `python -m local.demo.deploy --keep` "
                "prints its URL)")
    return str(problem)


def failed(prefix: str, problem: Exception, err: TextIO) -> int:
    """Say `problem` on `err` after `prefix` ("cli.spend: ...", explained); returns the
    commands' exit status for it, 2."""
    print(f"{prefix}: {explain(problem)}", file=err)
    return 2


def add_location_arguments(p: argparse.ArgumentParser) -> None:
    """--region and --endpoint-url (default: AWS_ENDPOINT_URL): where the stack's AWS is."""
    p.add_argument("--region", help="the stack's region (default: the AWS configuration's)")
    p.add_argument("--endpoint-url", default=os.environ.get("AWS_ENDPOINT_URL"),
                   help="AWS endpoint, e.g. local AWS's http://127.0.0.1:PORT")
