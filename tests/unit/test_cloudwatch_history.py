"""local.cloudwatch.history: synthetic seasonal histories replayed into a metric store (no I/O)."""

from __future__ import annotations

import pytest

from local.cloudwatch.bands import DAY_S, seasonal_bands
from local.cloudwatch.history import (daily_factor, replay_history, replay_seasonal_history,
                                      seasonal_points)
from local.cloudwatch.metrics import Datapoint, MetricStore

T0 = 1_800_000_000 // DAY_S * DAY_S
TENANT = {"Tenant": "acme"}


def test_the_daily_cycle_peaks_at_noon_and_falls_to_the_night_share_at_midnight():
    assert daily_factor(T0) == pytest.approx(1 / 3)
    assert daily_factor(T0 + DAY_S // 2) == pytest.approx(1.0)
    assert daily_factor(T0 + DAY_S // 2, night=0.5) == pytest.approx(1.0)
    assert daily_factor(T0, night=0.5) == pytest.approx(0.5)


def test_fourteen_days_of_two_metrics_land_in_the_store_with_their_ratio_kept():
    store = MetricStore()
    written = replay_seasonal_history(store, {"CostUSD": 0.4, "Requests": 20}, TENANT,
                                      start=T0, days=14, seed=3)
    assert written == 14 * 288 * 2 == len(store)
    cost = store.series("Bulwark", "CostUSD", TENANT, "Sum", 300, T0, T0 + 14 * DAY_S)
    requests = store.series("Bulwark", "Requests", TENANT, "Sum", 300, T0, T0 + 14 * DAY_S)
    assert all(v is not None for _, v in cost)
    assert all(c / r == pytest.approx(0.02) for (_, c), (_, r) in zip(cost, requests) if r)
    noon = [v for t, v in cost if (t % DAY_S) == DAY_S // 2]
    midnight = [v for t, v in cost if (t % DAY_S) == 0]
    assert sum(noon) / len(noon) == pytest.approx(0.4, rel=0.05)
    assert sum(midnight) / len(midnight) == pytest.approx(0.4 / 3, rel=0.05)


def test_the_same_seed_replays_the_same_history():
    a, b = MetricStore(), MetricStore()
    for store in (a, b):
        replay_seasonal_history(store, {"CostUSD": 1.0}, TENANT, start=T0, days=1, seed=7)
    assert a.series("Bulwark", "CostUSD", TENANT, "Sum", 300, T0, T0 + DAY_S) == \
        b.series("Bulwark", "CostUSD", TENANT, "Sum", 300, T0, T0 + DAY_S)


def test_a_replayed_history_trains_a_band_that_a_tenfold_step_leaves_and_normal_days_do_not():
    points = seasonal_points("Bulwark", "CostUSD", TENANT, peak=1.0, start=T0,
                             end=T0 + 15 * DAY_S, period_s=300)
    values = [p.value for p in points]
    values[-100] *= 10  # a tenfold spend in one period of the last day
    bands = seasonal_bands(values, 300, 3)
    last_day = range(14 * 288, 15 * 288)
    outside = [i for i in last_day if not bands[i][0] <= values[i] <= bands[i][1]]
    assert outside == [len(values) - 100]


def test_replay_goes_through_put_when_the_target_is_local_cloudwatch():
    class Recorder:
        def __init__(self):
            self.points = []

        def put(self, points):
            self.points += list(points)
            return len(self.points)

    target = Recorder()
    point = Datapoint.of(T0, "Bulwark", "CostUSD", 1.0, TENANT)
    assert replay_history(target, [point]) == 1 and target.points == [point]


@pytest.mark.parametrize("kwargs, problem", [
    ({"period_s": 0}, "period_s"), ({"days": 0}, "end"), ({"night": 2}, "night")])
def test_bad_arguments_say_what_is_wrong(kwargs, problem):
    with pytest.raises(ValueError, match=problem):
        replay_seasonal_history(MetricStore(), {"CostUSD": 1.0}, TENANT,
                                **{"start": T0, **kwargs})


def test_a_target_that_cannot_take_datapoints_is_refused_by_name():
    with pytest.raises(TypeError, match="LocalCloudWatch or a MetricStore"):
        replay_history(object(), [])
