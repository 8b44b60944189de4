"""RFC 4733 telephone-events: payload format, a receiver and a sender.

Theory of operation. One key press is one *event*, identified by the RTP SSRC
and the RTP timestamp of its first packet (RFC 4733 section 2.5.1.1 fixes the
timestamp for the whole event). The sender repeats the event every packet
interval with a growing duration, sets the E bit on the last packet and sends
that end packet three times (section 2.5.1.4). The receiver therefore keys on
(ssrc, timestamp), never on the marker bit (some senders never set it) or on
the event code alone (the same digit pressed twice is two events). It reports
each digit once: when the first end packet arrives, when a packet of a newer
event arrives while the old one never ended, or when `poll` finds that no
packet came for `end_timeout_ms`. Events longer than the 16-bit duration field
continue with a new timestamp (section 2.5.1.3); the receiver joins such a
segment to the running event.
"""

from __future__ import annotations

import enum
import logging
import struct
from collections import deque
from dataclasses import dataclass

from ivr.channel import DtmfInput
from media.rtp import timestamp_delta

logger = logging.getLogger("media.dtmf")

PAYLOAD_SIZE = 4
MAX_DURATION = 0xFFFF
DTMF_EVENTS = "0123456789*#ABCD"
DEFAULT_VOLUME = 10

_PAYLOAD = struct.Struct("!BBH")


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One telephone-event payload (RFC 4733 section 2.3).

    `volume` is the power level in -dBm0 (0-63), and `duration` is in RTP
    timestamp units since the event's timestamp.
    """

    event: int
    end: bool
    volume: int
    duration: int

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        """Parse the first 4 bytes of a telephone-event payload."""
        if len(payload) < PAYLOAD_SIZE:
            raise ValueError(f"RFC 4733 payload too short: {len(payload)} bytes, an event needs 4")
        event, flags, duration = _PAYLOAD.unpack_from(payload)
        return cls(event=event, end=bool(flags & 0x80), volume=flags & 0x3F, duration=duration)

    def serialize(self) -> bytes:
        """Return the 4-byte wire form."""
        if not 0 <= self.event <= 255:
            raise ValueError(f"RFC 4733 event code {self.event} outside 0-255")
        if not 0 <= self.volume <= 63:
            raise ValueError(f"RFC 4733 volume {self.volume} outside 0-63")
        if not 0 <= self.duration <= MAX_DURATION:
            raise ValueError(f"RFC 4733 duration {self.duration} outside 0-65535")
        flags = self.volume | (0x80 if self.end else 0)
        return _PAYLOAD.pack(self.event, flags, self.duration)

    @property
    def digit(self) -> str | None:
        """The DTMF digit for events 0-15, None for other events (flash, tones)."""
        return DTMF_EVENTS[self.event] if self.event < len(DTMF_EVENTS) else None


def event_code(digit: str) -> int:
    """Return the RFC 4733 event code of a DTMF digit. Raises ValueError for anything else."""
    code = DTMF_EVENTS.find(digit.upper()) if len(digit) == 1 else -1
    if code < 0:
        raise ValueError(f"not a DTMF digit: {digit!r} (expected one of 0-9, *, #, A-D)")
    return code


class EventState(enum.Enum):
    IDLE = "idle"
    ACTIVE = "active"
    ENDED = "ended"


@dataclass(slots=True)
class _RunningEvent:
    ssrc: int
    timestamp: int
    event: int
    base_duration: int
    duration: int
    last_arrival_ms: int


class DtmfReceiver:
    """Turn telephone-event packets into one `DtmfInput` per key press.

    `clock_rate` is the telephone-event clock from the SDP rtpmap (8000 for
    telephone-event/8000). Times are milliseconds on any monotonic clock.
    """

    def __init__(
        self, clock_rate: int = 8000, *, end_timeout_ms: int = 600, call_id: str = "-"
    ) -> None:
        self.clock_rate = clock_rate
        self.end_timeout_ms = end_timeout_ms
        self.call_id = call_id
        self._state = EventState.IDLE
        self._running: _RunningEvent | None = None
        self._finished: deque[tuple[int, int]] = deque(maxlen=16)

    @property
    def state(self) -> EventState:
        return self._state

    def _set_state(self, new: EventState) -> None:
        if new is not self._state:
            logger.debug("call %s: rfc4733 %s -> %s", self.call_id, self._state.value, new.value)
            self._state = new

    def receive(
        self, ssrc: int, timestamp: int, payload: bytes, arrival_ms: int
    ) -> list[DtmfInput]:
        """Feed one telephone-event packet and return the digits it completes (0, 1 or 2).

        Raises ValueError for a payload shorter than 4 bytes.
        """
        packet = TelephoneEvent.parse(payload)
        completed: list[DtmfInput] = []
        key = (ssrc, timestamp)
        running = self._running

        if running is not None and (running.ssrc, running.timestamp) == key:
            if self._state is EventState.ACTIVE:
                running.duration = max(running.duration, running.base_duration + packet.duration)
                running.last_arrival_ms = arrival_ms
                if packet.end:
                    completed.extend(self._finish())
            return completed

        if key in self._finished:
            return completed  # a late copy of an event already reported

        if (
            running is not None
            and self._state is EventState.ACTIVE
            and running.ssrc == ssrc
            and running.event == packet.event
            and 0 < timestamp_delta(timestamp, running.timestamp) <= running.duration + 320
        ):
            # Continuation segment of a long event (RFC 4733 section 2.5.1.3).
            self._finished.append((running.ssrc, running.timestamp))
            running.base_duration += timestamp_delta(timestamp, running.timestamp)
            running.timestamp = timestamp
            running.duration = running.base_duration + packet.duration
            running.last_arrival_ms = arrival_ms
            if packet.end:
                completed.extend(self._finish())
            return completed

        if running is not None and self._state is EventState.ACTIVE:
            completed.extend(self._finish())  # its end packets were lost

        self._running = _RunningEvent(
            ssrc=ssrc,
            timestamp=timestamp,
            event=packet.event,
            base_duration=0,
            duration=packet.duration,
            last_arrival_ms=arrival_ms,
        )
        self._set_state(EventState.ACTIVE)
        if packet.end:
            completed.extend(self._finish())
        return completed

    def poll(self, now_ms: int) -> list[DtmfInput]:
        """Report a running event whose end packets never came within `end_timeout_ms`."""
        running = self._running
        if (
            running is not None
            and self._state is EventState.ACTIVE
            and now_ms - running.last_arrival_ms >= self.end_timeout_ms
        ):
            return self._finish()
        return []

    @property
    def active(self) -> bool:
        """Whether a key is held down right now (an event started but has not ended)."""
        return self._state is EventState.ACTIVE

    def _finish(self) -> list[DtmfInput]:
        running = self._running
        assert running is not None
        self._finished.append((running.ssrc, running.timestamp))
        self._set_state(EventState.ENDED)
        digit = DTMF_EVENTS[running.event] if running.event < len(DTMF_EVENTS) else None
        if digit is None:
            logger.debug("call %s: ignored telephone-event %d", self.call_id, running.event)
            return []
        duration_ms = round(1000 * running.duration / self.clock_rate)
        return [DtmfInput(digit=digit, duration_ms=duration_ms)]


def build_event_payloads(
    digit: str,
    duration_ms: int,
    *,
    clock_rate: int = 8000,
    packet_ms: int = 20,
    volume: int = DEFAULT_VOLUME,
    end_repeats: int = 3,
) -> list[bytes]:
    """Return the telephone-event payloads of one key press, one per packet interval.

    All payloads belong to one RTP timestamp, and the caller sets the marker bit on
    the first. The last payload is the end packet, repeated `end_repeats` times.
    """
    code = event_code(digit)
    if duration_ms <= 0:
        raise ValueError(f"DTMF duration must be positive, got {duration_ms} ms")
    total = duration_ms * clock_rate // 1000
    if total > MAX_DURATION:
        raise ValueError(f"DTMF duration {duration_ms} ms exceeds one RFC 4733 event segment")
    step = packet_ms * clock_rate // 1000
    payloads: list[bytes] = []
    elapsed = step
    while elapsed < total:
        payloads.append(TelephoneEvent(code, False, volume, elapsed).serialize())
        elapsed += step
    end = TelephoneEvent(code, True, volume, total).serialize()
    payloads.extend([end] * end_repeats)
    return payloads
