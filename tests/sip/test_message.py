"""Unit tests of response building (`build_response`) and its wire form (no I/O)."""

from __future__ import annotations

import pytest

from signaling.sip.message import SipRequest, build_response, python_to_bytes, to_bytes
from signaling.sip.parser import InvalidRequest, parse_datagram, salvage_request

# Each test runs with the C fast path of SIP parsing and with the Python reference alone.
pytestmark = pytest.mark.usefixtures("sip_parser")


def invite(to: str = "To: <sip:1000@127.0.0.1>", extra: str = "") -> bytes:
    return (
        "INVITE sip:1000@127.0.0.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1, SIP/2.0/TCP p.example.com\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-2\r\n"
        'f: "Bench" <sip:bench@127.0.0.1:5070>;tag=a1\r\n'
        f"{to}\r\n"
        "i: 1-2@127.0.0.1\r\n"
        "CSeq: 1 INVITE\r\n"
        "Max-Forwards: 70\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def to_values(request: SipRequest, status: int, to_tag: str | None) -> list[str]:
    return build_response(request, status, to_tag=to_tag).headers.raw("To")


def test_response_wire_form() -> None:
    request = parse_datagram(invite())
    assert isinstance(request, SipRequest)

    response = build_response(
        request,
        200,
        to_tag="t1",
        headers=[("Contact", "<sip:127.0.0.1>"), ("server", "VoxGate")],
        body=b"v=0\r\n",
        content_type="application/sdp",
    )

    assert to_bytes(response) == (
        b"SIP/2.0 200 OK\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1, SIP/2.0/TCP p.example.com\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-2\r\n"
        b'From: "Bench" <sip:bench@127.0.0.1:5070>;tag=a1\r\n'
        b"To: <sip:1000@127.0.0.1>;tag=t1\r\n"
        b"Call-ID: 1-2@127.0.0.1\r\n"
        b"CSeq: 1 INVITE\r\n"
        b"Contact: <sip:127.0.0.1>\r\n"
        b"Server: VoxGate\r\n"
        b"Content-Type: application/sdp\r\n"
        b"Content-Length: 5\r\n"
        b"\r\n"
        b"v=0\r\n"
    )
    assert to_bytes(response) == python_to_bytes(response)


def test_response_reason_phrases() -> None:
    request = parse_datagram(invite())
    assert isinstance(request, SipRequest)

    assert build_response(request, 486).reason == "Busy Here"
    assert build_response(request, 499).reason == "Unknown"
    assert build_response(request, 486, "Agent Busy").reason == "Agent Busy"


def test_to_tag_added_only_when_missing() -> None:
    request = parse_datagram(invite())
    tagged = parse_datagram(invite(to="To: <sip:1000@127.0.0.1>;tag=old"))
    assert isinstance(request, SipRequest) and isinstance(tagged, SipRequest)

    assert to_values(request, 180, "t1") == ["<sip:1000@127.0.0.1>;tag=t1"]
    assert to_values(request, 100, "t1") == ["<sip:1000@127.0.0.1>"]
    assert to_values(request, 200, None) == ["<sip:1000@127.0.0.1>"]
    assert to_values(tagged, 200, "t1") == ["<sip:1000@127.0.0.1>;tag=old"]


def test_to_tag_flag_counts_as_tag() -> None:
    request = parse_datagram(invite(to="To: <sip:1000@127.0.0.1>;tag"))
    assert isinstance(request, SipRequest)

    assert to_values(request, 200, "t1") == ["<sip:1000@127.0.0.1>;tag"]


def test_to_tag_after_quoted_angle_bracket() -> None:
    # The tag follows a quoted parameter value that contains '>', so the parsed To
    # decides, not a search for the last '>' in the raw value.
    to = 'To: <sip:1000@127.0.0.1>;x="a>b";tag=old'
    request = parse_datagram(invite(to=to))
    assert isinstance(request, SipRequest)

    assert to_values(request, 200, "t1") == ['<sip:1000@127.0.0.1>;x="a>b";tag=old']


def test_to_tag_on_invalid_request() -> None:
    # Two To headers fail validation, so each raw To field is checked for a tag.
    data = invite(to="To: <sip:1000@127.0.0.1>;tag=old\r\nt: sip:1000@127.0.0.1")
    with pytest.raises(InvalidRequest) as caught:
        parse_datagram(data)
    request = caught.value.request
    assert request.info is None

    assert to_values(request, 400, "t1") == [
        "<sip:1000@127.0.0.1>;tag=old",
        "sip:1000@127.0.0.1;tag=t1",
    ]


def test_to_tag_on_salvaged_request() -> None:
    request = salvage_request(invite(to="To: sip:1000@127.0.0.1;user=phone"))
    assert request is not None

    assert to_values(request, 400, "t1") == ["sip:1000@127.0.0.1;user=phone;tag=t1"]
    assert python_to_bytes(build_response(request, 400, to_tag="t1")).startswith(
        b"SIP/2.0 400 Bad Request\r\nVia: "
    )
