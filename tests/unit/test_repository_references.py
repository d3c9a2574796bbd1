"""Docstrings and README name only files that are in the repository."""

from __future__ import annotations

import functools
import re
import tokenize
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


# -- comments and strings name documents that exist ---------------------------------------------

#: A reference to a document that is not in the repository: numbered design contracts, the
#: design document, issue numbers.
OUTSIDE_DOCUMENT = re.compile(r"\bcontract[ -]?\d+\b|\bDESIGN\b|\bissue\s+#?\d+", re.IGNORECASE)
#: A README section named in quotes: `README, "Clock skew"`, `README ("Batch lane")`.
README_SECTION = re.compile(r"\bREADME(?:\.md)?[ ,(]{1,4}[\"']([^\"'\n]{2,80})[\"']")

#: (file, reference): today's references that do not resolve, in files other work is changing.
#: Each is renamed to the concept (or to a README section that exists) when its file is next
#: edited; a fixed one must leave this list (the last test below).
DANGLING_ALLOWED = {
    ("lambdas/agent/telemetry.py", "Contract 4"), ("lambdas/agent/telemetry.py", "contract-4"),
    ("lambdas/agent/contract.py", "DESIGN"), ("lambdas/agent/contract.py", "contract 4"),
    ("lambdas/agent/requests.py", "contract 2"), ("lambdas/agent/requests.py", "contract-2"),
    ("lambdas/agent/results.py", "contract 2"), ("lambdas/agent/results.py", "contract-2"),
    ("lambdas/agent/handler.py", "contract 2"), ("lambdas/agent/handler.py", "contract-2"),
    ("lambdas/agent/config.py", 'README "Agent Lambda environment"'),
    ("lambdas/agent/contract.py", 'README "Agent Lambda environment"'),
    ("lambdas/agent/batch/handler.py", 'README "Batch lane environment"'),
    ("stacks/monitoring.py", "contract-4"), ("stacks/monitoring.py", "Contract-4"),
    ("stacks/monitoring.py", "issue 13"), ("stacks/bulwark_stack.py", "issue 13"),
    ("stacks/metrics.py", "Contract-4"), ("stacks/metrics.py", "contract-4"),
}


def _text_of(path: Path) -> str:
    """The comments and string literals of a Python file, whitespace collapsed (a reference
    wrapped over lines reads as one)."""
    parts, comment = [], []
    with path.open("rb") as f:
        for token in tokenize.tokenize(f.readline):
            if token.type == tokenize.COMMENT:
                comment.append(token.string.lstrip("#:").strip())
                continue
            if token.type in (tokenize.NL, tokenize.NEWLINE) and comment:
                continue
            if comment:
                parts.append(" ".join(comment))
                comment = []
            if token.type == tokenize.STRING or token.type == getattr(tokenize, "FSTRING_MIDDLE",
                                                                        None):
                parts.append(token.string)
    parts.append(" ".join(comment))
    return " ".join(" ".join(parts).split())


def _readme_sections() -> list[str]:
    return [line.lstrip("#").strip().lower() for line in
            (REPO / "README.md").read_text().splitlines() if re.match(r"#{2,4} ", line)]


def dangling(text: str, sections: list[str]) -> list[str]:
    """References in `text` to documents not in the repository, or to README sections that
    no README heading starts with."""
    found = [m.group(0) for m in OUTSIDE_DOCUMENT.finditer(text)]
    for m in README_SECTION.finditer(text):
        name = " ".join(m.group(1).split()).lower()
        if not any(section.startswith(name) for section in sections):
            found.append(f'README "{m.group(1)}"')
    return found


def _python_sources() -> list[Path]:
    return [p for p in SOURCES if p.suffix == ".py" and "__pycache__" not in p.parts
            and p.name != "test_repository_references.py"]


@functools.cache
def _all_dangling() -> frozenset[tuple[str, str]]:
    sections = _readme_sections()
    return frozenset((str(path.relative_to(REPO)), ref) for path in _python_sources()
                     for ref in dangling(_text_of(path), sections))


def test_comments_and_strings_reference_only_documents_in_the_repository():
    new = sorted(_all_dangling() - DANGLING_ALLOWED)
    assert new == [], "name the concept, or a README section that exists"


def test_every_allowed_dangling_reference_is_still_there():
    assert sorted(DANGLING_ALLOWED - _all_dangling()) == []


def test_what_counts_as_a_dangling_reference():
    sections = ["clock skew", "metrics (cloudwatch emf, namespace `bulwark`)"]
    assert dangling('see README, "Clock skew" and README ("Metrics")', sections) == []
    assert dangling("the contract-2 response (DESIGN contract 4), issue 13", sections) == [
        "contract-2", "DESIGN", "contract 4", "issue 13"]
    assert dangling('README "Agent Lambda environment"', sections) == [
        'README "Agent Lambda environment"']
    assert dangling('the README\'s "Clock skew" (REPO / "README.md")', sections) == []
    assert dangling("a contract between stack and Lambda; designed for retries", sections) == []
