"""Turn received RTP into PCM on a timeline and measure where the sound is.

End-to-end call tests ask questions like "did the caller hear a prompt of
about 2.4 s, then silence, then a second prompt?". The functions here
measure that from what a peer received:

- `parse_rtp` reads one RTP datagram (RFC 3550 section 5.1) and
  `parse_telephone_event` one RFC 4733 event payload.
- `decode_g711` decodes PCMU (payload type 0) and PCMA (8) with table
  lookups (ITU-T G.711), so the tests do not depend on `audioop`, which
  Python 3.13 removed.
- `audio_from_rtp` lays the decoded payloads out on one timeline by RTP
  timestamp. Gaps where no packet arrived stay silent.
- `frame_rms` and `voiced_spans` find the stretches above an energy
  threshold, and `duration_matches` compares a span with an expected
  prompt length.

Everything here is pure and synchronous: bytes and arrays in, values out.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 8000
PAYLOAD_TYPE_PCMU = 0
PAYLOAD_TYPE_PCMA = 8
RTP_HEADER_SIZE = 12
FULL_SCALE = 32768.0

Samples = npt.NDArray[np.int16]

# RFC 4733 section 3.2: events 0-9 are the digits, then *, #, A-D.
EVENT_DIGITS = "0123456789*#ABCD"


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet with the time it arrived (time.monotonic seconds)."""

    payload_type: int
    marker: bool
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    arrival: float = 0.0


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One RFC 4733 telephone-event packet."""

    event: int
    end: bool
    volume: int
    duration: int
    timestamp: int
    marker: bool
    arrival: float

    @property
    def digit(self) -> str | None:
        """The DTMF digit of this event, or None for events above 15."""
        return EVENT_DIGITS[self.event] if self.event < len(EVENT_DIGITS) else None


@dataclass(frozen=True, slots=True)
class Timeline:
    """Received audio laid out by RTP timestamp.

    `samples[0]` is the earliest sample received. `start_arrival` is the
    time.monotonic() instant it arrived, or would have arrived in order
    when a reordered packet carried it. `dropped_packets` counts packets
    that fell outside the timeline's bounds.
    """

    samples: Samples
    sample_rate: int
    start_arrival: float
    packet_count: int
    dropped_packets: int = 0

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


@dataclass(frozen=True, slots=True)
class Span:
    """A stretch of sound, in seconds from the start of a timeline."""

    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


class CapturedDatagram(Protocol):
    """What `packets_from_datagrams` needs from a captured datagram."""

    @property
    def payload(self) -> bytes: ...

    @property
    def captured_at(self) -> float: ...


def parse_rtp(datagram: bytes, arrival: float = 0.0) -> RtpPacket:
    """Parse an RTP datagram; raise ValueError when it is not valid RTP version 2."""
    if len(datagram) < RTP_HEADER_SIZE:
        raise ValueError(f"RTP datagram too short: {len(datagram)} bytes, need 12")
    first, second, sequence, timestamp, ssrc = struct.unpack_from("!BBHII", datagram)
    if first >> 6 != 2:
        raise ValueError(f"RTP version {first >> 6} is not supported, expected 2")
    offset = RTP_HEADER_SIZE + 4 * (first & 0x0F)
    if first & 0x10:
        if len(datagram) < offset + 4:
            raise ValueError("RTP header extension is truncated")
        (extension_words,) = struct.unpack_from("!H", datagram, offset + 2)
        offset += 4 + 4 * extension_words
    end = len(datagram)
    if first & 0x20:
        padding = datagram[-1] if datagram else 0
        if padding == 0 or padding > end - offset:
            raise ValueError(f"RTP padding length {padding} is invalid")
        end -= padding
    if offset > end:
        raise ValueError("RTP CSRC list or extension runs past the datagram")
    return RtpPacket(
        payload_type=second & 0x7F,
        marker=bool(second & 0x80),
        sequence=sequence,
        timestamp=timestamp,
        ssrc=ssrc,
        payload=datagram[offset:end],
        arrival=arrival,
    )


def packets_from_datagrams(datagrams: Iterable[CapturedDatagram]) -> list[RtpPacket]:
    """Parse captured datagrams as RTP, skipping the ones that are not RTP (RTCP, STUN)."""
    packets = []
    for datagram in datagrams:
        try:
            packet = parse_rtp(datagram.payload, datagram.captured_at)
        except ValueError:
            continue
        # RFC 5761 section 4: payload types 72-76 with the marker bit are RTCP.
        if 72 <= packet.payload_type <= 76:
            continue
        packets.append(packet)
    return packets


def parse_telephone_event(packet: RtpPacket) -> TelephoneEvent:
    """Read the RFC 4733 section 2.3 payload of `packet`; raise ValueError if it is short."""
    if len(packet.payload) < 4:
        raise ValueError(f"telephone-event payload too short: {len(packet.payload)} bytes")
    event, flags, duration = struct.unpack_from("!BBH", packet.payload)
    return TelephoneEvent(
        event=event,
        end=bool(flags & 0x80),
        volume=flags & 0x3F,
        duration=duration,
        timestamp=packet.timestamp,
        marker=packet.marker,
        arrival=packet.arrival,
    )


def telephone_events(packets: Iterable[RtpPacket], payload_type: int = 101) -> list[TelephoneEvent]:
    """Return the telephone events among `packets`, in arrival order."""
    return [parse_telephone_event(p) for p in packets if p.payload_type == payload_type]


def digits_from_events(events: Sequence[TelephoneEvent]) -> str:
    """Return the digits that `events` press, one per event timestamp.

    RFC 4733 section 2.5.1 sends one event as several packets with the same
    RTP timestamp (updates, then three end packets), so a new timestamp
    starts a new digit.
    """
    digits = []
    seen: set[tuple[int, int]] = set()
    for event in events:
        key = (event.timestamp, event.event)
        if key in seen or event.digit is None:
            continue
        seen.add(key)
        digits.append(event.digit)
    return "".join(digits)


def _ulaw_table() -> Samples:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(codes & 0x80, -magnitude, magnitude).astype(np.int16)


def _alaw_table() -> Samples:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = np.where(
        exponent == 0,
        (mantissa << 4) + 8,
        ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0),
    )
    return np.where(codes & 0x80, magnitude, -magnitude).astype(np.int16)


ULAW_TO_LINEAR = _ulaw_table()
ALAW_TO_LINEAR = _alaw_table()


def decode_g711(payload: bytes, payload_type: int) -> Samples:
    """Decode a PCMU (0) or PCMA (8) payload to 16-bit linear samples."""
    codes = np.frombuffer(payload, dtype=np.uint8)
    if payload_type == PAYLOAD_TYPE_PCMU:
        return ULAW_TO_LINEAR[codes]
    if payload_type == PAYLOAD_TYPE_PCMA:
        return ALAW_TO_LINEAR[codes]
    raise ValueError(f"payload type {payload_type} is not G.711 (expected 0 or 8)")


def encode_ulaw(samples: Samples) -> bytes:
    """Encode 16-bit linear samples as G.711 mu-law (used to build test inputs).

    Works on 14-bit magnitudes like the reference encoder in CCITT's g711.c,
    so the codes equal those of `audioop.lin2ulaw`.
    """
    values = samples.astype(np.int32) >> 2
    sign = np.where(values < 0, 0x80, 0)
    magnitude = np.minimum(np.minimum(np.abs(values), 8159) + 0x21, 0x1FFF)
    exponent = np.floor(np.log2(magnitude)).astype(np.int32) - 5
    mantissa = (magnitude >> (exponent + 1)) & 0x0F
    codes = ~(sign | (exponent << 4) | mantissa) & 0xFF
    return bytes(codes.astype(np.uint8).tobytes())


def audio_from_rtp(
    packets: Iterable[RtpPacket],
    *,
    sample_rate: int = SAMPLE_RATE,
    max_duration_s: float = 600.0,
) -> Timeline:
    """Decode the G.711 packets and place each at its RTP timestamp.

    Packets of other payload types (telephone-event, comfort noise) are
    skipped. The first packet of each new SSRC is placed by its arrival time
    relative to the first packet, because RTP timestamps of different
    sources are unrelated. Sources are mixed where they overlap (an echo
    and a prompt, for example). Packets that would end beyond
    `max_duration_s` are counted in `dropped_packets`.
    """
    audio = [p for p in packets if p.payload_type in (PAYLOAD_TYPE_PCMU, PAYLOAD_TYPE_PCMA)]
    if not audio:
        return Timeline(np.zeros(0, dtype=np.int16), sample_rate, 0.0, 0)
    first_arrival = audio[0].arrival
    anchors: dict[int, tuple[int, int]] = {}
    placed: list[tuple[int, int, Samples]] = []
    for packet in audio:
        if packet.ssrc not in anchors:
            position = round((packet.arrival - first_arrival) * sample_rate)
            anchors[packet.ssrc] = (position, packet.timestamp)
        anchor_position, anchor_timestamp = anchors[packet.ssrc]
        # Signed 32-bit difference, so a timestamp wrap-around keeps its place.
        delta = (packet.timestamp - anchor_timestamp + 2**31) % 2**32 - 2**31
        decoded = decode_g711(packet.payload, packet.payload_type)
        placed.append((packet.ssrc, anchor_position + delta, decoded))
    # A reordered packet can belong before the first one to arrive: shift
    # the whole timeline so that it starts with the earliest sample.
    shift = -min(0, *(position for _, position, _ in placed))
    limit = int(max_duration_s * sample_rate)
    kept = [(ssrc, p + shift, d) for ssrc, p, d in placed if p + shift + len(d) <= limit]
    length = max((position + len(decoded) for _, position, decoded in kept), default=0)
    # Within one SSRC a later packet replaces an earlier one at the same
    # place (a duplicate). Different SSRCs play at once, so they are mixed.
    streams: dict[int, npt.NDArray[np.int32]] = {}
    for ssrc, position, decoded in kept:
        stream = streams.setdefault(ssrc, np.zeros(length, dtype=np.int32))
        stream[position : position + len(decoded)] = decoded
    mixed = sum(streams.values(), np.zeros(length, dtype=np.int32))
    samples = np.clip(mixed, -32768, 32767).astype(np.int16)
    start_arrival = first_arrival - shift / sample_rate
    return Timeline(samples, sample_rate, start_arrival, len(kept), len(placed) - len(kept))


def frame_rms(
    samples: Samples, sample_rate: int = SAMPLE_RATE, frame_s: float = 0.02
) -> npt.NDArray[np.float64]:
    """Return the RMS of each whole frame of `frame_s` seconds (a short last frame is dropped)."""
    frame = round(sample_rate * frame_s)
    count = len(samples) // frame
    frames = samples[: count * frame].astype(np.float64).reshape(count, frame)
    return np.sqrt(np.mean(frames**2, axis=1)) if count else np.zeros(0)


def dbfs(rms: float) -> float:
    """Convert an RMS of 16-bit samples to dB relative to full scale (-inf for silence)."""
    return 20 * math.log10(rms / FULL_SCALE) if rms > 0 else -math.inf


def voiced_spans(
    samples: Samples,
    sample_rate: int = SAMPLE_RATE,
    *,
    threshold_dbfs: float = -40.0,
    bridge_gap_s: float = 0.3,
    min_span_s: float = 0.06,
    frame_s: float = 0.02,
) -> list[Span]:
    """Find the stretches whose frame RMS reaches `threshold_dbfs`.

    Quiet gaps shorter than `bridge_gap_s` inside a stretch (pauses between
    words) are bridged, and stretches shorter than `min_span_s` (clicks) are
    dropped. Times are multiples of `frame_s`.
    """
    threshold = FULL_SCALE * 10 ** (threshold_dbfs / 20)
    loud = frame_rms(samples, sample_rate, frame_s) >= threshold
    spans: list[list[int]] = []
    for index, is_loud in enumerate(loud):
        if not is_loud:
            continue
        if spans and (index - spans[-1][1]) * frame_s <= bridge_gap_s:
            spans[-1][1] = index + 1
        else:
            spans.append([index, index + 1])
    return [
        Span(round(first * frame_s, 6), round(last * frame_s, 6))
        for first, last in spans
        if (last - first) * frame_s >= min_span_s
    ]


def duration_matches(span: Span, expected_s: float, tolerance_s: float) -> bool:
    """Whether `span` lasts `expected_s` seconds, give or take `tolerance_s`."""
    return abs(span.duration_s - expected_s) <= tolerance_s


def describe_spans(spans: Sequence[Span]) -> str:
    """Format spans as "0.40-2.80 s (2.40 s)" items for assertion messages."""
    if not spans:
        return "no voiced span"
    return ", ".join(f"{s.start_s:.2f}-{s.end_s:.2f} s ({s.duration_s:.2f} s)" for s in spans)
