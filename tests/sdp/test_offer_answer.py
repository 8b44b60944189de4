"""RFC 3264 offer/answer for one audio stream."""

from __future__ import annotations

import dataclasses

import pytest

from signaling.sdp import (
    G722,
    OPUS,
    PCMA,
    PCMU,
    Attribute,
    AudioAnswer,
    Codec,
    Connection,
    MediaDescription,
    NoCommonCodec,
    Origin,
    SdpError,
    SdpLimits,
    SessionDescription,
    accept_answer,
    answer_audio,
    build_audio_offer,
    create_audio_offer,
    parse,
)

SIP_CODECS = (PCMU, PCMA, G722)


def offer(*media: str, session: str = "c=IN IP4 192.0.2.10\r\n") -> SessionDescription:
    body = "v=0\r\no=peer 10 10 IN IP4 192.0.2.10\r\ns=-\r\n" + session + "t=0 0\r\n"
    return parse((body + "".join(media)).encode())


def answer(
    description: SessionDescription, supported: tuple[Codec, ...] = SIP_CODECS
) -> AudioAnswer:
    return answer_audio(
        description,
        supported,
        local_host="198.51.100.7",
        local_port=40000,
        session_id=555,
        session_version=1,
    )


def test_answer_body_for_plain_pcmu_offer() -> None:
    result = answer(offer("m=audio 5004 RTP/AVP 0\r\n"))

    assert result.sdp == (
        b"v=0\r\n"
        b"o=voxgate 555 1 IN IP4 198.51.100.7\r\n"
        b"s=-\r\n"
        b"c=IN IP4 198.51.100.7\r\n"
        b"t=0 0\r\n"
        b"m=audio 40000 RTP/AVP 0\r\n"
        b"a=rtpmap:0 PCMU/8000\r\n"
        b"a=ptime:20\r\n"
        b"a=sendrecv\r\n"
    )
    assert result.codec == Codec("PCMU", 8000, 1, 0)
    assert result.dtmf is None
    assert (result.remote_host, result.remote_port) == ("192.0.2.10", 5004)
    assert result.direction == "sendrecv"
    assert result.ptime_ms == 20
    assert result.media_index == 0


def test_answer_equals_dataclass_built_one() -> None:
    result = answer(offer("m=audio 5004 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"))

    built = AudioAnswer(
        sdp=result.sdp,
        codec=result.codec,
        dtmf=result.dtmf,
        remote_host=result.remote_host,
        remote_port=result.remote_port,
        direction=result.direction,
        ptime_ms=result.ptime_ms,
        media_index=result.media_index,
    )
    assert result == built
    assert hash(result) == hash(built)
    assert repr(result) == repr(built)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.remote_port = 1  # type: ignore[misc]


def test_answer_body_matches_model_serialization() -> None:
    description = offer(
        "m=video 5006 RTP/AVP 31\r\n",
        "m=audio 5004/2 RTP/AVPF 8 101\r\n",
        "a=rtpmap:101 telephone-event/8000\r\n",
        "a=fmtp:101 0-11\r\n",
        "a=ptime:30\r\n",
        "a=sendonly\r\n",
        "m=audio 5008 RTP/AVP 0\r\n",
    )
    result = answer_audio(
        description,
        SIP_CODECS,
        local_host="2001:db8::7",
        local_port=40000,
        session_id=12,
        session_version=3,
        username="vg",
    )

    expected = SessionDescription(
        origin=Origin("vg", "12", "3", "IN", "IP6", "2001:db8::7"),
        session_name="-",
        connection=Connection("IN", "IP6", "2001:db8::7"),
        media=(
            MediaDescription("video", 0, "RTP/AVP", ("31",)),
            MediaDescription(
                "audio",
                40000,
                "RTP/AVPF",
                ("8", "101"),
                attributes=(
                    Attribute("rtpmap", "8 PCMA/8000"),
                    Attribute("rtpmap", "101 telephone-event/8000"),
                    Attribute("fmtp", "101 0-11"),
                    Attribute("ptime", "30"),
                    Attribute("recvonly"),
                ),
            ),
            MediaDescription("audio", 0, "RTP/AVP", ("0",)),
        ),
    )
    assert result.sdp == expected.to_bytes()
    assert result.media_index == 1


def test_offerer_codec_order_wins() -> None:
    result = answer(offer("m=audio 5004 RTP/AVP 8 0\r\n"), (PCMU, PCMA))

    assert result.codec.name == "PCMA"
    assert result.codec.payload_type == 8


def test_preferred_codec_kept_on_reoffer() -> None:
    result = answer_audio(
        offer("m=audio 5004 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"),
        SIP_CODECS,
        local_host="198.51.100.7",
        local_port=40000,
        session_id=555,
        session_version=2,
        prefer=PCMU,
    )

    assert result.codec == Codec("PCMU", 8000, 1, 0)
    assert result.dtmf == Codec("telephone-event", 8000, 1, 101, "0-15")


def test_preferred_codec_absent_falls_back() -> None:
    result = answer_audio(
        offer("m=audio 5004 RTP/AVP 8\r\n"),
        SIP_CODECS,
        local_host="198.51.100.7",
        local_port=40000,
        session_id=555,
        session_version=2,
        prefer=PCMU,
    )

    assert result.codec == Codec("PCMA", 8000, 1, 8)


def test_unsupported_codecs_are_skipped() -> None:
    result = answer(offer("m=audio 5004 RTP/AVP 18 3 9\r\n"))

    assert result.codec == Codec("G722", 8000, 1, 9)


def test_g722_static_type_keeps_8000_clock() -> None:
    result = answer(offer("m=audio 5004 RTP/AVP 9\r\n"), (G722,))

    assert result.codec.clock_rate == 8000
    assert b"a=rtpmap:9 G722/8000\r\n" in result.sdp


def test_dynamic_type_without_rtpmap_is_unusable() -> None:
    with pytest.raises(NoCommonCodec, match="stream 1 offers nothing usable"):
        answer(offer("m=audio 5004 RTP/AVP 96\r\n"), (OPUS,))


def test_dynamic_opus_uses_offered_type() -> None:
    result = answer(
        offer(
            "m=audio 5004 RTP/AVP 109 0\r\n"
            "a=rtpmap:109 opus/48000/2\r\n"
            "a=fmtp:109 maxplaybackrate=16000\r\n"
        ),
        (OPUS, PCMU),
    )

    assert result.codec == Codec("opus", 48000, 2, 109, "maxplaybackrate=16000")
    assert b"m=audio 40000 RTP/AVP 109\r\n" in result.sdp
    assert b"a=rtpmap:109 opus/48000/2\r\n" in result.sdp
    assert b"a=fmtp:109 minptime=10;useinbandfec=1\r\n" in result.sdp


def test_rtpmap_name_match_ignores_case() -> None:
    result = answer(offer("m=audio 5004 RTP/AVP 97\r\na=rtpmap:97 pcma/8000\r\n"))

    assert result.codec == Codec("PCMA", 8000, 1, 97)


def test_telephone_event_follows_codec_clock() -> None:
    result = answer(
        offer(
            "m=audio 5004 RTP/AVP 111 0 110 101\r\n"
            "a=rtpmap:111 opus/48000/2\r\n"
            "a=rtpmap:110 telephone-event/48000\r\n"
            "a=rtpmap:101 telephone-event/8000\r\n"
        ),
        (PCMU,),
    )

    assert result.codec.name == "PCMU"
    assert result.dtmf == Codec("telephone-event", 8000, 1, 101, "0-15")
    assert b"m=audio 40000 RTP/AVP 0 101\r\n" in result.sdp
    assert b"a=fmtp:101 0-15\r\n" in result.sdp


def test_telephone_event_48000_goes_with_opus() -> None:
    result = answer(
        offer(
            "m=audio 5004 RTP/AVP 111 0 110 101\r\n"
            "a=rtpmap:111 opus/48000/2\r\n"
            "a=rtpmap:110 telephone-event/48000\r\n"
            "a=rtpmap:101 telephone-event/8000\r\n"
        ),
        (OPUS, PCMU),
    )

    assert result.codec.payload_type == 111
    assert result.dtmf == Codec("telephone-event", 48000, 1, 110, "0-15")
    assert b"m=audio 40000 RTP/AVP 111 110\r\n" in result.sdp


def test_telephone_event_at_other_rate_only_is_dropped() -> None:
    result = answer(
        offer("m=audio 5004 RTP/AVP 0 110\r\na=rtpmap:110 telephone-event/48000\r\n"),
    )

    assert result.dtmf is None
    assert b"110" not in result.sdp


def test_telephone_event_events_are_intersected() -> None:
    result = answer(
        offer(
            "m=audio 5004 RTP/AVP 0 101\r\n"
            "a=rtpmap:101 telephone-event/8000\r\n"
            "a=fmtp:101 0-11,16\r\n"
        )
    )

    assert result.dtmf is not None
    assert result.dtmf.fmtp == "0-11"
    assert b"a=fmtp:101 0-11\r\n" in result.sdp


def test_telephone_event_without_dtmf_events_is_dropped() -> None:
    result = answer(
        offer(
            "m=audio 5004 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 16\r\n"
        )
    )

    assert result.dtmf is None


def test_telephone_event_can_be_declined() -> None:
    result = answer_audio(
        offer("m=audio 5004 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"),
        SIP_CODECS,
        local_host="198.51.100.7",
        local_port=40000,
        session_id=1,
        session_version=1,
        accept_dtmf=False,
    )

    assert result.dtmf is None
    assert b"telephone-event" not in result.sdp


def test_one_offer_answered_with_other_arguments() -> None:
    description = offer("m=audio 5004 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\n")
    supported_list = [PCMU, PCMA]

    first = answer(description)
    declined = answer_audio(
        description,
        SIP_CODECS,
        local_host="198.51.100.7",
        local_port=40000,
        session_id=555,
        session_version=2,
        accept_dtmf=False,
    )
    preferred = answer_audio(
        description,
        SIP_CODECS,
        local_host="198.51.100.7",
        local_port=40000,
        session_id=555,
        session_version=2,
        prefer=PCMU,
    )
    only_pcmu = answer(description, (PCMU,))
    from_list = answer_audio(
        description,
        supported_list,
        local_host="198.51.100.7",
        local_port=40000,
        session_id=555,
        session_version=1,
    )
    supported_list[:] = [PCMU]
    from_changed_list = answer_audio(
        description,
        supported_list,
        local_host="198.51.100.7",
        local_port=40000,
        session_id=555,
        session_version=1,
    )

    assert first.codec == Codec("PCMA", 8000, 1, 8)
    assert first.dtmf is not None
    assert preferred.codec == Codec("PCMU", 8000, 1, 0)
    assert declined.codec == Codec("PCMA", 8000, 1, 8)
    assert declined.dtmf is None
    assert only_pcmu.codec == Codec("PCMU", 8000, 1, 0)
    assert from_list.codec == Codec("PCMA", 8000, 1, 8)
    assert from_changed_list.codec == Codec("PCMU", 8000, 1, 0)


def test_media_connection_overrides_session() -> None:
    result = answer(offer("m=audio 5004 RTP/AVP 0\r\nc=IN IP4 192.0.2.99\r\n"))

    assert result.remote_host == "192.0.2.99"


def test_media_connection_without_session_connection() -> None:
    result = answer(offer("m=audio 5004 RTP/AVP 0\r\nc=IN IP4 192.0.2.99\r\n", session=""))

    assert result.remote_host == "192.0.2.99"


def test_missing_connection_raises() -> None:
    with pytest.raises(SdpError, match="no c= line"):
        answer(offer("m=audio 5004 RTP/AVP 0\r\n", session=""))


def test_ipv6_offer_and_local_address() -> None:
    description = offer("m=audio 5004 RTP/AVP 0\r\n", session="c=IN IP6 2001:db8::10\r\n")
    result = answer_audio(
        description,
        SIP_CODECS,
        local_host="2001:db8::7",
        local_port=40000,
        session_id=1,
        session_version=1,
    )

    assert result.remote_host == "2001:db8::10"
    assert b"o=voxgate 1 1 IN IP6 2001:db8::7\r\n" in result.sdp
    assert b"c=IN IP6 2001:db8::7\r\n" in result.sdp


def test_repeated_section_takes_new_port_and_hold() -> None:
    section = "m=audio {port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
    first = answer(offer(section.format(port=5004)))
    second = answer(offer(section.format(port=6008), session="c=IN IP4 0.0.0.0\r\na=recvonly\r\n"))

    assert (first.remote_host, first.remote_port) == ("192.0.2.10", 5004)
    assert first.direction == "sendrecv"
    assert (second.remote_host, second.remote_port) == ("0.0.0.0", 6008)
    assert second.direction == "inactive"
    assert b"a=inactive\r\n" in second.sdp
    assert second.codec == first.codec
    assert second.dtmf == first.dtmf


def test_same_offer_answered_with_new_port_and_id() -> None:
    body = (
        b"v=0\r\no=peer 10 10 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
        b"m=video 5006 RTP/AVP 31\r\n"
        b"m=audio 5004 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
        b"m=audio 5008 RTP/AVP 8\r\n"
    )
    description = parse(body)
    answer(description)

    second = answer_audio(
        description,
        SIP_CODECS,
        local_host="198.51.100.8",
        local_port=40002,
        session_id=556,
        session_version=3,
    )

    fresh = answer_audio(
        parse(body, limits=SdpLimits()),
        SIP_CODECS,
        local_host="198.51.100.8",
        local_port=40002,
        session_id=556,
        session_version=3,
    )
    assert second == fresh
    assert second.sdp == (
        b"v=0\r\no=voxgate 556 3 IN IP4 198.51.100.8\r\ns=-\r\nc=IN IP4 198.51.100.8\r\n"
        b"t=0 0\r\n"
        b"m=video 0 RTP/AVP 31\r\n"
        b"m=audio 40002 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n"
        b"a=sendrecv\r\n"
        b"m=audio 0 RTP/AVP 8\r\n"
    )


@pytest.mark.parametrize(
    ("offered", "expected"),
    [
        ("sendrecv", "sendrecv"),
        ("sendonly", "recvonly"),
        ("recvonly", "sendonly"),
        ("inactive", "inactive"),
    ],
)
def test_direction_mirrors_offer(offered: str, expected: str) -> None:
    result = answer(offer(f"m=audio 5004 RTP/AVP 0\r\na={offered}\r\n"))

    assert result.direction == expected
    assert f"a={expected}\r\n".encode() in result.sdp


def test_session_level_direction_applies() -> None:
    result = answer(
        offer("m=audio 5004 RTP/AVP 0\r\n", session="c=IN IP4 192.0.2.10\r\na=sendonly\r\n")
    )

    assert result.direction == "recvonly"


def test_media_direction_overrides_session() -> None:
    result = answer(
        offer(
            "m=audio 5004 RTP/AVP 0\r\na=sendrecv\r\n",
            session="c=IN IP4 192.0.2.10\r\na=sendonly\r\n",
        )
    )

    assert result.direction == "sendrecv"


@pytest.mark.parametrize(
    ("offered", "expected"),
    [("sendrecv", "recvonly"), ("sendonly", "recvonly"), ("recvonly", "inactive")],
)
def test_zero_address_hold(offered: str, expected: str) -> None:
    result = answer(
        offer(
            f"m=audio 5004 RTP/AVP 0\r\na={offered}\r\n",
            session="c=IN IP4 0.0.0.0\r\n",
        )
    )

    assert result.direction == expected
    assert b"c=IN IP4 198.51.100.7\r\n" in result.sdp


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ("", 20),
        ("a=ptime:30\r\n", 30),
        ("a=ptime:10\r\n", 10),
        ("a=ptime:20.0\r\n", 20),
        ("a=ptime:25\r\n", 20),
        ("a=ptime:5\r\n", 10),
        ("a=ptime:500\r\n", 120),
        ("a=maxptime:150\r\n", 20),
        ("a=maxptime:10\r\n", 10),
        ("a=ptime:40\r\na=maxptime:30\r\n", 30),
    ],
)
def test_ptime_is_honoured(lines: str, expected: int) -> None:
    result = answer(offer("m=audio 5004 RTP/AVP 0\r\n" + lines))

    assert result.ptime_ms == expected
    assert f"a=ptime:{expected}\r\n".encode() in result.sdp


def test_opus_ptime_snaps_to_frame_size() -> None:
    result = answer(
        offer("m=audio 5004 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\na=ptime:30\r\n"), (OPUS,)
    )

    assert result.ptime_ms == 20


def test_other_streams_rejected_in_order() -> None:
    result = answer(
        offer(
            "m=video 5006 RTP/AVP 31\r\n",
            "m=audio 0 RTP/AVP 0\r\n",
            "m=audio 5004 RTP/AVP 0\r\n",
            "m=audio 5008 RTP/AVP 8\r\n",
            "m=application 5010 UDP/DTLS/SCTP webrtc-datachannel\r\n",
        )
    )

    media = parse(result.sdp).media
    assert [(m.media, m.port, m.proto, m.formats) for m in media] == [
        ("video", 0, "RTP/AVP", ("31",)),
        ("audio", 0, "RTP/AVP", ("0",)),
        ("audio", 40000, "RTP/AVP", ("0",)),
        ("audio", 0, "RTP/AVP", ("8",)),
        ("application", 0, "UDP/DTLS/SCTP", ("webrtc-datachannel",)),
    ]
    assert result.media_index == 2
    assert result.remote_port == 5004


def test_audio_without_common_codec_is_skipped_for_next() -> None:
    result = answer(offer("m=audio 5004 RTP/AVP 18\r\n", "m=audio 5006 RTP/AVP 8\r\n"))

    assert result.media_index == 1
    assert result.codec.name == "PCMA"
    assert [m.port for m in parse(result.sdp).media] == [0, 40000]


def test_avpf_profile_is_answered_in_kind() -> None:
    result = answer(offer("m=audio 5004 RTP/AVPF 0\r\n"))

    assert b"m=audio 40000 RTP/AVPF 0\r\n" in result.sdp


def test_srtp_only_offer_has_no_common_codec() -> None:
    with pytest.raises(NoCommonCodec, match="transport RTP/SAVP is not RTP/AVP"):
        answer(offer("m=audio 5004 RTP/SAVP 0\r\n"))


def test_no_common_codec_names_offer_and_ours() -> None:
    with pytest.raises(NoCommonCodec) as caught:
        answer(offer("m=audio 5004 RTP/AVP 18 3\r\n"))

    message = str(caught.value)
    assert "G729/8000" in message
    assert "GSM/8000" in message
    assert "PCMU/8000" in message
    assert isinstance(caught.value, SdpError)


def test_no_audio_stream_raises() -> None:
    with pytest.raises(NoCommonCodec, match="offer has no audio stream"):
        answer(offer("m=video 5006 RTP/AVP 31\r\n"))


def test_multicast_audio_is_not_answered() -> None:
    with pytest.raises(NoCommonCodec, match="not IPv4 or IPv6 unicast"):
        answer(offer("m=audio 5004 RTP/AVP 0\r\n", session="c=IN IP4 233.252.0.1/127\r\n"))


def test_answer_rejects_bad_arguments() -> None:
    description = offer("m=audio 5004 RTP/AVP 0\r\n")

    with pytest.raises(ValueError, match="not an IPv4 or IPv6 address"):
        answer_audio(
            description,
            SIP_CODECS,
            local_host="host",
            local_port=1,
            session_id=1,
            session_version=1,
        )
    with pytest.raises(ValueError, match="at least one audio codec"):
        answer_audio(
            description,
            (Codec("telephone-event", 8000),),
            local_host="192.0.2.1",
            local_port=1,
            session_id=1,
            session_version=1,
        )
    with pytest.raises(ValueError, match="outside 1-65535"):
        answer_audio(
            description,
            SIP_CODECS,
            local_host="192.0.2.1",
            local_port=0,
            session_id=1,
            session_version=1,
        )


def test_answer_rejects_bad_origin_values() -> None:
    description = offer("m=audio 5004 RTP/AVP 0\r\n")

    with pytest.raises(ValueError, match="empty or contains whitespace"):
        answer_audio(
            description,
            SIP_CODECS,
            local_host="192.0.2.1",
            local_port=1,
            session_id=1,
            session_version=1,
            username="vox gate",
        )
    with pytest.raises(ValueError, match="must not be negative"):
        answer_audio(
            description,
            SIP_CODECS,
            local_host="192.0.2.1",
            local_port=1,
            session_id=1,
            session_version=-1,
        )


def test_create_offer_body() -> None:
    body = create_audio_offer(
        (PCMU, PCMA, OPUS),
        local_host="198.51.100.7",
        local_port=40000,
        session_id=9,
        session_version=3,
    )

    assert body == (
        b"v=0\r\n"
        b"o=voxgate 9 3 IN IP4 198.51.100.7\r\n"
        b"s=-\r\n"
        b"c=IN IP4 198.51.100.7\r\n"
        b"t=0 0\r\n"
        b"m=audio 40000 RTP/AVP 0 8 96 101\r\n"
        b"a=rtpmap:0 PCMU/8000\r\n"
        b"a=rtpmap:8 PCMA/8000\r\n"
        b"a=rtpmap:96 opus/48000/2\r\n"
        b"a=fmtp:96 minptime=10;useinbandfec=1\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\n"
        b"a=fmtp:101 0-15\r\n"
        b"a=ptime:20\r\n"
        b"a=sendrecv\r\n"
    )


def test_create_offer_numbers_dtmf_rates() -> None:
    description = build_audio_offer(
        (Codec("PCMU", 8000), Codec("opus", 48000, 2, 101)),
        local_host="192.0.2.1",
        local_port=4000,
        session_id=1,
        session_version=1,
        dtmf_rates=(8000, 48000, 8000),
        direction="sendonly",
    )
    media = description.media[0]

    assert media.formats == ("0", "101", "96", "97")
    assert media.attribute_values("rtpmap") == [
        "0 PCMU/8000",
        "101 opus/48000/2",
        "96 telephone-event/8000",
        "97 telephone-event/48000",
    ]
    assert media.direction == "sendonly"


def test_create_offer_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="share one payload type"):
        create_audio_offer(
            (Codec("PCMU", 8000, 1, 0), Codec("PCMA", 8000, 1, 0)),
            local_host="192.0.2.1",
            local_port=4000,
            session_id=1,
            session_version=1,
        )
    with pytest.raises(ValueError, match="invalid direction"):
        create_audio_offer(
            (PCMU,),
            local_host="192.0.2.1",
            local_port=4000,
            session_id=1,
            session_version=1,
            direction="hold",
        )


def our_offer() -> SessionDescription:
    return build_audio_offer(
        (PCMU, PCMA, OPUS),
        local_host="198.51.100.7",
        local_port=40000,
        session_id=9,
        session_version=3,
        dtmf_rates=(8000, 48000),
    )


def peer_answer(media: str, session: str = "c=IN IP4 192.0.2.20\r\n") -> SessionDescription:
    return parse(
        ("v=0\r\no=peer 1 1 IN IP4 192.0.2.20\r\ns=-\r\n" + session + "t=0 0\r\n" + media).encode()
    )


def test_accept_answer_takes_first_common_codec() -> None:
    result = accept_answer(
        our_offer(),
        peer_answer(
            "m=audio 6000 RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"
        ),
    )

    assert result.codec == Codec("PCMA", 8000, 1, 8)
    assert result.dtmf == Codec("telephone-event", 8000, 1, 101, "0-15")
    assert (result.remote_host, result.remote_port) == ("192.0.2.20", 6000)
    assert result.direction == "sendrecv"
    assert result.ptime_ms == 20


def test_accept_answer_from_bytes() -> None:
    result = accept_answer(our_offer().to_bytes(), peer_answer("m=audio 6000 RTP/AVP 0\r\n"))

    assert result.codec.name == "PCMU"
    assert result.dtmf is None


def test_accept_answer_follows_renumbered_dynamic_type() -> None:
    result = accept_answer(
        our_offer(),
        peer_answer(
            "m=audio 6000 RTP/AVP 120 121\r\n"
            "a=rtpmap:120 opus/48000/2\r\n"
            "a=rtpmap:121 telephone-event/48000\r\n"
            "a=ptime:40\r\n"
        ),
    )

    assert result.codec == Codec("opus", 48000, 2, 120)
    assert result.dtmf == Codec("telephone-event", 48000, 1, 121, "0-15")
    assert result.ptime_ms == 40


def test_accept_answer_ignores_unoffered_formats() -> None:
    result = accept_answer(our_offer(), peer_answer("m=audio 6000 RTP/AVP 18 0\r\n"))

    assert result.codec.name == "PCMU"


@pytest.mark.parametrize(
    ("answered", "session", "expected"),
    [
        ("sendrecv", "c=IN IP4 192.0.2.20\r\n", "sendrecv"),
        ("recvonly", "c=IN IP4 192.0.2.20\r\n", "sendonly"),
        ("sendonly", "c=IN IP4 192.0.2.20\r\n", "recvonly"),
        ("inactive", "c=IN IP4 192.0.2.20\r\n", "inactive"),
        ("sendrecv", "c=IN IP4 0.0.0.0\r\n", "recvonly"),
    ],
)
def test_accept_answer_direction(answered: str, session: str, expected: str) -> None:
    result = accept_answer(
        our_offer(), peer_answer(f"m=audio 6000 RTP/AVP 0\r\na={answered}\r\n", session)
    )

    assert result.direction == expected


def test_accept_answer_cannot_widen_our_direction() -> None:
    offer_sent = build_audio_offer(
        (PCMU,),
        local_host="192.0.2.1",
        local_port=4000,
        session_id=1,
        session_version=1,
        direction="sendonly",
    )
    result = accept_answer(offer_sent, peer_answer("m=audio 6000 RTP/AVP 0\r\na=sendrecv\r\n"))

    assert result.direction == "sendonly"


def test_accept_answer_rejected_stream() -> None:
    with pytest.raises(NoCommonCodec, match="rejected audio stream 1"):
        accept_answer(our_offer(), peer_answer("m=audio 0 RTP/AVP 0\r\n"))


def test_accept_answer_without_common_codec() -> None:
    with pytest.raises(NoCommonCodec, match="keeps none of the offered codecs"):
        accept_answer(our_offer(), peer_answer("m=audio 6000 RTP/AVP 18\r\n"))


def test_accept_answer_media_count_mismatch() -> None:
    with pytest.raises(SdpError, match="answer has 2 media sections but the offer had 1"):
        accept_answer(
            our_offer(), peer_answer("m=audio 6000 RTP/AVP 0\r\nm=video 0 RTP/AVP 31\r\n")
        )


def test_accept_answer_media_type_mismatch() -> None:
    with pytest.raises(SdpError, match="is 'video' but the offer had 'audio'"):
        accept_answer(our_offer(), peer_answer("m=video 6000 RTP/AVP 31\r\n"))


def test_accept_answer_missing_connection() -> None:
    with pytest.raises(SdpError, match="no c= line"):
        accept_answer(our_offer(), peer_answer("m=audio 6000 RTP/AVP 0\r\n", session=""))


def test_offer_answer_round_trip_between_two_sides() -> None:
    offer_sent = our_offer()
    their_answer = answer_audio(
        parse(offer_sent.to_bytes()),
        (OPUS, PCMA),
        local_host="192.0.2.20",
        local_port=6000,
        session_id=77,
        session_version=1,
    )
    ours = accept_answer(offer_sent, parse(their_answer.sdp))

    assert their_answer.codec == Codec("PCMA", 8000, 1, 8)
    assert ours.codec == Codec("PCMA", 8000, 1, 8)
    assert ours.dtmf == Codec("telephone-event", 8000, 1, 101, "0-15")
    assert their_answer.dtmf == Codec("telephone-event", 8000, 1, 101, "0-15")
    assert (ours.remote_host, ours.remote_port) == ("192.0.2.20", 6000)
    assert (their_answer.remote_host, their_answer.remote_port) == ("198.51.100.7", 40000)
