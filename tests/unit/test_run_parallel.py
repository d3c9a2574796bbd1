"""`make test`'s runner (tests/run_parallel.py): how it splits the suite and what it exits
with."""

from __future__ import annotations

import pytest

from tests.run_parallel import NO_TESTS, combined_status, commands


def test_the_two_parts_select_complementary_marks_and_pass_the_arguments_on():
    wall, cpu = commands(3, 2, ["-k", "bucket", "-q"])
    assert wall[1:3] == cpu[1:3] == ["-m", "pytest"]
    assert wall[wall.index("-m", 3) + 1] == "wallclock"
    assert cpu[cpu.index("-m", 3) + 1] == "not wallclock"
    assert wall[wall.index("-n") + 1] == "2" and cpu[cpu.index("-n") + 1] == "3"
    for command in (wall, cpu):
        assert command[command.index("--dist") + 1] == "loadscope"
        assert "--no-loadscope-reorder" in command  # the order tests/conftest.py sets
        assert command[-3:] == ["-k", "bucket", "-q"]


@pytest.mark.parametrize("wall, cpu, status", [
    (0, 0, 0), (1, 0, 1), (0, 1, 1), (2, 1, 2), (NO_TESTS, 0, 0), (0, NO_TESTS, 0),
    (NO_TESTS, 1, 1), (NO_TESTS, NO_TESTS, NO_TESTS)])
def test_a_failure_in_either_part_fails_the_run(wall, cpu, status):
    assert combined_status(wall, cpu) == status


def test_a_module_stays_on_one_worker_and_the_session_synths_users_share_one():
    from tests.conftest import xdist_group

    assert xdist_group("tests/infra/test_stack.py::test_x") == "synth"
    assert xdist_group("tests/infra/test_checkov.py::test_y[a::b]") == "synth"
    assert xdist_group("tests/infra/test_charts.py::test_z") == "tests/infra/test_charts.py"
    assert xdist_group("tests/e2e/test_deploy.py::test_t[StateBucketTable-keys0]") == \
        "tests/e2e/test_deploy.py"


def test_the_scheduler_hands_out_whole_groups(monkeypatch):
    """xdist's scope scheduler with the groups above as scopes (not one scope per test, as
    `--dist loadgroup` ends up under pytest 9.2)."""
    pytest.importorskip("xdist")
    from xdist.scheduler import LoadScopeScheduling

    from tests.conftest import pytest_xdist_make_scheduler

    # the scheduler's own set-up wants a running xdist session; its split is what is tested
    monkeypatch.setattr(LoadScopeScheduling, "__init__", lambda self, config, log=None: None)
    scheduler = pytest_xdist_make_scheduler(config=None, log=None)
    assert isinstance(scheduler, LoadScopeScheduling)
    assert scheduler._split_scope("tests/infra/test_stack.py::test_x") == "synth"
    assert scheduler._split_scope("tests/functional/test_mcp.py::test_a[x@y]") == \
        "tests/functional/test_mcp.py"
