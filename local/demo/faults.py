"""Fault injection for the demo's `--dynamodb-throttle`."""

from __future__ import annotations

import random


def throttle_dynamodb(client, table: str, probability: float, rng: random.Random) -> None:
    """Fault injection: writes to the bucket table answer ProvisionedThroughputExceeded with
    `probability` (the guard must refuse with "store_unavailable", never grant)."""
    from botocore.awsrequest import AWSResponse

    def maybe_throttle(params, **_):
        if table.encode() in (params.get("body") or b"") and rng.random() < probability:
            return AWSResponse("http://local", 400, {}, None), {
                "Error": {"Code": "ProvisionedThroughputExceededException",
                          "Message": "injected by the demo"},
                "ResponseMetadata": {"HTTPStatusCode": 400}}
        return None

    client.meta.events.register("before-call.dynamodb.UpdateItem", maybe_throttle)

