"""Parsing and validating agent requests (the agent's event contract), from direct invokes, Function URLs and
SQS bodies. Every problem becomes a `BadRequest` whose message names the field."""

from __future__ import annotations

import base64
import json
import math
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from guard import estimate_input_tokens
from guard.fair import PRIORITIES

from .config import AgentConfig
from .contract import LANES, REQUEST_ID_PATTERN
from .payloads import PayloadError, PayloadStore, digest, pointer_of, transient

MAX_PROMPT_CHARS = 1_000_000
DEFAULT_MAX_TOKENS = 1024
MAX_DEADLINE_S = 900.0
#: The largest batch item the batch lane accepts (bytes of its Messages params as ASCII-escaped
#: JSON, the largest form any hop stores: a batch table row holds at most 400 KB). The batch
#: queue body carries the prompt once, as UTF-8 (`batch_body`), so it is never larger than this
#: plus the request's fields.
MAX_BATCH_ITEM_BYTES = 200_000


class BadRequest(ValueError):
    """The request cannot be served as sent; the message names the problem."""


@dataclass
class AgentRequest:
    """One validated agent request. `deadline_s`: seconds from receipt the caller will wait."""

    prompt: str
    model: str
    max_tokens: int
    request_id: str
    tenant: str
    deadline_s: float
    caller: str | None = None
    lane: str = "interactive"
    priority: str = "interactive"  # the guard's class: "interactive" or "background"
    ticket: float | None = None  # a deferred request's place in its tenant's queue (epoch s)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def request_digest(request: AgentRequest) -> str:
    """What a request id stands for: a SHA-256 of the prompt, model, max_tokens and lane. The
    same id sent again with a different digest is a different request (a "conflict")."""
    return digest(request.prompt, request.model, request.max_tokens, request.lane)


@dataclass
class Spent:
    """What a request has used so far, over every invocation and deferral: model calls
    (MAX_ITERATIONS counts them) and tokens (MAX_TOTAL_TOKENS counts them)."""

    model_calls: int = 0
    tokens: int = 0

    @classmethod
    def of(cls, raw: Any) -> "Spent":
        """From a work message's "spent" object; ValueError naming the field when bad."""
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise ValueError(f"spent must be an object, got {type(raw).__name__}")
        values = []
        for name in ("model_calls", "tokens"):
            value = raw.get(name, 0)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"spent.{name} must be a non-negative integer, got {value!r}")
            values.append(value)
        return cls(*values)


@dataclass
class WorkMessage:
    """One work-queue message, parsed: the request and how far it has come.

    `body`: the message as received (what a dead letter carries). `deferrals`: times the
    request was deferred before. `first_received_at`: epoch seconds when it first arrived.
    `transcript`: the conversation to resume (None: start afresh). `model`: the model it was
    deferred on (a degraded request keeps its smaller model)."""

    body: dict[str, Any]
    request: AgentRequest
    deferrals: int
    first_received_at: float
    transcript: list[dict] | None = None
    model: str | None = None
    #: model calls and tokens used by earlier invocations (budgets span deferrals)
    spent: Spent = field(default_factory=Spent)


class MalformedMessage(ValueError):
    """A work-queue message that can never be served; `body` is what to dead-letter and the
    message the reason."""

    def __init__(self, reason: str, body: Any) -> None:
        super().__init__(reason)
        self.body = body


def new_request_id() -> str:
    return f"req-{uuid.uuid4().hex[:24]}"


def parse_request(event: Any, config: AgentConfig, *, caller: str | None = None,
                  tenant: str | None = None) -> AgentRequest:
    """Validate an agent event; raises `BadRequest` naming the first problem.

    `tenant`: derived from the caller's identity (`agent.tenancy`, Function URL); None takes
    the event's `tenant`, trusted by configuration (a direct invoke or queued work)."""
    if not isinstance(event, dict):
        raise BadRequest(f"event must be a JSON object, got {type(event).__name__}")
    prompt = event.get("prompt")
    if prompt is None:
        raise BadRequest("prompt is required")
    if not isinstance(prompt, str):
        raise BadRequest(f"prompt must be a string, got {type(prompt).__name__}")
    if not prompt.strip():
        raise BadRequest("prompt is empty")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise BadRequest(f"prompt is {len(prompt):,} characters; the limit is "
                         f"{MAX_PROMPT_CHARS:,}")

    model = event.get("model", config.default_model)
    if not isinstance(model, str):
        raise BadRequest(f"model must be a string, got {type(model).__name__}")
    if model not in config.models:
        raise BadRequest(f"unknown model {model!r}; configured: {', '.join(sorted(config.models))}")
    model_config = config.models[model]

    max_tokens = event.get("max_tokens", min(DEFAULT_MAX_TOKENS, model_config.max_output_tokens))
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        raise BadRequest(f"max_tokens must be an integer, got {type(max_tokens).__name__}")
    if not 1 <= max_tokens <= model_config.max_output_tokens:
        raise BadRequest(f"max_tokens must be between 1 and {model_config.max_output_tokens} "
                         f"for {model}, got {max_tokens}")

    request_id = event.get("request_id")
    if request_id is None:
        request_id = new_request_id()
    elif not isinstance(request_id, str) or not REQUEST_ID_PATTERN.match(request_id):
        raise BadRequest("request_id must be 2-64 characters of [A-Za-z0-9_+=,.@-], got "
                         f"{request_id!r}")

    if tenant is None:
        tenant = event.get("tenant", config.tenants[0])
    if not isinstance(tenant, str) or tenant not in config.tenants:
        raise BadRequest(f"unknown tenant {tenant!r}; this deployment serves "
                         f"{', '.join(config.tenants)}")

    deadline_s = event.get("deadline_s", config.default_deadline_s)
    if isinstance(deadline_s, bool) or not isinstance(deadline_s, (int, float)) \
            or not 0 <= deadline_s <= MAX_DEADLINE_S:
        raise BadRequest(f"deadline_s must be a number of seconds from 0 to {MAX_DEADLINE_S:g}, "
                         f"got {deadline_s!r}")

    lane = event.get("lane", "interactive")
    if lane not in LANES:
        raise BadRequest(f"unknown lane {lane!r}; expected one of {', '.join(LANES)}")
    if lane == "batch":
        check_batch_lane(event, config)

    priority = event.get("priority", "interactive")
    if priority not in PRIORITIES:
        raise BadRequest(f"priority must be one of {', '.join(PRIORITIES)}, got {priority!r}")

    request = AgentRequest(prompt, model, max_tokens, request_id, tenant, float(deadline_s),
                           caller, lane, priority)
    check_size(request, config)
    if lane == "batch":
        size = len(json.dumps(batch_params(request, config)).encode())
        if size > MAX_BATCH_ITEM_BYTES:
            raise BadRequest(f"the batch item is {size:,} bytes, over the batch lane's limit of "
                             f"{MAX_BATCH_ITEM_BYTES:,} bytes per item")
    return request


def parse_work_message(raw_body: Any, config: AgentConfig, *, now: float,
                       payloads: PayloadStore | None = None) -> WorkMessage:
    """A work-queue message: {"request": {...}, "deferrals": n, "first_received_at": epoch s,
    "transcript": [...]?, "model": str?, "spent": {"model_calls", "tokens"}?} or a bare
    agent request, or a claim check ({"s3_payload": ...}: the message is in `payloads`;
    `body` is then the claim check, which is what a dead letter carries). A request without
    its prompt takes it from "params" (a batch-lane body carries the prompt once). `now`:
    epoch seconds, the arrival time of a message that carries none. Raises
    `MalformedMessage` naming the problem, or the `PayloadError` of a claim check the bucket
    could not serve for now (throttled, unavailable: `payloads.transient`).

    Queued work is asynchronous: it may wait for capacity as long as DEFAULT_DEADLINE_S
    (within the Lambda's time) instead of re-deferring on the caller's short deadline."""
    try:
        body = json.loads(raw_body)
    except (json.JSONDecodeError, TypeError) as err:
        raise MalformedMessage(f"malformed body: not JSON ({err})", raw_body) from None
    if not isinstance(body, dict):
        raise MalformedMessage("malformed body: not a JSON object", body)
    envelope = body
    if pointer_of(body) is not None:
        if payloads is None:
            raise MalformedMessage("claim check without a payload store", body)
        try:
            envelope = json.loads(payloads.get(body))
        except (PayloadError, json.JSONDecodeError) as err:
            if transient(err):  # the bucket's passing trouble: raised, SQS delivers it again
                raise
            raise MalformedMessage(f"claim check unreadable: {err}", body) from None
        if not isinstance(envelope, dict):
            raise MalformedMessage("malformed claim check: not a JSON object", body)
    envelope = envelope if "request" in envelope else {"request": envelope}
    try:
        deferrals = int(envelope.get("deferrals", 0))
        first_received_at = float(envelope.get("first_received_at") or now)
        if not math.isfinite(first_received_at):
            raise ValueError(f"first_received_at must be a time, got {first_received_at}")
        if envelope.get("model") is not None and envelope["model"] not in config.models:
            raise ValueError(f"unknown model {envelope['model']!r} in the envelope")
        spent = Spent.of(envelope.get("spent"))
        event = _with_prompt(envelope["request"], envelope.get("params"))
        request = parse_request(event, config, caller=event.get("caller")
                                if isinstance(event, dict) else None)
    except (TypeError, ValueError) as err:  # BadRequest is a ValueError
        raise MalformedMessage(f"malformed request: {err}", body) from None
    request.deadline_s = max(request.deadline_s, config.default_deadline_s)
    ticket = envelope.get("ticket")  # set by the agent's own deferral, never by a caller
    request.ticket = float(ticket) if isinstance(ticket, (int, float)) \
        and not isinstance(ticket, bool) and math.isfinite(ticket) else None
    return WorkMessage(body, request, deferrals, first_received_at,
                       envelope.get("transcript"), envelope.get("model"), spent)


def _with_prompt(event: Any, params: Any) -> Any:
    """A queued request without "prompt" takes the user turn of its batch params."""
    if not isinstance(event, dict) or "prompt" in event or not isinstance(params, dict):
        return event
    messages = params.get("messages")
    if isinstance(messages, list) and len(messages) == 1 and isinstance(messages[0], dict) \
            and isinstance(messages[0].get("content"), str):
        return {**event, "prompt": messages[0]["content"]}
    return event


def check_batch_lane(event: dict, config: AgentConfig) -> None:
    """What the batch lane cannot do, each refused by name."""
    if config.provider != "anthropic":
        raise BadRequest(f"lane 'batch' is not available with provider={config.provider}: "
                         "only the Anthropic Message Batches API is supported for now; use "
                         "lane 'interactive'")
    if event.get("stream"):
        raise BadRequest("stream is not available in lane 'batch': batch answers are fetched "
                         "with get_result once stored")
    if event.get("tools"):
        raise BadRequest("tools are not available in lane 'batch': a batch item is one turn "
                         "without tools; use lane 'interactive' for tool use")


def batch_params(request: AgentRequest, config: AgentConfig) -> dict[str, Any]:
    """The Messages request one batch item carries (one turn, no tools)."""
    return {"model": request.model, "max_tokens": request.max_tokens,
            "system": config.system_prompt,
            "messages": [{"role": "user", "content": request.prompt}]}


def batch_body(request: AgentRequest, config: AgentConfig, *, queued_at: float) -> dict:
    """The batch-queue message of a lane-"batch" request: the request's fields, its batch
    params (which carry the prompt, once), the attempt, when it was queued (epoch seconds) and
    its `request_digest` (for `results.put_result_once`)."""
    fields = {k: v for k, v in request.to_dict().items() if k != "prompt"}
    return {"request": fields, "params": batch_params(request, config), "attempt": 0,
            "queued_at": queued_at, "digest": request_digest(request)}


def check_size(request: AgentRequest, config: AgentConfig) -> None:
    """Refuse a prompt that can never be served: over the model's context window or over the
    input-token capacity of its bucket (it would never be granted)."""
    model = config.models[request.model]
    estimate = estimate_input_tokens({"system": config.system_prompt,
                                      "messages": [{"role": "user", "content": request.prompt}]})
    if estimate + request.max_tokens > model.context_window:
        raise BadRequest(f"prompt is about {estimate:,} tokens; with max_tokens "
                         f"{request.max_tokens:,} it exceeds {request.model}'s context window of "
                         f"{model.context_window:,} tokens")
    capacity = model.limits.itpm or model.limits.tpm
    if capacity is not None and estimate > capacity:
        raise BadRequest(f"prompt is about {estimate:,} tokens, more than the "
                         f"{capacity:,.0f}-token per-minute input quota of {request.model}: "
                         "it could never be admitted")
    problem = model.limits.never_fits(1, estimate, request.max_tokens)
    if problem:  # max_tokens over the output quota, or (Bedrock) x output_burndown
        raise BadRequest(f"{request.model}: {problem}")


def function_url_payload(event: dict) -> tuple[Any, str | None]:
    """(request body, caller ARN) from a Lambda Function URL event (payload format 2.0).

    With AWS_IAM auth the caller's ARN is in requestContext.authorizer.iam.userArn."""
    context = event.get("requestContext") or {}
    caller = ((context.get("authorizer") or {}).get("iam") or {}).get("userArn")
    raw = event.get("body")
    if raw is None:
        raise BadRequest("the HTTP request has no body: send the request as JSON")
    if not isinstance(raw, str):
        raise BadRequest(f"the HTTP body must be a string, got {type(raw).__name__}")
    if event.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(raw).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("the HTTP body is not valid base64-encoded UTF-8") from None
    try:
        return json.loads(raw), caller
    except json.JSONDecodeError as err:
        raise BadRequest(f"the HTTP body is not valid JSON: {err.msg} at position {err.pos}") \
            from None


def is_function_url_event(event: Any) -> bool:
    return isinstance(event, dict) and "requestContext" in event and "http" in (
        event.get("requestContext") or {})
