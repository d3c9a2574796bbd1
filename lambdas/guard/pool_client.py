"""The guarded client of one capacity pool, as a `guard.pools.PoolRouter` drives it.

Each pool of a logical model has one: its own SDK client (endpoint, auth, service tier), the
router's options, and the grant the router booked for it (`BOOKED`), so the call it sends is
the one the router placed. A stream it serves settles the logical model's budget at its owner,
the router.
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING, Any

from .client import CallResult, GuardedClaude
from .pool_spec import SERVICE_TIER_HEADER, Pool
from .send_timing import StampedGrant

if TYPE_CHECKING:
    from .pools import PoolRouter

#: The grant the router booked for the pool client's next acquire (None: it books its own).
BOOKED: contextvars.ContextVar[StampedGrant | None] = contextvars.ContextVar(
    "bulwark_pool_grant", default=None)


class PoolClient(GuardedClaude):
    """The guarded client of one pool: its SDK client (endpoint, auth, service tier), one
    attempt per call, and a grant the router booked already."""

    def __init__(self, pool: Pool, owner: PoolRouter | None = None, **options: Any) -> None:
        sdk = pool.sdk_client
        if sdk is not None and pool.provider == "bedrock" and pool.service_tier:
            sdk = sdk.with_options(default_headers={SERVICE_TIER_HEADER: pool.service_tier})
        super().__init__({pool.model: pool.bucket}, provider=pool.provider, sdk_client=sdk,
                         aws_region=pool.aws_region, **options)
        self.pool = pool
        self._owner = owner

    def _settle_budget(self, result: CallResult, *, ended: bool) -> None:
        """The logical model's budget is the router's: a stream that ends settles there."""
        if self._owner is not None:
            self._owner._settle_budget(result, ended=ended)

    @property
    def sdk(self):
        if self._sdk is None:
            import anthropic

            pool, headers = self.pool, {}
            if pool.provider == "bedrock":
                if pool.service_tier:
                    headers[SERVICE_TIER_HEADER] = pool.service_tier
                self._sdk = anthropic.AnthropicBedrock(
                    aws_region=pool.aws_region, base_url=pool.base_url, max_retries=0,
                    timeout=self.timeout_s, default_headers=headers or None)
            else:
                self._sdk = anthropic.Anthropic(api_key=self._key(refresh=False),
                                                base_url=pool.base_url, max_retries=0,
                                                timeout=self.timeout_s)
            self._sdk_ready = False
        return self._sdk

    def _acquire(self, bucket, estimate, max_tokens, deadline, result, place=(None, None,
                                                                              "interactive")):
        held = BOOKED.get()
        if held is None:
            return super()._acquire(bucket, estimate, max_tokens, deadline, result, place)
        BOOKED.set(None)  # used once: a second acquire in this call books again
        grant = held.grant
        if grant.start_at > grant.returned_at and not held.started \
                and not self.sleep_until_start(bucket, held, result):
            return super()._acquire(bucket, estimate, max_tokens, deadline, result, place)
        return held
