"""RTCP sender and receiver reports, SDES CNAME and BYE (RFC 3550 section 6).

Pure wire code plus the receive statistics of RFC 3550 appendix A.1, A.3
and A.8 (sequence tracking, loss, interarrival jitter). The RTP session
sends one compound packet (SR or RR, then SDES with a CNAME) about every
5 seconds and reads the peer's reports to learn how our stream arrives.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from media import native
from media.rtp import sequence_delta

RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
RTCP_APP = 204
SDES_CNAME = 1

NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01

_REPORT_BLOCK = struct.Struct("!IIIIII")


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """Reception report about one source (RFC 3550 section 6.4.1).

    `fraction_lost` is in 1/256 units, `jitter` in RTP timestamp units,
    `last_sr` the middle 32 bits of the last SR's NTP time and
    `delay_since_last_sr` in 1/65536 seconds.
    """

    ssrc: int
    fraction_lost: int
    cumulative_lost: int
    highest_sequence: int
    jitter: int
    last_sr: int = 0
    delay_since_last_sr: int = 0

    def serialize(self) -> bytes:
        lost = self.cumulative_lost & 0xFFFFFF
        return _REPORT_BLOCK.pack(
            self.ssrc,
            (self.fraction_lost & 0xFF) << 24 | lost,
            self.highest_sequence & 0xFFFFFFFF,
            self.jitter & 0xFFFFFFFF,
            self.last_sr,
            self.delay_since_last_sr,
        )

    @classmethod
    def parse(cls, data: bytes, offset: int) -> ReportBlock:
        ssrc, lost_word, highest, jitter, last_sr, delay = _REPORT_BLOCK.unpack_from(data, offset)
        cumulative = lost_word & 0xFFFFFF
        if cumulative & 0x800000:
            cumulative -= 0x1000000
        return cls(ssrc, lost_word >> 24, cumulative, highest, jitter, last_sr, delay)


@dataclass(frozen=True, slots=True)
class SenderReport:
    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    ssrc: int
    reports: tuple[ReportBlock, ...] = ()


@dataclass(frozen=True, slots=True)
class SourceDescription:
    """SDES with one CNAME item per source."""

    cnames: tuple[tuple[int, str], ...]


@dataclass(frozen=True, slots=True)
class Bye:
    ssrcs: tuple[int, ...]


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Bye


def _header(packet_type: int, count: int, body: bytes) -> bytes:
    if len(body) % 4:
        raise ValueError("RTCP body must be a multiple of 4 bytes")
    return struct.pack("!BBH", 0x80 | count, packet_type, len(body) // 4) + body


def serialize(packet: RtcpPacket) -> bytes:
    """Return the wire form of one RTCP packet."""
    if isinstance(packet, SenderReport):
        body = struct.pack(
            "!IQIII",
            packet.ssrc,
            packet.ntp_timestamp,
            packet.rtp_timestamp & 0xFFFFFFFF,
            packet.packet_count & 0xFFFFFFFF,
            packet.octet_count & 0xFFFFFFFF,
        )
        body += b"".join(block.serialize() for block in packet.reports)
        return _header(RTCP_SR, len(packet.reports), body)
    if isinstance(packet, ReceiverReport):
        body = struct.pack("!I", packet.ssrc) + b"".join(b.serialize() for b in packet.reports)
        return _header(RTCP_RR, len(packet.reports), body)
    if isinstance(packet, SourceDescription):
        chunks = b""
        for ssrc, cname in packet.cnames:
            text = cname.encode()[:255]
            chunk = struct.pack("!IBB", ssrc, SDES_CNAME, len(text)) + text + b"\x00"
            chunks += chunk + bytes(-len(chunk) % 4)
        return _header(RTCP_SDES, len(packet.cnames), chunks)
    body = b"".join(struct.pack("!I", ssrc) for ssrc in packet.ssrcs)
    return _header(RTCP_BYE, len(packet.ssrcs), body)


def parse_compound(data: bytes) -> list[RtcpPacket]:
    """Parse a compound RTCP packet, skipping APP and unknown types.

    Raises ValueError when the packet is malformed.
    """
    packets: list[RtcpPacket] = []
    offset = 0
    if len(data) < 4:
        raise ValueError(f"RTCP packet too short: {len(data)} bytes")
    while offset < len(data):
        if len(data) - offset < 4:
            raise ValueError("RTCP packet truncated in header")
        first, packet_type, words = struct.unpack_from("!BBH", data, offset)
        if first >> 6 != 2:
            raise ValueError(f"RTCP version {first >> 6} is not supported (expected 2)")
        count = first & 0x1F
        end = offset + 4 + 4 * words
        if end > len(data):
            raise ValueError(f"RTCP length {words} words exceeds the datagram")
        body = data[offset + 4 : end]
        packets.extend(_parse_one(packet_type, count, body))
        offset = end
    return packets


def _parse_one(packet_type: int, count: int, body: bytes) -> list[RtcpPacket]:
    if packet_type == RTCP_SR:
        if len(body) < 24 + 24 * count:
            raise ValueError("RTCP sender report shorter than its report count")
        ssrc, ntp, rtp_ts, packets, octets = struct.unpack_from("!IQIII", body)
        blocks = tuple(ReportBlock.parse(body, 24 + 24 * i) for i in range(count))
        return [SenderReport(ssrc, ntp, rtp_ts, packets, octets, blocks)]
    if packet_type == RTCP_RR:
        if len(body) < 4 + 24 * count:
            raise ValueError("RTCP receiver report shorter than its report count")
        (ssrc,) = struct.unpack_from("!I", body)
        blocks = tuple(ReportBlock.parse(body, 4 + 24 * i) for i in range(count))
        return [ReceiverReport(ssrc, blocks)]
    if packet_type == RTCP_SDES:
        return [SourceDescription(tuple(_parse_sdes(body, count)))]
    if packet_type == RTCP_BYE:
        if len(body) < 4 * count:
            raise ValueError("RTCP BYE shorter than its source count")
        return [Bye(struct.unpack_from(f"!{count}I", body))]
    return []


def _parse_sdes(body: bytes, count: int) -> list[tuple[int, str]]:
    cnames = []
    offset = 0
    for _ in range(count):
        if offset + 4 > len(body):
            raise ValueError("RTCP SDES truncated")
        (ssrc,) = struct.unpack_from("!I", body, offset)
        offset += 4
        cname = ""
        while offset < len(body) and body[offset] != 0:
            if offset + 2 > len(body):
                raise ValueError("RTCP SDES item truncated")
            item, length = body[offset], body[offset + 1]
            value = body[offset + 2 : offset + 2 + length]
            if len(value) != length:
                raise ValueError("RTCP SDES item exceeds the packet")
            if item == SDES_CNAME:
                cname = value.decode("utf-8", errors="replace")
            offset += 2 + length
        offset += 1
        offset += -offset % 4
        cnames.append((ssrc, cname))
    return cnames


def ntp_timestamp(unix_seconds: float) -> int:
    """Return the 64-bit NTP timestamp of a Unix time."""
    seconds = int(unix_seconds) + NTP_EPOCH_OFFSET
    fraction = int((unix_seconds % 1) * (1 << 32))
    return (seconds & 0xFFFFFFFF) << 32 | fraction


def ntp_middle(ntp: int) -> int:
    """Return the middle 32 bits of an NTP timestamp (the LSR field)."""
    return (ntp >> 16) & 0xFFFFFFFF


class _ReceptionReports:
    """The once-per-interval part of the reception statistics, shared by both classes.

    A subclass provides `ssrc`, `base_sequence`, `max_sequence`, `cycles`,
    `received`, `expected_prior`, `received_prior`, `jitter`, `last_sr_middle`
    and `last_sr_arrival`.
    """

    if not TYPE_CHECKING:  # mypy reads an empty __slots__ as "no attributes to assign"
        __slots__ = ()

    ssrc: int | None
    base_sequence: int
    max_sequence: int
    cycles: int
    received: int
    expected_prior: int
    received_prior: int
    jitter: float
    last_sr_middle: int
    last_sr_arrival: float | None

    @property
    def extended_max(self) -> int:
        return self.cycles + self.max_sequence

    @property
    def expected(self) -> int:
        return self.extended_max - self.base_sequence + 1

    @property
    def cumulative_lost(self) -> int:
        return max(-0x800000, min(0x7FFFFF, self.expected - self.received))

    def note_sender_report(self, ntp: int, arrival_s: float) -> None:
        self.last_sr_middle = ntp_middle(ntp)
        self.last_sr_arrival = arrival_s

    def report_block(self, now_s: float) -> ReportBlock | None:
        """Return the report block for the interval since the previous call."""
        if self.ssrc is None:
            return None
        expected_interval = self.expected - self.expected_prior
        received_interval = self.received - self.received_prior
        self.expected_prior = self.expected
        self.received_prior = self.received
        lost_interval = expected_interval - received_interval
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = (lost_interval << 8) // expected_interval
        delay = 0
        if self.last_sr_arrival is not None:
            delay = int((now_s - self.last_sr_arrival) * 65536) & 0xFFFFFFFF
        return ReportBlock(
            ssrc=self.ssrc,
            fraction_lost=min(fraction, 255),
            cumulative_lost=self.cumulative_lost,
            highest_sequence=self.extended_max,
            jitter=int(self.jitter),
            last_sr=self.last_sr_middle,
            delay_since_last_sr=delay,
        )


@dataclass(slots=True)
class PythonReceptionStatistics(_ReceptionReports):
    """Loss and jitter of one received source (RFC 3550 appendix A.1, A.3, A.8).

    The Python reference of `NativeReceptionStatistics`, used when
    `media._rtpcore` is not built.
    """

    clock_rate: int
    ssrc: int | None = None
    base_sequence: int = 0
    max_sequence: int = 0
    cycles: int = 0
    received: int = 0
    expected_prior: int = 0
    received_prior: int = 0
    jitter: float = 0.0
    last_transit: float | None = None
    last_sr_middle: int = 0
    last_sr_arrival: float | None = None
    bad_sequence: set[int] = field(default_factory=set)

    def update(self, ssrc: int, sequence: int, timestamp: int, arrival_s: float) -> None:
        """Account one received RTP packet."""
        if self.ssrc != ssrc:
            self.ssrc = ssrc
            self.base_sequence = self.max_sequence = sequence
            self.cycles = self.received = self.expected_prior = self.received_prior = 0
            self.jitter = 0.0
            self.last_transit = None
        delta = sequence_delta(sequence, self.max_sequence)
        if delta > 0:
            if sequence < self.max_sequence:
                self.cycles += 1 << 16
            self.max_sequence = sequence
        self.received += 1
        transit = arrival_s * self.clock_rate - timestamp
        if self.last_transit is not None:
            difference = abs(transit - self.last_transit)
            if difference < self.clock_rate * 10:  # ignore timestamp jumps
                self.jitter += (difference - self.jitter) / 16
        self.last_transit = transit


ReceptionStatistics: type[PythonReceptionStatistics] | type[NativeReceptionStatistics]
"""The reception statistics class in use: the C one when `media._rtpcore` is built."""

if TYPE_CHECKING or native.rtpcore is not None:
    from media._rtpcore import ReceptionCore

    class NativeReceptionStatistics(ReceptionCore, _ReceptionReports):  # type: ignore[override]
        """`PythonReceptionStatistics` with the per-packet `update` in C (`ReceptionCore`).

        `update` raises ValueError unless ssrc and timestamp are in 0..2**32-1
        and sequence in 0..65535, and the constructor unless clock_rate is in
        1..1000000 Hz. Without `media._rtpcore` this name is
        `PythonReceptionStatistics`.
        """

        __slots__ = ("bad_sequence", "last_sr_arrival", "last_sr_middle")

        def __init__(self, clock_rate: int) -> None:
            super().__init__(clock_rate)
            self.last_sr_middle = 0
            self.last_sr_arrival: float | None = None
            self.bad_sequence: set[int] = set()

    ReceptionStatistics = NativeReceptionStatistics
else:
    NativeReceptionStatistics = PythonReceptionStatistics
    ReceptionStatistics = PythonReceptionStatistics


def round_trip_ms(block: ReportBlock, arrival_s: float) -> float | None:
    """Return the round-trip time from a report block about our stream (RFC 3550 6.4.1)."""
    if block.last_sr == 0:
        return None
    now_middle = ntp_middle(ntp_timestamp(arrival_s))
    rtt_units = (now_middle - block.last_sr - block.delay_since_last_sr) & 0xFFFFFFFF
    if rtt_units > 0x7FFFFFFF:
        return None
    return 1000 * rtt_units / 65536
