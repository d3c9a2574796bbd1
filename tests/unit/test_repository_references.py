"""Docstrings and README name only files that are in the repository."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCES = [*REPO.glob("*.md"), *REPO.glob("*.py"),
           *(p for folder in ("stacks", "policies", "lambdas", "local", "cli", "bench", "tests")
             for p in (REPO / folder).rglob("*.py"))]


def test_no_reference_to_files_outside_the_repository():
    outside = re.compile(r"(\.\./shared/|/work/shared|CLAUDE_LIMITS\.md|DESIGN\.md|STYLE\.md)")
    found = [f"{path.relative_to(REPO)}:{n}" for path in SOURCES
             for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
             if outside.search(line) and path.name != "test_repository_references.py"]
    assert found == []
