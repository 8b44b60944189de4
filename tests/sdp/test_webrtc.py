"""Browser offers prepared for aiortc, and aiortc answers completed for the browser."""

from __future__ import annotations

import pytest

from signaling.sdp import (
    Codec,
    SdpError,
    add_telephone_event,
    check_webrtc_offer,
    complete_webrtc_answer,
    offered_codecs,
    parse,
    prepare_webrtc_offer,
)
from tests.sdp.fixtures import load_body

# Written for these tests in the shape of a Chrome offer, with documentation addresses:
# Opus, RED, G.722, G.711, CN and telephone-event at 48000 and 8000, then VP8/H.264
# video and a data channel, all in one BUNDLE group.
CHROME = "chrome-style-audio-video-datachannel-offer.sdp"

# The shape of an aiortc 1.16 answer to a prepared audio offer.
AIORTC_ANSWER = (
    "v=0\r\n"
    "o=- 4005405699 4005405699 IN IP4 0.0.0.0\r\n"
    "s=-\r\n"
    "t=0 0\r\n"
    "a=group:BUNDLE 0\r\n"
    "a=msid-semantic:WMS *\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF {formats}\r\n"
    "c=IN IP4 0.0.0.0\r\n"
    "a=sendrecv\r\n"
    "a=mid:0\r\n"
    "a=rtcp:9 IN IP4 0.0.0.0\r\n"
    "a=rtcp-mux\r\n"
    "a=ssrc:2800907235 cname:15300ffa\r\n"
    "{rtpmaps}"
    "a=ice-ufrag:inRM\r\n"
    "a=ice-pwd:2solm8hR1VXc5A2s3X4YNc\r\n"
    "a=fingerprint:sha-256 4A:F6:3A:F6\r\n"
    "a=setup:active\r\n"
)
RTPMAPS = {
    "111": "a=rtpmap:111 opus/48000/2\r\n",
    "9": "a=rtpmap:9 G722/8000\r\n",
    "0": "a=rtpmap:0 PCMU/8000\r\n",
    "8": "a=rtpmap:8 PCMA/8000\r\n",
}


def aiortc_answer(*formats: str) -> str:
    rtpmaps = "".join(RTPMAPS[f] for f in formats)
    return AIORTC_ANSWER.format(formats=" ".join(formats), rtpmaps=rtpmaps)


def chrome_offer(old: str = "", new: str = "", count: int = 1) -> str:
    text = load_body(CHROME).decode()
    if old:
        assert old in text, old
        text = text.replace(old, new, count)
    return text


def test_chrome_offer_cut_to_audio() -> None:
    prepared = prepare_webrtc_offer(parse(chrome_offer()))
    reduced = parse(prepared.sdp)

    assert prepared.audio_index == 0
    assert [m.media for m in reduced.media] == ["audio"]
    assert reduced.attribute_values("group") == ["BUNDLE 0"]
    assert reduced.media[0] == parse(chrome_offer()).media[0]


def test_alexa_static_types_get_rtpmap() -> None:
    offer = parse(load_body("20-alexa-webrtc-offer-static-pt-without-rtpmap.sdp"))
    audio = parse(prepare_webrtc_offer(offer).sdp).media[0]

    assert audio.attribute_values("rtpmap") == ["96 opus/48000/2", "0 PCMU/8000", "8 PCMA/8000"]
    assert audio.formats == ("96", "0", "8")


def test_alexa_video_only_bundle_group_dropped() -> None:
    offer = parse(load_body("20-alexa-webrtc-offer-static-pt-without-rtpmap.sdp"))
    reduced = parse(prepare_webrtc_offer(offer).sdp)

    assert reduced.attribute_values("group") == []
    assert [m.media for m in reduced.media] == ["audio"]


def test_safari_datachannel_only_offer_rejected() -> None:
    offer = parse(load_body("23-safari-offer-datachannel-only-no-audio.sdp"))

    with pytest.raises(
        SdpError, match=r"offer has no audio stream \(its media sections: application\)"
    ):
        check_webrtc_offer(offer)


def test_asterisk13_offer_without_rtcp_mux_rejected() -> None:
    offer = parse(load_body("25-asterisk13-webrtc-offer-without-rtcp-mux.sdp"))

    with pytest.raises(SdpError, match="audio stream 1 has no a=rtcp-mux"):
        check_webrtc_offer(offer)


def test_offer_without_media_rejected() -> None:
    offer = parse(b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n")

    with pytest.raises(SdpError, match="offer has no media sections"):
        check_webrtc_offer(offer)


def test_empty_offer_rejected_by_parser() -> None:
    with pytest.raises(SdpError, match="empty"):
        parse(b"")


def test_static_types_alone_are_accepted() -> None:
    text = chrome_offer(
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126", "m=audio 9 UDP/TLS/RTP/SAVPF 0 8"
    )
    for line in ("a=rtpmap:0 PCMU/8000\r\n", "a=rtpmap:8 PCMA/8000\r\n"):
        text = text.replace(line, "")
    audio = parse(prepare_webrtc_offer(parse(text)).sdp).media[0]

    assert offered_codecs(audio)[:2] == [Codec("PCMU", 8000, 1, 0), Codec("PCMA", 8000, 1, 8)]
    assert "0 PCMU/8000" in audio.attribute_values("rtpmap")


AUDIO_MID = "a=mid:0\r\n"

INVALID = [
    ("m=audio 9 UDP/TLS/RTP/SAVPF", "m=audio 9 RTP/AVP", "uses transport RTP/AVP"),
    ("m=audio 9 UDP", "m=audio 9/2 UDP", "port count"),
    ("SAVPF 111 63", "SAVPF 111 72 63", "format '72'"),
    ("a=rtcp-mux\r\na=rtcp-rsize\r\na=rtpmap:111", "a=rtcp-rsize\r\na=rtpmap:111", "no a=rtcp-mux"),
    ("a=setup:actpass\r\na=mid:0", "a=setup:holdconn\r\na=mid:0", "a=setup must be"),
    ("a=setup:actpass\r\na=mid:0", "a=mid:0", "has no a=setup"),
    ("a=fingerprint:sha-256 5B:D0", "a=fingerprint:sha-256 x 5B:D0", "a=fingerprint must be"),
    (
        "a=candidate:1467250027 1 udp 2122260223 192.0.2.44 46243 typ host",
        "a=candidate:1 1 udp",
        "a=candidate needs",
    ),
    ("rport 46243", "rport x", "non-numeric rport"),
    ("192.0.2.44 46243 typ host", "192.0.2.44 70000 typ host", "port or priority is out of range"),
    ("192.0.2.44 46243 typ host", "host.example 46243 typ host", "not an IP address or an mDNS"),
    (
        "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "a=extmap:1 urn:x vad=on",
        "a=extmap must be",
    ),
    (
        "a=rtcp:9 IN IP4 0.0.0.0\r\na=candidate",
        "a=rtcp:9 IP4 0.0.0.0\r\na=candidate",
        "a=rtcp must be",
    ),
    ("a=ssrc:1001406011 cname:Zb3Qk0p7v1m2n3x4", "a=ssrc:1001406011 cname", "a=ssrc must be"),
    ("a=rtcp-fb:111 transport-cc", "a=rtcp-fb:111", "a=rtcp-fb must be"),
    ("a=fmtp:111 minptime=10", "a=fmtp:111 minptime=ten", "parameter minptime is not an integer"),
    ("a=fmtp:111 minptime=10;useinbandfec=1", "a=fmtp:111", "a=fmtp has no parameters"),
    ("a=fmtp:63 111/111", "a=fmtp:64 111/111", "payload type 64, which has no a=rtpmap"),
    (
        "a=rtcp-fb:111 transport-cc",
        "a=rtcp-fb:111 transport-cc\r\nc=ATM NSAP 47",
        "network type IN",
    ),
]


@pytest.mark.parametrize(("old", "new", "fragment"), INVALID)
def test_invalid_audio_section_rejected(old: str, new: str, fragment: str) -> None:
    offer = parse(chrome_offer(old, new))

    with pytest.raises(SdpError, match="audio stream 1") as caught:
        check_webrtc_offer(offer)

    assert fragment in str(caught.value)


def test_missing_ice_credentials_rejected() -> None:
    text = chrome_offer("a=ice-ufrag:lS+x\r\n", "", count=3)

    with pytest.raises(SdpError, match="no a=ice-ufrag or a=ice-pwd"):
        check_webrtc_offer(parse(text))


def test_missing_fingerprint_rejected() -> None:
    text = chrome_offer()
    for line in text.splitlines(keepends=True):
        if line.startswith("a=fingerprint"):
            text = text.replace(line, "")

    with pytest.raises(SdpError, match="no a=fingerprint"):
        check_webrtc_offer(parse(text))


def test_no_aiortc_codec_rejected() -> None:
    text = chrome_offer("SAVPF 111 63 9 0 8 13 110 126", "SAVPF 63 13 110 126")

    with pytest.raises(SdpError, match=r"has no codec we support \(offered: red/48000, CN/8000;"):
        check_webrtc_offer(parse(text))


def test_session_setup_checked() -> None:
    text = chrome_offer("a=extmap-allow-mixed\r\n", "a=extmap-allow-mixed\r\na=setup:bogus\r\n")

    with pytest.raises(SdpError, match="session: a=setup must be"):
        check_webrtc_offer(parse(text))


def test_form_feed_rejected() -> None:
    text = chrome_offer(
        "a=ssrc:1001406011 cname:Zb3Qk0p7v1m2n3x4", "a=ssrc:1001406011 cname:Zb\x0cx"
    )

    with pytest.raises(SdpError, match="control character"):
        check_webrtc_offer(parse(text))


def test_video_section_problems_ignored() -> None:
    text = chrome_offer("a=rtpmap:96 VP8/90000", "a=rtpmap:96 H264/90000")
    text = text.replace("a=rtcp-mux\r\na=rtcp-rsize\r\na=rtpmap:96", "a=rtpmap:96")

    check_webrtc_offer(parse(text))


def test_bundle_only_audio_takes_tagged_transport() -> None:
    offer = (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
        "a=group:BUNDLE v a\r\n"
        "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
        "c=IN IP4 192.0.2.44\r\n"
        "a=mid:v\r\na=rtcp-mux\r\na=rtpmap:96 VP8/90000\r\n"
        "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijkl\r\n"
        "a=fingerprint:sha-256 AA:BB\r\na=setup:actpass\r\n"
        "a=candidate:1 1 udp 2122260223 192.0.2.44 46243 typ host\r\n"
        "m=audio 0 UDP/TLS/RTP/SAVPF 111\r\n"
        "a=bundle-only\r\na=mid:a\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n"
    )
    prepared = prepare_webrtc_offer(parse(offer))
    audio = parse(prepared.sdp).media[0]

    assert prepared.audio_index == 1
    assert audio.port == 9
    assert audio.connection is not None
    assert audio.connection.host == "192.0.2.44"
    assert audio.first_value("ice-ufrag") == "abcd"
    assert audio.first_value("setup") == "actpass"
    assert audio.attribute_values("candidate") == ["1 1 udp 2122260223 192.0.2.44 46243 typ host"]
    assert parse(prepared.sdp).attribute_values("group") == ["BUNDLE a"]


def test_telephone_event_added_at_opus_rate() -> None:
    answer = add_telephone_event(aiortc_answer("111", "9", "0", "8"), parse(chrome_offer()))
    audio = parse(answer).media[0]

    assert audio.formats == ("111", "9", "0", "8", "110")
    assert audio.attribute_values("rtpmap")[-1] == "110 telephone-event/48000"
    assert audio.attribute_values("fmtp") == ["110 0-15"]
    assert answer.index("a=fmtp:110 0-15") < answer.index("a=ice-ufrag")


def test_telephone_event_added_at_pcmu_rate() -> None:
    answer = add_telephone_event(aiortc_answer("0", "8"), parse(chrome_offer()))
    audio = parse(answer).media[0]

    assert audio.formats == ("0", "8", "126")
    assert "126 telephone-event/8000" in audio.attribute_values("rtpmap")


def test_answer_without_offered_telephone_event_unchanged() -> None:
    text = chrome_offer("a=rtpmap:110 telephone-event/48000\r\n", "")
    answer = aiortc_answer("111", "0")

    assert add_telephone_event(answer, parse(text)) is answer


def test_answer_with_telephone_event_unchanged() -> None:
    answer = (
        aiortc_answer("111")
        .replace("m=audio 9 UDP/TLS/RTP/SAVPF 111", "m=audio 9 UDP/TLS/RTP/SAVPF 111 110")
        .replace("a=ice-ufrag", "a=rtpmap:110 telephone-event/48000\r\na=ice-ufrag")
    )

    assert add_telephone_event(answer, parse(chrome_offer())) is answer


def test_telephone_event_without_dtmf_events_not_added() -> None:
    text = chrome_offer(
        "a=rtpmap:110 telephone-event/48000\r\n",
        "a=rtpmap:110 telephone-event/48000\r\na=fmtp:110 16\r\n",
    )
    answer = aiortc_answer("111")

    assert add_telephone_event(answer, parse(text)) is answer


def test_completed_answer_rejects_other_sections() -> None:
    offer = parse(chrome_offer())
    answer = parse(complete_webrtc_answer(aiortc_answer("111", "0"), offer))

    assert [(m.media, m.port) for m in answer.media] == [
        ("audio", 9),
        ("video", 0),
        ("application", 0),
    ]
    assert [m.first_value("mid") for m in answer.media] == ["0", "1", "2"]
    assert answer.media[1].formats == ("96", "97", "102", "103")
    assert answer.media[0].formats == ("111", "0", "110")
    assert answer.attribute_values("group") == ["BUNDLE 0"]


def test_completed_answer_drops_unoffered_bundle() -> None:
    offer = parse(load_body("20-alexa-webrtc-offer-static-pt-without-rtpmap.sdp"))
    aiortc = (
        aiortc_answer("0").replace("a=mid:0", "a=mid:audio0").replace("BUNDLE 0", "BUNDLE audio0")
    )
    answer = parse(complete_webrtc_answer(aiortc, offer))

    assert answer.attribute_values("group") == []
    assert [(m.media, m.port) for m in answer.media] == [("audio", 9), ("video", 0)]


def test_completed_answer_needs_audio() -> None:
    offer = parse(chrome_offer())
    answer = aiortc_answer("0").replace("m=audio", "m=video")

    with pytest.raises(SdpError, match="aiortc answer has no audio section"):
        complete_webrtc_answer(answer, offer)


def test_missing_direction_made_explicit() -> None:
    text = chrome_offer("a=sendrecv\r\n", "", count=2)
    audio = parse(prepare_webrtc_offer(parse(text)).sdp).media[0]

    assert audio.direction == "sendrecv"


def test_session_direction_moved_to_audio() -> None:
    text = chrome_offer("a=sendrecv\r\n", "", count=2)
    text = text.replace("a=extmap-allow-mixed\r\n", "a=extmap-allow-mixed\r\na=sendonly\r\n")
    audio = parse(prepare_webrtc_offer(parse(text)).sdp).media[0]

    assert audio.direction == "sendonly"


def test_second_setup_line_checked() -> None:
    text = chrome_offer(
        "a=setup:actpass\r\na=mid:0", "a=setup:actpass\r\na=setup:holdconn\r\na=mid:0"
    )

    with pytest.raises(SdpError, match="audio stream 1: a=setup must be"):
        check_webrtc_offer(parse(text))
