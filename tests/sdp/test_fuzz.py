"""Property tests: whatever a peer sends, only SdpError leaves the parser and the answerer.

Each test runs `SDP_FUZZ_EXAMPLES` examples (default 1500), so three tests
cover a few thousand inputs per run. Set the variable higher for a long run,
for example `SDP_FUZZ_EXAMPLES=200000`.
"""

from __future__ import annotations

import contextlib
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signaling.sdp import (
    G722,
    OPUS,
    PCMA,
    PCMU,
    Codec,
    SdpError,
    SdpLimits,
    SessionDescription,
    answer_audio,
    parse,
)
from tests.sdp.fixtures import load_body

EXAMPLES = int(os.environ.get("SDP_FUZZ_EXAMPLES", "1500"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
SMALL_LIMITS = SdpLimits(max_body_bytes=4096, max_lines=60, max_media=4)

CAPTURES = [
    "05-two-via-record-route-no-telephone-event.sip",
    "14-hold-reinvite-sendonly-no-final-crlf.sip",
    "18-freepbx-invite-two-telephone-events-pt111-g726.sip",
    "19-cisco-offer-disabled-video-pt255.sdp",
    "20-alexa-webrtc-offer-static-pt-without-rtpmap.sdp",
    "23-safari-offer-datachannel-only-no-audio.sdp",
    "25-asterisk13-webrtc-offer-without-rtcp-mux.sdp",
]
CAPTURE_LINES = [load_body(name).decode().splitlines() for name in CAPTURES]

ADDRESSES = [
    "IN IP4 192.0.2.1",
    "IN IP4 0.0.0.0",
    "IN IP4 233.252.0.1/127",
    "IN IP4 host.example.com",
    "IN IP6 2001:db8::1",
    "IN IP6 ::",
    "IN IP6 ff02::1",
    "ATM NSAP 47.0091",
    "IN IP4 1.2.3",
    "IN IP6 192.0.2.1",
]
PAYLOAD_TYPES = st.one_of(st.integers(0, 130), st.sampled_from(["96", "abc", "255", "-1", "007"]))
ENCODINGS = ["PCMU", "pcma", "G722", "opus", "telephone-event", "G729", "G726-32", "x"]
RATES = [0, 8000, 16000, 48000, 90000, 4294967295]
DIRECTIONS = ["sendrecv", "sendonly", "recvonly", "inactive"]
PROTOS = ["RTP/AVP", "RTP/AVPF", "RTP/SAVP", "UDP/TLS/RTP/SAVPF", "UDP/DTLS/SCTP", "udp"]
MEDIA_TYPES = ["audio", "audio", "audio", "video", "application", "text"]
SUPPORTED = st.lists(
    st.sampled_from([PCMU, PCMA, G722, OPUS, Codec("G729", 8000), Codec("telephone-event", 8000)]),
    min_size=1,
    max_size=5,
).filter(lambda codecs: any(not c.is_telephone_event for c in codecs))


@st.composite
def attribute_lines(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["rtpmap", "fmtp", "ptime", "maxptime", "direction", "other"]))
    if kind == "rtpmap":
        payload_type = draw(PAYLOAD_TYPES)
        encoding = draw(st.sampled_from(ENCODINGS))
        rate = draw(st.sampled_from(RATES))
        channels = draw(st.sampled_from(["", "/1", "/2", "/0"]))
        return f"a=rtpmap:{payload_type} {encoding}/{rate}{channels}"
    if kind == "fmtp":
        payload_type = draw(PAYLOAD_TYPES)
        events = draw(
            st.sampled_from(["0-15", "0-16", "16", "", "15-0", "0-15,66", "a-b", "0-999", "1,,2"])
        )
        return f"a=fmtp:{payload_type} {events}"
    if kind in ("ptime", "maxptime"):
        value = draw(st.sampled_from(["20", "30", "0", "5", "150", "20.5", "1e3", "99999"]))
        return f"a={kind}:{value}"
    if kind == "direction":
        return "a=" + draw(st.sampled_from(DIRECTIONS))
    return "a=" + draw(st.sampled_from(["rtcp-mux", "mid:0", "x:", "ice-ufrag:a", "rtcp:9"]))


@st.composite
def media_sections(draw: st.DrawFn) -> list[str]:
    media = draw(st.sampled_from(MEDIA_TYPES))
    port = draw(st.sampled_from(["0", "5004", "65535", "49170/2"]))
    proto = draw(st.sampled_from(PROTOS))
    formats = draw(st.lists(PAYLOAD_TYPES.map(str), min_size=1, max_size=6))
    lines = [f"m={media} {port} {proto} {' '.join(formats)}"]
    if draw(st.booleans()):
        lines.append("c=" + draw(st.sampled_from(ADDRESSES)))
    lines.extend(draw(st.lists(attribute_lines(), max_size=8)))
    return lines


@st.composite
def offers(draw: st.DrawFn) -> str:
    lines = ["v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-"]
    if draw(st.booleans()):
        lines.append("c=" + draw(st.sampled_from(ADDRESSES)))
    lines.append("t=0 0")
    if draw(st.booleans()):
        lines.append("a=" + draw(st.sampled_from(DIRECTIONS)))
    for section in draw(st.lists(media_sections(), max_size=4)):
        lines.extend(section)
    return "".join(f"{line}\r\n" for line in lines)


@st.composite
def mutated_captures(draw: st.DrawFn) -> str:
    lines = list(draw(st.sampled_from(CAPTURE_LINES)))
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        index = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["delete", "duplicate", "replace", "swap", "edit"]))
        if action == "delete":
            del lines[index]
        elif action == "duplicate":
            lines.insert(index, lines[index])
        elif action == "replace":
            lines[index] = draw(attribute_lines())
        elif action == "swap":
            other = draw(st.integers(0, len(lines) - 1))
            lines[index], lines[other] = lines[other], lines[index]
        else:
            line = lines[index]
            position = draw(st.integers(0, len(line)))
            lines[index] = line[:position] + draw(st.text(max_size=3)) + line[position + 1 :]
    separator = draw(st.sampled_from(["\r\n", "\n"]))
    return separator.join(lines)


def check_round_trip(description: SessionDescription) -> None:
    serialized = description.to_bytes()

    assert parse(serialized) == description
    assert serialized.endswith(b"\r\n") or not description.to_lines()


def check_answer(description: SessionDescription, supported: list[Codec]) -> None:
    try:
        result = answer_audio(
            description,
            supported,
            local_host="198.51.100.7",
            local_port=40000,
            session_id=1,
            session_version=1,
        )
    except SdpError:
        return
    answer = parse(result.sdp)

    assert [m.media for m in answer.media] == [m.media for m in description.media]
    assert [m.port for m in answer.media].count(40000) == 1
    assert answer.media[result.media_index].port == 40000
    assert result.direction in DIRECTIONS
    assert 10 <= result.ptime_ms <= 120
    assert result.codec.payload_type is not None
    if result.dtmf is not None:
        assert result.dtmf.clock_rate == result.codec.clock_rate


@FUZZ
@given(st.binary(max_size=2048))
def test_parse_random_bytes(body: bytes) -> None:
    with contextlib.suppress(SdpError):
        check_round_trip(parse(body, limits=SMALL_LIMITS))


@FUZZ
@given(st.one_of(mutated_captures(), st.text(max_size=400)))
def test_parse_mutated_bodies(body: str) -> None:
    try:
        description = parse(body)
    except SdpError:
        return
    check_round_trip(description)


@FUZZ
@given(st.one_of(offers(), mutated_captures()), SUPPORTED)
def test_answer_generated_offers(body: str, supported: list[Codec]) -> None:
    try:
        description = parse(body)
    except SdpError:
        return
    check_round_trip(description)
    check_answer(description, supported)
