"""RTP/RTCP socket pairs kept bound between calls.

Opening a session's two UDP sockets and closing them again cost about
100-180 µs of CPU per call (`bench/sip_load.py`, 2-core VM), so a node keeps
released pairs open and hands them to later calls. `RtpSession.open_on_pair`
puts a session on a pair, and the session's `close` gives the pair back.

A reused pair can still receive packets from the previous call's peer, and a
session latches onto the first source it hears (symmetric RTP), which would
send the next caller's audio to the previous peer ("RTP bleed"). Three
guards keep that from happening:

1. Quarantine: a released pair is handed out again only after `quarantine_s`.
   Meanwhile an idle protocol reads and drops whatever arrives on it.
2. Drain: when a pair is handed out, the datagrams (and ICMP errors)
   already queued in the kernel are read and dropped, so the new session
   receives only datagrams that arrived after it took the pair. One `poll`
   call with no wait checks both sockets at once, so a pair with nothing
   queued, the usual case, costs one system call.
3. Stale streams: a pair remembers the streams of its previous call, as
   the latched source address with each SSRC received from it. The next
   session drops packets of those streams instead of latching onto them.
   A packet from the same address with a new SSRC is a new stream and may
   latch, because a phone behind NAT that calls again often gets the same
   public address and port. Streams from the address that the new call's
   own SDP names are not dropped either, so that a peer that replays the
   same SSRC in every call (SIPp with a pcap) still works. Late RTCP is
   not filtered and only counts as activity for the media timeout.

The pool is bounded twice: by the node's RTP port range (`RtpPortPool`),
from which each pair takes its port for as long as it stays open, and by
`max_idle`, the number of released pairs it keeps. A pair released beyond
that bound, or after `close`, is closed and its port goes back to the range.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from media.rtp_session import RtpPortPool, _RtcpProtocol

logger = logging.getLogger("media.rtp")

# Upper bound of the datagrams one drain reads per socket, so that a flood cannot
# hold the event loop. Whatever stays queued still meets the stale-stream check.
MAX_DRAIN_DATAGRAMS = 256
_DRAIN_READ_SIZE = 4096
# Ports in a row that may be held by another process before a pair's bind gives up.
BIND_ATTEMPTS = 64

Address = tuple[str, int]


# uvloop 0.23's `set_protocol` reads the new protocol's `data_received` (a method of stream
# protocols) and raises and catches AttributeError when it is missing. That costs about 300
# of the 400 ns of the call (timeit on a 2-core VM), and the sockets of a pooled pair change
# protocol up to four times per call. The datagram protocols of a pair therefore set
# `data_received` to this value, which neither uvloop nor asyncio calls on a UDP transport.
NO_STREAM_CALLBACK = None


class _IdleProtocol(asyncio.DatagramProtocol):
    """The protocol of a socket whose pair has no session: it drops every datagram."""

    data_received = NO_STREAM_CALLBACK

    def __init__(self, pair: RtpSocketPair) -> None:
        # None once both sockets of the pair are closed (`RtpSocketPair.socket_closed`).
        self._pair: RtpSocketPair | None = pair

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if self._pair is not None:
            self._pair.dropped += 1

    def error_received(self, exc: Exception) -> None:
        port = self._pair.port if self._pair is not None else 0
        logger.debug("idle rtp socket %d: error %s", port, exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._pair is not None:
            self._pair.socket_closed()


class RtpSocketPair:
    """An RTP socket on an even port and an RTCP socket on the port above it.

    `rtp` and `rtcp` are the transports; while the pair is idle their
    protocol drops every datagram.
    """

    def __init__(self, port: int, on_closed: Callable[[RtpSocketPair], None]) -> None:
        self.port = port
        self.rtp: asyncio.DatagramTransport | None = None
        self.rtcp: asyncio.DatagramTransport | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        """The event loop that the sockets were bound on, which runs the pair's sessions."""
        self.idle_protocol = _IdleProtocol(self)
        self.rtcp_protocol: _RtcpProtocol | None = None
        """The RTCP protocol that `RtpSession.open_on_pair` keeps for the pair's sessions."""
        self.stale_streams: frozenset[tuple[Address, int]] = frozenset()
        """The (source address, SSRC) streams of the previous call on this pair."""
        self.reusable_at = 0.0
        self.dropped = 0
        """Datagrams dropped while idle or drained before reuse."""
        self._open_sockets = 0
        self._on_closed = on_closed
        # The poll object of `drain`, built at the first drain, and the transport of each
        # file descriptor it polls. A pair closed before its first reuse never builds it.
        self._drain_poll: select.poll | None = None
        self._drain_transports: dict[int, asyncio.DatagramTransport] = {}

    def _prepare_drain(self) -> select.poll:
        """Register the pair's open sockets with the poll object that `drain` queries."""
        poll = select.poll()
        transports: dict[int, asyncio.DatagramTransport] = {}
        for transport in (self.rtp, self.rtcp):
            if transport is not None and not transport.is_closing():
                fd = transport.get_extra_info("socket").fileno()
                # poll reports POLLERR (a queued ICMP error) even where only POLLIN is requested.
                poll.register(fd, select.POLLIN)
                transports[fd] = transport
        self._drain_poll = poll
        self._drain_transports = transports
        return poll

    def drain(self) -> int:
        """Read and drop the datagrams queued on both sockets; return how many."""
        poll = self._drain_poll
        if poll is None:
            poll = self._prepare_drain()
        drained = 0
        for fd, _ in poll.poll(0):
            transport = self._drain_transports.get(fd)
            # A closed socket's descriptor reports POLLNVAL, or belongs to another socket now.
            if transport is None or transport.is_closing():
                continue
            drained += self._drain_socket(fd)
        self.dropped += drained
        return drained

    def _drain_socket(self, fd: int) -> int:
        drained = 0
        for _ in range(MAX_DRAIN_DATAGRAMS):
            try:
                os.read(fd, _DRAIN_READ_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                # An ICMP error queued on the socket; the next read goes on.
                logger.debug("rtp port %d: drain read failed: %s", self.port, exc)
                continue
            drained += 1
        return drained

    def is_broken(self) -> bool:
        """Whether a socket of the pair is closed or closing."""
        rtp, rtcp = self.rtp, self.rtcp
        return rtp is None or rtcp is None or rtp.is_closing() or rtcp.is_closing()

    def set_idle(self) -> None:
        """Point both sockets at the idle protocol, which drops what arrives."""
        idle, rtp, rtcp = self.idle_protocol, self.rtp, self.rtcp
        if rtp is not None:
            rtp.set_protocol(idle)
        if rtcp is not None:
            rtcp.set_protocol(idle)

    def close(self) -> None:
        """Close both sockets; the port goes back to the range once both are closed."""
        self.set_idle()
        for transport in (self.rtp, self.rtcp):
            if transport is not None and not transport.is_closing():
                transport.close()

    def socket_opened(self) -> None:
        self._open_sockets += 1

    def socket_closed(self) -> None:
        self._open_sockets -= 1
        if self._open_sockets == 0:
            # The transports, the idle protocol and the pair refer to each other. Dropping
            # those references lets reference counting free a closed pair at once, instead
            # of leaving it to the garbage collector (two transports per closed pair).
            self.rtp = None
            self.rtcp = None
            self.rtcp_protocol = None
            self._drain_poll = None
            self._drain_transports = {}
            self.idle_protocol._pair = None
            self._on_closed(self)


class RtpSocketPool:
    """Bound RTP/RTCP socket pairs on `host`, reused between calls (see the module docstring).

    `max_idle` bounds the released pairs that stay open. `clock` returns
    seconds on a monotonic clock and times the quarantine.
    """

    def __init__(
        self,
        ports: RtpPortPool,
        host: str,
        *,
        max_idle: int,
        quarantine_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_idle < 0:
            raise ValueError(f"max_idle must be 0 or more, not {max_idle}")
        if quarantine_s < 0:
            raise ValueError(f"quarantine_s must be 0 or more, not {quarantine_s}")
        self._ports = ports
        self._host = host
        self._family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._max_idle = max_idle
        self._quarantine_s = quarantine_s
        self._clock = clock
        # Released pairs in release order, so the first one leaves quarantine first.
        self._idle: deque[RtpSocketPair] = deque()
        self._in_use: set[RtpSocketPair] = set()
        self._closed = False
        self.reused = 0
        self.bound = 0

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    @property
    def in_use_count(self) -> int:
        return len(self._in_use)

    async def acquire(self) -> RtpSocketPair:
        """Hand out a drained pair: a released one past its quarantine, else a new one.

        Raises RuntimeError when the pool is closed or the port range has no
        free port, and OSError when BIND_ATTEMPTS ports in a row are held by
        other processes.
        """
        pair = self.reuse()
        if pair is None:
            pair = await self._bind_pair()
            self._in_use.add(pair)
            self.bound += 1
        return pair

    def reuse(self) -> RtpSocketPair | None:
        """Hand out a drained released pair past its quarantine, or None when none is ready.

        A caller that gets None binds a new pair with `acquire`. Calling this
        first spares the coroutine of `acquire` when a pair is ready. Raises
        RuntimeError when the pool is closed.
        """
        if self._closed:
            raise RuntimeError("the RTP socket pool is closed")
        idle = self._idle
        if not idle:
            return None
        now = self._clock()
        while idle:
            pair = idle[0]
            if pair.reusable_at > now and self._ports.free_count > 0:
                break
            # NOTE: with the port range used up, a pair leaves quarantine early;
            # the drain and the stale-stream check still apply to it.
            idle.popleft()
            # `RtpSocketPair.is_broken`, written out to save its Python call per call.
            rtp, rtcp = pair.rtp, pair.rtcp
            if rtp is None or rtcp is None or rtp.is_closing() or rtcp.is_closing():
                # The loop closed a socket after an error; the port returns when both are closed.
                pair.close()
                continue
            # Poll first, as `drain` does, so that a pair with nothing queued (the usual case)
            # costs no Python call of `drain`. A pair with datagrams queued is polled twice.
            poll = pair._drain_poll
            if poll is None or poll.poll(0):
                pair.drain()
            self._in_use.add(pair)
            self.reused += 1
            return pair
        return None

    def release(self, pair: RtpSocketPair, stale_streams: frozenset[tuple[Address, int]]) -> None:
        """Take back a pair whose session ended, remembering that call's streams.

        The pair is closed instead of kept when the pool is closed or already
        keeps `max_idle` pairs.
        """
        try:
            self._in_use.remove(pair)
        except KeyError:
            return
        # `RtpSocketPair.set_idle`, written out to save its Python call per call.
        idle, rtp, rtcp = pair.idle_protocol, pair.rtp, pair.rtcp
        if rtp is not None:
            rtp.set_protocol(idle)
        if rtcp is not None:
            rtcp.set_protocol(idle)
        if self._closed or len(self._idle) >= self._max_idle:
            pair.close()
            return
        pair.stale_streams = stale_streams
        pair.reusable_at = self._clock() + self._quarantine_s
        self._idle.append(pair)

    def give_back(self, pair: RtpSocketPair) -> None:
        """Take back a pair that carried no session since `acquire`; it is reusable at once."""
        if pair not in self._in_use:
            return
        self._in_use.discard(pair)
        if self._closed:
            pair.close()
            return
        self._idle.appendleft(pair)

    def close(self) -> None:
        """Close the idle pairs now, and every pair in use when its session releases it."""
        self._closed = True
        idle = len(self._idle)
        while self._idle:
            self._idle.popleft().close()
        logger.info(
            "rtp socket pool closed: %d idle pairs closed, %d in use; %d pairs bound, %d reuses",
            idle,
            len(self._in_use),
            self.bound,
            self.reused,
        )

    async def _bind_pair(self) -> RtpSocketPair:
        last_error: OSError | None = None
        for _ in range(BIND_ATTEMPTS):
            port = self._ports.acquire()
            pair = RtpSocketPair(port, self._pair_closed)
            try:
                pair.rtp = await self._bind(pair, port)
                pair.rtcp = await self._bind(pair, port + 1)
            except OSError as exc:
                last_error = exc
                logger.warning("rtp port %d busy, trying another: %s", port, exc)
                if pair.rtp is None:
                    self._ports.release(port)
                else:
                    pair.close()
                continue
            return pair
        assert last_error is not None
        raise last_error

    async def _bind(self, pair: RtpSocketPair, port: int) -> asyncio.DatagramTransport:
        sock = socket.socket(self._family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind((self._host, port))
        except OSError:
            sock.close()
            raise
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: pair.idle_protocol, sock=sock)
        pair.loop = loop
        pair.socket_opened()
        return transport

    def _pair_closed(self, pair: RtpSocketPair) -> None:
        self._ports.release(pair.port)
