"""Per-model quota: the numbers a bucket enforces.

Limits are configuration (cdk.json context), never constants in code. A `Limits` describes one
bucket: the Anthropic API's requests/input/output per minute for one model (or a family that
shares a bucket), or Amazon Bedrock's requests/tokens per minute for one model in one region.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from .values import BadValue, read_number

#: Every bucket refills continuously over this window: capacity = the per-minute limit,
#: refill = limit / 60 per second. It is also the GCRA burst tolerance (seconds).
WINDOW_S = 60.0

REQUESTS = "requests"
INPUT_TOKENS = "input_tokens"
OUTPUT_TOKENS = "output_tokens"
TOKENS = "tokens"  # Bedrock: input + cache write + output x burndown, one bucket


class LimitsError(ValueError):
    """A `Limits` that cannot describe a quota (names the bad field)."""


def _positive_number(name: str, value: object, *, optional: bool = True) -> float | None:
    """`value` as a float > 0 and finite (`guard.values.read_number`); None when it is None
    and `optional`; a LimitsError naming `name` otherwise."""
    if value is None:
        if optional:
            return None
        raise LimitsError(f"{name} is required")
    try:
        return read_number(value, above=0, finite=True)
    except BadValue as err:
        if err.not_a_number:
            raise LimitsError(f"{name} must be a number, got {type(value).__name__} "
                              f"{value!r}") from None
        raise LimitsError(f"{name} must be a positive finite number, got {value!r}") from None


#: The tenant a call without `tenant` counts as on a bucket with tenants (weight 1 unless
#: configured), so such calls cannot bypass sharing.
DEFAULT_TENANT = "default"
#: A tenant name: what DynamoDB map keys and CloudWatch dimension values both accept.
TENANT_NAME_MAX = 64


@dataclass(frozen=True)
class TenantShare:
    """One tenant's part of a bucket: `weight` (> 0) for sharing under contention, and
    optional hard caps per minute (`rpm` requests, `itpm`/`otpm` input/output tokens on the
    Anthropic API, `tpm` tokens on Bedrock) that hold always, contention or not."""

    weight: float = 1.0
    rpm: float | None = None
    itpm: float | None = None
    otpm: float | None = None
    tpm: float | None = None

    def __init__(self, weight=1.0, rpm=None, itpm=None, otpm=None, tpm=None):
        object.__setattr__(self, "weight",
                           _positive_number("weight", weight, optional=False))
        for name, value in (("rpm", rpm), ("itpm", itpm), ("otpm", otpm), ("tpm", tpm)):
            object.__setattr__(self, name, _positive_number(name, value))

    def caps(self) -> dict[str, float]:
        """Hard cap per capped dimension (requests or tokens per minute)."""
        dims = {REQUESTS: self.rpm, INPUT_TOKENS: self.itpm, OUTPUT_TOKENS: self.otpm,
                TOKENS: self.tpm}
        return {name: value for name, value in dims.items() if value is not None}

    def encode(self) -> dict[str, float]:
        """The share as cdk.json writes it: `weight` and the caps that are set (per minute)."""
        return {"weight": self.weight, **{name: getattr(self, name) for name in CAP_KEYS
                                          if getattr(self, name) is not None}}

    @classmethod
    def decode(cls, raw: "Mapping[str, object]") -> "TenantShare":
        """From `encode`'s shape (keys of SHARE_KEYS; a missing or null one: unset);
        LimitsError naming an unknown key or a bad value."""
        unknown = sorted(set(raw) - set(SHARE_KEYS))
        if unknown:
            raise LimitsError(f"unknown share key {unknown[0]!r} (known: "
                              f"{', '.join(SHARE_KEYS)})")
        return cls(**{name: raw[name] for name in SHARE_KEYS
                      if raw.get(name) is not None})

    def capped(self, caps: "Mapping[str, float]") -> "TenantShare":
        """This share with `caps` (key of CAP_KEYS -> per minute) as well: the lower of the two
        where both cap a dimension."""
        merged = {name: getattr(self, name) for name in CAP_KEYS}
        for name, value in caps.items():
            merged[name] = value if merged[name] is None else min(merged[name], value)
        return TenantShare(self.weight, **merged)


#: A tenant share's keys, as in cdk.json (`tenants.<name>.<key>`): the weight, then the caps.
CAP_KEYS = ("rpm", "itpm", "otpm", "tpm")
SHARE_KEYS = ("weight",) + CAP_KEYS


def _check_tenants(tenants, limits: "Limits") -> dict[str, TenantShare]:
    if tenants is None:
        return {}
    if not isinstance(tenants, dict):
        raise LimitsError(f"tenants must be a dict of name -> TenantShare, got "
                          f"{type(tenants).__name__}")
    checked: dict[str, TenantShare] = {}
    capacities = limits.capacities()
    for name, share in tenants.items():
        if not isinstance(name, str) or not name or len(name) > TENANT_NAME_MAX \
                or name.startswith("~") or not name.isprintable():
            raise LimitsError(f"tenant name must be 1-{TENANT_NAME_MAX} printable characters "
                              f"not starting with '~', got {name!r}")
        if not isinstance(share, TenantShare):
            raise LimitsError(f"tenants[{name!r}] must be a guard.TenantShare, got "
                              f"{type(share).__name__}")
        for dim in share.caps():
            if dim not in capacities:
                raise LimitsError(f"tenants[{name!r}] caps {dim}, which this bucket does not "
                                  f"enforce (its dimensions: {', '.join(capacities)})")
        checked[name] = share
    if checked and DEFAULT_TENANT not in checked:
        checked[DEFAULT_TENANT] = TenantShare()
    return checked


@dataclass(frozen=True)
class Limits:
    """The per-minute quota of one bucket.

    Anthropic API: `Limits(rpm, itpm, otpm)`. Input tokens per minute count
    `input_tokens + cache_creation_input_tokens`, plus `cache_read_input_tokens` only when
    `counts_cache_reads` (older models such as Haiku 3.5). Output tokens per minute count
    output tokens; `max_tokens` is reserved at acquire and settled to actual use.

    Amazon Bedrock: `Limits(rpm, tpm=...)` with `output_burndown` (5 for recent Claude
    models): one tokens-per-minute bucket charged input + cache write + output x burndown.
    Cache reads are not counted. `rpm=None` where the model has no request quota.

    `burst_fraction` (0 < f <= 1, default 1): the share of a minute's capacity the bucket
    hands out at once (GCRA burst tolerance of f x 60 s), so a cold fleet ramps up instead of
    firing a whole minute's capacity in its first second; the sustained rate is unchanged. A
    single request larger than the burst is still admitted, alone, from a refilled bucket.

    `tenants` (name -> `TenantShare`): share the bucket by weight under contention, with
    optional per-tenant caps (see `guard.fair`); calls without a tenant count as the
    "default" tenant (weight 1 unless configured). `background_reserve` (0 < f < 1, default
    0.05): the weight, relative to the tenants', that background work keeps while interactive
    work fills the queue, so it never starves.

    All values are per minute (requests or tokens); `output_burndown` is a multiplier.
    """

    rpm: float | None
    itpm: float | None = None
    otpm: float | None = None
    tpm: float | None = None
    output_burndown: float = 1.0
    counts_cache_reads: bool = False
    burst_fraction: float = 1.0
    tenants: dict = field(default_factory=dict, hash=False)
    background_reserve: float = 0.05

    def __init__(self, rpm, itpm=None, otpm=None, *, tpm=None, output_burndown=1.0,
                 counts_cache_reads=False, burst_fraction=1.0, tenants=None,
                 background_reserve=0.05):
        object.__setattr__(self, "rpm", _positive_number("rpm", rpm))
        object.__setattr__(self, "itpm", _positive_number("itpm", itpm))
        object.__setattr__(self, "otpm", _positive_number("otpm", otpm))
        object.__setattr__(self, "tpm", _positive_number("tpm", tpm))
        burndown = _positive_number("output_burndown", output_burndown, optional=False)
        if burndown < 1.0:
            raise LimitsError(f"output_burndown must be >= 1, got {output_burndown!r}")
        object.__setattr__(self, "output_burndown", burndown)
        if not isinstance(counts_cache_reads, bool):
            raise LimitsError(f"counts_cache_reads must be a bool, got {counts_cache_reads!r}")
        object.__setattr__(self, "counts_cache_reads", counts_cache_reads)
        burst = _positive_number("burst_fraction", burst_fraction, optional=False)
        if burst > 1.0:
            raise LimitsError(f"burst_fraction must be in (0, 1], got {burst_fraction!r}")
        object.__setattr__(self, "burst_fraction", burst)
        if self.tpm is not None and (self.itpm is not None or self.otpm is not None):
            raise LimitsError(
                "tpm (Bedrock: one combined tokens-per-minute bucket) cannot be combined with "
                "itpm/otpm (Anthropic API: separate input and output buckets)")
        if self.tpm is None and burndown != 1.0:
            raise LimitsError("output_burndown applies only to a Bedrock bucket (tpm=...)")
        if self.tpm is not None and counts_cache_reads:
            raise LimitsError("Bedrock does not count cache reads: counts_cache_reads must be "
                              "False with tpm")
        if all(v is None for v in (self.rpm, self.itpm, self.otpm, self.tpm)):
            raise LimitsError("Limits needs at least one of rpm, itpm, otpm, tpm")
        reserve = _positive_number("background_reserve", background_reserve, optional=False)
        if reserve >= 1.0:
            raise LimitsError(f"background_reserve must be in (0, 1), got "
                              f"{background_reserve!r}")
        object.__setattr__(self, "background_reserve", reserve)
        object.__setattr__(self, "tenants", _check_tenants(tenants, self))

    @property
    def bedrock(self) -> bool:
        """True for a Bedrock bucket (combined tokens per minute)."""
        return self.tpm is not None

    @property
    def burst_tolerance_s(self) -> float:
        """GCRA burst tolerance (seconds): `burst_fraction` of the 60 s window."""
        return self.burst_fraction * WINDOW_S

    def capacities(self) -> dict[str, float]:
        """Capacity per enforced dimension (requests or tokens; equal to the per-minute limit)."""
        dims = {REQUESTS: self.rpm, INPUT_TOKENS: self.itpm, OUTPUT_TOKENS: self.otpm,
                TOKENS: self.tpm}
        return {name: value for name, value in dims.items() if value is not None}

    def reservation(self, requests: int, input_tokens: int, output_tokens: int) -> dict[str, float]:
        """What an acquire reserves per enforced dimension (requests or tokens).

        Bedrock reserves input + max_tokens x burndown, as Bedrock itself does at request start.
        """
        return self._charges(requests, input_tokens, output_tokens)

    def never_fits(self, requests: int, input_tokens: int, output_tokens: int) -> str | None:
        """Why a reservation (requests, input tokens, `max_tokens`) can never be granted: it is
        more than a capacity. Names the cause (the input, `max_tokens`, or on Bedrock
        `max_tokens x output_burndown`); None when it fits."""
        for dim, amount in self.reservation(requests, input_tokens, output_tokens).items():
            capacity = self.capacities()[dim]
            if amount <= capacity:
                continue
            cause = {REQUESTS: f"{requests} requests",
                     INPUT_TOKENS: f"an input of {input_tokens:,} tokens",
                     OUTPUT_TOKENS: f"max_tokens {output_tokens:,}"}.get(dim)
            if dim == TOKENS:
                burned = output_tokens * self.output_burndown
                cause = (f"max_tokens {output_tokens:,} x output_burndown "
                         f"{self.output_burndown:g} = {burned:,.0f} tokens")
                if burned <= capacity:
                    cause = f"an input of {input_tokens:,} tokens + {cause}"
            return (f"{dim} reservation of {amount:g} exceeds the bucket capacity of "
                    f"{capacity:g} per minute ({cause}): it can never be granted")
        return None

    def usage(self, input_tokens: int, output_tokens: int, cache_creation_tokens: int,
              cache_read_tokens: int) -> dict[str, float]:
        """What one finished call actually costs per enforced dimension (tokens)."""
        counted_input = input_tokens + cache_creation_tokens
        if self.counts_cache_reads:
            counted_input += cache_read_tokens
        return self._charges(None, counted_input, output_tokens)

    def _charges(self, requests, input_tokens, output_tokens) -> dict[str, float]:
        charges: dict[str, float] = {}
        if self.rpm is not None and requests is not None:
            charges[REQUESTS] = float(requests)
        if self.itpm is not None:
            charges[INPUT_TOKENS] = float(input_tokens)
        if self.otpm is not None:
            charges[OUTPUT_TOKENS] = float(output_tokens)
        if self.tpm is not None:
            charges[TOKENS] = float(input_tokens) + float(output_tokens) * self.output_burndown
        return charges
