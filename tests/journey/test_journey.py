"""Caller-to-agent journeys with real parts: a `voxgate serve` node, baresip callers
and an aiortc agent on the signaling WebSocket, in a loopback-only namespace."""

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
ARTIFACTS = ROOT / "test-artifacts" / "journey"

pytestmark = pytest.mark.timeout(300)


def run_journey(case: str, timeout_s: float = 260.0) -> dict[str, Any]:
    """Run tests/journey/scenario.py for `case` in a private network namespace."""
    if shutil.which("baresip") is None:
        pytest.skip("baresip is not installed")
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("unshare and ip (util-linux, iproute2) are needed for a private namespace")
    if os.geteuid() != 0:
        pytest.skip("unshare -n needs root")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    result_file = ARTIFACTS / f"{case}-result.json"
    result_file.unlink(missing_ok=True)
    command = [sys.executable, "-m", "tests.journey.scenario", case, "--out", str(ARTIFACTS)]
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


def test_priority_caller_served_before_earlier_one() -> None:
    report = run_journey("priority")
    first, second = report["served"]
    check_offer(first["incoming"], "vip", 7)
    check_offer(second["incoming"], "normal", 0)
    check_talk(first)
    check_talk(second)
    assert report["after"]["answered"] == 2
    assert report["node_log_tracebacks"] == 0
