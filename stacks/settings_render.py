"""docs/configuration.md's reference table, rendered from the settings' `SCHEMA`
(`python -m stacks.settings` prints it)."""

from __future__ import annotations

import re
from typing import Mapping

from .settings_schema import PROVIDER_KEYS, REQUIRED, SCHEMA, Key

def _default_text(key: Key) -> str:
    if key.default is REQUIRED:
        return "required"
    if key.default is None:
        return "-"
    if isinstance(key.default, tuple):
        return ", ".join(map(str, key.default)) or "none"
    return str(key.default).lower() if isinstance(key.default, bool) else str(key.default)


def _linked(doc: str) -> str:
    """`doc` with each docs page it names (`docs/tenants.md`) as a link from docs/."""
    return re.sub(r"\bdocs/([\w/-]+\.md)\b", r"[\1](\1)", doc)


def reference_table() -> str:
    """docs/configuration.md's reference table, rendered from `SCHEMA` (`python -m
    stacks.settings`); a docs page named in a meaning becomes a link to it."""
    rows = ["| context key | meaning | default |", "|---|---|---|"]

    def walk(schema: Mapping[str, Key], prefix: str) -> None:
        for name, key in schema.items():
            path = prefix + name
            only = f" ({key.provider} only)" if key.provider else ""
            if name == "provider_defaults":
                rows.append(f"| `{path}` | {key.doc}: a top-level key of the same name "
                            "overrides it | cdk.json |")
                continue
            default = "provider_defaults" if name in PROVIDER_KEYS and not prefix \
                else _default_text(key)
            rows.append(f"| `{path}` | {_linked(key.doc)}{only} | {default} |")
            if key.keys:
                walk(key.keys, path + ".")
            if key.each:
                walk(key.each, path + ".<id>.")

    walk(SCHEMA, "")
    return "\n".join(rows)
