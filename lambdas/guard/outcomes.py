"""The statuses and reasons callers can test: one table for the bucket, the guarded client, the
agent and the docs (docs/guard/index.md, "Statuses and reasons").

`Grant.reason` (a refusal of `TokenBucket.try_acquire`) is one of `BUCKET_REASONS`;
`CallResult.reason` (status "deferred") one of `DEFERRAL_REASONS`; `CallResult.error["type"]`
(status "error") one of `ERROR_TYPES` or the upstream's own error type.
"""

from __future__ import annotations

OK, DEFERRED, ERROR = "ok", "deferred", "error"
#: A call refused before any Claude call (a spent budget, with the tenant's action "reject").
REJECTED = "rejected"

STATUSES = {
    OK: "answered: `message` (or `stream`) and `usage`",
    DEFERRED: "not served within the deadline: retry after `retry_after` seconds (the "
              "`ticket`, when set, keeps the call's place)",
    REJECTED: "refused before any Claude call for a spent budget (reason `budget` or "
              "`budget_reserved`, the tenant's action): retry after `retry_after` seconds",
    ERROR: "not worth retrying as sent: `error` = {type, message}",
}

QUOTA = "quota"
COOL_DOWN = "cool_down"
STORE_UNAVAILABLE = "store_unavailable"
FAIR_SHARE = "fair_share"
TENANT_CAP = "tenant_cap"

#: reason -> what it means, for a bucket refusal (also a deferral reason)
BUCKET_REASONS = {
    QUOTA: "the bucket has no capacity within the wait allowed (a tenant's refusal carries a "
           "ticket: its place behind the queue)",
    COOL_DOWN: "an upstream 429/529 set a shared cool-down covering the start",
    STORE_UNAVAILABLE: "DynamoDB could not be reached or refused the write: never a grant",
    FAIR_SHARE: "the tenant holds its weighted share of the queue; the ticket keeps its place",
    TENANT_CAP: "the tenant's own per-minute cap (TenantShare rpm/itpm/otpm/tpm) is reached",
}

#: reason -> what it means, for a "deferred" call result beyond the bucket's reasons
DEFERRAL_REASONS = {
    **BUCKET_REASONS,
    "upstream_429": "Claude answered 429 within every retry the deadline allowed",
    "upstream_529": "Claude answered 529 (overloaded) within every retry the deadline allowed",
    "upstream_error": "5xx, timeout or connection errors within every retry allowed",
    "time_left": "the invocation had too little time left to start a call",
    "stale_grant": "grants kept going stale before their send (a slow host)",
    "budget": "the tenant's budget is spent",
    "budget_reserved": "the tenant's budget is reserved by calls in flight",
}

#: error type -> what it means, for an "error" call result (the upstream's own types pass too)
ERROR_TYPES = {
    "invalid_request": "the call's parameters are malformed (named in the message)",
    "unknown_model": "the model has no configured bucket",
    "unknown_tenant": "the tenant is not configured on the model's bucket",
    "request_too_large": "the reservation exceeds a capacity: it could never be granted",
    "spend_limit_reached": "the organisation's spend limit: never retried",
}
