"""`--serve`: the run's dashboard page served live while the fleet runs."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from local.fakes.aws_server import LocalAws


class LivePage:
    """`--serve`: the dashboard page of this run, live. A thread ingests what the fleet has
    written to emf.jsonl into local CloudWatch every 2 s; the page redraws every 5 s."""

    def __init__(self, aws: LocalAws, stack, emf_path: Path) -> None:
        from local.cloudwatch.api import LocalCloudWatch
        from local.cloudwatch.dashboard import DashboardServer, DashboardView
        from local.cloudwatch.references import resolver

        self.cloudwatch = LocalCloudWatch(aws.client("cloudwatch"))
        self.started = time.time()
        self.view = DashboardView(stack.template(), self.cloudwatch,
                                  lambda: (self.started, time.time()),
                                  resolver(dict(stack.resources)), live=True)
        self.server = DashboardServer(self.view, 8050).start()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tail, args=(emf_path,), daemon=True)
        self._thread.start()
        print(f"    dashboard page, live: {self.server.url}", file=sys.__stdout__, flush=True)

    def _tail(self, path: Path) -> None:
        offset = 0
        while not self._stop.wait(2.0):
            if not path.exists():
                continue
            with open(path) as handle:
                handle.seek(offset)
                chunk = handle.read()
            complete = chunk[:chunk.rfind("\n") + 1]
            offset += len(complete.encode())
            if complete:
                self.cloudwatch.put_emf_lines(complete.splitlines())

    def serve_until_interrupted(self) -> None:
        print(f"serving the dashboard page at {self.server.url} (Ctrl-C stops)", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            self._stop.set()
            self.server.stop()

