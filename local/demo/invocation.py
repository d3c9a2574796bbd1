"""How the demo invokes the deployed handlers in-process: a Lambda context, and Function URL
(AWS_IAM) request events signed by a session of a tenant's role."""

from __future__ import annotations

import json
import time


class LambdaContext:
    """A Lambda context for in-process invocations."""

    def __init__(self, function_name: str, remaining_ms: int = 120_000) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = (f"arn:aws:lambda:us-east-1:123456789012:function:"
                                     f"{function_name}")
        self.memory_limit_in_mb = 1024
        self.aws_request_id = "demo"
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "demo"
        self._deadline = time.monotonic() + remaining_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return int((self._deadline - time.monotonic()) * 1000)


def session_arn(role_arn: str, session: str) -> str:
    """The ARN a Function URL reports for a session of `role_arn` (assumed-role ARNs drop the
    role's path)."""
    name = role_arn.rpartition("/")[2]
    account = role_arn.split(":")[4]
    return f"arn:aws:sts::{account}:assumed-role/{name}/{session}"


def function_url_event(body: dict, caller_arn: str | None) -> dict:
    """A Function URL (AuthType AWS_IAM, payload format 2.0) request event: the JSON `body`,
    signed by `caller_arn` (requestContext.authorizer.iam.userArn; None: unsigned)."""
    context: dict = {"http": {"method": "POST", "path": "/"}}
    if caller_arn is not None:
        context["authorizer"] = {"iam": {"userArn": caller_arn,
                                         "accountId": caller_arn.split(":")[4]}}
    return {"version": "2.0", "rawPath": "/", "body": json.dumps(body),
            "isBase64Encoded": False, "requestContext": context}

