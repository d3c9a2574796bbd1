"""The docs pages are written for Python-Markdown (MkDocs), which reads a list item's
continuation (a second paragraph, a code block, a table) only when it is indented 4 spaces:
GitHub's 2 or 3 spaces would break the list out of its item on the site."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"


def misindented(markdown: str) -> list[int]:
    """Line numbers of list-item continuation lines indented 1-3 spaces."""
    found, in_item, fence = [], False, False
    for n, line in enumerate(markdown.splitlines(), 1):
        if not in_item and line.startswith("```"):
            fence = not fence
        if not fence and re.match(r"(\d+\.|[-*]) ", line):
            in_item = True
        elif in_item and line.strip():
            indent = len(line) - len(line.lstrip(" "))
            if indent == 0:
                in_item = False
                fence = line.startswith("```")
            elif indent < 4:
                found.append(n)
    return found


def test_list_items_continue_at_four_spaces():
    bad = {str(p.relative_to(DOCS)): lines for p in sorted(DOCS.rglob("*.md"))
           if (lines := misindented(p.read_text()))}
    assert bad == {}


def test_what_counts_as_misindented():
    assert misindented("1. step\n   more\n\n   | a | b |\n2. next\n") == [2, 4]
    assert misindented("1. step\n    more\n\n        code\n2. next\n\nafter\n  x\n") == []
    assert misindented("```\n- not a list\n  x\n```\n") == []
