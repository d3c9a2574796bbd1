"""Note tools: the agent writes and reads short notes in the tenant's DynamoDB partition.

The notes table has partition key "tenant" and sort key "note_id". The tool sets the partition
key from the context's tenant, and IAM checks the same thing: `dynamodb:LeadingKeys` must equal
the session's tenant tag, so an item in another tenant's partition cannot be written or read.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

from .base import (
    AWS_ERRORS,
    Tool,
    ToolContext,
    ToolPermission,
    aws_error_result,
    invalid_input_result,
)

NOTE_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
#: Longest note text (characters).
MAX_NOTE_CHARS = 4000

_NOTE_ID_SCHEMA = {"type": "string", "minLength": 1, "maxLength": 128,
                   "pattern": NOTE_ID_PATTERN.pattern,
                   "description": "Note name: 1-128 characters of letters, digits, '_', '.', '-'"}


def _notes_permissions(action: str) -> tuple[ToolPermission]:
    """A notes tool's IAM: one statement for every notes tool (Sid "OwnTenantNotes"; they differ
    only in `action` and are merged by Sid)."""
    return (ToolPermission(
        sid="OwnTenantNotes", actions=(action,),
        resources=("arn:${Partition}:dynamodb:${Region}:${Account}:table/${NotesTable}",),
        conditions={
            # Every partition key the request touches must equal the session's tenant tag: no
            # item in another tenant's partition can be read or written (and no untagged
            # session gets any).
            "ForAllValues:StringEquals": {
                "dynamodb:LeadingKeys": ["${aws:PrincipalTag/tenant}"]},
        },
        why="dynamodb:LeadingKeys tied to the tenant session tag stops access to other "
            "tenants' notes"),)


def iso_utc(epoch_s: float) -> str:
    """ISO 8601 UTC timestamp with milliseconds, e.g. "2027-01-15T08:00:00.000Z"."""
    moment = datetime.fromtimestamp(epoch_s, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def note_id_problem(note_id: object) -> str | None:
    if not isinstance(note_id, str) or not NOTE_ID_PATTERN.match(note_id):
        return "note_id must be 1-128 characters of letters, digits, '_', '.', '-'"
    return None


def _note_key(ctx: ToolContext, note_id: str) -> dict:
    """The note's DynamoDB key: the partition is always the context's tenant."""
    return {"tenant": {"S": ctx.tenant}, "note_id": {"S": note_id}}


def _note_target(ctx: ToolContext, tool_input: dict) -> str:
    return f"dynamodb://{ctx.resources.notes_table}/{ctx.tenant}/{tool_input.get('note_id', '')}"


# -- write_note ---------------------------------------------------------------------------------

def _write_note(ctx: ToolContext, tool_input: dict) -> dict:
    note_id, text = tool_input.get("note_id"), tool_input.get("text")
    problem = note_id_problem(note_id)
    if problem:
        return invalid_input_result(problem)
    if not isinstance(text, str) or len(text) > MAX_NOTE_CHARS:
        return invalid_input_result(f"text must be a string of at most {MAX_NOTE_CHARS} "
                                    "characters")
    created_at = iso_utc(ctx.clock())
    try:
        ctx.client("dynamodb").put_item(
            TableName=ctx.resources.notes_table,
            Item={**_note_key(ctx, note_id), "text": {"S": text},
                  "request_id": {"S": ctx.request_id}, "created_at": {"S": created_at}})
    except AWS_ERRORS as exc:
        return aws_error_result(exc)
    return {"note_id": note_id, "created_at": created_at, "written": True}


WRITE_NOTE = Tool(
    name="write_note",
    description=("Save a short note for the tenant (replaces a note with the same note_id). "
                 f"'text' is at most {MAX_NOTE_CHARS} characters."),
    input_schema={
        "type": "object",
        "properties": {"note_id": _NOTE_ID_SCHEMA,
                       "text": {"type": "string", "maxLength": MAX_NOTE_CHARS,
                                "description": "The note's text"}},
        "required": ["note_id", "text"],
        "additionalProperties": False,
    },
    permissions=_notes_permissions("dynamodb:PutItem"),
    run=_write_note,
    target=_note_target,
)


# -- read_note ----------------------------------------------------------------------------------

def _read_note(ctx: ToolContext, tool_input: dict) -> dict:
    note_id = tool_input.get("note_id")
    problem = note_id_problem(note_id)
    if problem:
        return invalid_input_result(problem)
    try:
        response = ctx.client("dynamodb").get_item(
            TableName=ctx.resources.notes_table,
            Key=_note_key(ctx, note_id),
            ConsistentRead=True)
    except AWS_ERRORS as exc:
        return aws_error_result(exc)
    item = response.get("Item")
    if item is None:
        return {"error": "not found"}
    return {"note_id": note_id, "text": item.get("text", {}).get("S", ""),
            "created_at": item.get("created_at", {}).get("S")}


READ_NOTE = Tool(
    name="read_note",
    description="Read one of the tenant's notes by note_id.",
    input_schema={"type": "object", "properties": {"note_id": _NOTE_ID_SCHEMA},
                  "required": ["note_id"], "additionalProperties": False},
    permissions=_notes_permissions("dynamodb:GetItem"),
    run=_read_note,
    target=_note_target,
)

TOOLS = (WRITE_NOTE, READ_NOTE)
