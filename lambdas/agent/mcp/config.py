"""MCP tool sources: the one definition both the CDK app (cdk.json `mcp`) and the agent Lambda
(`MCP_SERVERS`) read. Nothing here imports the MCP SDK: offering MCP tools to Claude costs a
JSON parse at init, no network call and no import.

cdk.json:

    "mcp": {
      "servers": {
        "aws": {
          "url": "https://aws-mcp.us-east-1.api.aws/mcp",
          "auth": {"type": "sigv4", "service": "aws-mcp", "region": "us-east-1"},
          "requests_per_second": 2, "max_connections": 20, "max_sessions": 80,
          "tools": {"aws___run_script": {"description": "...", "input_schema": {...}}}
        }
      },
      "allow": [{"sid": "...", "actions": [...], "resources": [...], "conditions": {...}}],
      "deny_actions": ["extra:Action*"]
    }

Quota keys (per server, shared by every container through the bucket table; see docs/mcp.md, "AWS
MCP Server quotas"): `requests_per_second` (default 2: HTTP requests of any method, the share
of the account's quota this deployment takes), `burst` (requests sent at once, default 1),
`max_connections` (concurrent HTTP exchanges, default 20), `max_sessions` (concurrently open
MCP sessions, default 80), `session_lease_s` (seconds a session's lease lasts when its holder
never releases it, default 900), `max_wait_s` (seconds a tool call may wait for any of them,
default 30). For the AWS MCP Server (SigV4 service `aws-mcp`) the values must stay within
its published quotas that cannot be raised: 3 requests/s and 27 connections per account and
Region.

`auth` is `{"type": "sigv4", "service", "region"}` (signed with the request's tool-role
credentials) or `{"type": "bearer", "secret_arn"}` (a token from Secrets Manager, JSON
`{"token": ...}` or plain). `allow` is the IAM allowlist of what the agent may do through
the AWS MCP Server (see `policies/mcp.py`); `deny_actions` adds patterns to the destructive
actions denied through any AWS-managed MCP server.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from agent.contract import ARN_PATTERN, REGION_PATTERN
from guard.leases import MAX_LIMIT, MAX_TTL_S, lease_key
from guard.values import BadValue, read_number

#: Claude tool names: letters, digits, "_" and "-", at most 64.
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SERVER_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
_SID = re.compile(r"^[A-Za-z0-9]{1,64}$")
_ACTION = re.compile(r"^[a-z0-9-]+:[A-Za-z0-9]+$")
_ACTION_PATTERN = re.compile(r"^[a-z0-9-]+:[A-Za-z0-9*?]+$")
_SERVICE = re.compile(r"^[a-z0-9-]{2,32}$")
#: The AWS MCP Server's published quotas per account and Region ("Quotas for AWS MCP Server",
#: Agent Toolkit user guide): requests/s sustained and concurrent connections (neither can be
#: raised), concurrent active sessions per account and per IAM user or role (adjustable).
AWS_MCP_SERVICE = "aws-mcp"
AWS_MCP_REQUESTS_PER_SECOND = 3
AWS_MCP_CONNECTIONS = 27
AWS_MCP_SESSIONS_PER_ACCOUNT = 180
AWS_MCP_SESSIONS_PER_ROLE = 90
#: Defaults: two thirds of the request quota and 20 of the 27 connections (the rest is
#: headroom for other users of the account); sessions within the per-role cap, which every
#: session binds since all sign with the one tool role.
DEFAULT_REQUESTS_PER_SECOND = 2.0
DEFAULT_BURST = 1
DEFAULT_MAX_CONNECTIONS = 20
DEFAULT_MAX_SESSIONS = 80
#: A session's lease (seconds): the longest a Lambda invocation runs, so a container that
#: crashed mid-request frees its session slot no later than its invocation would have ended.
DEFAULT_SESSION_LEASE_S = 900.0
#: Seconds a tool call may wait for the request budget, a connection or a session.
DEFAULT_MAX_WAIT_S = 30.0
#: Longest tool result (characters of JSON) handed back to Claude; the rest is cut off.
DEFAULT_MAX_RESULT_CHARS = 20_000


class McpConfigError(ValueError):
    """An MCP setting is missing or malformed; the message names it."""


@dataclass(frozen=True)
class McpTool:
    """A tool offered to Claude as configured (name, description, input schema)."""

    name: str
    description: str
    input_schema: dict

    def definition(self) -> dict:
        return {"name": self.name, "description": self.description,
                "input_schema": json.loads(json.dumps(self.input_schema))}


@dataclass(frozen=True)
class McpServer:
    name: str
    url: str
    auth: dict
    tools: dict[str, McpTool]
    requests_per_second: float = DEFAULT_REQUESTS_PER_SECOND
    burst: int = DEFAULT_BURST
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_sessions: int = DEFAULT_MAX_SESSIONS
    session_lease_s: float = DEFAULT_SESSION_LEASE_S
    max_wait_s: float = DEFAULT_MAX_WAIT_S
    max_result_chars: int = DEFAULT_MAX_RESULT_CHARS

    @property
    def bucket_id(self) -> str:
        """The rate-budget item in the bucket table (its own partition key)."""
        return f"mcp#{self.name}"

    @property
    def connections_semaphore(self) -> str:
        """The name of the semaphore capping this server's concurrent HTTP exchanges."""
        return f"mcp#{self.name}#connections"

    @property
    def sessions_semaphore(self) -> str:
        """The name of the semaphore capping this server's open MCP sessions."""
        return f"mcp#{self.name}#sessions"

    @property
    def lease_ids(self) -> tuple[str, str]:
        """The semaphores' items in the bucket table (`guard.leases` keys)."""
        return (lease_key(self.connections_semaphore), lease_key(self.sessions_semaphore))

    def to_env(self) -> dict:
        return {"url": self.url, "auth": self.auth, "bucket": self.bucket_id,
                "requests_per_second": self.requests_per_second, "burst": self.burst,
                "max_connections": self.max_connections, "max_sessions": self.max_sessions,
                "session_lease_s": self.session_lease_s, "max_wait_s": self.max_wait_s,
                "max_result_chars": self.max_result_chars,
                "tools": {name: {"description": tool.description,
                                 "input_schema": tool.input_schema}
                          for name, tool in self.tools.items()}}


@dataclass(frozen=True)
class McpAllow:
    """One allowlist statement: exact actions on ARN templates, optional extra conditions."""

    sid: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    conditions: dict = field(default_factory=dict)


@dataclass(frozen=True)
class McpSettings:
    servers: dict[str, McpServer] = field(default_factory=dict)
    allow: tuple[McpAllow, ...] = ()
    deny_actions: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.servers)

    def tool_names(self) -> list[str]:
        return [name for server in self.servers.values() for name in server.tools]

    def lambda_env(self) -> str:
        """The agent Lambda's MCP_SERVERS value."""
        return json.dumps({name: server.to_env() for name, server in self.servers.items()},
                          sort_keys=True)


def _fail(key: str, expected: str, value: Any) -> McpConfigError:
    return McpConfigError(f"{key!r}: expected {expected}, got {value!r}")


def _auth(key: str, value: Any) -> dict:
    if not isinstance(value, dict):
        raise _fail(key, 'an object {"type": "sigv4", "service", "region"} or '
                         '{"type": "bearer", "secret_arn"}', value)
    kind = value.get("type")
    if kind == "sigv4":
        if set(value) - {"type", "service", "region"}:
            raise _fail(key, "only type, service, region", sorted(value))
        service, region = value.get("service"), value.get("region")
        if not isinstance(service, str) or not _SERVICE.match(service):
            raise _fail(f"{key}.service", "the SigV4 signing service, e.g. 'aws-mcp'", service)
        if not isinstance(region, str) or not REGION_PATTERN.match(region):
            raise _fail(f"{key}.region", "an AWS region such as us-east-1", region)
        return {"type": "sigv4", "service": service, "region": region}
    if kind == "bearer":
        if set(value) - {"type", "secret_arn"}:
            raise _fail(key, "only type, secret_arn", sorted(value))
        arn = value.get("secret_arn")
        if not isinstance(arn, str) or not ARN_PATTERN.match(arn) or ":secretsmanager:" not in arn:
            raise _fail(f"{key}.secret_arn", "a Secrets Manager secret ARN", arn)
        return {"type": "bearer", "secret_arn": arn}
    raise _fail(f"{key}.type", "'sigv4' or 'bearer'", kind)


def _tools(key: str, value: Any) -> dict[str, McpTool]:
    if not isinstance(value, dict) or not value:
        raise _fail(key, "an object of tool name -> {description, input_schema}", value)
    tools = {}
    for name, spec in value.items():
        where = f"{key}.{name}"
        if not TOOL_NAME.match(name):
            raise _fail(where, "a tool name of 1-64 [A-Za-z0-9_-]", name)
        if not isinstance(spec, dict) or set(spec) - {"description", "input_schema"}:
            raise _fail(where, "an object with description and input_schema only", spec)
        description, schema = spec.get("description"), spec.get("input_schema")
        if not isinstance(description, str) or not description.strip():
            raise _fail(f"{where}.description", "a non-empty string", description)
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise _fail(f"{where}.input_schema", 'a JSON Schema with "type": "object"', schema)
        tools[name] = McpTool(name, description, schema)
    return tools


def _number(key: str, value: Any, minimum: float, integer: bool = False,
            maximum: float | None = None) -> float:
    """A finite number in [minimum, maximum] (`guard.values.read_number`), whole when
    `integer`; an McpConfigError naming `key` otherwise."""
    try:
        return read_number(value, minimum=minimum, maximum=maximum, integer=integer,
                           finite=True)
    except BadValue:
        bound = f" and <= {maximum:g}" if maximum is not None else ""
        raise _fail(key, f"a {'whole ' if integer else ''}number >= {minimum}{bound}",
                    value) from None


def _server(name: str, spec: Any) -> McpServer:
    key = f"mcp.servers.{name}"
    if not SERVER_NAME.match(name):
        raise _fail(key, "a server name of 1-32 [a-z0-9-] starting with a letter", name)
    known = {"url", "auth", "tools", "max_result_chars", *_QUOTA_KEYS}
    if isinstance(spec, dict) and "requests_per_minute" in spec:
        raise _fail(f"{key}.requests_per_minute", "requests_per_second instead (the AWS MCP "
                    "Server's quota is per second: 3/s per account, default share 2/s)",
                    spec["requests_per_minute"])
    if not isinstance(spec, dict) or set(spec) - known:
        raise _fail(key, "an object with only " + ", ".join(sorted(known)),
                    sorted(spec) if isinstance(spec, dict) else spec)
    url = spec.get("url")
    if not isinstance(url, str) or not re.match(r"^https?://[^\s/]+(/\S*)?$", url):
        raise _fail(f"{key}.url", "the server's streamable HTTP URL", url)
    if url.startswith("http://") and not re.match(r"^http://(127\.\d+\.\d+\.\d+|localhost)"
                                                   r"(:\d+)?(/|$)", url):
        raise _fail(f"{key}.url", "https (plain http only on loopback)", url)
    auth = _auth(f"{key}.auth", spec.get("auth"))
    quota = {setting: _number(f"{key}.{setting}", spec.get(setting, default), minimum,
                              integer, maximum)
             for setting, (default, minimum, integer, maximum) in _QUOTA_KEYS.items()}
    if auth.get("service") == AWS_MCP_SERVICE:
        for setting, (ceiling, what) in _AWS_MCP_CEILINGS.items():
            if quota[setting] > ceiling:
                raise _fail(f"{key}.{setting}", f"at most {ceiling} ({what}: the AWS MCP "
                            "Server's quota per account and Region, not adjustable)",
                            quota[setting])
    if quota["burst"] > quota["requests_per_second"] * 60:
        raise _fail(f"{key}.burst", "at most a minute's worth of requests_per_second",
                    quota["burst"])
    return McpServer(
        name=name, url=url, auth=auth, tools=_tools(f"{key}.tools", spec.get("tools")),
        **quota,
        max_result_chars=_number(f"{key}.max_result_chars",
                                 spec.get("max_result_chars", DEFAULT_MAX_RESULT_CHARS), 200,
                                 integer=True))


#: quota key -> (default, minimum, whole number, maximum)
_QUOTA_KEYS = {
    "requests_per_second": (DEFAULT_REQUESTS_PER_SECOND, 0.01, False, None),
    "burst": (DEFAULT_BURST, 1, True, None),
    "max_connections": (DEFAULT_MAX_CONNECTIONS, 1, True, MAX_LIMIT),
    "max_sessions": (DEFAULT_MAX_SESSIONS, 1, True, MAX_LIMIT),
    "session_lease_s": (DEFAULT_SESSION_LEASE_S, 60, False, MAX_TTL_S),
    "max_wait_s": (DEFAULT_MAX_WAIT_S, 0, False, DEFAULT_SESSION_LEASE_S),
}
#: the AWS MCP Server's quotas that cannot be raised: key -> (ceiling, what it counts)
_AWS_MCP_CEILINGS = {
    "requests_per_second": (AWS_MCP_REQUESTS_PER_SECOND, "requests per second, sustained"),
    "burst": (AWS_MCP_REQUESTS_PER_SECOND, "requests per second, sustained"),
    "max_connections": (AWS_MCP_CONNECTIONS, "concurrent connections"),
}


def _allow(index: int, spec: Any) -> McpAllow:
    key = f"mcp.allow[{index}]"
    known = {"sid", "actions", "resources", "conditions"}
    if not isinstance(spec, dict) or set(spec) - known:
        raise _fail(key, "an object with only " + ", ".join(sorted(known)), spec)
    sid, actions, resources = spec.get("sid"), spec.get("actions"), spec.get("resources")
    conditions = spec.get("conditions", {})
    if not isinstance(sid, str) or not _SID.match(sid):
        raise _fail(f"{key}.sid", "an alphanumeric statement id", sid)
    if not isinstance(actions, list) or not actions or not all(
            isinstance(a, str) and _ACTION.match(a) for a in actions):
        raise _fail(f"{key}.actions", "exact 'service:Action' names (no wildcards)", actions)
    if not isinstance(resources, list) or not resources or not all(
            isinstance(r, str) and (r.startswith("arn:") or r.startswith("${")) and r != "*"
            for r in resources):
        raise _fail(f"{key}.resources", "ARN templates (no '*')", resources)
    if not isinstance(conditions, dict):
        raise _fail(f"{key}.conditions", "an IAM Condition block", conditions)
    if "aws:CalledViaAWSMCP" in json.dumps(conditions) or "aws:ViaAWSMCPService" in json.dumps(
            conditions):
        raise _fail(f"{key}.conditions", "no MCP keys (the kit adds aws:CalledViaAWSMCP)",
                    conditions)
    return McpAllow(sid, tuple(actions), tuple(resources), conditions)


def load_mcp_settings(value: Any) -> McpSettings:
    """Validate cdk.json's `mcp` (None: no MCP tool sources); raises `McpConfigError`."""
    if isinstance(value, str) and value.strip()[:1] == "{":
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise _fail("mcp", "a JSON object", value) from err
    if value is None or value == {}:
        return McpSettings()
    known = {"servers", "allow", "deny_actions"}
    if not isinstance(value, dict) or set(value) - known:
        raise _fail("mcp", "an object with only " + ", ".join(sorted(known)),
                    sorted(value) if isinstance(value, dict) else value)
    raw_servers = value.get("servers", {})
    if not isinstance(raw_servers, dict):
        raise _fail("mcp.servers", "an object of server name -> settings", raw_servers)
    servers = {name: _server(name, spec) for name, spec in raw_servers.items()}
    seen: dict[str, str] = {}
    for server in servers.values():
        for tool in server.tools:
            if tool in seen:
                raise _fail(f"mcp.servers.{server.name}.tools.{tool}",
                            f"a name not already offered by server {seen[tool]!r}", tool)
            seen[tool] = server.name
    raw_allow = value.get("allow", [])
    if not isinstance(raw_allow, list):
        raise _fail("mcp.allow", "a list of statements", raw_allow)
    allow = tuple(_allow(i, spec) for i, spec in enumerate(raw_allow))
    sids = [a.sid for a in allow]
    if len(sids) != len(set(sids)):
        raise _fail("mcp.allow", "unique sids", sids)
    deny = value.get("deny_actions", [])
    if not isinstance(deny, list) or not all(isinstance(a, str) and _ACTION_PATTERN.match(a)
                                             and not a.endswith(":*") for a in deny):
        raise _fail("mcp.deny_actions", "'service:Action' patterns (not 'service:*')", deny)
    return McpSettings(servers=servers, allow=allow, deny_actions=tuple(deny))


def servers_from_env(raw: str | None) -> dict[str, McpServer]:
    """Parse the Lambda's MCP_SERVERS (written by `McpSettings.lambda_env`)."""
    if not raw or not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as err:
        raise McpConfigError(f"MCP_SERVERS is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise McpConfigError("MCP_SERVERS must be a JSON object of server name -> settings")
    servers = {}
    for name, spec in data.items():
        if not isinstance(spec, dict):
            raise McpConfigError(f"MCP_SERVERS[{name!r}] must be an object")
        spec = {k: v for k, v in spec.items() if k != "bucket"}
        try:
            servers[name] = _server(name, spec)
        except McpConfigError as err:
            raise McpConfigError(f"MCP_SERVERS: {err}") from None
    return servers


def tool_index(servers: Mapping[str, McpServer]) -> dict[str, McpServer]:
    """Tool name -> the server offering it."""
    return {tool: server for server in servers.values() for tool in server.tools}
