"""RFC 4733 telephone-event reception for WebRTC legs.

A browser's RTCDTMFSender sends each key press as a run of telephone-event
packets sharing one RTP timestamp, ending with three copies of the end
packet (RFC 4733 section 2.5.1.4). Some senders never set the marker bit.
So a key press is identified by (SSRC, timestamp) and reported once, at its
first end packet, or when the next press starts if every end packet was lost.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

from ivr.channel import DtmfInput

_EVENT_DIGITS = "0123456789*#ABCD"


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """The 4-byte payload of RFC 4733 section 2.3: event, end bit, volume, duration."""

    event: int
    end: bool
    volume: int
    duration: int

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        if len(payload) < 4:
            raise ValueError(f"RFC 4733 payload of {len(payload)} bytes is shorter than 4")
        event, flags, duration = struct.unpack("!BBH", payload[:4])
        return cls(event=event, end=bool(flags & 0x80), volume=flags & 0x3F, duration=duration)


class TelephoneEventReceiver:
    """Turns telephone-event payloads into one `DtmfInput` per key press."""

    def __init__(self) -> None:
        self._reported: deque[tuple[int, int]] = deque(maxlen=32)
        self._running: tuple[int, int] | None = None
        self._running_event: TelephoneEvent | None = None
        self._running_rate = 8000

    def receive(
        self, ssrc: int, timestamp: int, payload: bytes, clock_rate: int
    ) -> list[DtmfInput]:
        """Feed one packet; return the key presses it completes. Raises ValueError."""
        packet = TelephoneEvent.parse(payload)
        key = (ssrc, timestamp)
        if key in self._reported:
            return []
        completed: list[DtmfInput] = []
        if self._running is not None and self._running != key:
            completed.extend(self._finish())
        self._running = key
        self._running_event = packet
        self._running_rate = clock_rate
        if packet.end:
            completed.extend(self._finish())
        return completed

    def _finish(self) -> list[DtmfInput]:
        key, packet = self._running, self._running_event
        self._running = None
        self._running_event = None
        if key is None or packet is None:
            return []
        self._reported.append(key)
        if packet.event >= len(_EVENT_DIGITS):
            return []
        duration_ms = round(1000 * packet.duration / self._running_rate)
        return [DtmfInput(digit=_EVENT_DIGITS[packet.event], duration_ms=duration_ms)]
