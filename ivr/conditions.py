"""Evaluate branch conditions on variables, time of day and the caller's number."""

from __future__ import annotations

import datetime as dt
import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ivr.model import CallerMatch, Condition, TimeWindow

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MISSING = object()
"""Returned by `lookup_path` for a path that is not set."""


@dataclass(frozen=True, slots=True)
class ConditionContext:
    """Inputs of a condition: variables, the caller's number and the current aware time."""

    variables: Mapping[str, Any]
    caller: str
    now: dt.datetime


def lookup_path(variables: Mapping[str, Any], dotted: str) -> Any:
    """Return the value at a dotted path of dict keys, or MISSING."""
    current: Any = variables
    for segment in dotted.split("."):
        if segment.startswith("_"):
            return MISSING
        if isinstance(current, Mapping) and segment in current:
            current = current[segment]
        else:
            return MISSING
    return current


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _same(left: Any, right: Any) -> bool:
    if left == right:
        return True
    left_number, right_number = _number(left), _number(right)
    if left_number is not None and right_number is not None:
        return left_number == right_number
    return str(left) == str(right) if left is not None and right is not None else False


def _compare(condition: Condition, value: Any) -> bool:
    if condition.exists is not None and (value is not MISSING) != condition.exists:
        return False
    if value is MISSING:
        return condition.exists is False
    checks: list[bool] = []
    if condition.eq is not None:
        checks.append(_same(value, condition.eq))
    if condition.ne is not None:
        checks.append(not _same(value, condition.ne))
    if condition.in_ is not None:
        checks.append(any(_same(value, item) for item in condition.in_))
    if condition.not_in is not None:
        checks.append(not any(_same(value, item) for item in condition.not_in))
    if condition.matches is not None:
        checks.append(re.fullmatch(condition.matches, str(value)) is not None)
    number = _number(value)
    for bound, test in (
        (condition.gt, operator.gt),
        (condition.ge, operator.ge),
        (condition.lt, operator.lt),
        (condition.le, operator.le),
    ):
        if bound is not None:
            checks.append(number is not None and test(number, bound))
    return all(checks)


def _minutes(text: str) -> int:
    hours, minutes = text.strip().split(":")
    return int(hours) * 60 + int(minutes)


def in_window(window: TimeWindow, now: dt.datetime) -> bool:
    """Return whether the aware time `now` falls in the window, in the window's time zone."""
    try:
        local = now.astimezone(ZoneInfo(window.timezone))
    except ZoneInfoNotFoundError:
        return False
    if window.days is not None and _DAYS[local.weekday()] not in window.days:
        return False
    if window.between is None:
        return True
    start_text, end_text = window.between.split("-")
    start, end, minute = _minutes(start_text), _minutes(end_text), local.hour * 60 + local.minute
    if start <= end:
        return start <= minute < end
    return minute >= start or minute < end


def _caller_matches(match: CallerMatch, caller: str) -> bool:
    if match.in_ is not None and caller not in match.in_:
        return False
    if match.prefix is not None and not any(caller.startswith(p) for p in match.prefix):
        return False
    return match.matches is None or re.fullmatch(match.matches, caller) is not None


def evaluate(condition: Condition, context: ConditionContext) -> bool:
    """Return whether every test given in `condition` holds."""
    if condition.var is not None and not _compare(
        condition, lookup_path(context.variables, condition.var)
    ):
        return False
    if condition.time is not None and not in_window(condition.time, context.now):
        return False
    if condition.caller is not None and not _caller_matches(condition.caller, context.caller):
        return False
    if condition.all_ is not None and not all(evaluate(c, context) for c in condition.all_):
        return False
    if condition.any_ is not None and not any(evaluate(c, context) for c in condition.any_):
        return False
    return not (condition.not_ is not None and evaluate(condition.not_, context))
