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


def _map_block() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## What is here", 1)[1].split("\n## ", 1)[0]
    return "\n".join(line for line in section.splitlines() if line.startswith("    "))


def test_the_readme_map_names_every_module_of_the_agent_and_of_local():
    block = _map_block()
    modules = [p for folder in ("lambdas/agent", "local") for p in (REPO / folder).rglob("*.py")
               if p.name not in ("__init__.py", "__main__.py")
               and p.parent.name not in ("tools", "mcp", "batch")]  # named as folders
    missing = sorted(str(p.relative_to(REPO)) for p in modules if p.name not in block)
    assert missing == []
    folders = sorted(str(p.relative_to(REPO)) for p in (REPO / "local").iterdir()
                     if p.is_dir() and p.name != "__pycache__")
    assert [f for f in folders if f"{f}/" not in block] == []


def test_every_file_the_readme_map_names_is_in_the_tree():
    block = _map_block()
    names = set(re.findall(r"\b([a-z_]+\.(?:py|mjs))\b", block))
    present = {p.name for folder in ("stacks", "policies", "lambdas", "local", "cli", "bench",
                                     "tests") for p in (REPO / folder).rglob("*")}
    present |= {p.name for p in REPO.iterdir()}
    assert sorted(names - present) == []
