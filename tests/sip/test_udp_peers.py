"""The UDP transport's cache of the `Peer` of each source address."""

from __future__ import annotations

import pytest

from signaling.sip import transport
from signaling.sip.routing import Peer
from signaling.sip.transport import UdpTransport


def receiving_transport() -> tuple[UdpTransport, list[Peer]]:
    received: list[Peer] = []
    udp = UdpTransport(lambda data, peer: received.append(peer))
    return udp, received


def test_same_source_reuses_peer() -> None:
    udp, received = receiving_transport()
    udp.datagram_received(b"first", ("127.0.0.1", 5070))
    udp.datagram_received(b"second", ("127.0.0.1", 5070))
    udp.datagram_received(b"third", ("127.0.0.1", 5071))

    assert received[0] == Peer("udp", "127.0.0.1", 5070)
    assert received[1] is received[0]
    assert received[2] == Peer("udp", "127.0.0.1", 5071)


def test_ipv6_source_peer() -> None:
    udp, received = receiving_transport()
    udp.datagram_received(b"datagram", ("::1", 5070, 0, 0))

    assert received == [Peer("udp", "::1", 5070)]


def test_full_peer_cache_is_cleared(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport, "PEER_CACHE_SIZE", 2)
    udp, received = receiving_transport()
    for port in (5070, 5071, 5072):
        udp.datagram_received(b"datagram", ("127.0.0.1", port))

    assert [peer.port for peer in received] == [5070, 5071, 5072]
    assert list(udp._peers) == [("127.0.0.1", 5072)]
