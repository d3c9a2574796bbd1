"""No module reaches into another module's private names.

A name with one leading underscore belongs to the module that defines it. Another module may
not import it (`from m import _name`) nor read or write it on an object (`obj._attr`) unless
the module itself defines that attribute (its own classes reaching into their own instances).
What is shared is made public instead. ALLOWED lists today's exceptions, each with its reason;
any new one fails this test.

Nor does a construct look another's children up by string id (`node.find_child("AgentPolicy")`):
constructs expose their resources as attributes. FOUND_BY_ID lists the exceptions.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FOLDERS = ("lambdas", "stacks", "policies", "cli", "local", "bench")

#: (file, private name): why it is still reached into.
ALLOWED = {
    ("lambdas/guard/providers.py", "_prepare_request"):
        "the anthropic SDK's request hook (the send hook); the SDK has no public one",
    ("local/fakes/aws_server.py", "_exit"): "os._exit: the documented way a forked child ends",
    ("local/fakes/child.py", "_exit"): "os._exit: the documented way a forked child ends",
    ("local/fakes/claude_emulator/server.py", "_exit"): "os._exit: the documented way a child ends",
}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _own_names(tree: ast.AST) -> set[str]:
    """Private names the module defines: functions, classes, class and instance attributes."""
    own = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            own.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            own.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) \
                and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            own.add(node.attr)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            own.add(node.target.id)
    return {name for name in own if _private(name)}


def reaches(source: str) -> list[tuple[int, str]]:
    """(line, name) of every private name `source` takes from another module."""
    tree = ast.parse(source)
    own = _own_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            found += [(node.lineno, alias.name) for alias in node.names if _private(alias.name)]
        elif isinstance(node, ast.Attribute) and _private(node.attr) and node.attr not in own:
            if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                found.append((node.lineno, node.attr))
    return found


@functools.cache
def _found() -> dict[tuple[str, str], int]:
    """(file, private name): the first line that takes it, over the whole tree."""
    found: dict[tuple[str, str], int] = {}
    for path in sorted(p for folder in FOLDERS for p in (REPO / folder).rglob("*.py")
                       if "__pycache__" not in p.parts):
        for line, name in reaches(path.read_text()):
            found.setdefault((str(path.relative_to(REPO)), name), line)
    return found


def test_no_module_takes_another_modules_private_name():
    found = sorted(_found().items())
    new = [f"{file}:{line} uses {name}" for (file, name), line in found
           if (file, name) not in ALLOWED]
    assert new == [], "make the name public in its module instead of reaching into it"


def test_every_allowed_exception_still_exists():
    """A fixed exception leaves the allowlist, so it cannot come back unnoticed."""
    assert sorted(set(ALLOWED) - set(_found())) == []


@pytest.mark.parametrize("source, expected", [
    ("from agent.tools.registry import _substitute\n", [(1, "_substitute")]),
    ("def f(bucket):\n    return bucket._clock()\n", [(2, "_clock")]),
    ("class A:\n    def __init__(self):\n        self._x = 1\n\ndef f(a):\n    return a._x\n", []),
    ("from guard import TokenBucket\nx = TokenBucket.__name__\n", []),
])
def test_what_counts_as_reaching_in(source, expected):
    assert reaches(source) == expected


#: (file, child id): why a construct's child is still looked up by its string id.
FOUND_BY_ID = {
    ("stacks/audit.py", "LogsRole"):
        "aws-cdk-lib's cloudtrail.Trail makes its delivery role under this id and exposes no "
        "attribute for it; AuditTrail.logs_role exposes it to everyone else",
}


def found_by_id(source: str) -> list[tuple[int, str]]:
    """(line, id) of every `node.find_child("<id>")` / `try_find_child` in `source`: a
    construct reaching into another's children instead of using its attributes."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in ("find_child", "try_find_child"):
            arg = node.args[0] if node.args else None
            found.append((node.lineno, arg.value if isinstance(arg, ast.Constant)
                          else ast.unparse(arg) if arg is not None else ""))
    return found


def test_no_construct_is_reached_into_by_string_id():
    """Constructs expose their resources as attributes; nothing looks them up by id."""
    found = {(str(path.relative_to(REPO)), child): line
             for folder in FOLDERS for path in sorted((REPO / folder).rglob("*.py"))
             if "__pycache__" not in path.parts
             for line, child in found_by_id(path.read_text())}
    assert sorted(f"{file}:{line} finds {child!r}" for (file, child), line in found.items()
                  if (file, child) not in FOUND_BY_ID) == []
    assert sorted(set(FOUND_BY_ID) - set(found)) == []


def test_what_counts_as_finding_by_id():
    assert found_by_id('policy = agent.node.find_child("AgentPolicy")\n') == [(1, "AgentPolicy")]
    assert found_by_id('x = self.batch.node.try_find_child(f"{name}Policy")\n') == [
        (1, 'f\'{name}Policy\'')]
    assert found_by_id("policy = agent.policy\n") == []
