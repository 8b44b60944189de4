"""Turn captured RTP into audio measurements: per-packet energy and voiced spans."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from media import g711
from media.rtp import RtpPacket
from tests.support.capture import Datagram

VOICED_RMS = 300.0


@dataclass(frozen=True, slots=True)
class PacketLevel:
    """The capture time and RMS level (16-bit scale) of one audio packet."""

    at: float
    rms: float


def audio_levels(
    datagrams: Sequence[Datagram], payload_type: int | None = None
) -> list[PacketLevel]:
    """Decode G.711 packets (PT 0 or 8, or only `payload_type`) and measure each one's RMS."""
    levels = []
    for datagram in datagrams:
        try:
            packet = RtpPacket.parse(datagram.payload)
        except ValueError:
            continue
        if packet.payload_type not in (0, 8) or (
            payload_type is not None and packet.payload_type != payload_type
        ):
            continue
        decode = g711.ulaw_decode if packet.payload_type == 0 else g711.alaw_decode
        samples = np.frombuffer(decode(packet.payload), dtype="<i2").astype(np.float64)
        rms = math.sqrt(float(np.mean(samples**2))) if samples.size else 0.0
        levels.append(PacketLevel(datagram.captured_at, rms))
    return levels


def telephone_event_times(datagrams: Sequence[Datagram], payload_type: int = 101) -> list[float]:
    """Capture times of RFC 4733 event packets with `payload_type`."""
    times = []
    for datagram in datagrams:
        try:
            packet = RtpPacket.parse(datagram.payload)
        except ValueError:
            continue
        if packet.payload_type == payload_type:
            times.append(datagram.captured_at)
    return times


def voiced_seconds(levels: Sequence[PacketLevel], *, start: float = -math.inf) -> float:
    """Seconds of 20 ms packets louder than VOICED_RMS captured at or after `start`."""
    return 0.02 * sum(1 for level in levels if level.at >= start and level.rms > VOICED_RMS)
