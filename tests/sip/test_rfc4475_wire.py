"""RFC 4475 torture messages sent over UDP and TCP to a running SipEndpoint.

Each message is followed by an OPTIONS probe that must still get 200. The
endpoint runs with force_rport, so every reply returns to the test socket on
127.0.0.1 whatever the message's Via names, and nothing is sent elsewhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from signaling.sip.auth import AuthConfig
from signaling.sip.endpoint import SipConfig, SipEndpoint
from tests.sip.rfc4475_verdicts import CALL, TCP_OVERRIDES, VERDICTS
from tests.sip.support import (
    DATA,
    ScriptedHandler,
    UdpPeer,
    call_id_of,
    open_udp_peer,
    options_probe,
    read_stream_message,
    status_of,
)

# Each test runs with the C fast path of SIP parsing and with the Python reference alone.
pytestmark = pytest.mark.usefixtures("sip_parser")

CASES = DATA / "rfc4475"


@pytest.fixture
async def endpoint() -> AsyncIterator[SipEndpoint]:
    auth = AuthConfig(users={"alice": "secret"}, trusted_networks=["127.0.0.0/8"])
    config = SipConfig(port=0, force_rport=True, auth=auth)
    endpoint = SipEndpoint(config, ScriptedHandler(mode="reject", reject_status=486))
    await endpoint.start()
    yield endpoint
    await endpoint.stop()


@pytest.fixture
async def peer() -> AsyncIterator[UdpPeer]:
    peer = await open_udp_peer()
    yield peer
    peer.close()


async def replies_until_probe(peer: UdpPeer, probe_id: bytes) -> list[bytes]:
    """Collect datagrams until the probe's 200 arrives; return those before it."""
    before: list[bytes] = []
    while True:
        data = await peer.next(10.0)
        if call_id_of(data) == probe_id:
            assert status_of(data) == 200
            return before
        before.append(data)


@pytest.mark.parametrize("name", sorted(VERDICTS))
async def test_udp_verdict_and_probe(name: str, endpoint: SipEndpoint, peer: UdpPeer) -> None:
    data = (CASES / f"{name}.dat").read_bytes()
    expected = VERDICTS[name]

    peer.send(data, endpoint.port)
    peer.send(options_probe(peer.port, "probe-1"), endpoint.port)
    before = await replies_until_probe(peer, b"probe-1")
    finals = [status_of(reply) for reply in before if (status_of(reply) or 0) >= 200]

    if expected == CALL:
        # The handler rejects from its own task, so the 486 may come after the probe.
        replies = [reply for reply in before if (status_of(reply) or 0) >= 200]
        if not replies:
            replies = [await peer.next_matching(b"SIP/2.0 4", 10.0)]
        assert [status_of(reply) for reply in replies] == [486]
        assert call_id_of(replies[0]) == call_id_of(data)
    elif expected is None:
        assert before == []
    else:
        assert finals == [expected]


async def tcp_final_status(port: int, data: bytes, expect_reply: bool) -> int | None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        if not expect_reply:
            writer.write_eof()
        while True:
            message = await asyncio.wait_for(read_stream_message(reader), 10.0)
            if message is None:
                return None
            status = status_of(message)
            if status is not None and status >= 200:
                return status
    finally:
        writer.close()


@pytest.mark.parametrize("name", sorted(VERDICTS))
async def test_tcp_verdict_and_probe(name: str, endpoint: SipEndpoint) -> None:
    data = (CASES / f"{name}.dat").read_bytes()
    expected = TCP_OVERRIDES.get(name, VERDICTS[name])

    status = await tcp_final_status(endpoint.port, data, expected is not None)
    probe = await tcp_final_status(endpoint.port, options_probe(5999, "probe-tcp", "TCP"), True)

    assert status == (486 if expected == CALL else expected)
    assert probe == 200
