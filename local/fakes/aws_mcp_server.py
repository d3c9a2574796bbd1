"""A local stand-in for the AWS MCP Server, on the MCP SDK's own server (streamable HTTP,
loopback), calling local AWS (moto) with the CALLER's credentials.

    python -m local.fakes.aws_mcp_server --aws-endpoint http://127.0.0.1:PORT   # prints {"port": N}

From Python: `with LocalAwsMcp(aws.endpoint_url) as mcp: mcp.url` (a child process).

What it checks, as the real service does:
- every HTTP request is SigV4-signed for service `aws-mcp` with credentials local AWS issued
  (the secret comes from the local AWS launcher's AssumeRole records); otherwise 401/403;
- before each downstream AWS call, the caller's effective policies (identity policies and
  permissions boundary, read from local IAM) are evaluated with `local/fakes/iam_simulate.mjs` (the
  evaluator the infra tests use), with the MCP context keys the real server's calls carry
  (`aws:ViaAWSMCPService` = true, `aws:CalledViaAWSMCP` = aws-mcp.amazonaws.com) and the
  session's tags and source identity (`${aws:PrincipalTag/...}` resolves as in AWS). A denied
  call is answered AccessDenied and never reaches local AWS (moto checks no IAM itself).

Tools (current names, not the deprecated `aws___call_aws`):
- `aws___run_script` {script}: the real tool runs Python in a sandbox; this stand-in accepts
  a script of ONE AWS call, `<service>.<operation>(<JSON keyword arguments>)`, e.g.
  `s3.list_objects_v2({"Bucket": "b", "Prefix": "docs/acme/"})`, and answers its JSON result.
- `aws___search_documentation` {search_phrase}: a few canned documentation hits.

Quotas, as published for the AWS MCP Server per account and Region ("Quotas for AWS MCP
Server"; `Quotas`, override with `--quotas JSON`, off with `--quotas off`): 3 requests per
second sustained (a token bucket holding one second's worth), 27 concurrent connections, 180
concurrent active sessions per account and 90 per IAM role. Every HTTP request to the MCP
endpoint (POST, GET, DELETE) is a request; a connection is an HTTP exchange from its request
until its response has been sent in full (a standalone GET stream stays one for as long as it
is open); a session counts from the `initialize` answer carrying its `Mcp-Session-Id` until
its DELETE. Above any of them the answer is HTTP 429 with `Retry-After`, as the service
throttles. `GET /_stand_in/quota` reports the counts, the peaks and the refusals.

Fault injection for tests (`POST /_stand_in/faults {"kind", "count"}`): "429" (answer HTTP 429
with Retry-After), "expire_session" (forget the caller's session id: HTTP 404), "malformed"
(a tools/call result that is not a valid CallToolResult), "oversized" (pad the next result),
"drop_tool" (`{"tool": name}`: stop listing it). `GET /_stand_in/decisions` lists every IAM
decision taken (caller, source identity, action, resource, result).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import threading
import urllib.request
from dataclasses import asdict

import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from local.fakes.aws_mcp_access import Evaluator, signed_access_key, target, verify_sigv4
from local.fakes.aws_mcp_access import simulate  # noqa: F401 - re-exported for the tests
from local.fakes.aws_mcp_quotas import QuotaMeter, Quotas, parse_quotas
from local.fakes.child import ChildServer, announce_port, exit_with_parent

#: The published quotas, the stand-in's default.
PUBLISHED_QUOTAS = Quotas()
CONTROL = "/_stand_in/"
SCRIPT = re.compile(r"^\s*([a-z0-9-]+)\.([a-z0-9_]+)\((.*)\)\s*$", re.S)

DOCS = [{"title": "Identity-based policy examples for AWS MCP Server",
         "url": "https://docs.aws.amazon.com/agent-toolkit/latest/userguide/"
                "security_iam_id-based-policy-examples.html",
         "excerpt": "Deny destructive actions through AWS MCP Server with "
                    "aws:ViaAWSMCPService; restrict to one server with aws:CalledViaAWSMCP."},
        {"title": "Amazon SQS GetQueueAttributes",
         "url": "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/"
                "API_GetQueueAttributes.html",
         "excerpt": "Gets attributes for the specified queue."}]


# -- the server -------------------------------------------------------------------------------

class StandIn:
    def __init__(self, aws_endpoint: str, region: str, quotas: Quotas | None = None) -> None:
        self.aws_endpoint, self.region = aws_endpoint, region
        self.meter = QuotaMeter(quotas)
        self.evaluator = Evaluator(aws_endpoint, region)
        self.faults: dict[str, int] = {}
        self.mcp_server = None
        self.expired: set[str] = set()
        self.lock = threading.Lock()

    def sessions(self) -> dict[str, dict]:
        with urllib.request.urlopen(self.aws_endpoint + "/_bulwark/sessions", timeout=5) as r:
            return json.loads(r.read())

    def secret_for(self, access_key: str) -> str | None:
        if access_key == "testing":
            return "testing"
        session = self.sessions().get(access_key)
        return session["secret_key"] if session else None

    def take(self, kind: str) -> bool:
        with self.lock:
            if self.faults.get(kind, 0) > 0:
                self.faults[kind] -= 1
                return True
            return False

    def run_script(self, access_key: str, script: str) -> str:
        import boto3

        match = SCRIPT.match(script or "")
        if not match:
            raise ValueError("this stand-in runs one call per script: "
                             "service.operation({json keyword arguments})")
        service, operation, raw = match.groups()
        params = json.loads(raw) if raw.strip() else {}
        if not isinstance(params, dict):
            raise ValueError("the call's arguments must be a JSON object")
        session = self.sessions().get(access_key)
        if session is None:
            raise PermissionError("AccessDenied: the caller is not an assumed-role session")
        account = session["role_arn"].split(":")[4]
        action, resource, extra = target(service, operation, params, self.region, account)
        decision = self.evaluator.decide(session, action, resource, extra)
        if decision != "Allowed":
            raise PermissionError(
                f"AccessDenied: User: {session.get('session_arn')} is not authorized to "
                f"perform: {action} on resource: {resource} via AWS MCP Server ({decision})")
        client = boto3.client(service, endpoint_url=self.aws_endpoint, region_name=self.region,
                              aws_access_key_id=access_key,
                              aws_secret_access_key=session["secret_key"])
        response = getattr(client, operation)(**params)
        response.pop("ResponseMetadata", None)
        for key, value in list(response.items()):
            if hasattr(value, "read"):
                response[key] = value.read().decode("utf-8", "replace")
        text = json.dumps(response, default=str)
        if self.take("oversized"):
            text += " " * 200_000
        return text


def build_app(stand_in: StandIn):

    server = MCPServer("aws-mcp-stand-in")

    def caller(ctx: Context) -> str:
        request = ctx.request_context.request
        return signed_access_key(request.headers.get("authorization", ""))

    @server.tool(name="aws___run_script",
                 description="Run a script against AWS with the caller's credentials (stand-in: "
                             "one call, service.operation({json}))")
    def run_script(script: str, ctx: Context) -> str:
        try:
            return stand_in.run_script(caller(ctx), script)
        except PermissionError as err:
            raise ToolError(str(err)) from None
        except Exception as err:  # noqa: BLE001 - the tool answers errors as tool errors
            raise ToolError(f"{type(err).__name__}: {err}") from None

    @server.tool(name="aws___search_documentation",
                 description="Search the AWS documentation")
    def search_documentation(search_phrase: str) -> str:
        words = {w.lower() for w in re.findall(r"\w+", search_phrase)}
        hits = [d for d in DOCS if words & set(re.findall(r"\w+", json.dumps(d).lower()))]
        return json.dumps(hits or DOCS[:1])

    inner = server.streamable_http_app()
    stand_in.mcp_server = server

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return await inner(scope, receive, send)
        path = scope.get("path", "")
        if path.startswith(CONTROL):
            return await _control(stand_in, scope, receive, send)
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        # counted on arrival, before any work of the stand-in's own (its SigV4 check asks
        # local AWS for the key's secret) can shift when a request is seen
        kind = _kind(scope["method"], body)
        over, retry_after = stand_in.meter.admit(kind)
        if over is not None:
            return await _throttled(send, over, retry_after)
        try:
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            url = f"http://{headers.get('host', '')}{path}" + (
                "?" + scope["query_string"].decode() if scope.get("query_string") else "")
            # the checks that ask local AWS run off the event loop, which keeps accepting
            # (and counting) the requests that arrive meanwhile
            access_key, why = await anyio.to_thread.run_sync(
                verify_sigv4, scope["method"], url, headers, body, stand_in.secret_for,
                stand_in.region)
            if access_key is None:
                status = 401 if "Authorization" in why or "missing" in why else 403
                return await _respond(send, status, {"message": why})
            sessions = await anyio.to_thread.run_sync(stand_in.sessions)
            role = (sessions.get(access_key) or {}).get("role_arn", access_key)
            if kind == "POST initialize" and not stand_in.meter.session_allowed(role):
                return await _throttled(send, "sessions", 1.0)
            return await _metered(stand_in, scope, body, headers, send, role, receive, inner)
        finally:
            stand_in.meter.closed()

    return app, inner


def _kind(method: str, body: bytes) -> str:
    """"<HTTP method> <JSON-RPC method>" of a request, e.g. "POST tools/call"."""
    try:
        message = json.loads(body) if body else {}
    except ValueError:
        return method
    rpc = message.get("method") if isinstance(message, dict) else None
    return f"{method} {rpc}" if rpc else method


async def _metered(stand_in: StandIn, scope, body: bytes, headers: dict, send, role: str,
                   receive, inner) -> None:
    """One admitted request: faults, then the SDK's server; the session it opens or ends is
    counted."""
    session_id = headers.get("mcp-session-id")
    if session_id and (session_id in stand_in.expired or stand_in.take("expire_session")):
        stand_in.expired.add(session_id)
        return await _respond(send, 404, {"message": "session not found"})
    if scope["method"] == "POST" and stand_in.take("429"):
        return await _respond(send, 429, {"message": "Rate exceeded"},
                              extra=[(b"retry-after", b"1")])
    if scope["method"] == "POST" and b'"tools/call"' in body and stand_in.take("malformed"):
        request_id = json.loads(body).get("id")
        return await _respond(send, 200, {"jsonrpc": "2.0", "id": request_id,
                                          "result": {"content": "not a list"}})
    sent = False

    async def replay():
        nonlocal sent
        if sent:  # the body was read already: what follows is the client's disconnect
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def counting_send(message):
        if message["type"] == "http.response.start":
            answered = {k.decode().lower(): v.decode()
                        for k, v in message.get("headers", [])}
            new_session = answered.get("mcp-session-id")
            if new_session and not session_id and message["status"] < 300:
                stand_in.meter.session_opened(new_session, role)
            if scope["method"] == "DELETE" and session_id and message["status"] < 300:
                stand_in.meter.session_closed(session_id)
        await send(message)

    return await inner(scope, replay, counting_send)


async def _throttled(send, quota: str, retry_after: float) -> None:
    await _respond(send, 429, {"message": f"Rate exceeded ({quota} quota)"},
                   extra=[(b"retry-after", f"{retry_after:.3f}".encode())])


async def _respond(send, status: int, payload: dict, extra=()) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *extra]})
    await send({"type": "http.response.body", "body": body})


async def _control(stand_in: StandIn, scope, receive, send) -> None:
    action = scope["path"][len(CONTROL):]
    if action == "decisions":
        return await _respond(send, 200, {"decisions": stand_in.evaluator.decisions})
    if action == "faults" and scope["method"] == "POST":
        message = await receive()
        payload = json.loads(message.get("body") or b"{}")
        kind = payload.get("kind")
        if kind == "drop_tool":
            stand_in.mcp_server.remove_tool(payload["tool"])
        else:
            with stand_in.lock:
                stand_in.faults[kind] = stand_in.faults.get(kind, 0) + int(
                    payload.get("count", 1))
        return await _respond(send, 200, {"ok": True})
    if action == "quota":
        return await _respond(send, 200, stand_in.meter.report())
    if action == "health":
        return await _respond(send, 200, {"ok": True})
    return await _respond(send, 404, {"message": "unknown control action"})


def serve(aws_endpoint: str, region: str, port: int = 0, quotas: Quotas | None = None) -> None:
    import contextlib
    import socket

    import uvicorn

    exit_with_parent(os.getppid())
    stand_in = StandIn(aws_endpoint, region, quotas)
    app, inner = build_app(stand_in)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        async with inner.router.lifespan_context(inner):  # the SDK's session manager
            yield

    async def root(scope, receive, send):
        if scope["type"] == "lifespan":
            async with lifespan(None):
                while True:
                    message = await receive()
                    if message["type"] == "lifespan.startup":
                        await send({"type": "lifespan.startup.complete"})
                    elif message["type"] == "lifespan.shutdown":
                        await send({"type": "lifespan.shutdown.complete"})
                        return
        return await app(scope, receive, send)

    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    config = uvicorn.Config(root, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    announce_port(sock.getsockname()[1])
    server.run(sockets=[sock])


class LocalAwsMcp(ChildServer):
    """The stand-in in a child process; `url` is its MCP endpoint."""

    module = "local.fakes.aws_mcp_server"
    name = "local AWS MCP Server"

    def __init__(self, aws_endpoint: str, region: str = "us-east-1",
                 startup_timeout_s: float = 30.0, quotas: Quotas | None = PUBLISHED_QUOTAS) -> None:
        """`quotas`: the published ones by default; None: counted, never refused."""
        super().__init__(startup_timeout_s)
        self.aws_endpoint, self.region, self.quotas = aws_endpoint, region, quotas

    @property
    def url(self) -> str:
        return self.base_url + "/mcp"

    def args(self) -> list[str]:
        quotas = json.dumps(asdict(self.quotas)) if self.quotas else "off"
        return ["--aws-endpoint", self.aws_endpoint, "--region", self.region,
                "--quotas", quotas]

    def probe(self) -> None:
        self._control("GET", "health")

    def _control(self, method: str, action: str, payload: dict | None = None) -> dict:
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(self.base_url + CONTROL + action, data=data,
                                         method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def inject(self, kind: str, count: int = 1, **extra) -> None:
        self._control("POST", "faults", {"kind": kind, "count": count, **extra})

    def decisions(self) -> list[dict]:
        return self._control("GET", "decisions")["decisions"]

    def quota(self) -> dict:
        """Requests counted, open connections and sessions, their peaks, refusals by quota."""
        return self._control("GET", "quota")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--aws-endpoint", required=True)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--quotas", default=None,
                        help='JSON overrides of the published quotas, or "off"')
    args = parser.parse_args(argv)
    serve(args.aws_endpoint, args.region, args.port, parse_quotas(args.quotas))


if __name__ == "__main__":
    main()
