"""Blind transfer from the agent page with real parts: a `voxgate serve` node,
headless Chromium, baresip callers, SIPp transfer targets and an aiortc agent,
in a loopback-only namespace (tests/journey/transfer_scenario.py)."""

from __future__ import annotations

import shutil
from typing import Any

import pytest

from tests.journey.test_journey import run_journey

pytestmark = pytest.mark.timeout(300)

SCENARIO = "tests.journey.transfer_scenario"


def run_transfer(case: str) -> dict[str, Any]:
    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed")
    return run_journey(case, module=SCENARIO)


def check_failed_transfer(attempt: dict[str, Any], expected: str) -> None:
    assert expected in attempt["message"]
    assert attempt["call_state"] == "connected"
    assert attempt["transfer_enabled"] is True
    assert attempt["heard_caller_after_s"] >= 1.0


def kinds(report: dict[str, Any]) -> list[str]:
    return [event["kind"] for event in report["events"]]


@pytest.mark.parametrize(
    "case", ["transfer_queue", "transfer_queue_redis"], ids=["memory", "redis"]
)
def test_transfer_to_queue_reaches_next_agent(case: str) -> None:
    if case.endswith("_redis") and shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    report = run_transfer(case)
    assert report["agent_heard_caller_s"] >= 2.0
    check_failed_transfer(report["unknown_queue"], "queue 'nosuch' not found")
    check_failed_transfer(report["bad_number"], "field 'target'")
    assert report["page_message"] == "Call transferred"
    assert report["presence_after_transfer"] == "wrap_up"
    assert report["general_after"]["transferred"] == 1
    assert report["general_after"]["answered"] == 1
    assert report["billing_waiting"]["joined"] == 1

    incoming = report["incoming"]
    assert incoming["caller"] == "caller"
    assert incoming["queue"] == "billing"
    assert incoming["ivr_path"][:3] == ["welcome", "remember", "to_agent"]
    assert incoming["intent"] == "billing"
    assert incoming["priority"] == 0
    assert report["other_heard_caller_s"] >= 2.0

    heard = report["caller_heard"]
    assert heard["agent_s"] >= 1.0
    assert heard["billing_hold_s"] >= 1.0
    assert heard["other_agent_s"] >= 1.0
    assert report["caller_end"] == "remote"

    transferred = [e for e in report["events"] if e["kind"] == "call.transferred"]
    assert len(transferred) == 1
    assert transferred[0]["payload"] == {
        "target": "billing",
        "target_kind": "queue",
        "agent_id": "agent1",
    }
    assert kinds(report).count("call.bridged") == 2
    joined = [e["payload"]["queue"] for e in report["events"] if e["kind"] == "acd.caller_joined"]
    assert joined == ["general", "billing"]

    cdr = report["cdr"]
    assert cdr["disposition"] == "completed"
    assert cdr["agent_id"] == "agent2"
    assert cdr["queue"] == "billing"
    assert cdr["end_reason"] == "agent_hangup"
    assert report["node_log_tracebacks"] == 0


def test_transfer_to_number_sends_refer() -> None:
    report = run_transfer("transfer_number")
    assert report["agent_heard_caller_s"] >= 2.0
    check_failed_transfer(report["rejected"], "rejected the REFER")
    assert report["busy_invites"] >= 1
    assert report["page_message"] == "Call transferred"
    assert report["presence_after_transfer"] == "wrap_up"
    assert report["target_passed"], report["target_log"]

    transferred = [e for e in report["events"] if e["kind"] == "call.transferred"]
    assert len(transferred) == 1
    assert transferred[0]["payload"]["target_kind"] == "number"
    assert transferred[0]["payload"]["agent_id"] == "agent1"
    ended = report["events"][-1]
    assert ended["payload"]["reason"] == "transferred"

    cdr = report["cdr"]
    assert cdr["disposition"] == "transferred"
    assert cdr["agent_id"] == "agent1"
    assert cdr["end_reason"] == "transferred"
    assert report["node_log_tracebacks"] == 0


def test_browser_caller_to_number_rejected() -> None:
    report = run_transfer("transfer_browser_caller")
    assert report["agent_heard_caller_s"] >= 2.0
    error = report["transfer_error"]
    assert error["code"] == "bad_state"
    assert error["field"] == "target_kind"
    assert "browser caller" in error["message"]
    assert report["agent_heard_after_s"] >= 1.0
    assert report["caller_heard_agent_s"] >= 1.0
    assert report["agent_hangup_reason"] == "agent hung up"
    assert report["node_log_tracebacks"] == 0
