"""The agent loop (`agent.loop.run_agent`) against a scripted stand-in for the guarded client:
tool rounds, the stops (end of turn, iteration limit, token budget, deferral, error), usage
summed over calls, degrade, and one audit line per tool call. No network, no `anthropic`."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

import pytest

from agent.loop import run_agent
from agent.requests import AgentRequest
from agent.telemetry import RequestMetrics
from agent.tools import ToolContext, ToolResources
from guard.client import CallResult
from guard.usage import Usage
from tests.fixtures.agent_env import MAIN, SMALL, agent_config

NOW = 1_000.0  # the injected monotonic clock (seconds)
DOCUMENT = "Acme's Q3 report: revenue up."


class ScriptedClaude:
    """Stands in for `guard.GuardedClaude`: `create` answers with the scripted results in order
    and keeps each call's keyword arguments."""

    def __init__(self, *results: CallResult) -> None:
        self.results = list(results)
        self.calls: list[dict] = []

    def create(self, **kwargs) -> CallResult:
        self.calls.append(kwargs)
        return self.results.pop(0)


class AuditLog:
    """A plain logger: the tool runner writes each audit line to it as JSON text."""

    def __init__(self) -> None:
        self.lines: list[dict] = []

    def info(self, message: str) -> None:
        self.lines.append(json.loads(message))


class FakeS3:
    """`get_object` of one document; keeps the keys asked for."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    def get_object(self, *, Bucket: str, Key: str) -> dict:
        self.keys.append(f"{Bucket}/{Key}")
        data = DOCUMENT.encode()
        return {"Body": io.BytesIO(data), "ContentLength": len(data)}


def text(value: str):
    return SimpleNamespace(type="text", text=value)


def tool_use(block_id: str, name: str, tool_input: dict):
    return SimpleNamespace(type="tool_use", id=block_id, name=name, input=tool_input)


def answer(*content, stop_reason: str = "end_turn", model: str = MAIN,
           usage: Usage | None = None) -> CallResult:
    return CallResult(status="ok", model=model, usage=usage or Usage(100, 20, 5, 50),
                      message=SimpleNamespace(content=list(content), stop_reason=stop_reason))


def deferred(model: str = MAIN) -> CallResult:
    return CallResult(status="deferred", model=model, retry_after=12.5, reason="quota")


class Run:
    """One `run_agent` call with its collaborators, kept for the assertions."""

    def __init__(self, *results: CallResult, transcript=None, model=None, **env) -> None:
        self.config = agent_config(**env)
        self.claude = ScriptedClaude(*results)
        self.audit = AuditLog()
        self.metrics = RequestMetrics()
        self.s3 = FakeS3()
        self.contexts_made = 0
        self.request = AgentRequest("Summarise the Q3 report.", MAIN, 1024, "req-loop-1",
                                    "acme", 20.0, caller="arn:aws:iam::123456789012:user/ops")
        self.outcome = run_agent(self.request, self.claude, self.config,
                                 tool_context=self.tool_context, metrics=self.metrics,
                                 deadline_at=NOW + 20.0, logger=self.audit,
                                 transcript=transcript, model=model, clock=lambda: NOW)

    def tool_context(self) -> ToolContext:
        self.contexts_made += 1
        session = SimpleNamespace(client=lambda service, **_: self.s3)
        return ToolContext(session, "acme", "req-loop-1",
                           ToolResources(docs_bucket="docs", docs_prefix="docs/",
                                         notes_table="notes"))

    def tool_results(self) -> list[dict]:
        """Every tool_result block the loop sent back to the model."""
        return [block for message in self.outcome.transcript if message["role"] == "user"
                and isinstance(message["content"], list) for block in message["content"]]


def test_a_tool_round_then_an_answer():
    run = Run(answer(text("Reading."), tool_use("tu-1", "read_document", {"key": "q3.txt"}),
                     stop_reason="tool_use"),
              answer(text("Revenue is up.")))
    outcome = run.outcome
    assert (outcome.status, outcome.output, outcome.model) == ("ok", "Revenue is up.", MAIN)
    assert (outcome.model_calls, outcome.tool_calls) == (2, 1)
    assert run.s3.keys == ["docs/docs/acme/q3.txt"]
    [result] = run.tool_results()
    assert result["tool_use_id"] == "tu-1" and result["is_error"] is False
    assert json.loads(result["content"])["content"] == DOCUMENT
    assert [m["role"] for m in outcome.transcript] == ["user", "assistant", "user", "assistant"]
    assert outcome.transcript[1]["content"][1] == {"type": "tool_use", "id": "tu-1",
                                                  "name": "read_document",
                                                  "input": {"key": "q3.txt"}}
    # the second call carries the whole conversation, tool result included
    assert run.claude.calls[1]["messages"][2]["content"] == [result]


def test_usage_sums_every_call():
    run = Run(answer(tool_use("tu-1", "read_document", {"key": "q3.txt"}),
                     stop_reason="tool_use", usage=Usage(100, 20, 5, 50)),
              answer(text("done"), usage=Usage(300, 40, 0, 150)))
    assert run.outcome.usage == {"input_tokens": 400, "output_tokens": 60,
                                 "cache_creation_input_tokens": 5,
                                 "cache_read_input_tokens": 200}
    assert run.metrics.values[MAIN]["Requests"] == 2
    assert run.metrics.values[MAIN]["InputTokens"] == 400


def test_every_tool_call_has_its_audit_line():
    run = Run(answer(tool_use("tu-1", "read_document", {"key": "q3.txt"}),
                     tool_use("tu-2", "read_document", {"key": "../globex/q3.txt"}),
                     stop_reason="tool_use"),
              answer(text("done")))
    assert [(line["tool"], line["outcome"]) for line in run.audit.lines] == [
        ("read_document", "ok"), ("read_document", "invalid_input")]
    for line in run.audit.lines:
        assert line["request_id"] == "req-loop-1" and line["tenant"] == "acme"
        assert line["caller"] == "arn:aws:iam::123456789012:user/ops"
    assert run.audit.lines[0]["target"] == "s3://docs/docs/acme/q3.txt"
    assert run.contexts_made == 1  # one tool-role session for the whole request
    assert [r["is_error"] for r in run.tool_results()] == [False, True]


def test_an_unknown_tool_name_is_audited_and_answered_with_an_error():
    run = Run(answer(tool_use("tu-1", "delete_everything", {"bucket": "docs"}),
                     stop_reason="tool_use"),
              answer(text("I cannot do that.")))
    [line] = run.audit.lines
    assert (line["tool"], line["outcome"]) == ("delete_everything", "unknown_tool")
    assert line["detail"] == "unknown tool 'delete_everything'"
    assert line["request_id"] == "req-loop-1" and line["tenant"] == "acme"
    [result] = run.tool_results()
    assert result["is_error"] is True
    assert json.loads(result["content"])["error"] == "unknown tool 'delete_everything'"
    assert run.s3.keys == []
    assert (run.outcome.status, run.outcome.tool_calls) == ("ok", 1)


@pytest.mark.parametrize("stop_reason", ["end_turn", "max_tokens", "stop_sequence"])
def test_any_stop_reason_but_tool_use_ends_the_loop(stop_reason):
    run = Run(answer(text("part one, "), text("part two"), stop_reason=stop_reason))
    assert (run.outcome.status, run.outcome.output) == ("ok", "part one, part two")
    assert (run.outcome.model_calls, run.outcome.tool_calls) == (1, 0)
    assert run.contexts_made == 0  # no tool call, no tool-role session


def test_tool_use_without_a_tool_block_ends_the_loop():
    run = Run(answer(text("nothing to call"), stop_reason="tool_use"))
    assert (run.outcome.status, run.outcome.output) == ("ok", "nothing to call")


def test_the_loop_stops_at_max_iterations():
    calls = [answer(tool_use(f"tu-{i}", "read_document", {"key": "q3.txt"}),
                    stop_reason="tool_use") for i in range(3)]
    run = Run(*calls, MAX_ITERATIONS="3")
    assert run.outcome.status == "error"
    assert run.outcome.error == {"type": "iteration_limit", "message": "the agent did not "
                                 "finish within 3 model calls"}
    assert (run.outcome.model_calls, run.outcome.tool_calls) == (3, 3)
    assert len(run.audit.lines) == 3


def test_the_loop_stops_when_the_token_budget_is_spent():
    run = Run(answer(tool_use("tu-1", "read_document", {"key": "q3.txt"}),
                     stop_reason="tool_use", usage=Usage(900, 100, 0, 0)),
              MAX_TOTAL_TOKENS="1000")
    assert run.outcome.status == "error"
    assert run.outcome.error["type"] == "token_budget_exceeded"
    assert "1,000 tokens" in run.outcome.error["message"]
    assert len(run.claude.calls) == 1  # the second call is never made


def test_each_call_is_bounded_by_the_model_and_the_deadline():
    run = Run(answer(text("ok")))
    [call] = run.claude.calls
    assert call["model"] == MAIN and call["max_tokens"] == 1024
    assert call["deadline_s"] == 20.0  # deadline_at - clock()
    assert call["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert call["tools"][-1]["cache_control"] == {"type": "ephemeral"}


def test_a_deferral_returns_the_conversation_to_resume_from():
    run = Run(answer(tool_use("tu-1", "read_document", {"key": "q3.txt"}),
                     stop_reason="tool_use"),
              deferred())
    outcome = run.outcome
    assert (outcome.status, outcome.retry_after, outcome.reason) == ("deferred", 12.5, "quota")
    assert len(outcome.transcript) == 3  # prompt, tool use, tool result: not run again

    resumed = Run(answer(text("Revenue is up.")), transcript=outcome.transcript)
    assert resumed.claude.calls[0]["messages"][:3] == outcome.transcript[:3]
    assert resumed.audit.lines == []
    assert (resumed.outcome.status, resumed.outcome.output) == ("ok", "Revenue is up.")


def test_the_call_carries_tenant_and_priority_and_a_deferral_keeps_its_ticket():
    held = CallResult(status="deferred", model=MAIN, retry_after=3.0, reason="fair_share",
                      ticket=1_800_000_042.5)
    run = Run(held)
    call = run.claude.calls[0]
    assert (call["tenant"], call["priority"], call["ticket"]) == ("acme", "interactive", None)
    assert run.outcome.ticket == 1_800_000_042.5


def test_an_upstream_error_ends_the_loop_with_it():
    error = {"type": "invalid_request_error", "message": "bad"}
    run = Run(CallResult(status="error", model=MAIN, error=error))
    assert (run.outcome.status, run.outcome.error, run.outcome.model_calls) == (
        "error", error, 0)


def test_degrade_answers_with_the_smaller_model_when_the_main_one_is_deferred():
    run = Run(deferred(), answer(text("short answer"), model=SMALL),
              OVERFLOW_POLICY="degrade", DEGRADE_MODEL=SMALL)
    outcome = run.outcome
    assert (outcome.status, outcome.model, outcome.degraded) == ("ok", SMALL, True)
    assert [call["model"] for call in run.claude.calls] == [MAIN, SMALL]
    assert run.metrics.values[SMALL]["Degraded"] == 1


def test_without_degrade_a_deferral_is_not_retried_on_another_model():
    run = Run(deferred(), DEGRADE_MODEL=SMALL)  # OVERFLOW_POLICY defaults to defer
    assert run.outcome.status == "deferred"
    assert len(run.claude.calls) == 1


@pytest.mark.parametrize("module", ["loop.py", "service.py"])
def test_statuses_are_compared_through_guard_outcomes_not_as_literals(module):
    """A status typed as a string literal drifts from `guard.outcomes` unnoticed."""
    import ast
    from pathlib import Path

    import agent
    from guard import outcomes

    statuses = {outcomes.OK, outcomes.DEFERRED, outcomes.ERROR, outcomes.REJECTED}
    tree = ast.parse((Path(agent.__file__).parent / module).read_text())
    literals = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Compare)
                and all(isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops)
                for side in (node.left, *node.comparators)
                if isinstance(side, ast.Constant) and side.value in statuses]
    assert literals == []
