"""The demo flow called by SIPp: welcome prompt, one RFC 4733 digit, a reply chosen by it."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import pytest

from ivr.model import Flow
from tests.e2e.conftest import (
    assert_clean_log,
    expected_voiced_seconds,
    prompt_text,
    voiced_seconds_between,
)
from tests.support.audio_analysis import audio_from_rtp, packets_from_datagrams
from tests.support.capture import LoopbackCapture, capture_available
from tests.support.node import REPOSITORY, RunningNode
from tests.support.ports import free_udp_port

pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(not capture_available(), reason="packet capture on lo needs root"),
]

SCENARIO = REPOSITORY / "tests" / "data" / "e2e" / "sipp_demo_call.xml"
SIPP_TIMEOUT_S = 90
DIGIT_DELAY_MS = 2500
# The payload type of telephone-event in the scenario's offer and in SIPp's DTMF pcaps.
TELEPHONE_EVENT_PAYLOAD_TYPE = 101


def run_sipp_call(node: RunningNode, tmp_path: Path, digit: str) -> tuple[int, LoopbackCapture]:
    pcap = f"/usr/share/sip-tester/dtmf_2833_{digit}.pcap"
    scenario = tmp_path / f"call_{digit}.xml"
    text = SCENARIO.read_text(encoding="utf-8")
    text = text.replace("DIGIT_DELAY_MS", str(DIGIT_DELAY_MS)).replace("DTMF_PCAP", pcap)
    scenario.write_text(text, encoding="utf-8")
    media_port = free_udp_port()
    command = [
        "sipp", f"127.0.0.1:{node.sip_port}", "-sf", str(scenario), "-m", "1", "-s", "1000",
        "-i", "127.0.0.1", "-p", str(free_udp_port()), "-mp", str(media_port),
        "-trace_err", "-error_file", str(tmp_path / f"sipp_{digit}_errors.log"),
        "-nostdin", "-timeout", f"{SIPP_TIMEOUT_S}s", "-timeout_error",
    ]  # fmt: skip
    with LoopbackCapture(media_port) as capture:
        result = subprocess.run(
            command, cwd=tmp_path, capture_output=True, timeout=SIPP_TIMEOUT_S + 30
        )
    return result.returncode, capture


@pytest.mark.parametrize(
    ("digit", "reply_step"), [("1", "sales"), ("2", "support")], ids=["sales", "support"]
)
def test_digit_chooses_reply(
    node: RunningNode, demo_flow: Flow, tmp_path: Path, digit: str, reply_step: str
) -> None:
    returncode, capture = run_sipp_call(node, tmp_path, digit)
    assert returncode == 0, (tmp_path / f"sipp_{digit}_errors.log").read_text(errors="replace")

    heard = audio_from_rtp(packets_from_datagrams(capture.received()))
    digit_times = [
        packet.arrival
        for packet in packets_from_datagrams(capture.sent())
        if packet.payload_type == TELEPHONE_EVENT_PAYLOAD_TYPE
    ]
    assert heard.packet_count, "no RTP audio reached SIPp"
    assert digit_times, "SIPp sent no RFC 4733 digit"
    pressed_at = digit_times[0]

    welcome = voiced_seconds_between(heard, heard.start_arrival, pressed_at)
    assert welcome > 1.0, f"only {welcome:.2f} s of welcome audio before the digit"

    expected = expected_voiced_seconds(
        [prompt_text(demo_flow, reply_step), prompt_text(demo_flow, "goodbye")],
        demo_flow.voice,
    )
    reply = voiced_seconds_between(heard, pressed_at, math.inf)
    assert abs(reply - expected) <= 0.25 * expected + 0.3, (
        f"heard {reply:.2f} s after the digit, expected about {expected:.2f} s "
        f"for the {reply_step} reply"
    )
    assert_clean_log(node)
