"""Bulwark's guard: keeps every Claude call inside the organisation's quota.

`import guard` is cheap (no boto3, no anthropic at import time): the AWS and Claude SDKs load
on first use.
"""

from .bucket import (
    BucketRequestError,
    Grant,
    Settlement,
    TokenBucket,
    ensure_table,
)
from .limits import Limits, LimitsError

__all__ = [
    "BucketRequestError",
    "Grant",
    "Limits",
    "LimitsError",
    "Settlement",
    "TokenBucket",
    "ensure_table",
]
