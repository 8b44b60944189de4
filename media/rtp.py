"""RTP fixed header, CSRC list, header extension and padding (RFC 3550 section 5.1).

Pure wire code: `RtpPacket.parse` reads one datagram and `RtpPacket.serialize`
writes one. Malformed input raises `ValueError` with a message naming the
problem, so a receive loop can count and drop it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from media.native import rtpcore

RTP_VERSION = 2
HEADER_SIZE = 12
MAX_SEQUENCE = 0xFFFF
MAX_TIMESTAMP = 0xFFFFFFFF

_HEADER = struct.Struct("!BBHII")


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet. `extension` is (profile, data) when the X bit is set."""

    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrc: tuple[int, ...] = ()
    extension: tuple[int, bytes] | None = None
    padding_size: int = 0

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Parse one datagram; raise ValueError when it is not a valid RTP packet."""
        if len(data) < HEADER_SIZE:
            raise ValueError(f"RTP packet too short: {len(data)} bytes, header needs 12")
        first, second, sequence_number, timestamp, ssrc = _HEADER.unpack_from(data)
        version = first >> 6
        if version != RTP_VERSION:
            raise ValueError(f"RTP version {version} is not supported (expected 2)")
        has_padding = bool(first & 0x20)
        has_extension = bool(first & 0x10)
        csrc_count = first & 0x0F
        marker = bool(second & 0x80)
        payload_type = second & 0x7F

        end = len(data)
        padding_size = 0
        if has_padding:
            padding_size = data[-1]
            if padding_size == 0:
                raise ValueError("RTP padding bit set but padding count is 0")
            if padding_size > len(data) - HEADER_SIZE:
                raise ValueError(f"RTP padding count {padding_size} exceeds packet")
            end -= padding_size

        offset = HEADER_SIZE
        csrc_end = offset + 4 * csrc_count
        if csrc_end > end:
            raise ValueError(f"RTP packet truncated in CSRC list ({csrc_count} CSRCs declared)")
        csrc = struct.unpack_from(f"!{csrc_count}I", data, offset)
        offset = csrc_end

        extension: tuple[int, bytes] | None = None
        if has_extension:
            if offset + 4 > end:
                raise ValueError("RTP packet truncated in header extension")
            profile, words = struct.unpack_from("!HH", data, offset)
            offset += 4
            ext_end = offset + 4 * words
            if ext_end > end:
                raise ValueError(f"RTP header extension length {words} words exceeds packet")
            extension = (profile, bytes(data[offset:ext_end]))
            offset = ext_end

        return cls(
            payload_type=payload_type,
            sequence_number=sequence_number,
            timestamp=timestamp,
            ssrc=ssrc,
            payload=bytes(data[offset:end]),
            marker=marker,
            csrc=tuple(csrc),
            extension=extension,
            padding_size=padding_size,
        )

    def serialize(self) -> bytes:
        """Return the wire form; raise ValueError on out-of-range fields."""
        if not 0 <= self.payload_type <= 127:
            raise ValueError(f"RTP payload type {self.payload_type} outside 0-127")
        if not 0 <= self.sequence_number <= MAX_SEQUENCE:
            raise ValueError(f"RTP sequence number {self.sequence_number} outside 0-65535")
        if not 0 <= self.timestamp <= MAX_TIMESTAMP:
            raise ValueError(f"RTP timestamp {self.timestamp} outside 32 bits")
        if not 0 <= self.ssrc <= MAX_TIMESTAMP:
            raise ValueError(f"RTP SSRC {self.ssrc} outside 32 bits")
        if len(self.csrc) > 15:
            raise ValueError(f"RTP allows at most 15 CSRCs, got {len(self.csrc)}")
        if not 0 <= self.padding_size <= 255:
            raise ValueError(f"RTP padding size {self.padding_size} outside 0-255")

        first = RTP_VERSION << 6 | len(self.csrc)
        if self.padding_size:
            first |= 0x20
        if self.extension is not None:
            first |= 0x10
        second = self.payload_type | (0x80 if self.marker else 0)
        parts = [
            _HEADER.pack(first, second, self.sequence_number, self.timestamp, self.ssrc),
            struct.pack(f"!{len(self.csrc)}I", *self.csrc),
        ]
        if self.extension is not None:
            profile, ext_data = self.extension
            if len(ext_data) % 4:
                raise ValueError("RTP header extension data must be a multiple of 4 bytes")
            parts.append(struct.pack("!HH", profile, len(ext_data) // 4))
            parts.append(ext_data)
        parts.append(self.payload)
        if self.padding_size:
            parts.append(bytes(self.padding_size - 1) + bytes([self.padding_size]))
        return b"".join(parts)


def sequence_delta(newer: int, older: int) -> int:
    """Return `newer - older` in 16-bit sequence space, in the range -32768..32767."""
    return (newer - older + 0x8000) % 0x10000 - 0x8000


def timestamp_delta(newer: int, older: int) -> int:
    """Return `newer - older` in 32-bit timestamp space, signed."""
    return (newer - older + 0x80000000) % 0x100000000 - 0x80000000


def _build_plain_packet(
    second: int, sequence_number: int, timestamp: int, ssrc: int, payload: bytes
) -> bytes:
    return _HEADER.pack(0x80, second, sequence_number, timestamp, ssrc) + payload


build_plain_packet: Callable[[int, int, int, int, bytes], bytes] = (
    rtpcore.build_rtp if rtpcore is not None else _build_plain_packet
)
"""Return a plain RTP packet (version 2, no padding, extension or CSRC).

Takes the second header byte (marker bit and payload type), sequence
number, timestamp, SSRC and payload. This is the sender's path; the C
version writes header and payload in one allocation.
"""
