"""The budget ledger's one conditional write per call (`guard.budget_writes`), built without a
store: the exact UpdateItem, condition included."""

from __future__ import annotations

from datetime import datetime, timezone

from guard import Budget
from guard.budget_view import Open, View
from guard.budget_writes import reserve_write, settle_write


def test_the_reservation_is_one_update_conditioned_on_every_limit():
    now = datetime(2027, 1, 15, 12, tzinfo=timezone.utc).timestamp()
    seen = View({"tenant:a|day": "2027-01-15", "tenant:a|d_used": 1, "tenant:a|d_open": 0,
                 "tenant:a|t_used": 1, "tenant:a|t_open": 0, "tenant:a|m_used": 1,
                 "tenant:a|m_open": 0})
    request = reserve_write(seen, {"tenant:a": Budget(usd_per_day=1.0, usd_per_month=5.0)},
                            "rid", 300, 40, now, 960).request("t", "budget#2027-01")
    names = {v: k for k, v in request["ExpressionAttributeNames"].items()}
    values = request["ExpressionAttributeValues"]
    condition = request["ConditionExpression"]
    for attribute, room in (("tenant:a|d_used", 1_000_000 - 300),
                            ("tenant:a|m_used", 5_000_000 - 300)):
        placeholder = names[attribute]
        clause = f"(attribute_not_exists({placeholder}) OR {placeholder} <= "
        assert clause in condition
        value = condition.split(clause)[1].split(")")[0]
        assert values[value] == {"N": str(room)}
    assert f"{names['tenant:a|day']} = " in condition  # the same UTC day as seen
    assert request["ReturnValuesOnConditionCheckFailure"] == "ALL_OLD"
    assert request["UpdateExpression"].startswith("SET ")
    assert names["r|rid"] in request["UpdateExpression"]


def _request_text(request) -> str:
    """The UpdateExpression and the condition with names and values written out."""
    text = f"{request['UpdateExpression']} IF {request.get('ConditionExpression', '')}"
    for placeholder, value in sorted(request["ExpressionAttributeValues"].items(),
                                     key=lambda kv: -len(kv[0])):
        text = text.replace(placeholder, next(iter(value.values())))
    for placeholder, attribute in sorted(request["ExpressionAttributeNames"].items(),
                                         key=lambda kv: -len(kv[0])):
        text = text.replace(placeholder, attribute)
    return text


def test_settling_replaces_the_reservation_with_the_actual_cost_in_one_write():
    seen = View({"tenant:a|day": "2027-01-15", "tenant:a|d_used": 300, "tenant:a|d_open": 300,
                 "tenant:a|t_used": 40, "tenant:a|t_open": 40, "tenant:a|m_used": 300,
                 "tenant:a|m_open": 300})
    reservation = Open("rid", "2027-01-15", 300, 40, 0.0, 0.0, ("tenant:a",))
    text = _request_text(settle_write(seen, reservation, 200, 30).request(
        "t", "budget#2027-01"))
    for counter, delta in (("m_used", -100), ("m_open", -300), ("d_used", -100),
                           ("d_open", -300), ("t_used", -10), ("t_open", -40)):
        attribute = f"tenant:a|{counter}"
        assert f"{attribute} = if_not_exists({attribute}, 0) + {delta}" in text
    assert "REMOVE r|rid" in text
    # refused when the reservation expired into spend, or the scope's day moved on
    assert "(attribute_exists(r|rid))" in text
    assert "(tenant:a|day = 2027-01-15)" in text


def test_settling_after_the_scope_moved_to_a_later_day_corrects_the_month_only():
    seen = View({"tenant:a|day": "2027-01-16", "tenant:a|d_used": 0, "tenant:a|d_open": 0,
                 "tenant:a|m_used": 300, "tenant:a|m_open": 300})
    reservation = Open("rid", "2027-01-15", 300, 40, 0.0, 0.0, ("tenant:a",))
    text = _request_text(settle_write(seen, reservation, 200, 30).request(
        "t", "budget#2027-01"))
    assert "tenant:a|m_used = if_not_exists(tenant:a|m_used, 0) + -100" in text
    assert "d_used" not in text and "t_used" not in text
    assert "(tenant:a|day <> 2027-01-15)" in text
