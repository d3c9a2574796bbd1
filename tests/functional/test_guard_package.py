"""The guard installs with pip from the repository (pyproject.toml) and imports from there.

Offline: the wheel is built with this venv's setuptools and wheel (`pip wheel
--no-build-isolation --no-index --no-deps`) from a copy of pyproject.toml and lambdas/guard
(so the build leaves nothing in the tree), then installed into a throwaway venv with
`--no-index --no-deps` and imported from outside the repository.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(*command: str, cwd: Path) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout


def test_pip_installs_the_guard_from_a_local_path_and_it_imports(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(REPO / "lambdas" / "guard", source / "lambdas" / "guard",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "pyproject.toml", source / "pyproject.toml")
    _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-build-isolation", "--no-index",
         "--no-deps", "--wheel-dir", str(tmp_path / "dist"), str(source), cwd=tmp_path)
    [wheel] = (tmp_path / "dist").glob("bulwark-*.whl")

    target = tmp_path / "venv"
    venv.create(target, with_pip=True)
    python = target / "bin" / "python"
    _run(str(python), "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", str(wheel),
         cwd=tmp_path)
    # The venv's own interpreter, outside the repository, no PYTHONPATH: the installed copy.
    out = subprocess.run(
        [str(python), "-I", "-c", "import guard, sys; "
         "print(guard.__file__); print(guard.Limits(rpm=60, otpm=6000).rpm); "
         "print('anthropic' in sys.modules)"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    where, rpm, anthropic_loaded = out.stdout.split()
    assert "site-packages" in where and where.startswith(str(target))
    assert float(rpm) == 60
    assert anthropic_loaded == "False"  # `import guard` stays off the slow SDK import
