"""The asyncio SipEndpoint and InboundCall API, with a raw UDP peer on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from signaling.sip.endpoint import InboundCall, SipConfig, SipEndpoint
from signaling.sip.errors import CallEnded
from tests.sip.support import (
    ANSWER_SDP,
    OFFER_SDP,
    ScriptedHandler,
    UdpPeer,
    open_udp_peer,
    read_stream_message,
    sip_request,
    status_of,
)


class GatedHandler:
    """Rings (unless `ring_first` is off), then waits for the test to open the gate to answer."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.ring_first = True
        self.calls: asyncio.Queue[InboundCall] = asyncio.Queue()
        self.outcomes: asyncio.Queue[str] = asyncio.Queue()

    async def on_invite(self, call: InboundCall) -> None:
        self.calls.put_nowait(call)
        if self.ring_first:
            await call.ring()
        await self.gate.wait()
        try:
            await call.answer(ANSWER_SDP)
        except CallEnded as error:
            self.outcomes.put_nowait(f"ended:{error.reason}")
            return
        self.outcomes.put_nowait("answered")


class FailingHandler:
    async def on_invite(self, call: InboundCall) -> None:
        raise RuntimeError("handler bug")


@pytest.fixture
async def peer() -> AsyncIterator[UdpPeer]:
    peer = await open_udp_peer()
    yield peer
    peer.close()


async def started(handler: object, **settings: object) -> SipEndpoint:
    endpoint = SipEndpoint(SipConfig(port=0, **settings), handler)  # type: ignore[arg-type]
    await endpoint.start()
    return endpoint


def invite_from(peer: UdpPeer, body: bytes = OFFER_SDP, call_id: str = "e1") -> bytes:
    return sip_request("INVITE", call_id=call_id, port=peer.port, body=body)


async def test_answered_invite_gets_no_100(peer: UdpPeer) -> None:
    endpoint = await started(ScriptedHandler(mode="answer"))
    try:
        peer.send(invite_from(peer), endpoint.port)

        first = await peer.next(5.0)

        assert status_of(first) == 200
    finally:
        await endpoint.stop()


async def test_waiting_handler_sends_100(peer: UdpPeer) -> None:
    handler = GatedHandler()
    handler.ring_first = False
    endpoint = await started(handler)
    try:
        peer.send(invite_from(peer), endpoint.port)

        first = await peer.next(5.0)
        handler.gate.set()
        second = await peer.next(5.0)

        assert status_of(first) == 100
        assert status_of(second) == 200
    finally:
        await endpoint.stop()


async def test_answer_after_cancel_raises_call_ended(peer: UdpPeer) -> None:
    handler = GatedHandler()
    endpoint = await started(handler)
    try:
        peer.send(invite_from(peer), endpoint.port)
        await peer.next_matching(b"SIP/2.0 180", 5.0)
        call = await asyncio.wait_for(handler.calls.get(), 5.0)

        peer.send(sip_request("CANCEL", call_id="e1", port=peer.port), endpoint.port)
        await peer.next_matching(b"SIP/2.0 487", 5.0)
        handler.gate.set()

        assert await asyncio.wait_for(handler.outcomes.get(), 5.0) == "ended:cancel"
        assert await asyncio.wait_for(call.wait_ended(), 5.0) == "cancel"
        assert call.ended
    finally:
        await endpoint.stop()


async def test_answer_returns_after_ack(peer: UdpPeer) -> None:
    handler = GatedHandler()
    endpoint = await started(handler)
    try:
        peer.send(invite_from(peer), endpoint.port)
        call = await asyncio.wait_for(handler.calls.get(), 5.0)
        handler.gate.set()
        ok = await peer.next_matching(b"SIP/2.0 200", 5.0)
        assert handler.outcomes.empty()
        tag = ok.split(b";tag=")[-1].split(b"\r\n")[0].decode()

        peer.send(sip_request("ACK", call_id="e1", to_tag=tag, port=peer.port), endpoint.port)

        assert await asyncio.wait_for(handler.outcomes.get(), 5.0) == "answered"
        assert call.sip_call_id == "e1"
        assert call.caller == "15550100001"
        assert call.called == "15550100000"
        assert call.source == ("127.0.0.1", peer.port)
        assert await asyncio.wait_for(call.ack_sdp, 5.0) is None
    finally:
        await endpoint.stop()


async def test_answer_raises_when_call_ends_before_ack(peer: UdpPeer) -> None:
    handler = GatedHandler()
    endpoint = await started(handler)
    try:
        peer.send(invite_from(peer), endpoint.port)
        call = await asyncio.wait_for(handler.calls.get(), 5.0)
        handler.gate.set()
        ok = await peer.next_matching(b"SIP/2.0 200", 5.0)
        assert handler.outcomes.empty()
        tag = ok.split(b";tag=")[-1].split(b"\r\n")[0].decode()

        # The caller hangs up before its ACK, while `answer` waits for the ACK.
        bye = sip_request(
            "BYE", call_id="e1", to_tag=tag, port=peer.port, cseq=2, branch="z9hG4bK-bye"
        )
        peer.send(bye, endpoint.port)

        assert await asyncio.wait_for(handler.outcomes.get(), 5.0) == "ended:bye"
        assert call.ended
        assert call.end_future.result() == "bye"
        assert await call.wait_ended() == "bye"
        assert call.ack_sdp.cancelled()
    finally:
        await endpoint.stop()


async def test_stop_hangs_up_every_call(peer: UdpPeer) -> None:
    handler = ScriptedHandler(mode="ring")
    endpoint = await started(handler)
    peer.send(invite_from(peer), endpoint.port)
    call = await asyncio.wait_for(handler.calls.get(), 5.0)
    await peer.next_matching(b"SIP/2.0 180", 5.0)

    await endpoint.stop()

    assert await asyncio.wait_for(handler.reasons.get(), 5.0) == "shutdown"
    assert call.ended
    reply = await peer.next_matching(b"SIP/2.0 487", 5.0)
    assert status_of(reply) == 487


async def test_stop_sends_bye_to_confirmed_call(peer: UdpPeer) -> None:
    handler = ScriptedHandler(mode="answer")
    endpoint = await started(handler, shutdown_timeout=0.5)
    peer.send(invite_from(peer), endpoint.port)
    ok = await peer.next_matching(b"SIP/2.0 200", 5.0)
    tag = ok.split(b";tag=")[-1].split(b"\r\n")[0].decode()
    peer.send(sip_request("ACK", call_id="e1", to_tag=tag, port=peer.port), endpoint.port)
    call = await asyncio.wait_for(handler.calls.get(), 5.0)
    await asyncio.wait_for(call.ack_sdp, 5.0)

    await endpoint.stop()

    bye = await peer.next_matching(b"BYE ", 5.0)
    assert f"tag={tag}".encode() in bye
    assert await asyncio.wait_for(handler.reasons.get(), 5.0) == "shutdown"


async def test_info_reaches_callback(peer: UdpPeer) -> None:
    handler = ScriptedHandler(mode="answer")
    endpoint = await started(handler)
    try:
        peer.send(invite_from(peer), endpoint.port)
        ok = await peer.next_matching(b"SIP/2.0 200", 5.0)
        tag = ok.split(b";tag=")[-1].split(b"\r\n")[0].decode()
        peer.send(sip_request("ACK", call_id="e1", to_tag=tag, port=peer.port), endpoint.port)
        info = sip_request(
            "INFO",
            call_id="e1",
            to_tag=tag,
            cseq=2,
            port=peer.port,
            branch="z9hG4bK-info",
            body=b"Signal=5\r\nDuration=160\r\n",
            content_type="application/dtmf-relay",
        )

        peer.send(info, endpoint.port)
        reply = await peer.next_matching(b"SIP/2.0 200", 5.0)

        assert b"CSeq: 2 INFO" in reply
        assert handler.infos == [("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n")]
    finally:
        await endpoint.stop()


async def test_handler_failure_answers_500(peer: UdpPeer) -> None:
    endpoint = await started(FailingHandler())
    try:
        peer.send(invite_from(peer), endpoint.port)

        reply = await peer.next_matching(b"SIP/2.0 5", 5.0)

        assert status_of(reply) == 500
    finally:
        await endpoint.stop()


async def test_delayed_offer_resolves_ack_sdp(peer: UdpPeer) -> None:
    handler = ScriptedHandler(mode="answer")
    endpoint = await started(handler)
    try:
        peer.send(invite_from(peer, body=b""), endpoint.port)
        call = await asyncio.wait_for(handler.calls.get(), 5.0)
        ok = await peer.next_matching(b"SIP/2.0 200", 5.0)
        tag = ok.split(b";tag=")[-1].split(b"\r\n")[0].decode()
        assert call.remote_sdp is None

        ack = sip_request("ACK", call_id="e1", to_tag=tag, port=peer.port, body=OFFER_SDP)
        peer.send(ack, endpoint.port)

        assert await asyncio.wait_for(call.ack_sdp, 5.0) == OFFER_SDP
        assert call.remote_sdp == OFFER_SDP
    finally:
        await endpoint.stop()


async def test_garbage_datagrams_do_not_stop_loop(peer: UdpPeer) -> None:
    endpoint = await started(ScriptedHandler())
    try:
        for data in (b"", b"\r\n\r\n", b"\x00" * 100, b"SIP/2.0 200\r\n\r\n", b"INVITE\r\n\r\n"):
            peer.send(data, endpoint.port)

        peer.send(sip_request("OPTIONS", port=peer.port), endpoint.port)
        reply = await peer.next_matching(b"SIP/2.0 200", 5.0)

        assert b"CSeq: 1 OPTIONS" in reply
    finally:
        await endpoint.stop()


async def test_port_zero_binds_free_port() -> None:
    endpoint = await started(ScriptedHandler())
    try:
        assert endpoint.port > 0
    finally:
        await endpoint.stop()


def ipv6_loopback_available() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not ipv6_loopback_available(), reason="no IPv6 loopback")
async def test_options_over_ipv6_loopback() -> None:
    endpoint = SipEndpoint(SipConfig(host="::1", port=0), ScriptedHandler())
    await endpoint.start()
    loop = asyncio.get_running_loop()
    received: asyncio.Queue[bytes] = asyncio.Queue()

    class Collector(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
            received.put_nowait(data)

    transport, _ = await loop.create_datagram_endpoint(Collector, local_addr=("::1", 0))
    port = transport.get_extra_info("sockname")[1]
    options = sip_request("OPTIONS", port=port).replace(b"127.0.0.1", b"[::1]")
    try:
        transport.sendto(options, ("::1", endpoint.port))
        reply = await asyncio.wait_for(received.get(), 5.0)
    finally:
        transport.close()
        await endpoint.stop()

    assert status_of(reply) == 200
    assert b"Via: SIP/2.0/UDP [::1]:" in reply


async def test_bye_over_new_tcp_connection_after_close() -> None:
    handler = ScriptedHandler(mode="answer")
    endpoint = await started(handler)
    byes: asyncio.Queue[bytes] = asyncio.Queue()

    async def contact_side(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        message = await read_stream_message(reader)
        if message is not None:
            byes.put_nowait(message)
        writer.close()

    contact_server = await asyncio.start_server(contact_side, "127.0.0.1", 0)
    contact_port = contact_server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
    invite = sip_request("INVITE", body=OFFER_SDP, port=contact_port).replace(
        f"127.0.0.1:{contact_port}>".encode(), f"127.0.0.1:{contact_port};transport=tcp>".encode()
    )
    try:
        writer.write(invite.replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP"))
        ok = b""
        while not ok.startswith(b"SIP/2.0 200"):
            received = await asyncio.wait_for(read_stream_message(reader), 5.0)
            ok = received or b""
        tag = ok.split(b";tag=")[-1].split(b"\r\n")[0].decode()
        ack = sip_request("ACK", to_tag=tag, port=contact_port, branch="z9hG4bK-ack")
        writer.write(ack.replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP"))
        call = await asyncio.wait_for(handler.calls.get(), 5.0)
        await asyncio.wait_for(call.ack_sdp, 5.0)
        writer.close()
        await writer.wait_closed()
        for _ in range(500):  # up to 5 s for the endpoint to see the close
            if endpoint.connection_count == 0:
                break
            await asyncio.sleep(0.01)
        assert endpoint.connection_count == 0

        await call.hangup()
        bye = await asyncio.wait_for(byes.get(), 5.0)

        assert bye.startswith(b"BYE sip:15550100001@127.0.0.1:")
        assert b"Via: SIP/2.0/TCP" in bye
        assert f"tag={tag}".encode() in bye
    finally:
        contact_server.close()
        await endpoint.stop()


async def probe_answered(peer: UdpPeer, call_id: bytes) -> bool:
    """Drain replies for up to 1 s and report whether the probe's 200 was among them."""
    try:
        async with asyncio.timeout(1.0):
            while True:
                reply = await peer.next(1.0)
                if reply.startswith(b"SIP/2.0 200") and b"Call-ID: " + call_id + b"\r" in reply:
                    return True
    except TimeoutError:
        return False


async def test_mutated_datagram_storm_survived(peer: UdpPeer) -> None:
    """2,000 corrupted torture messages over UDP, then OPTIONS still gets 200."""
    import random

    from tests.sip.support import DATA

    seeds = [path.read_bytes() for path in sorted((DATA / "rfc4475").glob("*.dat"))]
    rng = random.Random(4475)
    endpoint = await started(ScriptedHandler(mode="reject"), force_rport=True)
    try:
        for index in range(2000):
            data = bytearray(rng.choice(seeds))
            for _ in range(rng.randint(1, 4)):
                position = rng.randrange(len(data))
                data[position : position + rng.randint(0, 8)] = rng.randbytes(rng.randint(0, 8))
            peer.send(bytes(data), endpoint.port)
            if index % 200 == 0:
                await asyncio.sleep(0)  # let the endpoint drain its socket

        # Socket buffers may drop datagrams during the storm, so the probe is
        # retransmitted like a UAC would, up to 20 times.
        answered = False
        for attempt in range(20):
            probe = sip_request(
                "OPTIONS", call_id=f"after-storm-{attempt}", branch=f"z9hG4bK-p{attempt}",
                port=peer.port,
            )  # fmt: skip
            peer.send(probe, endpoint.port)
            answered = await probe_answered(peer, f"after-storm-{attempt}".encode())
            if answered:
                break

        assert answered
    finally:
        await endpoint.stop()


async def test_tcp_garbage_closes_only_that_connection() -> None:
    endpoint = await started(ScriptedHandler())
    try:
        _, bad_writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
        reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)

        bad_writer.write(b"\x16\x03\x01\x02\x00" + bytes(range(256)) * 80 + b"\r\n\r\n")
        await bad_writer.drain()
        probe = sip_request("OPTIONS", port=5999).replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP")
        writer.write(probe)
        reply = await asyncio.wait_for(read_stream_message(reader), 5.0)

        assert reply is not None
        assert status_of(reply) == 200
        bad_writer.close()
        writer.close()
    finally:
        await endpoint.stop()


async def test_tel_uris_give_caller_and_called(peer: UdpPeer) -> None:
    handler = ScriptedHandler(mode="reject")
    endpoint = await started(handler)
    invite = sip_request("INVITE", port=peer.port, uri="tel:+15550100000;phone-context=x")
    invite = invite.replace(b"From: <sip:15550100001@127.0.0.1>", b"From: <tel:+15550100001>")
    try:
        peer.send(invite, endpoint.port)
        call = await asyncio.wait_for(handler.calls.get(), 5.0)

        assert call.caller == "+15550100001"
        assert call.called == "+15550100000"
    finally:
        await endpoint.stop()
