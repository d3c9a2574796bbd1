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
