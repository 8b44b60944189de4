"""CDRs and events of queued SIP calls bridged to an agent, on a real node with real peers."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.support.namespace import run_in_namespace

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "cdr"

pytestmark = [pytest.mark.peer, pytest.mark.timeout(300)]


def run_queued_call(case: str, timeout_s: float = 260.0) -> dict[str, Any]:
    """Run tests/cdr/queued_scenario.py for `case` in a private network namespace."""
    args = [case, "--out", str(ARTIFACTS)]
    result_file = ARTIFACTS / f"{case}-result.json"
    return run_in_namespace(
        "tests.cdr.queued_scenario", args, result_file, timeout_s=timeout_s, tools=["baresip"]
    )


@pytest.mark.parametrize("case", ["agent_hangup", "caller_hangup"])
def test_bridged_call_cdr(case: str) -> None:
    report = run_queued_call(case)
    events = report["events"]
    kinds = [event["kind"] for event in events]
    assert kinds[:2] == ["call.started", "call.answered"], kinds
    assert kinds.index("call.queued") < kinds.index("acd.caller_answered"), kinds
    assert kinds.index("acd.caller_answered") < kinds.index("call.bridged"), kinds
    assert kinds[-1] == "call.ended"
    assert len({event["call_id"] for event in events}) == 1

    queued = events[kinds.index("call.queued")]["payload"]
    assert queued == {"queue": "general", "priority": 7, "reason": "vip"}
    assert events[kinds.index("call.bridged")]["payload"] == {"agent_id": "agent1"}
    assert events[-1]["payload"] == {"reason": case, "status": None}

    incoming = report["incoming"]
    assert incoming["priority"] == 7
    assert incoming["priority_reason"] == "vip"

    cdr = report["cdr"]
    assert cdr["channel"] == "sip"
    assert cdr["caller"] == "vip"
    assert cdr["called"] == "2900"
    assert cdr["flow"] == "journey"
    assert cdr["ivr_path"][:3] == ["welcome", "remember", "to_agent"]
    assert cdr["ivr_outcome"] == "queued"
    assert cdr["queue"] == "general"
    assert cdr["priority"] == 7
    assert cdr["priority_reason"] == "vip"
    assert cdr["agent_id"] == "agent1"
    assert cdr["disposition"] == "completed"
    assert cdr["end_reason"] == case
    assert cdr["wait_s"] is not None and cdr["wait_s"] > 0
    assert cdr["talk_s"] is not None and cdr["talk_s"] >= 2.0
    assert cdr["started_at"] <= cdr["answered_at"] < cdr["ended_at"]
    assert report["caller_heard_agent_s"] >= 1.0
    assert report["node_log_tracebacks"] == 0


def test_browser_caller_cdr() -> None:
    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed")
    report = run_queued_call("browser_caller")
    events = report["events"]
    kinds = [event["kind"] for event in events]
    assert kinds[:2] == ["call.started", "call.answered"], kinds
    assert "call.bridged" in kinds
    assert kinds[-1] == "call.ended"
    started = events[0]["payload"]
    assert started["channel"] == "webrtc"
    assert started["caller"].startswith("guest-")
    assert events[-1]["payload"] == {"reason": "caller_hangup", "status": None}

    cdr = report["cdr"]
    assert cdr["channel"] == "webrtc"
    assert cdr["caller"] == started["caller"]
    assert cdr["flow"] == "journey"
    assert cdr["queue"] == "general"
    assert cdr["agent_id"] == "agent1"
    assert cdr["disposition"] == "completed"
    assert cdr["end_reason"] == "caller_hangup"
    assert cdr["talk_s"] is not None and cdr["talk_s"] > 0
    assert report["node_log_tracebacks"] == 0
