"""Cold-start imports of the agent Lambda, measured in fresh interpreters.

    python -m bench.cold_start [--runs 5]

Prints the median wall time of: `import guard`, `import agent.handler` (what every cold start
pays), `import anthropic` (paid on the first Claude call, or once before the snapshot when
SnapStart initialises the function), and whether importing the handler pulled in anthropic.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import json, sys, time
t = time.perf_counter()
import {module}
elapsed = time.perf_counter() - t
print(json.dumps({{"seconds": elapsed, "anthropic_loaded": "anthropic" in sys.modules}}))
"""


def measure(module: str, runs: int) -> tuple[float, bool]:
    env = {**os.environ, "PYTHONPATH": f"{REPO_ROOT}:{REPO_ROOT / 'lambdas'}",
           "POWERTOOLS_TRACE_DISABLED": "true"}
    env.pop("AWS_LAMBDA_FUNCTION_NAME", None)
    samples, loaded = [], False
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", PROBE.format(module=module)], env=env,
                             capture_output=True, text=True, check=True).stdout
        result = json.loads(out.strip().splitlines()[-1])
        samples.append(result["seconds"])
        loaded = result["anthropic_loaded"]
    return statistics.median(samples), loaded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    rows = [(name, *measure(name, args.runs)) for name in ("guard", "agent.handler",
                                                            "anthropic")]
    print(f"median of {args.runs} fresh interpreters")
    print(f"{'import':16} {'seconds':>8}  anthropic loaded")
    for name, seconds, loaded in rows:
        print(f"{name:16} {seconds:8.3f}  {loaded}")
    handler_s, sdk_s = rows[1][1], rows[2][1]
    print(f"handler import without the SDK is {handler_s / (handler_s + sdk_s):.0%} of an "
          f"eager import (handler + anthropic = {handler_s + sdk_s:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
