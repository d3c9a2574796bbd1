"""The emulator's configuration: defaults, and `validated`, which merges changes into a
configuration and rejects anything unknown or out of range with a message naming it."""

from __future__ import annotations

import copy
import re
from typing import Any

from guard.tiers import FAMILIES
from local.fakes.claude_batches import BATCH_CONFIG, validate_batch_config
from local.fakes.claude_emulator.limits import BEDROCK_DEFAULT, PRESETS

DEFAULT_CONFIG: dict[str, Any] = {
    "tier": "tier1",
    "limits": {},            # family -> {"rpm", "itpm", "otpm"} overrides (new families allowed)
    "models": {},            # extra model id -> family, e.g. {"claude-3-5-haiku-20241022": "h35"}
    "bedrock": {},           # {"rpm", "tpm", "output_burndown"} defaults and/or model id -> quotas
    "latency_s": 0.0,        # base latency of every answer
    "token_latency_s": 0.0,  # per output token, streaming only
    "output_tokens": 50,     # default answer length (capped by max_tokens)
    "otpm_mode": "reserve",  # "reserve" (max_tokens at start, settle at end) or "produced"
    "counts_cache_reads": False,
    "context_window": 200_000,
    "cache_min_tokens": 0,   # shortest cacheable prefix (the real API: 1024-4096 by model)
    "revoked_api_keys": [],  # API keys (x-api-key or bearer) answered with 401
    # "acceleration limits" (unpublished rule, configurable here): refuse a request when more
    # than accel_fraction of the RPM capacity arrived within the last accel_window_s seconds
    "accel_fraction": None,
    "accel_window_s": 1.0,
    # pools: `/pool/<name>` path prefix -> {"rpm", "tpm", "output_burndown", "limits": {family:
    # {...}}, "tiers": {tier: {"rpm", "tpm", "output_burndown"}}}; unknown names use the defaults
    "pools": {},
    "flex_headroom": 0.5,    # flex admitted only while its buckets keep this fraction of capacity
    # Message Batches (local.fakes.claude_batches): processing time, per-batch and queue limits
    **BATCH_CONFIG,
}

#: Bedrock service tiers (the `X-Amzn-Bedrock-Service-Tier` header; absent means "default").
SERVICE_TIERS = ("priority", "default", "flex", "reserved")
SERVICE_TIER_HEADER = "x-amzn-bedrock-service-tier"
POOL_PREFIX = "/pool/"
POOL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def validated(base: dict, changes: dict) -> dict:
    """`base` with `changes` merged in (limits, bedrock and models merged per entry); raises
    ValueError naming the first bad key."""
    if not isinstance(changes, dict):
        raise ValueError("config must be a JSON object")
    unknown = set(changes) - set(DEFAULT_CONFIG)
    if unknown:
        raise ValueError(f"unknown config keys: {sorted(unknown)}")
    config = copy.deepcopy(base)
    for key, value in changes.items():
        if key in ("limits", "bedrock", "models"):
            if not isinstance(value, dict):
                raise ValueError(f"{key} must be an object")
            merged = dict(config[key])
            for name, item in value.items():
                if isinstance(item, dict) and isinstance(merged.get(name), dict):
                    merged[name] = {**merged[name], **item}
                else:
                    merged[name] = item
            config[key] = merged
        else:
            config[key] = value
    if config["tier"] not in PRESETS:
        raise ValueError(f"tier must be one of {sorted(PRESETS)}, got {config['tier']!r}")
    if config["otpm_mode"] not in ("reserve", "produced"):
        raise ValueError("otpm_mode must be 'reserve' or 'produced'")
    for name, limits in config["limits"].items():
        if not isinstance(limits, dict) or set(limits) - {"rpm", "itpm", "otpm"}:
            raise ValueError(f"limits[{name!r}] must hold only rpm, itpm, otpm")
        if name not in FAMILIES and set(limits) != {"rpm", "itpm", "otpm"}:
            raise ValueError(f"limits for the new family {name!r} need rpm, itpm and otpm")
        for dim, value in limits.items():
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"limits[{name!r}][{dim!r}] must be a positive integer")
    for name, quotas in config["bedrock"].items():
        if name in BEDROCK_DEFAULT:
            if not isinstance(quotas, (int, float)) or quotas < 0:
                raise ValueError(f"bedrock[{name!r}] must be a non-negative number")
        elif not isinstance(quotas, dict) or set(quotas) - set(BEDROCK_DEFAULT):
            raise ValueError(f"bedrock[{name!r}] must hold only {sorted(BEDROCK_DEFAULT)}")
    if not isinstance(config["pools"], dict):
        raise ValueError("pools must be an object")
    for name, pool in config["pools"].items():
        if not POOL_NAME.match(name) or not isinstance(pool, dict) \
                or set(pool) - {*BEDROCK_DEFAULT, "limits", "tiers"}:
            raise ValueError(f"pools[{name!r}] must be an object of {sorted(BEDROCK_DEFAULT)}, "
                             "limits and tiers")
        for tier, quotas in (pool.get("tiers") or {}).items():
            if tier not in SERVICE_TIERS or not isinstance(quotas, dict) \
                    or set(quotas) - set(BEDROCK_DEFAULT):
                raise ValueError(f"pools[{name!r}].tiers: a tier is one of {SERVICE_TIERS} "
                                 f"with only {sorted(BEDROCK_DEFAULT)}, got {tier!r}")
        for family, limits in (pool.get("limits") or {}).items():
            if family not in FAMILIES or not isinstance(limits, dict) \
                    or set(limits) - {"rpm", "itpm", "otpm"}:
                raise ValueError(f"pools[{name!r}].limits[{family!r}] must be a known family "
                                 "with only rpm, itpm, otpm")
    headroom = config["flex_headroom"]
    if isinstance(headroom, bool) or not isinstance(headroom, (int, float)) \
            or not 0 <= headroom < 1:
        raise ValueError("flex_headroom must be a number in [0, 1)")
    for model, family in config["models"].items():
        if family not in FAMILIES and family not in config["limits"]:
            raise ValueError(f"models[{model!r}]: family {family!r} has no limits")
    for key in ("latency_s", "token_latency_s"):
        if not isinstance(config[key], (int, float)) or config[key] < 0:
            raise ValueError(f"{key} must be a non-negative number")
    if config["accel_fraction"] is not None and not (
            isinstance(config["accel_fraction"], (int, float))
            and 0 < config["accel_fraction"] <= 1):
        raise ValueError("accel_fraction must be null or a number in (0, 1]")
    if not isinstance(config["accel_window_s"], (int, float)) or config["accel_window_s"] <= 0:
        raise ValueError("accel_window_s must be a positive number of seconds")
    if not isinstance(config["revoked_api_keys"], list) or not all(
            isinstance(key, str) for key in config["revoked_api_keys"]):
        raise ValueError("revoked_api_keys must be a list of strings")
    validate_batch_config(config)
    for key in ("output_tokens", "context_window", "cache_min_tokens"):
        if isinstance(config[key], bool) or not isinstance(config[key], int) \
                or config[key] < 0:
            raise ValueError(f"{key} must be a non-negative integer")
    return config
