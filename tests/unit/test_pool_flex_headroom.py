"""The headroom a flex pool learns (guard.flex_headroom): the pure plans of a shed and of a
probe back up, over the bucket item's learned entries."""

from __future__ import annotations

import pytest

from guard.flex_headroom import HOLD_S, MIN_FRACTION, PROBE_STEP, probe_plan, shed_plan
from guard.learned_limits import SWITCHED_AT

CONFIGURED = {"requests": 50.0, "tokens": 100_000.0}
NOW = 1_800_000_000.0


def item(capacities=None, at=None):
    """A bucket item whose learned entries hold `capacities`, switched at `at`."""
    if capacities is None:
        return {}
    return {"learned": {dim: {"c": c, "f": CONFIGURED[dim], **({SWITCHED_AT: at} if at else {})}
                        for dim, c in capacities.items()}}


def test_a_flex_429_halves_every_capacity_in_force():
    assert shed_plan(item(), CONFIGURED, NOW, booked_at=NOW - 1) == {
        "requests": (50.0, 25.0, 50.0), "tokens": (100_000.0, 50_000.0, 100_000.0)}
    lowered = item({"requests": 25.0, "tokens": 50_000.0}, at=NOW - 10)
    assert shed_plan(lowered, CONFIGURED, NOW, booked_at=NOW - 1)["requests"] == (
        25.0, 12.5, 50.0)


def test_a_429_booked_before_the_last_switch_lowers_nothing_more():
    """A burst of refusals of requests booked at the old capacity halves it once."""
    lowered = item({"requests": 25.0, "tokens": 50_000.0}, at=NOW - 1)
    assert shed_plan(lowered, CONFIGURED, NOW, booked_at=NOW - 2) == {}


def test_the_capacity_never_falls_below_its_floor():
    floor = {dim: MIN_FRACTION * c for dim, c in CONFIGURED.items()}
    assert shed_plan(item(floor, at=NOW - 60), CONFIGURED, NOW, booked_at=NOW - 1) == {}
    near = item({dim: 1.5 * c for dim, c in floor.items()}, at=NOW - 60)
    assert shed_plan(near, CONFIGURED, NOW, booked_at=NOW - 1)["requests"][1] == \
        pytest.approx(floor["requests"])


def test_a_probe_waits_hold_s_after_the_last_switch_then_steps_up_to_the_configured():
    lowered = {"requests": 25.0, "tokens": 50_000.0}
    assert probe_plan(item(lowered, at=NOW - HOLD_S + 1), CONFIGURED, NOW) == {}
    step = probe_plan(item(lowered, at=NOW - HOLD_S), CONFIGURED, NOW)
    assert step["requests"] == (25.0, 25.0 + PROBE_STEP * 50.0, 50.0)
    almost = {"requests": 49.0, "tokens": 100_000.0}
    assert probe_plan(item(almost, at=NOW - HOLD_S), CONFIGURED, NOW) == {
        "requests": (49.0, 50.0, 50.0)}


def test_nothing_to_probe_at_the_configured_capacity():
    assert probe_plan(item(), CONFIGURED, NOW) == {}
    assert probe_plan(item(CONFIGURED, at=NOW - 600), CONFIGURED, NOW) == {}


def test_a_shed_keeps_each_tat_and_stamps_the_switch():
    """keep_used=False: the write switches the learned entry (stamped with now) and leaves the
    tats, so the share of the capacity in use stays; the default rescales them."""
    from guard.learned_limits import learn_update

    seen = {"requests": NOW + 30.0}  # half a minute of requests in use
    changes = {"requests": (50.0, 25.0, 50.0)}
    shed = learn_update(changes, seen, NOW, stamp=True, keep_used=False)
    assert not any("tat_" in name for name in shed.names.values())
    assert list(shed.values.values()) == [{"M": {"requests": {"M": {
        "c": {"N": "25.0"}, "f": {"N": "50.0"}, SWITCHED_AT: {"N": repr(NOW)}}}}}]
    rescaled = learn_update(changes, seen, NOW)
    assert any("tat_requests" == name for name in rescaled.names.values())
