"""Budgets and tenant shares changed without a redeploy: show them, set them, list who
changed what, release a tenant the runaway breaker throttled.

    python -m cli.limits show    --stack STACK [--region R] [--endpoint-url URL] [--json]
    python -m cli.limits set     --stack STACK KEY=VALUE [KEY=VALUE ...] [--reason TEXT]
    python -m cli.limits history --stack STACK [--json]
    python -m cli.limits clear-runaway --stack STACK (--tenant NAME | --deployment)

Keys are cdk.json's: `budget.<field>` (the deployment's), `tenants.<name>.budget.<field>`,
a tenant's share `tenants.<name>.weight` and its caps `tenants.<name>.rpm|itpm|otpm|tpm`
(per minute; null removes a cap), and `models.<model id>.tokens_per_day`, with `<field>` one
of usd_per_day, usd_per_month, tokens_per_day, action, degrade_to (a VALUE is JSON: 50, null,
"degrade"; a bare word is a string). A set is validated by the same schema as cdk.json
(`stacks.settings.load_limits`, a cap only on a dimension every model's bucket enforces); a
bad value changes nothing and says why (`bulwark: bad configuration: ...`, status 2).

Where: the stack's outputs name the limits config table (LimitsTable) and the agent function
(FunctionName), whose environment holds the tenants and their shares, the models and the
budgets on deploy (TENANTS, MODELS, BUDGETS). The limits item (`pk = "limits"`) replaces
those in every caller within 30 s of a set (`guard.spend.LimitsSource`); the tenant shares
reach the buckets through the bucket item, pinned to the item's version, so all callers
switch together (`guard.shares`). Each set writes, in one transaction, the new item
(conditional on the version it replaced: two operators cannot overwrite each other unseen)
and a change record (`pk = "limits#change#<time>#<id>"`: who (the caller's ARN), what (the
KEY=VALUE list), before, after, reason) that `history` and `python -m cli.audit --limits`
list; CloudTrail records the writes too (the trail's write-only selector on the table). The
runaway breaker writes its throttles the same way; `set` keeps them, `clear-runaway` releases
one.

Exit status: 0; 2 for a bad value, a bad option or an AWS problem (message on stderr).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from typing import Any, Callable


from cli import aws
from cli.table import aligned
from guard.budget import WINDOWS, BudgetLedger, day_of
from guard.limits import CAP_KEYS
from guard.runaway import DEPLOYMENT, runaway_change
from guard.spend import (CHANGE_PREFIX, LimitsConflict, LimitSet, plain_numbers,
                         read_limits_item, write_limits)
from stacks import outputs
from stacks.settings import SettingsError, load_limits

class LimitsError(Exception):
    """A problem the operator must fix; main() prints it (status 2)."""


def function_environment(clients: dict[str, Any], found: dict[str, str]) -> dict[str, str]:
    """The deployed agent function's environment (FunctionName among the stack's outputs)."""
    return clients["lambda"].get_function_configuration(
        FunctionName=found[outputs.FUNCTION_NAME])["Environment"]["Variables"]


def tenant_names(env: dict[str, str]) -> list[str]:
    """The configured tenants, from the function's TENANTS variable."""
    return [spec.name for spec in tenant_specs(env)]


def tenant_specs(env: dict[str, str]) -> tuple:
    """The configured tenants with their deployed shares (`agent.contract.TenantSpec`)."""
    from agent.contract import decode_tenants

    return decode_tenants(env.get("TENANTS", ""))


def bucket_limits(env: dict[str, str]) -> list:
    """The deployed buckets' `guard.Limits` (from MODELS), which tenant caps must fit; empty
    when MODELS does not describe them."""
    from agent.contract import ContractError, decode_models

    try:
        return [spec.limits for spec in decode_models(env.get("MODELS", "{}")).values()]
    except (ContractError, ValueError, TypeError):
        return []


class Deployment:
    """The deployed stack's limits: its config table, tenants, models and budgets on deploy."""

    def __init__(self, clients: dict[str, Any], stack: str) -> None:
        found = outputs.stack_outputs(clients["cloudformation"], stack,
                                      need=(outputs.LIMITS_TABLE, outputs.FUNCTION_NAME,
                                            outputs.BUCKET_TABLE))
        self.dynamodb = clients["dynamodb"]
        self.sts = clients["sts"]
        self.table = found[outputs.LIMITS_TABLE]
        self.bucket_table = found[outputs.BUCKET_TABLE]
        env = function_environment(clients, found)
        specs = tenant_specs(env)
        self.tenants = [spec.name for spec in specs]
        self.models = list(json.loads(env.get("MODELS", "{}")))
        self.bucket_limits = bucket_limits(env)
        self.degrade_model = env.get("DEGRADE_MODEL") or None
        self.deployed = dataclasses.replace(
            LimitSet.decode(json.loads(env.get("BUDGETS") or "{}")),
            shares={spec.name: spec.share for spec in specs}
            if any(spec.shares for spec in specs) else None)

    def current(self) -> tuple[LimitSet, str]:
        """(the limits in force, where they come from)."""
        limits = read_limits_item(self.dynamodb, self.table)
        if limits is None:
            return self.deployed, "cdk.json (deployed)"
        return limits, f"config item v{limits.version}"

    def changes(self) -> list[dict]:
        return changes(self.dynamodb, self.table)


def changes(dynamodb: Any, table: str) -> list[dict]:
    """The change records of the limits table, oldest first: {pk, at, who, what (the
    KEY=VALUE list), before, after (limits documents as JSON), reason}."""
    from boto3.dynamodb.types import TypeDeserializer

    deserialize = TypeDeserializer().deserialize
    rows, start = [], None
    while True:
        page = dynamodb.scan(
            TableName=table, FilterExpression="begins_with(pk, :p)",
            ExpressionAttributeValues={":p": {"S": CHANGE_PREFIX}},
            **({"ExclusiveStartKey": start} if start else {}))
        rows += [plain_numbers({k: deserialize(v) for k, v in item.items()})
                 for item in page.get("Items", [])]
        start = page.get("LastEvaluatedKey")
        if not start:
            return sorted(rows, key=lambda r: r["pk"])


def change_rows(cloudformation: Any, dynamodb: Any, stack: str) -> list[dict]:
    """`changes` of a deployed stack's limits table (for `cli.audit --limits`)."""
    table = outputs.stack_outputs(cloudformation, stack,
                                  need=(outputs.LIMITS_TABLE,))[outputs.LIMITS_TABLE]
    return changes(dynamodb, table)


def as_document(limits: LimitSet) -> dict[str, Any]:
    """A LimitSet in cdk.json's shape (what KEY=VALUE edits): its encoding without the
    version and the runaway breaker's throttles."""
    return {k: v for k, v in limits.encode().items() if k not in ("version", "runaway")}


def apply(doc: dict[str, Any], assignment: str, models: list[str]) -> None:
    """Apply one KEY=VALUE to `doc` in place; LimitsError for a malformed assignment."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise LimitsError(f"{assignment!r}: expected KEY=VALUE, e.g. "
                          "tenants.acme.budget.usd_per_day=50")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    if key.startswith("models."):
        rest = key[len("models."):]
        model = next((m for m in sorted(models, key=len, reverse=True)
                      if rest.startswith(m + ".")), None)
        if model is None:
            raise LimitsError(f"{key!r}: models.<model id>.tokens_per_day with one of the "
                              f"deployed models ({', '.join(models)})")
        path = ["models", model, rest[len(model) + 1:]]
    else:
        path = key.split(".")
    node = doc
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise LimitsError(f"{key!r}: {part} is not an object")
        node = child
    node[path[-1]] = value


def set_limits(deployment: Deployment, assignments: list[str], *, reason: str | None,
               now: Callable[[], float] = time.time) -> tuple[LimitSet, LimitSet]:
    """Validate and write; returns (before, after). SettingsError for a bad value (nothing
    written), LimitsError when another change landed in between. The runaway breaker's
    throttles are kept (clear-runaway releases them)."""
    before, _ = deployment.current()
    doc = as_document(before)
    for assignment in assignments:
        apply(doc, assignment, deployment.models)
    after = load_limits(doc, tenants=deployment.tenants, models=deployment.models,
                        degrade_model=deployment.degrade_model, version=before.version + 1,
                        buckets=deployment.bucket_limits)
    after = dataclasses.replace(after, runaway=before.runaway)
    write(deployment, before, after, assignments, reason, now)
    return before, after


def clear_runaway(deployment: Deployment, scope: str, *, reason: str | None,
                  now: Callable[[], float] = time.time) -> tuple[LimitSet, LimitSet]:
    """Release the runaway breaker's throttle of `scope` (a tenant, or the deployment's
    `*deployment*`); LimitsError when it is not throttled."""
    before, _ = deployment.current()
    if scope not in before.runaway:
        held = ", ".join(sorted(before.runaway)) or "none"
        raise LimitsError(f"{scope!r} is not throttled by the runaway breaker (throttled: "
                          f"{held})")
    after = dataclasses.replace(before, version=before.version + 1, runaway={
        s: t for s, t in before.runaway.items() if s != scope})
    write(deployment, before, after, [runaway_change(scope, "cleared")], reason, now)
    return before, after


def write(deployment: Deployment, before: LimitSet, after: LimitSet, what: list[str],
          reason: str | None, now: Callable[[], float]) -> None:
    """The item and its change record, by the caller's ARN (`guard.spend.write_limits`)."""
    who = deployment.sts.get_caller_identity()["Arn"]
    try:
        write_limits(deployment.dynamodb, deployment.table, before, after, who=who, what=what,
                     reason=reason or "", at=now())
    except LimitsConflict:
        raise LimitsError("the limits changed while this set was prepared: run it again "
                          "(show prints the new values)") from None


def render(limits: LimitSet, source: str, spent: dict[str, dict[str, float]]) -> str:
    """The limits as a table, with today's and this month's spend (USD) from the ledger."""
    rows = [["scope", "usd/day", "usd/month", "tokens/day", "action", "spent today",
             "spent month"]]
    scopes = [("deployment", limits.deployment)] + [
        (f"tenant:{t}", b) for t, b in sorted(limits.tenants.items())]
    for scope, budget in scopes:
        if budget is None:
            continue
        cells = ["-" if getattr(budget, w) is None else f"{getattr(budget, w):g}"
                 for w in WINDOWS]
        money = spent.get(scope, {})
        rows.append([scope, *cells, budget.action + (f" -> {budget.degrade_to}"
                                                     if budget.degrade_to else ""),
                     f"{money.get('day', 0.0):.4f}", f"{money.get('month', 0.0):.4f}"])
    for model, tokens in sorted(limits.model_tokens_per_day.items()):
        rows.append([f"model:{model}", "-", "-", f"{tokens:g}", "-", "-", "-"])
    lines = [f"limits from {source}", *aligned(rows)]
    if limits.shares:
        lines += ["", *aligned([["tenant", "weight", "rpm", "itpm", "otpm", "tpm"]] + [
            [name, f"{share.weight:g}", *("-" if getattr(share, k) is None
                                          else f"{getattr(share, k):g}" for k in CAP_KEYS)]
            for name, share in sorted(limits.shares.items())])]
    for scope, throttle in sorted(limits.runaway.items()):
        caps = ", ".join(f"{k}={v:g}" for k, v in sorted(throttle.caps.items()))
        lines.append(f"runaway: {scope} throttled since {_stamp(throttle.since)} at "
                     f"{throttle.rate * 60:.4f} USD/h (baseline {throttle.baseline * 60:.4f} "
                     f"USD/h): {caps or 'no caps'}")
    return "\n".join(lines)


def _stamp(epoch: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def ledger_spend(deployment: Deployment, now: float) -> dict[str, dict[str, float]]:
    """Spend (USD, open reservations excluded) per scope today and this month."""
    view = BudgetLedger(deployment.bucket_table, deployment.dynamodb,
                        clock=lambda: now).snapshot()
    today = day_of(now)
    out = {}
    for scope, counters in view.counters.items():
        day = (counters.get("d_used", 0) - counters.get("d_open", 0)
               if counters.get("day") == today else 0)
        out[scope] = {"day": day / 1e6,
                      "month": (counters.get("m_used", 0) - counters.get("m_open", 0)) / 1e6}
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cli.limits", description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=("show", "set", "history", "clear-runaway"))
    p.add_argument("assignments", nargs="*", metavar="KEY=VALUE")
    p.add_argument("--stack", required=True)
    aws.add_location_arguments(p)
    p.add_argument("--reason", help="why (kept in the change record)")
    p.add_argument("--tenant", help="clear-runaway: the tenant to release")
    p.add_argument("--deployment", action="store_true",
                   help="clear-runaway: release the deployment-wide throttle")
    p.add_argument("--json", action="store_true")
    return p


def main(argv: list[str] | None = None, *, clients: dict[str, Any] | None = None,
         now: Callable[[], float] = time.time, out=None, err=None) -> int:
    """Run the command; returns the exit status. `clients` replaces the boto3 clients
    (cloudformation, dynamodb, lambda, sts)."""
    out, err = out or sys.stdout, err or sys.stderr
    args = parser().parse_args(argv)
    try:
        if args.command != "set" and args.assignments:
            raise LimitsError(f"{args.command} takes no KEY=VALUE")
        if args.command == "set" and not args.assignments:
            raise LimitsError("set needs at least one KEY=VALUE, e.g. "
                              "tenants.acme.budget.usd_per_day=50")
        clients = clients or aws.clients(("cloudformation", "dynamodb", "lambda", "sts"),
                                         region=args.region, endpoint_url=args.endpoint_url)
        deployment = Deployment(clients, args.stack)
        if args.command == "show":
            limits, source = deployment.current()
            if args.json:
                print(json.dumps({"source": source, "limits": limits.encode()}, indent=2),
                      file=out)
            else:
                print(render(limits, source, ledger_spend(deployment, now())), file=out)
        elif args.command == "clear-runaway":
            if bool(args.tenant) == args.deployment:
                raise LimitsError("clear-runaway needs --tenant NAME or --deployment")
            before, after = clear_runaway(deployment, args.tenant or DEPLOYMENT,
                                          reason=args.reason, now=now)
            print(f"limits v{before.version} -> v{after.version}: runaway throttle of "
                  f"{args.tenant or DEPLOYMENT} released (every caller within 30 s)", file=out)
        elif args.command == "set":
            before, after = set_limits(deployment, args.assignments, reason=args.reason,
                                       now=now)
            print(f"limits v{before.version} -> v{after.version}: {' '.join(args.assignments)}"
                  " (every caller within 30 s)", file=out)
        else:
            changes = deployment.changes()
            if args.json:
                print(json.dumps(changes, indent=2), file=out)
            else:
                print("\n".join(aligned([["at", "who", "what", "reason"]] + [
                    [c["at"], c["who"], " ".join(c["what"]), c.get("reason", "")]
                    for c in changes])), file=out)
        return 0
    except SettingsError as bad:
        for problem in bad.problems:
            print(f"bulwark: bad configuration: {problem} (nothing changed)", file=err)
        return 2
    except (LimitsError, outputs.StackOutputsError, *aws.ERRORS) as problem:
        return aws.failed("cli.limits", problem, err)


if __name__ == "__main__":
    sys.exit(main())
