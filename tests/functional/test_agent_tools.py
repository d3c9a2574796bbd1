"""Agent tools against the local AWS server over HTTP: tenant scoping by construction, error
mapping, one audit line per call, and the AssumeRole request that tags the tool session.

moto does not enforce IAM, so what these tests pin is what the tools SEND: every key and
partition a tool addresses is the context tenant's, and refused input never reaches AWS. The
IAM side (the tenant tag in the policy) is pinned in tests/unit/test_tool_registry.py.
"""

from __future__ import annotations

import itertools
import json
import os

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from agent.tool_runner import run_tool
from agent.credentials import assume_tool_role
from agent.tools import ToolContext, ToolResources
from agent.tools.documents import MAX_CONTENT_CHARS
from local.fakes.aws_server import REGION

ROLE_ARN = "arn:aws:iam::123456789012:role/bulwark-tool-role"
_names = itertools.count()


class ListLogger:
    """Logger stand-in that keeps every line."""

    def __init__(self):
        self.lines: list[str] = []

    def info(self, message):
        self.lines.append(message)

    def records(self):
        return [json.loads(line) for line in self.lines]


@pytest.fixture(scope="module")
def resources(local_aws):
    suffix = f"{os.getpid()}-{next(_names)}"
    resources = ToolResources(docs_bucket=f"docs-{suffix}", docs_prefix="docs/",
                              notes_table=f"notes-{suffix}")
    s3 = local_aws.client("s3")
    s3.create_bucket(Bucket=resources.docs_bucket)
    documents = {
        "docs/acme/report.txt": "Acme Q1 revenue: 12 anvils.".encode(),
        "docs/acme/plans/2026.md": "# Plans\nMore anvils.".encode(),
        "docs/acme/big.txt": ("x" * (MAX_CONTENT_CHARS + 5000)).encode(),
        "docs/acme/wide.txt": ("é" * (MAX_CONTENT_CHARS + 1)).encode(),
        "docs/globex/secret.txt": "Globex merger plan.".encode(),
        "docs/globex/report.txt": "Globex Q1 revenue: 99 widgets.".encode(),
        "docs/acme-evil/report.txt": "A neighbouring prefix, not acme's.".encode(),
    }
    for key, body in documents.items():
        s3.put_object(Bucket=resources.docs_bucket, Key=key, Body=body)
    local_aws.client("dynamodb").create_table(
        TableName=resources.notes_table, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "tenant", "AttributeType": "S"},
                              {"AttributeName": "note_id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "tenant", "KeyType": "HASH"},
                   {"AttributeName": "note_id", "KeyType": "RANGE"}])
    return resources


@pytest.fixture
def tool_session():
    """Stands in for the tool role's session (moto accepts any credentials)."""
    return boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                         aws_session_token="testing", region_name=REGION)


@pytest.fixture
def make_ctx(local_aws, resources, tool_session, clock):
    def make(tenant="acme", request_id="req-0001", resources=resources):
        return ToolContext(tool_session, tenant, request_id, resources,
                           endpoint_url=local_aws.endpoint_url, clock=clock)

    return make


@pytest.fixture
def logger():
    return ListLogger()


def s3_paths(local_aws) -> dict[str, int]:
    """Requests the server saw since the last reset, by path (S3 is path-style here)."""
    return {path: n for path, n in local_aws.stats().items() if path.startswith("/")}


def error_response(status: int, code: str):
    """A before-call hook answer: botocore raises ClientError(code) without sending."""
    def respond(**kwargs):
        return (AWSResponse("http://injected", status, {}, None),
                {"Error": {"Code": code, "Message": f"injected {code}"},
                 "ResponseMetadata": {"HTTPStatusCode": status}})

    return respond


# -- read_document ------------------------------------------------------------------------------

def test_read_document_reads_from_the_tenant_prefix(make_ctx, resources, local_aws, logger):
    local_aws.reset_stats()
    result = run_tool(make_ctx(), "read_document", {"key": "report.txt"}, caller="tester",
                      logger=logger)
    assert result == {"key": "report.txt", "content": "Acme Q1 revenue: 12 anvils.",
                      "truncated": False}
    assert s3_paths(local_aws) == {f"/{resources.docs_bucket}/docs/acme/report.txt": 1}


def test_same_key_reads_each_tenants_own_document(make_ctx, logger):
    acme = run_tool(make_ctx("acme"), "read_document", {"key": "report.txt"}, caller="t",
                    logger=logger)
    globex = run_tool(make_ctx("globex"), "read_document", {"key": "report.txt"}, caller="t",
                      logger=logger)
    assert acme["content"].startswith("Acme") and globex["content"].startswith("Globex")


def test_another_tenants_document_is_not_addressable(make_ctx, resources, local_aws, logger):
    """globex/secret.txt exists; acme asking for it addresses docs/acme/secret.txt."""
    local_aws.reset_stats()
    result = run_tool(make_ctx("acme"), "read_document", {"key": "secret.txt"}, caller="t",
                      logger=logger)
    assert result == {"error": "not found"}
    assert s3_paths(local_aws) == {f"/{resources.docs_bucket}/docs/acme/secret.txt": 1}
    [record] = logger.records()
    assert record["outcome"] == "error" and record["detail"] == "not found"


@pytest.mark.parametrize("key", [
    "../globex/secret.txt", "plans/../../globex/secret.txt", "/docs/globex/secret.txt",
    "report.txt\x00", "report\r\n.txt", "k" * 513,
])
def test_bad_keys_never_reach_s3(make_ctx, local_aws, logger, key):
    local_aws.reset_stats()
    result = run_tool(make_ctx(), "read_document", {"key": key}, caller="t", logger=logger)
    assert result["invalid_input"] is True and result["error"]
    assert local_aws.stats() == {}
    [record] = logger.records()
    assert record["outcome"] == "invalid_input"
    assert record["detail"] == result["error"]


def test_bad_keys_are_refused_by_the_tool_itself_too(make_ctx, local_aws):
    """Calling `run` directly (no schema check first) still refuses before any call."""
    from agent.tools import TOOLS

    local_aws.reset_stats()
    for key in ("../globex/secret.txt", "/abs", "a\x1fb", "k" * 513):
        result = TOOLS["read_document"].run(make_ctx(), {"key": key})
        assert result["invalid_input"] is True
    assert local_aws.stats() == {}


def test_long_documents_are_truncated_to_the_character_limit(make_ctx, logger):
    big = run_tool(make_ctx(), "read_document", {"key": "big.txt"}, caller="t", logger=logger)
    assert big["truncated"] is True and big["content"] == "x" * MAX_CONTENT_CHARS
    wide = run_tool(make_ctx(), "read_document", {"key": "wide.txt"}, caller="t",
                    logger=logger)
    assert wide["truncated"] is True and wide["content"] == "é" * MAX_CONTENT_CHARS


# -- list_documents -----------------------------------------------------------------------------

def test_list_documents_lists_only_the_tenant_prefix(make_ctx, local_aws, logger):
    sent = []
    ctx = make_ctx("acme")
    ctx.client("s3").meta.events.register(
        "before-parameter-build.s3.ListObjectsV2", lambda params, **kw: sent.append(dict(params)))
    result = run_tool(ctx, "list_documents", {}, caller="t", logger=logger)
    assert result == {"keys": ["big.txt", "plans/2026.md", "report.txt", "wide.txt"],
                      "truncated": False}
    assert [(p["Prefix"], p["MaxKeys"]) for p in sent] == [("docs/acme/", 100)]
    globex = run_tool(make_ctx("globex"), "list_documents", {}, caller="t", logger=logger)
    assert globex["keys"] == ["report.txt", "secret.txt"]


# -- notes --------------------------------------------------------------------------------------

def test_write_note_puts_the_item_in_the_tenant_partition(make_ctx, resources, local_aws,
                                                          dynamodb, logger, clock):
    local_aws.reset_stats()
    result = run_tool(make_ctx("acme", "req-note-1"), "write_note",
                      {"note_id": "summary", "text": "12 anvils"}, caller="t", logger=logger)
    assert result == {"note_id": "summary", "created_at": "2027-01-15T08:00:00.000Z",
                      "written": True}
    assert local_aws.stats() == {"DynamoDB_20120810.PutItem": 1}
    item = dynamodb.get_item(TableName=resources.notes_table,
                             Key={"tenant": {"S": "acme"}, "note_id": {"S": "summary"}})["Item"]
    assert item == {"tenant": {"S": "acme"}, "note_id": {"S": "summary"},
                    "text": {"S": "12 anvils"}, "request_id": {"S": "req-note-1"},
                    "created_at": {"S": "2027-01-15T08:00:00.000Z"}}


def test_notes_with_the_same_id_stay_in_separate_tenant_partitions(make_ctx, logger, clock):
    run_tool(make_ctx("acme"), "write_note", {"note_id": "shared-id", "text": "acme's"},
             caller="t", logger=logger)
    clock.advance(1.5)
    run_tool(make_ctx("globex"), "write_note", {"note_id": "shared-id", "text": "globex's"},
             caller="t", logger=logger)
    acme = run_tool(make_ctx("acme"), "read_note", {"note_id": "shared-id"}, caller="t",
                    logger=logger)
    globex = run_tool(make_ctx("globex"), "read_note", {"note_id": "shared-id"}, caller="t",
                      logger=logger)
    assert acme == {"note_id": "shared-id", "text": "acme's",
                    "created_at": "2027-01-15T08:00:00.000Z"}
    assert globex == {"note_id": "shared-id", "text": "globex's",
                      "created_at": "2027-01-15T08:00:01.500Z"}
    missing = run_tool(make_ctx("initech"), "read_note", {"note_id": "shared-id"},
                       caller="t", logger=logger)
    assert missing == {"error": "not found"}


def test_invalid_note_never_reaches_dynamodb(make_ctx, local_aws, logger):
    local_aws.reset_stats()
    for tool_input in ({"note_id": "../x", "text": "t"}, {"note_id": "n", "text": "x" * 4001},
                       {"note_id": "n"}):
        result = run_tool(make_ctx(), "write_note", tool_input, caller="t", logger=logger)
        assert result["invalid_input"] is True
    assert local_aws.stats() == {}
    assert [r["outcome"] for r in logger.records()] == ["invalid_input"] * 3


# -- error mapping ------------------------------------------------------------------------------

def test_s3_access_denied_becomes_a_denied_result(make_ctx, local_aws, logger):
    ctx = make_ctx()
    ctx.client("s3").meta.events.register("before-call.s3.GetObject",
                                          error_response(403, "AccessDenied"))
    local_aws.reset_stats()
    result = run_tool(ctx, "read_document", {"key": "report.txt"}, caller="t", logger=logger)
    assert result == {"error": "access denied", "denied": True}
    assert local_aws.stats() == {}  # the hook answered; nothing was sent
    [record] = logger.records()
    assert (record["outcome"], record["detail"]) == ("denied", "access denied")


def test_dynamodb_access_denied_becomes_a_denied_result(make_ctx, logger):
    ctx = make_ctx()
    ctx.client("dynamodb").meta.events.register(
        "before-call.dynamodb.PutItem", error_response(400, "AccessDeniedException"))
    result = run_tool(ctx, "write_note", {"note_id": "n", "text": "t"}, caller="t",
                      logger=logger)
    assert result == {"error": "access denied", "denied": True}
    assert logger.records()[0]["outcome"] == "denied"


def test_other_aws_errors_become_their_code(make_ctx, resources, logger):
    gone = ToolResources(resources.docs_bucket, resources.docs_prefix, "no-such-table")
    result = run_tool(make_ctx(resources=gone), "write_note", {"note_id": "n", "text": "t"},
                      caller="t", logger=logger)
    assert result == {"error": "ResourceNotFoundException"}
    no_bucket = ToolResources("no-such-bucket-anywhere", "docs/", resources.notes_table)
    listed = run_tool(make_ctx(resources=no_bucket), "list_documents", {}, caller="t",
                      logger=logger)
    assert listed == {"error": "NoSuchBucket"}
    assert [r["outcome"] for r in logger.records()] == ["error", "error"]


# -- audit lines --------------------------------------------------------------------------------

def test_exactly_one_audit_line_per_call_with_the_fields(make_ctx, resources, logger):
    ctx = make_ctx("acme", "req-audit-7")
    calls = [("list_documents", {}), ("read_document", {"key": "report.txt"}),
             ("write_note", {"note_id": "audit-me", "text": "do not log this text"}),
             ("read_document", {"key": "../globex/secret.txt"})]
    for tool, tool_input in calls:
        run_tool(ctx, tool, tool_input, caller="arn:aws:iam::123456789012:role/caller",
                 logger=logger)
    records = logger.records()
    assert len(logger.lines) == len(calls)
    bucket, table = resources.docs_bucket, resources.notes_table
    assert [(r["tool"], r["target"], r["outcome"]) for r in records] == [
        ("list_documents", f"s3://{bucket}/docs/acme/", "ok"),
        ("read_document", f"s3://{bucket}/docs/acme/report.txt", "ok"),
        ("write_note", f"dynamodb://{table}/acme/audit-me", "ok"),
        ("read_document", f"s3://{bucket}/docs/acme/../globex/secret.txt", "invalid_input"),
    ]
    for record in records:
        assert record["audit"] == "tool_call"
        assert record["request_id"] == "req-audit-7"
        assert record["caller"] == "arn:aws:iam::123456789012:role/caller"
        assert record["tenant"] == "acme"
        assert isinstance(record["duration_ms"], float) and record["duration_ms"] >= 0
    assert "detail" not in records[0] and records[3]["detail"] == "key must not contain '..'"
    assert "do not log this text" not in "".join(logger.lines)
    assert "testing" not in "".join(logger.lines)  # no credential material


# -- AssumeRole ---------------------------------------------------------------------------------

@pytest.fixture
def sts_with_capture(local_aws):
    sts = local_aws.client("sts")
    sent: list[dict] = []
    sts.meta.events.register("before-parameter-build.sts.AssumeRole",
                             lambda params, **kwargs: sent.append(dict(params)))
    return sts, sent


def test_assume_tool_role_sends_session_name_source_identity_and_tags(sts_with_capture,
                                                                       local_aws, make_ctx,
                                                                       resources, logger):
    sts, sent = sts_with_capture
    session = assume_tool_role(sts, ROLE_ARN, request_id="req-abc.123@x", tenant="acme",
                               agent="bulwark-agent", duration_s=1200)
    assert sent == [{
        "RoleArn": ROLE_ARN, "RoleSessionName": "req-abc.123@x",
        "SourceIdentity": "req-abc.123@x",
        "Tags": [{"Key": "tenant", "Value": "acme"}, {"Key": "agent", "Value": "bulwark-agent"}],
        "DurationSeconds": 1200}]
    credentials = session.get_credentials().get_frozen_credentials()
    assert credentials.access_key != "testing" and credentials.token
    assert session.region_name == REGION
    # The session works for a tool call (moto accepts the issued credentials).
    ctx = ToolContext(session, "acme", "req-abc.123@x", resources,
                      endpoint_url=local_aws.endpoint_url)
    result = run_tool(ctx, "read_document", {"key": "report.txt"}, caller="t", logger=logger)
    assert result["content"].startswith("Acme")


def test_assume_tool_role_defaults_to_the_shortest_session(sts_with_capture):
    sts, sent = sts_with_capture
    assume_tool_role(sts, ROLE_ARN, request_id="req-1", tenant="globex", agent="ops-agent")
    assert sent[0]["Tags"] == [{"Key": "tenant", "Value": "globex"},
                               {"Key": "agent", "Value": "ops-agent"}]
    assert sent[0]["DurationSeconds"] == 900


@pytest.mark.parametrize("kwargs, message", [
    ({"request_id": "x"}, "request_id 'x' must be 2-64 characters"),
    ({"request_id": "has space"}, "request_id 'has space' must be"),
    ({"request_id": "r" * 65}, "must be 2-64 characters"),
    ({"tenant": "acme/globex"}, "tenant 'acme/globex'"),
    ({"agent": "bad*agent"}, "agent 'bad\\*agent'"),
    ({"duration_s": 60}, "duration_s=60"),
])
def test_bad_assume_role_arguments_are_refused_before_any_call(sts_with_capture, local_aws,
                                                               kwargs, message):
    sts, sent = sts_with_capture
    arguments = {"request_id": "req-1", "tenant": "acme", "agent": "bulwark-agent", **kwargs}
    local_aws.reset_stats()
    with pytest.raises(ValueError, match=message):
        assume_tool_role(sts, ROLE_ARN, **arguments)
    assert sent == [] and local_aws.stats() == {}
