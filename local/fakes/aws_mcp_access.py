"""Who calls the local AWS MCP stand-in and what it may do: the SigV4 signature of each HTTP
request (service `aws-mcp`, credentials local AWS issued) and the caller's effective policies,
evaluated with `local/fakes/iam_simulate.mjs` (the evaluator the infra tests use) with the MCP
context keys the real server's calls carry."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
SIMULATOR = Path(__file__).resolve().parent / "iam_simulate.mjs"
SERVICE = "aws-mcp"
PRINCIPAL = "aws-mcp.amazonaws.com"
#: S3's IAM actions are not its operation names.
S3_ACTIONS = {"list_objects_v2": "s3:ListBucket", "list_objects": "s3:ListBucket",
              "get_object": "s3:GetObject", "put_object": "s3:PutObject",
              "delete_object": "s3:DeleteObject", "delete_bucket": "s3:DeleteBucket",
              "head_object": "s3:GetObject"}


# -- IAM: what the caller may do -------------------------------------------------------------

class Evaluator:
    """The caller's effective policies from local IAM, evaluated with iam-simulate."""

    def __init__(self, aws_endpoint: str, region: str) -> None:
        self.aws_endpoint, self.region = aws_endpoint, region
        self.decisions: list[dict] = []
        self._lock = threading.Lock()

    def admin(self, service: str):
        import boto3

        return boto3.client(service, endpoint_url=self.aws_endpoint, region_name=self.region,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def policies(self, role_arn: str) -> tuple[list[dict], list[dict]]:
        iam = self.admin("iam")
        name = role_arn.rsplit("/", 1)[1]
        identity = []
        for policy_name in iam.list_role_policies(RoleName=name)["PolicyNames"]:
            document = iam.get_role_policy(RoleName=name, PolicyName=policy_name)["PolicyDocument"]
            identity.append({"name": policy_name, "policy": _document(document)})
        for attached in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
            identity.append({"name": attached["PolicyName"],
                             "policy": self._managed(iam, attached["PolicyArn"])})
        boundary = iam.get_role(RoleName=name)["Role"].get("PermissionsBoundary", {})
        boundaries = ([{"name": "PermissionsBoundary",
                        "policy": self._managed(iam, boundary["PermissionsBoundaryArn"])}]
                      if boundary.get("PermissionsBoundaryArn") else [])
        return identity, boundaries

    @staticmethod
    def _managed(iam, arn: str) -> dict:
        version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
        return _document(iam.get_policy_version(PolicyArn=arn, VersionId=version)
                         ["PolicyVersion"]["Document"])

    def decide(self, session: dict, action: str, resource: str, extra: dict) -> str:
        identity, boundaries = self.policies(session["role_arn"])
        account = session["role_arn"].split(":")[4]
        context = {"aws:ViaAWSMCPService": "true", "aws:CalledViaAWSMCP": PRINCIPAL,
                   "aws:RequestedRegion": self.region, "aws:PrincipalArn": session["role_arn"],
                   "aws:PrincipalAccount": account, "aws:PrincipalType": "AssumedRole",
                   "aws:SecureTransport": "true", **extra}
        for key, value in session.get("tags", {}).items():
            context[f"aws:PrincipalTag/{key}"] = value
        if session.get("source_identity"):
            context["aws:SourceIdentity"] = session["source_identity"]
        case = {"id": "call", "principal": session.get("session_arn") or session["role_arn"],
                "actions": [action], "resource": resource, "accountId": account,
                "context": context, "identityPolicies": identity,
                "permissionBoundaries": boundaries or None, "resourcePolicy": None}
        result = simulate([case])["call"]["result"]
        with self._lock:
            self.decisions.append({"access_key": session.get("access_key"),
                                   "source_identity": session.get("source_identity"),
                                   "tenant": session.get("tags", {}).get("tenant"),
                                   "action": action, "resource": resource, "result": result})
        return result


def _document(document: Any) -> dict:
    if isinstance(document, str):
        from urllib.parse import unquote

        document = json.loads(unquote(document))
    return document


def simulate(cases: list[dict]) -> dict[str, dict]:
    """Evaluate cases with local/fakes/iam_simulate.mjs (one Node process)."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("the local AWS MCP Server needs Node and npm ci (make setup)")
    done = subprocess.run([node, str(SIMULATOR)], input=json.dumps({"cases": cases}),
                          text=True, capture_output=True, cwd=REPO_ROOT, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"iam_simulate.mjs failed: {done.stderr[-500:]}")
    return {r["id"]: r for r in json.loads(done.stdout)["results"]}


def target(service: str, operation: str, params: dict, region: str, account: str
           ) -> tuple[str, str, dict]:
    """(IAM action, resource ARN, action-specific context keys) of one AWS call."""
    import botocore.session

    if service == "s3":
        action = S3_ACTIONS.get(operation)
        if action is None:
            raise ValueError(f"s3.{operation} is not supported by the stand-in")
        bucket, key = params.get("Bucket", ""), params.get("Key")
        resource = f"arn:aws:s3:::{bucket}" + (f"/{key}" if key is not None else "")
        extra = {"s3:prefix": params["Prefix"]} if action == "s3:ListBucket" and \
            "Prefix" in params else {}
        return action, resource, extra
    model = botocore.session.get_session().get_service_model(service)
    names = {re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower().replace("v_2", "v2"): name
             for name in model.operation_names}
    if operation not in names:
        raise ValueError(f"{service}.{operation} is not an operation of {service}")
    action = f"{model.signing_name if service != 'sqs' else 'sqs'}:{names[operation]}"
    extra: dict = {}
    if service == "sqs" and "QueueUrl" in params:
        account_id, name = params["QueueUrl"].rstrip("/").split("/")[-2:]
        resource = f"arn:aws:sqs:{region}:{account_id}:{name}"
    elif service == "dynamodb" and "TableName" in params:
        resource = f"arn:aws:dynamodb:{region}:{account}:table/{params['TableName']}"
        item = params.get("Key") or params.get("Item")
        if isinstance(item, dict) and item:
            first = next(iter(item.values()))
            extra["dynamodb:LeadingKeys"] = [next(iter(first.values()))]
    elif service == "iam" and "UserName" in params:
        resource = f"arn:aws:iam::{account}:user/{params['UserName']}"
    elif service == "iam" and "RoleName" in params:
        resource = f"arn:aws:iam::{account}:role/{params['RoleName']}"
    elif service == "kms" and "KeyId" in params:
        key = params["KeyId"]
        resource = key if key.startswith("arn:") else f"arn:aws:kms:{region}:{account}:key/{key}"
    else:
        resource = "*"
    return action, resource, extra


# -- SigV4 ------------------------------------------------------------------------------------

_AUTH = re.compile(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request,"
                   r"\s*SignedHeaders=([^,]+),\s*Signature=([0-9a-f]{64})")


def signed_access_key(authorization: str) -> str:
    """The access key a SigV4 `Authorization` header names ("" when it is not one)."""
    match = _AUTH.match(authorization or "")
    return match.group(1) if match else ""


def verify_sigv4(method: str, url: str, headers: dict[str, str], body: bytes,
                 secret_for: Any, region: str) -> tuple[str | None, str]:
    """(access key, "") when `headers` carry a valid SigV4 signature for service aws-mcp,
    else (None, why)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    match = _AUTH.match(headers.get("authorization", ""))
    if not match:
        return None, "missing or malformed SigV4 Authorization header"
    access_key, _date, signed_region, service, signed_headers, signature = match.groups()
    if service != SERVICE:
        return None, f"signed for service {service!r}, expected {SERVICE!r}"
    if signed_region != region:
        return None, f"signed for region {signed_region!r}, expected {region!r}"
    names = signed_headers.split(";")
    if "host" not in names or "x-amz-date" not in names:
        return None, "host and x-amz-date must be signed"
    secret = secret_for(access_key)
    if secret is None:
        return None, f"unknown access key {access_key}"
    request = AWSRequest(method=method, url=url, data=body,
                         headers={name: headers.get(name, "") for name in names})
    request.context["timestamp"] = headers["x-amz-date"]
    auth = SigV4Auth(Credentials(access_key, secret, headers.get("x-amz-security-token")),
                     SERVICE, region)
    expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)),
                              request)
    if expected != signature:
        return None, "signature does not match"
    return access_key, ""
