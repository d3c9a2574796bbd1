"""The Lambda asset: `lambdas/` plus its dependencies for the Lambda platform, bundled locally.

No Docker and no network at synth: dependencies install from the wheel cache that `make` fills
from the hash-pinned `requirements/lambda.txt` (`pip download --platform manylinux2014_aarch64
--only-binary=:all:`), with `--no-index`. The asset hash covers the code, the lock and the
platform, so an unchanged tree is never bundled twice in one cloud assembly.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

REPO_ROOT = Path(__file__).resolve().parent.parent
LAMBDAS_DIR = REPO_ROOT / "lambdas"
LAMBDA_REQUIREMENTS = REPO_ROOT / "requirements" / "lambda.txt"
WHEEL_CACHE = REPO_ROOT / ".cache" / "wheels-arm64"
PLATFORM = "manylinux2014_aarch64"
PYTHON_VERSION = "3.12"
RUNTIME = lambda_.Runtime.PYTHON_3_12
ARCHITECTURE = lambda_.Architecture.ARM_64


class BundlingError(RuntimeError):
    """The asset cannot be built locally (names what is missing)."""


def _ignored(path: Path) -> bool:
    return "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo")


def source_hash() -> str:
    """Hash of everything that goes into the asset: code, lock file and target platform."""
    digest = hashlib.sha256(f"{PLATFORM}/{PYTHON_VERSION}".encode())
    for path in sorted(LAMBDAS_DIR.rglob("*")):
        if path.is_file() and not _ignored(path):
            digest.update(str(path.relative_to(LAMBDAS_DIR)).encode())
            digest.update(path.read_bytes())
    digest.update(LAMBDA_REQUIREMENTS.read_bytes())
    return digest.hexdigest()


@jsii.implements(ILocalBundling)
class LocalPythonBundler:
    """Copies `lambdas/` and pip-installs the locked wheels for arm64 Python 3.12 into the
    asset directory."""

    def try_bundle(self, output_dir: str, *, image=None, **_options) -> bool:
        if not any(WHEEL_CACHE.glob("*.whl")):
            raise BundlingError(f"no wheels in {WHEEL_CACHE}: run `make setup` (it downloads the "
                                "Lambda dependencies from requirements/lambda.txt)")
        out = Path(output_dir)
        for path in LAMBDAS_DIR.rglob("*"):
            if path.is_file() and not _ignored(path):
                target = out / path.relative_to(LAMBDAS_DIR)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
        result = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--quiet",
             "--disable-pip-version-check", "--no-index", "--find-links", str(WHEEL_CACHE),
             "--only-binary=:all:", "--platform", PLATFORM, "--python-version", PYTHON_VERSION,
             "--implementation", "cp", "--no-compile", "--target", str(out),
             "-r", str(LAMBDA_REQUIREMENTS)],
            capture_output=True, text=True)
        if result.returncode != 0:
            raise BundlingError("installing Lambda dependencies from the wheel cache failed:\n"
                                + result.stderr[-2000:])
        for cache in out.rglob("__pycache__"):
            shutil.rmtree(cache, ignore_errors=True)
        return True


def lambda_code() -> lambda_.Code:
    return lambda_.Code.from_asset(
        str(LAMBDAS_DIR),
        asset_hash_type=AssetHashType.CUSTOM,
        asset_hash=source_hash(),
        bundling=BundlingOptions(
            # Never pulled: local bundling always succeeds or raises a clear error.
            image=DockerImage.from_registry("local-bundling-only"),
            local=LocalPythonBundler()))
