"""Shared fixtures: one local AWS server per test session, a fresh bucket table per test."""

from __future__ import annotations

import itertools
import os

import pytest

from local.fakes.aws_server import LocalAws

# Nothing a test does may reach a real account.
for _name, _value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                      "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
    os.environ[_name] = _value


class FakeClock:
    """Injectable clock (epoch seconds) that moves only when told."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="session")
def local_aws():
    with LocalAws() as aws:
        yield aws


@pytest.fixture
def dynamodb(local_aws):
    return local_aws.client("dynamodb", max_pool_connections=50)


_tables = itertools.count()


@pytest.fixture
def bucket_table(dynamodb):
    from guard import ensure_table

    name = f"bucket-{os.getpid()}-{next(_tables)}"
    ensure_table(dynamodb, name)
    return name


@pytest.fixture
def clock():
    return FakeClock()


# -- parallel runs (pytest-xdist, `make test`: tests/run_parallel.py) ---------------------------

#: Modules of tests/infra that use none of the session synths of tests/infra/conftest.py
#: (`dev`, `prod_bedrock`, `pooled`). Every other infra module runs on one worker, so the app
#: is synthesized (and its asset bundled) once per run, not once per worker: each costs
#: 10-40 s of CPU. A module missing here only costs that worker a synth.
INFRA_WITHOUT_SESSION_SYNTH = frozenset(f"tests/infra/{name}.py" for name in (
    "test_charts", "test_docs_site", "test_example_app", "test_monitoring"))
#: The groups that take longest (docs/testing.md, "Test time"): handed out first, so no worker
#: starts one of them when the others are nearly done. A group missing here only starts later.
LONGEST_FIRST = ("tests/e2e/test_demo.py", "synth", "tests/functional/test_mcp.py",
                 "tests/functional/test_runaway.py", "tests/e2e/test_deploy.py",
                 "tests/functional/test_bucket_concurrency.py",
                 "tests/functional/test_guarded_client.py", "tests/functional/test_batch_lane.py",
                 "tests/functional/test_fair_share.py", "tests/functional/test_cold_start.py",
                 "tests/functional/test_fault_figure.py")
#: Modules whose callers run at published rates on the real clock: their assertions hold only
#: while each caller gets the CPU when it wakes. Marked `wallclock`: `make test`
#: (tests/run_parallel.py) runs them apart from the CPU-bound tests, at a higher priority.
WALL_CLOCK_MODULES = frozenset(f"tests/functional/{name}.py" for name in (
    "test_mcp", "test_bucket_concurrency", "test_bucket_learned_limits", "test_fair_share",
    "test_cold_start", "test_guarded_client", "test_claude_emulator", "test_leases",
    "test_tenant_callers"))


def xdist_group(nodeid: str) -> str:
    """The tests that share one worker: "synth" for the infra modules that use a session
    synth, else the test's module (its module fixtures, such as a deploy, a local server or
    an emulator, are set up once)."""
    module = nodeid.split("::", 1)[0]
    if module.startswith("tests/infra/") and module not in INFRA_WITHOUT_SESSION_SYNTH:
        return "synth"
    return module


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """xdist's scope scheduling with `xdist_group` as the scope (xdist's own `loadgroup`
    cannot set a group from a hook under pytest 9, whose node ids are read-only)."""
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_group(nodeid)

    return GroupScheduling(config, log)


@pytest.hookimpl(tryfirst=True)  # before `-m` selects by the marks set here
def pytest_collection_modifyitems(config, items):
    """Marks the tests of `WALL_CLOCK_MODULES` `wallclock` and puts the longest groups first
    (a stable sort: the order within a module stays the file's)."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    for item in items:
        if item.nodeid.split("::", 1)[0] in WALL_CLOCK_MODULES:
            item.add_marker(pytest.mark.wallclock)
    items.sort(key=lambda item: rank.get(xdist_group(item.nodeid), len(rank)))
