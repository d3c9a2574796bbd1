"""Fine-grained template assertions for every guardrail of the stack (not snapshots)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from aws_cdk.assertions import Match

from tests.infra.conftest import BEDROCK_PROFILE


def statements(synth, policy_type="AWS::IAM::Policy", name_fragment=""):
    """(logical id, statement) for every statement of matching policies."""
    found = []
    for logical_id, resource in synth.resources(policy_type).items():
        if name_fragment in logical_id:
            document = resource["Properties"]["PolicyDocument"]
            found += [(logical_id, s) for s in document["Statement"]]
    return found


def by_sid(synth, sid, policy_type="AWS::IAM::Policy"):
    matches = [s for _, s in statements(synth, policy_type) if s.get("Sid") == sid]
    assert matches, f"no statement {sid}"
    return matches[0]


# -- the function ------------------------------------------------------------------------------

def test_agent_function_runtime_arm64_tracing_snapstart_concurrency(dev):
    dev.template.has_resource_properties("AWS::Lambda::Function", {
        "Handler": "agent.handler.handler",
        "Runtime": "python3.12",
        "Architectures": ["arm64"],
        "TracingConfig": {"Mode": "Active"},
        "SnapStart": {"ApplyOn": "PublishedVersions"},
        "ReservedConcurrentExecutions": 20,
        "KmsKeyArn": Match.any_value(),
        "LoggingConfig": {"LogGroup": {"Ref": Match.string_like_regexp("AgentLogGroup")}},
        "Environment": {"Variables": Match.object_like({
            "PROVIDER": "anthropic", "DEFAULT_MODEL": "claude-sonnet-4-6",
            "OVERFLOW_POLICY": "defer", "TENANTS": json.dumps({
                "acme": {"principals": ["arn:aws:iam::111122223333:role/AcmeApp"]},
                "globex": {"principals": ["arn:aws:iam::444455556666:role/GlobexApp"]}}),
            "API_KEY_SECRET_ARN": {"Ref": Match.string_like_regexp("AgentApiKey")}})},
    })


def test_alias_function_url_requires_iam_auth_and_queue_runs_through_the_alias(dev):
    dev.template.has_resource_properties("AWS::Lambda::Alias", {"Name": "live"})
    dev.template.has_resource_properties("AWS::Lambda::Url", {
        "AuthType": "AWS_IAM", "Qualifier": "live"})
    [mapping] = dev.resources("AWS::Lambda::EventSourceMapping").values()
    assert mapping["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["Properties"]["ScalingConfig"] == {"MaximumConcurrency": 5}
    assert ":live" in json.dumps(mapping["Properties"]["FunctionName"])  # the alias


def test_log_groups_have_retention_and_kms(dev):
    for resource in dev.resources("AWS::Logs::LogGroup").values():
        assert resource["Properties"]["RetentionInDays"] == 30
        assert "KmsKeyId" in resource["Properties"]


def test_lambda_models_variable_carries_the_tier_limits(dev):
    function = next(iter(dev.resources("AWS::Lambda::Function").values()))
    models = json.loads(function["Properties"]["Environment"]["Variables"]["MODELS"])
    assert models["claude-sonnet-4-6"]["rpm"] == 50
    assert models["claude-sonnet-4-6"]["itpm"] == 30000
    assert models["claude-haiku-4-5"]["otpm"] == 10000
    assert models["claude-sonnet-4-6"]["bucket"] == "anthropic#sonnet-4"


# -- state ---------------------------------------------------------------------------------------

def test_tables_are_kms_encrypted_with_pitr_and_ttl_where_results_expire(dev):
    tables = dev.resources("AWS::DynamoDB::Table")
    assert len(tables) == 6  # + the batch lane's state table and the limits config table
    for table in tables.values():
        props = table["Properties"]
        sse = props["SSESpecification"]
        assert (sse["SSEEnabled"], sse["SSEType"]) == (True, "KMS")
        assert "DataKey" in json.dumps(sse["KMSMasterKeyId"])
        assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"]
    dev.template.has_resource_properties("AWS::DynamoDB::Table", {
        "KeySchema": [{"AttributeName": "request_id", "KeyType": "HASH"}],
        "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True}})
    dev.template.has_resource_properties("AWS::DynamoDB::Table", {
        "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
        "TimeToLiveSpecification": {"AttributeName": "expiration", "Enabled": True}})


def test_prod_retains_stateful_resources_and_protects_tables(prod_bedrock, dev):
    for logical_id, table in prod_bedrock.resources("AWS::DynamoDB::Table").items():
        assert table["DeletionPolicy"] == "Retain", logical_id
        assert table["Properties"]["DeletionProtectionEnabled"] is True
    for table in dev.resources("AWS::DynamoDB::Table").values():
        assert table["DeletionPolicy"] == "Delete"
    # same logical ids in both stages: a stage change never replaces data
    # (the batch lane's table is Anthropic-only: Bedrock has no batch lane yet)
    assert set(prod_bedrock.resources("AWS::DynamoDB::Table")) == {
        t for t in dev.resources("AWS::DynamoDB::Table") if not t.startswith("BatchState")}


def test_queues_are_kms_encrypted_tls_only_with_a_dead_letter_queue(dev):
    dev.template.has_resource_properties("AWS::SQS::Queue", {
        "KmsMasterKeyId": Match.any_value(),
        "RedrivePolicy": {"deadLetterTargetArn": Match.any_value(), "maxReceiveCount": 5}})
    policies = [s for _, s in statements(dev, "AWS::SQS::QueuePolicy")]
    assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport":
                                                                     "false"}}
               for s in policies)


def test_api_key_secret_is_kms_encrypted(dev):
    dev.template.has_resource_properties("AWS::SecretsManager::Secret", {
        "KmsKeyId": Match.any_value()})


# -- IAM -----------------------------------------------------------------------------------------

def test_no_wildcard_actions_anywhere(dev, prod_bedrock):
    for synth in (dev, prod_bedrock):
        for policy_type in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            for logical_id, statement in statements(synth, policy_type):
                actions = statement.get("Action", [])
                actions = [actions] if isinstance(actions, str) else actions
                assert not any(a == "*" or a.endswith(":*") for a in actions), (logical_id,
                                                                                 statement)


def test_wildcard_resources_only_with_a_condition_or_on_a_deny(dev):
    for logical_id, statement in statements(dev) + statements(dev, "AWS::IAM::ManagedPolicy"):
        if statement.get("Resource") == "*":
            is_cdk_tracing = logical_id.startswith(("AgentRoleDefaultPolicy",
                                                    "BatchCollectorRoleDefaultPolicy",
                                                    "BatchPollerRoleDefaultPolicy",
                                                    "RunawayRoleDefaultPolicy"))
            assert statement.get("Condition") or statement["Effect"] == "Deny" or is_cdk_tracing


def test_bucket_table_writes_are_limited_to_the_configured_buckets(dev):
    statement = by_sid(dev, "RateLimitBucketWrite")
    assert statement["Action"] == "dynamodb:UpdateItem"
    assert statement["Condition"] == {"ForAllValues:StringEquals": {
        "dynamodb:LeadingKeys": ["anthropic#haiku-4.5", "anthropic#sonnet-4", "mcp#aws"]}}


def test_data_key_use_only_through_services(dev):
    statement = by_sid(dev, "DataKeyThroughServices")
    assert statement["Condition"]["StringEquals"]["kms:ViaService"] == [
        "dynamodb.us-east-1.amazonaws.com", "sqs.us-east-1.amazonaws.com",
        "secretsmanager.us-east-1.amazonaws.com", "s3.us-east-1.amazonaws.com"]


def test_only_the_one_secret_current_version(dev):
    statement = by_sid(dev, "ReadClaudeApiKey")
    assert list(statement["Resource"]) == ["Ref"]
    assert statement["Resource"]["Ref"].startswith("AgentApiKey")
    assert statement["Condition"] == {"StringEquals": {"secretsmanager:VersionStage":
                                                       "AWSCURRENT"}}


def test_tool_role_trusts_only_the_agent_role_with_source_identity_and_tags(dev):
    roles = dev.resources("AWS::IAM::Role")
    tool = next(r for k, r in roles.items() if k.startswith("AgentToolRole"))
    trust = tool["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    conditioned = [s for s in trust if s.get("Condition")]
    assert len(conditioned) == 1 and len(trust) == 1, "no unconditioned trust statement"
    condition = conditioned[0]["Condition"]
    assert sorted(conditioned[0]["Action"]) == ["sts:AssumeRole", "sts:SetSourceIdentity",
                                                "sts:TagSession"]
    assert condition["StringLike"] == {"sts:SourceIdentity": "??*"}
    assert condition["StringEquals"] == {"aws:RequestTag/tenant": ["acme", "globex"],
                                         "aws:RequestTag/agent": "bulwark-agent"}
    assert condition["ForAllValues:StringEquals"] == {"aws:TagKeys": ["tenant", "agent"]}
    assert "aws:PrincipalArn" in condition["ArnEquals"]


def test_tool_permissions_use_the_tenant_principal_tag(dev):
    tool_statements = [s for k, s in statements(dev) if k.startswith("AgentToolPolicy")]
    flat = json.dumps(tool_statements)
    assert "${aws:PrincipalTag/tenant}" in flat
    notes = next(s for s in tool_statements if "dynamodb:PutItem" in s["Action"])
    assert notes["Condition"] == {"ForAllValues:StringEquals": {
        "dynamodb:LeadingKeys": ["${aws:PrincipalTag/tenant}"]},
        # built-in grants only outside MCP (policies/mcp.py)
        "Null": {"aws:ViaAWSMCPService": "true"}}


def test_mcp_allowlist_is_conditioned_on_the_aws_mcp_server(dev):
    """Every allowlist statement names the AWS MCP Server with StringEquals (a String key:
    Bool or "true" would never match); the deny uses the Bool key."""
    tool_statements = [s for k, s in statements(dev) if k.startswith("AgentToolPolicy")]
    allow = [s for s in tool_statements if s.get("Sid", "").startswith("Mcp")]
    assert {s["Sid"] for s in allow} == {"McpListOwnTenantDocuments",
                                         "McpReadWorkQueueAttributes"}
    for statement in allow:
        assert statement["Condition"]["StringEquals"]["aws:CalledViaAWSMCP"] == \
            "aws-mcp.amazonaws.com"
    [deny] = [s for s in tool_statements if s.get("Sid") == "DenyDestructiveViaMcp"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {
        "Bool": {"aws:ViaAWSMCPService": "true"}}
    for action in ("s3:Delete*", "iam:PassRole", "iam:Create*", "kms:ScheduleKeyDeletion",
                   "iam:Attach*", "iam:Put*", "ec2:Terminate*"):
        assert action in deny["Action"]
    boundary = [s for _, s in statements(dev, "AWS::IAM::ManagedPolicy")]
    assert any(s.get("Sid") == "DenyDestructiveViaMcp" for s in boundary)
    caps = [s for s in boundary if s.get("Sid", "").startswith("CapMcp")]
    assert caps and all(s["Condition"]["StringEquals"]["aws:CalledViaAWSMCP"] ==
                        "aws-mcp.amazonaws.com" for s in caps)


def test_mcp_servers_reach_the_lambda_from_configuration(dev):
    function = next(r for k, r in dev.resources("AWS::Lambda::Function").items()
                    if k.startswith("AgentFunction"))
    servers = json.loads(function["Properties"]["Environment"]["Variables"]["MCP_SERVERS"])
    assert servers["aws"]["auth"] == {"type": "sigv4", "service": "aws-mcp",
                                      "region": "us-east-1"}
    assert servers["aws"]["bucket"] == "mcp#aws"
    assert set(servers["aws"]["tools"]) == {"aws___run_script", "aws___search_documentation"}
    assert "aws___call_aws" not in servers["aws"]["tools"]  # deprecated


def test_every_role_has_the_permissions_boundary(dev):
    for logical_id, role in dev.resources("AWS::IAM::Role").items():
        boundary = role["Properties"].get("PermissionsBoundary", {})
        assert boundary.get("Ref", "").startswith("PermissionsBoundary"), logical_id


def test_boundary_denies_every_kit_action_outside_allowed_regions(dev):
    deny = by_sid(dev, "DenyOutsideAllowedRegions", "AWS::IAM::ManagedPolicy")
    assert deny["Effect"] == "Deny" and deny["Resource"] == "*"
    assert deny["Condition"] == {"StringNotEquals": {"aws:RequestedRegion": ["us-east-1"]}}
    assert "dynamodb:UpdateItem" in deny["Action"] and "sts:AssumeRole" in deny["Action"]


def test_service_principal_trusts_name_the_account(dev):
    for logical_id, role in dev.resources("AWS::IAM::Role").items():
        for statement in role["Properties"]["AssumeRolePolicyDocument"]["Statement"]:
            if "Service" in statement.get("Principal", {}):
                condition = statement.get("Condition", {})
                assert condition.get("StringEquals", {}).get("aws:SourceAccount") \
                    == "123456789012", logical_id


def test_bedrock_invocation_only_through_the_configured_profile(prod_bedrock):
    profile = by_sid(prod_bedrock, "InvokeInferenceProfile0")
    assert profile["Action"] == ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]
    assert json.dumps(profile["Resource"]).count(f"inference-profile/{BEDROCK_PROFILE}") == 1
    assert profile["Condition"] == {"StringEquals": {"aws:RequestedRegion": "us-east-1"}}
    routed = by_sid(prod_bedrock, "InvokeRoutedModels0")
    assert len(routed["Resource"]) == 3  # us-east-1, us-east-2, us-west-2
    assert "bedrock:InferenceProfileArn" in routed["Condition"]["StringEquals"]
    assert not any(s.get("Sid") == "ReadClaudeApiKey" for _, s in statements(prod_bedrock))


# -- audit ---------------------------------------------------------------------------------------

def test_trail_is_multi_region_validated_encrypted_and_delivered_to_logs(dev):
    dev.template.has_resource_properties("AWS::CloudTrail::Trail", {
        "IsMultiRegionTrail": True, "EnableLogFileValidation": True,
        "IncludeGlobalServiceEvents": True, "KMSKeyId": Match.any_value(),
        "CloudWatchLogsLogGroupArn": Match.any_value(),
        "CloudWatchLogsRoleArn": Match.any_value()})


def test_trail_data_events_cover_tool_resources_and_function_not_the_bucket_table(dev):
    trail = next(iter(dev.resources("AWS::CloudTrail::Trail").values()))
    selectors = trail["Properties"]["AdvancedEventSelectors"]
    types = [next(f["Equals"][0] for f in s["FieldSelectors"] if f["Field"] == "resources.type")
             for s in selectors if any(f["Field"] == "resources.type"
                                       for f in s["FieldSelectors"])]
    # the tool tables; the limits config table (writes only)
    assert sorted(types) == ["AWS::DynamoDB::Table", "AWS::DynamoDB::Table",
                             "AWS::Lambda::Function", "AWS::S3::Object"]
    flat = json.dumps(selectors)
    assert "StateNotesTable" in flat and "StateBucketTable" not in flat


def test_trail_bucket_blocks_public_access_requires_tls_logs_access_and_expires(dev):
    dev.template.has_resource_properties("AWS::S3::Bucket", {
        "PublicAccessBlockConfiguration": {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                           "IgnorePublicAcls": True,
                                           "RestrictPublicBuckets": True},
        "LoggingConfiguration": {"LogFilePrefix": "trail/",
                                 "DestinationBucketName": Match.any_value()},
        "LifecycleConfiguration": {"Rules": [Match.object_like({
            "ExpirationInDays": 400, "Transitions": [Match.object_like(
                {"StorageClass": "GLACIER", "TransitionInDays": 90})]})]}})
    for logical_id, policy in dev.resources("AWS::S3::BucketPolicy").items():
        statements_ = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(s["Effect"] == "Deny" and s.get("Condition") == {
            "Bool": {"aws:SecureTransport": "false"}} for s in statements_), logical_id


def test_access_denied_metric_filter_and_alarm(dev):
    filters = dev.resources("AWS::Logs::MetricFilter")
    [metric_filter] = filters.values()
    pattern = json.dumps(metric_filter["Properties"]["FilterPattern"])
    assert "AccessDenied" in pattern and "AgentRole" in pattern and "AgentToolRole" in pattern
    dev.template.has_resource_properties("AWS::CloudWatch::Alarm", {
        "Namespace": "Bulwark", "MetricName": "AccessDenied", "Threshold": 0,
        "ComparisonOperator": "GreaterThanThreshold",
        "AlarmActions": [{"Ref": Match.string_like_regexp("MonitoringAlarmTopic")}]})


def test_every_alarm_notifies_the_encrypted_topic(dev):
    topics = dev.resources("AWS::SNS::Topic")
    assert all("KmsMasterKeyId" in t["Properties"] for t in topics.values())
    composites = dev.resources("AWS::CloudWatch::CompositeAlarm")
    # an alarm that is one window of a composite (the SLO burn rates) notifies through it
    children = {c for composite in composites.values()
                for c in re.findall(r'"([A-Za-z0-9]+)", "Arn"',
                                    json.dumps(composite["Properties"]["AlarmRule"]))}
    assert children
    for logical_id, alarm in {**dev.resources("AWS::CloudWatch::Alarm"), **composites}.items():
        actions = alarm["Properties"].get("AlarmActions", [])
        if logical_id in children:
            assert actions == [], logical_id
            continue
        assert actions and all(a.get("Ref") in topics for a in actions), logical_id


# -- policy checks -------------------------------------------------------------------------------

def test_cdk_nag_reports_no_violations_and_every_acknowledgement_has_a_reason(dev,
                                                                             prod_bedrock):
    for synth in (dev, prod_bedrock):
        for report in synth.validation.get("pluginReports", []):
            assert report["violations"] == [], report.get("pluginName")
            for suppressed in report.get("suppressedViolations", []):
                reason = suppressed.get("suppressionReason") or suppressed.get("reason") or ""
                if report.get("pluginName") != "CloudFormation Validate":
                    assert len(reason) > 20, suppressed


def test_cfn_lint_reports_no_errors(dev, prod_bedrock):
    for synth in (dev, prod_bedrock):
        result = subprocess.run([sys.executable, "-m", "cfnlint", "--format", "json",
                                 str(synth.template_path)], capture_output=True, text=True)
        findings = json.loads(result.stdout or "[]")
        errors = [f for f in findings if f["Level"] == "Error"]
        assert errors == [], errors


@pytest.mark.parametrize("resource_type", ["AWS::Lambda::Function", "AWS::IAM::Role",
                                           "AWS::DynamoDB::Table", "AWS::SQS::Queue"])
def test_logical_ids_are_stable(dev, resource_type):
    expected = {"AWS::Lambda::Function": {"AgentFunction"},
                "AWS::IAM::Role": {"AgentRole", "AgentToolRole", "AuditTrailLogsRole"},
                "AWS::DynamoDB::Table": {"StateBucketTable", "StateIdempotencyTable",
                                         "StateResultsTable", "StateNotesTable"},
                "AWS::SQS::Queue": {"StateDeadLetterQueue", "StateWorkQueue"}}[resource_type]
    ids = {logical_id[:-8] for logical_id in dev.resources(resource_type)}
    assert expected <= ids


def test_trail_uses_only_advanced_selectors_and_the_key_lets_cloudtrail_describe_it(dev):
    trail = next(iter(dev.resources("AWS::CloudTrail::Trail").values()))
    assert "EventSelectors" not in trail["Properties"]
    key = next(r for k, r in dev.resources("AWS::KMS::Key").items() if k.startswith("DataKey"))
    statements_ = {s.get("Sid"): s for s in key["Properties"]["KeyPolicy"]["Statement"]}
    describe = statements_["CloudTrailDescribesTheKey"]
    assert describe["Action"] == "kms:DescribeKey"
    assert list(describe["Condition"]) == ["StringEquals"]  # no encryption context on Describe
    assert "kms:EncryptionContext:aws:cloudtrail:arn" in json.dumps(
        statements_["CloudTrailEncryptsThisTrail"]["Condition"])


def test_function_and_queue_mapping_wait_for_the_role_policy(dev):
    function = next(iter(dev.resources("AWS::Lambda::Function").values()))
    [mapping] = dev.resources("AWS::Lambda::EventSourceMapping").values()
    for resource in (function, mapping):
        assert any(d.startswith("AgentAgentPolicy") for d in resource.get("DependsOn", []))


# -- outputs -------------------------------------------------------------------------------------

def test_outputs_name_every_deployed_piece_under_stable_names(dev, prod_bedrock):
    from stacks import outputs

    logical = {name: next(k for k, r in dev.json["Resources"].items() if r["Type"] == kind
                          and k.startswith(prefix))
               for name, kind, prefix in (("url", "AWS::Lambda::Url", "AgentLive"),
                                          ("alias", "AWS::Lambda::Alias", "AgentLive"),
                                          ("dlq", "AWS::SQS::Queue", "StateDeadLetterQueue"),
                                          ("secret", "AWS::SecretsManager::Secret", "Agent"),
                                          ("trail", "AWS::Logs::LogGroup", "AuditTrailLogs"))}
    found = {name: output["Value"] for name, output in dev.json["Outputs"].items()}
    assert found[outputs.FUNCTION_URL] == {"Fn::GetAtt": [logical["url"], "FunctionUrl"]}
    assert found[outputs.ALIAS_ARN] == {"Ref": logical["alias"]}
    assert found[outputs.DEAD_LETTER_QUEUE_URL] == {"Ref": logical["dlq"]}
    assert found[outputs.API_KEY_SECRET_ARN] == {"Ref": logical["secret"]}
    assert found[outputs.TRAIL_LOG_GROUP] == {"Ref": logical["trail"]}
    assert found[outputs.DOCUMENTS_PREFIX] == "docs/"
    assert "#dashboards:name=Bulwark-dev" in json.dumps(found[outputs.DASHBOARD_URL])
    names = {v for k, v in vars(outputs).items() if k.isupper() and isinstance(v, str)}
    assert set(found) == names
    # Bedrock has no API key secret; everything else is there under the same names.
    assert set(prod_bedrock.json["Outputs"]) == names - {outputs.API_KEY_SECRET_ARN}
