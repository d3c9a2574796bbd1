"""Fixed-width text tables for the operator commands (`cli.audit`, `cli.dlq`)."""

from __future__ import annotations

from collections.abc import Sequence


def cut(text: str, width: int, *, keep_end: bool = False) -> str:
    """`text` in at most `width` characters, "..." standing for what was cut: the end by
    default, the middle with `keep_end` (an ARN's or a key's tail names the thing)."""
    if len(text) <= width:
        return text
    if not keep_end:
        return text[:width - 3] + "..."
    head = (width - 3) // 2
    return text[:head] + "..." + text[-(width - 3 - head):]


def aligned(rows: Sequence[Sequence[str]], marks: Sequence[str] | None = None) -> list[str]:
    """One line per row, each column as wide as its widest cell, two spaces between columns,
    no trailing blanks; `marks`, when given, is one prefix per row, written before a space."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))] if rows else []
    lines = []
    for index, row in enumerate(rows):
        line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths))
        lines.append((f"{marks[index]} {line}" if marks is not None else line).rstrip())
    return lines
