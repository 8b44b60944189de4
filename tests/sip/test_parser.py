"""Unit tests of SIP message parsing, framing and serialization (no I/O)."""

from __future__ import annotations

import pytest

from signaling.sip.errors import FramingError, SipSyntaxError
from signaling.sip.headers import parse_name_addr, parse_params, parse_via, split_list
from signaling.sip.message import SipRequest, SipResponse, multipart_parts, sdp_body, to_bytes
from signaling.sip.parser import (
    InvalidRequest,
    Limits,
    StreamParser,
    parse_datagram,
    salvage_request,
)
from signaling.sip.uri import parse_sip_uri

# Each test runs with the C fast path of SIP parsing and with the Python reference alone.
pytestmark = pytest.mark.usefixtures("sip_parser")

OPTIONS = (
    b"OPTIONS sip:service@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\n"
    b"From: <sip:a@127.0.0.1>;tag=1\r\n"
    b"To: <sip:service@127.0.0.1>\r\n"
    b"Call-ID: abc@127.0.0.1\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Max-Forwards: 70\r\n"
)


def request_with(extra: bytes = b"", body: bytes = b"", length: bytes | None = None) -> bytes:
    head = OPTIONS + extra
    if length is not None:
        head += b"Content-Length: " + length + b"\r\n"
    return head + b"\r\n" + body


def test_parse_valid_options() -> None:
    message = parse_datagram(request_with(length=b"0"))

    assert isinstance(message, SipRequest)
    assert message.method == "OPTIONS"
    assert message.parsed.call_id == "abc@127.0.0.1"
    assert message.parsed.cseq.number == 1
    assert message.parsed.from_.tag == "1"
    assert message.parsed.to.tag is None
    assert message.parsed.top_via.branch == "z9hG4bK-1"


def test_compact_forms_become_long_names() -> None:
    data = (
        b"INVITE sip:x@127.0.0.1 SIP/2.0\r\nv: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKa\r\n"
        b"f: <sip:a@h>;tag=1\r\nt: <sip:x@h>\r\ni: id1\r\nCSeq: 1 INVITE\r\n"
        b"m: <sip:a@127.0.0.1>\r\nk: timer\r\nc: application/sdp\r\nl: 3\r\n\r\nv=0"
    )
    message = parse_datagram(data)

    assert message.headers.get("Call-ID") == "id1"
    assert message.headers.get("Supported") == "timer"
    assert message.headers.get("Content-Type") == "application/sdp"
    assert message.body == b"v=0"


def test_folded_header_is_unfolded() -> None:
    message = parse_datagram(request_with(b"Subject: first\r\n  second\r\n", length=b"0"))

    assert message.headers.get("Subject") == "first second"


def test_repeated_and_comma_headers_merge() -> None:
    message = parse_datagram(
        request_with(b"Supported: timer, replaces\r\nSupported: path\r\n", length=b"0")
    )

    assert message.headers.get_list("Supported") == ["timer", "replaces", "path"]


def test_split_list_respects_quotes_and_brackets() -> None:
    value = '"Doe, John" <sip:j@h;a=1,2>, <sip:k@h>'

    assert split_list(value) == ['"Doe, John" <sip:j@h;a=1,2>', "<sip:k@h>"]


def test_quoted_display_name_escapes() -> None:
    address = parse_name_addr('"J \\"Q\\" \\\\ R" <sip:j@example.com>;tag=9')

    assert address.display_name == 'J "Q" \\ R'
    assert address.tag == "9"


def test_ipv6_references() -> None:
    uri = parse_sip_uri("sip:user@[2001:db8::10]:5070;transport=tcp")
    via = parse_via("SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bKx;rport")

    assert uri.host == "[2001:db8::10]"
    assert uri.bare_host == "2001:db8::10"
    assert uri.port == 5070
    assert uri.transport == "tcp"
    assert via.host == "[2001:db8::1]"
    assert via.params["rport"] is None


def test_invalid_ipv6_reference_rejected() -> None:
    with pytest.raises(SipSyntaxError, match="IPv6"):
        parse_sip_uri("sip:user@[2001:db8::zz]")


def test_addr_spec_params_belong_to_header() -> None:
    plain = parse_name_addr("sip:+15550100001@example.com;unknownparam")
    bracketed = parse_name_addr("<sip:+15550100001@example.com;unknownparam>")

    assert plain.params == {"unknownparam": None}
    assert plain.uri is not None and plain.uri.params == {}
    assert bracketed.params == {}
    assert bracketed.uri is not None and bracketed.uri.params == {"unknownparam": None}


def test_datagram_without_content_length_takes_rest() -> None:
    message = parse_datagram(request_with(body=b"hello"))

    assert message.body == b"hello"


def test_datagram_extra_bytes_after_content_length_dropped() -> None:
    message = parse_datagram(request_with(body=b"hello world", length=b"5"))

    assert message.body == b"hello"


def test_datagram_content_length_past_end_rejected() -> None:
    with pytest.raises(InvalidRequest, match="Content-Length 50 exceeds the 5 body bytes"):
        parse_datagram(request_with(body=b"hello", length=b"50"))


@pytest.mark.parametrize("value", [b"-1", b"abc", b"1.5", b"\xd9\xa3"])
def test_invalid_content_length_rejected(value: bytes) -> None:
    with pytest.raises(SipSyntaxError, match=r"Content-Length|UTF-8"):
        parse_datagram(request_with(length=value))


def test_duplicate_content_length_rejected() -> None:
    with pytest.raises(SipSyntaxError, match="more than one Content-Length"):
        parse_datagram(request_with(b"Content-Length: 0\r\n", length=b"0"))


@pytest.mark.parametrize(
    ("limits", "data", "message"),
    [
        (Limits(max_message_bytes=100), b"x" * 101, "max_message_bytes=100"),
        (
            Limits(max_line_bytes=64),
            request_with(b"Subject: " + b"a" * 80 + b"\r\n"),
            "max_line_bytes=64",
        ),
        (Limits(max_headers=3), request_with(), "max_headers=3"),
        (Limits(max_header_bytes=50), request_with(), "max_header_bytes=50"),
        (Limits(max_body_bytes=4), request_with(body=b"hello", length=b"5"), "max_body_bytes=4"),
    ],
)
def test_limits_named_in_error(limits: Limits, data: bytes, message: str) -> None:
    with pytest.raises(SipSyntaxError, match=message):
        parse_datagram(data, limits)


def test_bad_request_line_still_yields_headers() -> None:
    data = request_with(length=b"0").replace(b"OPTIONS sip", b"OPTIONS  sip", 1)

    with pytest.raises(InvalidRequest) as caught:
        parse_datagram(data)

    assert "Request-Line" in caught.value.reason
    assert caught.value.request.headers.get("Call-ID") == "abc@127.0.0.1"


def test_salvage_request_keeps_routing_headers() -> None:
    data = request_with(b"Bad Header Line\r\n", length=b"0")

    request = salvage_request(data)

    assert request is not None
    assert request.headers.get("Via") == "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1"
    assert request.headers.get("CSeq") == "1 OPTIONS"


def test_response_parses() -> None:
    data = (
        b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKa\r\n"
        b"From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    message = parse_datagram(data)

    assert isinstance(message, SipResponse)
    assert message.status == 180
    assert message.reason == "Ringing"


def test_serialize_round_trip() -> None:
    message = parse_datagram(request_with(body=b"hi", length=b"2"))

    again = parse_datagram(to_bytes(message))

    assert isinstance(again, SipRequest)
    assert isinstance(message, SipRequest)
    assert again.method == message.method
    assert list(again.headers) == list(message.headers)
    assert again.body == b"hi"


MULTIPART = (
    b"--b1\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
    b"--b1\r\nContent-Type: application/sdp\r\n\r\nv=0\r\ns=-\r\n\r\n--b1--\r\n"
)


def test_multipart_sdp_part_found() -> None:
    content_type = 'multipart/mixed;boundary="b1"'

    parts = multipart_parts(content_type, MULTIPART)

    assert [part_type for part_type, _ in parts] == ["text/plain", "application/sdp"]
    assert sdp_body(content_type, MULTIPART) == b"v=0\r\ns=-\r\n"


def test_multipart_without_boundary_rejected() -> None:
    with pytest.raises(SipSyntaxError, match="boundary"):
        sdp_body("multipart/mixed", MULTIPART)


def test_stream_parser_splits_and_joins() -> None:
    first = request_with(body=b"ab", length=b"2")
    second = request_with(length=b"0")
    stream = first + second
    parser = StreamParser()

    results = parser.feed(stream[:10]) + parser.feed(stream[10:-5]) + parser.feed(stream[-5:])

    assert [type(item) for item in results] == [SipRequest, SipRequest]
    assert isinstance(results[0], SipRequest)
    assert results[0].body == b"ab"


def test_stream_parser_requires_content_length() -> None:
    parser = StreamParser()

    results = parser.feed(request_with())

    assert isinstance(results[-1], FramingError)
    assert "missing Content-Length" in results[-1].reason
    assert isinstance(results[-1].request, SipRequest)
    assert parser.broken


def test_stream_parser_rejects_huge_content_length() -> None:
    results = StreamParser().feed(request_with(length=b"4294967295"))

    assert isinstance(results[-1], FramingError)
    assert "max_body_bytes" in results[-1].reason


def test_stream_parser_keeps_messages_before_garbage() -> None:
    parser = StreamParser()

    results = parser.feed(request_with(length=b"0") + b"garbage line\r\n\r\n")

    assert isinstance(results[0], SipRequest)
    assert isinstance(results[1], FramingError)
    assert parser.feed(request_with(length=b"0")) == []


def test_stream_parser_bad_start_line_keeps_stream() -> None:
    bad = request_with(length=b"0").replace(b"OPTIONS sip", b"OPTIONS  sip", 1)

    results = StreamParser().feed(bad + request_with(length=b"0"))

    assert isinstance(results[0], InvalidRequest)
    assert isinstance(results[1], SipRequest)


def test_stream_parser_keeps_going_after_invalid_request() -> None:
    bad = request_with(length=b"0").replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INVITE")
    good = request_with(length=b"0")

    results = StreamParser().feed(bad + good)

    assert isinstance(results[0], InvalidRequest)
    assert "CSeq method" in results[0].reason
    assert isinstance(results[1], SipRequest)


def test_oversized_datagram_salvaged_for_513() -> None:
    data = request_with(b"Subject: " + b"a" * 200 + b"\r\n", length=b"0")
    limits = Limits(max_message_bytes=200)

    with pytest.raises(SipSyntaxError) as caught:
        parse_datagram(data, limits)
    request = salvage_request(data, limits)

    assert caught.value.status == 513
    assert request is not None
    assert request.headers.get("Call-ID") == "abc@127.0.0.1"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        (";tag=abc", {"tag": "abc"}),
        (";branch=z9hG4bK-1;rport", {"branch": "z9hG4bK-1", "rport": None}),
        (";Tag=1;TAG=2", {"tag": "2"}),
        (";maddr=[::1]", {"maddr": "[::1]"}),
        # Whitespace and quoted strings take the character loop, with the same results.
        (" ; tag = abc ; lr", {"tag": "abc", "lr": None}),
        (';tag="a b"', {"tag": "a b"}),
        (";Tag=1 ;TAG=2", {"tag": "2"}),
    ],
)
def test_parse_params_values(text: str, expected: dict[str, str | None]) -> None:
    params = parse_params(text)

    assert params == expected
    assert list(params) == list(expected)


@pytest.mark.parametrize("text", [";", ";tag=", ";=abc", "tag=abc", ";tag=a,b", ';tag="open'])
def test_parse_params_rejects_invalid(text: str) -> None:
    with pytest.raises(SipSyntaxError):
        parse_params(text)
