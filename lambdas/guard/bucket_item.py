"""The bucket item's attributes and their DynamoDB encoding: pure, no I/O.

Attribute names (one `tat_<dimension>` per enforced dimension, the shared `cool_until` and
`booked_until`, `lowered_at_<dimension>`, the `tenants` and `learned` maps), numbers encoded as
seconds with microsecond precision rounded toward admitting less (`cell`), an item decoded
to seconds (`decode`), and one conditional UpdateItem under construction (`Update`). The
maths and the update forms that fill an `Update` are in `guard.gcra`.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from .limits import INPUT_TOKENS, OUTPUT_TOKENS, REQUESTS, TOKENS

PARTITION_KEY = "pk"
COOL_UNTIL = "cool_until"
BOOKED_UNTIL = "booked_until"
TAT_PREFIX = "tat_"
LOWERED_PREFIX = "lowered_at_"
#: One map attribute with each tenant's fair-share state (see `guard.fair`).
TENANTS = "tenants"
#: One map attribute with the limits learned from the server's headers, per dimension: "c",
#: the capacity in force (per minute; every `tat` of that dimension is in its seconds) and
#: "f", the configured capacity it replaced (an entry for another configuration is void).
LEARNED = "learned"
CAPACITY, CONFIGURED = "c", "f"

#: Every attribute of a bucket item: its key and its rate-limit state. A booked caller reads
#: exactly these (a projection; IAM allows no other attribute of the bucket table).
DIMENSIONS = (REQUESTS, INPUT_TOKENS, OUTPUT_TOKENS, TOKENS)
STATE_ATTRIBUTES = (PARTITION_KEY, COOL_UNTIL, BOOKED_UNTIL) + tuple(
    TAT_PREFIX + dim for dim in DIMENSIONS) + tuple(
    LOWERED_PREFIX + dim for dim in DIMENSIONS) + (TENANTS, LEARNED)


def cell(value: float, rounding: str) -> str:
    """Encode seconds as a DynamoDB number with microsecond precision, rounded `up` or `down`
    so that every rounding errs on the side of admitting less."""
    scaled = value * 1_000_000
    micros = math.ceil(scaled) if rounding == "up" else math.floor(scaled)
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), 1_000_000)
    return f"{sign}{whole}.{frac:06d}"


def decode(item: Mapping[str, Mapping[str, str]]) -> dict[str, float]:
    """DynamoDB item -> {dimension, "cool_until", "booked_until" or "lowered_at_<dimension>":
    seconds; "tenants": {tenant: {field: seconds}}}."""
    decoded: dict[str, Any] = {}
    for attribute, value in item.items():
        if attribute in (TENANTS, LEARNED) and "M" in value:
            decoded[attribute] = {name: {field: float(number["N"]) for field, number
                                       in entry.get("M", {}).items() if "N" in number}
                                for name, entry in value["M"].items()}
            continue
        if "N" not in value:
            continue
        if attribute.startswith(TAT_PREFIX):
            decoded[attribute[len(TAT_PREFIX):]] = float(value["N"])
        elif attribute in (COOL_UNTIL, BOOKED_UNTIL) or attribute.startswith(LOWERED_PREFIX):
            decoded[attribute] = float(value["N"])
    return decoded


class Update:
    """One conditional UpdateItem under construction."""

    def __init__(self) -> None:
        self.sets: list[str] = []
        self.conditions: list[str] = []
        self.names: dict[str, str] = {}
        self.values: dict[str, dict[str, str]] = {}

    def name(self, attribute: str) -> str:
        for placeholder, existing in self.names.items():
            if existing == attribute:
                return placeholder
        placeholder = f"#a{len(self.names)}"
        self.names[placeholder] = attribute
        return placeholder

    def path(self, *attributes: str) -> str:
        """A document path (`#a1.#a2`) to a map entry: a placeholder per part."""
        return ".".join(self.name(attribute) for attribute in attributes)

    def value(self, number: str) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = {"N": number}
        return placeholder

    def map_value(self, entries: Mapping[str, Any]) -> str:
        """A map value: {name: DynamoDB number string, or a nested mapping of them}."""
        def encode(entry):
            if isinstance(entry, Mapping):
                return {"M": {key: encode(value) for key, value in entry.items()}}
            return {"N": entry}

        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = encode(entries)
        return placeholder

    @property
    def empty(self) -> bool:
        return not self.sets

    def request(self, table: str, key: str) -> dict[str, Any]:
        req: dict[str, Any] = {
            "TableName": table,
            "Key": {PARTITION_KEY: {"S": key}},
            "UpdateExpression": "SET " + ", ".join(self.sets),
            "ExpressionAttributeNames": self.names,
            "ReturnValues": "ALL_NEW",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        if self.conditions:
            req["ConditionExpression"] = " AND ".join(self.conditions)
        if self.values:
            req["ExpressionAttributeValues"] = self.values
        return req
