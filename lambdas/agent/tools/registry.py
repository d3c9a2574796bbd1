"""Tool registry: what each tool does, what input it takes and the IAM it needs.

Each `Tool` carries its own `ToolPermission`s. The CDK app builds the tool role's policy from
`tool_role_statements(...)` and the agent loop sends `claude_tool_definitions(...)` to Claude,
so adding a tool changes its schema, its code and its policy in one place.

Permissions are ARN templates. `${Partition}`, `${Region}`, `${Account}`, `${DocsBucket}`,
`${DocsPrefix}`, `${NotesTable}` and the names of the resources a tool declares in `needs`
(`ToolTable`, `ToolPrefix`: the stack creates them) are substituted when the policy is built;
IAM policy variables such as `${aws:PrincipalTag/tenant}` are kept for IAM to resolve per
request, from the session tags `credentials.assume_tool_role` sets. That is attribute-based
access control: one role serves every tenant, and the tenant tag of the session decides which
S3 prefix and which DynamoDB partition it can reach.

Runtime code here has no Lambda specifics: the boto3 session and the clock are injected
through `ToolContext`.
"""

from __future__ import annotations

import copy
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from botocore.exceptions import BotoCoreError, ClientError

from ..contract import TENANT_PATTERN

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


def needs_from_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """Placeholder -> physical name of every declared resource, from the Lambda variables."""
    found, missing = {}, []
    for need in declared_needs():
        value = environ.get(need.env, "").strip()
        (found.__setitem__(need.name, value) if value else missing.append(need.env))
    if missing:
        raise ValueError(f"{', '.join(missing)} not set: resources the tools declare")
    return found


def declared_needs(tools: Iterable["Tool"] | None = None) -> list[ToolNeed]:
    """Every resource the (registered) tools declare, once each; a name declared twice in two
    forms is an error."""
    needs: dict[str, ToolNeed] = {}
    for tool in TOOLS.values() if tools is None else tools:
        for need in tool.needs:
            if needs.setdefault(need.name, need) != need:
                raise ValueError(f"resource {need.name!r} is declared twice, differently")
    return list(needs.values())


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


# -- input validation ---------------------------------------------------------------------------

_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda value: isinstance(value, str),
    "integer": lambda value: isinstance(value, int) and not isinstance(value, bool),
    "boolean": lambda value: isinstance(value, bool),
    "object": lambda value: isinstance(value, dict),
}


def validate_tool_input(tool: Tool, tool_input: Any) -> str | None:
    """Check `tool_input` against the tool's schema; a message naming the problem, or None.

    Supports the subset the tools use: top-level "object" with "required",
    "additionalProperties": false, and per-property "type" (string, integer, boolean,
    object), "minLength", "maxLength" (characters) and "pattern" (regular expression search).
    """
    return _check(tool.input_schema, tool_input, "input")


def _check(schema: Mapping[str, Any], value: Any, where: str) -> str | None:
    expected = schema.get("type")
    if expected is not None:
        is_type = _JSON_TYPES.get(expected)
        if is_type is None:
            return f"{where}: schema type {expected!r} is not supported"
        if not is_type(value):
            return f"{where} must be of type {expected}, got {_json_type_name(value)}"
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            return f"{where} must be at least {schema['minLength']} characters"
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return (f"{where} is {len(value)} characters; the limit is "
                    f"{schema['maxLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return f"{where} must match {schema['pattern']}"
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key in schema.get("required", ()):
            if key not in value:
                return f"{where}: missing required field {key!r}"
        if schema.get("additionalProperties") is False:
            for key in value:
                if key not in properties:
                    return f"{where}: unexpected field {key!r}"
        for key, sub_schema in properties.items():
            if key in value:
                problem = _check(sub_schema, value[key], f"field {key!r}")
                if problem:
                    return problem
    return None


def _json_type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


# -- what Claude sees, what IAM grants ------------------------------------------------------------

def _select(names: Iterable[str] | None) -> list[Tool]:
    if names is None:
        return list(TOOLS.values())
    names = list(names)
    unknown = [name for name in names if name not in TOOLS]
    if unknown:
        raise KeyError(f"unknown tool(s) {', '.join(map(repr, unknown))}; registered: "
                       f"{', '.join(TOOLS)}")
    return [TOOLS[name] for name in dict.fromkeys(names)]


def claude_tool_definitions(names: Iterable[str] | None = None) -> list[dict]:
    """The Messages API `tools` parameter for the named tools (all when None), in order.

    The last definition carries `cache_control: {"type": "ephemeral"}`, which caches the whole
    tool block as a prompt-cache prefix (tools come first in the cached prefix).
    """
    definitions = [{"name": tool.name, "description": tool.description,
                    "input_schema": copy.deepcopy(tool.input_schema)}
                   for tool in _select(names)]
    if definitions:
        definitions[-1]["cache_control"] = {"type": "ephemeral"}
    return definitions


def tool_role_statements(partition: str, region: str, account: str,
                         resources: ToolResources,
                         names: Iterable[str] | None = None) -> list[dict]:
    """IAM policy statements for the tool role, for the named tools (all when None).

    Placeholders are substituted with the given values (strings or CDK tokens); IAM policy
    variables such as `${aws:PrincipalTag/tenant}` are kept. Permissions sharing a Sid (same
    resources and conditions) become one statement with the union of their actions.
    Each statement: Sid, Effect "Allow", Action (sorted list), Resource (list), and Condition
    when the permission has one.
    """
    values = {"Partition": partition, "Region": region, "Account": account,
              "DocsBucket": resources.docs_bucket, "DocsPrefix": resources.docs_prefix,
              "NotesTable": resources.notes_table, **resources.named}
    statements: dict[str, dict] = {}
    for tool in _select(names):
        for permission in tool.permissions:
            resource_list = [_substitute(template, values) for template in permission.resources]
            condition = _substitute(permission.conditions, values)
            existing = statements.get(permission.sid)
            if existing is None:
                statement = {"Sid": permission.sid, "Effect": "Allow",
                             "Action": sorted(set(permission.actions)),
                             "Resource": resource_list}
                if condition:
                    statement["Condition"] = condition
                statements[permission.sid] = statement
                continue
            if existing["Resource"] != resource_list or existing.get("Condition") != (
                    condition or None):
                raise ValueError(f"Sid {permission.sid!r} is declared twice with different "
                                 "resources or conditions; give one of them its own Sid")
            existing["Action"] = sorted(set(existing["Action"]) | set(permission.actions))
    return list(statements.values())


def _substitute(template: Any, values: Mapping[str, str]) -> Any:
    if isinstance(template, str):
        for name, value in values.items():
            template = template.replace("${" + name + "}", value)
        return template
    if isinstance(template, dict):
        return {key: _substitute(item, values) for key, item in template.items()}
    if isinstance(template, (list, tuple)):
        return [_substitute(item, values) for item in template]
    return template


def _strings(*templates: Any) -> Iterable[str]:
    for template in templates:
        if isinstance(template, str):
            yield template
        elif isinstance(template, dict):
            yield from _strings(*template.keys(), *template.values())
        elif isinstance(template, (list, tuple)):
            yield from _strings(*template)


# -- the registry -------------------------------------------------------------------------------

def _register(*tools: Tool) -> dict[str, Tool]:
    registry: dict[str, Tool] = {}
    for tool in tools:
        if tool.name in registry:
            raise ValueError(f"tool {tool.name!r} is registered twice")
        registry[tool.name] = tool
    return registry


# The tool modules import the types above, so they load after them (the package imports this
# module first, whichever tool module is imported).
from . import documents, notes  # noqa: E402

#: Every tool the agent may call, by name.
TOOLS: dict[str, Tool] = _register(*documents.TOOLS, *notes.TOOLS)
