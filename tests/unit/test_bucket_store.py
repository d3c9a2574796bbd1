"""The bucket's logic against its store interface, without AWS: an in-memory item that applies
each conditional write the way DynamoDB does, a store that is down, and the DynamoDB store's
translation of the client's replies and errors."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from guard import Limits, TokenBucket
from guard.bucket_store import REFUSED, WRITTEN, DynamoDBStore
from guard.gcra import Update
from guard.outcomes import STORE_UNAVAILABLE
from tests.unit.test_gcra import Item

T0 = 1_800_000_000.0


class ItemStore:
    """A `BucketStore` holding one item in memory (`tests.unit.test_gcra.Item`)."""

    def __init__(self) -> None:
        self.item = Item()
        self.writes: list[Update] = []

    def update(self, update: Update) -> tuple[str, dict | None]:
        self.writes.append(update)
        return (WRITTEN if self.item.apply(update) else REFUSED), self.read_state()

    def read_state(self) -> dict:
        return {name: {"N": number} for name, number in self.item.raw().items()}


class DownStore:
    def update(self, update: Update) -> tuple[str, dict | None]:
        return STORE_UNAVAILABLE, None

    def read_state(self) -> None:
        return None


def test_a_bucket_on_an_in_memory_store_grants_its_capacity_then_refuses_exactly():
    store = ItemStore()
    bucket = TokenBucket("table", "anthropic#sonnet-4", Limits(rpm=2), store=store,
                         clock=lambda: T0, clamp_margin_s=0.0)
    grants = [bucket.try_acquire() for _ in range(3)]
    assert [grant.granted for grant in grants] == [True, True, False]
    assert grants[2].reason == "quota" and grants[2].retry_after == pytest.approx(30.0)
    assert len(store.writes) == 2  # the refusal came from the item the last write returned
    assert store.item.attrs["tat_requests"] == pytest.approx(T0 + 60.0)


def test_a_settle_on_an_in_memory_store_refunds_the_unused_reservation():
    store = ItemStore()
    bucket = TokenBucket("table", "anthropic#sonnet-4", Limits(rpm=60, itpm=60_000),
                         store=store, clock=lambda: T0, clamp_margin_s=0.0)
    grant = bucket.try_acquire(input_tokens=30_000)
    assert bucket.level("input_tokens") == pytest.approx(30_000)
    settlement = bucket.settle(grant, input_tokens=10_000, output_tokens=0)
    assert settlement.settled and settlement.adjustment["input_tokens"] == -20_000
    assert bucket.level("input_tokens") == pytest.approx(50_000)


def test_a_store_that_is_down_refuses_with_store_unavailable_and_never_raises():
    bucket = TokenBucket("table", "anthropic#sonnet-4", Limits(rpm=50), store=DownStore(),
                         clock=lambda: T0)
    grant = bucket.try_acquire()
    assert (grant.granted, grant.reason, grant.store_calls) == (False, STORE_UNAVAILABLE, 1)
    assert bucket.cool_down(5) == 0.0 and bucket.cool_down_until() is None


class Client:
    """A boto3 DynamoDB client stub: raises `error`, else answers `reply`."""

    def __init__(self, reply=None, error=None) -> None:
        self.reply, self.error = reply, error

    def update_item(self, **request):
        if self.error is not None:
            raise self.error
        return self.reply

    get_item = update_item


def refused(item=None) -> ClientError:
    response = {"Error": {"Code": "ConditionalCheckFailedException"}}
    if item is not None:
        response["Item"] = item
    return ClientError(response, "UpdateItem")


@pytest.mark.parametrize("client, expected", [
    (Client({"Attributes": {"tat_requests": {"N": "1.0"}}}),
     (WRITTEN, {"tat_requests": {"N": "1.0"}})),
    (Client(error=refused({"tat_requests": {"N": "2.0"}})),
     (REFUSED, {"tat_requests": {"N": "2.0"}})),
    (Client(error=refused()), (REFUSED, None)),
    (Client(error=ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}},
                              "UpdateItem")), (STORE_UNAVAILABLE, None)),
    (Client(error=EndpointConnectionError(endpoint_url="http://nowhere")),
     (STORE_UNAVAILABLE, None)),
], ids=["written", "refused", "refused-without-item", "throttled", "unreachable"])
def test_the_dynamodb_store_turns_replies_and_errors_into_outcomes(client, expected):
    update = Update()
    update.sets.append(f"{update.name('tat_requests')} = {update.value('1.0')}")
    assert DynamoDBStore("table", "bucket", client).update(update) == expected


def test_the_dynamodb_store_reads_no_item_as_empty_and_an_error_as_none():
    assert DynamoDBStore("table", "bucket", Client({})).read_state() == {}
    down = Client(error=EndpointConnectionError(endpoint_url="http://nowhere"))
    assert DynamoDBStore("table", "bucket", down).read_state() is None
