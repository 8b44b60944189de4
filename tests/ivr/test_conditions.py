"""Branch conditions on variables, time windows and the caller's number."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from ivr.conditions import ConditionContext, evaluate, in_window
from ivr.model import Condition, TimeWindow

NOON_UTC_MONDAY = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)


def _holds(
    condition: dict[str, Any], variables: dict[str, Any], caller: str = "+15550100001"
) -> bool:
    context = ConditionContext(variables, caller, NOON_UTC_MONDAY)
    return evaluate(Condition.model_validate(condition), context)


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"var": "tier", "eq": "gold"}, True),
        ({"var": "tier", "ne": "gold"}, False),
        ({"var": "tier", "in": ["silver", "gold"]}, True),
        ({"var": "tier", "not_in": ["silver", "gold"]}, False),
        ({"var": "balance", "gt": 99.5}, True),
        ({"var": "balance", "le": 99}, False),
        ({"var": "balance", "eq": "100"}, True),
        ({"var": "account.id", "matches": "[A-Z]{2}[0-9]+"}, True),
        ({"var": "account.id", "matches": "[0-9]+"}, False),
        ({"var": "account.missing", "exists": False}, True),
        ({"var": "account.missing", "eq": "x"}, False),
        ({"var": "tier", "gt": 3}, False),
        ({"var": "__class__", "exists": True}, False),
        ({"not": {"var": "tier", "eq": "gold"}}, False),
        ({"any": [{"var": "tier", "eq": "x"}, {"var": "balance", "ge": 100}]}, True),
        ({"all": [{"var": "tier", "eq": "gold"}, {"var": "balance", "lt": 100}]}, False),
    ],
)
def test_variable_conditions(condition: dict[str, Any], expected: bool) -> None:
    variables = {"tier": "gold", "balance": 100, "account": {"id": "AB123"}}
    assert _holds(condition, variables) is expected


def test_caller_conditions() -> None:
    assert _holds({"caller": {"prefix": ["+1555"]}}, {})
    assert not _holds({"caller": {"prefix": ["+44"]}}, {})
    assert _holds({"caller": {"in": ["+15550100001"]}}, {})
    assert _holds({"caller": {"matches": r"\+1555[0-9]+"}}, {})
    assert not _holds({"caller": {"matches": "[0-9]+"}}, {}, caller="anonymous")


def test_window_wraps_midnight() -> None:
    night = TimeWindow(between="22:00-06:00", timezone="UTC")
    assert in_window(night, dt.datetime(2026, 12, 7, 23, 30, tzinfo=dt.UTC))
    assert in_window(night, dt.datetime(2026, 12, 7, 5, 59, tzinfo=dt.UTC))
    assert not in_window(night, dt.datetime(2026, 12, 7, 6, 0, tzinfo=dt.UTC))
    assert not in_window(night, NOON_UTC_MONDAY)


def test_window_uses_its_time_zone() -> None:
    tokyo_evening = TimeWindow(between="18:00-23:00", days=["mon"], timezone="Asia/Tokyo")
    assert in_window(tokyo_evening, dt.datetime(2026, 12, 7, 10, 0, tzinfo=dt.UTC))
    assert not in_window(tokyo_evening, dt.datetime(2026, 12, 7, 15, 0, tzinfo=dt.UTC))


def test_unknown_time_zone_never_matches() -> None:
    window = TimeWindow(between="00:00-23:59", timezone="Mars/Olympus_Mons")
    assert not in_window(window, NOON_UTC_MONDAY)


@pytest.mark.parametrize(
    "condition",
    [
        {"eq": 1},
        {"var": "x"},
        {},
        {"time": {"between": "9-17"}},
        {"time": {"between": "25:00-26:00"}},
    ],
)
def test_malformed_conditions_rejected(condition: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Condition.model_validate(condition)
