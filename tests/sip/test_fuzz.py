"""Property tests: the SIP parsers and the UA core never fail on arbitrary input.

The datagram parser test runs `SIP_FUZZ_EXAMPLES` examples (default 3000)
and the others a third of that; set the environment variable higher for a
longer run.
"""

from __future__ import annotations

import contextlib
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signaling.sip.auth import parse_digest
from signaling.sip.core import CoreConfig, UserAgent
from signaling.sip.errors import SipSyntaxError
from signaling.sip.message import SipMessage, sdp_body, to_bytes
from signaling.sip.parser import StreamParser, parse_datagram
from signaling.sip.routing import Peer
from tests.sip.support import DATA, OFFER_SDP, sip_request

# Each test runs with the C fast path of SIP parsing and with the Python reference alone.
pytestmark = pytest.mark.usefixtures("sip_parser")

EXAMPLES = int(os.environ.get("SIP_FUZZ_EXAMPLES", "3000"))
HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large]
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=HEALTH)
FUZZ_SHORT = settings(max_examples=EXAMPLES // 3, deadline=None, suppress_health_check=HEALTH)

SEEDS = [path.read_bytes() for path in sorted((DATA / "rfc4475").glob("*.dat"))] + [
    sip_request("INVITE", body=OFFER_SDP),
    sip_request("OPTIONS"),
]

HEADER_NAMES = ["Via", "v", "From", "f", "To", "t", "Call-ID", "i", "CSeq", "Contact", "m",
                "Content-Length", "l", "Content-Type", "c", "Max-Forwards", "Require", "Accept",
                "Session-Expires", "Authorization", "Record-Route", "X-Custom"]  # fmt: skip
VALUE_ALPHABET = st.sampled_from([*'abc0129 \t;,=:<>"\\@[]/.%-+*?&', "\r\n ", "\r\n"])
START_LINES = ["INVITE sip:a@b SIP/2.0", "OPTIONS sip:x SIP/2.0", "SIP/2.0 200 OK"]


@st.composite
def mutated_seed(draw: st.DrawFn) -> bytes:
    """Take a valid or torture message and flip, cut, insert or duplicate bytes."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        action = draw(st.sampled_from(["flip", "cut", "insert", "duplicate"]))
        position = draw(st.integers(0, max(0, len(data) - 1)))
        if action == "flip" and data:
            data[position] = draw(st.integers(0, 255))
        elif action == "cut":
            del data[position : position + draw(st.integers(1, 40))]
        elif action == "insert":
            data[position:position] = draw(st.binary(max_size=20))
        else:
            data[position:position] = data[position : position + draw(st.integers(1, 60))]
    return bytes(data)


@st.composite
def header_soup(draw: st.DrawFn) -> bytes:
    """Build a request from random header names and values of SIP-ish characters."""
    lines = [
        draw(st.sampled_from(["INVITE sip:a@b SIP/2.0", "OPTIONS sip:x SIP/2.0", "SIP/2.0 200 OK"]))
    ]
    for _ in range(draw(st.integers(0, 15))):
        name = draw(st.sampled_from(HEADER_NAMES))
        value = "".join(draw(st.lists(VALUE_ALPHABET, max_size=30)))
        lines.append(f"{name}: {value}")
    body = draw(st.binary(max_size=40))
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


INPUTS = st.one_of(mutated_seed(), header_soup(), st.binary(max_size=300))


@FUZZ
@given(INPUTS)
def test_parse_datagram_never_crashes(data: bytes) -> None:
    try:
        message = parse_datagram(data)
    except SipSyntaxError as error:
        assert error.reason
        assert 400 <= error.status <= 599
        return
    again = parse_datagram(to_bytes(message))
    assert type(again) is type(message)
    with contextlib.suppress(SipSyntaxError):
        sdp_body(message.headers.get("Content-Type"), message.body)


def summary(items: list[SipMessage | SipSyntaxError]) -> list[str]:
    return [
        item.reason if isinstance(item, SipSyntaxError) else item.start_line() for item in items
    ]


@FUZZ_SHORT
@given(INPUTS, st.lists(st.integers(1, 50), max_size=8))
def test_stream_parser_chunking_is_invisible(data: bytes, cuts: list[int]) -> None:
    whole = StreamParser().feed(data)
    parser = StreamParser()
    chunked: list[SipMessage | SipSyntaxError] = []
    position = 0
    for size in [*cuts, len(data)]:
        chunked += parser.feed(data[position : position + size])
        position += size

    assert summary(chunked) == summary(whole)


@FUZZ_SHORT
@given(st.lists(INPUTS, min_size=1, max_size=4))
def test_core_receive_never_raises(datagrams: list[bytes]) -> None:
    core = UserAgent(CoreConfig(force_rport=True))
    peer = Peer("udp", "127.0.0.1", 5070)
    for index, data in enumerate(datagrams):
        core.receive(data, peer, 1000.0 + index)
        for outgoing in core.take_outgoing():
            assert outgoing.peer.host == "127.0.0.1"
            assert outgoing.data.startswith(b"SIP/2.0 ")
    core.tick(2000.0)


DIGEST_ALPHABET = st.sampled_from([*'Digest username=realm"nonce,\\ \t=abc012', "uri=", "qop="])


@FUZZ_SHORT
@given(st.one_of(st.text(max_size=200), st.lists(DIGEST_ALPHABET, max_size=60).map("".join)))
def test_parse_digest_never_crashes(value: str) -> None:
    try:
        credentials = parse_digest(value)
    except SipSyntaxError as error:
        assert error.reason
        return
    assert credentials.scheme
    assert all(name == name.lower() for name in credentials.params)
