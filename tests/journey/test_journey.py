"""Caller-to-agent journeys with real parts: a `voxgate serve` node, baresip callers
and an aiortc agent on the signaling WebSocket, in a loopback-only namespace."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.support.namespace import run_in_namespace

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "journey"

pytestmark = pytest.mark.timeout(300)


def run_journey(
    case: str, timeout_s: float = 260.0, module: str = "tests.journey.scenario"
) -> dict[str, Any]:
    """Run the scenario `module` (tests/journey/scenario.py) for `case` in a private
    network namespace."""
    args = [case, "--out", str(ARTIFACTS)]
    result_file = ARTIFACTS / f"{case}-result.json"
    return run_in_namespace(module, args, result_file, timeout_s=timeout_s, tools=["baresip"])


def check_offer(incoming: dict[str, Any], caller: str, priority: int) -> None:
    assert incoming["caller"] == caller
    assert incoming["called"] == "2900"
    assert incoming["queue"] == "general"
    assert incoming["intent"] == "billing"
    assert incoming["priority"] == priority
    assert incoming["ivr_path"][:3] == ["welcome", "remember", "to_agent"]
    assert incoming["waiting_s"] > 0


def check_talk(part: dict[str, Any]) -> None:
    assert part["agent_heard_caller_s"] >= 2.0
    assert part["caller_heard_agent_s"] >= 1.0


def test_agent_hangup_ends_both_legs() -> None:
    report = run_journey("agent_hangup")
    assert report["presence_after_login"] == "away"
    assert report["waiting"]["announced"] >= 1
    check_offer(report["incoming"], "caller", 0)
    check_talk(report)
    assert report["caller_end"] == "remote"
    assert report["after"]["answered"] == 1
    assert report["after"]["abandoned"] == 0
    assert report["presence_after_call"] == "available"
    assert report["health"] == 200
    assert report["node_log_tracebacks"] == 0


def test_caller_hangup_ends_agent_leg() -> None:
    report = run_journey("caller_hangup")
    check_offer(report["incoming"], "caller", 0)
    check_talk(report)
    assert report["caller_end"] == "local"
    assert report["agent_hangup_reason"]
    assert report["after"]["answered"] == 1
    assert report["presence_after_call"] == "available"
    assert report["node_log_tracebacks"] == 0


def test_caller_leaving_queue_is_abandoned() -> None:
    report = run_journey("abandon")
    assert report["after"]["abandoned"] == 1
    assert report["after"]["answered"] == 0
    assert report["waiting"]["announced"] >= 2
    assert report["caller_heard_hold_s"] >= 1.0
    assert report["node_log_tracebacks"] == 0


def test_declined_caller_is_offered_again() -> None:
    report = run_journey("decline")
    declined = report["declined"]
    check_offer(declined, "caller", 0)
    check_offer(report["incoming"], "caller", 0)
    assert report["incoming"]["call_id"] != declined["call_id"]
    assert report["incoming"]["waiting_s"] >= declined["waiting_s"]
    check_talk(report)
    assert report["after"]["returned"] == 1
    assert report["after"]["answered"] == 1
    assert report["node_log_tracebacks"] == 0


def test_caller_leaving_while_ringing_stops_ring() -> None:
    report = run_journey("abandon_ringing")
    assert report["withdrawn_reason"] == "caller hung up"
    assert report["after"]["abandoned"] == 1
    assert report["after"]["answered"] == 0
    assert report["presence_after_call"] == "available"
    assert report["node_log_tracebacks"] == 0


@pytest.mark.parametrize("case", ["priority", "priority_redis"], ids=["memory", "redis"])
def test_priority_caller_served_before_earlier_one(case: str) -> None:
    if case.endswith("_redis") and shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    report = run_journey(case)
    first, second = report["served"]
    check_offer(first["incoming"], "vip", 7)
    check_offer(second["incoming"], "normal", 0)
    check_talk(first)
    check_talk(second)
    assert report["after"]["answered"] == 2
    assert report["node_log_tracebacks"] == 0


def test_browser_agent_page_takes_call() -> None:
    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed")
    report = run_journey("browser_agent")
    assert report["presence_after_login"] == "away"
    context = report["context"]
    assert context["caller"] == "caller"
    assert context["queue"] == "general"
    assert context["path"].split(" → ")[:3] == ["welcome", "remember", "to_agent"]
    assert context["intent"] == "billing"
    assert context["priority"] == "0"
    assert report["agent_heard_caller_s"] >= 2.0
    assert report["caller_heard_agent_s"] >= 1.0
    assert report["caller_end"] == "remote"
    assert report["presence_after_call"] == "available"
    assert report["after"]["answered"] == 1
    assert report["health"] == 200
    assert report["node_log_tracebacks"] == 0


def test_spoken_words_reach_agent() -> None:
    report = run_journey("speech")
    incoming = report["incoming"]
    assert incoming["called"] == "2901"
    assert incoming["ivr_path"][:2] == ["ask", "to_agent"]
    assert incoming["words"] == "환불"
    check_talk(report)
    assert report["after"]["answered"] == 1
    assert report["node_log_tracebacks"] == 0


def test_browser_caller_page_reaches_agent() -> None:
    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed")
    report = run_journey("browser_caller")
    incoming = report["incoming"]
    assert incoming["caller"].startswith("guest-")
    assert incoming["queue"] == "general"
    assert incoming["ivr_path"][:3] == ["welcome", "remember", "to_agent"]
    assert report["agent_heard_caller_s"] >= 2.0
    assert report["caller_heard_agent_s"] >= 1.0
    assert report["agent_hangup_reason"] == "caller hung up"
    assert report["after"]["answered"] == 1
    assert report["node_log_tracebacks"] == 0


def test_two_nodes_bridge_caller_to_other_node() -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    report = run_journey("two_nodes_redis")
    check_offer(report["incoming"], "caller", 0)
    assert report["agent_heard_caller_s"] >= 2.0
    assert report["caller_heard_agent_s"] >= 1.0
    assert report["caller_end"] == "remote"
    assert report["after"]["answered"] == 1
    assert report["node_a_counters"]["abandoned"] == 0
    assert report["local_agent_offers"] == 0
    assert report["node_log_tracebacks"] == 0
