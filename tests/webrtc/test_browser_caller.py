"""A headless Chromium caller dials the server through the caller page."""

from __future__ import annotations

from typing import Any

import pytest

from tests.webrtc.browser import run_scenario

pytestmark = [pytest.mark.peer, pytest.mark.slow]

RTP_KEYS = "12"
SIGNALING_KEYS = "#"


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return run_scenario("caller", f"autotest=1&rtp_keys={RTP_KEYS}&signaling_keys=%23")


def _leg(report: dict[str, Any]) -> dict[str, Any]:
    legs = list(report["legs"].values())
    assert len(legs) == 1
    leg: dict[str, Any] = legs[0]
    return leg


def test_page_completed_every_step(report: dict[str, Any]) -> None:
    page = report["page"]
    assert page["error"] is None
    assert page["ok"] is True
    assert page["steps"] == [
        "caller-ready",
        "caller-connected",
        "caller-rtp-digits-sent",
        "caller-digits-sent",
        "caller-reconnected",
        "caller-hung-up",
    ]


def test_page_hears_server_tone(report: dict[str, Any]) -> None:
    remote = report["page"]["measurements"]["remote"]
    assert remote["maxRms"] > 0.02
    assert abs(remote["peakHz"] - 440) < 30


def test_microphone_processing_on_by_default(report: dict[str, Any]) -> None:
    assert report["page"]["measurements"]["microphone"] == {
        "echoCancellation": True,
        "noiseSuppression": True,
        "autoGainControl": True,
    }


def test_page_still_hears_tone_after_digits(report: dict[str, Any]) -> None:
    after = report["page"]["measurements"]["afterDigits"]
    assert after["maxRms"] > 0.02
    assert abs(after["peakHz"] - 440) < 30


def test_server_receives_caller_speech(report: dict[str, Any]) -> None:
    phases = _leg(report)["phases"]
    rms = [phase["max_rms"] for phase in phases.values()]
    frames = sum(phase["frames"] for phase in phases.values())
    assert frames >= 50
    assert max(rms) > 0.05


def test_server_receives_speech_after_digits(report: dict[str, Any]) -> None:
    after = _leg(report)["phases"]["caller-digits-sent"]
    assert after["frames"] >= 20
    assert after["max_rms"] > 0.02


def test_digits_arrive_in_rtp_and_signaling(report: dict[str, Any]) -> None:
    leg = _leg(report)
    assert leg["digits"] == RTP_KEYS + SIGNALING_KEYS
    assert leg["rtp_digits"] == len(RTP_KEYS)


def test_rtp_digit_durations_match_key_press(report: dict[str, Any]) -> None:
    durations = _leg(report)["digit_durations_ms"][: len(RTP_KEYS)]
    for duration in durations:
        assert 80 <= duration <= 200


def test_call_ends_cleanly(report: dict[str, Any]) -> None:
    assert report["call_states"] == ["connected", "ended"]
    assert _leg(report)["closed"] is True
    assert "hangup" in report["page"]["events"]
    assert report["page"]["status"] == "Call ended"
    assert report["page"]["message"] == ""


def test_lost_signaling_shown_then_cleared(report: dict[str, Any]) -> None:
    measurements = report["page"]["measurements"]
    assert measurements["lostMessage"] == "Connection to the server lost. Reconnecting…"
    assert measurements["statusAfterReconnect"] == "Connected"
    assert report["page"]["events"].count("session") == 2


def test_call_survives_signaling_reconnect(report: dict[str, Any]) -> None:
    after = report["page"]["measurements"]["afterReconnect"]
    assert after["maxRms"] > 0.02
    assert abs(after["peakHz"] - 440) < 30
    assert _leg(report)["phases"]["caller-digits-sent"]["frames"] >= 50


@pytest.mark.parametrize(
    ("lang", "message", "status"),
    [
        ("en", "Microphone access was denied.", "Ready to call"),
        ("zh", "麦克风权限被拒绝。", "可以呼叫"),
    ],
)
def test_denied_microphone_shows_clear_message(lang: str, message: str, status: str) -> None:
    report = run_scenario("caller-denied", f"autotest=denied&lang={lang}")
    page = report["page"]
    assert page["error"] is None
    assert page["measurements"]["deniedMessage"].startswith(message)
    assert page["measurements"]["callButtonEnabled"] is True
    assert page["status"] == status
    assert report["legs"] == {}
