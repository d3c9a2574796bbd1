"""End to end: the real CDK CLI bootstraps and deploys the Bulwark stack into a local AWS
server (moto), the deployed resources are read back through boto3, then `cdk destroy` removes
the stack.

One deploy per module, into a LocalAws of its own (not the session server of conftest.py), so
no other test's tables or queues are in the account. What moto's service APIs do not model is
asserted on the template that was deployed (the cloud assembly the CLI synthesized): alarms,
the trail and its metric filter, queue and bucket policies, the Lambda alias and Function URL,
Lambda architecture and tracing, DynamoDB SSE and S3 versioning.

The deploy goes through `local.demo.deploy.MOTO_COMPAT` (KMS key tags and policy form, the API key
secret passed by ARN, the queue mapping on the function rather than its alias): see there.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from local.fakes.aws_server import LocalAws
from local.demo.deploy import ACCOUNT, DeployedStack, deploy_local, destroy_local

pytestmark = pytest.mark.slow

STAGE = "dev"
TENANTS = ["acme", "globex"]
#: each tenant bound to an application role of the local account
TENANTS_CONTEXT = {tenant: {"principals": [f"arn:aws:iam::{ACCOUNT}:role/{tenant}-app"]}
                   for tenant in TENANTS}
#: stacks/agent.py's environment; DEGRADE_MODEL and API_KEY_SECRET_ARN because cdk.json sets a
#: degrade model and the provider is anthropic
AGENT_ENV = {"PROVIDER", "MODELS", "DEFAULT_MODEL", "OVERFLOW_POLICY", "TENANTS",
             "BUCKET_TABLE", "RESULTS_TABLE", "IDEMPOTENCY_TABLE", "NOTES_TABLE", "DOCS_BUCKET",
             "DOCS_PREFIX", "WORK_QUEUE_URL", "DLQ_URL", "TOOL_ROLE_ARN", "AGENT_NAME",
             "MAX_DEFERRALS", "MAX_DEFERRAL_AGE_S", "POWERTOOLS_SERVICE_NAME",
             "POWERTOOLS_METRICS_NAMESPACE", "DEGRADE_MODEL", "API_KEY_SECRET_ARN"}


class Deployment:
    def __init__(self, aws: LocalAws, stack: DeployedStack) -> None:
        self.aws = aws
        self.stack = stack
        self.template = stack.template()
        self.destroy_s: float | None = None

    def client(self, service: str):
        return self.aws.client(service)

    def resources_of_type(self, type_: str) -> dict[str, dict]:
        return {logical: resource for logical, resource in self.template["Resources"].items()
                if resource["Type"] == type_}

    def destroy(self, work_dir) -> None:
        if self.destroy_s is None:
            self.destroy_s = destroy_local(self.aws, self.stack.stack_name, work_dir=work_dir,
                                           log_path=self.stack.log_path, timeout_s=240,
                                           assembly=self.stack.output_dir)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    work = tmp_path_factory.mktemp("e2e-deploy")
    aws = LocalAws().start()
    deployment = None
    started = time.monotonic()
    try:
        stack = deploy_local(aws, context={"tenants": TENANTS_CONTEXT}, stage=STAGE, timeout_s=240,
                             work_dir=work / "deploy")
        deployment = Deployment(aws, stack)
        print(f"\n[e2e] bootstrap {stack.timings['bootstrap']:.1f} s, deploy "
              f"{stack.timings['deploy']:.1f} s, {len(stack.resources)} resources listed "
              f"(log {stack.log_path})")
        deployment.destroy_dir = work / "destroy"
        yield deployment
    finally:
        try:
            if deployment is not None:
                # A no-op when test_destroy_removes_the_stack already ran (and asserted).
                deployment.destroy(work / "destroy")
        finally:
            aws.stop()
            print(f"\n[e2e] module {time.monotonic() - started:.1f} s in all")


def statements(document: dict) -> list[dict]:
    found = document["Statement"]
    return [found] if isinstance(found, dict) else found


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def allowing(document: dict, action: str, resource: str | None = None) -> list[dict]:
    """Allow statements of a policy document with `action` (and `resource`, exactly)."""
    return [s for s in statements(document)
            if s["Effect"] == "Allow" and action in as_list(s["Action"])
            and (resource is None or resource in as_list(s.get("Resource", [])))]


def inline_policies(iam, role_name: str) -> dict[str, dict]:
    names = iam.list_role_policies(RoleName=role_name)["PolicyNames"]
    return {name: iam.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"]
            for name in names}


def one(items: list):
    assert len(items) == 1, items
    return items[0]


# -- DynamoDB ---------------------------------------------------------------------------------

@pytest.mark.parametrize("logical, keys", [
    ("StateBucketTable", [("pk", "HASH")]),
    ("StateIdempotencyTable", [("id", "HASH")]),
    ("StateResultsTable", [("request_id", "HASH")]),
    ("StateNotesTable", [("tenant", "HASH"), ("note_id", "RANGE")]),
])
def test_tables_exist_with_their_key_schema_and_kms(deployed, logical, keys):
    table = deployed.client("dynamodb").describe_table(
        TableName=deployed.stack.physical(logical))["Table"]
    assert table["TableStatus"] == "ACTIVE"
    assert [(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]] == keys
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    key_arn = (f"arn:aws:kms:us-east-1:{ACCOUNT}:key/"
               f"{deployed.stack.physical('DataKey')}")
    if "SSEDescription" in table:  # moto 5.2 does not report SSE for tables made by CFN
        assert table["SSEDescription"]["SSEType"] == "KMS"
        assert table["SSEDescription"]["KMSMasterKeyArn"] == key_arn
    sse = deployed.template["Resources"][deployed.stack.logical(logical)]["Properties"][
        "SSESpecification"]
    assert sse["SSEEnabled"] is True and sse["SSEType"] == "KMS"
    assert sse["KMSMasterKeyId"] == {"Fn::GetAtt": [deployed.stack.logical("DataKey"), "Arn"]}


def test_data_key_rotates_and_lets_logs_and_the_trail_use_it(deployed):
    kms = deployed.client("kms")
    key_id = deployed.stack.physical("DataKey")
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"
    assert kms.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"] is True
    policy = json.loads(kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"])
    by_sid = {s.get("Sid"): s for s in statements(policy)}
    logs = by_sid["CloudWatchLogsForThisAccount"]
    assert logs["Principal"] == {"Service": "logs.us-east-1.amazonaws.com"}
    assert logs["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT}
    trail = by_sid["CloudTrailEncryptsThisTrail"]
    assert trail["Condition"]["StringEquals"] == {
        "aws:SourceArn": f"arn:aws:cloudtrail:us-east-1:{ACCOUNT}:trail/Bulwark-{STAGE}-audit"}


# -- IAM --------------------------------------------------------------------------------------

def test_agent_role_policy_has_the_expected_statements(deployed):
    iam = deployed.client("iam")
    stack = deployed.stack
    role = iam.get_role(RoleName=stack.physical("AgentRole"))["Role"]
    trust = one(statements(role["AssumeRolePolicyDocument"]))
    assert trust["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT}

    policies = inline_policies(iam, role["RoleName"])
    # An AWS::IAM::Policy's physical id is not the name it has on the role: PolicyName is.
    name = deployed.template["Resources"][stack.logical("AgentAgentPolicy")]["Properties"][
        "PolicyName"]
    document = policies[name]
    dynamodb = deployed.client("dynamodb")

    def table_arn(logical: str) -> str:
        return dynamodb.describe_table(TableName=stack.physical(logical))["Table"]["TableArn"]

    writes = allowing(document, "dynamodb:UpdateItem", table_arn("StateBucketTable"))
    bucket = one([s for s in writes if s.get("Sid") == "RateLimitBucketWrite"])
    assert as_list(bucket["Action"]) == ["dynamodb:UpdateItem"]  # no reads, no deletes
    leading = bucket["Condition"]["ForAllValues:StringEquals"]["dynamodb:LeadingKeys"]
    assert leading and all(k.startswith(("anthropic#", "mcp#")) for k in leading)
    assert "mcp#aws" in leading  # the MCP rate budget's own item (cdk.json mcp.servers.aws)
    # the other write: the MCP server's connection and session leases, those two keys only
    leases = one([s for s in writes if s is not bucket])
    assert leases["Sid"] == "McpQuotaLeases"
    assert sorted(leases["Condition"]["ForAllValues:StringEquals"]["dynamodb:LeadingKeys"]) \
        == ["lease#mcp#aws#connections", "lease#mcp#aws#sessions"]

    idempotency = one(allowing(document, "dynamodb:PutItem", table_arn("StateIdempotencyTable")))
    assert idempotency["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"] == [
        f"Bulwark-{STAGE}-agent.*"]
    one(allowing(document, "dynamodb:GetItem", table_arn("StateResultsTable")))

    work_queue_arn = deployed.client("sqs").get_queue_attributes(
        QueueUrl=stack.physical("StateWorkQueue"),
        AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    one(allowing(document, "sqs:ReceiveMessage", work_queue_arn))
    one(allowing(document, "sqs:SendMessage", work_queue_arn))

    tool_role = iam.get_role(RoleName=stack.physical("AgentToolRole"))["Role"]
    assume = one(allowing(document, "sts:AssumeRole", tool_role["Arn"]))
    assert {"sts:TagSession", "sts:SetSourceIdentity"} <= set(as_list(assume["Action"]))
    assert assume["Condition"]["Null"] == {"sts:SourceIdentity": "false"}
    assert assume["Condition"]["StringEquals"]["aws:RequestTag/tenant"] == TENANTS

    key_arn = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/{stack.physical('DataKey')}"
    data_key = one(allowing(document, "kms:Decrypt", key_arn))
    assert "kms:ViaService" in data_key["Condition"]["StringEquals"]

    secret_arn = deployed.client("lambda").get_function_configuration(
        FunctionName=stack.physical("AgentFunction"))["Environment"]["Variables"][
        "API_KEY_SECRET_ARN"]
    read_key = one(allowing(document, "secretsmanager:GetSecretValue", secret_arn))
    assert read_key["Condition"]["StringEquals"] == {
        "secretsmanager:VersionStage": "AWSCURRENT"}
    # Nothing in the agent's own policy touches tenant data directly.
    notes_arn = table_arn("StateNotesTable")
    assert not [s for s in statements(document) if notes_arn in as_list(s["Resource"])]


def test_tool_role_trusts_only_the_agent_role_and_reads_tenant_data_by_tag(deployed):
    iam = deployed.client("iam")
    stack = deployed.stack
    agent_role_arn = iam.get_role(RoleName=stack.physical("AgentRole"))["Role"]["Arn"]
    tool_role = iam.get_role(RoleName=f"Bulwark-{STAGE}-tool")["Role"]
    assert tool_role["RoleName"] == stack.physical("AgentToolRole")
    assert tool_role["MaxSessionDuration"] == 3600

    trust = statements(tool_role["AssumeRolePolicyDocument"])
    assert trust and all(s["Principal"] == {"AWS": agent_role_arn} for s in trust)
    guarded = one([s for s in trust if "sts:SetSourceIdentity" in as_list(s["Action"])])
    assert guarded["Condition"]["ArnEquals"] == {"aws:PrincipalArn": agent_role_arn}
    assert guarded["Condition"]["StringLike"] == {"sts:SourceIdentity": "??*"}
    assert guarded["Condition"]["StringEquals"]["aws:RequestTag/tenant"] == TENANTS

    document = one(list(inline_policies(iam, tool_role["RoleName"]).values()))
    docs_bucket = stack.physical("StateDocumentsBucket")
    one(allowing(document, "s3:GetObject",
                 f"arn:aws:s3:::{docs_bucket}/docs/${{aws:PrincipalTag/tenant}}/*"))
    notes_arn = deployed.client("dynamodb").describe_table(
        TableName=stack.physical("StateNotesTable"))["Table"]["TableArn"]
    notes = allowing(document, "dynamodb:PutItem", notes_arn)
    assert notes and all("dynamodb:LeadingKeys" in json.dumps(s["Condition"]) for s in notes)


def test_every_role_has_the_managed_boundary(deployed):
    iam = deployed.client("iam")
    boundary_arn = deployed.stack.physical("PermissionsBoundary")
    policy = iam.get_policy(PolicyArn=boundary_arn)["Policy"]
    document = iam.get_policy_version(PolicyArn=boundary_arn,
                                      VersionId=policy["DefaultVersionId"])["PolicyVersion"][
        "Document"]
    bucket_table_arn = deployed.client("dynamodb").describe_table(
        TableName=deployed.stack.physical("StateBucketTable"))["Table"]["TableArn"]
    assert allowing(document, "dynamodb:UpdateItem", bucket_table_arn)
    denies = [s for s in statements(document) if s["Effect"] == "Deny"]
    assert denies, "the boundary denies everything outside the allowed regions"

    roles = [logical for logical, type_ in deployed.stack.resource_types.items()
             if type_ == "AWS::IAM::Role"]
    assert len(roles) >= 3  # agent, tool, trail delivery
    for logical in roles:
        role = iam.get_role(RoleName=deployed.stack.resources[logical])["Role"]
        assert role["PermissionsBoundary"]["PermissionsBoundaryArn"] == boundary_arn, logical
        assert {"Key": "bulwark:stage", "Value": STAGE} in role["Tags"], logical


# -- SQS, SNS ---------------------------------------------------------------------------------

def test_work_queue_redrives_to_the_dlq_under_kms(deployed):
    sqs = deployed.client("sqs")
    stack = deployed.stack
    key_arn = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/{stack.physical('DataKey')}"
    work = sqs.get_queue_attributes(QueueUrl=stack.physical("StateWorkQueue"),
                                    AttributeNames=["All"])["Attributes"]
    dlq = sqs.get_queue_attributes(QueueUrl=stack.physical("StateDeadLetterQueue"),
                                   AttributeNames=["All"])["Attributes"]
    redrive = json.loads(work["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dlq["QueueArn"]
    assert int(redrive["maxReceiveCount"]) == 5
    assert work["VisibilityTimeout"] == "720"  # 6 x the function timeout
    assert work["MessageRetentionPeriod"] == str(4 * 86400)
    assert dlq["MessageRetentionPeriod"] == str(14 * 86400)
    assert work["KmsMasterKeyId"] == key_arn and dlq["KmsMasterKeyId"] == key_arn
    # Queue policies (TLS only) are not modelled by moto: on the template.
    policies = deployed.resources_of_type("AWS::SQS::QueuePolicy")
    assert len(policies) == 4  # work queue + DLQ, batch queue + batch DLQ
    for policy in policies.values():
        deny = one([s for s in policy["Properties"]["PolicyDocument"]["Statement"]
                    if s["Effect"] == "Deny" and s["Action"] == "sqs:*"])
        assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    # the work queue also denies sending to all but the agent role (docs/tenants.md, "Tenants and
    # callers"; evaluated in the IAM matrix)
    [work_policy] = [p["Properties"]["PolicyDocument"] for p in policies.values()
                     if p["Properties"]["Queues"] == [{"Ref": stack.logical("StateWorkQueue")}]]
    send_deny = one([s for s in work_policy["Statement"]
                     if s.get("Sid") == "DenySendWorkFromOthers"])
    assert send_deny["Effect"] == "Deny" and send_deny["Action"] == "sqs:SendMessage"


def test_alarm_topic_is_encrypted_and_alarms_notify_it(deployed):
    topic_arn = deployed.stack.physical("MonitoringAlarmTopic")
    attributes = deployed.client("sns").get_topic_attributes(TopicArn=topic_arn)["Attributes"]
    topic_key = deployed.stack.physical("MonitoringAlarmTopicKey")
    assert attributes["KmsMasterKeyId"].endswith(f":key/{topic_key}")
    # Alarms are not modelled by moto: every one in the template notifies the topic.
    alarms = deployed.resources_of_type("AWS::CloudWatch::Alarm")
    assert alarms
    topic_ref = {"Ref": deployed.stack.logical("MonitoringAlarmTopic")}
    composites = deployed.resources_of_type("AWS::CloudWatch::CompositeAlarm")
    # the SLO's window alarms have no action: the composite over them notifies
    children = {c for composite in composites.values()
                for c in re.findall(r'"([A-Za-z0-9]+)", "Arn"',
                                    json.dumps(composite["Properties"]["AlarmRule"]))}
    assert composites and children
    for logical, alarm in {**alarms, **composites}.items():
        if logical in children:
            assert alarm["Properties"].get("AlarmActions", []) == [], logical
            continue
        assert topic_ref in alarm["Properties"].get("AlarmActions", []), logical
    dashboards = deployed.client("cloudwatch").list_dashboards()["DashboardEntries"]
    assert deployed.stack.physical("MonitoringDashboards") in [d["DashboardName"]
                                                              for d in dashboards]


# -- Lambda -----------------------------------------------------------------------------------

def test_agent_function_handler_environment_and_queue_mapping(deployed):
    lambda_ = deployed.client("lambda")
    stack = deployed.stack
    config = lambda_.get_function_configuration(FunctionName=stack.physical("AgentFunction"))
    assert config["FunctionName"] == f"Bulwark-{STAGE}-agent"
    assert config["Handler"] == "agent.handler.handler"
    assert config["Runtime"] == "python3.12"
    assert config["Timeout"] == 120 and config["MemorySize"] == 1024
    role_arn = deployed.client("iam").get_role(RoleName=stack.physical("AgentRole"))["Role"]["Arn"]
    assert config["Role"] == role_arn

    variables = config["Environment"]["Variables"]
    assert AGENT_ENV <= set(variables), AGENT_ENV - set(variables)
    assert variables["PROVIDER"] == "anthropic"
    assert json.loads(variables["TENANTS"]) == TENANTS_CONTEXT
    assert variables["BUCKET_TABLE"] == stack.physical("StateBucketTable")
    assert variables["IDEMPOTENCY_TABLE"] == stack.physical("StateIdempotencyTable")
    assert variables["RESULTS_TABLE"] == stack.physical("StateResultsTable")
    assert variables["NOTES_TABLE"] == stack.physical("StateNotesTable")
    assert variables["DOCS_BUCKET"] == stack.physical("StateDocumentsBucket")
    assert variables["WORK_QUEUE_URL"] == stack.physical("StateWorkQueue")
    assert variables["DLQ_URL"] == stack.physical("StateDeadLetterQueue")
    assert variables["TOOL_ROLE_ARN"] == f"arn:aws:iam::{ACCOUNT}:role/Bulwark-{STAGE}-tool"
    models = json.loads(variables["MODELS"])
    assert variables["DEFAULT_MODEL"] in models and variables["DEGRADE_MODEL"] in models

    work_queue_arn = deployed.client("sqs").get_queue_attributes(
        QueueUrl=stack.physical("StateWorkQueue"),
        AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    mapping = one(lambda_.list_event_source_mappings(
        EventSourceArn=work_queue_arn)["EventSourceMappings"])
    assert mapping["BatchSize"] == 5
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]

    log_group = one(deployed.client("logs").describe_log_groups(
        logGroupNamePrefix=f"/aws/lambda/Bulwark-{STAGE}-agent")["logGroups"])
    assert log_group["retentionInDays"] == 30

    # Not modelled by moto (it reports x86_64 / PassThrough): on the template.
    function = deployed.template["Resources"][stack.logical("AgentFunction")]["Properties"]
    assert function["Architectures"] == ["arm64"]
    assert function["TracingConfig"] == {"Mode": "Active"}
    assert function["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    assert function["KmsKeyArn"] == {"Fn::GetAtt": [stack.logical("DataKey"), "Arn"]}
    alias = one(list(deployed.resources_of_type("AWS::Lambda::Alias").values()))
    assert alias["Properties"]["Name"] == "live"
    url = one(list(deployed.resources_of_type("AWS::Lambda::Url").values()))
    assert url["Properties"]["AuthType"] == "AWS_IAM"


# -- S3, audit --------------------------------------------------------------------------------

def test_documents_bucket_exists_with_kms(deployed):
    s3 = deployed.client("s3")
    stack = deployed.stack
    bucket = stack.physical("StateDocumentsBucket")
    s3.head_bucket(Bucket=bucket)
    rule = one(s3.get_bucket_encryption(Bucket=bucket)[
        "ServerSideEncryptionConfiguration"]["Rules"])
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert rule["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"].endswith(
        f":key/{stack.physical('DataKey')}")
    tags = s3.get_bucket_tagging(Bucket=bucket)["TagSet"]
    assert {"Key": "bulwark:stage", "Value": STAGE} in tags
    # Versioning, public access block, access logging: not reported by moto.
    properties = deployed.template["Resources"][stack.logical("StateDocumentsBucket")][
        "Properties"]
    assert properties["VersioningConfiguration"] == {"Status": "Enabled"}
    assert properties["PublicAccessBlockConfiguration"]["BlockPublicAcls"] is True
    assert properties["LoggingConfiguration"]["DestinationBucketName"] == {
        "Ref": stack.logical("AccessLogsBucket")}


def test_audit_trail_and_access_denied_filter_in_the_template(deployed):
    trail = one(list(deployed.resources_of_type("AWS::CloudTrail::Trail").values()))
    properties = trail["Properties"]
    assert properties["TrailName"] == f"Bulwark-{STAGE}-audit"
    assert properties["IsMultiRegionTrail"] is True
    assert properties["EnableLogFileValidation"] is True
    assert properties["KMSKeyId"] == {"Fn::GetAtt": [deployed.stack.logical("DataKey"), "Arn"]}
    metric_filter = one(list(deployed.resources_of_type("AWS::Logs::MetricFilter").values()))
    assert metric_filter["Properties"]["MetricTransformations"][0]["MetricName"] == \
        "AccessDenied"
    # The trail's bucket and log group are real resources in the local server.
    deployed.client("s3").head_bucket(Bucket=deployed.stack.physical("AuditTrailBucket"))


# -- destroy (last: runs after every check above) ----------------------------------------------

def test_outputs_find_the_pieces_and_the_ones_moto_drops_are_computed(deployed):
    from stacks import outputs

    stack = deployed.stack
    found = stack.outputs
    assert found[outputs.DEAD_LETTER_QUEUE_URL] == stack.physical("StateDeadLetterQueue")
    assert found[outputs.BUCKET_TABLE] == stack.physical("StateBucketTable")
    function = stack.physical("AgentFunction")
    assert found[outputs.FUNCTION_NAME] == function
    # moto drops an output that Refs the alias: computed from the template and the resources
    assert found[outputs.ALIAS_ARN] == \
        f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{function}:live"
    assert outputs.FUNCTION_URL not in found  # left out locally (MOTO_COMPAT)


def test_destroy_removes_the_stack(deployed):
    stack = deployed.stack
    deployed.destroy(deployed.destroy_dir)
    cloudformation = deployed.client("cloudformation")
    try:
        status = cloudformation.describe_stacks(StackName=stack.stack_name)["Stacks"][0][
            "StackStatus"]
    except cloudformation.exceptions.ClientError as err:
        assert "does not exist" in str(err)
    else:
        assert status == "DELETE_COMPLETE"
    tables = deployed.client("dynamodb").list_tables()["TableNames"]
    assert stack.physical("StateBucketTable") not in tables
    functions = [f["FunctionName"] for f in deployed.client("lambda").list_functions()[
        "Functions"]]
    assert stack.physical("AgentFunction") not in functions
    print(f"\n[e2e] destroy {deployed.destroy_s:.1f} s")
