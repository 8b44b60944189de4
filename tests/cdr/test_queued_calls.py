"""CDRs and events of queued SIP calls bridged to an agent, on a real node with real peers."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "cdr"

pytestmark = [pytest.mark.peer, pytest.mark.timeout(300)]


def run_queued_call(case: str, timeout_s: float = 260.0) -> dict[str, Any]:
    """Run tests/cdr/queued_scenario.py for `case` in a private network namespace."""
    if shutil.which("baresip") is None:
        pytest.skip("baresip is not installed")
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("unshare and ip (util-linux, iproute2) are needed for a private namespace")
    if os.geteuid() != 0:
        pytest.skip("unshare -n needs root")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    result_file = ARTIFACTS / f"{case}-result.json"
    result_file.unlink(missing_ok=True)
    command = [sys.executable, "-m", "tests.cdr.queued_scenario", case, "--out", str(ARTIFACTS)]
    script = "ip link set lo up && exec " + shlex.join(command)
    completed = subprocess.run(
        ["unshare", "-n", "sh", "-c", script],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        timeout=timeout_s,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr.decode(errors="replace")[-3000:]
    report: dict[str, Any] = json.loads(result_file.read_text())
    assert "error" not in report, report["error"]
    return report


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
