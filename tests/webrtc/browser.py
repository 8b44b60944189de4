"""Runs one browser scenario in a loopback-only network namespace.

The server and Chromium run together in a child process started with
`unshare -n`, so that nothing either of them sends can leave the machine,
whatever addresses aioice or Chromium gather. Screenshots and logs go to
test-artifacts/webrtc/ at the repository root.
"""

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
ARTIFACTS = ROOT / "test-artifacts" / "webrtc"
SPEECH_WAV = ROOT / "tests" / "data" / "webrtc" / "caller-speech.wav"


def require_browser_namespace() -> None:
    """Skip the test where Chromium, unshare or root rights are missing."""
    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed")
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("unshare and ip (util-linux, iproute2) are needed for a private namespace")
    if os.geteuid() != 0:
        pytest.skip("unshare -n needs root")


def run_scenario(scenario: str, query: str, *, timeout_s: float = 240.0) -> dict[str, Any]:
    """Run tests/webrtc/browser_harness.py for `scenario` and return its report."""
    require_browser_namespace()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    result_file = ARTIFACTS / f"{scenario}-result.json"
    result_file.unlink(missing_ok=True)
    harness = [
        sys.executable,
        "-m",
        "tests.webrtc.browser_harness",
        scenario,
        "--out",
        str(ARTIFACTS),
        "--wav",
        str(SPEECH_WAV),
        "--query",
        query,
        "--timeout",
        str(timeout_s - 60),
    ]
    script = "ip link set lo up && exec " + shlex.join(harness)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    completed = subprocess.run(
        ["unshare", "-n", "sh", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=timeout_s,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr.decode(errors="replace")[-3000:]
    report: dict[str, Any] = json.loads(result_file.read_text())
    return report
