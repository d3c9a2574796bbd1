"""Tool registry: what each tool does, what input it takes and the IAM it needs.

Each `Tool` carries its own `ToolPermission`s. The CDK app builds the tool role's policy from
`tool_role_statements(...)` and the agent loop sends `claude_tool_definitions(...)` to Claude,
so adding a tool changes its schema, its code and its policy in one place.

Permissions are ARN templates. `${Partition}`, `${Region}`, `${Account}`, `${DocsBucket}`,
`${DocsPrefix}`, `${NotesTable}` and the names of the resources a tool declares in `needs`
(`ToolTable`, `ToolPrefix`: the stack creates them) are substituted when the policy is built;
IAM policy variables such as `${aws:PrincipalTag/tenant}` are kept for IAM to resolve per
request, from the session tags `credentials.assume_tool_role` sets. That is attribute-based
access control: one role serves every tenant, and the tenant tag of the session decides which
S3 prefix and which DynamoDB partition it can reach.

Runtime code here has no Lambda specifics: the boto3 session and the clock are injected
through `ToolContext`.
"""

from __future__ import annotations

import copy
from typing import Iterable, Mapping

from . import base
# The types and helpers are re-exported from here: tools and callers import them from either.
from .base import *  # noqa: F403
from .base import Tool, ToolNeed, ToolResources, substitute
from .validation import validate_tool_input

# The tools import their types from .base; the registry imports the tools after the names it
# re-exports, so a tool module written against `.registry` still imports.
from . import documents, notes

#: The package's names: base's types and helpers, and the registry's own.
__all__ = [*base.__all__, "TOOLS", "claude_tool_definitions", "declared_needs",
           "needs_from_environment", "tool_role_statements", "validate_tool_input"]


# -- the registry -------------------------------------------------------------------------------

def _register(*tools: Tool) -> dict[str, Tool]:
    registry: dict[str, Tool] = {}
    for tool in tools:
        if tool.name in registry:
            raise ValueError(f"tool {tool.name!r} is registered twice")
        registry[tool.name] = tool
    return registry


#: Every tool the agent may call, by name.
TOOLS: dict[str, Tool] = _register(*documents.TOOLS, *notes.TOOLS)


def needs_from_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """Placeholder -> physical name of every declared resource, from the Lambda variables."""
    found, missing = {}, []
    for need in declared_needs():
        value = environ.get(need.env, "").strip()
        (found.__setitem__(need.name, value) if value else missing.append(need.env))
    if missing:
        raise ValueError(f"{', '.join(missing)} not set: resources the tools declare")
    return found


def declared_needs(tools: Iterable["Tool"] | None = None) -> list[ToolNeed]:
    """Every resource the (registered) tools declare, once each; a name declared twice in two
    forms is an error."""
    needs: dict[str, ToolNeed] = {}
    for tool in TOOLS.values() if tools is None else tools:
        for need in tool.needs:
            if needs.setdefault(need.name, need) != need:
                raise ValueError(f"resource {need.name!r} is declared twice, differently")
    return list(needs.values())



# -- what Claude sees, what IAM grants ------------------------------------------------------------

def _select(names: Iterable[str] | None) -> list[Tool]:
    if names is None:
        return list(TOOLS.values())
    names = list(names)
    unknown = [name for name in names if name not in TOOLS]
    if unknown:
        raise KeyError(f"unknown tool(s) {', '.join(map(repr, unknown))}; registered: "
                       f"{', '.join(TOOLS)}")
    return [TOOLS[name] for name in dict.fromkeys(names)]


def claude_tool_definitions(names: Iterable[str] | None = None) -> list[dict]:
    """The Messages API `tools` parameter for the named tools (all when None), in order.

    The last definition carries `cache_control: {"type": "ephemeral"}`, which caches the whole
    tool block as a prompt-cache prefix (tools come first in the cached prefix).
    """
    definitions = [{"name": tool.name, "description": tool.description,
                    "input_schema": copy.deepcopy(tool.input_schema)}
                   for tool in _select(names)]
    if definitions:
        definitions[-1]["cache_control"] = {"type": "ephemeral"}
    return definitions


def tool_role_statements(partition: str, region: str, account: str,
                         resources: ToolResources,
                         names: Iterable[str] | None = None) -> list[dict]:
    """IAM policy statements for the tool role, for the named tools (all when None).

    Placeholders are substituted with the given values (strings or CDK tokens); IAM policy
    variables such as `${aws:PrincipalTag/tenant}` are kept. Permissions sharing a Sid (same
    resources and conditions) become one statement with the union of their actions.
    Each statement: Sid, Effect "Allow", Action (sorted list), Resource (list), and Condition
    when the permission has one.
    """
    values = {"Partition": partition, "Region": region, "Account": account,
              "DocsBucket": resources.docs_bucket, "DocsPrefix": resources.docs_prefix,
              "NotesTable": resources.notes_table, **resources.named}
    statements: dict[str, dict] = {}
    for tool in _select(names):
        for permission in tool.permissions:
            resource_list = [substitute(template, values) for template in permission.resources]
            condition = substitute(permission.conditions, values)
            existing = statements.get(permission.sid)
            if existing is None:
                statement = {"Sid": permission.sid, "Effect": "Allow",
                             "Action": sorted(set(permission.actions)),
                             "Resource": resource_list}
                if condition:
                    statement["Condition"] = condition
                statements[permission.sid] = statement
                continue
            if existing["Resource"] != resource_list or existing.get("Condition") != (
                    condition or None):
                raise ValueError(f"Sid {permission.sid!r} is declared twice with different "
                                 "resources or conditions; give one of them its own Sid")
            existing["Action"] = sorted(set(existing["Action"]) | set(permission.actions))
    return list(statements.values())
