"""The IVR's view of a browser caller: `WebRtcChannel` over the media package's MediaLeg.

`play` reaches the page, keypad digits from RTP and from signaling come out
of `next_input`, and `hangup` from the server ends the call in the page.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.webrtc.browser import run_scenario

pytestmark = [pytest.mark.peer, pytest.mark.slow]


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return run_scenario(
        "caller-medialeg",
        "autotest=1&rtp_keys=12&signaling_keys=%23&server_hangup=1&audio_processing=off",
    )


def test_page_hears_played_prompt(report: dict[str, Any]) -> None:
    assert report["page"]["error"] is None
    remote = report["page"]["measurements"]["remote"]
    assert remote["maxRms"] > 0.02
    assert abs(remote["peakHz"] - 440) < 30


def test_audio_processing_off_in_address_reaches_microphone(report: dict[str, Any]) -> None:
    assert report["page"]["measurements"]["microphone"] == {
        "echoCancellation": False,
        "noiseSuppression": False,
        "autoGainControl": False,
    }


def test_next_input_returns_digits_in_order(report: dict[str, Any]) -> None:
    legs = list(report["legs"].values())
    assert len(legs) == 1
    assert legs[0]["digits"] == "12#"
    assert legs[0]["rtp_digits"] == 2


def test_server_hangup_ends_call_in_page(report: dict[str, Any]) -> None:
    legs = list(report["legs"].values())
    assert legs[0]["closed"] is True
    assert report["call_states"] == ["connected", "ended"]
    assert report["page"]["measurements"]["statusAfterServerHangup"] == "Call ended"
    assert report["page"]["measurements"]["hangupButtonDisabled"] is True
