"""MCP tools against the local AWS MCP Server (real MCP SDK client and server on loopback,
SigV4, IAM decisions by the evaluator the infra tests use, downstream calls in local AWS).

The tool role is built from the kit's own policy code (`policies/`): the built-in grants
(only outside MCP), cdk.json's MCP allowlist and the destructive-action deny, with the
permissions boundary the stack builds from them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.tool_runner import OUTCOMES
from agent.credentials import assume_tool_role
from agent.mcp.config import load_mcp_settings
from agent.mcp.toolbox import TRUNCATION_MARKER, McpToolbox
from agent.tools import ToolResources, tool_role_statements
from agent.tools.registry import ToolContext
from local.fakes.aws_mcp_server import LocalAwsMcp, simulate
from local.fakes.aws_server import LocalAws

REPO = Path(__file__).resolve().parents[2]
CONTEXT = json.loads((REPO / "cdk.json").read_text())["context"]
REGION, ACCOUNT = "us-east-1", "123456789012"
DOCS_BUCKET, NOTES_TABLE, QUEUE = "bulwark-docs", "bulwark-notes", "bulwark-work"
AGENT = "bulwark-agent"


class Log:
    """A logger that keeps what it was given: audit lines (JSON text) and warnings."""

    def __init__(self) -> None:
        self.lines: list[dict] = []
        self.warnings: list[tuple[str, dict]] = []

    def info(self, message, extra=None):
        self.lines.append(json.loads(message) if message.startswith("{") else {"msg": message})

    def warning(self, message, extra=None):
        self.warnings.append((message, extra or {}))

    def audits(self) -> list[dict]:
        return [line for line in self.lines if line.get("audit") == "tool_call"]


def _policies(queue_arn: str):
    from policies.boundary import boundary_statements
    from policies.mcp import (builtin_outside_mcp, denied_action_patterns,
                              mcp_allow_statements, mcp_boundary_statements, mcp_deny_statement)
    from aws_cdk import aws_iam as iam

    settings = load_mcp_settings(CONTEXT["mcp"])
    builtin = [iam.PolicyStatement.from_json(s) for s in tool_role_statements(
        "aws", REGION, ACCOUNT, ToolResources(DOCS_BUCKET, "docs/", NOTES_TABLE))]
    patterns = denied_action_patterns(settings.deny_actions)
    allowed = mcp_allow_statements(settings.allow, {
        "Partition": "aws", "Region": REGION, "Account": ACCOUNT, "DocsBucket": DOCS_BUCKET,
        "DocsPrefix": "docs/", "NotesTable": NOTES_TABLE, "WorkQueueArn": queue_arn}, patterns)
    deny = mcp_deny_statement(patterns)
    identity = [builtin_outside_mcp(s) for s in builtin] + allowed + [deny]
    boundary = boundary_statements(builtin, (REGION,)) + mcp_boundary_statements(
        allowed, (REGION,), deny)

    def document(statements):
        return json.dumps({"Version": "2012-10-17",
                           "Statement": [s.to_statement_json() for s in statements]})

    return document(identity), document(boundary)


@pytest.fixture(scope="module")
def aws():
    with LocalAws() as server:
        yield server


@pytest.fixture(scope="module")
def world(aws):
    """Local AWS with the documents bucket, notes table, work queue and the tool role."""
    s3, iam, sqs = aws.client("s3"), aws.client("iam"), aws.client("sqs")
    s3.create_bucket(Bucket=DOCS_BUCKET)
    for tenant in ("acme", "globex"):
        s3.put_object(Bucket=DOCS_BUCKET, Key=f"docs/{tenant}/runbook.md", Body=b"runbook")
    aws.client("dynamodb").create_table(
        TableName=NOTES_TABLE, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "tenant", "KeyType": "HASH"},
                   {"AttributeName": "note_id", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "tenant", "AttributeType": "S"},
                              {"AttributeName": "note_id", "AttributeType": "S"}])
    queue_url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
    queue_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{QUEUE}"
    identity, boundary = _policies(queue_arn)
    boundary_arn = iam.create_policy(PolicyName="boundary", PolicyDocument=boundary)[
        "Policy"]["Arn"]
    role = iam.create_role(RoleName="bulwark-tool", PermissionsBoundary=boundary_arn,
                           AssumeRolePolicyDocument=json.dumps(
                               {"Version": "2012-10-17", "Statement": []}))["Role"]
    iam.put_role_policy(RoleName="bulwark-tool", PolicyName="tools", PolicyDocument=identity)
    return {"role_arn": role["Arn"], "queue_url": queue_url, "queue_arn": queue_arn}


@pytest.fixture(scope="module")
def stand_in(aws, world):
    """The stand-in counting but not enforcing its quotas (these tests are about other
    things; the fleet test below runs against the published quotas)."""
    with LocalAwsMcp(aws.endpoint_url, quotas=None) as server:
        yield server


def tool_context(aws, world, request_id="req-mcp-0001", tenant="acme") -> ToolContext:
    session = assume_tool_role(aws.client("sts"), world["role_arn"], request_id=request_id,
                               tenant=tenant, agent=AGENT)
    return ToolContext(session=session, tenant=tenant, request_id=request_id,
                       resources=ToolResources(DOCS_BUCKET, "docs/", NOTES_TABLE),
                       endpoint_url=aws.endpoint_url)


def servers(url: str, **tools_override):
    mcp = json.loads(json.dumps(CONTEXT["mcp"]))
    mcp["servers"]["aws"]["url"] = url
    mcp["servers"]["aws"]["tools"].update(tools_override)
    return load_mcp_settings(mcp).servers


class Bucket:
    """A stand-in rate budget: grants (or refuses with `retry_after`), records cool-downs."""

    def __init__(self, refuse_for: float = 0.0) -> None:
        self.refuse_for, self.acquires, self.cool_downs = refuse_for, 0, []

    def try_acquire(self, requests=1, input_tokens=0, output_tokens=0, max_wait_s=0.0):
        from types import SimpleNamespace

        self.acquires += 1
        if self.refuse_for:
            return SimpleNamespace(granted=False, retry_after=self.refuse_for, reason="quota")
        return SimpleNamespace(granted=True, retry_after=0.0, reason=None, start_at=0.0,
                               returned_at=0.0)

    def cool_down(self, seconds):
        self.cool_downs.append(seconds)


def toolbox(url, log, bucket=None, **kwargs) -> McpToolbox:
    return McpToolbox(servers(url, **kwargs.pop("tools", {})), logger=log,
                      buckets={"aws": bucket} if bucket else None, sleep=lambda s: None,
                      timeout_s=10, **kwargs)


def run_script(script: dict | str) -> dict:
    return {"script": script}


def call(box, ctx, name, tool_input, caller="arn:aws:iam::123456789012:user/op"):
    request = box.request(lambda: ctx, caller=caller)
    try:
        return request.call(name, tool_input)
    finally:
        request.close()


LIST_OWN = 's3.list_objects_v2({"Bucket": "bulwark-docs", "Prefix": "docs/acme/"})'


# -- the stand-in's decisions, against the evaluator ----------------------------------------

@pytest.mark.parametrize("script, expected", [
    (LIST_OWN, "Allowed"),
    ('s3.list_objects_v2({"Bucket": "bulwark-docs", "Prefix": "docs/globex/"})',
     "ImplicitlyDenied"),
    ('s3.delete_object({"Bucket": "bulwark-docs", "Key": "docs/acme/runbook.md"})',
     "ExplicitlyDenied"),
    ('s3.get_object({"Bucket": "bulwark-docs", "Key": "docs/acme/runbook.md"})',
     "ImplicitlyDenied"),  # a built-in grant: not reachable through MCP
    ('iam.create_access_key({"UserName": "admin"})', "ExplicitlyDenied"),
    ('sqs.purge_queue({"QueueUrl": "QUEUE"})', "ExplicitlyDenied"),
    ('sqs.get_queue_attributes({"QueueUrl": "QUEUE", "AttributeNames": ["All"]})', "Allowed"),
])
def test_stand_in_decides_as_the_evaluator(aws, world, stand_in, script, expected):
    script = script.replace("QUEUE", world["queue_url"])
    log = Log()
    before = len(stand_in.decisions())
    result = call(toolbox(stand_in.url, log), tool_context(aws, world), "aws___run_script",
                  run_script(script))
    [decision] = stand_in.decisions()[before:]
    assert decision["result"] == expected
    assert decision["source_identity"] == "req-mcp-0001" and decision["tenant"] == "acme"
    # The same request evaluated directly (no stand-in): the evaluator agrees.
    iam = aws.client("iam")
    identity = [{"name": "tools", "policy": iam.get_role_policy(
        RoleName="bulwark-tool", PolicyName="tools")["PolicyDocument"]}]
    boundary_arn = iam.get_role(RoleName="bulwark-tool")["Role"]["PermissionsBoundary"][
        "PermissionsBoundaryArn"]
    version = iam.get_policy(PolicyArn=boundary_arn)["Policy"]["DefaultVersionId"]
    boundary = iam.get_policy_version(PolicyArn=boundary_arn, VersionId=version)[
        "PolicyVersion"]["Document"]
    direct = simulate([{"id": "x", "principal": "arn:aws:sts::123456789012:assumed-role/"
                        "bulwark-tool/req-mcp-0001", "actions": [decision["action"]],
                        "resource": decision["resource"], "accountId": ACCOUNT,
                        "context": {"aws:ViaAWSMCPService": "true",
                                    "aws:CalledViaAWSMCP": "aws-mcp.amazonaws.com",
                                    "aws:RequestedRegion": REGION,
                                    "aws:PrincipalTag/tenant": "acme",
                                    "aws:PrincipalTag/agent": AGENT,
                                    **({"s3:prefix": json.loads(script.split("(", 1)[1][:-1])
                                        ["Prefix"]} if "list_objects" in script else {})},
                        "identityPolicies": identity,
                        "permissionBoundaries": [{"name": "b", "policy": boundary}],
                        "resourcePolicy": None}])["x"]["result"]
    assert direct == expected
    if expected == "Allowed":
        assert "error" not in result and result["content"]
    else:
        assert result["denied"] is True and "AccessDenied" in result["error"]
        assert log.audits()[-1]["outcome"] == "denied"


def test_a_denied_delete_leaves_the_object(aws, world, stand_in):
    result = call(toolbox(stand_in.url, Log()), tool_context(aws, world), "aws___run_script",
                  run_script('s3.delete_object({"Bucket": "bulwark-docs", '
                             '"Key": "docs/acme/runbook.md"})'))
    assert result["denied"]
    assert aws.client("s3").get_object(Bucket=DOCS_BUCKET,
                                       Key="docs/acme/runbook.md")["Body"].read() == b"runbook"


def test_requests_must_be_sigv4_signed_for_aws_mcp(aws, world, stand_in):
    import httpx2
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).encode()
    unsigned = httpx2.post(stand_in.url, content=body,
                           headers={"content-type": "application/json"})
    assert unsigned.status_code == 401
    credentials = tool_context(aws, world).session.get_credentials().get_frozen_credentials()
    for service, status in (("s3", 403), ("aws-mcp", None)):
        request = AWSRequest(method="POST", url=stand_in.url, data=body,
                             headers={"content-type": "application/json",
                                      "host": stand_in.url.split("/")[2]})
        SigV4Auth(credentials, service, REGION).add_auth(request)
        answer = httpx2.post(stand_in.url, content=body, headers={
            **dict(request.headers), "accept": "application/json, text/event-stream"})
        if status:
            assert answer.status_code == status and service in answer.json()["message"]
        else:
            assert answer.status_code not in (401, 403)  # signed right: the MCP layer answers


# -- configuration against tools/list, allowlist ---------------------------------------------

def test_configured_tools_are_verified_once_and_a_changed_schema_is_disabled(aws, world,
                                                                            stand_in):
    log = Log()
    changed = {"description": "search", "input_schema": {
        "type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}
    box = toolbox(stand_in.url, log, tools={"aws___search_documentation": changed})
    assert [d["name"] for d in box.definitions()] == ["aws___run_script",
                                                      "aws___search_documentation"]
    ctx = tool_context(aws, world)
    assert "content" in call(box, ctx, "aws___run_script", run_script(LIST_OWN))
    assert box.disabled == {"aws": {"aws___search_documentation":
                                    "its input schema changed on the server"}}
    assert [w[1]["tool"] for w in log.warnings] == ["aws___search_documentation"]
    result = call(box, ctx, "aws___search_documentation", {"query": "sqs"})
    assert "disabled" in result["error"]
    assert [d["name"] for d in box.definitions()] == ["aws___run_script"]
    assert len(log.warnings) == 1  # verified once per container


def test_a_tool_outside_the_allowlist_is_refused_with_an_audit_line(aws, world, stand_in):
    log = Log()
    box = toolbox(stand_in.url, log)
    before = len(stand_in.decisions())
    result = call(box, tool_context(aws, world), "aws___call_aws", {"cli_command": "x"})
    assert result == {"error": "tool 'aws___call_aws' is not an allowed MCP tool",
                      "invalid_input": True}
    [line] = log.audits()
    assert line["outcome"] == "invalid_input" and line["tool"] == "aws___call_aws"
    assert line["request_id"] == "req-mcp-0001" and line["tenant"] == "acme"
    assert len(stand_in.decisions()) == before


def test_input_is_checked_against_the_configured_schema(aws, world, stand_in):
    result = call(toolbox(stand_in.url, Log()), tool_context(aws, world), "aws___run_script",
                  {"script": 42})
    assert result["invalid_input"] and "type string" in result["error"]


# -- sessions, throttling, bad input ---------------------------------------------------------

def test_an_expired_session_is_reinitialised_once(aws, world, stand_in):
    box, ctx = toolbox(stand_in.url, Log()), tool_context(aws, world)
    request = box.request(lambda: ctx, caller=None)
    try:
        assert "content" in request.call("aws___run_script", run_script(LIST_OWN))
        stand_in.inject("expire_session")
        assert "content" in request.call("aws___run_script", run_script(LIST_OWN))
        stand_in.inject("expire_session", count=2)
        result = request.call("aws___run_script", run_script(LIST_OWN))
    finally:
        request.close()
    assert "session expired" in result["error"]


def test_a_429_cools_the_shared_bucket_down_and_is_retried(aws, world, stand_in):
    bucket = Bucket()
    box = toolbox(stand_in.url, Log(), bucket)
    ctx = tool_context(aws, world)
    call(box, ctx, "aws___run_script", run_script(LIST_OWN))  # verified, session known
    stand_in.inject("429")
    acquires, requests = bucket.acquires, stand_in.quota()["requests"]
    result = call(box, ctx, "aws___run_script", run_script(LIST_OWN))
    assert "content" in result
    assert bucket.cool_downs == [1.0]  # the server's Retry-After
    # every HTTP request the server saw was charged to the budget first, the refused one and
    # the handshake's notification and the DELETE included
    assert bucket.acquires - acquires == stand_in.quota()["requests"] - requests


def test_persistent_429s_end_in_a_clear_tool_error(aws, world, stand_in):
    bucket = Bucket()
    box = toolbox(stand_in.url, Log(), bucket)
    ctx = tool_context(aws, world)
    call(box, ctx, "aws___run_script", run_script(LIST_OWN))
    stand_in.inject("429", count=3)
    result = call(box, ctx, "aws___run_script", run_script(LIST_OWN))
    assert result["throttled"] and result["retry_after"] == 1.0
    assert "throttling" in result["error"] and len(bucket.cool_downs) == 3


def test_a_spent_rate_budget_is_a_tool_error_without_calling_the_server(aws, world, stand_in):
    log = Log()
    box = toolbox(stand_in.url, log, Bucket(refuse_for=30.0))
    before = len(stand_in.decisions())
    result = call(box, tool_context(aws, world), "aws___run_script", run_script(LIST_OWN))
    assert result["throttled"] and result["retry_after"] == 30.0
    assert "request budget" in result["error"]
    assert len(stand_in.decisions()) == before
    assert log.audits()[-1]["outcome"] == "error"


def test_the_budget_item_is_the_servers_own_in_the_bucket_table(aws):
    from guard import Limits, TokenBucket, ensure_table

    dynamodb = aws.client("dynamodb")
    ensure_table(dynamodb, "mcp-buckets")
    [server] = servers("http://127.0.0.1:1/mcp").values()
    bucket = TokenBucket("mcp-buckets", server.bucket_id,
                         Limits(rpm=server.requests_per_second * 60), dynamodb)
    bucket.cool_down(5)
    grant = bucket.try_acquire(requests=1)
    assert not grant.granted and grant.reason == "cool_down"
    keys = [item["id"]["S"] if "id" in item else next(iter(item.values()))["S"]
            for item in dynamodb.scan(TableName="mcp-buckets")["Items"]]
    assert "mcp#aws" in keys


def test_an_unreachable_server_is_a_tool_error(aws, world):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = Log()
    result = call(toolbox(f"http://127.0.0.1:{port}/mcp", log), tool_context(aws, world),
                  "aws___run_script", run_script(LIST_OWN))
    assert "unreachable" in result["error"]
    assert log.audits()[-1]["outcome"] == "error"


def test_a_malformed_result_is_a_tool_error(aws, world, stand_in):
    box, ctx = toolbox(stand_in.url, Log()), tool_context(aws, world)
    call(box, ctx, "aws___run_script", run_script(LIST_OWN))
    stand_in.inject("malformed")
    result = call(box, ctx, "aws___run_script", run_script(LIST_OWN))
    assert "malformed" in result["error"]


def test_an_oversized_result_is_truncated_with_a_marker(aws, world, stand_in):
    box, ctx = toolbox(stand_in.url, Log()), tool_context(aws, world)
    stand_in.inject("oversized")
    result = call(box, ctx, "aws___run_script", run_script(LIST_OWN))
    limit = box.servers["aws"].max_result_chars
    assert result["truncated"] is True
    kept, marker = result["content"][:limit], result["content"][limit:]
    assert kept.startswith('{"IsTruncated"')
    omitted = int(marker.rsplit(": ", 1)[1].split()[0])
    assert marker == TRUNCATION_MARKER.format(omitted=omitted) and omitted > 150_000


def test_a_tool_that_disappeared_is_disabled(aws, world):
    with LocalAwsMcp(aws.endpoint_url, quotas=None) as fresh:
        fresh.inject("drop_tool", tool="aws___search_documentation")
        log = Log()
        box = toolbox(fresh.url, log)
        ctx = tool_context(aws, world)
        result = call(box, ctx, "aws___search_documentation", {"search_phrase": "sqs"})
    assert result == {"error": "MCP tool 'aws___search_documentation' is disabled: the server "
                               "no longer lists it"}
    assert log.audits()[-1]["outcome"] in OUTCOMES
    assert box.disabled["aws"] == {"aws___search_documentation": "the server no longer lists it"}


# -- the audit line: error class and a fixed summary, never input or answer text ---------------

@pytest.mark.parametrize("script, answer_text, detail", [
    # the server's error text echoes the input (the service name) and is long
    ('secretmark-svc.get_thing({"Name": "secretmark-input"})', "Unknown service",
     "ToolError: the tool reported an error"),
    # an AccessDenied names the caller's session and the resource
    ('s3.list_objects_v2({"Bucket": "bulwark-docs", "Prefix": "docs/secretmark/"})',
     "not authorized to perform", "AccessDenied: the tool reported that IAM denied an AWS "
                                  "action"),
    # an input that fails the schema check: the problem text is not logged either
    ({"secretmark": "x"}, "missing required field",
     "InvalidInput: the input does not match the tool's schema"),
])
def test_tool_input_and_error_text_never_reach_the_audit_line(aws, world, stand_in, script,
                                                              answer_text, detail):
    log = Log()
    tool_input = run_script(script) if isinstance(script, str) else script
    result = call(toolbox(stand_in.url, log), tool_context(aws, world), "aws___run_script",
                  tool_input)
    assert answer_text in result["error"]  # the model still gets the whole error
    [line] = log.audits()
    assert line["detail"] == detail
    text = json.dumps(line)
    assert "secretmark" not in text and answer_text not in text


# -- cost: nothing for requests without MCP calls ---------------------------------------------

def test_requests_without_mcp_calls_import_no_mcp_code():
    """`import guard`, the handler module and a whole loop run with MCP tools offered but not
    called: the SDK (and httpx2) never load."""
    code = """
import sys, json
import guard
assert 'mcp' not in sys.modules and 'httpx2' not in sys.modules
from agent.mcp.config import load_mcp_settings
from agent.mcp.toolbox import McpToolbox
import agent.handler, agent.loop
context = json.load(open('cdk.json'))['context']
box = McpToolbox(load_mcp_settings(context['mcp']).servers, logger=None)
definitions = box.definitions()
request = box.request(lambda: None, caller=None)
request.close()
print(json.dumps({"loaded": sorted(m for m in sys.modules if m == 'mcp' or m.startswith('mcp.')
                                   or m == 'httpx2' or m == 'anthropic'),
                  "tools": [d["name"] for d in definitions]}))
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report == {"loaded": [], "tools": ["aws___run_script", "aws___search_documentation"]}


# -- the published quotas: a fleet of agent requests ------------------------------------------

#: How much faster than real time the fleet's quotas run (rates and bursts times this).
RATE_SCALE = 10

def test_forty_concurrent_agent_requests_stay_inside_the_published_quotas(aws, world):
    """40 agent requests at once (the real loop, Claude from the emulator, 8 containers of 5),
    each calling an MCP tool, against the stand-in enforcing the published quotas (3
    requests/s, 27 connections, 180/90 sessions) with the default share (2/s with a burst of
    1, 20 connections, 80 sessions) shared through the bucket table: the stand-in refuses
    nothing and every request is answered with the tool's result. Prints the figures
    (requests, rate, peaks, refusals).

    Time runs RATE_SCALE times faster: the stand-in's rate and the share's rate and burst are
    both multiplied by it (the stand-in holds a second of its rate, the share half a second
    of its own, as published), so every proportion is the published one and the fleet takes
    seconds instead of the ~85 s the published rate needs. Connections and sessions, which
    do not depend on time, are the published ones."""
    import concurrent.futures
    import dataclasses
    import time

    from local.fakes.aws_mcp_quotas import Quotas

    import anthropic

    from agent.loop import run_agent
    from agent.requests import AgentRequest
    from agent.telemetry import RequestMetrics
    from guard import GuardedClaude, Limits, TokenBucket, ensure_table
    from local.fakes.claude_emulator import ClaudeEmulator
    from tests.fixtures.agent_env import MAIN, agent_config

    published = Quotas()
    dynamodb = aws.client("dynamodb", max_pool_connections=64)
    table = "mcp-fleet-buckets"
    ensure_table(dynamodb, table)
    config = agent_config()
    call_line = 'EMULATOR: call aws___search_documentation {"search_phrase": "sqs quotas"}'
    with ClaudeEmulator({"tier": "tier4", "output_tokens": 12}) as emulator, \
            LocalAwsMcp(aws.endpoint_url, quotas=dataclasses.replace(
                published, requests_per_second=published.requests_per_second * RATE_SCALE)
                        ) as quota_stand_in:
        assert published == Quotas(requests_per_second=3.0, connections=27,
                                   sessions_per_account=180, sessions_per_role=90)
        # the default share (2 requests/s, burst 1, 20 connections, 80 sessions), in scaled
        # time; a wait budget long enough for the last of the 40 (about 170 requests at the
        # published 2/s would take ~85 s)
        mcp = json.loads(json.dumps(CONTEXT["mcp"]))
        mcp["servers"]["aws"].update(url=quota_stand_in.url, max_wait_s=150)
        default = load_mcp_settings(mcp).servers["aws"]
        assert (default.requests_per_second, default.burst, default.max_connections,
                default.max_sessions) == (2.0, 1, 20, 80)
        settings = {"aws": dataclasses.replace(
            default, requests_per_second=default.requests_per_second * RATE_SCALE,
            burst=default.burst * RATE_SCALE)}
        sdk = anthropic.Anthropic(base_url=emulator.base_url, api_key="test-key",
                                  max_retries=0)
        claude = GuardedClaude({MAIN: TokenBucket(table, "anthropic#sonnet-4",
                                                  Limits(rpm=4000, itpm=2_000_000,
                                                         otpm=400_000), dynamodb)},
                               sdk_client=sdk)
        containers = [McpToolbox.shared(settings, table=table, dynamodb=dynamodb, logger=Log(),
                                        timeout_s=20) for _ in range(8)]

        def agent_request(index: int):
            request = AgentRequest(f"Find the SQS quotas.\n{call_line}", MAIN, 256,
                                   f"req-fleet-{index:03d}", "acme", 300.0)
            return run_agent(request, claude, config,
                             tool_context=lambda: tool_context(aws, world, request.request_id),
                             metrics=RequestMetrics(), deadline_at=time.monotonic() + 300,
                             logger=Log(), mcp=containers[index % 8])

        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=40) as pool:
            outcomes = list(pool.map(agent_request, range(40)))
        elapsed = time.monotonic() - started
        report = quota_stand_in.quota()
    answered = [o for o in outcomes if o.status == "ok" and o.tool_calls == 1]
    tool_results = [block for o in outcomes for message in o.transcript
                    if isinstance(message.get("content"), list)
                    for block in message["content"] if block.get("type") == "tool_result"]
    print(f"\nMCP fleet: 40 agent requests, {len(answered)} answered, {report['requests']} "
          f"MCP HTTP requests in {elapsed:.1f} s ({report['requests'] / elapsed:.2f}/s), "
          f"peak {report['peak']['connections']} connections, "
          f"{report['peak']['sessions']} sessions; refused by the stand-in: "
          f"{report['refused']}; by kind {report['kinds']}")
    errors = sorted({str(block["content"])[:200] for block in tool_results
                     if block.get("is_error")})
    assert report["refused"] == {"rate": 0, "connections": 0, "sessions": 0}
    assert not errors
    assert len(answered) == 40
    assert len(tool_results) == 40
    assert not any(block.get("is_error") for block in tool_results)
    assert all("Identity-based policy" in str(block["content"]) or "SQS" in
               str(block["content"]) for block in tool_results)
    assert report["sessions"] == 0  # every session was closed with its DELETE
