"""Tests of the RTP-to-PCM and energy helpers used by end-to-end call tests."""

from __future__ import annotations

import struct
import warnings

import numpy as np
import pytest

from tests.support.audio_analysis import (
    ALAW_TO_LINEAR,
    ULAW_TO_LINEAR,
    RtpPacket,
    Span,
    audio_from_rtp,
    decode_g711,
    describe_spans,
    digits_from_events,
    duration_matches,
    encode_ulaw,
    frame_rms,
    parse_rtp,
    telephone_events,
    voiced_spans,
)
from tests.support.wav import silence, tone

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop


def rtp(payload: bytes, *, sequence: int, timestamp: int, ssrc: int = 7, pt: int = 0) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, sequence, timestamp % 2**32, ssrc) + payload


def packetize(
    samples: np.ndarray, *, first_timestamp: int = 1000, ssrc: int = 7, start_arrival: float = 100.0
) -> list[RtpPacket]:
    packets = []
    for index in range(len(samples) // 160):
        frame = samples[index * 160 : (index + 1) * 160]
        datagram = rtp(
            encode_ulaw(frame), sequence=index, timestamp=first_timestamp + 160 * index, ssrc=ssrc
        )
        packets.append(parse_rtp(datagram, start_arrival + 0.02 * index))
    return packets


def test_ulaw_table_matches_audioop() -> None:
    expected = np.frombuffer(audioop.ulaw2lin(bytes(range(256)), 2), dtype="<i2")
    assert np.array_equal(ULAW_TO_LINEAR, expected)


def test_alaw_table_matches_audioop() -> None:
    expected = np.frombuffer(audioop.alaw2lin(bytes(range(256)), 2), dtype="<i2")
    assert np.array_equal(ALAW_TO_LINEAR, expected)


def test_ulaw_encoder_matches_audioop() -> None:
    samples = np.arange(-32768, 32768, 7, dtype=np.int16)
    assert encode_ulaw(samples) == audioop.lin2ulaw(samples.astype("<i2").tobytes(), 2)


def test_decode_rejects_other_payload_types() -> None:
    with pytest.raises(ValueError, match=r"not G\.711"):
        decode_g711(b"\x00" * 160, 18)


def test_parse_rtp_reads_header_fields() -> None:
    datagram = (
        struct.pack("!BBHII", 0x80, 0x80 | 101, 513, 90_000, 0xDEADBEEF) + b"\x01\x0a\x00\xa0"
    )
    packet = parse_rtp(datagram, 5.0)
    assert packet.payload_type == 101
    assert packet.marker
    assert packet.sequence == 513
    assert packet.timestamp == 90_000
    assert packet.ssrc == 0xDEADBEEF
    assert packet.payload == b"\x01\x0a\x00\xa0"
    assert packet.arrival == 5.0


def test_parse_rtp_skips_csrc_extension_and_padding() -> None:
    header = struct.pack("!BBHII", 0x80 | 0x20 | 0x10 | 1, 0, 1, 2, 3)
    csrc = struct.pack("!I", 99)
    extension = struct.pack("!HH", 0xBEDE, 1) + b"\xaa" * 4
    datagram = header + csrc + extension + b"abcd" + b"\x00\x00\x03"
    assert parse_rtp(datagram).payload == b"abcd"


@pytest.mark.parametrize(
    ("datagram", "message"),
    [
        (b"\x80\x00", "too short"),
        (b"\x40" + b"\x00" * 11, "version 1"),
        (b"\x8f" + b"\x00" * 11, "runs past"),
        (b"\xa0" + b"\x00" * 11 + b"\x00", "padding"),
    ],
)
def test_parse_rtp_rejects_malformed(datagram: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_rtp(datagram)


def test_timeline_keeps_gap_between_talkspurts() -> None:
    first = packetize(tone(440, 1.0, 8000, 0.5))
    # The sender stops for 0.5 s (4000 timestamp units) and resumes.
    second = packetize(
        tone(440, 1.0, 8000, 0.5), first_timestamp=1000 + 8000 + 4000, start_arrival=101.5
    )
    timeline = audio_from_rtp(first + second)
    assert timeline.duration_s == pytest.approx(2.5)
    assert timeline.packet_count == 100
    assert timeline.start_arrival == 100.0
    spans = voiced_spans(timeline.samples, bridge_gap_s=0.1)
    assert len(spans) == 2, describe_spans(spans)
    assert spans[0] == Span(0.0, 1.0)
    assert spans[1] == Span(1.5, 2.5)


def test_timeline_places_reordered_packets_by_timestamp() -> None:
    samples = np.concatenate([tone(440, 0.2, 8000), silence(0.2, 8000)])
    packets = packetize(samples)
    reordered = [packets[1], packets[0], *packets[2:]]
    assert np.array_equal(audio_from_rtp(reordered).samples, audio_from_rtp(packets).samples)


def test_timeline_survives_timestamp_wraparound() -> None:
    packets = packetize(tone(300, 0.4, 8000), first_timestamp=2**32 - 800)
    timeline = audio_from_rtp(packets)
    assert timeline.duration_s == pytest.approx(0.4)
    assert timeline.dropped_packets == 0


def test_timeline_anchors_new_ssrc_by_arrival() -> None:
    first = packetize(tone(440, 0.4, 8000), ssrc=1)
    second = packetize(tone(440, 0.4, 8000), ssrc=2, first_timestamp=555_555, start_arrival=101.0)
    spans = voiced_spans(audio_from_rtp(first + second).samples)
    assert [(s.start_s, s.end_s) for s in spans] == [(0.0, 0.4), (1.0, 1.4)]


def test_timeline_skips_telephone_events_and_counts_far_packets() -> None:
    packets = packetize(tone(440, 0.2, 8000))
    event = parse_rtp(rtp(b"\x05\x0a\x00\xa0", sequence=50, timestamp=1000, pt=101), 100.1)
    far = parse_rtp(rtp(b"\xff" * 160, sequence=51, timestamp=1000 + 8000 * 700), 100.2)
    timeline = audio_from_rtp([*packets, event, far], max_duration_s=60)
    assert timeline.packet_count == 10
    assert timeline.dropped_packets == 1


def test_frame_rms_of_full_scale_square_and_silence() -> None:
    square = np.where(np.arange(320) % 2, 20000, -20000).astype(np.int16)
    rms = frame_rms(np.concatenate([square, silence(0.02, 8000)]))
    assert rms.tolist() == [20000.0, 20000.0, 0.0]


def test_voiced_spans_bridge_short_pauses_and_drop_clicks() -> None:
    samples = np.concatenate([
        silence(0.2, 8000), tone(500, 0.5, 8000), silence(0.1, 8000), tone(500, 0.5, 8000),
        silence(1.0, 8000), tone(500, 0.02, 8000), silence(0.5, 8000),
    ])  # fmt: skip
    spans = voiced_spans(samples, bridge_gap_s=0.2)
    assert spans == [Span(0.2, 1.3)], describe_spans(spans)


def test_voiced_spans_ignore_quiet_noise() -> None:
    noise = np.random.default_rng(1).normal(0, 30, 8000).astype(np.int16)
    assert voiced_spans(noise) == []


def test_duration_matches_within_tolerance_only() -> None:
    span = Span(0.4, 2.8)
    assert duration_matches(span, 2.5, 0.15)
    assert not duration_matches(span, 2.0, 0.15)


def test_digits_from_events_counts_each_event_once() -> None:
    payloads = [
        (True, 1000, b"\x01\x0a\x00\xa0"), (False, 1000, b"\x01\x0a\x01\x40"),
        (False, 1000, b"\x01\x8a\x01\x40"), (False, 1000, b"\x01\x8a\x01\x40"),
        (True, 9000, b"\x0b\x0a\x00\xa0"), (False, 9000, b"\x0b\x8a\x01\x40"),
    ]  # fmt: skip
    packets = [
        parse_rtp(rtp(payload, sequence=i, timestamp=ts, pt=101 | (0x80 if marker else 0)))
        for i, (marker, ts, payload) in enumerate(payloads)
    ]
    events = telephone_events(packets)
    assert [e.end for e in events] == [False, False, True, True, False, True]
    assert events[2].duration == 320
    assert events[0].volume == 10
    assert digits_from_events(events) == "1#"


def test_timeline_mixes_overlapping_sources() -> None:
    prompt = packetize(tone(440, 0.4, 8000, 0.5), ssrc=1)
    echo_of_silence = packetize(silence(0.4, 8000), ssrc=2, start_arrival=100.001)
    interleaved = [p for pair in zip(prompt, echo_of_silence, strict=True) for p in pair]
    timeline = audio_from_rtp(interleaved)
    spans = voiced_spans(timeline.samples)
    assert spans == [Span(0.0, 0.4)], describe_spans(spans)


def test_timeline_keeps_one_copy_of_duplicates() -> None:
    packets = packetize(tone(440, 0.2, 8000, 0.5))
    single = audio_from_rtp(packets).samples
    doubled = audio_from_rtp(packets + packets).samples
    assert np.array_equal(single, doubled)
