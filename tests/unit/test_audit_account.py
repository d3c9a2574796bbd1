"""cli.audit's account mode: the CloudTrail events of the kit's roles (Logs Insights and the event
history) and the function's request lines, normalised into rows. No network: AWS clients are
botocore Stubbers or small fakes."""

from __future__ import annotations

import copy
import json
from datetime import datetime

import boto3
import pytest
from botocore.stub import Stubber

from cli import audit
from tests.fixtures.audit import (
    AGENT_LOG_GROUP, AGENT_ROLE, BUCKET, END, EVENTS, FakeLogs, LOG_GROUP, NoCalls, START, TABLE,
    TOOL_ROLE, UTC, account, by_name, insights_rows, request_line, stubbed_history,
)


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


def _history_page(events: list[dict], token: str | None) -> dict:
    page = {"Events": [{"EventId": e["eventID"], "EventName": e["eventName"],
                        "CloudTrailEvent": json.dumps(e)} for e in events]}
    return {**page, "NextToken": token} if token else page


def test_event_history_follows_pages_and_says_when_it_stopped_short():
    query = {"LookupAttributes": [{"AttributeKey": "Username", "AttributeValue": "req-1"}],
             "StartTime": START, "EndTime": END, "MaxResults": 50}
    first, second, third = by_name("Decrypt"), copy.deepcopy(by_name("Decrypt")), \
        copy.deepcopy(by_name("Decrypt"))
    second["eventID"], third["eventID"] = "second", "third"
    cloudtrail = boto3.client("cloudtrail", region_name="us-east-1")
    stub = Stubber(cloudtrail)
    stub.add_response("lookup_events", _history_page([first], "t1"), query)
    stub.add_response("lookup_events", _history_page([second], None),
                      {**query, "NextToken": "t1"})
    with stub:
        events = audit.lookup_events(cloudtrail, "req-1", START, END)
    assert [e["eventID"] for e in events] == [first["eventID"], "second"]

    warnings = []
    stub.add_response("lookup_events", _history_page([first], "t1"), query)
    stub.add_response("lookup_events", _history_page([second], "t2"),
                      {**query, "NextToken": "t1"})
    with stub:
        events = audit.lookup_events(cloudtrail, "req-1", START, END, max_pages=2,
                                     warn=warnings.append)
        stub.assert_no_pending_responses()
    assert [e["eventID"] for e in events] == [first["eventID"], "second"]
    assert warnings == ["event history has more than 100 events for req-1; showing the "
                        "first ones"]


def test_query_results_that_are_not_event_objects_are_counted_and_skipped():
    class OddLogs(FakeLogs):
        def get_query_results(self, *, queryId):
            response = super().get_query_results(queryId=queryId)
            response["results"] += [[{"field": "@message", "value": text}]
                                    for text in ("not json", "[1, 2]", '"a string"')]
            return response

    warnings = []
    events = audit.run_insights_query(OddLogs(EVENTS, running=0), LOG_GROUP, "fields @message",
                                      START, END, sleep=lambda s: None, warn=warnings.append)
    assert events == EVENTS
    assert warnings == ["3 query result(s) were not JSON CloudTrail events and were skipped"]
