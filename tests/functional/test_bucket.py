"""The distributed token bucket against the local AWS server over HTTP (frozen, injected clock)."""

from __future__ import annotations

import math

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ReadTimeoutError

from guard import BucketRequestError, Limits, TokenBucket


@pytest.fixture
def make_bucket(bucket_table, dynamodb, clock):
    def make(limits, bucket_id="anthropic#sonnet-4", client=None, **kwargs):
        kwargs.setdefault("clamp_margin_s", 0.0)
        return TokenBucket(bucket_table, bucket_id, limits, client or dynamodb, clock=clock,
                           **kwargs)

    return make


def drain(bucket, **amounts):
    """Acquire until refused; returns (grants, refusal)."""
    grants = 0
    while True:
        grant = bucket.try_acquire(**amounts)
        if not grant.granted:
            return grants, grant
        grants += 1


# -- refill maths -------------------------------------------------------------------------------

def test_fresh_bucket_admits_one_capacity_then_refills_at_limit_per_60s(make_bucket, clock):
    bucket = make_bucket(Limits(rpm=60))
    grants, refusal = drain(bucket)
    assert grants == 60
    assert refusal.reason == "quota"
    assert refusal.retry_after == pytest.approx(1.0)

    clock.advance(0.5)
    half = bucket.try_acquire()
    assert not half.granted and half.retry_after == pytest.approx(0.5)

    clock.advance(0.5)
    assert bucket.try_acquire().granted
    assert not bucket.try_acquire().granted

    clock.advance(30)
    grants, refusal = drain(bucket)
    assert grants == 30
    assert refusal.retry_after == pytest.approx(1.0)


def test_idle_dimension_charges_at_most_the_clamp_margin(make_bucket, clock):
    bucket = make_bucket(Limits(rpm=60), clamp_margin_s=1.0)
    grants, _ = drain(bucket)
    assert grants == 59  # capacity 60 minus refill x 1 s margin
    clock.advance(600)  # long idle: the bucket is full again, never more than full
    grants, _ = drain(bucket)
    assert grants == 59


def test_token_dimensions_refuse_with_the_exact_wait_of_the_slowest_dimension(make_bucket):
    bucket = make_bucket(Limits(rpm=600, itpm=6000, otpm=1200))
    assert bucket.try_acquire(1, 3000, 600).granted
    assert bucket.try_acquire(1, 3000, 600).granted
    refusal = bucket.try_acquire(1, 1, 1)
    assert not refusal.granted and refusal.reason == "quota"
    # input refills 100 tokens/s (0.01 s for 1 token), output 20 tokens/s (0.05 s): the larger
    assert refusal.retry_after == pytest.approx(0.05)
    assert refusal.reserved == {"requests": 1, "input_tokens": 1, "output_tokens": 1}


def test_quota_used_percent_reports_the_fullest_dimension(make_bucket):
    bucket = make_bucket(Limits(rpm=600, itpm=6000, otpm=1200))
    grant = bucket.try_acquire(1, 600, 900)
    assert grant.quota_used_percent == pytest.approx(75.0)  # output: 900 of 1200


def test_a_stale_view_costs_one_extra_round_trip_and_never_over_admits(make_bucket, clock):
    first = make_bucket(Limits(rpm=60), clamp_margin_s=1.0)
    second = make_bucket(Limits(rpm=60), clamp_margin_s=1.0)
    assert second.try_acquire().granted  # second's view: bucket nearly full
    clock.advance(120)  # ... and stale: first drains it meanwhile
    drain(first)
    clock.advance(1.5)
    late = second.try_acquire()
    assert late.granted and late.store_calls == 2  # idle form refused, busy form written
    assert not second.try_acquire().granted


# -- settle -------------------------------------------------------------------------------------

def test_settle_returns_unused_output_reservation(make_bucket):
    bucket = make_bucket(Limits(rpm=600, otpm=1200))
    grant = bucket.try_acquire(1, 0, 1200)
    assert not bucket.try_acquire(1, 0, 1).granted
    settlement = bucket.settle(grant, 0, 200)
    assert settlement.settled and settlement.adjustment == {"output_tokens": -1000}
    assert bucket.try_acquire(1, 0, 1000).granted
    assert not bucket.try_acquire(1, 0, 1).granted


def test_settle_charges_extra_input_as_debt_down_to_minus_one_capacity(make_bucket):
    bucket = make_bucket(Limits(rpm=600, itpm=6000))
    grant = bucket.try_acquire(1, 1000, 0)
    bucket.settle(grant, 4000, 0)  # 3,000 tokens more than reserved
    assert bucket.level("input_tokens") == pytest.approx(2000)
    assert not bucket.try_acquire(1, 2001, 0).granted
    grant = bucket.try_acquire(1, 2000, 0)
    assert grant.granted
    bucket.settle(grant, 20000, 0)  # would be -18,000: carried down to -6,000 only
    assert bucket.level("input_tokens") == pytest.approx(-6000)
    refusal = bucket.try_acquire(1, 1, 0)
    assert refusal.retry_after == pytest.approx(60.01)  # (6,000 + 1) tokens at 100 tokens/s


def test_settle_rejects_refused_foreign_and_repeated_grants(make_bucket):
    bucket = make_bucket(Limits(rpm=1))
    other = make_bucket(Limits(rpm=1), bucket_id="anthropic#haiku")
    grant = bucket.try_acquire()
    refused = bucket.try_acquire()
    with pytest.raises(BucketRequestError, match="granted Grant"):
        bucket.settle(refused, 0, 0)
    with pytest.raises(BucketRequestError, match="belongs to bucket"):
        other.settle(grant, 0, 0)
    bucket.settle(grant, 0, 0)
    with pytest.raises(BucketRequestError, match="already settled"):
        bucket.settle(grant, 0, 0)


def test_cache_reads_count_only_where_the_model_counts_them(make_bucket):
    modern = make_bucket(Limits(rpm=100, itpm=6000))
    grant = modern.try_acquire(1, 1000, 0)
    settlement = modern.settle(grant, 500, 0, cache_creation_tokens=500,
                               cache_read_tokens=4000)
    assert settlement.adjustment == {"input_tokens": 0} and settlement.store_calls == 0

    haiku_35 = make_bucket(Limits(rpm=100, itpm=6000, counts_cache_reads=True),
                           bucket_id="anthropic#haiku-3-5")
    grant = haiku_35.try_acquire(1, 1000, 0)
    settlement = haiku_35.settle(grant, 500, 0, cache_creation_tokens=500,
                                 cache_read_tokens=4000)
    assert settlement.adjustment == {"input_tokens": 4000}
    assert haiku_35.level("input_tokens") == pytest.approx(6000 - 5000)


# -- Bedrock ------------------------------------------------------------------------------------

def test_bedrock_reserves_input_plus_max_tokens_times_burndown(make_bucket):
    bucket = make_bucket(Limits(None, tpm=12000, output_burndown=5), bucket_id="bedrock#sonnet")
    grant = bucket.try_acquire(1, 1000, 1000)
    assert grant.reserved == {"tokens": 6000}
    assert bucket.try_acquire(1, 1000, 1000).granted
    assert not bucket.try_acquire(1, 1, 0).granted
    # actual: 1,000 in + 200 out x 5; cache reads are not counted by Bedrock
    settlement = bucket.settle(grant, 1000, 200, cache_read_tokens=5000)
    assert settlement.adjustment == {"tokens": -4000}
    assert bucket.try_acquire(1, 1000, 600).granted  # 1,000 + 600 x 5 = 4,000
    assert not bucket.try_acquire(1, 1, 0).granted


def test_bedrock_request_above_capacity_can_never_fit(make_bucket):
    bucket = make_bucket(Limits(rpm=10, tpm=12000, output_burndown=5))
    with pytest.raises(BucketRequestError, match="tokens reservation of 12005 exceeds"):
        bucket.try_acquire(1, 2005, 2000)


# -- cool-down ----------------------------------------------------------------------------------

def test_cool_down_refuses_every_caller_until_it_ends(make_bucket, clock):
    setter = make_bucket(Limits(rpm=600))
    other = make_bucket(Limits(rpm=600))
    setter.cool_down(5)
    first = other.try_acquire()
    assert (first.granted, first.reason) == (False, "cool_down")
    assert first.retry_after == pytest.approx(5.0)
    fresh = other.try_acquire()
    assert fresh.reason == "cool_down" and fresh.store_calls == 0  # from the item just seen
    clock.advance(4)
    again = other.try_acquire()  # the item seen is 4 s old: ask the store again
    assert again.reason == "cool_down" and again.retry_after == pytest.approx(1.0)
    assert again.store_calls == 1
    clock.advance(1)
    assert other.try_acquire().granted


def test_cool_down_extends_but_never_shortens(make_bucket):
    setter = make_bucket(Limits(rpm=600))
    setter.cool_down(10)
    setter.cool_down(2)
    refusal = make_bucket(Limits(rpm=600)).try_acquire()
    assert refusal.retry_after == pytest.approx(10.0)


# -- server headers -----------------------------------------------------------------------------

def test_headers_lower_the_bucket_beyond_rounding(make_bucket):
    bucket = make_bucket(Limits(rpm=50, itpm=30000, otpm=8000))
    lowered = bucket.observe_headers({
        "Anthropic-RateLimit-Requests-Remaining": "10",
        "anthropic-ratelimit-input-tokens-remaining": "12000",
        "anthropic-ratelimit-output-tokens-remaining": "7500",  # within rounding of 8,000
        "anthropic-ratelimit-tokens-remaining": "garbage",
    })
    assert lowered == {"requests": 10, "input_tokens": 12000}
    assert bucket.level("output_tokens") == pytest.approx(8000)
    assert bucket.try_acquire(1, 12000, 0).granted
    assert not bucket.try_acquire(1, 1, 0).granted


def test_headers_never_raise_the_bucket(make_bucket):
    bucket = make_bucket(Limits(rpm=50, itpm=30000))
    bucket.try_acquire(1, 25000, 0)
    assert bucket.observe_headers([("anthropic-ratelimit-input-tokens-remaining", "30000"),
                                   ("anthropic-ratelimit-requests-remaining", "50")]) == {}
    assert bucket.level("input_tokens") == pytest.approx(5000)


def test_headers_from_another_client_are_seen_by_every_caller(make_bucket):
    observer = make_bucket(Limits(rpm=50, itpm=30000))
    observer.observe_headers({"anthropic-ratelimit-input-tokens-remaining": "0"})
    refusal = make_bucket(Limits(rpm=50, itpm=30000)).try_acquire(1, 1000, 0)
    assert not refusal.granted and refusal.retry_after == pytest.approx(2.0)


def test_a_refund_of_a_call_in_flight_across_a_lowering_is_not_credited_again(make_bucket,
                                                                                clock):
    """The server charged the call's actual input at its start, and its remaining says so: the
    settle after the lowering must not add the unused estimate back on top."""
    bucket = make_bucket(Limits(rpm=50, itpm=60_000, otpm=8_000))
    in_flight = bucket.try_acquire(1, 10_000, 1_000)   # estimate 10k; the server counts 2k
    clock.advance(0.001)
    assert "input_tokens" in bucket.observe_headers(
        {"anthropic-ratelimit-input-tokens-remaining": "20000"})   # another application
    settlement = bucket.settle(in_flight, 2_000, 1_000)
    assert bucket.level("input_tokens") <= 20_000 + 1
    assert settlement.forgone == {"input_tokens": pytest.approx(8_000)}
    assert not bucket.try_acquire(1, 25_000, 0).granted
    clock.advance(0.001)
    later = bucket.try_acquire(1, 10_000, 0)   # granted after the lowering: refunded as before
    assert later.granted
    assert bucket.settle(later, 2_000, 0).forgone == {}
    assert bucket.level("input_tokens") == pytest.approx(20_000 + 1 - 2_000, abs=1)


# -- the request on the wire --------------------------------------------------------------------

def test_acquire_is_one_conditional_update_returning_the_old_item_on_refusal(
        make_bucket, dynamodb, local_aws):
    sent = []
    dynamodb.meta.events.register("before-parameter-build.dynamodb.*",
                                  lambda params, model, **_: sent.append((model.name, params)))
    bucket = make_bucket(Limits(rpm=60, itpm=6000))
    local_aws.reset_stats()
    bucket.try_acquire(1, 100, 0)  # never seen: idle form
    bucket.try_acquire(1, 100, 0)  # busy form
    assert [name for name, _ in sent] == ["UpdateItem", "UpdateItem"]
    idle, busy = sent[0][1], sent[1][1]
    assert idle["ConditionExpression"] == (
        "(attribute_not_exists(#a0) OR #a0 <= :v0) AND "
        "(attribute_not_exists(#a1) OR #a1 <= :v1) AND "
        "(attribute_not_exists(#a2) OR #a2 <= :v3)")
    assert idle["UpdateExpression"] == "SET #a1 = :v2, #a2 = :v4"
    assert busy["ConditionExpression"] == (
        "(attribute_not_exists(#a0) OR #a0 <= :v0) AND #a1 BETWEEN :v1 AND :v2 AND "
        "#a2 BETWEEN :v4 AND :v5")
    assert busy["UpdateExpression"] == "SET #a1 = #a1 + :v3, #a2 = #a2 + :v6"
    assert busy["ExpressionAttributeNames"] == {
        "#a0": "cool_until", "#a1": "tat_requests", "#a2": "tat_input_tokens"}
    assert busy["ReturnValuesOnConditionCheckFailure"] == "ALL_OLD"
    assert busy["ReturnValues"] == "ALL_NEW"
    served = local_aws.stats()
    assert served == {"DynamoDB_20120810.UpdateItem": 2}  # no read before write


def test_refusal_reads_the_returned_old_item_not_a_second_request(make_bucket, local_aws):
    drain(make_bucket(Limits(rpm=60)))
    newcomer = make_bucket(Limits(rpm=60))
    local_aws.reset_stats()
    refusal = newcomer.try_acquire()
    assert refusal.reason == "quota" and refusal.retry_after == pytest.approx(1.0)
    assert refusal.store_calls == 1
    assert local_aws.stats() == {"DynamoDB_20120810.UpdateItem": 1}


class _NoOldItem:
    """A DynamoDB-compatible store that ignores ReturnValuesOnConditionCheckFailure: a refused
    write carries no old item."""

    def __init__(self, client) -> None:
        self._client = client

    def update_item(self, **request):
        from botocore.exceptions import ClientError

        try:
            return self._client.update_item(**request)
        except ClientError as err:
            err.response.pop("Item", None)
            raise

    def __getattr__(self, name):
        return getattr(self._client, name)


def test_a_refusal_without_the_old_item_reads_the_state_once(make_bucket, local_aws, dynamodb):
    drain(make_bucket(Limits(rpm=60)))
    newcomer = make_bucket(Limits(rpm=60), client=_NoOldItem(dynamodb))
    local_aws.reset_stats()
    refusal = newcomer.try_acquire()
    assert refusal.reason == "quota" and refusal.retry_after == pytest.approx(1.0)
    assert (refusal.store_calls, refusal.store_reads) == (1, 1)
    assert local_aws.stats() == {"DynamoDB_20120810.UpdateItem": 1,
                                 "DynamoDB_20120810.GetItem": 1}
    again = newcomer.try_acquire()   # the state read is this client's fresh view
    assert not again.granted and again.store_calls == 0


# -- store errors -------------------------------------------------------------------------------

def _throttled(**_):
    response = AWSResponse("http://local", 400, {}, None)
    return response, {"Error": {"Code": "ProvisionedThroughputExceededException",
                                "Message": "Rate of requests exceeds the allowed throughput."},
                      "ResponseMetadata": {"HTTPStatusCode": 400}}


def test_store_throttling_refuses_and_never_grants(make_bucket, local_aws):
    client = local_aws.client("dynamodb", retries={"total_max_attempts": 1})
    bucket = make_bucket(Limits(rpm=600), client=client)
    client.meta.events.register("before-call.dynamodb.UpdateItem", _throttled)
    outcomes = [bucket.try_acquire() for _ in range(3)]
    assert [(g.granted, g.reason) for g in outcomes] == [(False, "store_unavailable")] * 3
    assert [g.retry_after for g in outcomes] == [0.1, 0.2, 0.4]  # backs off
    client.meta.events.unregister("before-call.dynamodb.UpdateItem", _throttled)
    assert bucket.try_acquire().granted


def test_store_timeout_refuses_and_settle_reports_it(make_bucket, local_aws):
    client = local_aws.client("dynamodb", retries={"total_max_attempts": 1})
    bucket = make_bucket(Limits(rpm=600, otpm=6000), client=client)
    grant = bucket.try_acquire(1, 0, 1000)

    def timeout(**_):
        raise ReadTimeoutError(endpoint_url=local_aws.endpoint_url)

    client.meta.events.register("before-send.dynamodb.UpdateItem", timeout)
    refusal = bucket.try_acquire()
    assert (refusal.granted, refusal.reason) == (False, "store_unavailable")
    settlement = bucket.settle(grant, 0, 10)
    assert (settlement.settled, settlement.reason) == (False, "store_unavailable")


def test_unreachable_store_and_missing_table_refuse(make_bucket, local_aws, dynamodb, clock):
    import boto3
    from botocore.config import Config

    closed = boto3.client("dynamodb", endpoint_url="http://127.0.0.1:9", region_name="us-east-1",
                          config=Config(retries={"total_max_attempts": 1}, connect_timeout=1))
    assert make_bucket(Limits(rpm=600), client=closed).try_acquire().reason == \
        "store_unavailable"
    missing = TokenBucket("no-such-table", "b", Limits(rpm=600), dynamodb, clock=clock)
    assert missing.try_acquire().reason == "store_unavailable"


# -- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("amounts, message", [
    ({"requests": -1}, "requests must not be negative"),
    ({"input_tokens": 1.5}, "input_tokens must be a whole number, got float"),
    ({"output_tokens": True}, "output_tokens must be a whole number, got bool"),
    ({"input_tokens": "300"}, "input_tokens must be a whole number, got str"),
    ({"input_tokens": 30001}, "input_tokens reservation of 30001 exceeds the bucket capacity"),
    ({"requests": 51}, "requests reservation of 51 exceeds"),
])
def test_bad_amounts_raise_a_clear_error_at_once(make_bucket, local_aws, amounts, message):
    bucket = make_bucket(Limits(rpm=50, itpm=30000, otpm=8000))
    local_aws.reset_stats()
    with pytest.raises(BucketRequestError, match=message):
        bucket.try_acquire(**amounts)
    assert local_aws.stats() == {}  # nothing was sent


@pytest.mark.parametrize("seconds", [0, -1, math.nan, math.inf, "5", True])
def test_bad_cool_down_raises(make_bucket, seconds):
    with pytest.raises(BucketRequestError, match="positive number of seconds"):
        make_bucket(Limits(rpm=50)).cool_down(seconds)


def test_bad_settle_amounts_raise(make_bucket):
    bucket = make_bucket(Limits(rpm=50, itpm=30000))
    grant = bucket.try_acquire(1, 10, 0)
    with pytest.raises(BucketRequestError, match="cache_read_tokens must not be negative"):
        bucket.settle(grant, 10, 0, cache_read_tokens=-5)


def test_an_old_local_view_does_not_refuse_what_others_refunded(make_bucket, clock):
    owner = make_bucket(Limits(rpm=600, otpm=10000))
    watcher = make_bucket(Limits(rpm=600, otpm=10000))
    grant = owner.try_acquire(1, 0, 9000)
    assert not watcher.try_acquire(1, 0, 5000).granted  # sees 9,000 reserved
    owner.settle(grant, 0, 100)  # 8,900 come back
    clock.advance(2)  # the watcher's view is now older than the local-refusal window
    late = watcher.try_acquire(1, 0, 5000)
    assert late.granted and late.store_calls >= 1


def test_an_acquire_of_nothing_grants_without_a_write(make_bucket, local_aws):
    bucket = make_bucket(Limits(None, 1000, 1000))
    local_aws.reset_stats()
    grant = bucket.try_acquire(0, 0, 0)
    assert grant.granted and grant.store_calls == 0
    assert local_aws.stats() == {}


# -- rollout: clients from before bookings and new clients in poll mode on one item ----------

def _v1_refund(dynamodb, table, bucket_id, dim, refund_s, now):
    """The refund write a client from before bookings sends (its `_settle_update` busy form):
    no booked_until check, no exact undo."""
    from guard.gcra import cell

    dynamodb.update_item(
        TableName=table, Key={"pk": {"S": bucket_id}},
        UpdateExpression="SET #a0 = #a0 - :v1",
        ConditionExpression="#a0 >= :v0",
        ExpressionAttributeNames={"#a0": "tat_" + dim},
        ExpressionAttributeValues={":v0": {"N": cell(now + refund_s, "up")},
                                   ":v1": {"N": cell(refund_s, "down")}},
        ReturnValues="ALL_NEW")


def test_old_and_new_clients_in_poll_mode_share_one_item(make_bucket, dynamodb, bucket_table,
                                                         clock):
    limits = Limits(rpm=60, otpm=6000)
    new = make_bucket(limits)   # poll mode: max_wait_s=0, the acquire forms v1 sends too
    old = make_bucket(limits)   # its acquires are the same forms; its refunds are v1's
    for _round in range(10):
        mine = new.try_acquire(1, 0, 300)
        theirs = old.try_acquire(1, 0, 300)
        assert mine.granted and theirs.granted and mine.start_at == theirs.start_at
        settled = new.settle(mine, 0, 100)   # 200 of 300 output tokens come back
        assert settled.settled and not settled.forgone
        _v1_refund(dynamodb, bucket_table, "anthropic#sonnet-4", "output_tokens",
                   200 * 60 / 6000, clock())
        clock.advance(0.5)
    item = dynamodb.get_item(TableName=bucket_table, Key={"pk": {"S": "anthropic#sonnet-4"}},
                             ConsistentRead=True)["Item"]
    assert "booked_until" not in item   # nothing booked: every refund stays creditable
    # 20 requests of 100 output tokens each, and 5 s of refill: exactly what both sides used
    seen = new.try_acquire(1, 0, 0)
    assert seen.granted
    assert new.level("output_tokens") == pytest.approx(6000 - 20 * 100 + 5 * 100, abs=1)


def test_a_booking_with_an_old_view_reads_the_state_once_and_books_in_one_write(
        make_bucket, local_aws, clock):
    mine = make_bucket(Limits(rpm=60))
    others = make_bucket(Limits(rpm=60))
    assert mine.try_acquire().granted  # mine's view: one request charged
    drain(others)  # the bucket empties behind mine's back ...
    for _ in range(5):  # ... and others book a queue five seconds deep
        assert others.try_acquire(max_wait_s=30).granted
    queue_seen_at = clock()
    # older than a couple of round trips however slow the store (the slack is at most 0.5 s)
    clock.advance(1.5)
    local_aws.reset_stats()
    booked = mine.try_acquire(max_wait_s=30)
    assert booked.granted and booked.store_reads == 1 and booked.store_calls == 1
    assert local_aws.stats() == {"DynamoDB_20120810.GetItem": 1,
                                 "DynamoDB_20120810.UpdateItem": 1}
    # behind the five booked ahead of it (one request per second), at most the slack late
    # (a round trip, at most 0.5 s, plus one request's cost)
    assert queue_seen_at + 6 <= booked.start_at <= queue_seen_at + 7.5 + 1e-3
    local_aws.reset_stats()
    again = mine.try_acquire(max_wait_s=30)  # its view is fresh now: no read
    assert again.granted and again.store_reads == 0 and again.store_calls == 1
    assert mine.writes_by_purpose == {"acquire": 3, "settle": 0, "cool_down": 0, "lower": 0,
                                      "learn": 0}
    assert mine.granted_acquires == 3


def test_polling_never_reads_before_its_write(make_bucket, local_aws, clock):
    bucket = make_bucket(Limits(rpm=60))
    bucket.try_acquire()
    clock.advance(30)
    local_aws.reset_stats()
    assert bucket.try_acquire().granted
    assert local_aws.stats() == {"DynamoDB_20120810.UpdateItem": 1}


def test_after_a_lost_race_bookings_from_one_view_at_50_rpm_each_take_one_write(make_bucket,
                                                                               clock):
    """One request costs 1.2 s of refill at 50 RPM, more than a round trip: a booking placed
    less than one cost after the queue end it saw loses to any booking made meanwhile. Once a
    client has lost such a race, its bookings leave room for a whole concurrent booking."""
    limits = Limits(rpm=50)
    assert make_bucket(limits).try_acquire(50).granted  # empty: a queue forms at once
    drained_at = clock()
    first, second = make_bucket(limits), make_bucket(limits)
    rounds = []
    for _ in range(2):
        for bucket in (first, second):  # both see the same queue end
            assert bucket.cool_down_until() == 0.0
        one = first.try_acquire(max_wait_s=30)
        two = second.try_acquire(max_wait_s=30)
        assert one.granted and two.granted, (one, two)
        rounds.append((one.store_calls, two.store_calls))
    assert rounds[1] == (1, 1), rounds  # the second round: no write lost
    assert rounds[0][1] <= 2, rounds  # the race lost once costs one write
    # four requests booked: none starts before the refill holds it (1.2 s each at 50 RPM)
    assert min(one.start_at, two.start_at) >= drained_at + 3 * 1.2 - 1e-6
