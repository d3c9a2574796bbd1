"""The types a tool is made of: the resources it acts on, the IAM it needs, the context it runs
with, and the results it returns for refused input and AWS errors.

Permissions are ARN templates. `${Partition}`, `${Region}`, `${Account}`, `${DocsBucket}`,
`${DocsPrefix}`, `${NotesTable}` and the names of the resources a tool declares in `needs`
(`ToolTable`, `ToolPrefix`: the stack creates them) are substituted when the policy is built
(`substitute`); IAM policy variables such as `${aws:PrincipalTag/tenant}` are kept for IAM to
resolve per request.

The tool modules (`documents`, `notes`) build on these types, and `registry` collects the tools,
so this module imports neither.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from botocore.exceptions import BotoCoreError, ClientError

from ..contract import TENANT_PATTERN

#: The names this module exports: the package's types and helpers, listed once here
#: (`agent.tools.registry` and the package re-export them from this list).
__all__ = [
    "ACCESS_DENIED_CODES", "AWS_ERRORS", "PLACEHOLDERS", "Tool", "ToolContext", "ToolNeed",
    "ToolPermission", "ToolPrefix", "ToolResources", "ToolTable", "aws_error_result",
    "invalid_input_result", "substitute",
]

#: Template placeholders `tool_role_statements` substitutes; anything else of the form
#: `${service:key}` is an IAM policy variable and is left for IAM.
PLACEHOLDERS = ("Partition", "Region", "Account", "DocsBucket", "DocsPrefix", "NotesTable")
_PLACEHOLDER_RE = re.compile(r"\$\{([^}]*)\}")
_SID_RE = re.compile(r"^[A-Za-z0-9]+$")
_ACTION_RE = re.compile(r"^[a-z0-9-]+:[A-Za-z0-9]+$")


#: SDK exceptions a tool turns into a result with `aws_error_result` instead of raising.
AWS_ERRORS = (ClientError, BotoCoreError)

#: AWS error codes that mean "IAM (or a resource policy) refused this call".
ACCESS_DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException",
                                 "UnauthorizedOperation"})



@dataclass(frozen=True)
class ToolResources:
    """Physical names the tools act on, from the Lambda environment.

    `docs_bucket`: S3 bucket holding tenant documents. `docs_prefix`: "" or a prefix ending in
    "/" (e.g. "docs/"); a tenant's documents live under f"{docs_prefix}{tenant}/".
    `notes_table`: DynamoDB table with partition key "tenant" (S) and sort key "note_id" (S).
    Values may be CDK tokens when the CDK app builds the policy before the resources exist.
    """

    docs_bucket: str
    docs_prefix: str
    notes_table: str
    #: resources tools declared (`Tool.needs`): placeholder name -> physical name or prefix
    named: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("docs_bucket", "notes_table"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"ToolResources.{name} must be a non-empty string")
        if not isinstance(self.docs_prefix, str):
            raise ValueError("ToolResources.docs_prefix must be a string")
        if self.docs_prefix and not self.docs_prefix.endswith("/"):
            raise ValueError(f"ToolResources.docs_prefix={self.docs_prefix!r} must be empty or "
                             "end with '/'")
        for name in ("docs_bucket", "docs_prefix", "notes_table"):
            # A wildcard in a name would widen every grant built from it.
            if any(char in getattr(self, name) for char in "*?"):
                raise ValueError(f"ToolResources.{name} must not contain '*' or '?'")

    def __getitem__(self, name: str) -> str:
        """The physical name of a declared resource (`ctx.resources["CatalogTable"]`)."""
        return self.named[name]


_NEED_NAME = re.compile(r"^[A-Z][A-Za-z0-9]{2,63}$")


@dataclass(frozen=True)
class ToolNeed:
    """A resource a tool needs that the kit does not create otherwise (see `ToolTable`,
    `ToolPrefix`). `name` is its placeholder in the tool's ARN templates and its key in
    `ctx.resources`; the function receives it in the variable `env`."""

    name: str  # CamelCase, e.g. "CatalogTable"

    def __post_init__(self) -> None:
        if not _NEED_NAME.match(self.name) or self.name in PLACEHOLDERS:
            raise ValueError(f"{type(self).__name__} name {self.name!r} must be CamelCase and "
                             f"not one of {', '.join(PLACEHOLDERS)}")

    @property
    def env(self) -> str:
        """The Lambda variable holding its value ("CatalogTable" -> "CATALOG_TABLE")."""
        return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", self.name).upper()


@dataclass(frozen=True)
class ToolTable(ToolNeed):
    """A DynamoDB table. The stack creates it like the kit's own (on demand, the kit's KMS key,
    point-in-time recovery, retained and deletion-protected in prod, CloudTrail data events)
    and passes its name. Key the partition by tenant and condition the grant on
    `dynamodb:LeadingKeys` = `${aws:PrincipalTag/tenant}`."""

    partition_key: str = "tenant"
    sort_key: str | None = None


@dataclass(frozen=True)
class ToolPrefix(ToolNeed):
    """A prefix in the documents bucket (its value, e.g. "reports/"); put
    `${aws:PrincipalTag/tenant}/` after it in the ARN templates to keep tenants apart."""

    prefix: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not re.match(r"^[a-z0-9][a-z0-9_-]*/$", self.prefix):
            raise ValueError(f"ToolPrefix {self.name}: prefix {self.prefix!r} must look like "
                             "'reports/'")



@dataclass(frozen=True)
class ToolPermission:
    """One IAM statement's worth of permission a tool needs.

    `actions`: exact IAM actions (never a wildcard). `resources`: ARN templates (see module
    docstring for placeholders). `conditions`: the IAM Condition block ({} when none).
    `why`: one line saying what the condition keys prevent. Tools may share a `sid` when they
    act on the same resources under the same conditions; their actions are merged.
    """

    sid: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    conditions: dict
    why: str

    def __post_init__(self) -> None:
        if not _SID_RE.match(self.sid):
            raise ValueError(f"ToolPermission sid {self.sid!r} must be alphanumeric")
        if not self.actions:
            raise ValueError(f"ToolPermission {self.sid}: no actions")
        for action in self.actions:
            if not _ACTION_RE.match(action):
                raise ValueError(f"ToolPermission {self.sid}: action {action!r} must be one "
                                 "exact 'service:Action' (no wildcards)")
        if not self.resources:
            raise ValueError(f"ToolPermission {self.sid}: no resources")
        for resource in self.resources:
            if resource == "*" or not resource.startswith("arn:"):
                raise ValueError(f"ToolPermission {self.sid}: resource {resource!r} must be an "
                                 "ARN template")
        if not self.why.strip():
            raise ValueError(f"ToolPermission {self.sid}: say why (what the conditions prevent)")


    def check_placeholders(self, needs: Iterable[ToolNeed]) -> None:
        known = [*PLACEHOLDERS, *(need.name for need in needs)]
        for template in _strings(self.resources, self.conditions):
            for name in _PLACEHOLDER_RE.findall(template):
                if name not in known and ":" not in name:
                    raise ValueError(f"ToolPermission {self.sid}: unknown placeholder "
                                     f"${{{name}}} (known: {', '.join(known)}, or an "
                                     "IAM policy variable such as ${aws:PrincipalTag/tenant}; "
                                     "a new resource: declare it in the tool's needs)")


@dataclass
class ToolContext:
    """What a tool call runs with.

    `session`: a boto3.Session holding the TOOL ROLE's credentials (tagged with the tenant).
    `tenant`, `request_id`: whose request this is. `resources`: physical names.
    `endpoint_url`: AWS endpoint override (None: the SDK's default, which honours
    AWS_ENDPOINT_URL). `clock`: epoch seconds, for timestamps the tools write.
    Clients are created once per context and reused across its tool calls.
    """

    session: Any = field(repr=False)
    tenant: str
    request_id: str
    resources: ToolResources
    endpoint_url: str | None = None
    clock: Callable[[], float] = field(default=time.time, repr=False)
    _clients: dict[str, Any] = field(default_factory=dict, init=False, repr=False,
                                     compare=False)

    def __post_init__(self) -> None:
        # The tenant becomes an S3 prefix segment and a partition key: validate it once here.
        if not isinstance(self.tenant, str) or not TENANT_PATTERN.match(self.tenant):
            raise ValueError(f"tenant {self.tenant!r} must be 1-63 chars of [a-z0-9-] "
                             "starting with a letter or digit")

    def client(self, service_name: str) -> Any:
        """A boto3 client from the tool role's session (standard retries, timeouts in s)."""
        client = self._clients.get(service_name)
        if client is None:
            from botocore.config import Config

            config = Config(retries={"mode": "standard", "max_attempts": 3},
                            connect_timeout=5, read_timeout=15)
            client = self.session.client(service_name, endpoint_url=self.endpoint_url,
                                         config=config)
            self._clients[service_name] = client
        return client


@dataclass(frozen=True)
class Tool:
    """A tool Claude may call.

    `input_schema`: JSON Schema of the input (checked by `validate_tool_input`).
    `run(ctx, input) -> dict`: JSON-able result; AWS errors become {"error": ...} results.
    `target(ctx, input) -> str`: the AWS resource acted on, for audit lines.
    `needs`: resources the kit does not create otherwise (`ToolTable`, `ToolPrefix`); the
    stack creates them, and their names are placeholders in `permissions` and
    `ctx.resources[name]` at run time. Placeholders are checked here: each is a kit resource
    (PLACEHOLDERS), one of `needs`, or an IAM policy variable.
    """

    name: str
    description: str
    input_schema: dict
    permissions: tuple[ToolPermission, ...]
    run: Callable[[ToolContext, dict], dict]
    target: Callable[[ToolContext, dict], str]
    needs: tuple[ToolNeed, ...] = ()

    def __post_init__(self) -> None:
        for permission in self.permissions:
            permission.check_placeholders(self.needs)


# -- results shared by the tools ------------------------------------------------------------------

def invalid_input_result(message: str) -> dict:
    """Result for input the tool refused before any AWS call."""
    return {"error": message, "invalid_input": True}


def aws_error_result(exc: Exception) -> dict:
    """Map an AWS SDK error to a tool result (tools never raise for AWS errors).

    AccessDenied/AccessDeniedException/UnauthorizedOperation -> {"error": "access denied",
    "denied": True}; NoSuchKey -> {"error": "not found"}; any other service error -> its code;
    an SDK error without a response (connection, timeout) -> its class name.
    """
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code") or "ClientError"
        if code in ACCESS_DENIED_CODES:
            return {"error": "access denied", "denied": True}
        if code in ("NoSuchKey", "NotFound", "404"):
            return {"error": "not found"}
        return {"error": code}
    return {"error": type(exc).__name__}


def substitute(template: Any, values: Mapping[str, str]) -> Any:
    """`template` (a string, or dicts/lists/tuples of them) with every `${Name}` of `values`
    replaced by its value; other placeholders (IAM policy variables) are kept."""
    if isinstance(template, str):
        for name, value in values.items():
            template = template.replace("${" + name + "}", value)
        return template
    if isinstance(template, dict):
        return {key: substitute(item, values) for key, item in template.items()}
    if isinstance(template, (list, tuple)):
        return [substitute(item, values) for item in template]
    return template


def _strings(*templates: Any) -> Iterable[str]:
    for template in templates:
        if isinstance(template, str):
            yield template
        elif isinstance(template, dict):
            yield from _strings(*template.keys(), *template.values())
        elif isinstance(template, (list, tuple)):
            yield from _strings(*template)

