"""Where the demo's output goes while the handlers run in-process: stdout routed to files by
kind, the guard's log records counted for the report, and the progress line on stderr."""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import threading
import time
from collections import Counter


class LineRouter(io.TextIOBase):
    """Stands in for stdout while the handlers run: EMF documents, audit records and other
    log lines go to their own files (the real stdout stays free for the progress line)."""

    def __init__(self, emf, audit, logs) -> None:
        self._files = (emf, audit, logs)
        self._partial = ""
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            self._partial += text
            *lines, self._partial = self._partial.split("\n")
            for line in lines:
                if line.startswith('{"_aws"'):
                    self._files[0].write(line + "\n")
                elif '"audit":"tool_call"' in line.replace(" ", ""):
                    self._files[1].write(line + "\n")
                elif line.strip():
                    self._files[2].write(line + "\n")
        return len(text)

    def flush(self) -> None:
        for handle in self._files:
            handle.flush()


class GuardLogCounter(logging.Handler):
    """Takes the guard's log records while the fleet runs: each is counted by its message
    (store errors under --dynamodb-throttle, settle failures...) and written to agent.log, so
    the report gives totals instead of a log line per error across the progress bar."""

    def __init__(self, log_file) -> None:
        super().__init__(logging.INFO)
        self.counts: Counter = Counter()
        self._file = log_file

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[str(record.msg).split(":")[0]] += 1
        self._file.write(self.format(record) + "\n")

    @contextlib.contextmanager
    def capturing(self):
        logger = logging.getLogger("guard")
        propagate = logger.propagate
        logger.addHandler(self)
        logger.propagate = False
        try:
            yield self
        finally:
            logger.removeHandler(self)
            logger.propagate = propagate


def progress(done: int, total: int, started: float, extra: str = "") -> None:
    """The progress line on stderr: `done` of `total`, seconds since `started` (monotonic)."""
    width = 30
    filled = int(width * done / max(1, total))
    sys.__stderr__.write(f"\r  [{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
                         f"{time.monotonic() - started:5.1f}s {extra}   ")
    sys.__stderr__.flush()

