"""Agent Lambda entry points (contract 2): `handler` (synchronous invoke or Function URL) and
`sqs_handler` (deferred and asynchronous work, partial batch failures).

Cold start: configuration is parsed and AWS clients are built at init, which SnapStart
snapshots. `anthropic` (about 2 s of imports) is loaded at init only when the function
initialises for a snapshot (`AWS_LAMBDA_INITIALIZATION_TYPE=snap-start`); otherwise it loads on
the first Claude call, so bad input, result fetches and deferrals never pay for it.
`bench/cold_start.py` reports the import time.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.batch import (BatchProcessor, EventType,
                                                   process_partial_response)
from aws_lambda_powertools.utilities.idempotency import (DynamoDBPersistenceLayer,
                                                         IdempotencyConfig, idempotent_function)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError)

from guard import GuardedClaude, Limits, TokenBucket

from .config import AgentConfig, ConfigError, load_config
from .credentials import assume_tool_role
from .loop import run_agent
from .mcp.toolbox import McpToolbox
from .batch.state import put_queued
from .requests import (BadRequest, REQUEST_ID, batch_params, function_url_payload,
                       is_function_url_event, parse_request, AgentRequest)
from .telemetry import RequestMetrics
from .tools.registry import ToolContext, ToolResources

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "bulwark-agent"))
tracer = Tracer(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "bulwark-agent"))

#: Seconds kept back from the Lambda's remaining time for deferring and storing a result.
LAMBDA_SAFETY_S = 5.0
MAX_SQS_DELAY_S = 900
MAX_SQS_BODY_BYTES = 250_000


class _NotFinal(Exception):
    """Raised inside the idempotent section so a deferral is not remembered as the answer."""

    def __init__(self, response: dict) -> None:
        super().__init__(response.get("status"))
        self.response = response


@dataclass
class Runtime:
    """Everything built once per container (at init, before a SnapStart snapshot)."""

    config: AgentConfig
    dynamodb: Any
    sqs: Any
    sts: Any
    claude: GuardedClaude
    persistence: DynamoDBPersistenceLayer
    clock: Any = time.time
    #: MCP tool sources (None when MCP_SERVERS is empty); the SDK loads on the first MCP call
    mcp: McpToolbox | None = None


def build_runtime(env=os.environ, *, dynamodb=None, sqs=None, sts=None, secrets=None,
                  sdk_client=None) -> Runtime:
    """Parse the environment and build clients; injected clients are used as given (tests)."""
    import boto3

    config = load_config(env)
    dynamodb = dynamodb or boto3.client("dynamodb")
    buckets: dict[str, TokenBucket] = {}
    shared: dict[str, TokenBucket] = {}
    for model_id, model in config.models.items():
        if model.bucket_id not in shared:  # a model family shares one bucket
            shared[model.bucket_id] = TokenBucket(config.bucket_table, model.bucket_id,
                                                  model.limits, dynamodb)
        buckets[model_id] = shared[model.bucket_id]

    secrets_provider = []

    def api_key(refresh: bool = False) -> str:
        """The API key from Secrets Manager, cached 300 s; `refresh` (after an upstream 401)
        bypasses the cache so a rotated key is used at once."""
        from aws_lambda_powertools.utilities.parameters import SecretsProvider

        if not secrets_provider:
            secrets_provider.append(SecretsProvider(
                boto3_client=secrets or boto3.client("secretsmanager")))
        # VersionStage named explicitly: the role may read only AWSCURRENT (IAM condition).
        value = secrets_provider[0].get(config.api_key_secret_arn, max_age=300,
                                        force_fetch=refresh, VersionStage="AWSCURRENT")
        if isinstance(value, bytes):
            value = value.decode()
        try:
            parsed = json.loads(value)
            return parsed["api_key"] if isinstance(parsed, dict) else value
        except (json.JSONDecodeError, KeyError):
            return value

    claude = GuardedClaude(buckets, provider=config.provider, sdk_client=sdk_client,
                           api_key=api_key if config.provider == "anthropic" else None,
                           aws_region=config.aws_region, scheduling=config.scheduling)
    persistence = DynamoDBPersistenceLayer(table_name=config.idempotency_table,
                                           boto3_client=dynamodb)
    mcp = None
    if config.mcp_servers:
        def secret(arn: str) -> str:  # bearer tokens: {"token": ...} or the plain token
            from aws_lambda_powertools.utilities.parameters import SecretsProvider

            provider = SecretsProvider(boto3_client=secrets or boto3.client("secretsmanager"))
            value = provider.get(arn, max_age=300, VersionStage="AWSCURRENT")
            value = value.decode() if isinstance(value, bytes) else value
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError:
                return value
            return parsed.get("token", value) if isinstance(parsed, dict) else value

        mcp = McpToolbox(config.mcp_servers, logger=logger, secret=secret, buckets={
            name: TokenBucket(config.bucket_table, server.bucket_id,
                              Limits(rpm=server.requests_per_minute), dynamodb)
            for name, server in config.mcp_servers.items()})
    return Runtime(config, dynamodb, sqs or boto3.client("sqs"), sts or boto3.client("sts"),
                   claude, persistence, mcp=mcp)


_runtime: Runtime | None = None
_runtime_error: str | None = None


def _init() -> None:
    global _runtime, _runtime_error
    try:
        _runtime = build_runtime()
        _runtime_error = None
    except ConfigError as err:
        _runtime, _runtime_error = None, f"configuration error: {err}"
        logger.error(_runtime_error)
    if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") == "snap-start":
        # Paid once, before the snapshot. The API key is not put in the snapshot: the first
        # call fetches it, before it acquires (GuardedClaude.prepare).
        import anthropic  # noqa: F401
        import anthropic.resources.messages  # noqa: F401


if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
    _init()


def _runtime_or_error() -> Runtime:
    if _runtime is None:
        _init()
    if _runtime is None:
        raise ConfigError(_runtime_error or "not configured")
    return _runtime


# -- responses and storage ---------------------------------------------------------------------

def _error(request_id: str | None, kind: str, message: str) -> dict:
    return {"status": "error", "request_id": request_id or "", "error": {"type": kind,
                                                                          "message": message}}


def _store_result(rt: Runtime, response: dict, tenant: str) -> None:
    """Keep a response by request id for `get_result`, expiring after RESULT_TTL_S (checked in
    code on read; the table's TTL only cleans up)."""
    expires_at = int(rt.clock() + rt.config.result_ttl_s)
    rt.dynamodb.put_item(TableName=rt.config.results_table, Item={
        "request_id": {"S": _result_key(tenant, response["request_id"])},
        "tenant": {"S": tenant},
        "status": {"S": response["status"]}, "response": {"S": json.dumps(response)},
        "expires_at": {"N": str(expires_at)}})


def _result_key(tenant: str, request_id: str) -> str:
    """Results are keyed per tenant: two tenants may choose the same request id."""
    return f"{tenant}/{request_id}"


def _fetch_result(rt: Runtime, event: dict) -> dict:
    request_id, tenant = event.get("request_id"), event.get("tenant", rt.config.tenants[0])
    if not isinstance(request_id, str) or not REQUEST_ID.match(request_id):
        return _error(None, "invalid_request", "get_result needs request_id: 2-64 characters of "
                                               "[A-Za-z0-9_+=,.@-]")
    if not isinstance(tenant, str) or tenant not in rt.config.tenants:
        return _error(request_id, "invalid_request", f"unknown tenant {tenant!r}")
    item = rt.dynamodb.get_item(TableName=rt.config.results_table, ConsistentRead=True,
                                Key={"request_id": {"S": _result_key(tenant, request_id)}}
                                ).get("Item")
    if (item is None or item["tenant"]["S"] != tenant
            or float(item["expires_at"]["N"]) < rt.clock()):
        return _error(request_id, "not_found", f"no result for request {request_id!r} "
                                               f"of tenant {tenant!r} (unknown or expired)")
    return json.loads(item["response"]["S"])


def _send_to_dlq(rt: Runtime, body: Any, reason: str) -> None:
    payload = body if isinstance(body, dict) else {"raw_body": body}
    payload = {**payload, "dlq_reason": reason, "dead_lettered_at": rt.clock()}
    rt.sqs.send_message(QueueUrl=rt.config.dlq_url, MessageBody=json.dumps(payload, default=str),
                        MessageAttributes={"reason": {"DataType": "String",
                                                      "StringValue": reason[:256]}})
    logger.warning("request dead-lettered", extra={"reason": reason})


def _defer(rt: Runtime, request: AgentRequest, outcome, deferrals: int,
           first_received_at: float) -> dict:
    delay = min(MAX_SQS_DELAY_S, max(0, math.ceil(outcome.retry_after or 0)))
    envelope = {"request": request.to_dict(), "deferrals": deferrals + 1,
                "first_received_at": first_received_at, "transcript": outcome.transcript,
                "model": outcome.model}
    body = json.dumps(envelope, default=str)
    if len(body.encode()) > MAX_SQS_BODY_BYTES:
        envelope.pop("transcript")  # restart the conversation rather than lose the request
        body = json.dumps(envelope, default=str)
    rt.sqs.send_message(QueueUrl=rt.config.work_queue_url, MessageBody=body, DelaySeconds=delay)
    return {"status": "deferred", "request_id": request.request_id, "model": outcome.model,
            "retry_after": outcome.retry_after, "reason": outcome.reason}


def _enqueue_batch(rt: Runtime, request: AgentRequest) -> dict:
    """Lane "batch": a "queued" placeholder in the results table, then the batch queue. A
    request id seen before answers what is stored (a duplicate is not queued twice; one still
    queued is sent again, which the collector's claim makes harmless)."""
    if rt.config.batch_queue_url is None:
        return _error(request.request_id, "invalid_request",
                      "lane 'batch' is not deployed here (no BATCH_QUEUE_URL); use lane "
                      "'interactive'")
    response = {"status": "queued", "request_id": request.request_id, "lane": "batch",
                "model": request.model}
    stored = put_queued(rt.dynamodb, rt.config.results_table, request.tenant,
                        request.request_id, response,
                        int(rt.clock() + rt.config.result_ttl_s))
    if stored is not None and stored.get("status") != "queued":
        return stored
    body = {"request": request.to_dict(), "params": batch_params(request, rt.config),
            "attempt": 0, "queued_at": rt.clock()}
    rt.sqs.send_message(QueueUrl=rt.config.batch_queue_url,
                        MessageBody=json.dumps(body, default=str))
    if stored is None:
        metrics = RequestMetrics()
        metrics.add(request.model, "BatchQueued")
        metrics.flush()
    # the audit covers every request: a queued one too (its answer comes from the poller)
    logger.info("request finished", extra={
        "request_id": request.request_id, "tenant": request.tenant, "caller": request.caller,
        "status": "queued", "lane": "batch", "model": request.model, "model_calls": 0,
        "tool_calls": 0, "usage": {}, "duration_ms": 0})
    return response


# -- the core ----------------------------------------------------------------------------------

@tracer.capture_method(capture_response=False)
def _process(rt: Runtime, request: AgentRequest, context, *, deferrals: int = 0,
             first_received_at: float | None = None, transcript=None,
             model: str | None = None) -> dict:
    """Run one request through the agent and apply the overflow policy; never raises for
    Claude or capacity trouble. Completed answers are remembered by request id."""
    first_received_at = first_received_at or rt.clock()
    idempotency = IdempotencyConfig(event_key_jmespath="[tenant, request_id]",
                                    raise_on_no_idempotency_key=True,
                                    expires_after_seconds=rt.config.result_ttl_s)
    if context is not None and hasattr(context, "get_remaining_time_in_millis"):
        idempotency.register_lambda_context(context)

    @idempotent_function(data_keyword_argument="payload", persistence_store=rt.persistence,
                         config=idempotency)
    def answer(payload: dict) -> dict:
        response = _run(rt, request, context, deferrals, first_received_at, transcript, model)
        if response["status"] != "ok":
            # Only answers are remembered: a deferral, a rejection or an error must run again
            # when the request comes back (capacity or the upstream may have recovered).
            raise _NotFinal(response)
        return response

    try:
        return answer(payload={"request_id": request.request_id, "tenant": request.tenant})
    except _NotFinal as pending:
        return pending.response


def _run(rt: Runtime, request: AgentRequest, context, deferrals, first_received_at, transcript,
         model) -> dict:
    config = rt.config
    metrics = RequestMetrics()
    started = time.monotonic()
    budget = request.deadline_s
    if context is not None and hasattr(context, "get_remaining_time_in_millis"):
        budget = min(budget, context.get_remaining_time_in_millis() / 1000 - LAMBDA_SAFETY_S)
    deadline_at = started + max(0.0, budget)
    time_left = None
    if context is not None and hasattr(context, "get_remaining_time_in_millis"):
        def time_left() -> float:
            """Seconds this invocation may still spend on a Claude call."""
            return context.get_remaining_time_in_millis() / 1000 - LAMBDA_SAFETY_S

    def tool_context() -> ToolContext:
        session = assume_tool_role(rt.sts, config.tool_role_arn, request_id=request.request_id,
                                   tenant=request.tenant, agent=config.agent_name)
        return ToolContext(session=session, tenant=request.tenant,
                           request_id=request.request_id,
                           resources=ToolResources(config.docs_bucket, config.docs_prefix,
                                                   config.notes_table,
                                                   named=config.tool_needs))

    try:
        outcome = run_agent(request, rt.claude, config, tool_context=tool_context,
                            metrics=metrics, deadline_at=deadline_at, time_left=time_left,
                            logger=logger, transcript=transcript, model=model, mcp=rt.mcp)
        if outcome.status == "deferred":
            if config.overflow_policy == "reject":
                metrics.add(outcome.model, "Rejected")
                response = {"status": "rejected", "request_id": request.request_id,
                            "model": outcome.model, "retry_after": outcome.retry_after,
                            "error": {"type": "capacity",
                                      "message": f"no capacity within the deadline "
                                                 f"({outcome.reason}); retry after "
                                                 f"{outcome.retry_after:.1f} s"}}
            else:
                metrics.add(outcome.model, "Deferred")
                response = _defer(rt, request, outcome, deferrals, first_received_at)
        elif outcome.status == "ok":
            metrics.add(outcome.model, "Succeeded")
            response = {"status": "ok", "request_id": request.request_id, "model": outcome.model,
                        "output": outcome.output, "usage": outcome.usage}
        else:
            metrics.add(outcome.model, "Failed")
            response = {"status": "error", "request_id": request.request_id,
                        "model": outcome.model, "error": outcome.error}
        logger.info("request finished", extra={
            "request_id": request.request_id, "tenant": request.tenant,
            "caller": request.caller, "status": response["status"], "model": outcome.model,
            "model_calls": outcome.model_calls, "tool_calls": outcome.tool_calls,
            "usage": outcome.usage, "duration_ms": round((time.monotonic() - started) * 1000),
            **({"prompt": request.prompt} if config.log_prompts else {})})
        _store_result(rt, response, request.tenant)
        return response
    finally:
        metrics.flush()


# -- entry points ------------------------------------------------------------------------------

@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)  # responses may hold tenant data
def handler(event: Any, context: Any) -> dict:
    """Synchronous invoke or Function URL (AWS_IAM) request; see README for the event forms.
    Never raises: every problem is a response with status "error" naming it. An SQS batch
    (the deployed function's event source mapping) goes to `sqs_handler`."""
    if _is_sqs_batch(event):
        return _sqs_batch(event, context)
    url_event = is_function_url_event(event)
    response = _handle(event, context, url_event)
    if url_event:
        code = {"ok": 200, "deferred": 202, "queued": 202, "rejected": 429}.get(
            response["status"], 400)
        if response.get("error", {}).get("type") in ("internal", "configuration"):
            code = 500
        return {"statusCode": code, "headers": {"content-type": "application/json"},
                "body": json.dumps(response)}
    return response


def _handle(event: Any, context: Any, url_event: bool) -> dict:
    request_id = event.get("request_id") if isinstance(event, dict) else None
    try:
        rt = _runtime_or_error()
        caller = None
        if url_event:
            event, caller = function_url_payload(event)
            request_id = event.get("request_id") if isinstance(event, dict) else None
        if isinstance(event, dict) and event.get("action") == "get_result":
            return _fetch_result(rt, event)
        request = parse_request(event, rt.config, caller=caller)
        if request.lane == "batch":
            return _enqueue_batch(rt, request)
        return _process(rt, request, context)
    except BadRequest as err:
        return _error(request_id if isinstance(request_id, str) else None, "invalid_request",
                      str(err))
    except ConfigError as err:
        return _error(request_id, "configuration", str(err))
    except IdempotencyAlreadyInProgressError:
        return _error(request_id, "in_progress", f"request {request_id!r} is already being "
                                                 "processed; fetch its result later")
    except Exception:  # noqa: BLE001 - the handler never raises
        logger.exception("unhandled error")
        return _error(request_id if isinstance(request_id, str) else None, "internal",
                      "internal error; the request was not completed")


def _record_handler(record, lambda_context=None) -> None:
    """One SQS message: {"request": {...}, "deferrals": n, "first_received_at": epoch s,
    "transcript": [...]?, "model": str?} or a bare contract-2 request."""
    rt = _runtime_or_error()
    try:
        body = json.loads(record.body)
    except (json.JSONDecodeError, TypeError) as err:
        _send_to_dlq(rt, record.body, f"malformed body: not JSON ({err})")
        return
    if not isinstance(body, dict):
        _send_to_dlq(rt, body, "malformed body: not a JSON object")
        return
    envelope = body if "request" in body else {"request": body}
    try:
        deferrals = int(envelope.get("deferrals", 0))
        first_received_at = float(envelope.get("first_received_at") or rt.clock())
        if not math.isfinite(first_received_at):
            raise ValueError(f"first_received_at must be a time, got {first_received_at}")
        if envelope.get("model") is not None and envelope["model"] not in rt.config.models:
            raise ValueError(f"unknown model {envelope['model']!r} in the envelope")
        request = parse_request(envelope["request"], rt.config,
                                caller=(envelope["request"] or {}).get("caller")
                                if isinstance(envelope["request"], dict) else None)
    except (BadRequest, TypeError, ValueError) as err:
        _send_to_dlq(rt, body, f"malformed request: {err}")
        return
    # Queued work is asynchronous: it may wait for capacity as long as DEFAULT_DEADLINE_S
    # (within the Lambda's time) instead of re-deferring on the caller's short deadline.
    request.deadline_s = max(request.deadline_s, rt.config.default_deadline_s)
    if deferrals > rt.config.max_deferrals:
        _send_to_dlq(rt, body, f"deferred {deferrals} times, more than MAX_DEFERRALS="
                               f"{rt.config.max_deferrals}")
        return
    age = rt.clock() - first_received_at
    if age > rt.config.max_deferral_age_s:
        _send_to_dlq(rt, body, f"{age:.0f} s old, older than MAX_DEFERRAL_AGE_S="
                               f"{rt.config.max_deferral_age_s:g}")
        return
    if request.lane == "batch":  # queued work may choose the batch lane too
        _enqueue_batch(rt, request)
        return
    receives = int(record.attributes.approximate_receive_count or 1)
    try:
        _process(rt, request, lambda_context, deferrals=deferrals, first_received_at=first_received_at,
                 transcript=envelope.get("transcript"), model=envelope.get("model"))
    except IdempotencyAlreadyInProgressError:
        raise  # another worker has it; retry after the visibility timeout
    except Exception as err:
        if receives >= rt.config.max_receives:
            _send_to_dlq(rt, body, f"failed {receives} times: {type(err).__name__}: {err}")
            return
        raise


def _is_sqs_batch(event: Any) -> bool:
    records = event.get("Records") if isinstance(event, dict) else None
    return bool(records) and isinstance(records, list) and isinstance(records[0], dict) \
        and records[0].get("eventSource") == "aws:sqs"


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
def sqs_handler(event: Any, context: Any) -> dict:
    """SQS batch: returns {"batchItemFailures": [...]} so only failed messages are retried."""
    return _sqs_batch(event, context)


def _sqs_batch(event: Any, context: Any) -> dict:
    # Report every failed message instead of raising when all fail: the answer is the same
    # (SQS retries them) and the invocation itself does not count as a Lambda error.
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return process_partial_response(event=event, record_handler=_record_handler,
                                    processor=processor, context=context)
