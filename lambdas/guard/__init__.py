"""Bulwark's guard: keeps every Claude call inside the organisation's quota.

`import guard` is cheap (no boto3, no anthropic at import time): the AWS and Claude SDKs load
on first use.
"""

from .budget import Budget
from .bucket import (
    BucketRequestError,
    Grant,
    Settlement,
    TokenBucket,
    ensure_table,
)
from .client import CallResult, GuardedClaude, GuardedStream
from .estimate import estimate_input_tokens
from .limits import Limits, LimitsError, TenantShare
from .prices import Prices
from .pools import Pool
from .usage import Usage

__all__ = [
    "BucketRequestError",
    "Budget",
    "CallResult",
    "GuardedClaude",
    "GuardedStream",
    "Grant",
    "Limits",
    "LimitsError",
    "Prices",
    "Pool",
    "Settlement",
    "TenantShare",
    "TokenBucket",
    "Usage",
    "ensure_table",
    "estimate_input_tokens",
]
