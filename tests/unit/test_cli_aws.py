"""cli.aws: what every operator command shares about reaching AWS (no I/O)."""

from __future__ import annotations

import io

import pytest
from botocore.exceptions import NoRegionError

from cli import aws
from cli.audit.command import parser as audit_parser
from cli.dlq.command import parser as dlq_parser
from cli.limits import parser as limits_parser
from cli.spend import parser as spend_parser

PARSERS = {"audit": audit_parser, "dlq": dlq_parser, "limits": limits_parser,
           "spend": spend_parser}


@pytest.mark.parametrize("name", PARSERS)
def test_every_command_explains_where_it_reaches_aws(name, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    parser = PARSERS[name]()
    help_text = " ".join(parser.format_help().split())
    assert "--region REGION the stack's region" in help_text
    assert "--endpoint-url ENDPOINT_URL AWS endpoint, e.g. local AWS's" in help_text
    assert (parser.get_default("region"), parser.get_default("endpoint_url")) == (
        None, "http://127.0.0.1:4566")


def test_a_failed_call_is_said_with_its_hint_and_exits_2():
    err = io.StringIO()
    assert aws.failed("cli.spend", NoRegionError(), err) == 2
    assert err.getvalue() == ("cli.spend: no AWS region: pass --region REGION (the stack's "
                              "region) or set AWS_REGION\n")
