"""The docs' figure for both queued lanes at once: every fault-injection scenario of the
interactive lane (test_fault_injection.py) and of the batch lane
(test_fault_injection_batch.py), each checked, and "N scenarios, 0 lost, 0 answered twice"
printed (docs/operations.md, "What happens when... (queued work)").

Each lane keeps its own Claude emulator, as in its own suite: the interactive one with the
agent's stack, the batch one with the Message Batches endpoints answering at once."""

from __future__ import annotations

import pytest

from local.fakes.claude_emulator import ClaudeEmulator
from tests.functional.test_batch_lane import new_lane
from tests.functional.test_fault_injection import SCENARIOS, emulator, env, payloads, \
    run_scenario, stack
from tests.functional.test_fault_injection_batch import ALL_SCENARIOS, run_batch_scenario

__all__ = ["emulator", "env", "payloads", "stack"]  # fixtures used by name


@pytest.fixture(scope="module")
def batch_emulator():
    with ClaudeEmulator({"batch_processing_s": 0.0, "batch_rpm": 10_000,
                         "output_tokens": 8}) as emu:
        yield emu


def test_the_figure(env, batch_emulator, local_aws, monkeypatch, capsys):
    """Every scenario of both lanes, checked; a request is lost when it ends with neither an
    answer nor one dead letter, answered twice when two different final answers were written."""
    from tests.functional.test_agent_handler import queued

    lost = twice = 0
    for name in SCENARIOS:  # the interactive lane first: the batch lanes reset the base URL
        env["emulator"].reset()
        outcome = run_scenario(env, name)
        outcome.check()
        lost += not (outcome.answer["status"] in ("ok", "error") or outcome.dead_letters)
        twice += len(outcome.final_answers) > 1
        queued(env["stack"], "dlq")  # empty the DLQ for the next scenario
    requests = 0
    for name in ALL_SCENARIOS:
        batch_emulator.reset(config=True)
        counts = run_batch_scenario(new_lane(local_aws, batch_emulator, monkeypatch), name)
        requests += counts["requests"]
        lost, twice = lost + counts["lost"], twice + counts["twice"]
    total = len(SCENARIOS) + len(ALL_SCENARIOS)
    with capsys.disabled():
        print(f"\nfault injection: {total} scenarios ({len(SCENARIOS)} interactive, "
              f"{len(ALL_SCENARIOS)} batch lane with {requests} requests), {lost} lost, "
              f"{twice} answered twice")
    assert (lost, twice) == (0, 0)
