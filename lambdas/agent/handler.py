"""Agent Lambda entry points: `handler` (synchronous invoke or Function URL) and
`sqs_handler` (deferred and asynchronous work, partial batch failures).

The tenant of a Function URL request is derived from its IAM caller (`tenancy`): the body may
name one of the caller's tenants, never another (403 `forbidden_tenant`). A direct invoke
carries no caller identity: its `tenant` is trusted by configuration (who may invoke the
function: docs/tenants.md, "Tenants and callers").

The work itself lives beside this module: `runtime` (what is built once per container),
`requests` (parsing events and queue messages), `service` (one request: idempotency and the
overflow policy), `queues` (deferral, batch lane, dead letters) and `results` (the results
table and `get_result`). Here: the cold start, the dispatch on the event's shape and the
Function URL mapping of responses to HTTP.

Cold start: configuration is parsed and AWS clients are built at init, which SnapStart
snapshots. `anthropic` (about 2 s of imports) is loaded at init only when the function
initialises for a snapshot (`AWS_LAMBDA_INITIALIZATION_TYPE=snap-start`); otherwise it loads on
the first Claude call, so bad input, result fetches and deferrals never pay for it.
`bench/cold_start.py` reports the import time.
"""

from __future__ import annotations

import json
import os
from typing import Any

from aws_lambda_powertools.utilities.batch import (BatchProcessor, EventType,
                                                   process_partial_response)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError)

from .config import ConfigError
from .payloads import PayloadError
from .queues import dead_letter_reason, enqueue_batch, named_request, send_to_dlq
from .requests import (BadRequest, MalformedMessage, function_url_payload,
                       is_function_url_event, parse_request, parse_work_message)
from .results import error_response, fetch_result
from .runtime import Runtime, build_runtime, logger, tracer
from .service import process
from .tenancy import ForbiddenTenant, UnclearTenant, readable_tenants, tenant_for_caller

#: Function URL status code per response status (anything else: 400; internal and
#: configuration errors: 500; a tenant the caller may not act for: 403).
HTTP_STATUS = {"ok": 200, "deferred": 202, "queued": 202, "rejected": 429}

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


def current_runtime() -> Runtime:
    """The container's `Runtime`, built from the environment on first use; raises
    ConfigError (naming the variable) when the environment is bad."""
    if _runtime is None:
        _init()
    if _runtime is None:
        raise ConfigError(_runtime_error or "not configured")
    return _runtime


def reset_runtime() -> None:
    """Forget the container's `Runtime`: the next call builds it from the environment again
    (tests and the local demo set the environment after this module is imported)."""
    global _runtime, _runtime_error
    _runtime, _runtime_error = None, None


# -- entry points ------------------------------------------------------------------------------

@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)  # responses may hold tenant data
def handler(event: Any, context: Any) -> dict:
    """Synchronous invoke or Function URL (AWS_IAM) request; see docs/agent/index.md for the event forms.
    Never raises: every problem is a response with status "error" naming it. An SQS batch
    (the deployed function's event source mapping) goes to `sqs_handler`."""
    if _is_sqs_batch(event):
        return _sqs_batch(event, context)
    url_event = is_function_url_event(event)
    response = _handle(event, context, url_event)
    return function_url_response(response) if url_event else response


def function_url_response(response: dict) -> dict:
    """An agent response as the Function URL's HTTP response (JSON body)."""
    code = HTTP_STATUS.get(response["status"], 400)
    if response.get("error", {}).get("type") in ("internal", "configuration"):
        code = 500
    elif response.get("error", {}).get("type") == "forbidden_tenant":
        code = 403
    return {"statusCode": code, "headers": {"content-type": "application/json"},
            "body": json.dumps(response)}


def _handle(event: Any, context: Any, url_event: bool) -> dict:
    request_id = event.get("request_id") if isinstance(event, dict) else None
    try:
        rt = current_runtime()
        caller = tenant = readable = None
        if url_event:
            event, caller = function_url_payload(event)
            request_id = event.get("request_id") if isinstance(event, dict) else None
            if not isinstance(event, dict):
                raise BadRequest(f"the HTTP body must be a JSON object, got "
                                 f"{type(event).__name__}")
            if event.get("action") == "get_result":
                readable = readable_tenants(rt.config.tenant_specs, caller, event.get("tenant"))
            else:
                tenant = tenant_for_caller(rt.config.tenant_specs, caller, event.get("tenant"))
        if isinstance(event, dict) and event.get("action") == "get_result":
            return fetch_result(rt, event, readable=readable)
        request = parse_request(event, rt.config, caller=caller, tenant=tenant)
        if request.lane == "batch":
            return enqueue_batch(rt, request)
        return process(rt, request, context)
    except (BadRequest, UnclearTenant) as err:
        return error_response(request_id if isinstance(request_id, str) else None,
                              "invalid_request", str(err))
    except ForbiddenTenant as err:
        return error_response(request_id if isinstance(request_id, str) else None,
                              "forbidden_tenant", str(err))
    except ConfigError as err:
        return error_response(request_id, "configuration", str(err))
    except IdempotencyAlreadyInProgressError:
        return error_response(request_id, "in_progress", f"request {request_id!r} is already "
                                                         "being processed; fetch its result "
                                                         "later")
    except Exception:  # noqa: BLE001 - the handler never raises
        logger.exception("unhandled error")
        return error_response(request_id if isinstance(request_id, str) else None, "internal",
                              "internal error; the request was not completed")


def _record_handler(record, lambda_context=None) -> None:
    """One work-queue message (`requests.parse_work_message`): dead-lettered when malformed
    (with an error answer when it names a tenant and request id), deferred too often or too
    old; otherwise served. A claim check the payload bucket cannot serve for now is retried.
    Raising leaves it to SQS to retry; after MAX_RECEIVES failed receives it is dead-lettered
    instead, with its error answer."""
    rt = current_runtime()
    receives = int(record.attributes.approximate_receive_count or 1)
    try:
        message = parse_work_message(record.body, rt.config, now=rt.clock(),
                                     payloads=rt.payloads)
    except MalformedMessage as err:  # answered when it names a tenant and request id
        send_to_dlq(rt, err.body, str(err), request=named_request(err.body, rt.config))
        return
    except PayloadError as err:  # a claim check the bucket cannot serve for now
        if receives < rt.config.max_receives:
            raise
        body = json.loads(record.body)
        send_to_dlq(rt, body, f"claim check unreadable after {receives} receives: {err}",
                    request=named_request(body, rt.config))
        return
    reason = dead_letter_reason(message, rt.config, now=rt.clock())
    if reason is not None:
        send_to_dlq(rt, message.body, reason, request=message.request)
        return
    if message.request.lane == "batch":  # queued work may choose the batch lane too
        enqueue_batch(rt, message.request)
        return
    try:
        process(rt, message.request, lambda_context, deferrals=message.deferrals,
                first_received_at=message.first_received_at, transcript=message.transcript,
                model=message.model, spent=message.spent)
    except IdempotencyAlreadyInProgressError:
        raise  # another worker has it; retry after the visibility timeout
    except Exception as err:
        if receives >= rt.config.max_receives:
            send_to_dlq(rt, message.body, f"failed {receives} times: {type(err).__name__}: "
                                          f"{err}", request=message.request)
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
