"""`models.<id>.pools`: the capacity pools of one logical model, read and checked once.

    "models": {"sonnet": {"prices": {...}, "pools": [
      {"provider": "bedrock", "model": "us.anthropic.claude-sonnet-4-6",
       "region": "us-east-1", "tpm": 200000, "rpm": 200},
      {"provider": "bedrock", "model": "us.anthropic.claude-sonnet-4-6",
       "region": "us-west-2", "tpm": 100000, "rpm": 100, "service_tier": "flex"},
      {"provider": "anthropic", "model": "claude-sonnet-4-6", "tier": "tier2"}]}}

A model without `pools` is one pool, configured as before. A model with `pools` sets its
`prices` (the pools' default), `context_window` and `max_output_tokens`; each pool sets its own
limits (and may set its own `prices`, e.g. a flex tier's, and a `base_url`: a VPC endpoint or
the local emulator). `pooled_model` reads it into the `ModelSettings` the stack and the Lambda
share (`agent.contract.ModelSpec.pools`). How each Bedrock pool is addressed:
- an inference profile id ("us.", "eu.", "apac.", "global." + "anthropic.<model>") is invoked
  as the profile ARN in the pool's `region`; Bedrock routes it to the foundation model in the
  regions of the profile's geography (`routes_to_regions`, from `profile_regions`), and IAM
  allows those foundation-model ARNs only through that profile (`policies/pools.py`);
- a foundation model id ("anthropic.<model>") is invoked in-region, on demand, as the
  foundation-model ARN in the pool's `region` (recent Claude models are mostly offered through
  inference profiles only: check the model's page).
Each pool's quota is its own: on-demand in-region and each inference profile have separate
tokens/requests per minute per model in Service Quotas.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from agent.contract import PoolSpec, Prices
from guard.limits import Limits
from guard.pools import ANTHROPIC_SERVICE_TIERS, BEDROCK_SERVICE_TIERS
from guard.tiers import ANTHROPIC_TIERS, family_of

from .settings_models import read_prices
from .settings_schema import MODEL_KEYS, PROVIDER_KEYS, read_section
from .settings_types import ModelSettings

_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
_PROFILE = re.compile(r"^(us|eu|apac|us-gov|jp|au|ca|global)\.anthropic\.[A-Za-z0-9.:_-]+$")
_FOUNDATION = re.compile(r"^anthropic\.[A-Za-z0-9.:_-]+$")

#: Bedrock service tiers known per foundation model (matched on the id after the profile
#: prefix); a model not listed may be given any tier. Claude 3.x on-demand offers the default
#: tier only; extend as Bedrock's service-tier page lists models.
KNOWN_SERVICE_TIERS: tuple[tuple[re.Pattern, tuple[str, ...]], ...] = (
    (re.compile(r"^anthropic\.claude-3-"), ("default",)),
)

POOL_KEYS = ("provider", "model", "region", "service_tier", "rpm", "tpm", "itpm", "otpm",
             "output_burndown", "tier", "name", "prices", "routes_to_regions", "base_url")
#: keys of a model with pools besides `pools` (its limits are the pools')
POOLED_MODEL_KEYS = ("prices", "context_window", "max_output_tokens", "tokens_per_day")


class PoolSettingsError(ValueError):
    """Every problem of one model's pools, each naming its key."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, kw_only=True)
class PoolSettings(PoolSpec):
    """One pool as configured (`agent.contract.PoolSpec`: name, provider, model, bucket and
    per-minute limits, region, tier, endpoint, prices in USD per million tokens), plus what
    only the stack needs: the regions a Bedrock pool's calls reach (`routes_to_regions`).
    `addressing`: "inference_profile", "foundation_model" (Bedrock) or "anthropic_api"."""

    routes_to_regions: tuple[str, ...] = ()

    @property
    def addressing(self) -> str:
        if self.provider == "anthropic":
            return "anthropic_api"
        return "inference_profile" if _PROFILE.match(self.model) else "foundation_model"

    @property
    def foundation_model_id(self) -> str:
        """Bedrock: the model behind a profile ("us.anthropic.x" -> "anthropic.x")."""
        return self.model.partition(".")[2] if self.addressing == "inference_profile" \
            else self.model



def pool_bucket_id(provider: str, region: str | None, tier: str | None, model: str) -> str:
    """The pool's bucket item: "<provider>#<region or api>#<tier>#<model>"."""
    return f"{provider}#{region or 'api'}#{tier or 'default'}#{model}"


def offered_tiers(foundation_model_id: str) -> tuple[str, ...] | None:
    """The Bedrock service tiers a model offers where known, else None."""
    for pattern, tiers in KNOWN_SERVICE_TIERS:
        if pattern.match(foundation_model_id):
            return tiers
    return None


def _positive(problems: list[str], where: str, raw: Mapping, key: str) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        problems.append(f"{where}.{key}: expected a positive number per minute, got {value!r}")
        return None
    return value


def read_pools(model_id: str, raw: Any, *, profile_regions: Mapping[str, tuple[str, ...]]
               | None = None) -> list[PoolSettings]:
    """`models.<model_id>.pools` -> the pools in preference order; raises PoolSettingsError
    naming every bad key."""
    where = f"models.{model_id}.pools"
    if not isinstance(raw, list) or not raw:
        raise PoolSettingsError([f"{where}: expected a non-empty list of pools, got {raw!r}"])
    problems: list[str] = []
    pools: list[PoolSettings] = []
    for index, spec in enumerate(raw):
        at = f"{where}[{index}]"
        if not isinstance(spec, dict):
            problems.append(f"{at}: expected an object, got {spec!r}")
            continue
        unknown = sorted(set(spec) - set(POOL_KEYS))
        if unknown:
            problems.append(f"{at}: unknown keys {unknown} (known: {', '.join(POOL_KEYS)})")
        pool = _read_pool(problems, at, spec, profile_regions or {})
        if pool is not None:
            pools.append(pool)
    names = [p.name for p in pools]
    for name in {n for n in names if names.count(n) > 1}:
        problems.append(f"{where}: two pools are named {name!r}: give each a 'name'")
    if problems:
        raise PoolSettingsError(problems)
    return pools


def _read_pool(problems: list[str], at: str, spec: dict,
               profile_regions: Mapping[str, tuple[str, ...]]) -> PoolSettings | None:
    before = len(problems)
    provider, model = spec.get("provider"), spec.get("model")
    if provider not in ("anthropic", "bedrock"):
        problems.append(f"{at}.provider: expected 'anthropic' or 'bedrock', got {provider!r}")
        return None
    if not isinstance(model, str) or not model:
        problems.append(f"{at}.model: expected a model id, got {model!r}")
        return None
    tier = spec.get("service_tier")
    region = spec.get("region")
    rates = {k: _positive(problems, at, spec, k) for k in ("rpm", "tpm", "itpm", "otpm")}
    routes: tuple[str, ...] = ()
    if provider == "bedrock":
        if not isinstance(region, str) or not _REGION.match(region):
            problems.append(f"{at}.region: expected the AWS region the pool is called in, "
                            f"e.g. us-west-2, got {region!r}")
        if not (_PROFILE.match(model) or _FOUNDATION.match(model)):
            problems.append(f"{at}.model: expected an inference profile id (us.anthropic.<model>"
                            f", global.anthropic.<model>, ...) or a foundation model id "
                            f"(anthropic.<model>), got {model!r}")
        if tier is not None and tier not in BEDROCK_SERVICE_TIERS:
            problems.append(f"{at}.service_tier: expected one of {BEDROCK_SERVICE_TIERS}, got "
                            f"{tier!r}")
        offered = offered_tiers(model.partition(".")[2] if _PROFILE.match(model) else model)
        if tier is not None and offered is not None and tier not in offered:
            problems.append(f"{at}.service_tier: {model} does not offer {tier!r} on Bedrock "
                            f"(it offers {', '.join(offered)})")
        if rates["tpm"] is None:
            problems.append(f"{at}.tpm: required for a Bedrock pool (the Service Quotas value "
                            "of its route)")
        if _PROFILE.match(model):
            prefix = model.partition(".")[0]
            routes = tuple(spec.get("routes_to_regions") or profile_regions.get(prefix) or ())
            if not routes:
                problems.append(f"{at}.routes_to_regions: the regions the '{prefix}.' profile "
                                "routes to (not in profile_regions)")
        elif isinstance(region, str):
            routes = (region,)
    else:
        if region is not None:
            problems.append(f"{at}.region: applies to Bedrock pools only")
        if tier is not None and tier not in ANTHROPIC_SERVICE_TIERS:
            problems.append(f"{at}.service_tier: the Anthropic API takes "
                            f"{ANTHROPIC_SERVICE_TIERS}, got {tier!r}")
        preset = ANTHROPIC_TIERS.get(spec.get("tier") or "", {}).get(family_of(model) or "")
        if spec.get("tier") is not None and spec["tier"] not in ANTHROPIC_TIERS:
            problems.append(f"{at}.tier: expected one of {', '.join(ANTHROPIC_TIERS)}, got "
                            f"{spec['tier']!r}")
        for index, key in enumerate(("rpm", "itpm", "otpm")):
            if rates[key] is None and preset:
                rates[key] = preset[index]
            elif rates[key] is None:
                problems.append(f"{at}.{key}: required (or a 'tier' preset for the model's "
                                "family)")
    prices = None
    if spec.get("prices") is not None:
        try:
            prices = Prices.decode(spec["prices"])
        except (KeyError, TypeError, ValueError, AttributeError):
            problems.append(f"{at}.prices: expected numeric 'input' and 'output' USD per "
                            f"million tokens, got {spec['prices']!r}")
    base_url = spec.get("base_url")
    if base_url is not None and (not isinstance(base_url, str)
                                 or not base_url.startswith(("https://", "http://"))):
        problems.append(f"{at}.base_url: expected an http(s) URL, got {base_url!r}")
    if len(problems) > before:
        return None
    limits = (Limits(rates["rpm"], tpm=rates["tpm"],
                     output_burndown=spec.get("output_burndown", 5))
              if provider == "bedrock" else Limits(rates["rpm"], rates["itpm"], rates["otpm"]))
    default_name = provider + (f"@{region}" if region else "") + (f"/{tier}" if tier else "")
    return PoolSettings(name=spec.get("name") or default_name, provider=provider, model=model,
                        bucket_id=pool_bucket_id(provider, region, tier, model),
                        limits=limits, region=region, service_tier=tier, base_url=base_url,
                        routes_to_regions=routes, prices=prices)


def pool_profile_regions(problems, ctx: Mapping[str, Any],
                         deployment: Mapping[str, tuple[str, ...]] | None
                         ) -> Mapping[str, tuple[str, ...]] | None:
    """Inference-profile prefix -> the regions it routes to, for the Bedrock pools of pooled
    models: the deployment's `profile_regions` (provider=bedrock), else, under provider=anthropic
    (the Anthropic API with Bedrock pools beside it), `provider_defaults.bedrock.profile_regions`
    (problems reported into `problems`, naming the key)."""
    if deployment is not None:
        return deployment
    bedrock = ctx.get("provider_defaults", {}).get("bedrock", {})
    return read_section(problems, {"profile_regions": PROVIDER_KEYS["profile_regions"]},
                        bedrock if isinstance(bedrock, Mapping) else {},
                        "provider_defaults.bedrock.", provider="bedrock")["profile_regions"]


def pooled_model(problems, model_id: str, spec: Mapping[str, Any],
                 profile_regions: Mapping[str, tuple[str, ...]] | None):
    """`models.<model_id>` with `pools` -> `stacks.settings_types.ModelSettings` whose `pools` are
    the pools in preference order (its `bucket_id` and `limits` are the first pool's); None
    with every problem reported into `problems` (a `stacks.settings_readers.Problems`)."""
    where = f"models.{model_id}"
    for key in sorted(set(spec) - {"pools", *POOLED_MODEL_KEYS}):
        problems.say(f"context key {where + '.' + key!r}: a model with pools sets its limits "
                     "on each pool (models.<id>.pools[i]): remove it")
    values = read_section(problems, {k: MODEL_KEYS[k] for k in POOLED_MODEL_KEYS
                                     if k != "tokens_per_day"}, spec, f"{where}.")
    try:
        pools = read_pools(model_id, spec.get("pools"), profile_regions=profile_regions)
    except PoolSettingsError as err:
        for problem in err.problems:
            problems.say(f"context key {problem}")
        return None
    if "prices" not in spec:
        problems.bad(f"{where}.prices", "USD per million tokens (the pools' default prices)",
                     None)
    prices = read_prices(problems, f"{where}.prices", spec.get("prices"))
    if prices is None or None in values.values():
        return None
    return ModelSettings(
        model_id=model_id, bucket_id=pools[0].bucket_id, limits=pools[0].limits, prices=prices,
        context_window=values["context_window"], max_output_tokens=values["max_output_tokens"],
        pools=tuple(pools))
