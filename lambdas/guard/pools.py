"""Capacity pools: one logical model served by several provider routes, each with its own bucket.

    claude = GuardedClaude({"sonnet": [
        Pool(bucket_a, provider="anthropic", model="claude-sonnet-4-6", base_url=url_a),
        Pool(bucket_b, provider="bedrock", model="us.anthropic.claude-sonnet-4-6",
             aws_region="us-west-2", service_tier="flex")]})
    result = claude.create(model="sonnet", max_tokens=512, messages=[...])
    result.pool  # the pool that served it, e.g. "bedrock@us-west-2/flex"

A pool is a provider route (the Anthropic API at one base URL and key, or Bedrock in one region,
addressed by an inference profile or a foundation model id, at one service tier) with its own
`TokenBucket` (its own quota), prices and a shared circuit breaker (`guard.breaker`).

Routing, per call (`PoolRouter.create`):
1. Order: the pools in preference order, arranged by the call's class. Interactive calls use
   `priority` pools where configured and take `flex` pools only after every other pool;
   background calls take `flex` pools first, then the others, never `priority` pools.
2. Book: on the first pool, in that order, whose breaker allows it and whose earliest start is
   within `PREFERENCE_WAIT_S` (a refusal from a fresh view costs no write: the bucket decides
   from the item it already holds); when none is, book on the pool whose refusal named the
   soonest start, within the caller's wait; a booking that loses its race is planned again
   from the refusal, on the pool it now names soonest (`BOOKING_ROUNDS` attempts), so a caller
   keeps its turn under contention. So each call lands where capacity is free now, and the
   goodput approaches the sum of the pools.
3. Send through that pool's guarded client (its SDK client: request shape, headers and auth of
   its provider), one attempt. A 529, 5xx, timeout or connection error counts against the
   pool's breaker and the call moves to the next pool at once, in the same `create()`; a
   success resets it. Callers see no error while any pool can serve. An upstream 429 moves the
   call on too; from a Bedrock `flex` pool it also lowers that pool's capacity (flex is shed
   by Bedrock, not over its quota), which successes probe back up (`guard.flex_headroom`).

Tenant shares and budgets apply per logical model across its pools: every pool of a model
carries the same tenant weights (`Limits(tenants=...)`), so each tenant's weighted share holds
in every pool and therefore in their sum; absolute tenant caps are split across pools in
proportion to the pools' capacities (`split_tenant_caps`). A budget is charged the call's
cost priced at the pool that served it (`result.cost_usd`), under the logical model.
"""

from __future__ import annotations

import bisect
import logging
import math
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from . import fair, flex_headroom
from .bucket import TokenBucket
from .breaker import CircuitBreaker, Decision
from .client import CallResult, GuardedClaude
from .estimate import estimate_input_tokens
from .outcomes import DEFERRED, ERROR, OK
from .pool_client import BOOKED, PoolClient
from .pool_spec import (ANTHROPIC_SERVICE_TIERS, BEDROCK_SERVICE_TIERS, SERVICE_TIER_HEADER,
                        Pool, order_for, split_tenant_caps)
from .prices import Prices
from .send_timing import StampedGrant
from .spend import gate_for

__all__ = ["ANTHROPIC_SERVICE_TIERS", "BEDROCK_SERVICE_TIERS", "SERVICE_TIER_HEADER", "Pool",
           "PoolRouter", "order_for", "split_tenant_caps"]

log = logging.getLogger(__name__)

#: A pool whose earliest start is within this many seconds is taken in preference order before
#: the soonest pool is looked for.
PREFERENCE_WAIT_S = 0.5
#: Booking attempts, after the first pass over the pools, on the pool with the soonest start
#: within the caller's wait: a refusal for a lost race names the start anew and is tried
#: again in its place, so a caller that lost a race keeps its turn instead of being deferred.
BOOKING_ROUNDS = 4
#: Reasons a pool's answer counts against its breaker and moves the call to the next pool.
FAILOVER_REASONS = ("upstream_529", "upstream_error")
#: GuardedClaude options the router keeps (budgets per logical model), not its pools' clients.
BUDGET_OPTIONS = ("prices", "budgets", "budget", "model_tokens_per_day", "budget_ledger",
                  "limits_source")
#: Tickets remembered per router (the pool that issued each), oldest dropped first.
MAX_TICKETS = 1024


@dataclass
class _Route:
    pool: Pool
    client: PoolClient
    breaker: CircuitBreaker | None


class PoolRouter(GuardedClaude):
    """Routes each call of a logical model to one of its pools (see the module docstring);
    `GuardedClaude({model: [Pool, ...]})` builds one.

    `models`: logical model -> [Pool, ...] in preference order (a `TokenBucket` value is a
    single pool of `provider`, called by the model's own name, as `GuardedClaude` does).
    `breaker`: options for each pool's `CircuitBreaker` (failure_threshold, open_s, probe_s,
    view_ttl_s; the item is "breaker#<model>#<pool>" in the pool bucket's table; None: the
    defaults), or False to run without breakers. `max_attempts`: sends per call across all
    pools. `wall_clock`: epoch seconds for the breakers. Budgets (`prices`, `budgets`,
    `budget`, `model_tokens_per_day`, `budget_ledger`, `limits_source`, as for `GuardedClaude`)
    are held per logical model: `prices` is keyed by logical model, a call reserves at the
    dearest of its model's and its pools' prices and is charged at the prices of the pool that
    served it. The other options (`api_key`, `timeout_s`, `max_grant_age_s`, `min_call_s`,
    `scheduling`, `clock`, `sleep`, `estimator`, ...) are `GuardedClaude`'s, given to every
    pool's client.

    Fair share: the call's tenant and priority book on every pool it tries; a pool that
    refuses with a ticket (the call's place in its tenant's queue) has it remembered, and the
    next call of that tenant and class on this router, or a call passing that `ticket` back,
    books on that pool with it. A ticket this router did not issue is not passed to any pool
    (tickets are places in one pool's queue).
    """

    def __init__(self, models: Mapping[str, Sequence[Pool] | TokenBucket], *,
                 provider: str = "anthropic", sdk_client: Any = None,
                 aws_region: str | None = None, max_attempts: int = 4,
                 default_deadline_s: float = 30.0,
                 breaker: Mapping[str, Any] | bool | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 wall_clock: Callable[[], float] = time.time,
                 estimator: Callable[[dict], int] = estimate_input_tokens,
                 **options: Any) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self.max_attempts = max_attempts
        self.default_deadline_s = default_deadline_s
        self._clock, self._sleep, self._estimate = clock, sleep, estimator
        self._rng = random.Random()
        budget_options = {k: options.pop(k) for k in BUDGET_OPTIONS if k in options}
        #: (pool bucket id, tenant, priority) -> the ticket that pool issued; ticket -> its key
        self._tickets: dict[tuple, float] = {}
        self._ticket_places: dict[float, tuple] = {}
        self.routes: dict[str, list[_Route]] = {}
        breaker_options = dict(breaker or {})
        for logical, pools in models.items():
            if isinstance(pools, TokenBucket):  # one pool, named after its provider
                pools = [Pool(pools, provider=provider, model=logical,
                              aws_region=aws_region if provider == "bedrock" else None,
                              sdk_client=sdk_client, name=provider)]
            pools = list(pools)
            if not pools or not all(isinstance(p, Pool) for p in pools):
                raise ValueError(f"model {logical!r}: pools must be a non-empty list of "
                                 "guard.Pool")
            names = [p.name for p in pools]
            if len(set(names)) != len(names):
                raise ValueError(f"model {logical!r}: pool names must differ, got {names} "
                                 "(give Pool(name=...))")
            # a model with one pool keeps GuardedClaude's retries (529s, 5xx) on it; with
            # several, a failed send moves to the next pool instead
            self.routes[logical] = [
                _Route(p, PoolClient(p, self, max_attempts=1 if len(pools) > 1
                                      else max_attempts,
                                      default_deadline_s=default_deadline_s,
                                      clock=clock, sleep=sleep, estimator=estimator, **options),
                       None if breaker is False else CircuitBreaker(
                           p.bucket.table_name, f"{logical}#{p.name}", p.bucket.dynamodb,
                           clock=wall_clock, **breaker_options))
                for p in pools]
        self._budget = self._budget_gate(budget_options)

    def _budget_gate(self, options: dict[str, Any]):
        """The budget gate of the logical models (None without budgets): its prices hold each
        logical model's reservation price (the dearest of the model's and its pools' prices,
        per token kind) and each pool's price under "<model>|<pool>"."""
        prices = dict(options.pop("prices", None) or {})
        keyed: dict[str, Prices] = {}
        for logical, routes in self.routes.items():
            own = prices.get(logical)
            pooled = [r.pool.prices for r in routes if isinstance(r.pool.prices, Prices)]
            for route in routes:
                price = route.pool.prices if isinstance(route.pool.prices, Prices) else own
                if price is not None:
                    keyed[f"{logical}|{route.pool.name}"] = price
            candidates = [p for p in (own, *pooled) if p is not None]
            if candidates:
                keyed[logical] = Prices(*(max(getattr(p, f) for p in candidates)
                                          for f in ("input", "output", "cache_write",
                                                    "cache_read")))
        first = {m: routes[0].pool.bucket for m, routes in self.routes.items()}
        return gate_for(first, keyed, options.get("budgets"), budget=options.get("budget"),
                        model_tokens_per_day=options.get("model_tokens_per_day"),
                        ledger=options.get("budget_ledger"), source=options.get("limits_source"))

    def _budget_price_key(self, result: CallResult) -> str:
        return f"{result.model}|{result.pool}" if result.pool else result.model

    def pools(self, model: str) -> list[Pool]:
        return [route.pool for route in self.routes.get(model, [])]

    def prepare(self) -> None:
        """Every pool's SDK client ready to send (see `GuardedClaude.prepare`)."""
        for routes in self.routes.values():
            for route in routes:
                route.client.prepare()

    def create(self, *, deadline_s: float | None = None,
               time_left_s: Callable[[], float] | None = None, tenant: str | None = None,
               priority: str = "interactive", ticket: float | None = None,
               **params: Any) -> CallResult:
        """One guarded call of a logical model (`params["model"]`), served by one of its pools;
        `result.pool` names it, `result.cost_usd` prices it at that pool (None without prices),
        `result.pool_breakers` says which of the model's pools it saw with an open breaker.
        Arguments as for `GuardedClaude.create`."""
        return self._seen(self._route(params, deadline_s, time_left_s, tenant, priority, ticket,
                                      streaming=bool(params.pop("stream", False))))

    def stream(self, *, deadline_s: float | None = None,
               time_left_s: Callable[[], float] | None = None, tenant: str | None = None,
               priority: str = "interactive", ticket: float | None = None,
               **params: Any) -> CallResult:
        """Streaming, as `GuardedClaude.stream`, through one pool (failover before the stream
        starts)."""
        params.pop("stream", None)
        return self._seen(self._route(params, deadline_s, time_left_s, tenant, priority, ticket,
                                      streaming=True))

    def _seen(self, result: CallResult) -> CallResult:
        """`result.pool_breakers`: each pool of the call's model, open or not, as last seen."""
        result.pool_breakers = {route.pool.name: route.breaker.seen_open
                                for route in self.routes.get(result.model, ())
                                if route.breaker is not None}
        return result

    def _route(self, params: dict, deadline_s: float | None,
               time_left_s: Callable[[], float] | None, tenant: str | None, priority: str,
               ticket: float | None, streaming: bool, degraded: bool = False) -> CallResult:
        started = self._clock()
        model = params.get("model")
        routes = self.routes.get(model) if isinstance(model, str) else None
        result = CallResult(status=ERROR, model=str(model))
        if routes is None:
            result.error = {"type": "unknown_model", "message": f"model {model!r} has no pools"}
            return result
        if priority not in ("interactive", "background"):
            result.error = {"type": "invalid_request", "message": (
                f"priority must be 'interactive' or 'background', got {priority!r}")}
            return result
        max_tokens = params.get("max_tokens")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            result.error = {"type": "invalid_request",
                            "message": f"max_tokens must be a positive integer, got {max_tokens!r}"}
            return result
        try:  # every pool of a model carries the same tenants
            for route in routes:
                counted_as = fair.tenant_key(route.pool.bucket.limits, tenant)
        except ValueError as err:
            result.error = {"type": "unknown_tenant", "message": str(err)}
            return result
        deadline = started + (self.default_deadline_s if deadline_s is None else deadline_s)
        if time_left_s is not None:  # a wait must leave time for the call itself
            deadline = min(deadline, started + time_left_s() - routes[0].client.min_call_s)
        estimate = self._estimate(params)
        by_pool = {id(route.pool): route for route in routes}
        order = [by_pool[id(p)] for p in order_for([r.pool for r in routes], priority)]
        totals = CallResult(status=ERROR, model=model, tenant=counted_as, priority=priority,
                            input_estimate=estimate)
        if ticket is not None and ticket in self._ticket_places:  # back to the pool it queues in
            self._tickets[self._ticket_places[ticket]] = ticket
        if self._budget is not None and not self._hold_budget(tenant, estimate, max_tokens,
                                                              deadline, totals):
            budget = self._budget.budget_of(tenant)
            cheaper = budget.degrade_to if budget is not None else None
            if totals.budget_action == "degrade" and cheaper in self.routes \
                    and cheaper != model and not degraded:
                answer = self._route({**params, "model": cheaper}, deadline_s, time_left_s,
                                     tenant, priority, None, streaming, degraded=True)
                answer.degraded_from, answer.budget_action = model, "degrade"
                return answer
            totals.latency_s = self._clock() - started
            return totals
        failed: set[str] = set()
        for _ in range(self.max_attempts):
            candidates = [r for r in order if r.pool.name not in failed]
            picked = self._book(candidates, estimate, max_tokens, deadline, tenant, priority,
                                totals) if candidates else None
            if picked is None:
                break
            route, held, decision = picked
            if not self._still_open(route, held, decision, totals):
                failed.add(route.pool.name)  # its breaker opened while this call waited
                continue
            token = BOOKED.set(held)
            try:
                call = route.client.stream if streaming else route.client.create
                answer = call(deadline_s=max(0.0, deadline - self._clock()),
                              time_left_s=time_left_s, tenant=tenant, priority=priority,
                              ticket=self._tickets.get(self._place(route, tenant, priority)),
                              **{**params, "model": route.pool.model})
            finally:
                BOOKED.reset(token)
            self._add_counters(totals, answer)
            if answer.status == DEFERRED and answer.reason in (*FAILOVER_REASONS,
                                                               "upstream_429"):
                if route.breaker is not None and answer.reason in FAILOVER_REASONS:
                    route.breaker.record_failure(decision)
                if answer.reason == "upstream_429" and route.pool.tier == "flex":
                    flex_headroom.shed(route.pool.bucket, held.grant.acquired_at)
                failed.add(route.pool.name)
                log.warning("pool %s failed (%s): trying the next pool", route.pool.name,
                            answer.reason)
                continue
            if route.breaker is not None and answer.status == OK:
                route.breaker.record_success(decision)
            if answer.status == OK and route.pool.tier == "flex":
                flex_headroom.probe(route.pool.bucket)
            answer = self._answer(answer, totals, route.pool, model, started)
            answer.take_budget_hold(totals)
            self._settle_budget(answer, ended=False)  # a stream settles when it ends
            return answer
        if totals.status == ERROR and totals.error is None:
            totals.status, totals.reason = DEFERRED, totals.reason or "pools_unavailable"
        if totals.status == DEFERRED and totals.retry_after is None:
            totals.retry_after = 1.0
        totals.latency_s = self._clock() - started
        self._settle_budget(totals, ended=False)
        return totals

    def _still_open(self, route: _Route, held: StampedGrant, decision: Decision | None,
                    totals: CallResult) -> bool:
        """Sleep until a grant booked ahead starts, then check the pool again: False (grant
        given back) when its breaker opened meanwhile, or a cool-down covers the start, so a
        queue booked before an outage is not sent into it."""
        grant = held.grant
        if grant.start_at <= grant.returned_at:
            return True
        bucket = route.pool.bucket
        if not route.client.sleep_until_start(bucket, held, totals):
            return False
        held.started = True  # slept until its start: the pool's client sends at once
        if route.breaker is None or (decision is not None and decision.probe):
            return True
        if route.breaker.allow().allowed:
            return True
        bucket.release(grant)
        return False

    def _book(self, routes: list[_Route], estimate: int, max_tokens: int, deadline: float,
              tenant: str | None, priority: str, totals: CallResult
              ) -> tuple[_Route, StampedGrant, Decision | None] | None:
        """Book on the first pool that starts within `PREFERENCE_WAIT_S`, else on the soonest
        within the deadline (a lost race planned again, `BOOKING_ROUNDS` attempts); None
        (totals say why) when no pool can serve in time."""
        refusals: list[tuple[float, _Route, Decision | None]] = []
        skipped_for = math.inf
        for route in routes:
            decision = route.breaker.allow() if route.breaker is not None else None
            if decision is not None and not decision.allowed:
                skipped_for = min(skipped_for, decision.retry_after)
                continue
            wait = max(0.0, min(PREFERENCE_WAIT_S, deadline - self._clock()))
            held = self._try(route, estimate, max_tokens, wait, tenant, priority, totals)
            if held is None:
                return None
            if held.grant.granted:
                return route, held, decision
            refusals.append((held.grant.retry_after, route, decision))
        soonest = min([r[0] for r in refusals] + [skipped_for])
        queue = sorted(refusals, key=lambda item: item[0])
        for _ in range(BOOKING_ROUNDS):
            if not queue:
                break
            retry_after, route, decision = queue.pop(0)
            wait = deadline - self._clock()
            if retry_after > wait:
                break
            held = self._try(route, estimate, max_tokens, max(0.0, min(60.0, wait)), tenant,
                             priority, totals)
            if held is None:
                return None
            if held.grant.granted:
                return route, held, decision
            # a lost race (the refusal names the start anew): plan again from what it says
            bisect.insort(queue, (held.grant.retry_after, route, decision),
                          key=lambda item: item[0])
        totals.status, totals.reason = DEFERRED, "quota" if refusals else "pools_unavailable"
        totals.retry_after = soonest if math.isfinite(soonest) else 1.0
        return None

    @staticmethod
    def _place(route: _Route, tenant: str | None, priority: str) -> tuple:
        return (route.pool.bucket.bucket_id, tenant, priority)

    def _try(self, route: _Route, estimate: int, max_tokens: int, wait: float,
             tenant: str | None, priority: str, totals: CallResult) -> StampedGrant | None:
        """One booking attempt on `route`'s bucket with the call's tenant, class and the
        ticket that pool issued for them (if any); a ticket it issues now is remembered."""
        place = self._place(route, tenant, priority)
        held = self._acquire_once(route.pool.bucket, estimate, max_tokens, wait, tenant,
                                  priority, self._tickets.get(place), totals)
        if held is None:
            return None
        grant = held.grant
        if grant.granted:
            self._ticket_places.pop(self._tickets.pop(place, None), None)
            totals.ticket = None
            return held
        totals.local_throttles += 1
        if grant.ticket is not None:
            self._tickets[place] = totals.ticket = grant.ticket
            self._ticket_places[grant.ticket] = place
            while len(self._ticket_places) > MAX_TICKETS:
                self._ticket_places.pop(next(iter(self._ticket_places)))
        return held

    @staticmethod
    def _add_counters(totals: CallResult, answer: CallResult) -> None:
        for name in ("attempts", "local_throttles", "upstream_429", "upstream_529", "store_calls",
                     "store_reads", "stale_grants", "cool_down_rebooks"):
            setattr(totals, name, getattr(totals, name) + getattr(answer, name))
        totals.waited_s += answer.waited_s
        totals.queue_s = max(totals.queue_s, answer.queue_s)
        totals.grant_to_send_s += answer.grant_to_send_s
        totals.charge_to_send_s += answer.charge_to_send_s
        totals.status, totals.reason = answer.status, answer.reason
        totals.retry_after, totals.error = answer.retry_after, answer.error
        totals.tenant, totals.priority = answer.tenant, answer.priority

    def _answer(self, answer: CallResult, totals: CallResult, pool: Pool, model: str,
                started: float) -> CallResult:
        """The pool's answer, with the counters of every attempt, named for the logical model
        and the pool that served it."""
        for name in ("attempts", "local_throttles", "upstream_429", "upstream_529", "store_calls",
                     "store_reads", "stale_grants", "cool_down_rebooks", "waited_s", "queue_s",
                     "grant_to_send_s", "charge_to_send_s"):
            setattr(answer, name, getattr(totals, name))
        answer.model, answer.pool = model, pool.name
        if answer.status == OK and answer.usage is not None and pool.prices is not None:
            answer.cost_usd = pool.prices.cost_usd(answer.usage)
        answer.latency_s = self._clock() - started
        return answer
