"""The `make demo` run as a test: scripts/demo.py with a bounded timeout, checked on its summary."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "demo"
TIMEOUT_S = 240

pytestmark = pytest.mark.timeout(TIMEOUT_S + 60)


def run_demo() -> dict[str, Any]:
    for tool in ("baresip", "chromium", "unshare", "ip"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    if os.geteuid() != 0:
        pytest.skip("unshare -n needs root")
    command = [
        sys.executable,
        str(ROOT / "scripts" / "demo.py"),
        "--out",
        str(ARTIFACTS),
        "--timeout",
        str(TIMEOUT_S),
    ]
    completed = subprocess.run(
        command,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        timeout=TIMEOUT_S + 30,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr.decode(errors="replace")[-3000:]
    summary: dict[str, Any] = json.loads(completed.stdout)
    return summary


def test_demo_summary() -> None:
    summary = run_demo()
    callers = {entry["caller"]: entry for entry in summary["callers"]}
    assert sorted(callers) == ["normal1", "normal2", "vip"]
    for name, entry in callers.items():
        assert entry["ivr_path"] == ["welcome", "remember", "to_agent"], name
        assert entry["intent"] == "billing", name
        assert entry["queue"] == "general", name
        assert entry["agent"] == "agent1", name
        assert entry["disposition"] == "completed", name
        assert entry["wait_s"] > 0, name
        assert entry["talk_s"] >= 2.0, name
    assert callers["vip"]["priority"] == 7
    assert callers["vip"]["priority_reason"] == "vip"
    assert callers["normal1"]["priority"] == 0
    assert callers["normal2"]["priority"] == 0

    assert summary["served_order"] == ["vip", "normal1", "normal2"]
    check = summary["priority_check"]
    assert check["earlier_callers"] == ["normal1", "normal2"]
    assert check["served_before"] == ["normal1", "normal2"]
    assert all(0 < jump <= check["jump_bound_s"] for jump in check["jumped_s"])
    assert check["ok"] is True

    latencies = summary["setup_latency_s"]
    assert sorted(latencies["sip_invite_to_established_s"]) == ["normal1", "normal2", "vip"]
    assert len(latencies["agent_answer_to_media_s"]) == 3
    assert summary["node_log_tracebacks"] == 0
