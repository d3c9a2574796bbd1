"""The documentation site builds with `mkdocs build --strict`, as `make docs` runs it: a warning,
a link to a page that does not exist or an anchor that no heading makes fails the build."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
#: `make docs` (and `make test-infra`, `make setup`) installs it from requirements/docs.txt.
MKDOCS = REPO / ".venv-docs" / "bin" / "mkdocs"


def _build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    if not MKDOCS.exists():
        pytest.fail(f"{MKDOCS.relative_to(REPO)} is missing: `make docs` installs it")
    return subprocess.run(
        [str(MKDOCS), "build", "--strict", "--config-file", str(config), "--site-dir", str(site)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


def test_the_site_builds_strict_without_a_warning(tmp_path):
    result = _build(REPO / "mkdocs.yml", tmp_path / "site")
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    assert "WARNING" not in log
    assert (tmp_path / "site" / "index.html").exists()


@pytest.mark.parametrize(("link", "named"), [("[gone](no-such-page.md)", "no-such-page.md"),
                                             ("[gone](index.md#no-such-heading)", "no-such-heading")])
def test_a_broken_link_or_anchor_fails_the_build(tmp_path, link, named):
    # the same configuration and pages, the home page with one broken link more
    shutil.copy(REPO / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(REPO / "docs", tmp_path / "docs")
    home = tmp_path / "docs" / "index.md"
    home.write_text(f"{home.read_text()}\nSee {link}.\n")
    result = _build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0
    assert named in result.stdout + result.stderr
