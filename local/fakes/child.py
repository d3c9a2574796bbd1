"""Local servers as child processes: started on a free loopback port, polled until ready,
stopped on exit, and gone when their parent goes (Ctrl-C or a killed test run leaves nothing).

A server module prints one line `{"port": N}` on stdout once it listens (port 0 = a free port)
and calls `exit_with_parent()`. The parent side subclasses `ChildServer`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def exit_with_parent(parent_pid: int) -> None:
    """In the child: exit as soon as the parent process is gone (checked every 0.5 s)."""
    def watch():
        while True:
            if os.getppid() != parent_pid:
                os._exit(0)
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def announce_port(port: int) -> None:
    """In the child: tell the parent where it listens."""
    print(json.dumps({"port": port}), flush=True)


class ChildServer:
    """Parent side: `start()` runs `python -m <module> <args>` from the repository root,
    reads its port and polls `probe()` until it answers; `stop()` ends it."""

    module = ""
    name = "server"

    def __init__(self, startup_timeout_s: float = 30.0) -> None:
        self.startup_timeout_s = startup_timeout_s
        self.process: subprocess.Popen | None = None
        self.port: int | None = None
        self._stderr = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def args(self) -> list[str]:
        return []

    def child_env(self) -> dict[str, str]:
        """The parent's environment, unbuffered, with the repository root and `lambdas/` (where
        `guard` is importable, as inside Lambda: the emulator reads its tier presets) first on
        PYTHONPATH."""
        path = [str(REPO_ROOT), str(REPO_ROOT / "lambdas"), os.environ.get("PYTHONPATH", "")]
        return {**os.environ, "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": os.pathsep.join(p for p in path if p)}

    def probe(self) -> None:
        """Raise URLError/ConnectionError until the server answers."""
        raise NotImplementedError

    def start(self):
        self._stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module, *self.args()], cwd=REPO_ROOT,
            env=self.child_env(), stdout=subprocess.PIPE, stderr=self._stderr, text=True)
        line = self.process.stdout.readline()
        try:
            self.port = json.loads(line)["port"]
        except (ValueError, KeyError, TypeError):
            detail = self.child_stderr()
            self.stop()
            raise RuntimeError(f"{self.name} did not start: {detail or line!r}") from None
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            try:
                self.probe()
                return self
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline or self.process.poll() is not None:
                    detail = self.child_stderr()
                    self.stop()
                    raise RuntimeError(f"{self.name} not ready on port {self.port}: {detail}")
                time.sleep(0.02)

    def child_stderr(self) -> str:
        if self.process:
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if not self._stderr:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace").strip()[-2000:]

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process and self.process.stdout:
            self.process.stdout.close()
        if self._stderr:
            self._stderr.close()
            self._stderr = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
