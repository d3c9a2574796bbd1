"""`models.<id>` of the CDK app's settings read into `ModelSettings`: prices, and the per-minute
limits of an Anthropic model (from its tier preset or set) or of a Bedrock inference profile
(with the regions it routes to). A model with `pools` is read by `stacks.pool_settings`.
"""

from __future__ import annotations

from typing import Any, Mapping

from agent.contract import Prices
from guard.limits import Limits
from guard.tiers import ANTHROPIC_TIERS, FAMILIES, family_of

from .settings_readers import Problems, is_unset
from .settings_schema import MODEL_KEYS, PRICE_KEYS, read_section
from .settings_types import ModelSettings

def read_prices(problems: Problems, where: str, raw: Any) -> Prices | None:
    if not isinstance(raw, dict):
        return None  # reported as missing or not an object already
    prices = read_section(problems, PRICE_KEYS, raw, f"{where}.")
    if prices["input"] is None or prices["output"] is None:
        return None
    return Prices.of(prices["input"], prices["output"], prices["cache_write"],
                     prices["cache_read"])


def read_anthropic_model(problems: Problems, model_id: str, spec: dict, tier: str | None,
                     tier_bad: bool = False) -> ModelSettings | None:
    where = f"models.{model_id}"
    values = read_section(problems, MODEL_KEYS, spec, f"{where}.", provider="anthropic")
    family = values["family"] or family_of(model_id)
    preset = ANTHROPIC_TIERS[tier].get(family) if tier and family else None
    per_minute, missing = {}, []
    for index, name in enumerate(("rpm", "itpm", "otpm")):
        per_minute[name] = values[name] if name in spec else (preset[index] if preset else None)
        if per_minute[name] is None and name in spec and is_unset(spec[name]):
            problems.bad(f"{where}.{name}", "a per-minute limit", spec[name])
        elif per_minute[name] is None and name not in spec:
            missing.append(name)
    if missing and not tier_bad:  # a bad tier is reported once, as itself
        why = (f"its family {family!r} has no preset without a tier" if family else
               f"its family is unknown: set 'family' ({', '.join(FAMILIES)}) or")
        problems.bad(f"{where}.{missing[0]}" if len(missing) == 1 else where,
                     f"per-minute limits {', '.join(missing)} ({why} the limits)", None)
    prices = read_prices(problems, f"{where}.prices", spec.get("prices"))
    learn_up_to = read_learn_up_to(problems, where, spec.get("learn_up_to"), per_minute)
    if None in per_minute.values() or prices is None or learn_up_to is False or any(
            values[k] is None for k in ("counts_cache_reads", "context_window",
                                        "max_output_tokens", "burst_fraction")):
        return None
    return ModelSettings(
        model_id=model_id, bucket_id=f"anthropic#{family or model_id}",
        limits=Limits(per_minute["rpm"], per_minute["itpm"], per_minute["otpm"],
                      counts_cache_reads=values["counts_cache_reads"],
                      burst_fraction=values["burst_fraction"]),
        prices=prices, context_window=values["context_window"],
        max_output_tokens=values["max_output_tokens"], learn_up_to=learn_up_to)


def read_learn_up_to(problems: Problems, where: str, raw: Any,
                     per_minute: Mapping[str, float | None]) -> dict[str, float] | None | bool:
    """`models.<id>.learn_up_to` (limit name -> ceiling per minute): None when absent or empty,
    False with the problem reported when bad (not an object, or a ceiling below the model's
    limit in `per_minute`). Unknown names were reported by `check_keys` and dropped."""
    if raw is None or raw == {}:
        return None
    where = f"{where}.learn_up_to"
    keys = MODEL_KEYS["learn_up_to"].keys
    if not isinstance(raw, dict):
        problems.bad(where, f"an object of {', '.join(keys)} -> ceiling per minute", raw)
        return False
    values = read_section(problems, keys, raw, f"{where}.")
    ceilings, ok = {}, True
    for name in raw:
        ceiling, limit = values.get(name), per_minute.get(name)
        if ceiling is None:
            ok = False  # unknown (check_keys) or not a number: reported already
        elif limit is not None and ceiling < limit:
            problems.bad(f"{where}.{name}", f"a ceiling at least the model's {name} "
                         f"({limit:g} per minute)", raw[name])
            ok = False
        else:
            ceilings[name] = ceiling
    return ceilings if ok else False


def read_bedrock_model(problems: Problems, model_id: str, spec: dict,
                   profile_regions: Mapping[str, tuple[str, ...]], region: str | None
                   ) -> ModelSettings | None:
    where = f"models.{model_id}"
    values = read_section(problems, MODEL_KEYS, spec, f"{where}.", provider="bedrock")
    prefix = model_id.partition(".")[0] if "." in model_id else None
    routes = values["routes_to_regions"] or (profile_regions or {}).get(prefix)
    if not routes and "routes_to_regions" not in spec:
        known = ", ".join(f"'{p}.'" for p in profile_regions or {})
        problems.bad(f"{where}.routes_to_regions",
                     f"the regions this inference profile routes to: its prefix "
                     f"{prefix + '.' if prefix else '(none)'} is not in profile_regions "
                     f"({known}); use a profile id such as us.anthropic.<model>, or set "
                     "routes_to_regions", None)
    if prefix and region and prefix in (profile_regions or {}) and prefix != "global" \
            and region not in (profile_regions[prefix] or ()):
        serving = [p for p, regions in profile_regions.items() if region in (regions or ())]
        problems.say(
            f"context key {'models.' + model_id!r}: the '{prefix}.' inference profile serves "
            f"{', '.join(profile_regions[prefix] or ())}, not the deploy region {region}: "
            + (f"use the '{serving[0]}.' profile ({serving[0]}.{model_id.partition('.')[2]})"
               if serving else "deploy in one of its regions")
            + f", or add {region} to profile_regions.{prefix}")
    prices = read_prices(problems, f"{where}.prices", spec.get("prices"))
    if not routes or prices is None or any(
            values[k] is None for k in ("tpm", "output_burndown", "context_window",
                                        "max_output_tokens", "burst_fraction")):
        return None
    return ModelSettings(
        model_id=model_id, bucket_id=values["bucket"] or f"bedrock#{model_id}",
        limits=Limits(values["rpm"], tpm=values["tpm"],
                      output_burndown=values["output_burndown"],
                      burst_fraction=values["burst_fraction"]),
        prices=prices, context_window=values["context_window"],
        max_output_tokens=values["max_output_tokens"], routes_to_regions=tuple(routes))



def check_learned_buckets(problems: Problems, models: Mapping[str, ModelSettings]) -> None:
    """Models sharing one bucket (a family) must set the same `learn_up_to`: the bucket has one
    set of ceilings, and which model's a container would build it with is arbitrary."""
    first: dict[str, ModelSettings] = {}
    for model in models.values():
        other = first.setdefault(model.bucket_id, model)
        if other is not model and other.learn_up_to != model.learn_up_to:
            problems.say(f"context key 'models.{model.model_id}.learn_up_to': "
                         f"{model.learn_up_to!r} differs from models.{other.model_id}'s "
                         f"({other.learn_up_to!r}), which shares its bucket "
                         f"{model.bucket_id}: set the same ceilings on both")
