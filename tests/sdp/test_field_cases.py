"""SDP bodies captured from real SIP and WebRTC peers, with the answers RFC 3264 calls for."""

from __future__ import annotations

import contextlib

import pytest

from signaling.sdp import (
    G722,
    OPUS,
    PCMA,
    PCMU,
    AudioAnswer,
    Codec,
    NoCommonCodec,
    SdpError,
    SessionDescription,
    answer_audio,
    offered_codecs,
    parse,
)
from tests.sdp.fixtures import load_body

SIP_CODECS = (PCMU, PCMA, G722)

CAPTURES = [
    "05-two-via-record-route-no-telephone-event.sip",
    "14-hold-reinvite-sendonly-no-final-crlf.sip",
    "18-freepbx-invite-two-telephone-events-pt111-g726.sip",
    "19-cisco-offer-disabled-video-pt255.sdp",
    "20-alexa-webrtc-offer-static-pt-without-rtpmap.sdp",
    "23-safari-offer-datachannel-only-no-audio.sdp",
    "25-asterisk13-webrtc-offer-without-rtcp-mux.sdp",
]


def answer(
    description: SessionDescription, supported: tuple[Codec, ...] = SIP_CODECS
) -> AudioAnswer:
    return answer_audio(
        description,
        supported,
        local_host="198.51.100.7",
        local_port=40000,
        session_id=4242,
        session_version=1,
    )


@pytest.mark.parametrize("name", CAPTURES)
def test_capture_round_trips(name: str) -> None:
    body = load_body(name)
    description = parse(body)
    serialized = description.to_bytes()

    assert serialized == body if body.endswith(b"\r\n") else serialized == body + b"\r\n"
    assert parse(serialized) == description


@pytest.mark.parametrize("name", CAPTURES)
def test_truncated_capture_raises_only_sdp_error(name: str) -> None:
    body = load_body(name)
    for end in range(len(body)):
        try:
            description = parse(body[:end])
        except SdpError:
            continue
        with contextlib.suppress(SdpError):
            answer(description)


def test_two_vias_offer_without_telephone_event() -> None:
    result = answer(parse(load_body("05-two-via-record-route-no-telephone-event.sip")))

    assert result.codec == Codec("PCMU", 8000, 1, 0)
    assert result.dtmf is None
    assert (result.remote_host, result.remote_port) == ("192.0.2.49", 20064)
    assert result.direction == "sendrecv"
    assert result.ptime_ms == 20
    assert b"telephone-event" not in result.sdp


def test_hold_reinvite_sendonly_answered_recvonly() -> None:
    result = answer(parse(load_body("14-hold-reinvite-sendonly-no-final-crlf.sip")))

    assert result.direction == "recvonly"
    assert result.sdp.endswith(b"a=recvonly\r\n")
    assert result.dtmf == Codec("telephone-event", 8000, 1, 101, "0-15")
    assert (result.remote_host, result.remote_port) == ("192.0.2.85", 30000)


def test_freepbx_offer_picks_pcmu_and_8000_dtmf() -> None:
    result = answer(parse(load_body("18-freepbx-invite-two-telephone-events-pt111-g726.sip")))

    assert result.codec == Codec("PCMU", 8000, 1, 0)
    assert result.dtmf == Codec("telephone-event", 8000, 1, 101, "0-15")
    assert b"m=audio 40000 RTP/AVP 0 101\r\n" in result.sdp
    assert b"103" not in result.sdp
    assert result.ptime_ms == 20


def test_freepbx_offer_opus_on_107_with_48000_dtmf() -> None:
    result = answer(
        parse(load_body("18-freepbx-invite-two-telephone-events-pt111-g726.sip")), (OPUS,)
    )

    assert result.codec == Codec("opus", 48000, 2, 107)
    assert result.dtmf == Codec("telephone-event", 48000, 1, 103, "0-15")
    assert b"m=audio 40000 RTP/AVP 107 103\r\n" in result.sdp


def test_freepbx_type_111_is_g726_not_opus() -> None:
    media = parse(load_body("18-freepbx-invite-two-telephone-events-pt111-g726.sip")).media[0]
    by_type = {c.payload_type: c for c in offered_codecs(media)}

    assert by_type[111] == Codec("G726-32", 8000, 1, 111)
    assert by_type[107] == Codec("opus", 48000, 2, 107)


def test_cisco_offer_rejects_disabled_video() -> None:
    result = answer(parse(load_body("19-cisco-offer-disabled-video-pt255.sdp")))

    assert result.codec == Codec("PCMA", 8000, 1, 8)
    assert result.dtmf == Codec("telephone-event", 8000, 1, 101, "0-15")
    assert (result.remote_host, result.remote_port) == ("192.0.2.95", 43712)
    assert result.sdp.endswith(b"a=sendrecv\r\nm=video 0 RTP/AVP 255\r\n")
    assert [m.media for m in parse(result.sdp).media] == ["audio", "video"]


def test_alexa_offer_static_types_resolve_without_rtpmap() -> None:
    description = parse(load_body("20-alexa-webrtc-offer-static-pt-without-rtpmap.sdp"))
    audio = description.media[0]

    assert offered_codecs(audio) == [
        Codec("opus", 48000, 2, 96),
        Codec("PCMU", 8000, 1, 0),
        Codec("PCMA", 8000, 1, 8),
    ]
    assert audio.has_attribute("rtcp-mux")


def test_safari_datachannel_only_offer_parses() -> None:
    description = parse(load_body("23-safari-offer-datachannel-only-no-audio.sdp"))

    assert [(m.media, m.proto, m.formats) for m in description.media] == [
        ("application", "UDP/DTLS/SCTP", ("webrtc-datachannel",))
    ]
    assert description.connection is None


def test_asterisk13_offer_lacks_rtcp_mux() -> None:
    description = parse(load_body("25-asterisk13-webrtc-offer-without-rtcp-mux.sdp"))
    audio = description.media[0]

    assert not audio.has_attribute("rtcp-mux")
    assert offered_codecs(audio)[0] == Codec("opus", 48000, 2, 107, "useinbandfec=1")


@pytest.mark.parametrize(
    "name",
    [
        "20-alexa-webrtc-offer-static-pt-without-rtpmap.sdp",
        "23-safari-offer-datachannel-only-no-audio.sdp",
        "25-asterisk13-webrtc-offer-without-rtcp-mux.sdp",
    ],
)
def test_webrtc_offers_get_no_plain_rtp_answer(name: str) -> None:
    with pytest.raises(NoCommonCodec):
        answer(parse(load_body(name)), (OPUS, PCMU, PCMA))
