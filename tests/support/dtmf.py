"""DTMF for the test peers: in-band dual tones and RFC 4733 event payloads.

pyVoIP cannot send DTMF itself, so its wrapper uses these: either tones
mixed into the audio (ITU-T Q.23 frequencies), or telephone-event packets
(RFC 4733) on the call's own RTP stream. `detect_digit` checks the tone
generator with the Goertzel algorithm.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np

from tests.support.audio_analysis import EVENT_DIGITS, Samples

LOW_FREQUENCIES_HZ = (697, 770, 852, 941)
HIGH_FREQUENCIES_HZ = (1209, 1336, 1477, 1633)
KEYPAD = ("123A", "456B", "789C", "*0#D")

DTMF_FREQUENCIES_HZ: dict[str, tuple[int, int]] = {
    key: (LOW_FREQUENCIES_HZ[row], HIGH_FREQUENCIES_HZ[column])
    for row, keys in enumerate(KEYPAD)
    for column, key in enumerate(keys)
}


def check_digits(digits: str) -> str:
    """Return `digits` upper-cased; raise ValueError when one is not a DTMF key."""
    normalized = digits.upper()
    for digit in normalized:
        if digit not in DTMF_FREQUENCIES_HZ:
            raise ValueError(f"invalid DTMF digit {digit!r}: use 0-9, *, # or A-D")
    return normalized


def dtmf_tone(
    digit: str, duration_s: float = 0.1, sample_rate: int = 8000, amplitude: float = 0.25
) -> Samples:
    """Make the dual tone of `digit`; each of the two sines has `amplitude` of full scale."""
    low, high = DTMF_FREQUENCIES_HZ[check_digits(digit)]
    t = np.arange(round(duration_s * sample_rate)) / sample_rate
    wave = np.sin(2 * np.pi * low * t) + np.sin(2 * np.pi * high * t)
    return np.round(amplitude * 32767 * wave).astype(np.int16)


def goertzel_power(samples: Samples, frequency_hz: float, sample_rate: int) -> float:
    """Return the power of `samples` at one frequency (Goertzel algorithm)."""
    coefficient = 2 * math.cos(2 * math.pi * frequency_hz / sample_rate)
    previous = before_previous = 0.0
    for value in samples.astype(np.float64) / 32768.0:
        previous, before_previous = value + coefficient * previous - before_previous, previous
    return previous**2 + before_previous**2 - coefficient * previous * before_previous


def detect_digit(samples: Samples, sample_rate: int = 8000, min_ratio: float = 10.0) -> str | None:
    """Return the DTMF digit in `samples`, or None when no pair of tones dominates.

    A digit is reported when the strongest low and high frequencies are each
    `min_ratio` times stronger than the runner-up of their group.
    """
    low_powers = [goertzel_power(samples, f, sample_rate) for f in LOW_FREQUENCIES_HZ]
    high_powers = [goertzel_power(samples, f, sample_rate) for f in HIGH_FREQUENCIES_HZ]
    row, column = int(np.argmax(low_powers)), int(np.argmax(high_powers))
    low_rest = sorted(low_powers)[-2]
    high_rest = sorted(high_powers)[-2]
    if low_powers[row] < min_ratio * low_rest or high_powers[column] < min_ratio * high_rest:
        return None
    return KEYPAD[row][column]


@dataclass(frozen=True, slots=True)
class EventPacket:
    """One telephone-event packet to send: RTP marker bit and RFC 4733 payload."""

    marker: bool
    payload: bytes


def event_code(digit: str) -> int:
    return EVENT_DIGITS.index(check_digits(digit))


def telephone_event_payload(event: int, *, end: bool, volume: int, duration: int) -> bytes:
    """Build the RFC 4733 section 2.3 payload: event, E bit and volume, duration."""
    if not 0 <= event <= 255 or not 0 <= volume <= 63 or not 0 <= duration <= 0xFFFF:
        raise ValueError(f"telephone-event out of range: {event=} {volume=} {duration=}")
    return struct.pack("!BBH", event, (0x80 if end else 0) | volume, duration)


def telephone_event_packets(
    digit: str, *, duration_s: float = 0.1, packet_s: float = 0.02, volume: int = 10
) -> list[EventPacket]:
    """Build the packets of one digit as RFC 4733 section 2.5.1 sends them.

    All packets carry the RTP timestamp of the event start (the caller sets
    it). The first has the marker bit, each next one reports the duration
    so far in 8 kHz timestamp units, and the last is sent three times with
    the end bit, as section 2.5.1.4 recommends.
    """
    code = event_code(digit)
    step = round(packet_s * 8000)
    total = max(step, round(duration_s * 8000))
    packets = [
        EventPacket(
            marker=(elapsed == step),
            payload=telephone_event_payload(code, end=False, volume=volume, duration=elapsed),
        )
        for elapsed in range(step, total, step)
    ]
    end_payload = telephone_event_payload(code, end=True, volume=volume, duration=total)
    packets += [
        EventPacket(marker=not packets and index == 0, payload=end_payload) for index in range(3)
    ]
    return packets
