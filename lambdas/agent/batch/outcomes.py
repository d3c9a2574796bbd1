"""Dead letters that answer, shared by the collector and the poller: every request the lane
gives up on gets an error answer with the reason in the results table (so `get_result` stops
saying "queued") and a message with the same reason on the batch DLQ."""

from __future__ import annotations

import json
import logging
from typing import Callable

from ..results import put_result_once
from .config import BatchConfig

log = logging.getLogger(__name__)

#: AWS error codes that say "try again later", not "this request is wrong"
TRANSIENT_CODES = frozenset({
    "ThrottlingException", "ProvisionedThroughputExceededException", "RequestLimitExceeded",
    "InternalServerError", "InternalFailure", "ServiceUnavailable", "ServiceUnavailableException",
    "TransactionInProgressException", "TransactionConflictException", "RequestThrottled",
    "Throttling", "SlowDown"})


def transient(err: Exception) -> bool:
    """Whether an AWS client error is the store's or the network's passing trouble."""
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

    if isinstance(err, (ConnectionError, HTTPClientError)):
        return True
    return isinstance(err, ClientError) and \
        err.response.get("Error", {}).get("Code") in TRANSIENT_CODES


class DeadLetters:
    def __init__(self, config: BatchConfig, *, sqs, dynamodb, clock: Callable[[], float]) -> None:
        self.config = config
        self.sqs = sqs
        self.dynamodb = dynamodb
        self.clock = clock

    def send(self, body: dict, reason: str, request: dict | None = None) -> bool:
        """Answer the request with an error naming `reason`, then put `body` on the DLQ with
        it. `request` (default `body["request"]`) names whose request it is. True when an
        error answer was stored (False: no request to answer, or answered already)."""
        answered = self.answer(request if request is not None else body.get("request"), reason)
        self.sqs.send_message(
            QueueUrl=self.config.dlq_url,
            MessageBody=json.dumps({**body, "dlq_reason": reason,
                                    "dead_lettered_at": self.clock()}, default=str),
            MessageAttributes={"reason": {"DataType": "String", "StringValue": reason[:256]}})
        return answered

    def answer(self, request: dict | None, reason: str) -> bool:
        """Store the error answer of `request` ({"tenant", "request_id", "model"?}) once, over
        nothing or its "queued" placeholder. False when the request cannot be named or was
        answered already, or the table refuses this key (a tenant the role may not write)."""
        from botocore.exceptions import ClientError

        if not isinstance(request, dict):
            return False
        tenant, request_id = request.get("tenant"), request.get("request_id")
        if not isinstance(tenant, str) or not isinstance(request_id, str):
            return False
        response = {"status": "error", "request_id": request_id, "lane": "batch",
                    "error": {"type": "batch_failed", "message": reason}}
        if isinstance(request.get("model"), str):
            response["model"] = request["model"]
        try:
            return put_result_once(self.dynamodb, self.config.results_table, tenant, request_id,
                                   response, int(self.clock() + self.config.result_ttl_s))
        except ClientError as err:
            if transient(err):
                raise
            log.error("error answer for %s/%s not stored: %s", tenant, request_id, err)
            return False
