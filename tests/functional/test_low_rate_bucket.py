"""A bucket of a few requests per second with a burst of one (the AWS MCP Server's share):
bookings placed with no slack (`max_slack_s=0`) keep the rate, including after a lost race."""

from guard import Limits, TokenBucket

#: The MCP share's default rate: requests per second, a burst of one request.
RATE_PER_S = 2.0


def _bucket(bucket_table, dynamodb, clock):
    per_minute = RATE_PER_S * 60
    return TokenBucket(bucket_table, "mcp#aws", Limits(rpm=per_minute,
                                                       burst_fraction=1 / per_minute),
                       dynamodb, clock=clock, clamp_margin_s=0.0, max_slack_s=0.0)


def test_bookings_after_a_lost_race_leave_no_gap_in_a_burst_of_one_bucket(bucket_table,
                                                                         dynamodb, clock):
    """Two clients book alternately, each from a view one booking old: each booking loses
    its race once and is rewritten at the queue end the refused write returned, so every
    booking starts one request (0.5 s) after the previous one. A booking placed any later
    would throw the gap away: the bucket holds one request, so no later booking can use it."""
    first, second = (_bucket(bucket_table, dynamodb, clock) for _ in range(2))
    assert first.try_acquire(max_wait_s=30).granted  # the burst of one
    for bucket in (first, second):
        assert bucket.cool_down_until() == 0.0  # both read the same state
    starts, writes = [], []
    for _ in range(10):
        for bucket in (first, second):
            grant = bucket.try_acquire(max_wait_s=30)
            assert grant.granted, grant
            starts.append(grant.start_at)
            writes.append(grant.store_calls)
    assert max(writes) <= 2, writes  # a race lost costs one write more, never two
    gaps = [round(later - earlier, 6) for earlier, later in zip(starts, starts[1:])]
    assert sorted(starts) == starts
    assert max(gaps) <= 1 / RATE_PER_S + 1e-6, gaps
    assert starts[-1] - starts[0] <= (len(starts) - 1) / RATE_PER_S + 1e-6
