"""Shared fixtures of the peer wrapper tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.capture import capture_available
from tests.support.sipp import SCENARIO_DIR, SippProcess, render_scenario


def require_binary(name: str) -> None:
    if shutil.which(name) is None:
        pytest.skip(f"{name} is not installed")


@pytest.fixture
def needs_capture() -> None:
    if not capture_available():
        pytest.skip("capturing on lo needs root or CAP_NET_RAW")


def echo_callee(
    work_dir: Path, template: str = "uas_echo.xml", *, calls: int | None = 1, **values: object
) -> SippProcess:
    """Return an unstarted SIPp callee that echoes RTP, from a scenario in tests/data/peers."""
    defaults: dict[str, object] = {}
    if template == "uas_echo.xml":
        defaults = {"BYE_TIMEOUT_MS": 30_000, "AUDIO_ACTIONS": ""}
    scenario = render_scenario(
        SCENARIO_DIR / template, work_dir / f"callee-{template}", {**defaults, **values}
    )
    return SippProcess(scenario, work_dir, rtp_echo=True, calls=calls)
