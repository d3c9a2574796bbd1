"""A second Claude caller that shares Bulwark's token bucket (examples/shared_bucket).

Every call acquires from the same DynamoDB bucket item as the agent, so the organisation's
rate limit holds across both. Event: {"prompt": "...", "max_tokens": 256}; answer:
{"status": "ok", "text": ...}, {"status": "deferred", "retry_after_s": ...} or
{"status": "error", "error": {...}}.

Environment: BUCKET_TABLE (table name), BUCKET_ID (e.g. "anthropic#sonnet-4"), MODEL, RPM,
ITPM, OTPM (the organisation's limits for the model, per minute), API_KEY_SECRET_ARN.
"""

from __future__ import annotations

import os
from typing import Any

import boto3

from guard import GuardedClaude, Limits, TokenBucket

_claude: GuardedClaude | None = None


def _api_key(refresh: bool = False) -> str:
    """The Anthropic API key from Secrets Manager (read again when the guard asks to refresh)."""
    secrets = boto3.client("secretsmanager")
    return secrets.get_secret_value(SecretId=os.environ["API_KEY_SECRET_ARN"])["SecretString"]


def claude() -> GuardedClaude:
    """The guarded client, built once per execution environment."""
    global _claude
    if _claude is None:
        limits = Limits(int(os.environ["RPM"]), int(os.environ["ITPM"]), int(os.environ["OTPM"]))
        bucket = TokenBucket(os.environ["BUCKET_TABLE"], os.environ["BUCKET_ID"], limits,
                             boto3.client("dynamodb"))
        _claude = GuardedClaude({os.environ["MODEL"]: bucket}, api_key=_api_key)
    return _claude


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    prompt = event.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        return {"status": "error", "error": {"type": "bad_request",
                                             "message": "prompt must be a non-empty string"}}
    max_tokens = event.get("max_tokens", 256)
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        return {"status": "error", "error": {"type": "bad_request",
                                             "message": "max_tokens must be a positive integer"}}
    result = claude().create(model=os.environ["MODEL"], max_tokens=max_tokens,
                             messages=[{"role": "user", "content": prompt}], deadline_s=20)
    if result.status == "ok":
        text = "".join(block.text for block in result.message.content
                       if getattr(block, "type", "") == "text")
        return {"status": "ok", "text": text}
    if result.status == "deferred":
        return {"status": "deferred", "retry_after_s": result.retry_after,
                "reason": result.reason}
    return {"status": "error", "error": result.error}
