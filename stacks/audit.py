"""Audit: the CloudTrail trail that answers "what did the agent do, with whose permissions?".

Multi-region trail with log-file validation, KMS, CloudWatch Logs delivery (retention), its own
S3 bucket (no public access, TLS only, access logging, lifecycle), data events on what the tools
touch (tenant documents, notes table) and on the agent function, never on the bucket table
(two data events per Claude call would be cost without insight). A metric filter counts
AccessDenied/Unauthorized calls by the kit's roles; the alarm on it is in `Monitoring`.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudtrail as cloudtrail
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from agent.contract import ACCESS_DENIED_METRIC, NAMESPACE

from .acknowledgements import acknowledge, checkov_skip, log_streams, wildcard_finding
from .state import log_retention


class AccessLogBucket(Construct):
    """Target of S3 server access logs for the kit's buckets (SSE-S3: log delivery cannot use
    KMS keys)."""

    def __init__(self, scope: Construct, id: str, *, prod: bool) -> None:
        super().__init__(scope, id)
        self.bucket = s3.Bucket(
            self, "Bucket", encryption=s3.BucketEncryption.S3_MANAGED, enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            # Versioned: a deleted or overwritten log object stays recoverable for 30 days.
            versioned=True,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(365 if prod else 90),
                                              noncurrent_version_expiration=Duration.days(30))],
            removal_policy=RemovalPolicy.RETAIN if prod else RemovalPolicy.DESTROY)
        checkov_skip(self.bucket, "CKV_AWS_18",
                     "This is the server-access-log target: logging it to itself would log "
                     "its own log deliveries without end.")


class AuditTrail(Construct):
    """The trail (None with `existing_trail_arn`), its `bucket`, `log_group`, the delivery
    role CDK makes for it (`logs_role`), the AccessDenied `metric_filter`, and
    `granted_statements` for the permissions boundary (`acknowledge_boundary` for the wildcard
    the boundary mirrors from them)."""

    def __init__(self, scope: Construct, id: str, *, key: kms.IKey, prod: bool,
                 access_log_bucket: s3.IBucket, documents_bucket: s3.IBucket,
                 tool_table_arns: list[str], function_arn: str, kit_role_arns: list[str],
                 retention_days: int, existing_trail_arn: str | None) -> None:
        super().__init__(scope, id)
        stack = Stack.of(self)
        removal = RemovalPolicy.RETAIN if prod else RemovalPolicy.DESTROY
        self.trail: cloudtrail.Trail | None = None
        self.log_group: logs.LogGroup | None = None
        #: counts AccessDenied/Unauthorized calls by the kit's roles (`Monitoring` alarms on it)
        self.metric_filter: logs.MetricFilter | None = None
        #: the role CloudTrail assumes to deliver to the log group (made by `cloudtrail.Trail`)
        self.logs_role: iam.IRole | None = None
        #: what the trail's delivery role is granted, for the permissions boundary
        self.granted_statements: list[iam.PolicyStatement] = []
        if existing_trail_arn:
            return  # the account's trail already records; data events are its owner's choice
        trail_name = f"{stack.stack_name}-audit"
        trail_arn = f"arn:{stack.partition}:cloudtrail:{stack.region}:{stack.account}:trail/" \
                    f"{trail_name}"
        self.bucket = s3.Bucket(
            self, "TrailBucket", encryption=s3.BucketEncryption.S3_MANAGED, enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL, versioned=True,
            server_access_logs_bucket=access_log_bucket, server_access_logs_prefix="trail/",
            lifecycle_rules=[s3.LifecycleRule(
                transitions=[s3.Transition(storage_class=s3.StorageClass.GLACIER,
                                           transition_after=Duration.days(90))],
                expiration=Duration.days(2557 if prod else 400))],
            removal_policy=removal)
        self.log_group = logs.LogGroup(
            self, "TrailLogs", encryption_key=key,
            retention=log_retention(retention_days), removal_policy=removal)
        self.granted_statements.append(iam.PolicyStatement(
            actions=["logs:CreateLogStream", "logs:PutLogEvents"],
            resources=[self.log_group.log_group_arn,
                       f"{self.log_group.log_group_arn}:log-stream:*"]))
        self.trail = cloudtrail.Trail(
            self, "Trail", trail_name=trail_name, bucket=self.bucket, encryption_key=key,
            is_multi_region_trail=True, include_global_service_events=True,
            enable_file_validation=True, send_to_cloud_watch_logs=True,
            cloud_watch_log_group=self.log_group)
        if isinstance(key, kms.Key):
            key.add_to_resource_policy(iam.PolicyStatement(
                sid="CloudTrailEncryptsThisTrail",
                principals=[iam.ServicePrincipal("cloudtrail.amazonaws.com")],
                actions=["kms:GenerateDataKey*"],
                resources=["*"],  # in a key policy "*" means this key
                conditions={
                    # aws:SourceArn: only this trail may use the key (confused deputy).
                    "StringEquals": {"aws:SourceArn": trail_arn},
                    # kms:EncryptionContext:aws:cloudtrail:arn: log files of this account's
                    # trails only.
                    "StringLike": {"kms:EncryptionContext:aws:cloudtrail:arn":
                                   f"arn:{stack.partition}:cloudtrail:*:{stack.account}:"
                                   "trail/*"}}))
            key.add_to_resource_policy(iam.PolicyStatement(
                sid="CloudTrailDescribesTheKey",
                principals=[iam.ServicePrincipal("cloudtrail.amazonaws.com")],
                # DescribeKey carries no encryption context: its own statement.
                actions=["kms:DescribeKey"],
                resources=["*"],  # in a key policy "*" means this key
                conditions={
                    # aws:SourceArn: only this trail (confused deputy).
                    "StringEquals": {"aws:SourceArn": trail_arn}}))
        cfn_trail: cloudtrail.CfnTrail = self.trail.node.default_child
        # Basic and advanced selectors cannot be combined: drop the (empty) basic ones.
        cfn_trail.add_property_deletion_override("EventSelectors")
        self._selectors = [
            {"Name": "Management events",
             "FieldSelectors": [{"Field": "eventCategory", "Equals": ["Management"]}]},
            {"Name": "Tool documents (S3 objects the tools read)",
             "FieldSelectors": [
                 {"Field": "eventCategory", "Equals": ["Data"]},
                 {"Field": "resources.type", "Equals": ["AWS::S3::Object"]},
                 {"Field": "resources.ARN",
                  "StartsWith": [documents_bucket.arn_for_objects("")]}]},
            {"Name": "Tool tables (DynamoDB items the tools read and write)",
             "FieldSelectors": [
                 {"Field": "eventCategory", "Equals": ["Data"]},
                 {"Field": "resources.type", "Equals": ["AWS::DynamoDB::Table"]},
                 {"Field": "resources.ARN", "Equals": list(tool_table_arns)}]},
            {"Name": "Agent function invocations",
             "FieldSelectors": [
                 {"Field": "eventCategory", "Equals": ["Data"]},
                 {"Field": "resources.type", "Equals": ["AWS::Lambda::Function"]},
                 {"Field": "resources.ARN", "StartsWith": [function_arn]}]},
        ]
        cfn_trail.add_property_override("AdvancedEventSelectors", self._selectors)
        # The delivery role CDK creates trusts cloudtrail.amazonaws.com: narrow it to this
        # account (aws:SourceAccount) against the confused deputy. No aws:SourceArn: CloudTrail
        # has been reported not to send it when it assumes the delivery role.
        # aws-cdk-lib's Trail keeps the role it makes under the id "LogsRole" and exposes no
        # attribute for it: this is the one place that looks it up.
        self.logs_role = self.trail.node.find_child("LogsRole")
        self.logs_role.node.default_child.add_property_override(
            "AssumeRolePolicyDocument.Statement.0.Condition", {
                "StringEquals": {"aws:SourceAccount": stack.account}})

        denied_by_kit = " || ".join(
            f'$.userIdentity.sessionContext.sessionIssuer.arn = "{arn}"' for arn in kit_role_arns)
        self.metric_filter = logs.MetricFilter(
            self, "AccessDeniedByKitRoles", log_group=self.log_group,
            metric_namespace=NAMESPACE, metric_name=ACCESS_DENIED_METRIC,
            metric_value="1", default_value=0,
            filter_pattern=logs.FilterPattern.literal(
                '{ ($.errorCode = "AccessDenied*" || $.errorCode = "*UnauthorizedOperation"'
                ' || $.errorCode = "*Unauthorized*") && (' + denied_by_kit + ") }"))

    def acknowledge_boundary(self, boundary_policy: iam.ManagedPolicy) -> None:
        """Acknowledge on the permissions boundary the wildcard it mirrors from the delivery
        grant: the trail's log streams (none with an existing trail)."""
        if self.log_group is not None:
            acknowledge(boundary_policy, wildcard_finding(log_streams(self.log_group)),
                        "CloudTrail writes its own log streams into the trail's log group.")

    def log_table_writes(self, name: str, table_arns: list[str]) -> None:
        """Record writes (never reads) to `table_arns` as data events, under selector `name`
        (e.g. who changed a limit and when). No-op with an existing trail: its owner chooses
        its data events."""
        if self.trail is None:
            return
        self._selectors.append({"Name": name, "FieldSelectors": [
            {"Field": "eventCategory", "Equals": ["Data"]},
            {"Field": "resources.type", "Equals": ["AWS::DynamoDB::Table"]},
            {"Field": "readOnly", "Equals": ["false"]},
            {"Field": "resources.ARN", "Equals": list(table_arns)}]})
        self.trail.node.default_child.add_property_override("AdvancedEventSelectors",
                                                            self._selectors)
