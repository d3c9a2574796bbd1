"""cdk.json `mcp`: tool sources and the IAM allowlist validated once, bad values named."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from agent.mcp.config import McpConfigError, load_mcp_settings, servers_from_env
from stacks.settings import SettingsError, load_settings

REPO = Path(__file__).resolve().parents[2]
DEFAULTS = json.loads((REPO / "cdk.json").read_text())["context"]


def mcp(**changes):
    value = copy.deepcopy(DEFAULTS["mcp"])
    value.update(changes)
    return value


def test_defaults_offer_the_aws_mcp_server_tools_with_their_own_bucket():
    settings = load_settings(DEFAULTS).mcp
    server = settings.servers["aws"]
    assert server.auth == {"type": "sigv4", "service": "aws-mcp", "region": "us-east-1"}
    assert server.bucket_id == "mcp#aws"
    # within the AWS MCP Server's quotas (3 requests/s, 27 connections, 90 sessions per role)
    assert (server.requests_per_second, server.burst) == (2.0, 1)
    assert (server.max_connections, server.max_sessions) == (20, 80)
    assert server.lease_ids == ("lease#mcp#aws#connections", "lease#mcp#aws#sessions")
    assert settings.tool_names() == ["aws___run_script", "aws___search_documentation"]
    assert [a.sid for a in settings.allow] == ["McpListOwnTenantDocuments",
                                              "McpReadWorkQueueAttributes"]


def test_the_lambda_environment_round_trips():
    settings = load_settings(DEFAULTS).mcp
    servers = servers_from_env(settings.lambda_env())
    assert servers == settings.servers


def test_no_mcp_section_means_no_mcp_tools():
    context = {k: v for k, v in DEFAULTS.items() if k != "mcp"}
    assert not load_settings(context).mcp.enabled
    assert servers_from_env("") == {}


def _server(**changes):
    server = copy.deepcopy(DEFAULTS["mcp"]["servers"]["aws"])
    server.update(changes)
    return {"aws": server}


@pytest.mark.parametrize("value, message", [
    (mcp(servers=_server(url="http://aws-mcp.example.com/mcp")),
     "'mcp.servers.aws.url': expected https (plain http only on loopback)"),
    (mcp(servers=_server(auth={"type": "sigv4", "service": "aws-mcp"})),
     "'mcp.servers.aws.auth.region': expected an AWS region"),
    (mcp(servers=_server(auth={"type": "basic"})), "'mcp.servers.aws.auth.type'"),
    (mcp(servers=_server(auth={"type": "bearer", "secret_arn": "token"})),
     "'mcp.servers.aws.auth.secret_arn': expected a Secrets Manager secret ARN"),
    (mcp(servers=_server(tools={"bad name": {"description": "x", "input_schema": {
        "type": "object"}}})), "'mcp.servers.aws.tools.bad name'"),
    (mcp(servers=_server(tools={"t": {"description": "x", "input_schema": {
        "type": "string"}}})), "'mcp.servers.aws.tools.t.input_schema'"),
    (mcp(servers=_server(requests_per_minute=300)),
     "'mcp.servers.aws.requests_per_minute': expected requests_per_second instead"),
    (mcp(servers=_server(requests_per_second=0)), "'mcp.servers.aws.requests_per_second'"),
    (mcp(servers=_server(requests_per_second=5)),
     "'mcp.servers.aws.requests_per_second': expected at most 3 (requests per second"),
    (mcp(servers=_server(max_connections=30)),
     "'mcp.servers.aws.max_connections': expected at most 27 (concurrent connections"),
    (mcp(servers=_server(max_sessions=0)), "'mcp.servers.aws.max_sessions'"),
    (mcp(servers=_server(max_sessions=2.5)), "'mcp.servers.aws.max_sessions'"),
    (mcp(servers=_server(session_lease_s=5)), "'mcp.servers.aws.session_lease_s'"),
    (mcp(servers=_server(max_wait_s=-1)), "'mcp.servers.aws.max_wait_s'"),
    (mcp(servers=_server(extra=1)), "'mcp.servers.aws': expected an object with only"),
    (mcp(allow=[{"sid": "A", "actions": ["s3:*"], "resources": ["arn:aws:s3:::b"]}]),
     "'mcp.allow[0].actions': expected exact 'service:Action' names"),
    (mcp(allow=[{"sid": "A", "actions": ["s3:ListBucket"], "resources": ["*"]}]),
     "'mcp.allow[0].resources': expected ARN templates"),
    (mcp(allow=[{"sid": "A", "actions": ["s3:ListBucket"], "resources": ["arn:aws:s3:::b"],
                 "conditions": {"Bool": {"aws:ViaAWSMCPService": "true"}}}]),
     "no MCP keys"),
    (mcp(deny_actions=["s3:*"]), "'mcp.deny_actions'"),
    (mcp(surprise=True), "'mcp': expected an object with only allow, deny_actions, servers"),
])
def test_bad_values_are_named(value, message):
    with pytest.raises(McpConfigError, match=None) as raised:
        load_mcp_settings(value)
    assert message in str(raised.value)
    with pytest.raises(SettingsError) as wrapped:
        load_settings({**DEFAULTS, "mcp": value})
    assert str(wrapped.value).startswith("context key 'mcp")


def test_a_tool_name_offered_twice_is_refused():
    servers = _server()
    servers["docs"] = copy.deepcopy(servers["aws"])
    with pytest.raises(McpConfigError, match="not already offered by server 'aws'"):
        load_mcp_settings(mcp(servers=servers))


def test_an_allowlisted_destructive_action_is_a_synth_error():
    from policies.mcp import mcp_allow_statements

    settings = load_mcp_settings(mcp(allow=[{"sid": "Oops", "actions": ["s3:DeleteObject"],
                                             "resources": ["arn:aws:s3:::b/*"]}]))
    with pytest.raises(ValueError, match="s3:DeleteObject is denied through MCP by 's3:Delete"):
        mcp_allow_statements(settings.allow, {})
