"""The demo's stdout while its handlers run in-process (`local.demo.output`): each line to the
file of its kind, partial lines held until complete."""

from __future__ import annotations

import io

from local.demo.output import LineRouter


def test_lines_go_to_the_file_of_their_kind_and_partial_lines_wait_for_their_end():
    emf, audit, logs = io.StringIO(), io.StringIO(), io.StringIO()
    router = LineRouter(emf, audit, logs)
    router.write('{"_aws": {"Timestamp": 1}, "Requests": 1}\n{"audit": "tool_')
    assert audit.getvalue() == ""  # the audit line is not complete yet
    router.write('call", "tool": "list_documents"}\nplain log line\n\n')
    assert emf.getvalue() == '{"_aws": {"Timestamp": 1}, "Requests": 1}\n'
    assert audit.getvalue() == '{"audit": "tool_call", "tool": "list_documents"}\n'
    assert logs.getvalue() == "plain log line\n"  # blank lines are dropped
