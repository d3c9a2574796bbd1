"""The runaway breaker's decisions (`guard.runaway`): baselines from hourly spend, verdicts,
the caps of a throttle and how throttles become tenant shares. No I/O."""

from __future__ import annotations

import pytest

from guard import TenantShare
from guard.runaway import (DEPLOYMENT, RunawayError, RunawaySettings, Throttle, baseline,
                           caps_for, judge, throttled_shares)
from guard.spend import LimitSet

DAY, HOUR = 86_400.0, 3_600.0
NOW = 20 * DAY + 13.5 * HOUR  # 13:30 UTC on day 20


def _hours(day_usd_at_13: dict[int, float], other_hours_usd: float = 1.0):
    """Hourly samples: every hour of each day given, `day_usd_at_13[day]` at 13:00."""
    return [(day * DAY + h * HOUR, day_usd_at_13[day] if h == 13 else other_hours_usd)
            for day in day_usd_at_13 for h in range(24)]


def test_the_baseline_is_the_median_of_the_same_hour_over_the_last_days():
    settings = RunawaySettings(min_baseline_usd_per_hour=0.01, history_days=14)
    samples = _hours({d: 6.0 for d in range(6, 20)} | {19: 600.0})  # one past runaway hour
    assert baseline(samples, NOW, settings) == pytest.approx(6.0 / 60)  # USD per minute
    # today's hours and days beyond the history do not count
    samples += _hours({20: 900.0, 2: 900.0})
    assert baseline(samples, NOW, settings) == pytest.approx(6.0 / 60)


def test_a_day_without_spend_that_hour_counts_as_zero_but_days_before_any_data_do_not():
    settings = RunawaySettings(min_baseline_usd_per_hour=0.01)
    samples = [s for s in _hours({d: 6.0 for d in range(17, 20)}) if not (
        s[0] // DAY == 19 and s[0] % DAY == 13 * HOUR)]  # day 19 spent nothing at 13:00
    assert baseline(samples, NOW, settings) == pytest.approx(6.0 / 60)  # median of 6, 6, 0


def test_little_history_gives_the_minimum_baseline():
    settings = RunawaySettings(min_baseline_usd_per_hour=3.0)
    assert baseline([], NOW, settings) == pytest.approx(3.0 / 60)
    assert baseline(_hours({19: 0.6}), NOW, settings) == pytest.approx(3.0 / 60)


def test_a_rate_above_k_times_the_baseline_trips_and_only_a_fall_well_below_it_clears():
    settings = RunawaySettings(k=5, clear_below=0.5)
    assert judge(0.49, 0.1, False, settings).action == "ok"
    assert judge(0.51, 0.1, False, settings).action == "trip"
    assert judge(0.1, 0.1, True, settings).action == "hold"  # held at its baseline: stays
    assert judge(0.04, 0.1, True, settings).action == "clear"


def test_a_throttle_scales_the_usage_down_to_the_baseline_in_the_enforced_dimensions():
    caps = caps_for({"rpm": 100, "itpm": 100_000, "otpm": 20_000}, 1.0, 0.1,
                    ("rpm", "itpm", "otpm"))
    assert caps == {"rpm": 10, "itpm": 10_000, "otpm": 2_000}
    assert caps_for({"rpm": 3}, 1.0, 0.1, ("rpm", "tpm")) == {"rpm": 1, "tpm": 1}


def test_throttles_become_the_lower_cap_and_the_deployments_is_split_by_weight():
    shares = {"acme": TenantShare(weight=3, rpm=5), "globex": TenantShare()}
    throttles = {"acme": Throttle(0, 1, 0.1, {"rpm": 20}),
                 DEPLOYMENT: Throttle(0, 1, 0.1, {"rpm": 40, "otpm": 4_000})}
    out = throttled_shares(shares, throttles)
    assert out["acme"] == TenantShare(weight=3, rpm=5, otpm=3_000)
    assert out["globex"] == TenantShare(rpm=10, otpm=1_000)


def test_the_limits_item_round_trips_shares_and_throttles():
    limits = LimitSet(version=4, shares={"acme": TenantShare(weight=2, rpm=30)},
                      runaway={"acme": Throttle(1.0, 0.5, 0.05, {"rpm": 3})})
    assert LimitSet.decode(limits.encode()) == limits
    assert limits.tenant_shares({"acme": TenantShare(), "globex": TenantShare()}) == {
        "acme": TenantShare(weight=2, rpm=3), "globex": TenantShare()}


@pytest.mark.parametrize("field, value", [("k", 1), ("clear_below", 1.0),
                                          ("window_minutes", 0), ("history_days", 100),
                                          ("min_baseline_usd_per_hour", 0)])
def test_bad_settings_name_the_key(field, value):
    with pytest.raises(RunawayError, match=f"runaway.{field}"):
        RunawaySettings(**{field: value})


def test_a_warm_breaker_reads_the_history_once_a_day_and_the_window_every_time():
    from guard.runaway import RunawayBreaker, scopes

    calls = []

    def read(queries, start, end):
        calls.append((queries[0]["MetricStat"]["Period"], start, end))
        return {}

    clock = [NOW]
    breaker = RunawayBreaker(RunawaySettings(), scopes(["acme"], ["m"]), read=read,
                             namespace="Bulwark", cap_keys=("rpm",), clock=lambda: clock[0])
    for minute in range(3):
        clock[0] = NOW + 60 * minute
        breaker.evaluate({})
    assert [period for period, _, _ in calls] == [60, 3600, 60, 60]
    clock[0] = NOW + DAY
    breaker.evaluate({})
    assert [period for period, _, _ in calls[4:]] == [60, 3600]
    # the history ends where today starts: 14 whole days
    assert calls[1][2] - calls[1][1] == 14 * DAY and calls[1][2] == 20 * DAY


@pytest.mark.parametrize("runaway, key", [({"k": 1}, "runaway.k"),
                                          ({"clear_below": 1.5}, "runaway.clear_below"),
                                          ({"window_minutes": 0}, "runaway.window_minutes"),
                                          ({"kk": 5}, "runaway.kk")])
def test_cdk_json_runaway_settings_are_validated_naming_the_key(runaway, key):
    import json
    from pathlib import Path

    from stacks.settings import SettingsError, load_settings

    context = json.loads((Path(__file__).resolve().parents[2] / "cdk.json").read_text())[
        "context"]
    assert load_settings(context).runaway == RunawaySettings()  # defaults
    with pytest.raises(SettingsError) as bad:
        load_settings({**context, "runaway": runaway})
    assert any(key in problem for problem in bad.value.problems), bad.value.problems
