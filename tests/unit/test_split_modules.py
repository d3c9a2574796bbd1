"""Modules split by job keep the names other code imports from them: every `from M import ...`
in the repository, for each module M in SPLIT, resolves."""

from __future__ import annotations

import ast
import functools
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
#: Modules whose parts moved to modules of their own; they re-export what others import.
SPLIT = ("guard.budget", "guard.client", "guard.pools", "local.demo.run")
SOURCES = ("app.py", "bench", "cli", "examples", "lambdas", "local", "policies", "stacks",
           "tests")


@functools.cache
def _from_imports() -> tuple[tuple[str, str, str], ...]:
    """(file, module, name) for every `from module import name` in the repository's code."""
    found = []
    for root in SOURCES:
        path = REPO / root
        for file in [path] if path.is_file() else sorted(path.rglob("*.py")):
            if "node_modules" in file.parts:
                continue
            for node in ast.walk(ast.parse(file.read_text(), str(file))):
                if isinstance(node, ast.ImportFrom) and node.module in SPLIT:
                    found += [(str(file.relative_to(REPO)), node.module, alias.name)
                              for alias in node.names]
    return tuple(found)


def _imports_of(module: str) -> list[tuple[str, str]]:
    """(file, name) for every name a repository file imports from `module`."""
    return [(file, name) for file, source, name in _from_imports() if source == module]


@pytest.mark.parametrize("module", SPLIT)
def test_every_name_imported_from_a_split_module_is_still_there(module):
    imported = _imports_of(module)
    assert imported, f"nothing imports from {module}: drop it from SPLIT"
    loaded = importlib.import_module(module)
    assert [(file, name) for file, name in imported if not hasattr(loaded, name)] == []


@pytest.mark.parametrize("module", SPLIT)
def test_a_split_module_lists_what_it_re_exports(module):
    loaded = importlib.import_module(module)
    assert sorted(name for name in loaded.__all__ if not hasattr(loaded, name)) == []
    assert {name for _, name in _imports_of(module)} <= set(loaded.__all__)
