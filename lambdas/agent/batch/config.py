"""The collector's and poller's environment, parsed once at cold start (docs/agent/batch.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from guard.values import default_of

from ..config import ConfigError, models_from_env, number_env, require_env
from ..contract import (BATCH_BUCKET_ID, BATCH_MAX_REQUESTS, BATCH_VISIBILITY_TIMEOUT_S,
                        DEFAULT_BATCH_MAX_ITEMS, DEFAULT_BATCH_MAX_RETRIES, DEFAULT_BATCH_MAX_WAIT_S,
                        DEFAULT_BATCH_QUEUE_CAP, DEFAULT_BATCH_RPM, Env, ModelSpec)

#: Published hard caps of one batch (Anthropic Message Batches): requests and bytes.
HARD_MAX_REQUESTS = BATCH_MAX_REQUESTS
HARD_MAX_BYTES = 256 * 1000 * 1000  # "256 MB": the smaller reading, to stay under either


@dataclass(frozen=True)
class BatchConfig:
    queue_url: str
    dlq_url: str
    batch_table: str
    bucket_table: str
    results_table: str
    models: dict[str, ModelSpec]
    api_key_secret_arn: str | None = None
    #: the batch endpoints' own bucket item (requests per minute, shared by every model)
    bucket_id: str = BATCH_BUCKET_ID
    # The tunables below default to the contract's (`agent.contract.DEFAULT_BATCH_*`), as the
    # stack's `BatchSettings` do.
    #: the batch endpoints' requests per minute
    rpm: float = float(DEFAULT_BATCH_RPM)
    #: most requests waiting in the provider's processing queue (a counter, not a bucket)
    queue_cap: int = DEFAULT_BATCH_QUEUE_CAP
    max_items: int = DEFAULT_BATCH_MAX_ITEMS
    max_bytes: int = HARD_MAX_BYTES
    #: seconds the oldest queued request waits before a partial batch is submitted
    max_wait_s: float = float(DEFAULT_BATCH_MAX_WAIT_S)
    #: times an item goes back to the queue (transient errors, expiry, cancel) before the DLQ
    max_retries: int = DEFAULT_BATCH_MAX_RETRIES
    #: cancel a batch still processing after this many seconds (None: let it expire at 24 h)
    cancel_after_s: float | None = None
    result_ttl_s: int = 86_400
    #: seconds a received message stays hidden while a run decides (longer than a run)
    visibility_timeout_s: int = BATCH_VISIBILITY_TIMEOUT_S
    aws_region: str = "us-east-1"
    #: the payload bucket (PAYLOAD_BUCKET; `agent.payloads`): answers over the results item's
    #: inline limit are kept there behind a pointer. None: such an answer is dead-lettered.
    payload_bucket: str | None = None

    @property
    def counter_key(self) -> str:
        """The bucket-table item holding the queued-requests counter."""
        return f"{self.bucket_id}#queued"


def load_batch_config(env: Mapping[str, str]) -> BatchConfig:
    """Parse the collector's and poller's environment; raises `ConfigError` naming the first
    bad variable. A tunable's default is BatchConfig's."""

    def tunable(name: str, field_name: str, cast: type, minimum: float):
        return number_env(env, name, default_of(BatchConfig, field_name), cast, minimum)

    provider = env.get(Env.PROVIDER, "anthropic").strip() or "anthropic"
    if provider != "anthropic":
        raise ConfigError(f"{Env.PROVIDER}={provider!r}: the batch lane runs on the Anthropic "
                          "Message Batches API only")
    max_items = tunable(Env.BATCH_MAX_ITEMS, "max_items", int, 1)
    if max_items > HARD_MAX_REQUESTS:
        raise ConfigError(f"{Env.BATCH_MAX_ITEMS}={max_items} is over the API's "
                          f"{HARD_MAX_REQUESTS:,} requests per batch")
    max_bytes = tunable("BATCH_MAX_BYTES", "max_bytes", int, 1_000)
    if max_bytes > HARD_MAX_BYTES:
        raise ConfigError(f"BATCH_MAX_BYTES={max_bytes} is over the API's {HARD_MAX_BYTES:,} "
                          "bytes per batch")
    cancel = env.get(Env.BATCH_CANCEL_AFTER_S, "").strip()
    return BatchConfig(
        queue_url=require_env(env, Env.BATCH_QUEUE_URL, "the batch queue URL"),
        dlq_url=require_env(env, Env.BATCH_DLQ_URL, "the batch dead-letter queue URL"),
        batch_table=require_env(env, Env.BATCH_TABLE, "the batch state table name"),
        bucket_table=require_env(env, Env.BUCKET_TABLE, "the rate-limit bucket table name"),
        results_table=require_env(env, Env.RESULTS_TABLE, "the results table name"),
        models=models_from_env(env),
        api_key_secret_arn=env.get(Env.API_KEY_SECRET_ARN, "").strip() or None,
        bucket_id=env.get(Env.BATCH_BUCKET_ID, "").strip() or BATCH_BUCKET_ID,
        rpm=tunable(Env.BATCH_RPM, "rpm", float, 1),
        queue_cap=tunable(Env.BATCH_QUEUE_CAP, "queue_cap", int, 1),
        max_items=max_items, max_bytes=max_bytes,
        max_wait_s=tunable(Env.BATCH_MAX_WAIT_S, "max_wait_s", float, 0),
        max_retries=tunable(Env.BATCH_MAX_RETRIES, "max_retries", int, 0),
        cancel_after_s=number_env(env, Env.BATCH_CANCEL_AFTER_S, None, float, 60) if cancel
        else None,
        result_ttl_s=tunable("RESULT_TTL_S", "result_ttl_s", int, 60),
        visibility_timeout_s=tunable("BATCH_VISIBILITY_TIMEOUT_S", "visibility_timeout_s", int,
                                     1),
        aws_region=env.get("AWS_REGION",
                           env.get("AWS_DEFAULT_REGION", default_of(BatchConfig, "aws_region"))),
        payload_bucket=env.get(Env.PAYLOAD_BUCKET, "").strip() or None)
