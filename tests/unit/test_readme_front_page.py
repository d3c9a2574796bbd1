"""README.md is the front page: one screen and a half, the two set-up commands on its first
screen, and CI runs the test command it shows."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
#: What a terminal shows at once, and the front page's whole budget.
FIRST_SCREEN_LINES, MOST_LINES = 30, 200


def _commands(text: str) -> list[str]:
    """The indented `make ...` lines of a text (a command block), without their comments."""
    return [m.group(1) for m in re.finditer(r"^ {4}(make [a-z-]+)\b", text, re.MULTILINE)]


def test_the_front_page_fits_its_budget():
    assert len(README.splitlines()) <= MOST_LINES


def test_the_first_screen_shows_exactly_the_two_set_up_commands():
    first_screen = "\n".join(README.splitlines()[:FIRST_SCREEN_LINES])
    assert _commands(first_screen) == ["make demo", "make test"]
    assert _commands(README) == ["make demo", "make test"]  # and no other command block


def test_ci_runs_the_readme_s_test_command():
    ci = (REPO / ".ci" / "run").read_text()
    test_command = _commands(README)[1]
    assert re.search(rf"^{re.escape(test_command)}\s*$", ci, re.MULTILINE), ci


def test_the_front_page_links_only_to_docs_pages_that_exist():
    links = re.findall(r"\]\((docs/[^)#]+)(?:#[^)]*)?\)", README)
    assert links, "the front page links into the docs"
    assert sorted(link for link in links if not (REPO / link).is_file()) == []
