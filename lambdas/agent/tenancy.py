"""Which tenant a caller acts for: derived from the caller's IAM identity, never from a request
body. Pure functions over the configured `TenantSpec`s; no I/O.

A Function URL (AuthType AWS_IAM) request carries its signer in
`requestContext.authorizer.iam.userArn`; for a role session that is
`arn:<partition>:sts::<account>:assumed-role/<role name>/<session>` (no role path). A tenant's
`principals` are role ARNs, matched on partition, account and role name. Only role sessions are
mapped: IAM users, federated users and the root user are refused.

* A caller bound to one tenant need not name it; bound to several, it names one of them.
* An unbound tenant (no principals; deployable only with `allow_unbound_tenants`) is open to
  every role session: that mode trusts the request body, as the local demo and tests do.
* A refusal (`ForbiddenTenant`) names the caller's role, never another tenant.

Direct invokes and queued work carry no caller identity: their tenant is trusted by
configuration (who may invoke the function or send to the queue) and not checked here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

from .contract import TenantSpec, role_identity

#: A role session's ARN: groups partition, account, role name, session name.
_ASSUMED_ROLE = re.compile(r"^arn:(aws[a-z-]*):sts::(\d{12}):assumed-role/([\w+=,.@-]{1,64})/(.+)$")
#: Other principal ARNs a Function URL may report, by what they are (for the refusal).
_OTHER_CALLERS = (
    (re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:user/"), "an IAM user"),
    (re.compile(r"^arn:aws[a-z-]*:sts::\d{12}:federated-user/"), "a federated user"),
    (re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:root$"), "the account's root user"),
)


class ForbiddenTenant(Exception):
    """The caller may not act for the tenant (HTTP 403, error type `forbidden_tenant`); the
    message names the caller's role and never another tenant."""


class UnclearTenant(ValueError):
    """The request does not say which of the caller's tenants it is for, or names it in a bad
    form (HTTP 400, `invalid_request`)."""


@dataclass(frozen=True)
class Caller:
    """A role session that signed a request."""

    arn: str
    partition: str
    account: str
    role_name: str
    session: str

    @property
    def role(self) -> str:
        """The role as refusals name it: "<role name> (account <account>)"."""
        return f"{self.role_name} (account {self.account})"


def caller_from_arn(user_arn: Any) -> Caller:
    """The role session behind a Function URL's `userArn`; ForbiddenTenant for anything else
    (no ARN, an IAM user, a federated user, the root user, another principal)."""
    if not isinstance(user_arn, str) or not user_arn:
        raise ForbiddenTenant("the request carries no IAM caller (requestContext.authorizer."
                              "iam.userArn): call the Function URL with SigV4 credentials of "
                              "an IAM role bound to a tenant")
    match = _ASSUMED_ROLE.match(user_arn)
    if match is None:
        kind = next((what for pattern, what in _OTHER_CALLERS if pattern.match(user_arn)),
                    "not an IAM role session")
        raise ForbiddenTenant(f"caller {user_arn} is {kind}: tenants are bound to IAM roles; "
                              "call with a session of a role bound to a tenant")
    return Caller(user_arn, *match.groups())


def is_bound(spec: TenantSpec, caller: Caller) -> bool:
    """True when one of the tenant's principals is the caller's role (partition, account and
    role name; a principal's path does not appear in session ARNs)."""
    return any(role_identity(principal) == (caller.partition, caller.account, caller.role_name)
               for principal in spec.principals)


def bound_tenants(specs: Sequence[TenantSpec], caller: Caller) -> tuple[str, ...]:
    """The tenants the caller's role is bound to, in configured order."""
    return tuple(spec.name for spec in specs if is_bound(spec, caller))


def open_tenants(specs: Sequence[TenantSpec], caller: Caller) -> tuple[str, ...]:
    """The tenants the caller may act for: those bound to its role, then the unbound ones."""
    return bound_tenants(specs, caller) + tuple(spec.name for spec in specs if not spec.bound)


def _caller_tenants(specs: Sequence[TenantSpec], user_arn: Any, named: Any
                    ) -> tuple[Caller, tuple[str, ...]]:
    """(the caller, the tenants it may act for); UnclearTenant for a name in a bad form,
    ForbiddenTenant for a caller that is not a role session or may act for no tenant."""
    if named is not None and not isinstance(named, str):
        raise UnclearTenant(f"tenant must be a string, got {type(named).__name__}")
    caller = caller_from_arn(user_arn)
    allowed = open_tenants(specs, caller)
    if not allowed:
        raise ForbiddenTenant(f"role {caller.role} is not bound to any tenant of this "
                              "deployment")
    return caller, allowed


def tenant_for_caller(specs: Sequence[TenantSpec], user_arn: Any, named: Any = None) -> str:
    """The tenant a Function URL request acts for. `user_arn`: the request's signer;
    `named`: the body's `tenant` (None when absent).

    A named tenant must be one the caller may act for (`open_tenants`); without a name, the
    caller's one bound tenant, else the first unbound tenant. ForbiddenTenant when the caller
    may not act for the named tenant or for any; UnclearTenant when it is bound to several
    and names none, or names one in a bad form."""
    caller, allowed = _caller_tenants(specs, user_arn, named)
    if named is not None:
        if named not in allowed:
            raise ForbiddenTenant(f"role {caller.role} is not bound to the tenant it named")
        return named
    bound = bound_tenants(specs, caller)
    if len(bound) > 1:
        raise UnclearTenant(f"role {caller.role} is bound to several tenants "
                            f"({', '.join(bound)}): name one in 'tenant'")
    return bound[0] if bound else allowed[0]


def readable_tenants(specs: Sequence[TenantSpec], user_arn: Any, named: Any = None
                     ) -> tuple[str, ...]:
    """The tenants whose results a Function URL caller may fetch (`get_result`): the named
    one when the caller may act for it, else none (the result is then "not found", as an
    unknown id); without a name, every tenant it may act for, its own first (the one
    `get_result` reads). ForbiddenTenant when the caller may act for no tenant at all;
    UnclearTenant for a name in a bad form."""
    _, allowed = _caller_tenants(specs, user_arn, named)
    if named is None:
        return allowed
    return (named,) if named in allowed else ()
