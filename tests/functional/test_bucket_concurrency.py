"""Many processes and threads on one bucket through the local AWS server (real HTTP, real
conditional writes serialised by the launcher): the ledger never exceeds the promise."""

from __future__ import annotations

import pytest

from bench.bucket_load import Workload, mean, over_admission_windows, run_load
from guard import Limits

LIMITS = {"rpm": 600, "itpm": 60000, "otpm": 12000}
WORKLOAD = Workload(input_min=50, input_max=150, max_tokens=40, output_min=10, call_s=0.02)
ONE_REQUEST = {"requests": 1, "input_tokens": WORKLOAD.input_max,
               "output_tokens": WORKLOAD.max_tokens}
WINDOW_S = 10.0


@pytest.mark.slow
def test_sixteen_callers_never_over_admit_in_any_10s_window(local_aws, bucket_table):
    local_aws.reset_stats()
    result = run_load(local_aws.endpoint_url, bucket_table, "anthropic#load", LIMITS,
                      processes=4, threads=4, duration_s=20, workload=WORKLOAD)

    assert result.grants > 100, "the load never reached the bucket"
    assert result.refusals.get("quota", 0) > result.grants, "the bucket was not saturated"
    assert result.refusals.get("store_unavailable", 0) == 0
    capacities = Limits(**LIMITS).capacities()
    for dim, capacity in capacities.items():
        assert over_admission_windows(result.ledger, dim, capacity, WINDOW_S,
                                      slack=ONE_REQUEST[dim]) == 0, dim

    calls_per_acquire = mean(result.acquire_calls)
    assert calls_per_acquire <= 1.2
    served = local_aws.stats()["DynamoDB_20120810.UpdateItem"]
    assert served == sum(result.acquire_calls) + result.settle_calls  # every call accounted for
    assert "DynamoDB_20120810.GetItem" not in local_aws.stats()


@pytest.mark.slow
def test_callers_with_clocks_2s_apart_stay_within_capacity_plus_2s_of_refill(
        local_aws, bucket_table):
    limits = {"rpm": 300, "itpm": 30000, "otpm": 6000}
    workload = Workload(input_min=50, input_max=150, max_tokens=40, output_min=10, call_s=0.02,
                        clock_offsets_s=(-2.0, 0.0, 2.0))
    result = run_load(local_aws.endpoint_url, bucket_table, "anthropic#skew", limits,
                      processes=3, threads=2, duration_s=12, workload=workload)
    assert result.grants > 50
    skew_s = 2.0
    for dim, capacity in Limits(**limits).capacities().items():
        slack = capacity / 60.0 * skew_s + ONE_REQUEST[dim]
        assert over_admission_windows(result.ledger, dim, capacity, WINDOW_S, slack=slack) == 0
