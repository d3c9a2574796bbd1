"""Tenant shares (weights and caps) that change without a redeploy, agreed by every caller
through the bucket item: pure, no I/O.

Every caller must charge a tenant's caps with the same GCRA shape (a cap tat is seconds of
refill at the cap's rate) and weigh tenants alike, so the shares in force are kept on the
bucket item itself, in the `tenants` map's pseudo-entry `~shares`:

    {"n": version, "<tenant>/weight": w, "<tenant>/rpm": cap, ...}

(`~` cannot start a tenant name, so fairness never reads it as a tenant). A bucket with live
shares (`TokenBucket.set_shares`) pins every acquire and settle write to its version
(`tenants.~shares.n = :version`; version 0, the deployed shares: no `~shares` yet). A write
refused by the pin returns the item (ALL_OLD), so:

* the item's version is newer: the caller adopts the item's shares, no read;
* the item's version is older: the caller switches the item, in one conditional write that
  sets `~shares` and rescales each changed cap's tat so that what the tenant used in the last
  window keeps counting against the new cap (amount-preserving: `tat' = now + (tat - now) x
  old cap / new cap`, at most one capacity of debt), conditioned on the tats and the version it
  saw, so no write of the old shape lands after it.

Versions are the limits config item's (`guard.spend.LimitSet.version`), which every caller
reads within its refresh interval; the pin makes the first write of a new version the switch
for all of them, so callers with the old and the new shares never both write.
"""

from __future__ import annotations

from typing import Mapping

from . import fair, gcra
from .limits import CAP_KEYS, INPUT_TOKENS, OUTPUT_TOKENS, REQUESTS, SHARE_KEYS, TOKENS, \
    WINDOW_S, LimitsError, TenantShare

#: The pseudo-entry of the bucket item's `tenants` map holding the shares in force.
SHARES = "~shares"
VERSION = "n"
#: A cap key -> the bucket dimension it caps (and so the field of its tat, `fair.CAP_FIELDS`).
CAP_DIMENSION = {"rpm": REQUESTS, "itpm": INPUT_TOKENS, "otpm": OUTPUT_TOKENS, "tpm": TOKENS}


def encode(tenants: Mapping[str, TenantShare], version: int) -> dict[str, str]:
    """The `~shares` entry for `tenants` at `version` (DynamoDB number strings)."""
    entry = {VERSION: str(int(version))}
    for name, share in sorted(tenants.items()):
        for key, value in share.encode().items():
            entry[f"{name}/{key}"] = f"{float(value):.6f}"
    return entry


def version_of(item: Mapping) -> int:
    """The shares version a (decoded) bucket item has: 0 when it has none (the deployed
    shares)."""
    return int(item.get(gcra.TENANTS, {}).get(SHARES, {}).get(VERSION, 0))


def decode(item: Mapping) -> dict[str, TenantShare] | None:
    """The shares a decoded bucket item carries (tenant -> TenantShare), None when it carries
    none; LimitsError for a bad entry."""
    entry = item.get(gcra.TENANTS, {}).get(SHARES)
    if not entry:
        return None
    raw: dict[str, dict[str, float]] = {}
    for field, value in entry.items():
        if field == VERSION:
            continue
        tenant, _, key = field.rpartition("/")
        if not tenant or key not in SHARE_KEYS:
            raise LimitsError(f"bucket item's {SHARES} has a bad field {field!r}")
        raw.setdefault(tenant, {})[key] = value
    return {tenant: TenantShare.decode(values) for tenant, values in raw.items()}


def pin(update: gcra.Update, version: int) -> None:
    """Add to `update` the condition that the item's shares are still `version`."""
    path = update.path(gcra.TENANTS, SHARES, VERSION)
    if version == 0:
        update.conditions.append(f"attribute_not_exists({path})")
    else:
        update.conditions.append(f"{path} = {update.value(str(int(version)))}")


def rescaled(tat: float, old_cap: float, new_cap: float, now: float, tolerance_s: float
             ) -> float:
    """A cap tat (epoch s) charged at `old_cap` per minute, as the same use charged at
    `new_cap`: the seconds still to refill scale by old / new, at most the debt floor (one
    capacity below empty: `tolerance_s` + one window)."""
    if tat <= now:
        return tat  # the cap is full under either rate
    return now + min((tat - now) * old_cap / new_cap, tolerance_s + WINDOW_S)


def switch_update(seen: Mapping, old: Mapping[str, TenantShare],
                  new: Mapping[str, TenantShare], version: int, now: float,
                  tolerance_s: float) -> gcra.Update:
    """The write that moves a bucket item from the shares `old` (those it has: its own
    `~shares`, or the deployed ones at version 0) to `new` at `version`, rescaling each
    tenant's cap tats whose cap changed. Conditioned on the version and on every rescaled tat
    as seen, so it lands only on the state it was computed from."""
    update = gcra.Update()
    entries = seen.get(gcra.TENANTS)
    value = update.map_value(encode(new, version))
    if entries is None:
        top = update.name(gcra.TENANTS)
        update.conditions.append(f"attribute_not_exists({top})")
        update.sets.append(f"{top} = {value}")
        return update
    path = update.path(gcra.TENANTS, SHARES)
    pin(update, version_of(seen))
    update.sets.append(f"{path} = {value}")
    for tenant, entry in entries.items():
        if tenant.startswith("~"):
            continue
        before, after = old.get(tenant), new.get(tenant)
        for key in CAP_KEYS:
            field = fair.CAP_FIELDS[CAP_DIMENSION[key]]
            old_cap = getattr(before, key) if before is not None else None
            new_cap = getattr(after, key) if after is not None else None
            tat = entry.get(field)
            if tat is None or old_cap is None or new_cap is None or old_cap == new_cap:
                continue
            target = rescaled(tat, old_cap, new_cap, now, tolerance_s)
            if target == tat:
                continue
            cell = update.path(gcra.TENANTS, tenant, field)
            # the tat as seen: its float may round either way of the stored micros
            update.conditions.append(
                f"{cell} BETWEEN {update.value(gcra.cell(tat, 'down'))} AND "
                f"{update.value(gcra.cell(tat, 'up'))}")
            update.sets.append(f"{cell} = {update.value(gcra.cell(target, 'up'))}")
    return update

