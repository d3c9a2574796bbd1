"""AWS clients for the operator commands and what to say when AWS cannot be reached."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import (BotoCoreError, EndpointConnectionError, NoCredentialsError,
                                 NoRegionError, PartialCredentialsError)


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
    if isinstance(problem, BotoCoreError):
        return str(problem)
    return str(problem)
