"""RTP socket pairs reused between calls: no RTP bleed, bounded pool, closed on stop.

Each test runs on the asyncio and the uvloop event loop (see `conftest.py`).
"""

from __future__ import annotations

import gc
import secrets
import socket
import weakref
from collections.abc import Iterator

import pytest

from media import rtcp
from media.rtp import RtpPacket
from media.rtp_session import LatchState, RtpPortPool, RtpSession, RtpSessionConfig
from media.rtp_sockets import RtpSocketPair, RtpSocketPool
from tests.media.conftest import LOOPBACK, RecordingHandler, wait_for


class FakeClock:
    """A monotonic clock that moves only when the test advances `now`."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def peers() -> Iterator[tuple[socket.socket, socket.socket]]:
    """Two plain UDP sockets: the previous call's peer and the next call's peer."""
    previous = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    following = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    previous.bind((LOOPBACK, 0))
    following.bind((LOOPBACK, 0))
    yield previous, following
    previous.close()
    following.close()


def rtp_packet(ssrc: int, sequence: int) -> bytes:
    packet = RtpPacket(
        payload_type=0,
        sequence_number=sequence,
        timestamp=160 * sequence,
        ssrc=ssrc,
        payload=bytes(160),
    )
    return packet.serialize()


def address(sock: socket.socket) -> tuple[str, int]:
    host, port = sock.getsockname()[:2]
    return str(host), int(port)


def pairs_closed(pairs: list[RtpSocketPair]) -> bool:
    return all(pair.is_broken() for pair in pairs)


async def test_late_packet_of_previous_peer_not_latched(
    port_pool: RtpPortPool, peers: tuple[socket.socket, socket.socket]
) -> None:
    previous, following = peers
    pool = RtpSocketPool(port_pool, LOOPBACK, max_idle=4, quarantine_s=0.0)
    config = RtpSessionConfig()

    pair = await pool.acquire()
    first = RtpSession.open_on_pair(pool, pair, config, remote=address(previous), call_id="a")
    first.attach(RecordingHandler())
    previous.sendto(rtp_packet(ssrc=1111, sequence=1), ("127.0.0.1", pair.port))
    await wait_for(lambda: first.latch_state is LatchState.LATCHED)
    await first.close()

    # Queued in the kernel while the pair waits: the drain at reuse drops it.
    previous.sendto(rtp_packet(ssrc=1111, sequence=2), ("127.0.0.1", pair.port))
    reused = await pool.acquire()
    assert reused is pair
    assert pair.dropped == 1

    second = RtpSession.open_on_pair(pool, pair, config, remote=address(following), call_id="b")
    second.attach(RecordingHandler())
    # Arrives after the drain, ahead of the new peer's first packet.
    previous.sendto(rtp_packet(ssrc=1111, sequence=3), ("127.0.0.1", pair.port))
    following.sendto(rtp_packet(ssrc=2222, sequence=1), ("127.0.0.1", pair.port))
    await wait_for(lambda: second.latch_state is LatchState.LATCHED)

    assert second.remote == address(following)
    assert second.stats.stale_source == 1
    assert second.stats.packets_received == 2
    await second.close()
    pool.close()


async def test_drain_empties_both_sockets(
    port_pool: RtpPortPool, peers: tuple[socket.socket, socket.socket]
) -> None:
    previous, _ = peers
    pool = RtpSocketPool(port_pool, LOOPBACK, max_idle=4, quarantine_s=0.0)
    pair = await pool.acquire()
    assert pair.drain() == 0

    for sequence in range(3):
        previous.sendto(rtp_packet(ssrc=1111, sequence=sequence), ("127.0.0.1", pair.port))
    previous.sendto(b"late rtcp", ("127.0.0.1", pair.port + 1))
    # No loop iteration runs between the sends and the drain, so all four wait in the kernel.
    assert pair.drain() == 4
    assert pair.drain() == 0
    assert pair.dropped == 4
    pool.give_back(pair)
    pool.close()


async def test_stale_packet_after_latch_dropped(
    port_pool: RtpPortPool, peers: tuple[socket.socket, socket.socket]
) -> None:
    previous, following = peers
    pool = RtpSocketPool(port_pool, LOOPBACK, max_idle=4, quarantine_s=0.0)
    pair = await pool.acquire()
    first = RtpSession.open_on_pair(pool, pair, RtpSessionConfig(), remote=address(previous))
    await first.close()

    await pool.acquire()
    second = RtpSession.open_on_pair(pool, pair, RtpSessionConfig(), remote=address(following))
    second.attach(RecordingHandler())
    following.sendto(rtp_packet(ssrc=2222, sequence=1), ("127.0.0.1", pair.port))
    await wait_for(lambda: second.latch_state is LatchState.LATCHED)
    previous.sendto(rtp_packet(ssrc=1111, sequence=1), ("127.0.0.1", pair.port))
    following.sendto(rtp_packet(ssrc=2222, sequence=2), ("127.0.0.1", pair.port))
    await wait_for(lambda: second.stats.packets_received == 3)

    assert second.remote == address(following)
    assert second.stats.wrong_source == 1
    await second.close()
    pool.close()


async def test_same_peer_may_call_again(
    port_pool: RtpPortPool, peers: tuple[socket.socket, socket.socket]
) -> None:
    peer, _ = peers
    pool = RtpSocketPool(port_pool, LOOPBACK, max_idle=4, quarantine_s=0.0)
    pair = await pool.acquire()
    first = RtpSession.open_on_pair(pool, pair, RtpSessionConfig(), remote=address(peer))
    await first.close()

    await pool.acquire()
    second = RtpSession.open_on_pair(pool, pair, RtpSessionConfig(), remote=address(peer))
    second.attach(RecordingHandler())
    peer.sendto(rtp_packet(ssrc=3333, sequence=1), ("127.0.0.1", pair.port))
    await wait_for(lambda: second.latch_state is LatchState.LATCHED)

    assert second.remote == address(peer)
    assert second.stats.stale_source == 0
    await second.close()
    pool.close()


async def test_new_stream_from_old_source_latches(
    port_pool: RtpPortPool, peers: tuple[socket.socket, socket.socket]
) -> None:
    # A phone behind NAT: its SDP names a private address, its packets come from
    # the NAT's address, and a second call gets the same NAT address and port.
    phone, _ = peers
    pool = RtpSocketPool(port_pool, LOOPBACK, max_idle=4, quarantine_s=0.0)
    pair = await pool.acquire()
    first = RtpSession.open_on_pair(pool, pair, RtpSessionConfig(), remote=(LOOPBACK, 9))
    first.attach(RecordingHandler())
    phone.sendto(rtp_packet(ssrc=1111, sequence=1), ("127.0.0.1", pair.port))
    await wait_for(lambda: first.latch_state is LatchState.LATCHED)
    await first.close()

    await pool.acquire()
    second = RtpSession.open_on_pair(pool, pair, RtpSessionConfig(), remote=(LOOPBACK, 11))
    second.attach(RecordingHandler())
    phone.sendto(rtp_packet(ssrc=1111, sequence=2), ("127.0.0.1", pair.port))
    phone.sendto(rtp_packet(ssrc=4444, sequence=1), ("127.0.0.1", pair.port))
    await wait_for(lambda: second.latch_state is LatchState.LATCHED)

    assert second.remote == address(phone)
    assert second.stats.stale_source == 1
    assert second.stats.packets_received == 2
    await second.close()
    pool.close()


async def test_rtcp_reaches_each_session_in_turn(
    port_pool: RtpPortPool, peers: tuple[socket.socket, socket.socket]
) -> None:
    peer, _ = peers
    pool = RtpSocketPool(port_pool, LOOPBACK, max_idle=4, quarantine_s=0.0)
    report = rtcp.serialize(rtcp.ReceiverReport(4242, ()))
    pair = await pool.acquire()
    first = RtpSession.open_on_pair(pool, pair, RtpSessionConfig(), remote=address(peer))
    peer.sendto(report, ("127.0.0.1", pair.port + 1))
    await wait_for(lambda: first.stats.rtcp_received == 1)
    await first.close()

    assert await pool.acquire() is pair
    second = RtpSession.open_on_pair(pool, pair, RtpSessionConfig(), remote=address(peer))
    peer.sendto(report, ("127.0.0.1", pair.port + 1))
    await wait_for(lambda: second.stats.rtcp_received == 1)

    assert first.stats.rtcp_received == 1
    await second.close()
    assert pair.rtcp_protocol is not None
    assert pair.rtcp_protocol._session is None
    pool.close()


async def test_quarantined_pair_not_handed_out(port_pool: RtpPortPool) -> None:
    clock = FakeClock()
    pool = RtpSocketPool(port_pool, LOOPBACK, max_idle=4, quarantine_s=0.5, clock=clock)
    pair = await pool.acquire()
    session = RtpSession.open_on_pair(pool, pair, RtpSessionConfig(), remote=(LOOPBACK, 9))
    await session.close()

    other = await pool.acquire()
    assert other is not pair
    assert other.port != pair.port
    clock.now += 0.5
    assert await pool.acquire() is pair
    assert pool.reused == 1
    assert pool.bound == 2
    pool.close()


async def test_reuse_hands_out_only_ready_pairs(
    port_pool: RtpPortPool, peers: tuple[socket.socket, socket.socket]
) -> None:
    previous, _ = peers
    clock = FakeClock()
    pool = RtpSocketPool(port_pool, LOOPBACK, max_idle=4, quarantine_s=0.5, clock=clock)
    assert pool.reuse() is None
    pair = await pool.acquire()
    await RtpSession.open_on_pair(pool, pair, RtpSessionConfig(), remote=(LOOPBACK, 9)).close()

    assert pool.reuse() is None
    clock.now += 0.5
    previous.sendto(rtp_packet(ssrc=1111, sequence=1), ("127.0.0.1", pair.port))
    assert pool.reuse() is pair
    assert pair.dropped == 1
    assert pool.reuse() is None
    assert pool.reused == 1
    assert pool.in_use_count == 1

    # The second reuse of a pair polls it with the poll object of the first.
    await RtpSession.open_on_pair(pool, pair, RtpSessionConfig(), remote=(LOOPBACK, 9)).close()
    clock.now += 0.5
    assert pool.reuse() is pair
    assert pair.dropped == 1
    await RtpSession.open_on_pair(pool, pair, RtpSessionConfig(), remote=(LOOPBACK, 9)).close()
    clock.now += 0.5
    previous.sendto(rtp_packet(ssrc=1111, sequence=2), ("127.0.0.1", pair.port))
    assert pool.reuse() is pair
    assert pair.dropped == 2

    pool.give_back(pair)
    pool.close()
    with pytest.raises(RuntimeError, match="closed"):
        pool.reuse()


async def test_quarantine_ends_early_when_range_used_up() -> None:
    low = 20000 + 2 * secrets.randbelow(15000)
    ports = RtpPortPool(low, low + 1)
    clock = FakeClock()
    pool = RtpSocketPool(ports, LOOPBACK, max_idle=4, quarantine_s=60.0, clock=clock)
    pair = await pool.acquire()
    session = RtpSession.open_on_pair(pool, pair, RtpSessionConfig(), remote=(LOOPBACK, 9))
    await session.close()
    assert ports.free_count == 0

    assert await pool.acquire() is pair
    pool.close()


async def test_pool_keeps_at_most_max_idle(port_pool: RtpPortPool) -> None:
    pool = RtpSocketPool(port_pool, LOOPBACK, max_idle=2, quarantine_s=0.0)
    free_before = port_pool.free_count
    pairs = [await pool.acquire() for _ in range(3)]
    sessions = [
        RtpSession.open_on_pair(pool, pair, RtpSessionConfig(), remote=(LOOPBACK, 9))
        for pair in pairs
    ]
    for session in sessions:
        await session.close()

    assert pool.idle_count == 2
    assert pool.in_use_count == 0
    await wait_for(lambda: pairs_closed(pairs[2:]))
    await wait_for(lambda: port_pool.free_count == free_before - 2)
    assert not pairs[0].is_broken()
    assert not pairs[1].is_broken()
    pool.close()


async def test_close_closes_idle_and_released_pairs(port_pool: RtpPortPool) -> None:
    pool = RtpSocketPool(port_pool, LOOPBACK, max_idle=4, quarantine_s=0.0)
    free_before = port_pool.free_count
    idle = await pool.acquire()
    busy = await pool.acquire()
    await RtpSession.open_on_pair(pool, idle, RtpSessionConfig(), remote=(LOOPBACK, 9)).close()
    session = RtpSession.open_on_pair(pool, busy, RtpSessionConfig(), remote=(LOOPBACK, 9))

    pool.close()
    await wait_for(lambda: pairs_closed([idle]))
    assert not busy.is_broken()
    with pytest.raises(RuntimeError, match="closed"):
        await pool.acquire()

    await session.close()
    await wait_for(lambda: pairs_closed([busy]))
    await wait_for(lambda: port_pool.free_count == free_before)
    for port in (idle.port, idle.port + 1, busy.port, busy.port + 1):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((LOOPBACK, port))


async def test_pooled_session_exchanges_audio(port_pool: RtpPortPool) -> None:
    pool = RtpSocketPool(port_pool, LOOPBACK, max_idle=4, quarantine_s=0.0)
    pair_a = await pool.acquire()
    pair_b = await pool.acquire()
    a = RtpSession.open_on_pair(pool, pair_a, RtpSessionConfig(), remote=(LOOPBACK, pair_b.port))
    b = RtpSession.open_on_pair(pool, pair_b, RtpSessionConfig(), remote=(LOOPBACK, pair_a.port))
    received = RecordingHandler()
    a.attach(RecordingHandler())
    b.attach(received)

    await wait_for(lambda: len(received.frames) >= 5)
    assert b.remote == (LOOPBACK, pair_a.port)
    assert a.local_address == (LOOPBACK, pair_a.port)
    await a.close()
    await b.close()
    assert received.closed
    pool.close()


async def test_closed_pair_freed_without_collector(
    port_pool: RtpPortPool, peers: tuple[socket.socket, socket.socket]
) -> None:
    previous, _ = peers
    pool = RtpSocketPool(port_pool, LOOPBACK, max_idle=0, quarantine_s=0.0)
    free_before = port_pool.free_count
    gc.collect()
    gc.disable()
    try:
        pair = await pool.acquire()
        session = RtpSession.open_on_pair(
            pool, pair, RtpSessionConfig(), remote=address(previous), call_id="a"
        )
        session.attach(RecordingHandler())
        # The pool keeps no idle pair, so the release closes both sockets.
        await session.close()
        await wait_for(lambda: port_pool.free_count == free_before)
        reference = weakref.ref(pair)
        del pair, session

        assert reference() is None
    finally:
        gc.enable()


async def test_pool_skips_block_of_busy_ports(port_pool: RtpPortPool) -> None:
    # Another process has bound the 40 ports that the range hands out next, as a second node might.
    held: list[socket.socket] = []
    try:
        held_ports = [port_pool.acquire() for _ in range(40)]
        other_ports = [port_pool.acquire() for _ in range(port_pool.free_count)]
        for port in held_ports + other_ports:
            port_pool.release(port)
        for port in held_ports:
            holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            held.append(holder)
            holder.bind((LOOPBACK, port))
        pool = RtpSocketPool(port_pool, LOOPBACK, max_idle=4, quarantine_s=0.0)

        pair = await pool.acquire()

        assert pair.port not in held_ports
        assert pair.port == other_ports[0]
        pool.release(pair, frozenset())
        pool.close()
    finally:
        for holder in held:
            holder.close()
