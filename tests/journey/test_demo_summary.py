"""The demo summary's priority check and end-of-speech measurement on made-up inputs."""

from __future__ import annotations

import numpy as np

from acd.model import JumpSettings
from tests.journey.demo_summary import (
    QueuedCaller,
    check_priority,
    end_of_speech_latency,
    promised_order,
    speech_ends,
)
from tests.support.audio_analysis import RtpPacket, encode_ulaw

JUMP = JumpSettings()
CALLERS = [
    QueuedCaller("first", 100.0, 1),
    QueuedCaller("second", 105.0, 0),
    QueuedCaller("vip", 110.0, 7),
]


def packet(arrival: float, loud: bool, sequence: int = 0) -> RtpPacket:
    amplitude = 8000 if loud else 0
    samples = (amplitude * np.sin(np.arange(160) * 0.5)).astype(np.int16)
    return RtpPacket(0, False, sequence, sequence * 160, 1, encode_ulaw(samples), arrival)


def packets(start: float, stop: float, loud: bool) -> list[RtpPacket]:
    count = round((stop - start) / 0.02)
    return [packet(start + index * 0.02, loud, index) for index in range(count)]


def test_promised_order_uses_priority_credit() -> None:
    assert promised_order(CALLERS, JUMP) == ["vip", "first", "second"]


def test_priority_check_accepts_promised_order() -> None:
    check = check_priority(CALLERS, ["vip", "first", "second"], JUMP)
    assert check["ok"] is True
    passed = [(j["caller"], j["served_before"]) for j in check["jumps"]]
    assert passed == [("vip", "first"), ("vip", "second")]
    assert check["jumps"][0]["bound_s"] == 720.0
    assert check["jumps"][0]["joined_later_s"] == 10.0
    assert all(j["within_bound"] for j in check["jumps"])
    vip = check["priority_callers"]["vip"]
    assert vip["served_before_earlier"] == ["first", "second"]
    assert vip["within_bound"] is True
    assert list(check["priority_callers"]) == ["vip"]


def test_priority_check_rejects_fifo_order() -> None:
    check = check_priority(CALLERS, ["first", "second", "vip"], JUMP)
    assert check["ok"] is False
    assert check["jumps"] == []


def test_priority_check_rejects_jump_past_bound() -> None:
    late_vip = [QueuedCaller("first", 100.0, 1), QueuedCaller("vip", 1000.0, 7)]
    check = check_priority(late_vip, ["vip", "first"], JUMP)
    assert check["promised_order"] == ["first", "vip"]
    assert check["jumps"][0]["within_bound"] is False
    assert check["priority_callers"]["vip"]["within_bound"] is False
    assert check["ok"] is False


def test_speech_ends_split_on_gaps() -> None:
    voiced = [1.0, 1.02, 1.04, 1.2, 3.0, 3.02]
    assert speech_ends(voiced) == [1.2, 3.02]


def test_end_of_speech_latency_measured() -> None:
    sent = packets(0.0, 1.0, False) + packets(1.0, 1.6, True) + packets(1.6, 4.0, False)
    sent += packets(4.0, 4.6, True)
    received = packets(0.0, 2.5, False) + packets(2.5, 3.5, True)
    latency = end_of_speech_latency(sent, received, input_at=2002.3, wall_offset_s=2000.0)
    assert latency is not None
    assert abs(latency["end_of_speech_to_input_s"] - 0.72) < 1e-6
    assert abs(latency["end_of_speech_to_reply_s"] - 0.92) < 1e-6


def test_end_of_speech_latency_without_reply() -> None:
    sent = packets(1.0, 1.6, True)
    received = packets(0.0, 3.0, False)
    assert end_of_speech_latency(sent, received, input_at=2.3, wall_offset_s=0.0) is None
