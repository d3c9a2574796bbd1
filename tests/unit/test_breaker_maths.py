"""The circuit breaker's decisions (guard.breaker), pure: no store."""

from __future__ import annotations

import pytest

from guard.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker, View, decide, opens_after, \
    skip_for


def test_closed_allows_open_skips_until_due_then_probes():
    assert decide(View(), 100.0, 5.0) == "allow"
    opened = View(state=OPEN, opened=100.0)
    assert decide(opened, 104.9, 5.0) == "skip"
    assert skip_for(opened, 104.0, 5.0) == pytest.approx(1.0)
    assert decide(opened, 105.0, 5.0) == "probe"


def test_half_open_skips_while_the_probe_lease_runs_and_frees_an_expired_lease():
    probing = View(state=HALF_OPEN, opened=100.0, probe_until=115.0)
    assert decide(probing, 114.0, 5.0) == "skip"
    assert skip_for(probing, 114.0, 5.0) == pytest.approx(1.0)
    assert decide(probing, 115.0, 5.0) == "probe"


def test_the_threshold_th_consecutive_failure_opens_only_a_closed_breaker():
    assert not opens_after(View(failures=2), 3)
    assert opens_after(View(failures=3), 3)
    assert not opens_after(View(state=OPEN, failures=5), 3)


def test_view_of_a_missing_or_odd_item_is_closed():
    assert View.of(None) == View()
    assert View.of({"st": {"S": "weird"}}).state == CLOSED
    assert View.of({"st": {"S": "open"}, "fails": {"N": "0"}, "opened": {"N": "12.5"}}) == \
        View(state=OPEN, opened=12.5)


@pytest.mark.parametrize("kwargs, problem", [
    ({"pool_id": ""}, "pool_id"),
    ({"failure_threshold": 0}, "failure_threshold"),
    ({"open_s": 0}, "open_s"),
    ({"probe_s": -1}, "probe_s"),
])
def test_bad_settings_name_the_problem(kwargs, problem):
    args = {"pool_id": "a", **kwargs}
    with pytest.raises(ValueError, match=problem):
        CircuitBreaker("t", args.pop("pool_id"), object(), **args)
