"""Checking a tool's input against its JSON Schema before the tool runs (the subset of JSON
Schema the tools use)."""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping

from .base import Tool

_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda value: isinstance(value, str),
    "integer": lambda value: isinstance(value, int) and not isinstance(value, bool),
    "boolean": lambda value: isinstance(value, bool),
    "object": lambda value: isinstance(value, dict),
}


def validate_tool_input(tool: Tool, tool_input: Any) -> str | None:
    """Check `tool_input` against the tool's schema; a message naming the problem, or None.

    Supports the subset the tools use: top-level "object" with "required",
    "additionalProperties": false, and per-property "type" (string, integer, boolean,
    object), "minLength", "maxLength" (characters) and "pattern" (regular expression search).
    """
    return _check(tool.input_schema, tool_input, "input")


def _check(schema: Mapping[str, Any], value: Any, where: str) -> str | None:
    expected = schema.get("type")
    if expected is not None:
        is_type = _JSON_TYPES.get(expected)
        if is_type is None:
            return f"{where}: schema type {expected!r} is not supported"
        if not is_type(value):
            return f"{where} must be of type {expected}, got {_json_type_name(value)}"
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            return f"{where} must be at least {schema['minLength']} characters"
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return (f"{where} is {len(value)} characters; the limit is "
                    f"{schema['maxLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return f"{where} must match {schema['pattern']}"
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key in schema.get("required", ()):
            if key not in value:
                return f"{where}: missing required field {key!r}"
        if schema.get("additionalProperties") is False:
            for key in value:
                if key not in properties:
                    return f"{where}: unexpected field {key!r}"
        for key, sub_schema in properties.items():
            if key in value:
                problem = _check(sub_schema, value[key], f"field {key!r}")
                if problem:
                    return problem
    return None


#: JSON type names by Python type, checked in order: bool before int (a bool is an int).
_JSON_TYPE_NAMES = ((type(None), "null"), (bool, "boolean"), (int, "integer"),
                    (float, "number"), (str, "string"), (list, "array"), (dict, "object"))


def _json_type_name(value: Any) -> str:
    """The JSON type of a decoded value ("null", "array", ...); the Python type's name for a
    value JSON has no type for."""
    return next((name for kind, name in _JSON_TYPE_NAMES if isinstance(value, kind)),
                type(value).__name__)
