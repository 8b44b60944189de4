"""Every parser of peer input raises only ValueError, whatever the bytes."""

from __future__ import annotations

import contextlib
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from media import rtcp
from media.dtmf_info import parse_info_dtmf
from media.rfc4733 import DtmfReceiver
from media.wav import parse_wav


@given(st.binary(max_size=200))
def test_rtcp_parser_raises_only_value_error(data: bytes) -> None:
    with contextlib.suppress(ValueError):
        rtcp.parse_compound(data)


@given(
    st.binary(max_size=120).map(lambda body: b"\x81\xca" + struct.pack("!H", len(body) // 4) + body)
)
def test_rtcp_sdes_parser_raises_only_value_error(data: bytes) -> None:
    with contextlib.suppress(ValueError):
        rtcp.parse_compound(data)


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2**32 - 1), st.binary(max_size=8))))
def test_dtmf_receiver_survives_any_payloads(packets: list[tuple[int, int, bytes]]) -> None:
    receiver = DtmfReceiver()
    for arrival, (ssrc, timestamp, payload) in enumerate(packets):
        try:
            digits = receiver.receive(ssrc, timestamp, payload, 20 * arrival)
        except ValueError:
            continue
        assert all(digit.digit in "0123456789*#ABCD" for digit in digits)


@given(
    st.sampled_from(["application/dtmf-relay", "application/dtmf", "text/plain"]),
    st.binary(max_size=80),
)
def test_info_parser_raises_only_value_error(content_type: str, body: bytes) -> None:
    with contextlib.suppress(ValueError):
        parse_info_dtmf(content_type, body)


def _fmt_chunk(tag: int, channels: int, rate: int, align: int, bits: int) -> bytes:
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)
    return b"fmt " + struct.pack("<I", len(fmt)) + fmt


@settings(max_examples=300)
@given(
    st.integers(0, 0xFFFF),
    st.integers(0, 9),
    st.integers(0, 200_000),
    st.integers(0, 16),
    st.integers(0, 64),
    st.binary(max_size=64),
)
def test_wav_parser_raises_only_value_error(
    tag: int, channels: int, rate: int, align: int, bits: int, data: bytes
) -> None:
    body = b"WAVE" + _fmt_chunk(tag, channels, rate, align, bits)
    body += b"data" + struct.pack("<I", len(data)) + data
    with contextlib.suppress(ValueError):
        parse_wav(b"RIFF" + struct.pack("<I", len(body)) + body)


@given(st.binary(max_size=100))
def test_wav_parser_on_arbitrary_bytes(data: bytes) -> None:
    with contextlib.suppress(ValueError):
        parse_wav(b"RIFF\x00\x00\x00\x00WAVE" + data)
