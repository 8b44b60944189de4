"""SIP messages seen in the field: each test states what a correct UAS does."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest
import yaml

from signaling.sip.auth import parse_digest
from signaling.sip.core import CoreConfig
from signaling.sip.endpoint import SipConfig, SipEndpoint
from signaling.sip.events import ReofferReceived
from signaling.sip.message import SipRequest, SipResponse
from signaling.sip.parser import parse_datagram
from signaling.sip.routing import Peer
from tests.sip.support import (
    ANSWER_SDP,
    DATA,
    CoreHarness,
    ScriptedHandler,
    UdpPeer,
    open_udp_peer,
    read_stream_message,
    responses,
    statuses,
)

FIELD = DATA / "field"


def load(name: str) -> bytes:
    return next(FIELD.glob(f"{name}-*")).read_bytes()


def harness() -> CoreHarness:
    # The messages name 192.0.2.x peers; force_rport keeps replies on the test peer.
    return CoreHarness(CoreConfig(force_rport=True), Peer("udp", "192.0.2.80", 5060))


def test_01_compact_headers_offer_accepted() -> None:
    test = harness()
    data = load("01")

    sent = test.feed(data)

    assert statuses(sent) == [100]
    session = test.offered()[0].session
    assert session.remote_sdp == data.split(b"\r\n\r\n", 1)[1]
    assert session.invite.parsed.call_id == "4f2c1e0a-compact@192.0.2.80"
    assert session.invite.headers.get_list("Supported") == ["timer", "replaces"]


def test_03_folded_www_authenticate_parsed() -> None:
    message = parse_datagram(load("03"))

    assert isinstance(message, SipResponse)
    challenge = parse_digest(message.headers.get("WWW-Authenticate") or "")
    assert challenge.scheme == "Digest"
    assert challenge.params == {
        "realm": "example.com",
        "nonce": "2dKTzX37hxIvBkoFXv8/PA==",
        "algorithm": "MD5",
        "qop": "auth",
    }


def test_04_invite_without_sdp_is_delayed_offer() -> None:
    test = harness()
    test.feed(load("04"))
    session = test.offered()[0].session

    sent = responses(test.run(lambda core, now: core.answer(session.handle, ANSWER_SDP, now)))

    assert session.remote_sdp is None
    assert sent[0].status == 200
    assert sent[0].body == ANSWER_SDP
    assert sent[0].headers.get("Session-Expires") == "1800;refresher=uac"
    assert "timer" in sent[0].headers.get_list("Require")


def test_05_two_vias_and_record_route_kept() -> None:
    test = harness()
    test.feed(load("05"))
    handle = test.offered()[0].session.handle

    ok = responses(test.run(lambda core, now: core.answer(handle, ANSWER_SDP, now)))[0]
    tag = ok.parsed.to.tag
    ack = load("05").split(b"\r\n\r\n")[0].replace(b"INVITE sip:", b"ACK sip:", 1)
    ack = ack.replace(b"CSeq: 102 INVITE", b"CSeq: 102 ACK")
    ack = ack.replace(b"To: <sip:+15550100010@0.0.0.0>", f"To: <sip:x@0.0.0.0>;tag={tag}".encode())
    ack = re.sub(rb"Content-(Type|Length): [^\r]*\r\n", b"", ack + b"\r\n") + b"\r\n"
    test.feed(ack.replace(b"Content-Length: 194", b"Content-Length: 0"))
    sent = test.run(lambda core, now: core.hangup(handle, now))

    assert [via.branch for via in ok.parsed.vias] == ["z9hG4bK22f53b21_102", "z9hG4bK22f53b21"]
    assert ok.headers.get("Record-Route") == "<sip:192.0.2.47;lr>"
    bye = next(message for message in sent if isinstance(message, SipRequest))
    assert bye.method == "BYE"
    assert bye.uri == "sip:+15550100011@192.0.2.47:5060;user=phone"
    assert bye.headers.get("Route") == "<sip:192.0.2.47;lr>"
    # Loose routing: the BYE goes to the first Route, not to the remote target.
    assert test.sent[-1].peer == Peer("udp", "192.0.2.47", 5060)


def test_07_options_without_content_length() -> None:
    sent = responses(harness().feed(load("07")))

    assert [response.status for response in sent] == [200]
    assert "INVITE" in sent[0].headers.get_list("Allow")


def test_08_huge_content_length_rejected() -> None:
    sent = responses(harness().feed(load("08")))

    assert [response.status for response in sent] == [400]
    assert "Content-Length 4294967295" in sent[0].reason


def test_09_trailing_space_in_request_line() -> None:
    data = load("09")

    sent = responses(harness().feed(data))

    # Same rule as RFC 4475 trws: SP after SIP-Version makes the Request-Line invalid.
    assert [response.status for response in sent] == [400]
    assert "Request-Line" in sent[0].reason


def test_09_zero_content_length_ignores_trailing_sdp() -> None:
    test = harness()
    data = load("09").replace(b" SIP/2.0 \r\n", b" SIP/2.0\r\n", 1)

    sent = test.feed(data)

    # §18.3: over UDP, bytes past Content-Length are discarded, so there is no offer.
    assert statuses(sent) == [100]
    assert test.offered()[0].session.remote_sdp is None


def test_12_require_100rel_gets_420() -> None:
    sent = responses(harness().feed(load("12")))

    assert [response.status for response in sent] == [420]
    assert sent[0].headers.get_list("Unsupported") == ["100rel"]


def establish(test: CoreHarness, invite: bytes) -> tuple[str, str]:
    test.feed(invite)
    handle = test.offered()[-1].session.handle
    ok = responses(test.run(lambda core, now: core.answer(handle, ANSWER_SDP, now)))[-1]
    assert ok.status == 200
    return handle, ok.parsed.to.tag or ""


def test_13_cancel_crossing_200_then_bye() -> None:
    scenario = yaml.safe_load(load("13"))
    steps = scenario["steps"]
    expected = scenario["expected"]
    test = harness()
    handle, tag = establish(test, steps[0]["raw"].encode())

    cancel = responses(test.feed(steps[3]["raw"].encode()))
    bye = responses(test.feed(steps[5]["raw"].replace("{OUR_TAG}", tag).encode()))
    later = test.advance(40.0)

    assert [response.status for response in cancel] == [expected["cancel_response"]]
    assert cancel[0].headers.get("CSeq") == "1 CANCEL"
    assert [response.status for response in bye] == [expected["bye_response"]]
    assert [(event.handle, event.reason) for event in test.ended()] == [(handle, "bye")]
    assert expected["call_state_after_bye"] == "terminated"
    assert expected["stop_2xx_retransmissions"] is True
    assert [m for m in responses(later) if m.headers.get("CSeq") == "1 INVITE"] == []


def test_14_hold_reinvite_without_final_crlf() -> None:
    test = harness()
    data = load("14")
    initial = (
        data.replace(b"CSeq: 2 INVITE", b"CSeq: 1 INVITE")
        .replace(b";tag=ours01", b"")
        .replace(b"z9hG4bK-hold-0002", b"z9hG4bK-hold-0001")
    )
    handle, tag = establish(test, initial)
    test.feed(
        b"ACK sip:+15550100060@192.0.2.10:5060 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.85:5060;branch=z9hG4bK-hold-ack1\r\n"
        b"From: <sip:+15550100061@sbc.example.com>;tag=carrierA\r\n"
        b"To: <sip:+15550100060@example.com>;tag=" + tag.encode() + b"\r\n"
        b"Call-ID: hold-0001@192.0.2.85\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    )

    test.feed(data.replace(b";tag=ours01", f";tag={tag}".encode()))
    reoffer = [event for event in test.events if isinstance(event, ReofferReceived)]
    answer = responses(test.run(lambda core, now: core.answer_reoffer(handle, ANSWER_SDP, now)))

    assert len(reoffer) == 1
    assert reoffer[0].sdp is not None
    assert reoffer[0].sdp.endswith(b"a=sendonly")
    assert len(reoffer[0].sdp) == 200
    assert [response.status for response in answer] == [200]


def test_14_reinvite_for_unknown_dialog_gets_481() -> None:
    sent = responses(harness().feed(load("14")))

    assert [response.status for response in sent] == [481]


# ----- the same messages over the wire


@pytest.fixture
async def endpoint() -> AsyncIterator[SipEndpoint]:
    config = SipConfig(port=0, force_rport=True)
    endpoint = SipEndpoint(config, ScriptedHandler(mode="reject", reject_status=486))
    await endpoint.start()
    yield endpoint
    await endpoint.stop()


@pytest.fixture
async def peer() -> AsyncIterator[UdpPeer]:
    peer = await open_udp_peer()
    yield peer
    peer.close()


@pytest.mark.parametrize(
    ("name", "status"), [("01", 486), ("07", 200), ("08", 400), ("09", 400), ("12", 420)]
)
async def test_field_message_over_udp(
    name: str, status: int, endpoint: SipEndpoint, peer: UdpPeer
) -> None:
    peer.send(load(name), endpoint.port)

    reply = await peer.next_matching(b"SIP/2.0 " + str(status).encode(), 10.0)

    assert reply.startswith(b"SIP/2.0 " + str(status).encode())


async def test_08_over_tcp_answers_413_and_closes(endpoint: SipEndpoint) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
    writer.write(load("08"))
    await writer.drain()

    reply = await asyncio.wait_for(read_stream_message(reader), 10.0)
    after = await asyncio.wait_for(reader.read(), 10.0)
    writer.close()

    assert reply is not None
    assert reply.startswith(b"SIP/2.0 413 ")
    assert b"max_body_bytes" in reply.split(b"\r\n", 1)[0]
    assert after == b""
