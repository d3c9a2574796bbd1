"""cli.audit: CloudTrail (Logs Insights + event history) and local audit lines, normalised into
one row model; filters, the table (denied attempts stand out) and --json. No network: AWS
clients are botocore Stubbers or small fakes."""

from __future__ import annotations

import copy
import io
import itertools
import json
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from cli import audit

FIXTURE = json.loads((Path(__file__).parents[1] / "fixtures" / "cloudtrail_events.json")
                     .read_text())
EVENTS: list[dict] = FIXTURE["events"]
AGENT_ROLE, TOOL_ROLE = FIXTURE["roles"]["agent"], FIXTURE["roles"]["tool"]
STACK = FIXTURE["stack"]
LOG_GROUP = "Bulwark-prod-AuditTrailLogs712385C4-hV3kP9xQ2mZr"
BUCKET = EVENTS[1]["requestParameters"]["bucketName"]
TABLE = EVENTS[3]["requestParameters"]["tableName"]
UTC = timezone.utc
START = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
END = datetime(2026, 11, 22, 11, 0, tzinfo=UTC)
NOW = END + timedelta(minutes=30)


def by_name(name: str, n: int = 0) -> dict:
    return [e for e in EVENTS if e["eventName"] == name][n]


# -- stand-ins for the AWS clients ---------------------------------------------------------------

def insights_rows(events: list[dict]) -> list[list[dict]]:
    """Events as GetQueryResults returns them for `fields @timestamp, @message`."""
    rows = []
    for i, event in enumerate(events):
        when = event.get("eventTime") or event["timestamp"]  # a CloudTrail event or a log line
        stamp = audit.parse_time(when).strftime("%Y-%m-%d %H:%M:%S.000")
        rows.append([{"field": "@timestamp", "value": stamp},
                     {"field": "@message", "value": json.dumps(event)},
                     {"field": "@ptr", "value": f"CmAKJgoiMTExMTIyMjIzMzMzOkJ1bHdhcmsQABI{i}"}])
    return rows


class FakeLogs:
    """Logs Insights: records the query, answers "Running" `running` times, then `status`."""

    def __init__(self, events: list[dict], *, running: int = 1, status: str = "Complete"):
        self.events, self.running, self.status = events, running, status
        self.started: dict | None = None
        self.polls = 0
        self.stopped: str | None = None

    def start_query(self, **kwargs):
        self.started = kwargs
        return {"queryId": "0f8d0c3a-4a1b-4a6e-9a7e-4f1c2b3d4e5f"}

    def get_query_results(self, *, queryId):
        assert queryId == "0f8d0c3a-4a1b-4a6e-9a7e-4f1c2b3d4e5f"
        self.polls += 1
        if self.polls <= self.running:
            return {"status": "Running", "results": [], "statistics": {}}
        return {"status": self.status, "results": insights_rows(self.events),
                "statistics": {"recordsMatched": float(len(self.events)),
                               "recordsScanned": 1234.0, "bytesScanned": 98765.0}}

    def stop_query(self, *, queryId):
        self.stopped = queryId
        return {"success": True}


class NoCalls:
    """A client that must not be used."""

    def __getattr__(self, name):
        raise AssertionError(f"unexpected call {name}")


AGENT_LOG_GROUP = "/aws/lambda/Bulwark-prod-agent"


def stack_outputs(*, trail: bool = True, agent_logs: bool = False) -> list[dict]:
    found = {"AgentRoleArn": AGENT_ROLE, "ToolRoleArn": TOOL_ROLE,
             "WorkQueueUrl": "https://sqs.us-east-1.amazonaws.com/111122223333/work"}
    if trail:
        found["TrailLogGroup"] = LOG_GROUP
    if agent_logs:
        found["AgentLogGroup"] = AGENT_LOG_GROUP
    return [{"OutputKey": k, "OutputValue": v} for k, v in found.items()]


def stubbed_stack(*, trail: bool = True, agent_logs: bool = False):
    """A real CloudFormation client answering DescribeStacks from a Stubber."""
    cfn = boto3.client("cloudformation", region_name="us-east-1")
    cfn_stub = Stubber(cfn)
    cfn_stub.add_response("describe_stacks", {"Stacks": [{
        "StackName": STACK, "StackStatus": "CREATE_COMPLETE",
        "StackId": f"arn:aws:cloudformation:us-east-1:111122223333:stack/{STACK}/x",
        "CreationTime": datetime(2026, 11, 1, tzinfo=UTC),
        "Outputs": stack_outputs(trail=trail, agent_logs=agent_logs)}]}, {"StackName": STACK})
    cfn_stub.activate()
    return cfn, (cfn_stub,)


def stubbed_history(request_id: str, events: list[dict]):
    """A CloudTrail client whose LookupEvents (Username = request id) returns `events`."""
    cloudtrail = boto3.client("cloudtrail", region_name="us-east-1")
    stub = Stubber(cloudtrail)
    stub.add_response("lookup_events", {"Events": [{
        "EventId": e["eventID"], "EventName": e["eventName"], "ReadOnly": "true",
        "AccessKeyId": e["userIdentity"]["accessKeyId"],
        "EventTime": audit.parse_time(e["eventTime"]), "EventSource": e["eventSource"],
        "Username": request_id,
        "Resources": [{"ResourceType": r["type"], "ResourceName": r["ARN"]}
                      for r in e.get("resources", [])],
        "CloudTrailEvent": json.dumps(e)} for e in events]}, {
        "LookupAttributes": [{"AttributeKey": "Username", "AttributeValue": request_id}],
        "StartTime": START, "EndTime": END, "MaxResults": 50})
    stub.activate()
    return cloudtrail, stub


def account(logs, *, request_id=None, cloudtrail=None, trail=True, agent_logs=False,
            **kwargs):
    cfn, stubs = stubbed_stack(trail=trail, agent_logs=agent_logs)
    rows = audit.account_rows(STACK, START, END, cloudformation=cfn, logs=logs,
                              cloudtrail=cloudtrail or NoCalls(), request_id=request_id,
                              sleep=lambda s: None, **kwargs)
    for stub in stubs:
        stub.assert_no_pending_responses()
    return rows


# -- the fixture ---------------------------------------------------------------------------------

def test_fixture_holds_the_events_the_tests_rely_on():
    for event in EVENTS:
        assert event["eventVersion"] and event["eventTime"].endswith("Z")
        identity = event["userIdentity"]
        assert identity["type"] == "AssumedRole" and identity["arn"].startswith("arn:aws:sts::")
        assert identity["sessionContext"]["sessionIssuer"]["arn"].startswith("arn:aws:iam::")
        assert event["eventSource"].endswith(".amazonaws.com") and event["requestParameters"]
    denied = [e for e in EVENTS if e.get("errorCode") == "AccessDenied"]
    assert len(denied) == 1 and "docs/globex/" in denied[0]["requestParameters"]["key"]
    own = by_name("GetObject")
    assert own["userIdentity"]["sessionContext"]["sourceIdentity"] == "req-1"
    assert own["userIdentity"]["sessionContext"]["sessionIssuer"]["arn"] == TOOL_ROLE
    assert own["requestParameters"]["key"].startswith("docs/acme/")
    assert by_name("PutItem")["resources"][0]["type"] == "AWS::DynamoDB::Table"
    assert any(audit.event_issuer(e) not in (AGENT_ROLE, TOOL_ROLE) for e in EVENTS)


# -- account mode: Logs Insights -----------------------------------------------------------------

def test_insights_query_filters_on_the_kit_roles_and_normalises_events():
    logs = FakeLogs(EVENTS, running=2)
    rows = account(logs)

    started = logs.started
    assert started["logGroupName"] == LOG_GROUP
    assert started["startTime"] == int(START.timestamp())
    assert started["endTime"] >= int(END.timestamp())
    query = started["queryString"]
    issuer = "userIdentity.sessionContext.sessionIssuer.arn"
    assert f'{issuer} = "{AGENT_ROLE}" or {issuer} = "{TOOL_ROLE}"' in query
    assert "sourceIdentity" not in query  # no request id given
    assert logs.polls == 3  # Running, Running, Complete

    # the SSO administrator's GetObject is not the kit's: dropped even though returned
    assert len(rows) == len(EVENTS) - 1
    assert not any("alice" in r.principal for r in rows)
    assert {r.source for r in rows} == {"trail"}

    assume, read, decrypt, put, denied, other = rows
    assert (assume.action, assume.request_id, assume.tenant, assume.target) == \
        ("sts:AssumeRole", "req-1", "acme", TOOL_ROLE)
    assert assume.principal.endswith("/Bulwark-prod-agent")
    assert (read.action, read.request_id, read.principal, read.outcome, read.tenant) == \
        ("s3:GetObject", "req-1", "Bulwark-prod-tool/req-1", "ok", "acme")
    assert read.target == f"s3://{BUCKET}/docs/acme/reports/q3.txt"
    assert read.time == datetime(2026, 11, 22, 10, 0, 2, tzinfo=UTC)
    assert decrypt.action == "kms:Decrypt" and decrypt.target.startswith("arn:aws:kms:")
    assert (put.action, put.target, put.tenant) == \
        ("dynamodb:PutItem", f"dynamodb://{TABLE}/acme/q3-summary", "acme")
    # the denied attempt on another tenant's document: the request's tenant, DENIED
    assert (denied.outcome, denied.request_id, denied.tenant) == ("DENIED", "req-1", "acme")
    assert denied.target == f"s3://{BUCKET}/docs/globex/contracts/merger.txt"
    assert denied.target_tenant == "globex" and "not authorized" in denied.detail
    # no AssumeRole for req-2 in range: its successful access proves its tenant
    assert (other.request_id, other.tenant, other.outcome) == ("req-2", "globex", "ok")


def test_insights_query_with_stubber_and_request_id():
    logs = boto3.client("logs", region_name="us-east-1")
    stub = Stubber(logs)
    req1 = [e for e in EVENTS if "req-1" in json.dumps(e["userIdentity"])
            or e["requestParameters"].get("sourceIdentity") == "req-1"]
    query = audit.build_query([AGENT_ROLE, TOOL_ROLE], request_id="req-1")
    stub.add_response("start_query", {"queryId": "q-7"}, {
        "logGroupName": LOG_GROUP, "queryString": query, "startTime": int(START.timestamp()),
        "endTime": int(END.timestamp()) + 1, "limit": audit.INSIGHTS_MAX_ROWS})
    stub.add_response("get_query_results", {"status": "Scheduled", "results": []},
                      {"queryId": "q-7"})
    stub.add_response("get_query_results", {"status": "Complete",
                                            "results": insights_rows(req1)}, {"queryId": "q-7"})
    stub.activate()
    cloudtrail, history = stubbed_history("req-1", [by_name("Decrypt")])

    rows = audit.filter_rows(account(logs, request_id="req-1", cloudtrail=cloudtrail),
                             request_id="req-1")
    stub.assert_no_pending_responses()
    history.assert_no_pending_responses()
    assert 'userIdentity.sessionContext.sourceIdentity = "req-1"' in query
    assert 'requestParameters.sourceIdentity = "req-1"' in query
    assert [r.action for r in rows] == ["sts:AssumeRole", "s3:GetObject", "kms:Decrypt",
                                        "dynamodb:PutItem", "s3:GetObject"]
    assert sum(r.action == "kms:Decrypt" for r in rows) == 1  # in both sources: shown once


def test_event_history_adds_management_events_the_log_group_lacks():
    extra = copy.deepcopy(by_name("Decrypt"))
    extra.update(eventID="aa11bb22-cc33-4d44-8e55-ff6677889900", eventTime="2026-11-22T10:00:04Z",
                 eventName="GenerateDataKey")
    foreign = copy.deepcopy(extra)  # the same session name used under another role
    foreign["eventID"] = "99887766-5544-4332-a110-ffeeddccbbaa"
    foreign["userIdentity"]["sessionContext"]["sessionIssuer"]["arn"] = \
        "arn:aws:iam::111122223333:role/SomeoneElse"
    cloudtrail, history = stubbed_history("req-1", [by_name("Decrypt"), extra, foreign])
    rows = account(FakeLogs([e for e in EVENTS if e is not by_name("Decrypt")], running=0),
                   request_id="req-1", cloudtrail=cloudtrail)
    history.assert_no_pending_responses()
    actions = [r.action for r in audit.filter_rows(rows, request_id="req-1")]
    assert actions.count("kms:Decrypt") == 1 and actions.count("kms:GenerateDataKey") == 1


def test_without_a_trail_log_group_only_the_event_history_is_read():
    with pytest.raises(audit.AuditError, match="--log-group"):
        account(NoCalls(), trail=False)
    cloudtrail, history = stubbed_history("req-1", [by_name("Decrypt")])
    warnings = []
    rows = account(NoCalls(), trail=False, request_id="req-1", cloudtrail=cloudtrail,
                   warn=warnings.append)
    assert [r.action for r in rows] == ["kms:Decrypt"]
    assert any("event history" in w for w in warnings)


def test_log_group_option_overrides_the_stack():
    logs = FakeLogs(EVENTS, running=0)
    account(logs, trail=False, log_group="org-trail-logs")
    assert logs.started["logGroupName"] == "org-trail-logs"


def test_a_stack_without_the_outputs_is_refused_with_a_clear_error():
    class Cfn:
        def describe_stacks(self, **kwargs):
            return {"Stacks": [{"StackId": "arn:aws:cloudformation:us-east-1:1:stack/x/y",
                                "Outputs": [{"OutputKey": "Other", "OutputValue": "v"}]}]}

        def get_template(self, **kwargs):
            return {"TemplateBody": {"Resources": {}}}

    with pytest.raises(audit.AuditError, match="stack 'not-bulwark' has no output "
                       "AgentRoleArn, ToolRoleArn: is it a Bulwark stack"):
        audit.kit_resources(Cfn(), "not-bulwark")


def request_line(request_id: str, status: str, *, tool_calls: int, when: str) -> dict:
    return {"level": "INFO", "message": "request finished", "timestamp": when,
            "service": "bulwark-agent", "request_id": request_id, "tenant": "acme",
            "caller": "arn:aws:iam::111122223333:user/ci", "status": status,
            "model": "claude-sonnet-4-6", "model_calls": 1 + tool_calls,
            "tool_calls": tool_calls, "duration_ms": 2345,
            "usage": {"input_tokens": 1200, "output_tokens": 300}}


def test_every_request_has_a_row_from_the_functions_log_group_even_without_tool_calls():
    lines = [request_line("req-9", "ok", tool_calls=0, when="2026-11-22T10:20:00.000Z"),
             request_line("req-10", "deferred", tool_calls=0, when="2026-11-22T10:21:00.000Z")]

    class TwoGroups(FakeLogs):
        """The agent's log group answers request lines, the trail's the CloudTrail events."""

        def start_query(self, **kwargs):
            self.events = lines if kwargs["logGroupName"] == AGENT_LOG_GROUP else EVENTS
            self.polls = 0
            return super().start_query(**kwargs)

    logs = TwoGroups(EVENTS, running=0)
    rows = account(logs, agent_logs=True)
    requests = [r for r in rows if r.action == "agent:request"]
    assert [(r.request_id, r.outcome, r.source) for r in requests] == [
        ("req-9", "ok", "logs"), ("req-10", "deferred", "logs")]
    assert requests[0].detail == "1 model call(s), 0 tool call(s), 1,500 tokens, 2,345 ms"
    assert requests[0].target == "model:claude-sonnet-4-6" and requests[0].tenant == "acme"
    assert 'filter message = "request finished"' in logs.started["queryString"]
    assert any(r.source == "trail" for r in rows)  # the CloudTrail rows are still there


def test_local_mode_reads_request_lines_beside_the_tool_calls(tmp_path):
    (tmp_path / "audit.jsonl").write_text(json.dumps({
        "audit": "tool_call", "request_id": "req-1", "tenant": "acme", "tool": "read_note",
        "target": "dynamodb://notes/acme/n1", "outcome": "ok",
        "timestamp": "2026-11-22T10:00:01Z"}) + "\n")
    (tmp_path / "agent.log").write_text("\n".join(json.dumps(line) for line in (
        request_line("req-1", "ok", tool_calls=1, when="2026-11-22T10:00:02Z"),
        request_line("req-2", "rejected", tool_calls=0, when="2026-11-22T10:00:03Z"),
        {"level": "INFO", "message": "something else"})) + "\n")
    rows = audit.local_rows(tmp_path)
    assert sorted((r.request_id, r.action, r.outcome) for r in rows) == [
        ("req-1", "agent:request", "ok"), ("req-1", "tool:read_note", "ok"),
        ("req-2", "agent:request", "rejected")]


def test_query_timeout_stops_the_query():
    logs = FakeLogs(EVENTS, running=10 ** 6)
    ticks = iter(range(0, 10 ** 6, 5))
    with pytest.raises(audit.AuditError, match="did not finish within 30 s"):
        audit.run_insights_query(logs, LOG_GROUP, "fields @message", START, END, timeout_s=30,
                                 sleep=lambda s: None, clock=lambda: float(next(ticks)))
    assert logs.stopped == "0f8d0c3a-4a1b-4a6e-9a7e-4f1c2b3d4e5f"


def test_failed_query_is_an_error():
    with pytest.raises(audit.AuditError, match="status Failed"):
        audit.run_insights_query(FakeLogs(EVENTS, running=0, status="Failed"), LOG_GROUP,
                                 "fields @message", START, END, sleep=lambda s: None)


# -- local mode ----------------------------------------------------------------------------------

_loggers = itertools.count()


def powertools_lines(records: list[tuple[str, dict]]) -> str:
    """Audit lines as the agent writes them (agent.tool_runner + a Powertools Logger), each at the
    given time, mixed with the other lines of a Powertools log."""
    from aws_lambda_powertools import Logger

    from agent.tool_runner import audit_tool_call

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    at = {"t": 0.0}

    def stamp(record):
        record.created, record.msecs = at["t"], (at["t"] % 1) * 1000
        return True

    handler.addFilter(stamp)
    # a fresh service name: Powertools keeps the first handler of a logger name
    logger = Logger(service=f"bulwark-agent-test-{next(_loggers)}", logger_handler=handler)
    for when, record in records:
        at["t"] = audit.parse_time(when).timestamp()
        logger.info("request started", extra={"request_id": record["request_id"]})
        audit_tool_call(logger, **record)
    logger.info("request finished", extra={"status": "ok"})
    return stream.getvalue()


LOCAL = [
    ("2026-11-22T10:00:02Z", dict(request_id="req-1", caller="arn:aws:iam::111122223333:user/ci",
                                  tenant="acme", tool="read_document",
                                  target="s3://bulwark-docs/docs/acme/reports/q3.txt",
                                  outcome="ok", duration_ms=41.5)),
    ("2026-11-22T10:00:04Z", dict(request_id="req-1", caller="arn:aws:iam::111122223333:user/ci",
                                  tenant="acme", tool="write_note",
                                  target="dynamodb://bulwark-notes/acme/q3-summary",
                                  outcome="ok", duration_ms=12.0)),
    ("2026-11-22T10:00:05Z", dict(request_id="req-1", caller="arn:aws:iam::111122223333:user/ci",
                                  tenant="acme", tool="read_document",
                                  target="s3://bulwark-docs/docs/acme/missing.txt",
                                  outcome="denied", duration_ms=30.1, detail="access denied")),
    ("2026-11-22T10:30:00Z", dict(request_id="req-2", caller="arn:aws:iam::111122223333:user/ops",
                                  tenant="globex", tool="write_note",
                                  target="dynamodb://bulwark-notes/globex/",
                                  outcome="invalid_input", duration_ms=0.2,
                                  detail="note_id must be 1-128 characters")),
]


@pytest.fixture
def audit_dir(tmp_path):
    (tmp_path / "agent.jsonl").write_text(powertools_lines(LOCAL[:3]))
    plain = json.dumps({"audit": "tool_call", "request_id": "req-2", "caller": "unknown",
                        "tenant": "globex", "tool": "list_documents",
                        "target": "s3://bulwark-docs/docs/globex/", "outcome": "error",
                        "duration_ms": 5.0, "detail": "internal error in tool"})
    (tmp_path / "more.jsonl").write_text(
        powertools_lines(LOCAL[3:])
        + "START RequestId: 5d6e Version: $LATEST\n"
        + "{not json at all\n"
        + "[1, 2, 3]\n"
        + f"[INFO]\t2026-11-22T10:31:00.250Z\t5d6e\t{plain}\n"
        + json.dumps({"level": "INFO", "message": plain,
                      "timestamp": "2026-11-22T10:32:00.000Z"}) + "\n")
    (tmp_path / "notes.txt").write_text(powertools_lines(LOCAL[:1]))  # not *.jsonl: ignored
    return tmp_path


def test_local_mode_reads_audit_lines_and_skips_the_rest(audit_dir):
    rows = audit.local_rows(audit_dir)
    assert len(rows) == 6
    assert {r.source for r in rows} == {"local"}
    first = rows[0]
    assert (first.time, first.request_id, first.tenant, first.action, first.outcome) == \
        (datetime(2026, 11, 22, 10, 0, 2, tzinfo=UTC), "req-1", "acme", "tool:read_document",
         "ok")
    assert first.principal == "tool-role/req-1"
    assert first.caller == "arn:aws:iam::111122223333:user/ci"
    assert [r.outcome for r in rows] == ["ok", "ok", "DENIED", "invalid_input", "error",
                                         "error"]
    # a runtime text prefix gives the time of a record that carries none
    assert rows[4].time == datetime(2026, 11, 22, 10, 31, 0, 250000, tzinfo=UTC)
    assert rows[5].time == datetime(2026, 11, 22, 10, 32, tzinfo=UTC)
    one_file = audit.local_rows(audit_dir / "agent.jsonl")
    assert [r.action for r in one_file] == ["tool:read_document", "tool:write_note",
                                            "tool:read_document"]


def test_missing_local_path_is_an_error(tmp_path, capsys):
    assert audit.main(["--local", str(tmp_path / "nope.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err


# -- filters -------------------------------------------------------------------------------------

@pytest.fixture
def trail_rows():
    return account(FakeLogs(EVENTS, running=0))


def test_filter_by_request_id(trail_rows, audit_dir):
    assert {r.request_id for r in audit.filter_rows(trail_rows, request_id="req-2")} == {"req-2"}
    local = audit.filter_rows(audit.local_rows(audit_dir), request_id="req-1")
    assert len(local) == 3 and {r.request_id for r in local} == {"req-1"}


def test_filter_by_tenant(trail_rows, audit_dir):
    acme = audit.filter_rows(trail_rows, tenant="acme")
    assert {r.request_id for r in acme} == {"req-1"}
    assert any(r.denied for r in acme)  # acme's request tried globex's document
    globex = audit.filter_rows(trail_rows, tenant="globex")
    # req-2's own read, and the attempt on globex's document by acme's request
    assert [(r.request_id, r.outcome) for r in globex] == [("req-1", "DENIED"), ("req-2", "ok")]
    assert audit.filter_rows(trail_rows, tenant="initech") == []
    assert {r.tenant for r in audit.filter_rows(audit.local_rows(audit_dir),
                                                tenant="globex")} == {"globex"}


def test_filter_by_time_range(trail_rows, audit_dir):
    late = audit.filter_rows(trail_rows, start=datetime(2026, 11, 22, 10, 10, tzinfo=UTC))
    assert [r.request_id for r in late] == ["req-2"]
    early = audit.filter_rows(trail_rows, end=datetime(2026, 11, 22, 10, 0, 4, tzinfo=UTC))
    assert [r.action for r in early] == ["sts:AssumeRole", "s3:GetObject", "kms:Decrypt",
                                         "dynamodb:PutItem"]
    window = audit.filter_rows(audit.local_rows(audit_dir),
                               start=datetime(2026, 11, 22, 10, 0, 3, tzinfo=UTC),
                               end=datetime(2026, 11, 22, 10, 30, tzinfo=UTC))
    assert [r.action for r in window] == ["tool:write_note", "tool:read_document",
                                          "tool:write_note"]


def test_rows_are_sorted_oldest_first(trail_rows):
    shuffled = list(reversed(trail_rows))
    times = [r.time for r in audit.filter_rows(shuffled)]
    assert times == sorted(times)


def test_time_options():
    assert audit.parse_time("2026-11-22T10:00Z") == START
    assert audit.parse_time("2026-11-22 10:00:00,000+0000") == START
    assert audit.parse_time("2026-11-22T11:00:00+01:00") == START
    assert audit.parse_time("2026-11-22T10:00") == START  # no zone: UTC
    assert audit.parse_time(START.timestamp()) == START
    assert audit.parse_time(START.timestamp() * 1000) == START
    assert audit.time_range(since=None, minutes=None, until=None, now=NOW,
                            default_minutes=None) == (None, None)
    assert audit.time_range(since=None, minutes=None, until=None, now=NOW,
                            default_minutes=60) == (NOW - timedelta(hours=1), NOW)
    assert audit.time_range(since=None, minutes=15, until="2026-11-22T11:00Z", now=NOW,
                            default_minutes=60) == (END - timedelta(minutes=15), END)
    assert audit.time_range(since="2026-11-22T10:00Z", minutes=None, until=None, now=NOW,
                            default_minutes=60) == (START, NOW)
    with pytest.raises(audit.AuditError, match="ISO 8601"):
        audit.time_range(since="yesterday", minutes=None, until=None, now=NOW,
                         default_minutes=60)
    with pytest.raises(audit.AuditError, match="empty"):
        audit.time_range(since="2026-11-22T12:00Z", minutes=None, until="2026-11-22T11:00Z",
                         now=NOW, default_minutes=60)


# -- output --------------------------------------------------------------------------------------

def test_table_marks_denied_attempts_and_counts_them(trail_rows):
    text = audit.render_table(audit.filter_rows(trail_rows))
    lines = text.splitlines()
    header, body, last = lines[0], lines[1:-1], lines[-1]
    assert header.split() == ["TIME", "REQUEST", "TENANT", "PRINCIPAL", "ACTION", "TARGET",
                              "OUTCOME", "SOURCE"]
    assert len(body) == 6
    denied = [line for line in body if line.startswith("!")]
    assert len(denied) == 1
    assert " DENIED " in denied[0] and "docs/globex/contracts/merger.txt" in denied[0]
    assert all(line.startswith("  ") for line in body if line not in denied)
    # aligned: every column starts at the header's position
    for column in ("REQUEST", "ACTION", "OUTCOME", "SOURCE"):
        at = header.index(column)
        assert all(line[at - 2:at] == "  " and line[at] != " " for line in body)
    assert body[-1].split()[1:3] == ["10:30:00Z", "req-2"]  # newest last
    assert last == "! 6 agent actions from 2 requests: 1 DENIED, 0 other failures (marked !)"


def test_summary_without_denials():
    row = audit.Row(START, "req-9", "tool-role/req-9", "acme", "tool:read_document",
                    "s3://b/docs/acme/x", "ok", "local")
    assert audit.summary([row]) == "1 agent action from 1 request: 0 DENIED, 0 other failures"
    assert audit.render_table([]) == "no agent actions in range"


def test_long_targets_are_cut_in_the_table_only():
    target = "s3://bulwark-docs/docs/acme/" + "deep/" * 30 + "file.txt"
    row = audit.Row(START, "req-9", "tool-role/req-9", "acme", "tool:read_document", target,
                    "ok", "local")
    table = audit.render_table([row])
    cell = table.splitlines()[1].split()[6]
    assert len(cell) == audit.MAX_CELL["target"] and "..." in cell
    assert cell.startswith("s3://bulwark-docs/docs/acme/") and cell.endswith("/file.txt")
    assert json.loads(audit.render_json([row]))[0]["target"] == target


def test_main_local_table_and_json(audit_dir, capsys):
    assert audit.main(["--local", str(audit_dir), "--tenant", "acme"]) == 0
    out = capsys.readouterr().out
    assert out.count("tool:") == 3 and "! 3 agent actions from 1 request: 1 DENIED" in out

    assert audit.main(["--local", str(audit_dir), "--request-id", "req-2", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["action"] for r in rows] == ["tool:write_note", "tool:list_documents",
                                           "tool:list_documents"]
    assert set(rows[0]) == {"time", "request_id", "principal", "tenant", "action", "target",
                            "outcome", "source", "caller", "detail"}
    assert rows[0]["time"] == "2026-11-22T10:30:00.000Z" and rows[0]["source"] == "local"


def test_main_with_no_rows_exits_zero(audit_dir, capsys):
    argv = ["--local", str(audit_dir), "--since", "2027-01-01T00:00Z",
            "--until", "2027-01-02T00:00Z"]
    assert audit.main(argv) == 0
    assert capsys.readouterr().out.strip() == "no agent actions in range"
    assert audit.main(argv + ["--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_main_account_mode_with_injected_clients(capsys):
    cfn, _ = stubbed_stack()
    logs = FakeLogs(EVENTS, running=0)
    clients = {"cloudformation": cfn, "logs": logs, "cloudtrail": NoCalls()}
    code = audit.main(["--stack", STACK, "--since", "2026-11-22T10:00Z", "--until",
                       "2026-11-22T11:00Z", "--tenant", "acme"], clients=clients,
                      now=lambda: NOW, sleep=lambda s: None)
    out = capsys.readouterr().out
    assert code == 0
    assert logs.started["startTime"] == int(START.timestamp())
    assert "! 5 agent actions from 1 request: 1 DENIED" in out
    assert "alice" not in out and "req-2" not in out


def test_main_reports_bad_options_with_status_2(capsys):
    assert audit.main(["--local", "x", "--since", "2026-11-22T10:00Z", "--until",
                       "2026-11-22T09:00Z"]) == 2
    assert "empty" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        audit.main(["--since", "2026-11-22T10:00Z"])  # neither --local nor --stack
