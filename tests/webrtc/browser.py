"""Runs one browser scenario in a loopback-only network namespace.

The server and Chromium run together in a child process started with
`unshare -n`, so that nothing either of them sends can leave the machine,
whatever addresses aioice or Chromium gather. Screenshots and logs go to
test-artifacts/webrtc/ at the repository root.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.namespace import run_in_namespace

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "webrtc"
SPEECH_WAV = ROOT / "tests" / "data" / "webrtc" / "caller-speech.wav"


def run_scenario(scenario: str, query: str, *, timeout_s: float = 240.0) -> dict[str, Any]:
    """Run tests/webrtc/browser_harness.py for `scenario` and return its report."""
    args = [scenario, "--out", str(ARTIFACTS), "--wav", str(SPEECH_WAV)]
    args += ["--query", query, "--timeout", str(timeout_s - 60)]
    return run_in_namespace(
        "tests.webrtc.browser_harness",
        args,
        ARTIFACTS / f"{scenario}-result.json",
        timeout_s=timeout_s,
        tools=["chromium"],
    )
