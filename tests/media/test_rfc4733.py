from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ivr.channel import DtmfInput
from media.rfc4733 import (
    DtmfReceiver,
    TelephoneEvent,
    build_event_payloads,
    event_code,
)
from media.rtp import RtpPacket
from tests.media.pcap import read_udp_payloads

DATA = Path(__file__).parent.parent / "data" / "media"


def load_case(name: str) -> dict[str, Any]:
    case: dict[str, Any] = yaml.safe_load((DATA / name).read_text())
    return case


def feed_case(case: dict[str, Any]) -> list[DtmfInput]:
    receiver = DtmfReceiver(case["rtp"]["clock_rate"])
    digits: list[DtmfInput] = []
    for item in case["packets"]:
        packet = RtpPacket.parse(bytes.fromhex(item["hex"]))
        assert packet.sequence_number == item["seq"]
        digits += receiver.receive(
            packet.ssrc, packet.timestamp, packet.payload, item["arrival_ms"]
        )
    last_arrival = case["packets"][-1]["arrival_ms"]
    digits += receiver.poll(last_arrival + 10_000)
    return digits


def test_triple_end_packet_one_digit() -> None:
    case = load_case("26-rfc4733-end-packet-sent-three-times.yaml")
    digits = feed_case(case)
    assert "".join(d.digit for d in digits) == case["expected"]["digits"]
    assert digits[0].duration_ms == case["expected"]["duration_ms"]


def test_no_marker_bit_same_digit_twice() -> None:
    case = load_case("28-rfc4733-no-marker-bit-same-digit-twice.yaml")
    digits = feed_case(case)
    assert "".join(d.digit for d in digits) == case["expected"]["digits"]
    assert [d.duration_ms for d in digits] == [120, 120]


def test_sipp_capture_gives_one_digit() -> None:
    receiver = DtmfReceiver()
    digits: list[DtmfInput] = []
    for index, datagram in enumerate(read_udp_payloads(DATA / "dtmf_2833_1.pcap")):
        packet = RtpPacket.parse(datagram.payload)
        assert packet.payload_type == 101
        digits += receiver.receive(packet.ssrc, packet.timestamp, packet.payload, 20 * index)
    assert digits == [DtmfInput("1", 280)]


def test_lost_end_packets_reported_after_timeout() -> None:
    receiver = DtmfReceiver(end_timeout_ms=500)
    payload = TelephoneEvent(9, False, 10, 160).serialize()
    assert receiver.receive(1, 1000, payload, 0) == []
    assert receiver.active
    assert receiver.poll(499) == []
    assert receiver.poll(500) == [DtmfInput("9", 20)]
    assert receiver.poll(2000) == []
    assert not receiver.active


def test_new_event_ends_unfinished_one() -> None:
    receiver = DtmfReceiver()
    first = TelephoneEvent(1, False, 10, 800).serialize()
    second = TelephoneEvent(2, True, 10, 800).serialize()
    assert receiver.receive(1, 1000, first, 0) == []
    assert receiver.receive(1, 5000, second, 500) == [DtmfInput("1", 100), DtmfInput("2", 100)]


def test_late_copy_of_finished_event_ignored() -> None:
    receiver = DtmfReceiver()
    end = TelephoneEvent(4, True, 10, 800).serialize()
    update = TelephoneEvent(4, False, 10, 480).serialize()
    assert receiver.receive(1, 1000, end, 0) == [DtmfInput("4", 100)]
    assert receiver.receive(1, 1000, update, 10) == []
    assert receiver.receive(1, 1000, end, 20) == []


def test_long_event_continuation_segment_joined() -> None:
    # A press longer than 65535 timestamp units continues with a new timestamp
    # and no marker (RFC 4733 section 2.5.1.3).
    receiver = DtmfReceiver()
    full = TelephoneEvent(0, False, 10, 0xFFFF).serialize()
    tail_update = TelephoneEvent(0, False, 10, 800).serialize()
    tail_end = TelephoneEvent(0, True, 10, 1600).serialize()
    assert receiver.receive(1, 0, full, 0) == []
    assert receiver.receive(1, 0xFFFF, tail_update, 8200) == []
    digits = receiver.receive(1, 0xFFFF, tail_end, 8300)
    assert digits == [DtmfInput("0", round(1000 * (0xFFFF + 1600) / 8000))]


def test_non_dtmf_event_produces_no_digit() -> None:
    receiver = DtmfReceiver()
    flash = TelephoneEvent(16, True, 10, 800).serialize()
    assert receiver.receive(1, 0, flash, 0) == []


def test_short_payload_rejected() -> None:
    with pytest.raises(ValueError, match="too short"):
        DtmfReceiver().receive(1, 0, b"\x01\x0a", 0)


def test_different_ssrc_is_a_different_event() -> None:
    receiver = DtmfReceiver()
    end = TelephoneEvent(7, True, 10, 800).serialize()
    assert receiver.receive(1, 1000, end, 0) == [DtmfInput("7", 100)]
    assert receiver.receive(2, 1000, end, 5) == [DtmfInput("7", 100)]


def test_build_payloads_for_one_press() -> None:
    payloads = build_event_payloads("#", 100)
    events = [TelephoneEvent.parse(p) for p in payloads]
    assert [e.event for e in events] == [11] * 7
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in events] == [False] * 4 + [True] * 3


def test_built_payloads_decode_to_same_digit() -> None:
    for digit in "0123456789*#ABCD":
        receiver = DtmfReceiver()
        received: list[DtmfInput] = []
        for index, payload in enumerate(build_event_payloads(digit, 160)):
            received += receiver.receive(5, 3200, payload, 20 * index)
        assert received == [DtmfInput(digit, 160)]


@pytest.mark.parametrize("bad", ["E", "12", "", " "])
def test_event_code_rejects_non_digit(bad: str) -> None:
    with pytest.raises(ValueError, match="not a DTMF digit"):
        event_code(bad)


def test_event_serialize_checks_ranges() -> None:
    with pytest.raises(ValueError, match="volume"):
        TelephoneEvent(1, False, 64, 0).serialize()
    with pytest.raises(ValueError, match="duration"):
        TelephoneEvent(1, False, 10, 70000).serialize()
