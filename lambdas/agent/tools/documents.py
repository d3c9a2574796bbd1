"""Read-only document tools: a tenant's documents in S3 under f"{docs_prefix}{tenant}/".

The tool builds the key from the context's tenant, and IAM checks the same thing: the tool
role may only read below `${DocsPrefix}${aws:PrincipalTag/tenant}/`, where the tenant tag is
the session tag set at AssumeRole. A bug or a prompt injection that builds another tenant's
key is refused by IAM.

Note for real S3: the tool role has no unconditioned s3:ListBucket, so GetObject of a missing
key is answered 403 (S3 hides existence from principals that cannot list); the tool then
reports "access denied", not "not found".
"""

from __future__ import annotations

import unicodedata

from .base import (
    AWS_ERRORS,
    Tool,
    ToolContext,
    ToolPermission,
    aws_error_result,
    invalid_input_result,
)

#: Longest key (characters, relative to the tenant prefix) a tool accepts.
MAX_KEY_CHARS = 512
#: Longest document text (characters) returned to Claude; the rest is cut off.
MAX_CONTENT_CHARS = 20_000
#: Bytes read from S3: enough for MAX_CONTENT_CHARS of 4-byte UTF-8 plus one character, so a
#: character cut in half by the read always lies beyond the returned text.
_MAX_READ_BYTES = 4 * (MAX_CONTENT_CHARS + 1)
#: Most keys one list_documents call returns.
MAX_LIST_KEYS = 100


def tenant_prefix(ctx: ToolContext) -> str:
    """S3 prefix holding the context tenant's documents, e.g. "docs/acme/"."""
    return f"{ctx.resources.docs_prefix}{ctx.tenant}/"


def key_problem(key: str) -> str | None:
    """Why `key` (relative to the tenant prefix) is refused, or None when it is acceptable."""
    if not isinstance(key, str) or not key:
        return "key must be a non-empty string"
    if len(key) > MAX_KEY_CHARS:
        return f"key is {len(key)} characters; the limit is {MAX_KEY_CHARS}"
    if key.startswith("/"):
        return "key must be relative to the tenant's documents (no leading '/')"
    if ".." in key:
        return "key must not contain '..'"
    if any(unicodedata.category(char) == "Cc" for char in key):
        return "key must not contain control characters"
    return None


# -- read_document ------------------------------------------------------------------------------

def _read_document(ctx: ToolContext, tool_input: dict) -> dict:
    key = tool_input.get("key")
    problem = key_problem(key)
    if problem:
        return invalid_input_result(problem)
    try:
        response = ctx.client("s3").get_object(Bucket=ctx.resources.docs_bucket,
                                               Key=tenant_prefix(ctx) + key)
        body = response["Body"]
        try:
            data = body.read(_MAX_READ_BYTES)
        finally:
            body.close()
    except AWS_ERRORS as exc:
        return aws_error_result(exc)
    text = data.decode("utf-8", errors="replace")
    size_bytes = response.get("ContentLength", len(data))
    truncated = len(text) > MAX_CONTENT_CHARS or size_bytes > len(data)
    return {"key": key, "content": text[:MAX_CONTENT_CHARS], "truncated": truncated}


def _document_target(ctx: ToolContext, tool_input: dict) -> str:
    return _list_target(ctx, tool_input) + str(tool_input.get("key", ""))


READ_DOCUMENT = Tool(
    name="read_document",
    description=("Read one of the tenant's documents as UTF-8 text (at most "
                 f"{MAX_CONTENT_CHARS:,} characters; 'truncated' says when more exists). "
                 "'key' is the document's path as list_documents returns it."),
    input_schema={
        "type": "object",
        "properties": {"key": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_CHARS,
                               "description": "Document path, e.g. 'reports/2025-q1.txt'"}},
        "required": ["key"],
        "additionalProperties": False,
    },
    permissions=(
        ToolPermission(
            sid="ReadOwnTenantDocuments",
            actions=("s3:GetObject",),
            # ${aws:PrincipalTag/tenant} is the session's tenant tag: objects under another
            # tenant's prefix do not match, and a session without the tag matches nothing.
            resources=("arn:${Partition}:s3:::${DocsBucket}/${DocsPrefix}"
                       "${aws:PrincipalTag/tenant}/*",),
            conditions={},
            why="the tenant session tag in the resource stops reads of other tenants' documents",
        ),
    ),
    run=_read_document,
    target=_document_target,
)


# -- list_documents -----------------------------------------------------------------------------

def _list_documents(ctx: ToolContext, tool_input: dict) -> dict:
    prefix = tenant_prefix(ctx)
    try:
        response = ctx.client("s3").list_objects_v2(Bucket=ctx.resources.docs_bucket,
                                                    Prefix=prefix, MaxKeys=MAX_LIST_KEYS)
    except AWS_ERRORS as exc:
        return aws_error_result(exc)
    keys = [item["Key"][len(prefix):] for item in response.get("Contents", ())
            if item["Key"].startswith(prefix)]
    return {"keys": keys[:MAX_LIST_KEYS], "truncated": bool(response.get("IsTruncated"))}


def _list_target(ctx: ToolContext, tool_input: dict) -> str:
    return f"s3://{ctx.resources.docs_bucket}/{tenant_prefix(ctx)}"


LIST_DOCUMENTS = Tool(
    name="list_documents",
    description=(f"List the tenant's documents (up to {MAX_LIST_KEYS} keys; 'truncated' says "
                 "when there are more). Keys can be passed to read_document."),
    input_schema={"type": "object", "properties": {}, "additionalProperties": False},
    permissions=(
        ToolPermission(
            sid="ListOwnTenantDocuments",
            actions=("s3:ListBucket",),
            resources=("arn:${Partition}:s3:::${DocsBucket}",),
            conditions={
                # s3:prefix must lie below the session's tenant prefix: no listing of other
                # tenants' keys, nor of the whole bucket (a request without a prefix fails).
                "StringLike": {"s3:prefix": ["${DocsPrefix}${aws:PrincipalTag/tenant}/*"]},
            },
            why="s3:prefix tied to the tenant session tag stops listing other tenants' keys",
        ),
    ),
    run=_list_documents,
    target=_list_target,
)


TOOLS = (LIST_DOCUMENTS, READ_DOCUMENT)
