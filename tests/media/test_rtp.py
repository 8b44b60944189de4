from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.rtp import RtpPacket, sequence_delta, timestamp_delta


def test_parse_fixed_header_fields() -> None:
    # RFC 3550 section 5.1 layout: V=2, M=1, PT=101, seq 4000, ts 160000, SSRC 0x1A2B3C4D.
    data = bytes.fromhex("80e50fa0000271001a2b3c4d050a00a0")
    packet = RtpPacket.parse(data)
    assert packet.payload_type == 101
    assert packet.marker is True
    assert packet.sequence_number == 4000
    assert packet.timestamp == 160000
    assert packet.ssrc == 0x1A2B3C4D
    assert packet.payload == bytes.fromhex("050a00a0")


def test_serialize_round_trips_every_field() -> None:
    packet = RtpPacket(
        payload_type=8,
        sequence_number=65535,
        timestamp=0xFFFFFFFF,
        ssrc=7,
        payload=b"\xd5" * 160,
        marker=True,
        csrc=(1, 2, 3),
        extension=(0xBEDE, b"\x10\x01\x00\x00"),
        padding_size=4,
    )
    data = packet.serialize()
    assert len(data) == 12 + 12 + 4 + 4 + 160 + 4
    assert RtpPacket.parse(data) == packet


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x80\x00\x00", "too short"),
        (bytes.fromhex("40000000000000000000000000"), "version 1"),
        (bytes.fromhex("82000000000000000000000000000000"), "CSRC"),
        (bytes.fromhex("900000000000000000000000"), "extension"),
        (bytes.fromhex("90000000000000000000000000000009"), "extension length"),
        (bytes.fromhex("a00000000000000000000000000000ff"), "padding"),
        (bytes.fromhex("a0000000000000000000000000000000"), "padding count is 0"),
    ],
)
def test_parse_rejects_malformed_packet(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RtpPacket.parse(data)


def test_serialize_rejects_out_of_range_fields() -> None:
    with pytest.raises(ValueError, match="payload type"):
        RtpPacket(payload_type=128, sequence_number=0, timestamp=0, ssrc=0).serialize()
    with pytest.raises(ValueError, match="sequence"):
        RtpPacket(payload_type=0, sequence_number=70000, timestamp=0, ssrc=0).serialize()


def test_sequence_and_timestamp_deltas_wrap() -> None:
    assert sequence_delta(2, 65534) == 4
    assert sequence_delta(65534, 2) == -4
    assert timestamp_delta(80, 0xFFFFFFF0) == 96


@given(st.binary(max_size=64))
def test_parse_arbitrary_bytes_raises_only_value_error(data: bytes) -> None:
    try:
        packet = RtpPacket.parse(data)
    except ValueError:
        return
    assert RtpPacket.parse(packet.serialize()) == packet


@given(
    st.integers(0, 127),
    st.integers(0, 65535),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.binary(max_size=200),
    st.booleans(),
)
def test_round_trip_property(
    payload_type: int, sequence: int, timestamp: int, ssrc: int, payload: bytes, marker: bool
) -> None:
    packet = RtpPacket(payload_type, sequence, timestamp, ssrc, payload, marker)
    data = packet.serialize()
    assert struct.unpack_from("!H", data, 2)[0] == sequence
    assert RtpPacket.parse(data) == packet
