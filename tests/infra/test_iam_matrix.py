"""IAM access matrix: the SYNTHESIZED policies, evaluated by a real IAM policy evaluator.

The app is synthesized twice per module (Anthropic API from cdk.json's defaults, and Bedrock
with a geographic and a global inference profile). The roles' identity policies, their
permissions boundary and the tool role's trust policy are read from the template JSON, the
CloudFormation intrinsics in them (Ref, Fn::GetAtt, Fn::Join, Fn::Sub, Fn::Select, Fn::Split
and the AWS:: pseudo parameters) are resolved to concrete example ARNs, and every request is
evaluated by `@cloud-copilot/iam-simulate` (pinned in package.json) in ONE Node process
(`iam_simulate.mjs`: cases as JSON on stdin, results as JSON on stdout).

Each request is evaluated the way IAM does: identity policies + permissions boundary, plus the
role trust policy as the resource policy for sts:AssumeRole (whose TagSession and
SetSourceIdentity parts are authorized as their own actions), with the request context keys
the condition blocks test. Each case asserts Allowed, ImplicitlyDenied or ExplicitlyDenied.

Callers from outside the kit (tenants' application roles, trusted invokers and producers) are
evaluated against the resource policies as synthesized: the agent alias's Lambda permissions
(read from the AWS::Lambda::Permission resources, as Lambda renders them) and the work queue's
policy; each such case says whether the caller is in the stack's account or another one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

os.environ.setdefault("CDK_DEFAULT_ACCOUNT", "123456789012")
os.environ.setdefault("CDK_DEFAULT_REGION", "us-east-1")

ROOT = Path(__file__).resolve().parents[2]
SIMULATOR = ROOT / "local" / "fakes" / "iam_simulate.mjs"  # shared with the local AWS MCP Server
SIMULATOR_PACKAGE = ROOT / "node_modules" / "@cloud-copilot" / "iam-simulate"

ACCOUNT = os.environ["CDK_DEFAULT_ACCOUNT"]
REGION = os.environ["CDK_DEFAULT_REGION"]
PARTITION = "aws"
OTHER_REGION = "eu-west-1"

ALLOWED, IMPLICIT, EXPLICIT = "Allowed", "ImplicitlyDenied", "ExplicitlyDenied"

#: Bedrock app: a geographic profile (routes to us-east-1/us-east-2/us-west-2 by its "us."
#: prefix) and a global profile (routes from us-east-1 through the global model ARN).
GEO_PROFILE = "us.anthropic.claude-sonnet-4-20250514-v1:0"
GLOBAL_PROFILE = "global.anthropic.claude-sonnet-4-6"
BEDROCK_CONTEXT = {
    "provider": "bedrock",
    "models": {
        GEO_PROFILE: {"rpm": 200, "tpm": 200000, "prices": {"input": 3, "output": 15}},
        GLOBAL_PROFILE: {"rpm": 200, "tpm": 200000, "prices": {"input": 3, "output": 15},
                         "routes_to_regions": ["us-east-1"]},
    },
    "default_model": GEO_PROFILE,
    "degrade_model": "",  # unset: cdk.json's Bedrock degrade model is not among these models
}

SOURCE_IDENTITY = "req-0123456789abcdef"

#: The Anthropic app's callers: acme is bound to a role of the stack's own account (with a
#: path), globex to a role of another account; a front door of that account invokes directly;
#: producers of both accounts may queue work.
OTHER_ACCOUNT = "210987654321"
ACME_APP = f"arn:{PARTITION}:iam::{ACCOUNT}:role/apps/AcmeApp"
GLOBEX_APP = f"arn:{PARTITION}:iam::{OTHER_ACCOUNT}:role/GlobexApp"
FRONT_DOOR = f"arn:{PARTITION}:iam::{OTHER_ACCOUNT}:role/FrontDoor"
PRODUCER = f"arn:{PARTITION}:iam::{OTHER_ACCOUNT}:role/Producer"
LOCAL_PRODUCER = f"arn:{PARTITION}:iam::{ACCOUNT}:role/IngestProducer"
ANTHROPIC_CONTEXT = {
    "tenants": {"acme": {"principals": [ACME_APP]}, "globex": {"principals": [GLOBEX_APP]}},
    "trusted_invokers": [FRONT_DOOR],
    "trusted_producers": [PRODUCER, LOCAL_PRODUCER],
}


# -- CloudFormation intrinsics -> concrete example values ------------------------------------

class Resolver:
    """Resolves the intrinsics CDK writes into IAM documents to the values CloudFormation would
    produce in ACCOUNT/REGION: explicit physical names are kept, generated ones are
    "<stack>-<logical id>" (the form CloudFormation uses, minus its random suffix)."""

    PSEUDO = {"AWS::Partition": PARTITION, "AWS::AccountId": ACCOUNT, "AWS::Region": REGION,
              "AWS::URLSuffix": "amazonaws.com", "AWS::NoValue": None}

    def __init__(self, template: dict, stack_name: str) -> None:
        self.resources = template["Resources"]
        self.stack_name = stack_name
        self.pseudo = {**self.PSEUDO, "AWS::StackName": stack_name}

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (name, argument), = value.items()
            if name == "Ref":
                return self.ref(argument)
            if name == "Fn::GetAtt":
                logical, attribute = (argument.split(".", 1) if isinstance(argument, str)
                                      else argument)
                return self.get_att(logical, self.resolve(attribute))
            if name == "Fn::Join":
                separator, items = argument
                return separator.join(str(self.resolve(item)) for item in self.resolve(items))
            if name == "Fn::Sub":
                return self.sub(argument)
            if name == "Fn::Select":
                index, items = argument
                return self.resolve(items)[int(self.resolve(index))]
            if name == "Fn::Split":
                separator, text = argument
                return self.resolve(text).split(separator)
            if name.startswith("Fn::") or name == "Condition":
                raise AssertionError(f"unresolved intrinsic {name} in an IAM document: {value}")
        return {key: self.resolve(item) for key, item in value.items()}

    def sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        variables = {key: self.resolve(item) for key, item in variables.items()}
        out, index = [], 0
        while (start := text.find("${", index)) != -1:
            end = text.index("}", start)
            out.append(text[index:start])
            name = text[start + 2:end]
            if name.startswith("!"):                      # ${!Literal} -> ${Literal}
                out.append("${" + name[1:] + "}")
            elif name in variables:
                out.append(str(variables[name]))
            elif name in self.pseudo or name in self.resources:
                out.append(str(self.ref(name)))
            elif "." in name and name.split(".", 1)[0] in self.resources:
                out.append(str(self.get_att(*name.split(".", 1))))
            else:                                         # an IAM policy variable
                out.append("${" + name + "}")
            index = end + 1
        return "".join(out) + text[index:]

    # physical names and ARNs by resource type
    def _props(self, logical: str) -> dict:
        if logical not in self.resources:
            raise AssertionError(f"reference to unknown resource {logical!r}")
        return self.resources[logical].get("Properties", {})

    def _type(self, logical: str) -> str:
        return self.resources[logical]["Type"]

    def _name(self, logical: str, prop: str | None) -> str:
        value = self._props(logical).get(prop) if prop else None
        return self.resolve(value) if value is not None else f"{self.stack_name}-{logical}"

    def _key_id(self, logical: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.stack_name}/{logical}"))

    def ref(self, name: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        kind = self._type(name)
        if kind == "AWS::IAM::ManagedPolicy":
            return self.get_att(name, "PolicyArn")
        if kind in ("AWS::SecretsManager::Secret", "AWS::SNS::Topic", "AWS::Lambda::Alias",
                    "AWS::Lambda::Version"):
            return self.get_att(name, "Arn")
        if kind == "AWS::SQS::Queue":
            return (f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/"
                    f"{self._name(name, 'QueueName')}")
        if kind == "AWS::KMS::Key":
            return self._key_id(name)
        names = {"AWS::IAM::Role": "RoleName", "AWS::DynamoDB::Table": "TableName",
                 "AWS::S3::Bucket": "BucketName", "AWS::Logs::LogGroup": "LogGroupName",
                 "AWS::Lambda::Function": "FunctionName", "AWS::CloudTrail::Trail": "TrailName"}
        if kind in names:
            return self._name(name, names[kind])
        raise AssertionError(f"no example value for Ref to {kind} ({name})")

    def get_att(self, logical: str, attribute: str) -> str:
        kind = self._type(logical)
        p, a, r = PARTITION, ACCOUNT, REGION
        if attribute == "PolicyArn" and kind == "AWS::IAM::ManagedPolicy":
            return f"arn:{p}:iam::{a}:policy/{self._name(logical, 'ManagedPolicyName')}"
        if attribute != "Arn":
            raise AssertionError(f"no example value for Fn::GetAtt {logical}.{attribute}")
        arns: dict[str, Callable[[], str]] = {
            "AWS::IAM::Role": lambda: f"arn:{p}:iam::{a}:role/{self.ref(logical)}",
            "AWS::DynamoDB::Table": lambda: f"arn:{p}:dynamodb:{r}:{a}:table/{self.ref(logical)}",
            "AWS::S3::Bucket": lambda: f"arn:{p}:s3:::{self.ref(logical)}",
            "AWS::SQS::Queue": lambda: f"arn:{p}:sqs:{r}:{a}:{self._name(logical, 'QueueName')}",
            "AWS::KMS::Key": lambda: f"arn:{p}:kms:{r}:{a}:key/{self._key_id(logical)}",
            # CloudFormation's LogGroup Arn attribute ends in ":*"
            "AWS::Logs::LogGroup": lambda: f"arn:{p}:logs:{r}:{a}:log-group:{self.ref(logical)}:*",
            "AWS::SecretsManager::Secret": lambda: (
                f"arn:{p}:secretsmanager:{r}:{a}:secret:{self._name(logical, 'Name')}-AbCdEf"),
            "AWS::SNS::Topic": lambda: f"arn:{p}:sns:{r}:{a}:{self._name(logical, 'TopicName')}",
            "AWS::Lambda::Function": lambda: f"arn:{p}:lambda:{r}:{a}:function:{self.ref(logical)}",
            "AWS::Lambda::Alias": lambda: (
                f"arn:{p}:lambda:{r}:{a}:function:"
                f"{self.resolve(self._props(logical)['FunctionName'])}:"
                f"{self._props(logical)['Name']}"),
            "AWS::Events::Rule": lambda: f"arn:{p}:events:{r}:{a}:rule/{self._name(logical, 'Name')}",
        }
        if kind not in arns:
            raise AssertionError(f"no example ARN for {kind} ({logical})")
        return arns[kind]()


# -- the synthesized roles ------------------------------------------------------------------

@dataclass
class Role:
    arn: str
    session_arn: str
    identity_policies: list[dict]
    boundaries: list[dict]
    trust: dict
    session_tags: dict[str, str] = field(default_factory=dict)
    source_identity: str | None = None


class Deployment:
    """One synthesized app: its roles' resolved policies and the ARNs the cases act on."""

    def __init__(self, context: dict | None = None, outdir: Path | None = None, *,
                 synthesized=None) -> None:
        if synthesized is not None:  # an app the infra fixtures synthesized already
            self.stack, self.template = synthesized.stack, synthesized.json
        else:
            self.stack, self.template = self._synth(context, outdir)
        self.resolver = Resolver(self.template, self.stack.stack_name)
        stack = self.stack
        agent = stack.agent
        self.settings = stack.settings
        self.agent = self._role(agent.role, session=f"{stack.stack_name}-agent")
        self.tool = self._role(agent.tool_role, session=SOURCE_IDENTITY)
        self.tool.session_tags = {"tenant": "acme", "agent": self.settings.agent_name}
        self.tool.source_identity = SOURCE_IDENTITY
        self.bucket_table = self.arn(stack.state.bucket_table)
        self.idempotency_table = self.arn(stack.state.idempotency_table)
        self.notes_table = self.arn(stack.state.notes_table)
        self.docs_bucket = self.arn(stack.state.documents)
        self.payload_bucket = self.arn(stack.state.payloads)
        self.data_key = self.arn(stack.data_key.key)
        self.secret = self.arn(agent.secret) if agent.secret is not None else None
        self.work_queue = self.arn(stack.state.work_queue)
        self.results_table = self.arn(stack.state.results_table)
        self.alias = self.arn(agent.alias)
        self.function = self.arn(agent.function)
        if stack.batch is not None:  # the batch lane (Anthropic only)
            self.collector = self._role(stack.batch.roles["Collector"],
                                        session=f"{stack.stack_name}-batch-collector")
            self.poller = self._role(stack.batch.roles["Poller"],
                                     session=f"{stack.stack_name}-batch-poller")
            self.batch_queue = self.arn(stack.batch_state.queue)
            self.batch_dlq = self.arn(stack.batch_state.dead_letter_queue)
            self.batch_table = self.arn(stack.batch_state.table)
        if stack.runaway is not None:  # the runaway breaker's scheduled function
            self.runaway = self._role(stack.runaway.role, session=f"{stack.stack_name}-runaway")
            self.limits_table = self.arn(stack.budgets.table)
        self.resource_policies = self._resource_policies()

    @staticmethod
    def _synth(context: dict, outdir: Path) -> tuple[Any, dict]:
        import app

        cdk_app, stack = app.build_app(context, outdir=str(outdir))
        template_path = outdir / f"{stack.artifact_id}.template.json"
        try:
            cdk_app.synth()
        except RuntimeError:
            # A policy-check (cdk-nag) failure is other tests' business; the template is
            # written before validation runs.
            if not template_path.exists():
                raise
        return stack, json.loads(template_path.read_text())

    def logical_id(self, construct) -> str:
        return self.stack.resolve(self.stack.get_logical_id(construct.node.default_child))

    def arn(self, construct) -> str:
        return self.resolver.get_att(self.logical_id(construct), "Arn")

    def _resource_policies(self) -> dict[str, dict]:
        """Resource ARN -> its resource policy (bucket and queue policies, key policies); a
        bucket's policy also governs its objects ("<bucket ARN>/...")."""
        policies = {}
        for logical, resource in self.template["Resources"].items():
            props = resource.get("Properties", {})
            if resource["Type"] == "AWS::S3::BucketPolicy":
                bucket = self.resolver.resolve(props["Bucket"])
                policies[f"arn:{PARTITION}:s3:::{bucket}"] = props["PolicyDocument"]
            elif resource["Type"] == "AWS::SQS::QueuePolicy":
                for queue in props["Queues"]:
                    [owner] = [name for name in self.template["Resources"]
                               if queue == {"Ref": name}]
                    policies[self.resolver.get_att(owner, "Arn")] = props["PolicyDocument"]
            elif resource["Type"] == "AWS::KMS::Key":
                policies[self.resolver.get_att(logical, "Arn")] = props["KeyPolicy"]
        for logical, resource in self.template["Resources"].items():
            if resource["Type"] == "AWS::Lambda::Permission":
                props = self.resolver.resolve(resource["Properties"])
                function = props["FunctionName"]
                if not function.startswith("arn:"):
                    function = f"arn:{PARTITION}:lambda:{REGION}:{ACCOUNT}:function:{function}"
                policies.setdefault(function, _policy())["Statement"].append(
                    _lambda_statement(logical, function, props))
        return self.resolver.resolve(policies)

    def resource_policy(self, arn: str) -> dict | None:
        if arn in self.resource_policies:
            return self.resource_policies[arn]
        if arn.startswith(f"arn:{PARTITION}:s3:::") and "/" in arn:
            return self.resource_policies.get(arn.split("/", 1)[0])
        return None

    def _role(self, construct, *, session: str) -> Role:
        logical = self.logical_id(construct)
        resources = self.template["Resources"]
        props = resources[logical]["Properties"]
        ref = {"Ref": logical}
        policies = [{"name": policy["PolicyName"], "policy": policy["PolicyDocument"]}
                    for policy in props.get("Policies", [])]
        for name, resource in resources.items():
            if resource["Type"] == "AWS::IAM::Policy" and ref in resource["Properties"].get(
                    "Roles", []):
                policies.append({"name": name, "policy": resource["Properties"]["PolicyDocument"]})
        managed = {self.resolver.resolve(arn) for arn in props.get("ManagedPolicyArns", [])}
        for name, resource in resources.items():
            if resource["Type"] == "AWS::IAM::ManagedPolicy":
                attached = ref in resource["Properties"].get("Roles", [])
                if attached or self.resolver.ref(name) in managed:
                    policies.append({"name": name,
                                     "policy": resource["Properties"]["PolicyDocument"]})
        boundaries = []
        if "PermissionsBoundary" in props:
            boundary_arn = self.resolver.resolve(props["PermissionsBoundary"])
            [boundary] = [name for name, resource in resources.items()
                          if resource["Type"] == "AWS::IAM::ManagedPolicy"
                          and self.resolver.ref(name) == boundary_arn]
            boundaries.append({"name": boundary,
                               "policy": resources[boundary]["Properties"]["PolicyDocument"]})
        role_arn = self.resolver.get_att(logical, "Arn")
        role_name = role_arn.rsplit("/", 1)[1]
        return Role(
            arn=role_arn,
            session_arn=f"arn:{PARTITION}:sts::{ACCOUNT}:assumed-role/{role_name}/{session}",
            identity_policies=self.resolver.resolve(policies),
            boundaries=self.resolver.resolve(boundaries),
            trust=self.resolver.resolve(props["AssumeRolePolicyDocument"]))

    # requests --------------------------------------------------------------------------------
    def request(self, role: Role, actions: str | list[str], resource: str,
                context: dict | None = None, *, region: str = REGION,
                resource_policy: dict | None = None, principal: str | None = None,
                identity_policies: list[dict] | None = None,
                boundaries: list[dict] | None = None) -> dict:
        """A request by a session of `role`, with the context keys IAM sets for it (principal,
        region, session tags, source identity) plus `context` (a None value removes a key)."""
        base: dict[str, Any] = {"aws:RequestedRegion": region, "aws:PrincipalArn": role.arn,
                                "aws:PrincipalAccount": ACCOUNT, "aws:PrincipalType": "AssumedRole",
                                "aws:SecureTransport": "true"}
        for key, value in role.session_tags.items():
            base[f"aws:PrincipalTag/{key}"] = value
        if role.source_identity:
            base["aws:SourceIdentity"] = role.source_identity
        for key, value in (context or {}).items():
            if value is None:
                base.pop(key, None)
            else:
                base[key] = value
        return {"principal": principal or role.session_arn,
                "actions": [actions] if isinstance(actions, str) else list(actions),
                "resource": resource, "accountId": ACCOUNT, "context": base,
                "identityPolicies": (role.identity_policies if identity_policies is None
                                     else identity_policies),
                "permissionBoundaries": role.boundaries if boundaries is None else boundaries,
                "resourcePolicy": (self.resource_policy(resource) if resource_policy is None
                                   else resource_policy)}

    def assume_tool_role(self, *, tenant: str | None = "acme", agent_tag: str | None = None,
                         extra_tags: dict | None = None, tagged: bool = True,
                         source_identity: str | None = SOURCE_IDENTITY, side: str = "both",
                         caller_arn: str | None = None, region: str = REGION) -> dict:
        """AssumeRole on the tool role as the agent does it: sts:AssumeRole, plus
        sts:TagSession when session tags are passed (`tagged`) and sts:SetSourceIdentity when a
        source identity is; all three are authorized against the call's one request context.
        `caller_arn`: another role of the account calls instead of the agent role (with the
        agent role's policies). `side`: "both" (identity + boundary + trust), "identity" (the
        caller's policies and boundary, against a trust policy that defers to the account's
        IAM policies) or "trust" (the tool role's trust policy, for a caller whose own policies
        allow everything)."""
        caller = self.agent
        tags = {}
        if tenant is not None:
            tags["tenant"] = tenant
        tags["agent"] = agent_tag or self.settings.agent_name
        tags.update(extra_tags or {})
        if not tagged:
            tags = {}
        context: dict[str, Any] = {f"aws:RequestTag/{k}": v for k, v in tags.items()}
        actions = ["sts:AssumeRole"]
        if tags:
            context["aws:TagKeys"] = list(tags)
            actions.append("sts:TagSession")
        if source_identity is not None:
            context["sts:SourceIdentity"] = source_identity
            actions.append("sts:SetSourceIdentity")
        principal_arn = caller_arn or caller.arn
        if caller_arn:
            context["aws:PrincipalArn"] = caller_arn
        principal = (f"arn:{PARTITION}:sts::{ACCOUNT}:assumed-role/"
                     f"{principal_arn.rsplit('/', 1)[1]}/session") if caller_arn else None
        trust, identity, boundaries = self.tool.trust, None, None
        if side == "identity":
            # Trusting the account root defers to the caller's identity policies, whereas a
            # trust policy naming the caller's role would grant on its own (same account).
            trust = _policy({"Effect": "Allow",
                             "Principal": {"AWS": f"arn:{PARTITION}:iam::{ACCOUNT}:root"},
                             "Action": ["sts:AssumeRole", "sts:TagSession",
                                        "sts:SetSourceIdentity"]})
        elif side == "trust":
            identity = [{"name": "AllowAll",
                         "policy": _policy({"Effect": "Allow", "Action": "*", "Resource": "*"})}]
            boundaries = []
        return {**self.request(caller, actions, self.tool.arn, context, region=region,
                               resource_policy=trust, principal=principal,
                               identity_policies=identity, boundaries=boundaries),
                "sameRequestContext": True}


def _policy(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def _lambda_statement(sid: str, function_arn: str, permission: dict) -> dict:
    """An AWS::Lambda::Permission as the statement Lambda adds to the function's resource
    policy (GetPolicy's form)."""
    principal = permission["Principal"]
    conditions: dict[str, dict] = {}
    if "FunctionUrlAuthType" in permission:
        conditions.setdefault("StringEquals", {})["lambda:FunctionUrlAuthType"] = \
            permission["FunctionUrlAuthType"]
    if permission.get("InvokedViaFunctionUrl"):
        conditions.setdefault("Bool", {})["lambda:InvokedViaFunctionUrl"] = "true"
    if "SourceArn" in permission:
        conditions.setdefault("ArnLike", {})["AWS:SourceArn"] = permission["SourceArn"]
    if "SourceAccount" in permission:
        conditions.setdefault("StringEquals", {})["AWS:SourceAccount"] = \
            permission["SourceAccount"]
    statement = {"Sid": sid, "Effect": "Allow",
                 "Principal": {"Service": principal} if principal.endswith(".amazonaws.com")
                 else {"AWS": principal},
                 "Action": permission["Action"], "Resource": function_arn}
    return {**statement, "Condition": conditions} if conditions else statement


def _caller(d: Deployment, role_arn: str, actions: str | list[str], resource: str,
            context: dict | None = None, *, own_policy: bool = True) -> dict:
    """A request by a session of a role from outside the kit (an application, a front door, a
    producer; of this account or another), whose own identity policy allows the actions
    (`own_policy`) or grants nothing."""
    actions = [actions] if isinstance(actions, str) else list(actions)
    account, name = role_arn.split(":")[4], role_arn.rsplit("/", 1)[1]
    identity = [{"name": "CallerPolicy", "policy": _policy(
        {"Effect": "Allow", "Action": actions, "Resource": "*"})}] if own_policy else []
    return {"principal": f"arn:{PARTITION}:sts::{account}:assumed-role/{name}/app",
            "actions": actions, "resource": resource, "accountId": ACCOUNT,
            "context": {"aws:RequestedRegion": REGION, "aws:PrincipalArn": role_arn,
                        "aws:PrincipalAccount": account, "aws:PrincipalType": "AssumedRole",
                        "aws:SecureTransport": "true", **(context or {})},
            "identityPolicies": identity, "permissionBoundaries": None,
            "resourcePolicy": d.resource_policy(resource)}


#: A Function URL request (AuthType AWS_IAM) is authorized as lambda:InvokeFunctionUrl and
#: lambda:InvokeFunction in one request context.
URL_ACTIONS = ["lambda:InvokeFunctionUrl", "lambda:InvokeFunction"]
URL_CONTEXT = {"lambda:FunctionUrlAuthType": "AWS_IAM", "lambda:InvokedViaFunctionUrl": "true"}


def _url_request(d: Deployment, role_arn: str, *, own_policy: bool = True) -> dict:
    return {**_caller(d, role_arn, URL_ACTIONS, d.alias, URL_CONTEXT, own_policy=own_policy),
            "sameRequestContext": True}




# -- the matrix -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    id: str
    app: str                     # "anthropic" | "bedrock"
    expect: str
    build: Callable[[Deployment], dict]
    #: for an explicit deny: the Sid of the Deny statement that must be the one that matched
    denied_by: str | None = None


INVOKE = "bedrock:InvokeModel"
OUTSIDE_REGIONS = "DenyOutsideAllowedRegions"
#: Bedrock may leave the home region only as routed by a configured inference profile.
BEDROCK_OUTSIDE_REGIONS = "DenyBedrockOutsideRegionsExceptThroughProfiles"


def _profile_arn(profile: str, region: str = REGION) -> str:
    return f"arn:{PARTITION}:bedrock:{region}:{ACCOUNT}:inference-profile/{profile}"


def _model_arn(profile: str, region: str) -> str:
    model = profile.split(".", 1)[1]
    return f"arn:{PARTITION}:bedrock:{region}::foundation-model/{model}"


def _invoke_global_model(d: Deployment, via_profile: str | None) -> dict:
    """InvokeModel on the regionless global model ARN, as a global profile routes it
    (aws:RequestedRegion "unspecified"). The service reference lists no such ARN form, so the
    evaluator is told to accept it."""
    context = {"bedrock:InferenceProfileArn": _profile_arn(via_profile)} if via_profile else {}
    return {**d.request(d.agent, INVOKE, _model_arn(GLOBAL_PROFILE, ""), context,
                        region="unspecified"),
            "unlistedResourceArn": True}


#: Request context keys the AWS MCP Server's downstream calls carry, and another AWS-managed
#: MCP server's (the AWS MCP Server documentation; only checked against it).
VIA_AWS_MCP = {"aws:ViaAWSMCPService": "true", "aws:CalledViaAWSMCP": "aws-mcp.amazonaws.com"}
VIA_EKS_MCP = {"aws:ViaAWSMCPService": "true", "aws:CalledViaAWSMCP": "eks-mcp.amazonaws.com"}
MCP_DENY = "DenyDestructiveViaMcp"


def _with_delete_tool(d: Deployment, context: dict) -> dict:
    """A tool that grants s3:DeleteObject on the tenant's prefix (its policy and boundary
    cap added, as the registry would): the delete's own grant, inside or outside MCP."""
    grant = {"Effect": "Allow", "Action": "s3:DeleteObject",
             "Resource": f"{d.docs_bucket}/docs/${{aws:PrincipalTag/tenant}}/*"}
    identity = d.tool.identity_policies + [{"name": "DeleteTool", "policy": _policy(grant)}]
    boundaries = [{"name": b["name"], "policy": {**b["policy"], "Statement": [
        *b["policy"]["Statement"], grant]}} for b in d.tool.boundaries]
    return d.request(d.tool, "s3:DeleteObject", f"{d.docs_bucket}/docs/acme/x", context,
                     identity_policies=identity, boundaries=boundaries)


def _assume_via_mcp(d: Deployment, request: dict) -> dict:
    """AssumeRole on the tool role made through the AWS MCP Server."""
    return {**request, "context": {**request["context"], **VIA_AWS_MCP}}


BATCH_KEYS = ["anthropic#message-batches"]
COUNTER_KEYS = ["anthropic#message-batches#queued"]

#: the batch lane's roles (collector, poller) and the agent's part in it
BATCH_CASES: list[Case] = [
    Case("collector.bucket.acquire_batch_bucket", "anthropic", ALLOWED, lambda d: d.request(
        d.collector, "dynamodb:UpdateItem", d.bucket_table, {"dynamodb:LeadingKeys": BATCH_KEYS})),
    Case("collector.bucket.reserve_counter", "anthropic", ALLOWED, lambda d: d.request(
        d.collector, "dynamodb:UpdateItem", d.bucket_table,
        {"dynamodb:LeadingKeys": COUNTER_KEYS})),
    Case("collector.bucket.drain_interactive_bucket", "anthropic", IMPLICIT, lambda d: d.request(
        d.collector, "dynamodb:UpdateItem", d.bucket_table,
        {"dynamodb:LeadingKeys": ["anthropic#sonnet-4"]})),
    Case("collector.bucket.delete_counter", "anthropic", IMPLICIT, lambda d: d.request(
        d.collector, "dynamodb:DeleteItem", d.bucket_table,
        {"dynamodb:LeadingKeys": COUNTER_KEYS})),
    Case("collector.queue.receive", "anthropic", ALLOWED, lambda d: d.request(
        d.collector, "sqs:ReceiveMessage", d.batch_queue)),
    Case("collector.queue.receive_work_queue", "anthropic", IMPLICIT, lambda d: d.request(
        d.collector, "sqs:ReceiveMessage", d.work_queue)),
    Case("collector.dlq.send", "anthropic", ALLOWED, lambda d: d.request(
        d.collector, "sqs:SendMessage", d.batch_dlq)),
    Case("collector.state.write_items", "anthropic", ALLOWED, lambda d: d.request(
        d.collector, "dynamodb:BatchWriteItem", d.batch_table)),
    Case("collector.results.error_answer", "anthropic", ALLOWED, lambda d: d.request(
        d.collector, "dynamodb:PutItem", d.results_table,
        {"dynamodb:LeadingKeys": ["acme/r1"]})),
    Case("collector.results.outside_tenants", "anthropic", IMPLICIT, lambda d: d.request(
        d.collector, "dynamodb:PutItem", d.results_table,
        {"dynamodb:LeadingKeys": ["initech/r1"]})),
    Case("collector.other_region", "anthropic", EXPLICIT, lambda d: d.request(
        d.collector, "sqs:ReceiveMessage", d.batch_queue, region=OTHER_REGION),
        denied_by=OUTSIDE_REGIONS),
    Case("collector.api_key.current", "anthropic", ALLOWED, lambda d: d.request(
        d.collector, "secretsmanager:GetSecretValue", d.secret,
        {"secretsmanager:VersionStage": "AWSCURRENT"})),
    Case("collector.api_key.previous", "anthropic", IMPLICIT, lambda d: d.request(
        d.collector, "secretsmanager:GetSecretValue", d.secret,
        {"secretsmanager:VersionStage": "AWSPREVIOUS"})),
    Case("poller.results.store_tenant_answer", "anthropic", ALLOWED, lambda d: d.request(
        d.poller, "dynamodb:PutItem", d.results_table, {"dynamodb:LeadingKeys": ["acme/r1"]})),
    Case("poller.results.store_outside_tenants", "anthropic", IMPLICIT, lambda d: d.request(
        d.poller, "dynamodb:PutItem", d.results_table,
        {"dynamodb:LeadingKeys": ["initech/r1"]})),
    Case("poller.queue.requeue", "anthropic", ALLOWED, lambda d: d.request(
        d.poller, "sqs:SendMessage", d.batch_queue)),
    Case("poller.queue.receive", "anthropic", IMPLICIT, lambda d: d.request(
        d.poller, "sqs:ReceiveMessage", d.batch_queue)),
    Case("poller.state.put_intent", "anthropic", IMPLICIT, lambda d: d.request(
        d.poller, "dynamodb:PutItem", d.batch_table)),
    Case("poller.state.mark_item", "anthropic", ALLOWED, lambda d: d.request(
        d.poller, "dynamodb:UpdateItem", d.batch_table)),
    Case("poller.bucket.release_counter", "anthropic", ALLOWED, lambda d: d.request(
        d.poller, "dynamodb:UpdateItem", d.bucket_table, {"dynamodb:LeadingKeys": COUNTER_KEYS})),
    Case("poller.bucket.interactive_bucket", "anthropic", IMPLICIT, lambda d: d.request(
        d.poller, "dynamodb:UpdateItem", d.bucket_table,
        {"dynamodb:LeadingKeys": ["anthropic#haiku-4.5"]})),
    Case("poller.budget.charge_answer", "anthropic", ALLOWED, lambda d: d.request(
        d.poller, "dynamodb:UpdateItem", d.bucket_table,
        {"dynamodb:LeadingKeys": ["budget#2027-01"]})),
    Case("poller.budget.delete_budget_item", "anthropic", IMPLICIT, lambda d: d.request(
        d.poller, "dynamodb:DeleteItem", d.bucket_table,
        {"dynamodb:LeadingKeys": ["budget#2027-01"]})),
    Case("agent.batch_queue.send", "anthropic", ALLOWED, lambda d: d.request(
        d.agent, "sqs:SendMessage", d.batch_queue)),
    Case("agent.batch_queue.receive", "anthropic", IMPLICIT, lambda d: d.request(
        d.agent, "sqs:ReceiveMessage", d.batch_queue)),
    Case("agent.bucket.touch_batch_counter", "anthropic", IMPLICIT, lambda d: d.request(
        d.agent, "dynamodb:UpdateItem", d.bucket_table, {"dynamodb:LeadingKeys": COUNTER_KEYS})),
]

SEND_WORK_DENY = "DenySendWorkFromOthers"
OTHER_ROLE = f"arn:{PARTITION}:iam::{OTHER_ACCOUNT}:role/SomeApp"
LOCAL_ROLE = f"arn:{PARTITION}:iam::{ACCOUNT}:role/SomeApp"

#: Callers from outside the kit against the alias's and the work queue's resource policies.
#: "same_account": a role of the stack's account (its own policy suffices for Lambda; the
#: tenant is then the handler's to enforce); "cross_account": another account's role (needs
#: its own policy and the resource policy).
CALLER_CASES: list[Case] = [
    # the Function URL
    Case("callers.url.cross_account.bound_role", "anthropic", ALLOWED,
         lambda d: _url_request(d, GLOBEX_APP)),
    Case("callers.url.cross_account.bound_role_without_its_own_policy", "anthropic", IMPLICIT,
         lambda d: _url_request(d, GLOBEX_APP, own_policy=False)),
    Case("callers.url.cross_account.unbound_role", "anthropic", IMPLICIT,
         lambda d: _url_request(d, OTHER_ROLE)),
    Case("callers.url.cross_account.trusted_invoker", "anthropic", IMPLICIT,
         lambda d: _url_request(d, FRONT_DOOR)),
    Case("callers.url.same_account.bound_role", "anthropic", ALLOWED,
         lambda d: _url_request(d, ACME_APP)),
    # a Lambda permission only allows: a same-account role allowed by its own policy gets
    # through, and the handler refuses it a tenant it is not bound to
    Case("callers.url.same_account.unbound_role_allowed_by_its_own_policy", "anthropic",
         ALLOWED, lambda d: _url_request(d, LOCAL_ROLE)),
    Case("callers.url.same_account.bound_role_without_its_own_policy", "anthropic", IMPLICIT,
         lambda d: _url_request(d, ACME_APP, own_policy=False)),
    # direct invokes (the body's tenant is trusted): trusted invokers only, never tenant roles
    Case("callers.invoke.cross_account.trusted_invoker", "anthropic", ALLOWED,
         lambda d: _caller(d, FRONT_DOOR, "lambda:InvokeFunction", d.alias)),
    Case("callers.invoke.cross_account.trusted_invoker_without_its_own_policy", "anthropic",
         IMPLICIT, lambda d: _caller(d, FRONT_DOOR, "lambda:InvokeFunction", d.alias,
                                     own_policy=False)),
    Case("callers.invoke.cross_account.trusted_invoker_unqualified_function", "anthropic",
         IMPLICIT, lambda d: _caller(d, FRONT_DOOR, "lambda:InvokeFunction", d.function)),
    Case("callers.invoke.cross_account.bound_role_outside_the_url", "anthropic", IMPLICIT,
         lambda d: _caller(d, GLOBEX_APP, "lambda:InvokeFunction", d.alias,
                           {"lambda:InvokedViaFunctionUrl": "false"})),
    Case("callers.invoke.cross_account.other_role", "anthropic", IMPLICIT,
         lambda d: _caller(d, OTHER_ROLE, "lambda:InvokeFunction", d.alias)),
    # the work queue: the agent and the trusted producers queue work, nobody else
    Case("callers.queue.same_account.agent_role", "anthropic", ALLOWED, lambda d: d.request(
        d.agent, "sqs:SendMessage", d.work_queue)),
    Case("callers.queue.cross_account.trusted_producer", "anthropic", ALLOWED,
         lambda d: _caller(d, PRODUCER, "sqs:SendMessage", d.work_queue)),
    Case("callers.queue.cross_account.trusted_producer_without_its_own_policy", "anthropic",
         IMPLICIT, lambda d: _caller(d, PRODUCER, "sqs:SendMessage", d.work_queue,
                                     own_policy=False)),
    Case("callers.queue.same_account.trusted_producer", "anthropic", ALLOWED,
         lambda d: _caller(d, LOCAL_PRODUCER, "sqs:SendMessage", d.work_queue)),
    # configured without its path, matched on account and role name
    Case("callers.queue.same_account.trusted_producer_with_a_path", "anthropic", ALLOWED,
         lambda d: _caller(d, f"arn:{PARTITION}:iam::{ACCOUNT}:role/ingest/IngestProducer",
                           "sqs:SendMessage", d.work_queue)),
    Case("callers.queue.same_account.other_role_allowed_by_its_own_policy", "anthropic",
         EXPLICIT, lambda d: _caller(d, LOCAL_ROLE, "sqs:SendMessage", d.work_queue),
         SEND_WORK_DENY),
    Case("callers.queue.same_account.tenant_role", "anthropic", EXPLICIT,
         lambda d: _caller(d, ACME_APP, "sqs:SendMessage", d.work_queue), SEND_WORK_DENY),
    Case("callers.queue.same_account.tool_role", "anthropic", EXPLICIT, lambda d: d.request(
        d.tool, "sqs:SendMessage", d.work_queue), SEND_WORK_DENY),
    Case("callers.queue.cross_account.other_role", "anthropic", EXPLICIT,
         lambda d: _caller(d, OTHER_ROLE, "sqs:SendMessage", d.work_queue), SEND_WORK_DENY),
    # the data key the queue is encrypted with: through SQS only
    Case("callers.queue_key.cross_account.trusted_producer_via_sqs", "anthropic", ALLOWED,
         lambda d: _caller(d, PRODUCER, "kms:GenerateDataKey", d.data_key,
                           {"kms:ViaService": f"sqs.{REGION}.amazonaws.com"})),
    Case("callers.queue_key.cross_account.trusted_producer_direct", "anthropic", IMPLICIT,
         lambda d: _caller(d, PRODUCER, "kms:Decrypt", d.data_key)),
    Case("callers.queue_key.cross_account.other_role_via_sqs", "anthropic", IMPLICIT,
         lambda d: _caller(d, OTHER_ROLE, "kms:GenerateDataKey", d.data_key,
                           {"kms:ViaService": f"sqs.{REGION}.amazonaws.com"})),
    # the producer's role name in a third account is another role
    Case("callers.queue.cross_account.producer_name_in_a_third_account", "anthropic", EXPLICIT,
         lambda d: _caller(d, f"arn:{PARTITION}:iam::333344445555:role/Producer",
                           "sqs:SendMessage", d.work_queue), SEND_WORK_DENY),
]


#: the payload bucket: the agent's claim checks (answers, queue messages, dead letters)
OWN_ACCOUNT = {"aws:ResourceAccount": ACCOUNT}
PAYLOAD_CASES = [
    *[Case(f"agent.payloads.{action.split(':')[1]}_{prefix}.{app}", app, ALLOWED,
           (lambda action, prefix: lambda d: d.request(
               d.agent, action, f"{d.payload_bucket}/{prefix}/acme/req-1/a.json",
               OWN_ACCOUNT))(action, prefix))
      for action in ("s3:PutObject", "s3:GetObject") for prefix in ("results", "queue", "dlq")
      for app in ("anthropic", "bedrock")],
    Case("agent.payloads.other_prefix", "anthropic", IMPLICIT, lambda d: d.request(
        d.agent, "s3:GetObject", f"{d.payload_bucket}/docs/acme/a.json", OWN_ACCOUNT)),
    Case("agent.payloads.delete", "anthropic", IMPLICIT, lambda d: d.request(
        d.agent, "s3:DeleteObject", f"{d.payload_bucket}/results/acme/req-1/a.json",
        OWN_ACCOUNT)),
    Case("agent.payloads.list", "anthropic", IMPLICIT, lambda d: d.request(
        d.agent, "s3:ListBucket", d.payload_bucket, OWN_ACCOUNT)),
    Case("agent.payloads.same_name_other_account", "anthropic", IMPLICIT, lambda d: d.request(
        d.agent, "s3:PutObject", f"{d.payload_bucket}/results/acme/req-1/a.json",
        {"aws:ResourceAccount": "999999999999"})),
    Case("agent.payloads.without_tls", "anthropic", EXPLICIT, lambda d: d.request(
        d.agent, "s3:GetObject", f"{d.payload_bucket}/results/acme/req-1/a.json",
        {**OWN_ACCOUNT, "aws:SecureTransport": "false"})),
    Case("tool.payloads.read_answers", "anthropic", IMPLICIT, lambda d: d.request(
        d.tool, "s3:GetObject", f"{d.payload_bucket}/results/acme/req-1/a.json",
        OWN_ACCOUNT)),
    # the batch lane: the poller puts answers over the results item's limit (never reads
    # them back); the collector has no part in the bucket
    *[Case(f"{role}.payloads.{name}", "anthropic", expected,
           (lambda role, action, prefix, context: lambda d: d.request(
               getattr(d, role), action, f"{d.payload_bucket}/{prefix}/acme/req-1/a.json",
               context))(role, action, prefix, context))
      for role, name, expected, action, prefix, context in (
          ("poller", "put_answer", ALLOWED, "s3:PutObject", "results", OWN_ACCOUNT),
          ("poller", "get_answer", IMPLICIT, "s3:GetObject", "results", OWN_ACCOUNT),
          ("poller", "queue_prefix", IMPLICIT, "s3:PutObject", "queue", OWN_ACCOUNT),
          ("poller", "same_name_other_account", IMPLICIT, "s3:PutObject", "results",
           {"aws:ResourceAccount": "999999999999"}),
          ("poller", "without_tls", EXPLICIT, "s3:PutObject", "results",
           {**OWN_ACCOUNT, "aws:SecureTransport": "false"}),
          ("collector", "put_answer", IMPLICIT, "s3:PutObject", "results", OWN_ACCOUNT))],
    *[Case(f"{role}.kms.generate_via_s3", "anthropic", expected,
           (lambda role: lambda d: d.request(getattr(d, role), "kms:GenerateDataKey", d.data_key,
                                             {"kms:ViaService": f"s3.{REGION}.amazonaws.com"})
            )(role))
      for role, expected in (("poller", ALLOWED), ("collector", IMPLICIT))],
]

#: What the bucket's state read projects (`TokenBucket.cool_down_until` and a booking with an
#: old view): the key, the cool-down, the booking mark, a tat and a lowering stamp per
#: dimension, the tenants' fair-share map and the capacities learned from the headers.
BUCKET_STATE_READ = ["pk", "cool_until", "booked_until", "tat_requests", "tat_input_tokens",
                     "tat_output_tokens", "tat_tokens", "lowered_at_requests",
                     "lowered_at_input_tokens", "lowered_at_output_tokens",
                     "lowered_at_tokens", "tenants", "learned"]

CASES: list[Case] = BATCH_CASES + PAYLOAD_CASES + CALLER_CASES + [
    # -- agent role: the rate-limit bucket table -----------------------------------------------
    Case("agent.bucket.update_own_bucket", "anthropic", ALLOWED, lambda d: d.request(
        d.agent, "dynamodb:UpdateItem", d.bucket_table,
        {"dynamodb:LeadingKeys": ["anthropic#sonnet-4"]})),
    Case("agent.bucket.update_other_bucket", "anthropic", IMPLICIT, lambda d: d.request(
        d.agent, "dynamodb:UpdateItem", d.bucket_table,
        {"dynamodb:LeadingKeys": ["anthropic#other"]})),
    Case("agent.bucket.get_whole_item", "anthropic", IMPLICIT, lambda d: d.request(
        d.agent, "dynamodb:GetItem", d.bucket_table,
        {"dynamodb:LeadingKeys": ["anthropic#sonnet-4"]})),
    Case("agent.bucket.read_cool_down", "anthropic", ALLOWED, lambda d: d.request(
        d.agent, "dynamodb:GetItem", d.bucket_table,
        {"dynamodb:LeadingKeys": ["anthropic#sonnet-4"], "dynamodb:Attributes": ["cool_until"]})),
    Case("agent.bucket.read_state", "anthropic", ALLOWED, lambda d: d.request(
        d.agent, "dynamodb:GetItem", d.bucket_table,
        {"dynamodb:LeadingKeys": ["anthropic#sonnet-4"],
         "dynamodb:Attributes": BUCKET_STATE_READ})),
    Case("agent.bucket.read_state_and_another_attribute", "anthropic", IMPLICIT,
         lambda d: d.request(
             d.agent, "dynamodb:GetItem", d.bucket_table,
             {"dynamodb:LeadingKeys": ["anthropic#sonnet-4"],
              "dynamodb:Attributes": BUCKET_STATE_READ + ["owner_notes"]})),
    Case("agent.bucket.read_other_attributes", "anthropic", IMPLICIT, lambda d: d.request(
        d.agent, "dynamodb:GetItem", d.bucket_table,
        {"dynamodb:LeadingKeys": ["anthropic#sonnet-4"],
         "dynamodb:Attributes": ["cool_until", "tat_requests", "owner_notes"]})),
    Case("agent.bucket.read_cool_down_other_bucket", "anthropic", IMPLICIT, lambda d: d.request(
        d.agent, "dynamodb:GetItem", d.bucket_table,
        {"dynamodb:LeadingKeys": ["anthropic#other"], "dynamodb:Attributes": ["cool_until"]})),
    Case("agent.bucket.delete_item", "anthropic", IMPLICIT, lambda d: d.request(
        d.agent, "dynamodb:DeleteItem", d.bucket_table,
        {"dynamodb:LeadingKeys": ["anthropic#sonnet-4"]})),
    Case("agent.idempotency.other_function_key", "anthropic", IMPLICIT, lambda d: d.request(
        d.agent, "dynamodb:PutItem", d.idempotency_table,
        {"dynamodb:LeadingKeys": ["Other-function.handler#abc"]})),
    # -- agent role: the Anthropic API key -----------------------------------------------------
    Case("agent.secret.current", "anthropic", ALLOWED, lambda d: d.request(
        d.agent, "secretsmanager:GetSecretValue", d.secret,
        {"secretsmanager:VersionStage": "AWSCURRENT"})),
    Case("agent.secret.other_secret", "anthropic", IMPLICIT, lambda d: d.request(
        d.agent, "secretsmanager:GetSecretValue",
        f"arn:{PARTITION}:secretsmanager:{REGION}:{ACCOUNT}:secret:other-AbCdEf",
        {"secretsmanager:VersionStage": "AWSCURRENT"})),
    Case("agent.secret.previous", "anthropic", IMPLICIT, lambda d: d.request(
        d.agent, "secretsmanager:GetSecretValue", d.secret,
        {"secretsmanager:VersionStage": "AWSPREVIOUS"})),
    # -- agent role: the data key ---------------------------------------------------------------
    Case("agent.kms.decrypt_via_dynamodb", "anthropic", ALLOWED, lambda d: d.request(
        d.agent, "kms:Decrypt", d.data_key,
        {"kms:ViaService": f"dynamodb.{REGION}.amazonaws.com"})),
    Case("agent.kms.decrypt_direct", "anthropic", IMPLICIT, lambda d: d.request(
        d.agent, "kms:Decrypt", d.data_key)),
    Case("agent.kms.decrypt_via_other_service", "anthropic", IMPLICIT, lambda d: d.request(
        d.agent, "kms:Decrypt", d.data_key, {"kms:ViaService": f"ssm.{REGION}.amazonaws.com"})),
    Case("agent.kms.generate_via_s3_for_claim_checks", "anthropic", ALLOWED, lambda d: d.request(
        d.agent, "kms:GenerateDataKey", d.data_key,
        {"kms:ViaService": f"s3.{REGION}.amazonaws.com"})),
    # -- agent role: assuming the tool role (identity + boundary + trust) ------------------------
    *[Case(f"agent.assume_tool.{name}.{side}", "anthropic", expect,
           (lambda build, side: lambda d: build(d, side))(build, side))
      for side in ("both", "identity", "trust")
      for name, expect, build in (
          ("tagged_with_source_identity", ALLOWED,
           lambda d, side: d.assume_tool_role(side=side)),
          ("tenant_initech", IMPLICIT,
           lambda d, side: d.assume_tool_role(tenant="initech", side=side)),
          ("other_agent_tag", IMPLICIT,
           lambda d, side: d.assume_tool_role(agent_tag="other-agent", side=side)),
          ("missing_source_identity", IMPLICIT,
           lambda d, side: d.assume_tool_role(source_identity=None, side=side)),
          ("extra_tag_key", IMPLICIT,
           lambda d, side: d.assume_tool_role(extra_tags={"admin": "true"}, side=side)),
          ("missing_tenant_tag", IMPLICIT,
           lambda d, side: d.assume_tool_role(tenant=None, side=side)),
          # Neither tags nor a source identity: only sts:AssumeRole is authorized, so the
          # trust policy must not allow it without the conditions.
          ("bare_untagged_session", IMPLICIT, lambda d, side: d.assume_tool_role(
              tagged=False, source_identity=None, side=side)),
      )],
    Case("agent.assume_tool.other_principal", "anthropic", IMPLICIT, lambda d: d.assume_tool_role(
        caller_arn=f"arn:{PARTITION}:iam::{ACCOUNT}:role/SomeOtherRole")),
    Case("agent.assume_tool.other_principal_allowed_everything", "anthropic", IMPLICIT,
         lambda d: d.assume_tool_role(
             caller_arn=f"arn:{PARTITION}:iam::{ACCOUNT}:role/SomeOtherRole", side="trust")),
    # -- agent role: its queues ---------------------------------------------------------------
    Case("agent.sqs.send_to_work_queue", "anthropic", ALLOWED, lambda d: d.request(
        d.agent, "sqs:SendMessage", d.work_queue)),
    Case("agent.sqs.send_without_tls", "anthropic", EXPLICIT, lambda d: d.request(
        d.agent, "sqs:SendMessage", d.work_queue, {"aws:SecureTransport": "false"})),
    Case("agent.sqs.purge_work_queue", "anthropic", IMPLICIT, lambda d: d.request(
        d.agent, "sqs:PurgeQueue", d.work_queue)),
    # -- the boundary: otherwise allowed requests outside allowed_regions are explicitly denied --
    Case("boundary.agent.bucket_update_other_region", "anthropic", EXPLICIT, lambda d: d.request(
        d.agent, "dynamodb:UpdateItem", d.bucket_table,
        {"dynamodb:LeadingKeys": ["anthropic#sonnet-4"]}, region=OTHER_REGION), OUTSIDE_REGIONS),
    Case("boundary.agent.secret_other_region", "anthropic", EXPLICIT, lambda d: d.request(
        d.agent, "secretsmanager:GetSecretValue", d.secret,
        {"secretsmanager:VersionStage": "AWSCURRENT"}, region=OTHER_REGION), OUTSIDE_REGIONS),
    Case("boundary.agent.kms_decrypt_other_region", "anthropic", EXPLICIT, lambda d: d.request(
        d.agent, "kms:Decrypt", d.data_key,
        {"kms:ViaService": f"dynamodb.{REGION}.amazonaws.com"}, region=OTHER_REGION),
         OUTSIDE_REGIONS),
    Case("boundary.agent.sqs_send_other_region", "anthropic", EXPLICIT, lambda d: d.request(
        d.agent, "sqs:SendMessage", d.work_queue, region=OTHER_REGION), OUTSIDE_REGIONS),
    Case("boundary.agent.xray_other_region", "anthropic", EXPLICIT, lambda d: d.request(
        d.agent, "xray:PutTraceSegments", "*", region=OTHER_REGION), OUTSIDE_REGIONS),
    Case("boundary.agent.xray_allowed_region", "anthropic", ALLOWED, lambda d: d.request(
        d.agent, "xray:PutTraceSegments", "*")),
    Case("boundary.agent.assume_tool_other_region", "anthropic", EXPLICIT,
         lambda d: d.assume_tool_role(region=OTHER_REGION), OUTSIDE_REGIONS),
    Case("boundary.tool.get_object_other_region", "anthropic", EXPLICIT, lambda d: d.request(
        d.tool, "s3:GetObject", f"{d.docs_bucket}/docs/acme/x", region=OTHER_REGION),
         OUTSIDE_REGIONS),
    Case("boundary.tool.notes_put_other_region", "anthropic", EXPLICIT, lambda d: d.request(
        d.tool, "dynamodb:PutItem", d.notes_table, {"dynamodb:LeadingKeys": ["acme"]},
        region=OTHER_REGION), OUTSIDE_REGIONS),
    # -- tool role (session tagged tenant=acme): ABAC on S3 and DynamoDB ------------------------
    Case("tool.s3.get_own_tenant_object", "anthropic", ALLOWED, lambda d: d.request(
        d.tool, "s3:GetObject", f"{d.docs_bucket}/docs/acme/x")),
    Case("tool.s3.get_other_tenant_object", "anthropic", IMPLICIT, lambda d: d.request(
        d.tool, "s3:GetObject", f"{d.docs_bucket}/docs/globex/x")),
    Case("tool.s3.get_own_tenant_object_without_tls", "anthropic", EXPLICIT, lambda d: d.request(
        d.tool, "s3:GetObject", f"{d.docs_bucket}/docs/acme/x", {"aws:SecureTransport": "false"})),
    Case("tool.s3.get_object_untagged_session", "anthropic", IMPLICIT, lambda d: d.request(
        d.tool, "s3:GetObject", f"{d.docs_bucket}/docs/acme/x",
        {"aws:PrincipalTag/tenant": None})),
    Case("tool.s3.list_own_prefix", "anthropic", ALLOWED, lambda d: d.request(
        d.tool, "s3:ListBucket", d.docs_bucket, {"s3:prefix": "docs/acme/"})),
    Case("tool.s3.list_other_prefix", "anthropic", IMPLICIT, lambda d: d.request(
        d.tool, "s3:ListBucket", d.docs_bucket, {"s3:prefix": "docs/globex/"})),
    Case("tool.s3.list_whole_bucket", "anthropic", IMPLICIT, lambda d: d.request(
        d.tool, "s3:ListBucket", d.docs_bucket)),
    Case("tool.dynamodb.put_own_partition", "anthropic", ALLOWED, lambda d: d.request(
        d.tool, "dynamodb:PutItem", d.notes_table, {"dynamodb:LeadingKeys": ["acme"]})),
    Case("tool.dynamodb.put_other_partition", "anthropic", IMPLICIT, lambda d: d.request(
        d.tool, "dynamodb:PutItem", d.notes_table, {"dynamodb:LeadingKeys": ["globex"]})),
    Case("tool.dynamodb.get_own_partition", "anthropic", ALLOWED, lambda d: d.request(
        d.tool, "dynamodb:GetItem", d.notes_table, {"dynamodb:LeadingKeys": ["acme"]})),
    Case("tool.dynamodb.delete_own_partition", "anthropic", IMPLICIT, lambda d: d.request(
        d.tool, "dynamodb:DeleteItem", d.notes_table, {"dynamodb:LeadingKeys": ["acme"]})),
    Case("tool.kms.decrypt_via_s3", "anthropic", ALLOWED, lambda d: d.request(
        d.tool, "kms:Decrypt", d.data_key, {"kms:ViaService": f"s3.{REGION}.amazonaws.com"})),
    Case("tool.kms.decrypt_direct", "anthropic", IMPLICIT, lambda d: d.request(
        d.tool, "kms:Decrypt", d.data_key)),
    Case("tool.bucket_table.update", "anthropic", IMPLICIT, lambda d: d.request(
        d.tool, "dynamodb:UpdateItem", d.bucket_table,
        {"dynamodb:LeadingKeys": ["anthropic#sonnet-4"]})),
    # -- sanity: nothing administrative for any role ---------------------------------------------
    *[Case(f"sanity.{who}.{name}", "anthropic", IMPLICIT,
           (lambda who, build: lambda d: build(d, getattr(d, who)))(who, build))
      for who in ("agent", "tool")
      for name, build in (
          ("iam_create_role", lambda d, r: d.request(
              r, "iam:CreateRole", f"arn:{PARTITION}:iam::{ACCOUNT}:role/escalate")),
          ("iam_attach_role_policy", lambda d, r: d.request(
              r, "iam:AttachRolePolicy", r.arn)),
          ("iam_put_role_permissions_boundary", lambda d, r: d.request(
              r, "iam:PutRolePermissionsBoundary", r.arn)),
          ("s3_delete_bucket", lambda d, r: d.request(r, "s3:DeleteBucket", d.docs_bucket)),
          ("s3_put_object_own_prefix", lambda d, r: d.request(
              r, "s3:PutObject", f"{d.docs_bucket}/docs/acme/x")),
          ("dynamodb_delete_table", lambda d, r: d.request(
              r, "dynamodb:DeleteTable", d.bucket_table)),
          ("kms_schedule_key_deletion", lambda d, r: d.request(
              r, "kms:ScheduleKeyDeletion", d.data_key)),
          ("sts_assume_other_role", lambda d, r: d.request(
              r, "sts:AssumeRole", f"arn:{PARTITION}:iam::{ACCOUNT}:role/Admin")),
      )],
    # -- MCP: the tool role's session through the AWS MCP Server (policies/mcp.py) -------------
    # Allowlisted (cdk.json mcp.allow): only with aws:CalledViaAWSMCP = aws-mcp.amazonaws.com.
    Case("mcp.allowlisted.list_own_prefix", "anthropic", ALLOWED, lambda d: d.request(
        d.tool, "s3:ListBucket", d.docs_bucket, {"s3:prefix": "docs/acme/", **VIA_AWS_MCP})),
    Case("mcp.allowlisted.queue_attributes", "anthropic", ALLOWED, lambda d: d.request(
        d.tool, "sqs:GetQueueAttributes", d.work_queue, VIA_AWS_MCP)),
    Case("mcp.allowlisted.list_other_tenant_prefix", "anthropic", IMPLICIT, lambda d: d.request(
        d.tool, "s3:ListBucket", d.docs_bucket, {"s3:prefix": "docs/globex/", **VIA_AWS_MCP})),
    Case("mcp.allowlisted.queue_attributes_without_mcp", "anthropic", IMPLICIT,
         lambda d: d.request(d.tool, "sqs:GetQueueAttributes", d.work_queue)),
    Case("mcp.allowlisted.queue_attributes_other_mcp_server", "anthropic", IMPLICIT,
         lambda d: d.request(d.tool, "sqs:GetQueueAttributes", d.work_queue, VIA_EKS_MCP)),
    Case("mcp.allowlisted.list_own_prefix_other_mcp_server", "anthropic", IMPLICIT,
         lambda d: d.request(d.tool, "s3:ListBucket", d.docs_bucket,
                             {"s3:prefix": "docs/acme/", **VIA_EKS_MCP})),
    # "true" is not a service principal: a policy comparing the String key with it never matches
    Case("mcp.allowlisted.called_via_true", "anthropic", IMPLICIT, lambda d: d.request(
        d.tool, "sqs:GetQueueAttributes", d.work_queue,
        {**VIA_AWS_MCP, "aws:CalledViaAWSMCP": "true"})),
    Case("mcp.allowlisted.queue_attributes_other_region", "anthropic", EXPLICIT,
         lambda d: d.request(d.tool, "sqs:GetQueueAttributes",
                             d.work_queue.replace(REGION, OTHER_REGION), VIA_AWS_MCP,
                             region=OTHER_REGION), OUTSIDE_REGIONS),
    # The allowlist is the tool role's: the agent role's own credentials get none of it.
    Case("mcp.agent_role.list_own_prefix", "anthropic", IMPLICIT, lambda d: d.request(
        d.agent, "s3:ListBucket", d.docs_bucket, {"s3:prefix": "docs/acme/", **VIA_AWS_MCP})),
    # Destructive and privilege-changing actions: explicitly denied through any MCP server.
    *[Case(f"mcp.destructive.{name}.{via}", "anthropic", EXPLICIT,
           (lambda build, context: lambda d: build(d, context))(build, context), MCP_DENY)
      for via, context in (("aws_mcp", VIA_AWS_MCP), ("eks_mcp", VIA_EKS_MCP))
      for name, build in (
          ("s3_delete_own_object", lambda d, c: d.request(
              d.tool, "s3:DeleteObject", f"{d.docs_bucket}/docs/acme/x", c)),
          ("dynamodb_delete_own_note", lambda d, c: d.request(
              d.tool, "dynamodb:DeleteItem", d.notes_table,
              {"dynamodb:LeadingKeys": ["acme"], **c})),
          ("sqs_purge_work_queue", lambda d, c: d.request(
              d.tool, "sqs:PurgeQueue", d.work_queue, c)),
          ("iam_create_access_key", lambda d, c: d.request(
              d.tool, "iam:CreateAccessKey", f"arn:{PARTITION}:iam::{ACCOUNT}:user/admin", c)),
          ("iam_attach_role_policy", lambda d, c: d.request(
              d.tool, "iam:AttachRolePolicy", d.tool.arn, c)),
          ("iam_put_role_policy", lambda d, c: d.request(
              d.tool, "iam:PutRolePolicy", d.tool.arn, c)),
          ("iam_pass_role", lambda d, c: d.request(
              d.tool, "iam:PassRole", d.agent.arn, c)),
          ("kms_schedule_key_deletion", lambda d, c: d.request(
              d.tool, "kms:ScheduleKeyDeletion", d.data_key, c)),
          ("ec2_terminate_instances", lambda d, c: d.request(
              d.tool, "ec2:TerminateInstances",
              f"arn:{PARTITION}:ec2:{REGION}:{ACCOUNT}:instance/i-0123456789abcdef0", c)),
          ("cloudtrail_stop_logging", lambda d, c: d.request(
              d.tool, "cloudtrail:StopLogging",
              f"arn:{PARTITION}:cloudtrail:{REGION}:{ACCOUNT}:trail/audit", c)),
      )],
    # The boundary denies them too: even a tool role policy granting the delete cannot lift it.
    Case("mcp.destructive.boundary_denies_even_if_granted", "anthropic", EXPLICIT,
         lambda d: d.request(
             d.tool, "s3:DeleteObject", f"{d.docs_bucket}/docs/acme/x", VIA_AWS_MCP,
             identity_policies=[{"name": "GrantsDelete", "policy": _policy({
                 "Effect": "Allow", "Action": "s3:DeleteObject",
                 "Resource": f"{d.docs_bucket}/docs/*"})}]), MCP_DENY),
    # The same delete without MCP: denied because no tool grants it; with a tool that grants it
    # (a policy next to the boundary's own cap), allowed outside MCP and still denied through it.
    Case("mcp.without_mcp.s3_delete_own_object", "anthropic", IMPLICIT, lambda d: d.request(
        d.tool, "s3:DeleteObject", f"{d.docs_bucket}/docs/acme/x")),
    Case("mcp.without_mcp.delete_granted_by_own_tool", "anthropic", ALLOWED,
         lambda d: _with_delete_tool(d, {})),
    Case("mcp.via_mcp.delete_granted_by_own_tool", "anthropic", EXPLICIT,
         lambda d: _with_delete_tool(d, VIA_AWS_MCP), MCP_DENY),
    # Built-in tools: unchanged outside MCP, not reachable through MCP (only the allowlist is).
    Case("mcp.builtin.get_own_object_without_mcp", "anthropic", ALLOWED, lambda d: d.request(
        d.tool, "s3:GetObject", f"{d.docs_bucket}/docs/acme/x")),
    Case("mcp.builtin.get_own_object_via_mcp", "anthropic", IMPLICIT, lambda d: d.request(
        d.tool, "s3:GetObject", f"{d.docs_bucket}/docs/acme/x", VIA_AWS_MCP)),
    Case("mcp.builtin.put_own_note_via_mcp", "anthropic", IMPLICIT, lambda d: d.request(
        d.tool, "dynamodb:PutItem", d.notes_table,
        {"dynamodb:LeadingKeys": ["acme"], **VIA_AWS_MCP})),
    # Nobody outside the kit uses the tool role: not another role (even calling through MCP,
    # even one allowed everything), not the MCP service principal itself.
    Case("mcp.assume_tool.other_role_via_mcp", "anthropic", IMPLICIT,
         lambda d: _assume_via_mcp(d, d.assume_tool_role(
             caller_arn=f"arn:{PARTITION}:iam::{ACCOUNT}:role/SomeOtherRole", side="trust"))),
    Case("mcp.assume_tool.other_account_role", "anthropic", IMPLICIT,
         lambda d: d.assume_tool_role(
             caller_arn=f"arn:{PARTITION}:iam::210987654321:role/Agent", side="trust")),
    Case("mcp.assume_tool.agent_role_via_mcp", "anthropic", EXPLICIT,
         lambda d: _assume_via_mcp(d, d.assume_tool_role())),
    # -- Bedrock ---------------------------------------------------------------------------------
    Case("bedrock.geo.invoke_profile", "bedrock", ALLOWED, lambda d: d.request(
        d.agent, INVOKE, _profile_arn(GEO_PROFILE))),
    Case("bedrock.geo.invoke_profile_stream", "bedrock", ALLOWED, lambda d: d.request(
        d.agent, "bedrock:InvokeModelWithResponseStream", _profile_arn(GEO_PROFILE))),
    Case("bedrock.geo.invoke_profile_other_region", "bedrock", EXPLICIT, lambda d: d.request(
        d.agent, INVOKE, _profile_arn(GEO_PROFILE, "us-west-2"), region="us-west-2"),
         BEDROCK_OUTSIDE_REGIONS),
    Case("bedrock.unconfigured_profile", "bedrock", IMPLICIT, lambda d: d.request(
        d.agent, INVOKE, _profile_arn("us.anthropic.claude-opus-4-20250514-v1:0"))),
    Case("bedrock.geo.model_in_source_region_via_profile", "bedrock", ALLOWED, lambda d: d.request(
        d.agent, INVOKE, _model_arn(GEO_PROFILE, REGION),
        {"bedrock:InferenceProfileArn": _profile_arn(GEO_PROFILE)})),
    # A geographic profile's routed hop is authorized in the destination region
    # (aws:RequestedRegion = that region): the model there must be reachable via the profile.
    *[Case(f"bedrock.geo.model_routed_to_{region}_via_profile", "bedrock", ALLOWED,
           (lambda region: lambda d: d.request(
               d.agent, INVOKE, _model_arn(GEO_PROFILE, region),
               {"bedrock:InferenceProfileArn": _profile_arn(GEO_PROFILE)}, region=region))(region))
      for region in ("us-east-2", "us-west-2")],
    Case("bedrock.geo.model_direct", "bedrock", IMPLICIT, lambda d: d.request(
        d.agent, INVOKE, _model_arn(GEO_PROFILE, REGION))),
    Case("bedrock.geo.model_via_other_profile", "bedrock", IMPLICIT, lambda d: d.request(
        d.agent, INVOKE, _model_arn(GEO_PROFILE, REGION),
        {"bedrock:InferenceProfileArn": _profile_arn("us.anthropic.claude-other-v1:0")})),
    Case("bedrock.global.invoke_profile", "bedrock", ALLOWED, lambda d: d.request(
        d.agent, INVOKE, _profile_arn(GLOBAL_PROFILE))),
    Case("bedrock.global.model_in_source_region_via_profile", "bedrock", ALLOWED,
         lambda d: d.request(d.agent, INVOKE, _model_arn(GLOBAL_PROFILE, REGION),
                             {"bedrock:InferenceProfileArn": _profile_arn(GLOBAL_PROFILE)})),
    Case("bedrock.global.global_model_via_profile", "bedrock", ALLOWED,
         lambda d: _invoke_global_model(d, GLOBAL_PROFILE)),
    # explicit: "unspecified" is not a home region and no profile routed the call
    Case("bedrock.global.global_model_direct", "bedrock", EXPLICIT,
         lambda d: _invoke_global_model(d, None)),
    Case("bedrock.global.global_model_via_geo_profile", "bedrock", IMPLICIT,
         lambda d: _invoke_global_model(d, GEO_PROFILE)),
    Case("bedrock.no_api_key_secret_access", "bedrock", IMPLICIT, lambda d: d.request(
        d.agent, "secretsmanager:GetSecretValue",
        f"arn:{PARTITION}:secretsmanager:{REGION}:{ACCOUNT}:secret:any-AbCdEf",
        {"secretsmanager:VersionStage": "AWSCURRENT"})),
    Case("bedrock.tool.invoke_profile", "bedrock", IMPLICIT, lambda d: d.request(
        d.tool, INVOKE, _profile_arn(GEO_PROFILE))),
]


# -- agent role: the MCP quota leases and the deferred results table -----------------------
MCP_LEASE_KEYS = ["lease#mcp#aws#connections", "lease#mcp#aws#sessions"]

MCP_QUOTA_CASES: list[Case] = [
    *[Case(f"agent.leases.{verb}_{key.rsplit('#', 1)[1]}", "anthropic", ALLOWED,
           (lambda action, key: lambda d: d.request(
               d.agent, action, d.bucket_table, {"dynamodb:LeadingKeys": [key]}))(action, key))
      for key in MCP_LEASE_KEYS
      for verb, action in (("take_or_release", "dynamodb:UpdateItem"),
                           ("read_after_refusal", "dynamodb:GetItem"))],
    Case("agent.leases.other_semaphore", "anthropic", IMPLICIT, lambda d: d.request(
        d.agent, "dynamodb:UpdateItem", d.bucket_table,
        {"dynamodb:LeadingKeys": ["lease#mcp#other#connections"]})),
    Case("agent.leases.delete_semaphore", "anthropic", IMPLICIT, lambda d: d.request(
        d.agent, "dynamodb:DeleteItem", d.bucket_table,
        {"dynamodb:LeadingKeys": MCP_LEASE_KEYS[:1]})),
    Case("agent.leases.put_semaphore", "anthropic", IMPLICIT, lambda d: d.request(
        d.agent, "dynamodb:PutItem", d.bucket_table,
        {"dynamodb:LeadingKeys": MCP_LEASE_KEYS[:1]})),
    # the results table: only the configured tenants' keys ("<tenant>/<request id>")
    *[Case(f"agent.results.{name}", "anthropic", expect,
           (lambda action, key: lambda d: d.request(
               d.agent, action, d.results_table, {"dynamodb:LeadingKeys": [key]}))(action, key))
      for name, action, key, expect in (
          ("store_tenant_answer", "dynamodb:PutItem", "acme/r1", ALLOWED),
          ("read_tenant_answer", "dynamodb:GetItem", "globex/r1", ALLOWED),
          ("store_outside_tenants", "dynamodb:PutItem", "initech/r1", IMPLICIT),
          ("read_other_key", "dynamodb:GetItem", "batch-intent-1", IMPLICIT))],
]
CASES += MCP_QUOTA_CASES

#: the runaway breaker's role: the spend metrics, the limits item and its change records
RUNAWAY_CASES = [
    Case("runaway.limits.write_item", "anthropic", ALLOWED, lambda d: d.request(
        d.runaway, "dynamodb:PutItem", d.limits_table, {"dynamodb:LeadingKeys": ["limits"]})),
    Case("runaway.limits.write_change_record", "anthropic", ALLOWED, lambda d: d.request(
        d.runaway, "dynamodb:PutItem", d.limits_table,
        {"dynamodb:LeadingKeys": ["limits#change#2026-12-04T15:00:00.000000Z#ab12cd34"]})),
    Case("runaway.limits.other_item", "anthropic", IMPLICIT, lambda d: d.request(
        d.runaway, "dynamodb:PutItem", d.limits_table, {"dynamodb:LeadingKeys": ["other"]})),
    Case("runaway.limits.delete_change_record", "anthropic", IMPLICIT, lambda d: d.request(
        d.runaway, "dynamodb:DeleteItem", d.limits_table,
        {"dynamodb:LeadingKeys": ["limits#change#2026-12-04T15:00:00.000000Z#ab12cd34"]})),
    Case("runaway.bucket.write", "anthropic", IMPLICIT, lambda d: d.request(
        d.runaway, "dynamodb:UpdateItem", d.bucket_table,
        {"dynamodb:LeadingKeys": ["anthropic#sonnet-4"]})),
    Case("runaway.metrics.read", "anthropic", ALLOWED, lambda d: d.request(
        d.runaway, "cloudwatch:GetMetricData", "*")),
    Case("runaway.metrics.put", "anthropic", IMPLICIT, lambda d: d.request(
        d.runaway, "cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "Bulwark"})),
    Case("runaway.metrics.other_region", "anthropic", EXPLICIT, lambda d: d.request(
        d.runaway, "cloudwatch:GetMetricData", "*", region=OTHER_REGION),
        denied_by=OUTSIDE_REGIONS),
]
CASES += RUNAWAY_CASES


# -- fixtures: two synths, one simulator run -------------------------------------------------

@pytest.fixture(scope="module")
def deployments(tmp_path_factory, dev) -> dict[str, Deployment]:
    from tests.infra.conftest import reuse_assets  # the dev synth's bundled asset, not again

    return {"anthropic": Deployment(ANTHROPIC_CONTEXT,
                                    reuse_assets(dev, tmp_path_factory.mktemp("iam-a"))),
            "bedrock": Deployment(BEDROCK_CONTEXT,
                                  reuse_assets(dev, tmp_path_factory.mktemp("iam-b")))}


def simulate(requests: dict[str, dict]) -> dict[str, dict]:
    """Evaluate every request in one Node process; results by case id."""
    node = shutil.which("node")
    if node is None or not SIMULATOR_PACKAGE.is_dir():
        pytest.fail("the IAM access matrix needs Node and @cloud-copilot/iam-simulate: run "
                    "`npm ci` in the repository root (make setup does)")
    payload = {"cases": [{"id": case_id, **request} for case_id, request in requests.items()]}
    done = subprocess.run([node, str(SIMULATOR)], input=json.dumps(payload), text=True,
                          capture_output=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, f"iam_simulate.mjs failed:\n{done.stderr}"
    return {result["id"]: result for result in json.loads(done.stdout)["results"]}


@pytest.fixture(scope="module")
def matrix(deployments) -> dict[str, tuple[dict, dict]]:
    requests = {case.id: case.build(deployments[case.app]) for case in CASES}
    results = simulate(requests)
    return {case_id: (requests[case_id], results[case_id]) for case_id in requests}


def test_case_ids_are_unique():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))


def test_every_policy_was_resolved(deployments):
    """No CloudFormation intrinsic is left in a document handed to the evaluator."""
    for deployment in deployments.values():
        for role in (deployment.agent, deployment.tool,
                     *(getattr(deployment, r) for r in ("collector", "poller")
                       if hasattr(deployment, r))):
            text = json.dumps([role.identity_policies, role.boundaries, role.trust])
            assert '"Fn::' not in text and '"Ref"' not in text
            assert role.boundaries, f"{role.arn} has no permissions boundary"


def test_the_state_read_case_lists_what_the_bucket_projects():
    """The read_state case asks for exactly the attributes the bucket's GetItem projects."""
    from guard import Limits, TenantShare, TokenBucket

    class Recorder:
        def get_item(self, **request):
            self.request = request
            return {}

    store = Recorder()
    bucket = TokenBucket("bucket-table", "anthropic#sonnet-4",
                         Limits(rpm=50, tenants={"acme": TenantShare()}), store)
    assert bucket.cool_down_until() == 0.0
    names = store.request["ExpressionAttributeNames"]
    projected = [names[part.strip()] for part in store.request["ProjectionExpression"].split(",")]
    assert sorted(projected) == sorted(BUCKET_STATE_READ)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_access(matrix, case: Case):
    request, result = matrix[case.id]
    errors = [a for a in result["actions"] if a["result"] == "Error"]
    assert not errors, f"simulation input rejected: {json.dumps(errors, indent=1)}"
    # A context key the evaluator dropped as not applicable to the action would make the case
    # test something other than what it says.
    ignored = {key for a in result["actions"] for key in a["ignoredContextKeys"]}
    assert not ignored, f"context keys not applicable to the request: {sorted(ignored)}"
    detail = {a["action"]: [a["result"], *a.get("explicitDenies", [])]
              for a in result["actions"]}
    assert result["result"] == case.expect, (
        f"{case.id}: expected {case.expect}, got {result['result']} {detail}; request "
        f"context: {json.dumps(request['context'])}")
    if case.denied_by:
        # Which Deny matched, where the validated run reports it (the fallback runs do not).
        denies = [a["explicitDenies"] for a in result["actions"] if "explicitDenies" in a]
        assert denies and all(any(sid.endswith(f"/{case.denied_by}") for sid in found)
                              for found in denies), detail
