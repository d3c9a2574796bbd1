"""Tools the agent may call. Each tool declares the IAM it needs (`Tool.permissions`), so the
tool role's policy is built from the registry (`tool_role_statements`) and adding a tool
changes the policy in one place.

    from agent.tools import TOOLS, claude_tool_definitions, tool_role_statements
"""

from .registry import (
    TOOLS,
    Tool,
    ToolContext,
    ToolNeed,
    ToolPermission,
    ToolPrefix,
    ToolResources,
    ToolTable,
    claude_tool_definitions,
    declared_needs,
    tool_role_statements,
    validate_tool_input,
)

__all__ = [
    "TOOLS",
    "Tool",
    "ToolContext",
    "ToolNeed",
    "ToolPermission",
    "ToolPrefix",
    "ToolResources",
    "ToolTable",
    "claude_tool_definitions",
    "declared_needs",
    "tool_role_statements",
    "validate_tool_input",
]
