"""Parsing and serializing session descriptions (RFC 8866)."""

from __future__ import annotations

import pytest

from signaling.sdp import (
    Attribute,
    Connection,
    MediaDescription,
    Origin,
    SdpError,
    SdpLimits,
    SessionDescription,
    parse,
)

BASIC = (
    b"v=0\r\n"
    b"o=alice 2890844526 2890844527 IN IP4 192.0.2.10\r\n"
    b"s= \r\n"
    b"i=A call\r\n"
    b"c=IN IP4 192.0.2.10\r\n"
    b"b=AS:64\r\n"
    b"t=0 0\r\n"
    b"a=tool:test\r\n"
    b"m=audio 49170 RTP/AVP 0 8 101\r\n"
    b"c=IN IP4 192.0.2.11\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-15\r\n"
    b"a=ptime:20\r\n"
    b"a=sendonly\r\n"
    b"m=video 0 RTP/AVP 31\r\n"
)


def test_parse_basic_fields() -> None:
    description = parse(BASIC)

    assert description.version == 0
    assert description.origin == Origin(
        "alice", "2890844526", "2890844527", "IN", "IP4", "192.0.2.10"
    )
    assert description.session_name == " "
    assert description.information == "A call"
    assert description.connection == Connection("IN", "IP4", "192.0.2.10")
    assert description.bandwidths == ("AS:64",)
    assert description.attributes == (Attribute("tool", "test"),)
    assert len(description.media) == 2


def test_parse_media_sections() -> None:
    audio, video = parse(BASIC).media

    assert audio.media == "audio"
    assert audio.port == 49170
    assert audio.proto == "RTP/AVP"
    assert audio.formats == ("0", "8", "101")
    assert audio.connection == Connection("IN", "IP4", "192.0.2.11")
    assert audio.attribute_values("rtpmap") == ["0 PCMU/8000", "101 telephone-event/8000"]
    assert audio.direction == "sendonly"
    assert video.port == 0
    assert video.is_rejected
    assert video.formats == ("31",)


def test_round_trip_is_byte_exact() -> None:
    assert parse(BASIC).to_bytes() == BASIC


def test_lf_line_ends_serialize_as_crlf() -> None:
    description = parse(BASIC.replace(b"\r\n", b"\n"))

    assert description.to_bytes() == BASIC


def test_missing_final_line_end_is_accepted() -> None:
    description = parse(BASIC.rstrip(b"\r\n"))

    assert description.to_bytes() == BASIC


def test_session_lines_out_of_order_are_reordered() -> None:
    body = (
        b"v=0\r\ns=-\r\no=- 1 1 IN IP4 192.0.2.1\r\nt=0 0\r\nc=IN IP4 192.0.2.1\r\n"
        b"m=audio 1000 RTP/AVP 0\r\n"
    )
    description = parse(body)

    assert description.to_bytes() == (
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
        b"m=audio 1000 RTP/AVP 0\r\n"
    )


def test_str_body_is_parsed_like_bytes() -> None:
    assert parse(BASIC.decode()) == parse(BASIC)


def test_blank_lines_and_trailing_blanks_are_ignored() -> None:
    body = BASIC.replace(b"a=sendonly\r\n", b"a=sendonly  \r\n\r\n")

    assert parse(body) == parse(BASIC)


def test_repeat_times_attach_to_their_timing() -> None:
    body = (
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\n"
        b"t=3034423619 3042462419\r\nr=604800 3600 0 90000\r\nt=0 0\r\n"
    )
    description = parse(body)

    assert [t.value for t in description.timings] == ["3034423619 3042462419", "0 0"]
    assert description.timings[0].repeats == ("604800 3600 0 90000",)
    assert description.to_bytes() == body


def test_ipv6_connection_and_origin() -> None:
    body = (
        b"v=0\r\no=- 7 7 IN IP6 2001:db8::1\r\ns=-\r\nc=IN IP6 2001:db8::2\r\nt=0 0\r\n"
        b"m=audio 5004 RTP/AVP 0\r\n"
    )
    description = parse(body)

    assert description.connection == Connection("IN", "IP6", "2001:db8::2")
    assert description.origin.addrtype == "IP6"


def test_multicast_suffix_kept_out_of_host() -> None:
    body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 233.252.0.1/127/3\r\nt=0 0\r\n"
    connection = parse(body).connection

    assert connection is not None
    assert connection.address == "233.252.0.1/127/3"
    assert connection.host == "233.252.0.1"


def test_host_name_connection_is_accepted() -> None:
    body = b"v=0\r\no=- 1 1 IN IP4 host.example.com\r\ns=-\r\nc=IN IP4 host.example.com\r\n"
    connection = parse(body).connection

    assert connection is not None
    assert connection.host == "host.example.com"


def test_port_count_round_trips() -> None:
    body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 49170/2 RTP/AVP 0\r\n"
    media = parse(body).media[0]

    assert media.port == 49170
    assert media.port_count == 2
    assert parse(body).to_bytes() == body


def test_built_description_serializes() -> None:
    description = SessionDescription(
        origin=Origin("voxgate", "1", "2", "IN", "IP4", "192.0.2.5"),
        connection=Connection("IN", "IP4", "192.0.2.5"),
        media=(
            MediaDescription("audio", 4000, "RTP/AVP", ("0",), attributes=(Attribute("sendrecv"),)),
        ),
    )

    assert description.to_bytes() == (
        b"v=0\r\no=voxgate 1 2 IN IP4 192.0.2.5\r\ns=-\r\nc=IN IP4 192.0.2.5\r\nt=0 0\r\n"
        b"m=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n"
    )
    assert parse(description.to_bytes()) == description


HEAD = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n"

INVALID = [
    ("", None, "empty"),
    ("\r\n\r\n", None, "empty"),
    ("o=- 1 1 IN IP4 192.0.2.1\r\n", 1, "does not start with v="),
    ("v=1\r\n", 1, "unsupported SDP version"),
    ("v=0\r\ns=-\r\n", None, "missing o="),
    ("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n", None, "missing s="),
    ("v=0\r\no=- 1 1 IN IP4\r\ns=-\r\n", 2, "invalid o= line"),
    (HEAD + "x=1\r\n", 5, "unknown line type"),
    (HEAD + "garbage\r\n", 5, "not of the form"),
    (HEAD + "c=IN IP4\r\n", 5, "invalid c= line"),
    (HEAD + "c=IN IP4 2001:db8::1\r\n", 5, "does not match address type IP4"),
    (HEAD + "c=IN IP6 192.0.2.1\r\n", 5, "does not match address type IP6"),
    (HEAD + "c=IN IP4 999.1.1.1\r\n", 5, "not a valid IP4 address"),
    (HEAD + "c=IN IP4 192.0.2.1\r\nc=IN IP4 192.0.2.2\r\n", 6, "duplicate c="),
    (HEAD + "v=0\r\n", 5, "duplicate v="),
    ("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nr=1 1 0\r\n", 4, "r= line without"),
    (HEAD + "m=audio 1000 RTP/AVP\r\n", 5, "invalid m= line"),
    (HEAD + "m=audio 70000 RTP/AVP 0\r\n", 5, "port is not a number"),
    (HEAD + "m=audio -1 RTP/AVP 0\r\n", 5, "port is not a number"),
    (HEAD + "m=audio 1000/0 RTP/AVP 0\r\n", 5, "port count is 0"),
    (HEAD + "m=audio  1000 RTP/AVP 0\r\n", 5, "invalid m= line"),
    (HEAD + "m=audio 1000 RTP/AVP 0\r\nt=0 0\r\n", 6, "not allowed in a media section"),
    (HEAD + "m=audio 1000 RTP/AVP 0\r\ni=a\r\ni=b\r\n", 7, "duplicate i="),
    (HEAD + "m=audio 1000 RTP/AVP 96\r\na=rtpmap:96 opus\r\n", 6, "invalid a=rtpmap"),
    (HEAD + "m=audio 1000 RTP/AVP 96\r\na=rtpmap:300 X/8000\r\n", 6, "outside 0-127"),
    (HEAD + "m=audio 1000 RTP/AVP 96\r\na=rtpmap:96 X/0\r\n", 6, "clock rate is 0"),
    (HEAD + "m=audio 1000 RTP/AVP 96\r\na=fmtp: 0-15\r\n", 6, "invalid a=fmtp"),
    (HEAD + "m=audio 1000 RTP/AVP 0\r\na=ptime:abc\r\n", 6, "a=ptime is not"),
    (HEAD + "m=audio 1000 RTP/AVP 0\r\na=ptime:0\r\n", 6, "a=ptime is not"),
    (HEAD + "a=\r\n", 5, "invalid attribute name"),
    (HEAD + "a=bad name\r\n", 5, "invalid attribute name"),
    (HEAD + "a=x\0y\r\n", 5, "NUL"),
    (HEAD + "a=x\ry\r\n", 5, "CR"),
]


@pytest.mark.parametrize(("body", "line_number", "fragment"), INVALID)
def test_invalid_body_raises_sdp_error(body: str, line_number: int | None, fragment: str) -> None:
    with pytest.raises(SdpError) as caught:
        parse(body.encode())

    assert caught.value.line_number == line_number
    assert fragment in str(caught.value)
    if line_number is not None:
        assert str(caught.value).startswith(f"line {line_number}: ")


def test_invalid_utf8_names_its_line() -> None:
    with pytest.raises(SdpError, match=r"^line 3: line is not valid UTF-8$"):
        parse(b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=\xff\r\n")


def test_body_size_limit() -> None:
    body = HEAD.encode() + b"a=x:" + b"y" * 200 + b"\r\n"

    with pytest.raises(SdpError, match="larger than 100 bytes"):
        parse(body, limits=SdpLimits(max_body_bytes=100))
    with pytest.raises(SdpError, match="larger than 100 bytes"):
        parse(body.decode(), limits=SdpLimits(max_body_bytes=100))


def test_line_count_limit() -> None:
    body = HEAD + "a=x\r\n" * 10

    assert len(parse(body, limits=SdpLimits(max_lines=14)).attributes) == 10
    assert len(parse(body.rstrip(), limits=SdpLimits(max_lines=14)).attributes) == 10
    with pytest.raises(SdpError, match="more than 13 lines"):
        parse(body, limits=SdpLimits(max_lines=13))
    with pytest.raises(SdpError, match="more than 13 lines"):
        parse(body.rstrip(), limits=SdpLimits(max_lines=13))


def test_media_section_limit() -> None:
    body = HEAD + "m=audio 0 RTP/AVP 0\r\n" * 3

    assert len(parse(body, limits=SdpLimits(max_media=3)).media) == 3
    with pytest.raises(SdpError, match=r"^line 7: more than 2 media sections$"):
        parse(body, limits=SdpLimits(max_media=2))


def test_default_limits_reject_oversized_body() -> None:
    body = HEAD + "a=x:" + "y" * 70000 + "\r\n"

    with pytest.raises(SdpError, match="larger than 65536 bytes"):
        parse(body)


def test_str_with_lone_surrogate_rejected() -> None:
    with pytest.raises(SdpError, match=r"^line 5: line is not valid UTF-8$"):
        parse(HEAD + "a=x:\ud800\r\n")


def test_str_limit_counts_utf8_bytes() -> None:
    body = HEAD + "a=x:" + "é" * 60 + "\r\n"

    assert len(body) < 160 < len(body.encode())
    with pytest.raises(SdpError, match="larger than 160 bytes"):
        parse(body, limits=SdpLimits(max_body_bytes=160))


def test_invalid_body_raises_every_time() -> None:
    body = BASIC.replace(b"m=video 0", b"m=video x")
    for _ in range(2):
        with pytest.raises(SdpError, match="m= port"):
            parse(body)


def test_repeated_body_parses_equal_each_time() -> None:
    first = parse(BASIC)

    again = parse(bytes(bytearray(BASIC)))
    # A caller without type checks may pass a bytearray, which cannot be a cache key.
    from_bytearray = parse(bytearray(BASIC))  # type: ignore[arg-type]
    from_text = parse(BASIC.decode())

    assert again == first
    assert from_bytearray == first
    assert from_text == first
    assert again == parse(BASIC, limits=SdpLimits())


def test_known_shape_takes_new_origin_and_ports() -> None:
    parse(BASIC)
    body = BASIC.replace(b"alice 2890844526 2890844527", b"bob 7 8").replace(b"49170", b"5004")

    parsed = parse(body)

    assert parsed == parse(body, limits=SdpLimits())
    assert parsed.origin == Origin("bob", "7", "8", "IN", "IP4", "192.0.2.10")
    assert [media.port for media in parsed.media] == [5004, 0]
    assert parsed.to_bytes() == body


def test_known_shape_with_invalid_fields_raises() -> None:
    parse(BASIC)
    cases = [
        (BASIC.replace(b"49170", b"65536"), "line 9: m= port is not a number in 0-65535"),
        (BASIC.replace(b"m=video 0", b"m=video 0x"), "line 16: m= port is not a number in 0-65535"),
        (BASIC.replace(b"alice ", b""), "line 2: invalid o= line"),
        (BASIC.replace(b"192.0.2.10\r\ns=", b"192.0.2.10\r\r\ns="), "line 2: line contains a CR"),
    ]
    for body, message in cases:
        with pytest.raises(SdpError) as caught:
            parse(body)

        assert str(caught.value).startswith(message)
