"""Tests of the in-band DTMF generator and the RFC 4733 packet builder."""

from __future__ import annotations

import pytest

from tests.support.audio_analysis import RtpPacket, digits_from_events, telephone_events
from tests.support.dtmf import (
    DTMF_FREQUENCIES_HZ,
    detect_digit,
    dtmf_tone,
    goertzel_power,
    telephone_event_packets,
)
from tests.support.wav import silence, tone


@pytest.mark.parametrize("digit", sorted(DTMF_FREQUENCIES_HZ))
def test_tone_of_each_digit_is_detected_as_that_digit(digit: str) -> None:
    assert detect_digit(dtmf_tone(digit, 0.1)) == digit


def test_tone_holds_both_frequencies_at_equal_power() -> None:
    samples = dtmf_tone("5", 0.1)
    low = goertzel_power(samples, 770, 8000)
    high = goertzel_power(samples, 1336, 8000)
    assert high == pytest.approx(low, rel=0.05)
    assert goertzel_power(samples, 697, 8000) < low / 100


def test_tone_length_and_level() -> None:
    samples = dtmf_tone("#", 0.1, amplitude=0.25)
    assert len(samples) == 800
    assert 0.4 * 32767 < abs(int(samples.max())) <= 0.5 * 32767 + 1


def test_detector_rejects_single_tone_and_silence() -> None:
    assert detect_digit(tone(697, 0.1, 8000)) is None
    assert detect_digit(silence(0.1, 8000) + 1) is None


def test_tone_rejects_invalid_digit() -> None:
    with pytest.raises(ValueError, match="invalid DTMF digit 'X'"):
        dtmf_tone("x")


def test_event_packets_follow_rfc4733_sequence() -> None:
    packets = telephone_event_packets("9", duration_s=0.1)
    assert [p.marker for p in packets] == [True, False, False, False, False, False, False]
    assert [p.payload[2:] for p in packets] == [
        (d).to_bytes(2, "big") for d in (160, 320, 480, 640, 800, 800, 800)
    ]
    assert all(p.payload[0] == 9 for p in packets)
    assert [bool(p.payload[1] & 0x80) for p in packets] == [False] * 4 + [True] * 3


def test_event_packets_parse_back_to_digit() -> None:
    rtp = [
        RtpPacket(101, p.marker, i, 4000, 1, p.payload)
        for i, p in enumerate(telephone_event_packets("*"))
    ]
    assert digits_from_events(telephone_events(rtp)) == "*"


def test_short_event_still_has_marker_and_three_end_packets() -> None:
    packets = telephone_event_packets("1", duration_s=0.01)
    assert [p.marker for p in packets] == [True, False, False]
    assert all(p.payload[1] & 0x80 for p in packets)
