"""RFC 4733 telephone-event reception from captured packets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from aiortc.rtp import RtpPacket

from signaling.webrtc.dtmf import TelephoneEvent, TelephoneEventReceiver

DATA = Path(__file__).parent.parent / "data" / "webrtc"


def _load(name: str) -> dict[str, Any]:
    case: dict[str, Any] = yaml.safe_load((DATA / name).read_text())
    return case


def _digits_from(case: dict[str, Any]) -> tuple[str, list[int]]:
    receiver = TelephoneEventReceiver()
    clock_rate = case["rtp"]["clock_rate"]
    digits = ""
    durations = []
    for entry in case["packets"]:
        packet = RtpPacket.parse(bytes.fromhex(entry["hex"]))
        assert packet.payload_type == case["rtp"]["payload_type"]
        for press in receiver.receive(packet.ssrc, packet.timestamp, packet.payload, clock_rate):
            digits += press.digit
            durations.append(press.duration_ms)
    return digits, durations


def test_end_packet_sent_three_times_reports_once() -> None:
    case = _load("26-rfc4733-end-packet-sent-three-times.yaml")
    digits, durations = _digits_from(case)
    assert digits == case["expected"]["digits"]
    assert durations == [case["expected"]["duration_ms"]]


def test_same_digit_twice_without_marker_bit() -> None:
    case = _load("28-rfc4733-no-marker-bit-same-digit-twice.yaml")
    digits, _ = _digits_from(case)
    assert digits == case["expected"]["digits"]


def test_lost_end_packets_reported_when_next_press_starts() -> None:
    receiver = TelephoneEventReceiver()
    assert receiver.receive(1, 1000, bytes([7, 10, 0, 160]), 8000) == []
    presses = receiver.receive(1, 2600, bytes([8, 10, 0, 160]), 8000)
    assert [p.digit for p in presses] == ["7"]


def test_duration_uses_48khz_clock() -> None:
    receiver = TelephoneEventReceiver()
    presses = receiver.receive(1, 0, bytes([11, 0x8A, 0x12, 0xC0]), 48000)
    assert [(p.digit, p.duration_ms) for p in presses] == [("#", 100)]


def test_short_payload_raises_value_error() -> None:
    with pytest.raises(ValueError, match="RFC 4733"):
        TelephoneEvent.parse(b"\x01\x02")
