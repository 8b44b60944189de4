"""A caller on node A bridged to an agent on node B, with real parts: two `voxgate serve`
nodes on one redis-server, a baresip caller, and an aiortc agent or the agent page in
headless Chromium, in a loopback-only namespace."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.support.namespace import run_in_namespace

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "crossnode"

pytestmark = [pytest.mark.peer, pytest.mark.timeout(300)]


def run_case(case: str, timeout_s: float = 260.0) -> dict[str, Any]:
    """Run tests/crossnode/scenario.py for `case` in a private network namespace."""
    return run_in_namespace(
        "tests.crossnode.scenario",
        [case, "--out", str(ARTIFACTS)],
        ARTIFACTS / f"{case}-result.json",
        timeout_s=timeout_s,
        tools=["baresip", "redis-server"],
    )


def check_context(incoming: dict[str, Any]) -> None:
    assert incoming["caller"] == "caller"
    assert incoming["called"] == "2900"
    assert incoming["queue"] == "general"
    assert incoming["intent"] == "billing"
    assert incoming["priority"] == 0
    assert incoming["ivr_path"][:3] == ["welcome", "remember", "to_agent"]
    assert incoming["waiting_s"] > 0


@pytest.mark.parametrize("who", ["agent", "caller"])
def test_remote_agent_talks_to_caller(who: str) -> None:
    report = run_case(f"{who}_hangup")
    check_context(report["incoming"])
    assert report["agent_heard_caller_s"] >= 2.0
    assert report["caller_heard_agent_s"] >= 1.0
    assert report["caller_end"] == ("remote" if who == "agent" else "local")
    assert report["agent_hangup_reason"]
    assert report["presence_after_call"] == "available"
    assert report["node_a"]["joined"] == 1
    assert report["node_a"]["abandoned"] == 0
    assert report["node_b"]["answered"] == 1
    assert report["node_b_bridged_log"]
    assert report["node_log_tracebacks"] == 0


def test_remote_browser_agent_takes_call() -> None:
    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed")
    report = run_case("browser_agent")
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
    assert report["node_b"]["answered"] == 1
    assert report["node_log_tracebacks"] == 0


def test_remote_agent_transfers_to_queue() -> None:
    report = run_case("transfer_to_queue")
    check_context(report["first"])
    assert report["heard_before_transfer_s"] >= 1.0
    assert report["transfer_reason"] == "transferred"
    assert report["second"]["caller"] == "caller"
    assert report["second"]["queue"] == "general"
    assert report["second"]["call_id"] != report["first"]["call_id"]
    assert report["heard_after_transfer_s"] >= 2.0
    assert report["caller_end"] == "remote"
    assert report["node_a"]["transferred"] == 1
    assert report["node_a"]["joined"] == 2
    assert report["node_b"]["answered"] == 2
    assert report["node_log_tracebacks"] == 0


def test_rejected_bridge_keeps_caller_waiting() -> None:
    report = run_case("wrong_secret")
    check_context(report["first"])
    assert report["first_end_reason"] == "caller left"
    assert report["node_a_rejected_log"]
    assert report["second"]["caller"] == "caller"
    assert report["second"]["call_id"] != report["first"]["call_id"]
    assert report["node_a"]["answered"] == 0
    assert report["node_a"]["abandoned"] == 0
    assert report["node_log_tracebacks"] == 0


def test_dead_caller_node_frees_ringing_agent() -> None:
    report = run_case("node_a_dies")
    check_context(report["incoming"])
    assert report["withdrawn_reason"] == "caller left"
    assert report["presence_after_withdraw"] == "available"
    assert report["node_b"].get("answered", 0) == 0
    assert report["later_offers"] == 1


def test_caller_leaving_stops_remote_ring() -> None:
    report = run_case("caller_leaves_ringing")
    check_context(report["incoming"])
    assert report["withdrawn_reason"] == "caller left"
    assert report["presence_after_withdraw"] == "available"
    assert report["node_a"]["abandoned"] == 1
    assert report["node_b"].get("answered", 0) == 0
    assert report["later_offers"] == 1
    assert report["node_log_tracebacks"] == 0


def test_newest_agent_page_takes_agent_over() -> None:
    report = run_case("agent_moves")
    assert report["record_on_a"]["node"].startswith("node-a.")
    assert report["record_after_b_login"]["node"].startswith("node-b.")
    assert report["record_after_b_login"]["state"] == "away"
    assert report["record_on_b"]["state"] == "available"
    assert report["presence_a_after_move"]["reason"] == "moved to another node"
    assert report["node_a_kept_log"]
    assert report["record_after_a_closed"]["node"].startswith("node-b.")
    assert report["record_after_a_closed"]["state"] == "available"
    check_context(report["incoming_on_b"])
    assert report["errors_on_b"] == []
    assert report["node_log_tracebacks"] == 0


def test_busy_agent_not_taken_over() -> None:
    report = run_case("busy_agent_stays")
    check_context(report["incoming_on_a"])
    assert report["record_on_call"]["node"].startswith("node-a.")
    assert report["first_error"]["code"] == "bad_state"
    assert "busy with a call on another node" in report["first_error"]["message"]
    assert report["presence_b"]["reason"] == "busy on another node"
    assert report["second_error"]["code"] == "bad_state"
    assert report["record_after_b"]["node"].startswith("node-a.")
    assert report["record_after_b"]["state"] == "on_call"
    assert report["heard_after_refusal_s"] >= 1.0
    assert report["node_b_kept_log"]
    assert report["record_after_b_closed"]["node"].startswith("node-a.")
    assert report["record_after_b_closed"]["state"] == "on_call"
    assert report["caller_end"] == "remote"
    assert report["record_after_call"]["node"].startswith("node-a.")
    assert report["record_after_call"]["state"] == "available"
    assert report["node_log_tracebacks"] == 0


def test_other_node_shows_waiting_caller() -> None:
    report = run_case("relayed_events")
    joined_on_a = [e for e in report["a_events"] if e["kind"] == "acd.caller_joined"]
    joined_on_b = [e for e in report["b_events"] if e["kind"] == "acd.caller_joined"]
    assert len(joined_on_a) == 1
    assert len(joined_on_b) == 1
    assert joined_on_a[0]["node_id"] == "node-b"
    assert joined_on_a[0]["call_id"] == joined_on_b[0]["call_id"]
    assert joined_on_a[0]["payload"]["queue"] == "general"
    left_on_a = [e for e in report["a_events"] if e["kind"] == "acd.caller_left"]
    left_on_b = [e for e in report["b_events"] if e["kind"] == "acd.caller_left"]
    assert len(left_on_a) == 1
    assert len(left_on_b) == 1
    assert left_on_a[0]["payload"]["abandoned"] is True
    assert all(e["node_id"] == "node-b" for e in report["a_events"])
    assert all(e["node_id"] == "node-b" for e in report["b_events"])
    assert report["a_cluster"]["joined"] == 1
    assert report["a_cluster_after"]["abandoned"] == 1
    assert set(report["a_own"].values()) == {0}
    assert report["node_log_tracebacks"] == 0
