"""Overload guard of the SIP endpoint: a long UDP receive queue makes new INVITEs get 503."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from signaling.sip.endpoint import SipConfig, SipEndpoint
from signaling.sip.parser import parse_datagram
from signaling.sip.transport import UdpTransport
from tests.sip.support import (
    OFFER_SDP,
    ScriptedHandler,
    UdpPeer,
    open_udp_peer,
    sip_request,
    status_of,
)

BURST = 64
# About two queued INVITEs, so that the burst trips the guard and a drained queue clears it.
QUEUE_LIMIT = 4096


@pytest.fixture
async def peer() -> AsyncIterator[UdpPeer]:
    peer = await open_udp_peer()
    yield peer
    peer.close()


@pytest.fixture
async def endpoint() -> AsyncIterator[SipEndpoint]:
    config = SipConfig(port=0, tcp=False, overload_queue_bytes=QUEUE_LIMIT, retry_after=3)
    endpoint = SipEndpoint(config, ScriptedHandler(mode="ring"))
    await endpoint.start()
    yield endpoint
    await endpoint.stop()


def invite(peer: UdpPeer, number: int) -> bytes:
    return sip_request(
        "INVITE",
        call_id=f"burst-{number}",
        branch=f"z9hG4bK-burst-{number}",
        port=peer.port,
        body=OFFER_SDP,
    )


async def first_responses(peer: UdpPeer, count: int) -> dict[str, tuple[int, str | None]]:
    """Collect the first response of `count` calls: Call-ID -> (status, Retry-After).

    The handler rings at once, so an accepted INVITE gets 180 without a 100 Trying.
    """
    first: dict[str, tuple[int, str | None]] = {}
    while len(first) < count:
        data = await peer.next(max_seconds=10.0)
        headers = parse_datagram(data).headers
        call_id = headers.get("Call-ID") or ""
        if call_id not in first:
            first[call_id] = (status_of(data) or 0, headers.get("Retry-After"))
    return first


async def test_burst_gets_503_then_recovers(endpoint: SipEndpoint, peer: UdpPeer) -> None:
    # The test shares the event loop with the endpoint, so the whole burst
    # waits in the endpoint's socket before the first datagram is read.
    for number in range(BURST):
        peer.send(invite(peer, number), endpoint.port)

    burst = await first_responses(peer, BURST)
    rejected = [retry for status, retry in burst.values() if status == 503]
    accepted = [status for status, _ in burst.values() if status == 180]

    assert rejected, "no INVITE of the burst was rejected"
    assert accepted, "every INVITE of the burst was rejected"
    assert len(rejected) + len(accepted) == BURST
    assert set(rejected) == {"3"}

    peer.send(invite(peer, BURST), endpoint.port)
    after = await first_responses(peer, 1)

    assert list(after.values()) == [(180, None)]


async def test_guard_off_once_queue_drains(endpoint: SipEndpoint, peer: UdpPeer) -> None:
    # 40 datagrams: the periodic checks after 16 and 32 find the queue long,
    # and only the checks while overloaded see it drained by the 40th.
    burst = 40
    for number in range(burst):
        peer.send(invite(peer, number), endpoint.port)
    first = await first_responses(peer, burst)
    assert any(status == 503 for status, _ in first.values())

    peer.send(invite(peer, burst), endpoint.port)
    after = await first_responses(peer, 1)

    assert list(after.values()) == [(180, None)]


async def test_queued_bytes_counts_waiting_datagrams(peer: UdpPeer) -> None:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: UdpTransport(lambda data, source: None), local_addr=("127.0.0.1", 0)
    )
    try:
        empty = protocol.queued_bytes()
        for number in range(4):
            peer.send(invite(peer, number), protocol.port)
        waiting = protocol.queued_bytes()
    finally:
        transport.close()

    assert empty == 0
    assert waiting is not None
    assert waiting >= 4 * len(invite(peer, 0))
