"""A headless Chromium agent works a call through the agent page.

The server offers calls with a test hook (`WebRtcServer.offer_call`, which
the ACD calls in production) and sends a 440 Hz tone; the agent's
microphone is the speech WAV.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.webrtc.browser import run_scenario
from tests.webrtc.browser_harness import AGENT_PASSWORD

pytestmark = [pytest.mark.peer, pytest.mark.slow]


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return run_scenario(
        "agent", f"autotest=1&user=alice&password={AGENT_PASSWORD}&audio_processing=off"
    )


def _phases(report: dict[str, Any]) -> dict[str, Any]:
    phases: dict[str, Any] = report["legs"]["acd-call-1"]["phases"]
    return phases


def test_page_completed_every_step(report: dict[str, Any]) -> None:
    assert report["page"]["error"] is None
    assert report["page"]["ok"] is True
    assert report["page"]["steps"][-1] == "agent-transferred"


def test_no_error_messages_sent_to_page(report: dict[str, Any]) -> None:
    assert "error" not in report["page"]["events"]


def test_agent_states_follow_login_and_calls(report: dict[str, Any]) -> None:
    states = [(p["state"], p["reason"]) for p in report["presence"]]
    assert states == [
        ("away", "logged in"),
        ("away", "lunch"),
        ("available", ""),
        ("ringing", ""),
        ("busy", ""),
        ("wrap_up", "after call"),
        ("available", "wrap-up time over"),
        ("ringing", ""),
        ("busy", ""),
        ("wrap_up", "after call"),
    ]


def test_page_shows_away_reason(report: dict[str, Any]) -> None:
    measurements = report["page"]["measurements"]
    assert measurements["awayBadge"] == "Away"
    assert measurements["awayReason"] == "(lunch)"


def test_page_shows_caller_context(report: dict[str, Any]) -> None:
    context = report["page"]["measurements"]["context"]
    assert context["caller"] == "+15550100"
    assert context["queue"] == "billing"
    assert context["path"] == "main menu → billing → speak to agent"
    assert context["words"] == "my invoice is wrong"
    assert context["intent"] == "billing"
    assert context["priority"] == "2"
    assert context["waiting"] == "42 s"


def test_agent_hears_server_tone(report: dict[str, Any]) -> None:
    for window in ("connected", "resumed", "reconnected"):
        measured = report["page"]["measurements"][window]
        assert measured["maxRms"] > 0.02, window
        assert abs(measured["peakHz"] - 440) < 30, window


def test_server_hears_agent_speech(report: dict[str, Any]) -> None:
    phases = _phases(report)
    assert phases["agent-connected"]["frames"] >= 20
    assert phases["agent-connected"]["max_rms"] > 0.05
    assert phases["agent-unmuted"]["max_rms"] > 0.05


def test_hold_silences_both_directions(report: dict[str, Any]) -> None:
    assert report["page"]["measurements"]["held"]["maxRms"] < 0.005
    held = _phases(report)["agent-held"]
    assert held["frames"] >= 20
    assert held["max_rms"] == 0.0


def test_mute_silences_agent_audio(report: dict[str, Any]) -> None:
    assert report["page"]["measurements"]["mutedLabel"] == "Unmute"
    muted = _phases(report)["agent-muted"]
    assert muted["frames"] >= 20
    assert muted["max_rms"] == 0.0


def test_agent_keypad_digit_arrives_in_rtp(report: dict[str, Any]) -> None:
    leg = report["legs"]["acd-call-1"]
    assert leg["digits"] == "5"
    assert leg["rtp_digits"] == 1


def test_signaling_reconnect_keeps_call_and_state(report: dict[str, Any]) -> None:
    dropped = report["page"]["measurements"]["whileDropped"]
    assert dropped["reason"] == "(reconnecting…)"
    after = report["page"]["measurements"]["afterReconnect"]
    assert after["stale"] is False
    assert after["presence"] == "busy"
    assert after["callState"] == "connected"
    assert after["message"] == "Connection to the server restored"
    assert report["page"]["events"].count("session") == 2


def test_hangup_starts_wrap_up_countdown(report: dict[str, Any]) -> None:
    assert report["page"]["measurements"]["wrapUpText"].startswith("Wrap-up ends in")
    assert report["legs"]["acd-call-1"]["closed"] is True


def test_blind_transfer_reaches_handler(report: dict[str, Any]) -> None:
    assert report["server_checks"]["transfer"] == {"kind": "queue", "target": "sales"}
    assert report["legs"]["acd-call-2"]["closed"] is True
    assert report["call_states"][-2:] == ["connected", "ended"]
