"""`make test`'s runner: every tier in two pytest processes at once.

    python -m tests.run_parallel [--cpu-workers 3] [--wall-workers 1] [pytest arguments ...]

The tests marked `wallclock` (tests/conftest.py, `WALL_CLOCK_MODULES`: callers at published
rates on the real clock, whose assertions hold only while each caller gets the CPU when it
wakes) run in one process on `--wall-workers` pytest-xdist workers at normal priority; every
other test (synths, deploys, checkov, the simulated-clock replays) runs in the other on
`--cpu-workers` workers at `nice` 10, so it takes the CPU the first leaves idle and never the
CPU a wall-clock caller waits for. Both hand out whole groups of tests (tests/conftest.py,
`xdist_group`: a module's tests, and all tests of the session synths, on one worker), the
longest first.

The wall-clock part streams to stdout; the other part's output is printed when both are done.
The exit status is pytest's: the first part's that failed, 0 when both passed (a part that
selected no test, exit 5, counts as passed when the other ran tests)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

#: pytest's exit status when it collected no test
NO_TESTS = 5
#: niceness of the process that runs the CPU-bound tests (and of its workers and servers)
CPU_NICENESS = 10


def commands(cpu_workers: int, wall_workers: int, pytest_args: list[str]):
    """(wall-clock command, other command): each a pytest run of one half of the suite."""
    base = [sys.executable, "-m", "pytest", "--dist", "loadscope", "--no-loadscope-reorder"]
    wall = [*base, "-n", str(wall_workers), "-m", "wallclock", *pytest_args]
    cpu = [*base, "-n", str(cpu_workers), "-m", "not wallclock", *pytest_args]
    return wall, cpu


def combined_status(wall: int, cpu: int) -> int:
    """One exit status for both parts (pytest's numbers)."""
    if wall == cpu == NO_TESTS:
        return NO_TESTS
    for status in (wall, cpu):
        if status not in (0, NO_TESTS):
            return status
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu-workers", type=int, default=3)
    parser.add_argument("--wall-workers", type=int, default=1)
    args, pytest_args = parser.parse_known_args(argv)
    if args.cpu_workers < 1 or args.wall_workers < 1:
        parser.error("--cpu-workers and --wall-workers must be at least 1")
    wall_cmd, cpu_cmd = commands(args.cpu_workers, args.wall_workers, pytest_args)
    with tempfile.TemporaryFile("w+") as cpu_log:
        cpu = subprocess.Popen(cpu_cmd, stdout=cpu_log, stderr=subprocess.STDOUT,
                               preexec_fn=lambda: os.nice(CPU_NICENESS))
        try:
            print(f"== wall-clock tests: {' '.join(wall_cmd[1:])}", flush=True)
            wall_status = subprocess.call(wall_cmd)
            cpu_status = cpu.wait()
        finally:
            if cpu.poll() is None:
                cpu.kill()
        cpu_log.seek(0)
        print(f"\n== other tests (nice {CPU_NICENESS}): {' '.join(cpu_cmd[1:])}", flush=True)
        sys.stdout.write(cpu_log.read())
    status = combined_status(wall_status, cpu_status)
    print(f"\n== wall-clock tests exit {wall_status}, other tests exit {cpu_status}", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
