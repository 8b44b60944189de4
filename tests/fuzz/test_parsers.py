"""Feed every protocol parser FUZZ_INPUTS mutated inputs (100,000 by default).

Each parser may reject an input only with its documented error type; any
other exception fails the test with the input index, so `FUZZ_SEED` and
the index rebuild it. `FUZZ_INPUTS=1000000` runs longer.
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

from media.rfc4733 import TelephoneEvent
from media.rtp import RtpPacket
from signaling import sdp
from signaling.sip.auth import parse_digest
from signaling.sip.errors import SipSyntaxError
from signaling.sip.parser import parse_datagram
from signaling.webrtc.protocol import ProtocolError, parse_message
from tests.fuzz.mutate import INPUTS, SEED, inputs

# Each test runs with the C fast path of SIP parsing and with the Python reference alone.
pytestmark = pytest.mark.usefixtures("sip_parser")

DATA = Path(__file__).resolve().parents[1] / "data"


def corpus(*patterns: str) -> list[bytes]:
    found = [path.read_bytes() for pattern in patterns for path in sorted(DATA.glob(pattern))]
    assert found, f"no corpus files match {patterns}"
    return found


def sip_corpus() -> list[bytes]:
    return corpus("sip/rfc4475/*.dat", "sip/field/*.sip")


def sdp_corpus() -> list[bytes]:
    return corpus("sdp/*.sdp", "webrtc/*.sdp")


DIGEST_CORPUS = [
    b'Digest username="alice", realm="voxgate", nonce="6571a2b0.0123456789abcdef.ff", '
    b'uri="sip:100@127.0.0.1", response="0123456789abcdef0123456789abcdef", algorithm=MD5, '
    b'qop=auth, nc=00000001, cnonce="xyz"',
    b'Digest realm="voxgate", nonce="abc", algorithm=SHA-256, qop="auth", stale=true',
    b'Digest username="a\\"b",realm="r",nonce="n",uri="sip:x;transport=UDP",response="r"',
]

SIGNALING_CORPUS = [
    b'{"type": "login", "token": "abc.def.ghi"}',
    b'{"type": "call", "call_id": "c1", "to": "1000", "sdp": "v=0\\r\\n"}',
    b'{"type": "candidate", "call_id": "c1", '
    b'"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"}',
    b'{"type": "dtmf", "call_id": "c1", "digits": "12#"}',
    b'{"type": "agent_state", "state": "away", "reason": "lunch"}',
    b'{"type": "transfer", "call_id": "c1", "kind": "queue", "target": "support"}',
]

RTP_CORPUS = [
    bytes.fromhex("80000001000000a012345678") + b"\xff" * 160,
    bytes.fromhex("80e51f40000033e0deadbeef") + bytes.fromhex("018a08c0"),
    bytes.fromhex("90000002000000a012345678bede000110ff0000") + b"\xd5" * 160,
    bytes.fromhex("a0080003000001401234567800000000") + b"\x55" * 3 + b"\x04",
]


def parse_sip(data: bytes) -> None:
    with contextlib.suppress(SipSyntaxError):
        parse_datagram(data)


def parse_and_answer_sdp(data: bytes) -> None:
    try:
        offer = sdp.parse(data)
        sdp.answer_audio(
            offer,
            (sdp.PCMU, sdp.PCMA),
            local_host="127.0.0.1",
            local_port=20000,
            session_id=1,
            session_version=1,
        )
    except sdp.SdpError:
        pass


def parse_digest_header(data: bytes) -> None:
    with contextlib.suppress(SipSyntaxError):
        parse_digest(data.decode("utf-8", "replace"))


def parse_signaling(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        parse_message(data)


def parse_rtp(data: bytes) -> None:
    try:
        packet = RtpPacket.parse(data)
    except ValueError:
        return
    with contextlib.suppress(ValueError):
        TelephoneEvent.parse(packet.payload)


CASES: dict[str, tuple[Callable[[bytes], None], Callable[[], list[bytes]]]] = {
    "sip-message": (parse_sip, sip_corpus),
    "sdp-offer-answer": (parse_and_answer_sdp, sdp_corpus),
    "digest-header": (parse_digest_header, lambda: DIGEST_CORPUS),
    "signaling-json": (parse_signaling, lambda: SIGNALING_CORPUS),
    "rtp-and-rfc4733": (parse_rtp, lambda: RTP_CORPUS),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_parser_survives_mutations(name: str) -> None:
    parse, seeds = CASES[name]
    for index, data in enumerate(inputs(seeds())):
        try:
            parse(data)
        except Exception:
            pytest.fail(
                f"{name}: input {index} of {INPUTS} (FUZZ_SEED={SEED}) raised:\n"
                f"{traceback.format_exc()}\ninput: {data!r}"
            )
