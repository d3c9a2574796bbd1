"""Docstrings, README and the docs pages name only files, pages and sections that are in the
repository."""

from __future__ import annotations

import functools
import re
import tokenize
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
SOURCES = [*REPO.glob("*.md"), *PAGES, *REPO.glob("*.py"),
           *(p for folder in ("stacks", "policies", "lambdas", "local", "cli", "bench", "tests")
             for p in (REPO / folder).rglob("*.py"))]


def test_no_reference_to_files_outside_the_repository():
    outside = re.compile(r"(\.\./shared/|/work/shared|CLAUDE_LIMITS\.md|DESIGN\.md|STYLE\.md)")
    found = [f"{path.relative_to(REPO)}:{n}" for path in SOURCES
             for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
             if outside.search(line) and path.name != "test_repository_references.py"]
    assert found == []


def _map_block() -> str:
    page = (DOCS / "repository.md").read_text()
    section = page.split("## What is here", 1)[1].split("\n## ", 1)[0]
    return "\n".join(line for line in section.splitlines() if line.startswith("    "))


def test_the_repository_map_names_every_module_of_the_agent_and_of_local():
    block = _map_block()
    modules = [p for folder in ("lambdas/agent", "local") for p in (REPO / folder).rglob("*.py")
               if p.name not in ("__init__.py", "__main__.py")
               and p.parent.name not in ("tools", "mcp", "batch")]  # named as folders
    missing = sorted(str(p.relative_to(REPO)) for p in modules if p.name not in block)
    assert missing == []
    folders = sorted(str(p.relative_to(REPO)) for p in (REPO / "local").iterdir()
                     if p.is_dir() and p.name != "__pycache__")
    assert [f for f in folders if f"{f}/" not in block] == []


def test_every_file_the_repository_map_names_is_in_the_tree():
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
#: A README section named in quotes: `README, "Data flow"`, `README ("Documentation")`.
README_SECTION = re.compile(r"\bREADME(?:\.md)?[ ,(]{1,4}[\"']([^\"'\n]{2,80})[\"']")
#: A docs page by its path, maybe with a section in quotes: `docs/guard/bucket.md`,
#: `docs/guard/bucket.md, "Clock skew"`, `docs/agent/batch.md ("Batch lane environment")`. A path
#: right after a quote or a slash is a value, not a reference (`Key="docs/acme/runbook.md"`,
#: `s3://bucket/docs/acme/runbook.md`: tenant documents live under the same prefix).
DOCS_PAGE = re.compile(
    r"(?<![\w/$\"'])docs/([\w/-]+\.md)\b(?:[ ,(]{1,4}[\"']([^\"'\n]{2,80})[\"'])?")

#: (file, reference): references that do not resolve yet, in files other work is changing.
#: Each is renamed to the concept (or to a docs page and section that exist) when its file is
#: next edited; a fixed one must leave this list (the last test below).
DANGLING_ALLOWED: set[tuple[str, str]] = set()


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


def _headings(markdown: str) -> list[str]:
    """The headings of a Markdown page (outside code fences), lower case."""
    headings, fence = [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
        elif not fence and re.match(r"#{1,4} ", line):
            headings.append(line.lstrip("#").strip().lower())
    return headings


@functools.cache
def _sections() -> Mapping[str, list[str]]:
    """Headings per document: "README.md" and each docs page by its path under docs/."""
    return {"README.md": _headings((REPO / "README.md").read_text()),
            **{str(p.relative_to(DOCS)): _headings(p.read_text()) for p in PAGES}}


def _has_section(headings: list[str], name: str) -> bool:
    name = " ".join(name.split()).lower()
    return any(heading.startswith(name) for heading in headings)


def dangling(text: str, sections: Mapping[str, list[str]]) -> list[str]:
    """References in `text` to documents not in the repository, to README sections that no
    README heading starts with, to docs pages that do not exist or to sections that no heading
    of the page names starts with."""
    found = [m.group(0) for m in OUTSIDE_DOCUMENT.finditer(text)]
    for m in README_SECTION.finditer(text):
        if not _has_section(sections["README.md"], m.group(1)):
            found.append(f'README "{m.group(1)}"')
    for m in DOCS_PAGE.finditer(text):
        page, section = m.groups()
        if page not in sections:
            found.append(f"docs/{page}")
        elif section is not None and not _has_section(sections[page], section):
            found.append(f'docs/{page} "{section}"')
    return found


def _python_sources() -> list[Path]:
    return [p for p in SOURCES if p.suffix == ".py" and "__pycache__" not in p.parts
            and p.name != "test_repository_references.py"]


@functools.cache
def _all_dangling() -> frozenset[tuple[str, str]]:
    sections = _sections()
    texts = [(path, _text_of(path)) for path in _python_sources()]
    texts += [(path, " ".join(path.read_text().split())) for path in [REPO / "README.md", *PAGES]]
    return frozenset((str(path.relative_to(REPO)), ref) for path, text in texts
                     for ref in dangling(text, sections))


def test_comments_strings_and_pages_reference_only_documents_in_the_repository():
    new = sorted(_all_dangling() - DANGLING_ALLOWED)
    assert new == [], "name the concept, or a docs page and a section that exist"


def test_every_allowed_dangling_reference_is_still_there():
    assert sorted(DANGLING_ALLOWED - _all_dangling()) == []


def test_what_counts_as_a_dangling_reference():
    sections = {"README.md": ["clock skew", "metrics (cloudwatch emf, namespace `bulwark`)"],
                "guard/bucket.md": ["the bucket", "clock skew"]}
    assert dangling('see README, "Clock skew" and README ("Metrics")', sections) == []
    assert dangling("the contract-2 response (DESIGN contract 4), issue 13", sections) == [
        "contract-2", "DESIGN", "contract 4", "issue 13"]
    assert dangling('README "Agent Lambda environment"', sections) == [
        'README "Agent Lambda environment"']
    assert dangling('the README\'s "Clock skew" (REPO / "README.md")', sections) == []
    assert dangling("a contract between stack and Lambda; designed for retries", sections) == []
    assert dangling('see docs/guard/bucket.md, "Clock skew"; docs/guard/bucket.md', sections) == []
    assert dangling('docs/guard/bucket.md ("Scale")', sections) == ['docs/guard/bucket.md "Scale"']
    assert dangling("docs/guard/gone.md", sections) == ["docs/guard/gone.md"]
    assert dangling('Key="docs/acme/runbook.md", s3://b/docs/acme/plans.md', sections) == []


def test_the_docs_pages_are_the_ones_references_resolve_against():
    sections = _sections()
    assert _has_section(sections["guard/bucket.md"], "Clock skew")
    assert _has_section(sections["agent/index.md"], "Agent Lambda environment")
    assert "# lambdas/agent/tools/catalog.py" not in str(sections["mcp.md"])  # a code comment
