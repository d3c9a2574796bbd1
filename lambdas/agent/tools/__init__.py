"""Tools the agent may call. Each tool declares the IAM it needs (`Tool.permissions`), so the
tool role's policy is built from the registry (`tool_role_statements`) and adding a tool
changes the policy in one place.

    from agent.tools import TOOLS, claude_tool_definitions, tool_role_statements

The package exports `registry.__all__`: the types of `base` and the registry's functions.
"""

from . import registry
from .registry import *  # noqa: F403

__all__ = registry.__all__
