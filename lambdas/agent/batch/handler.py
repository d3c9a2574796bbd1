"""Lambda entry points of the batch lane (same asset as the agent, own functions and roles):
`agent.batch.handler.collector_handler` and `agent.batch.handler.poller_handler`, each run on a
schedule. Configuration: docs/agent/batch.md ("Batch lane environment")."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from typing import Any

from aws_lambda_powertools import Logger

from guard import Limits, TokenBucket
from guard.budget import BudgetLedger

from ..config import ConfigError
from ..payloads import PayloadStore
from ..telemetry import RequestMetrics
from .api import BatchApi
from .collector import Collector
from .config import BatchConfig, load_batch_config
from .outcomes import DeadLetters
from .poller import Poller
from .state import BatchStore

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "bulwark-batch"))


class BatchRuntime:
    """Clients built once per container; injected clients are used as given (tests)."""

    def __init__(self, env=os.environ, *, dynamodb=None, sqs=None, secrets=None,
                 claude=None, s3=None, clock=time.time) -> None:
        import boto3

        self.config: BatchConfig = load_batch_config(env)
        self.dynamodb = dynamodb or boto3.client("dynamodb")
        self.sqs = sqs or boto3.client("sqs")
        self._secrets = secrets
        self._claude = claude
        self._s3 = s3
        self.clock = clock
        self.bucket = TokenBucket(self.config.bucket_table, self.config.bucket_id,
                                  Limits(rpm=self.config.rpm), self.dynamodb, clock=clock)
        self.store = BatchStore(self.dynamodb, self.config.batch_table,
                                self.config.bucket_table, self.config.counter_key, clock)

    def claude(self):
        if self._claude is None:
            import anthropic

            # max_retries=0: every HTTP request goes through the guard (BatchApi)
            self._claude = anthropic.Anthropic(api_key=self._api_key(), max_retries=0)
        return self._claude

    def refreshed_claude(self):
        """After a 401: the client again with the key read afresh (a rotated key), kept for the
        container's later runs."""
        key = self._api_key()
        client = self.claude()
        self._claude = client.with_options(api_key=key)
        logger.warning("batch endpoints: 401, API key read afresh%s",
                       "" if key != getattr(client, "api_key", None) else
                       " (unchanged: the secret still holds the same key)")
        return self._claude

    def api(self) -> BatchApi:
        """The batch endpoints through the batch bucket; a 401 refreshes the key once when it
        comes from the secret."""
        refresh = self.refreshed_claude if self.config.api_key_secret_arn else None
        return BatchApi(self.claude(), self.bucket, refresh)

    def _api_key(self) -> str:
        import boto3

        if not self.config.api_key_secret_arn:
            raise ConfigError("API_KEY_SECRET_ARN is not set")
        secrets = self._secrets or boto3.client("secretsmanager")
        value = secrets.get_secret_value(SecretId=self.config.api_key_secret_arn,
                                         VersionStage="AWSCURRENT")["SecretString"]
        try:
            parsed = json.loads(value)
            return parsed["api_key"] if isinstance(parsed, dict) else value
        except (json.JSONDecodeError, KeyError):
            return value

    def collector(self, metrics=None, **kwargs) -> Collector:
        return Collector(self.config, sqs=self.sqs, store=self.store, api=self.api(),
                         dead_letters=self.dead_letters(), metrics=metrics, clock=self.clock,
                         **kwargs)

    def poller(self, metrics=None, **kwargs) -> Poller:
        return Poller(self.config, sqs=self.sqs, dynamodb=self.dynamodb, store=self.store,
                      api=self.api(), dead_letters=self.dead_letters(), metrics=metrics,
                      payloads=self.payloads(), clock=self.clock,
                      budget=BudgetLedger(self.config.bucket_table, self.dynamodb,
                                          clock=self.clock), **kwargs)

    def dead_letters(self) -> DeadLetters:
        return DeadLetters(self.config, sqs=self.sqs, dynamodb=self.dynamodb, clock=self.clock,
                           payloads=self.payloads())

    def payloads(self) -> PayloadStore:
        """The payload bucket (answers over the results item's inline limit); its S3 client is
        built only when PAYLOAD_BUCKET is set."""
        if self._s3 is None and self.config.payload_bucket:
            import boto3

            self._s3 = boto3.client("s3")
        return PayloadStore(self._s3, self.config.payload_bucket, self.clock)


_runtime: BatchRuntime | None = None


def _rt() -> BatchRuntime:
    global _runtime
    if _runtime is None:
        _runtime = BatchRuntime()
    return _runtime


def _run(kind: str) -> dict[str, Any]:
    metrics = RequestMetrics()
    rt = _rt()
    worker = rt.collector(metrics) if kind == "collector" else rt.poller(metrics)
    summary = worker.run()
    metrics.flush()
    result = asdict(summary)
    if summary.key_refused:  # the API key: an operator must act
        logger.error(f"batch {kind} run stopped: {summary.stopped}", extra={"summary": result})
    else:
        logger.info(f"batch {kind} run", extra={"summary": result})
    return result


@logger.inject_lambda_context(clear_state=True)
def collector_handler(event: Any, context: Any) -> dict:
    return _run("collector")


@logger.inject_lambda_context(clear_state=True)
def poller_handler(event: Any, context: Any) -> dict:
    return _run("poller")
