"""Thin asyncio transports for SIP: UDP datagrams, TCP and TLS streams (RFC 3261 §18).

They only move bytes. UDP hands each datagram to the UA core as it is; TCP
frames the stream with `StreamParser` and hands over parsed messages. A
framing error (missing or oversized Content-Length, oversized headers) closes
the connection after a best-effort 400, because the stream cannot be
resynchronized. Connections are bounded in number, and idle ones are closed.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import ssl
import struct
from collections.abc import Callable
from typing import cast

from lifecycle.tasks import STOP_TIMEOUT_S, cancel_and_wait
from signaling.sip.errors import SipSyntaxError
from signaling.sip.message import SipMessage
from signaling.sip.parser import Limits, StreamParser
from signaling.sip.routing import Peer

logger = logging.getLogger("sip.transport")

# Source addresses whose `Peer` the UDP transport keeps. A full cache is cleared.
PEER_CACHE_SIZE = 4096

# getsockopt option of Linux's asm-generic/socket.h, absent from the socket module.
SO_MEMINFO = 55
_MEMINFO_BYTES = 9 * 4

DatagramHandler = Callable[[bytes, Peer], None]
MessageHandler = Callable[[SipMessage, Peer], None]
ErrorHandler = Callable[[SipSyntaxError, Peer], None]


class UdpTransport(asyncio.DatagramProtocol):
    """One bound UDP socket."""

    def __init__(self, on_datagram: DatagramHandler) -> None:
        self._on_datagram = on_datagram
        self._transport: asyncio.DatagramTransport | None = None
        # `Peer` is immutable and a peer sends many datagrams, so each source
        # address maps to one `Peer`, built once.
        self._peers: dict[tuple[object, ...], Peer] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        peer = self._peers.get(addr)
        if peer is None:
            peer = Peer("udp", str(addr[0]), int(str(addr[1])))
            if len(self._peers) >= PEER_CACHE_SIZE:
                self._peers.clear()
            self._peers[addr] = peer
        try:
            self._on_datagram(data, peer)
        except Exception:
            logger.exception("failed to handle a datagram from %s:%s", peer.host, peer.port)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for earlier sends (port unreachable ...) land here.
        logger.debug("UDP send error: %s", exc)

    def send(self, data: bytes, peer: Peer) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        try:
            self._transport.sendto(data, (peer.host, peer.port))
        except OSError as error:
            logger.debug("UDP send to %s:%s failed: %s", peer.host, peer.port, error)

    @property
    def port(self) -> int:
        assert self._transport is not None
        return int(self._transport.get_extra_info("sockname")[1])

    def queued_bytes(self) -> int | None:
        """Return the memory of the datagrams waiting in the socket, or None where unknown.

        Linux reports it with SO_MEMINFO, counting each datagram with its
        kernel overhead: about 2.3 KB for a 900-byte INVITE on loopback.
        """
        if self._transport is None:
            return None
        sock = self._transport.get_extra_info("socket")
        try:
            raw = sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, _MEMINFO_BYTES)
        except OSError:
            return None
        # The first field is SK_MEMINFO_RMEM_ALLOC, the receive queue's memory.
        return int(struct.unpack_from("I", raw)[0])

    def set_receive_buffer(self, size: int) -> int:
        """Ask for a socket receive buffer of `size` bytes and return the size granted.

        Linux caps the request at net.core.rmem_max and reports twice the
        value it set, because it counts its bookkeeping too.
        """
        assert self._transport is not None
        sock = self._transport.get_extra_info("socket")
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
        except OSError as error:
            logger.warning("could not set the UDP receive buffer to %d bytes: %s", size, error)
        return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class TcpServer:
    """A listening TCP socket (TLS when `tls` is set) and its connections.

    Each connection has its own `StreamParser`.
    """

    def __init__(
        self,
        on_message: MessageHandler,
        on_invalid: ErrorHandler,
        limits: Limits,
        *,
        max_connections: int = 1024,
        idle_timeout: float = 600.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._on_message = on_message
        self._on_invalid = on_invalid
        self._limits = limits
        self._max_connections = max_connections
        self._idle_timeout = idle_timeout
        self._tls = tls
        self.transport = "tls" if tls is not None else "tcp"
        self._server: asyncio.Server | None = None
        self._writers: dict[int, asyncio.StreamWriter] = {}
        self._tasks: set[asyncio.Task[object]] = set()
        self._ids = itertools.count(1)
        self._by_address: dict[tuple[str, int], asyncio.StreamWriter] = {}
        self._connecting: dict[tuple[str, int], asyncio.Future[asyncio.StreamWriter | None]] = {}

    @property
    def connection_count(self) -> int:
        return len(self._writers)

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(
            self._accept,
            host,
            port,
            ssl=self._tls,
            ssl_handshake_timeout=10.0 if self._tls else None,
        )
        return int(self._server.sockets[0].getsockname()[1])

    def send(self, data: bytes, peer: Peer) -> None:
        """Write on the peer's connection; without one, connect to its address first (TCP).

        NOTE: a connection that the peer closed a moment ago, before the loop
        has read its end, still takes the write, and those bytes are lost.
        """
        writer = self._writers.get(peer.connection or 0)
        if writer is not None and not writer.is_closing():
            writer.write(data)
            return
        if self._tls is not None:
            # NOTE: outgoing TLS would need a client context and peer verification.
            logger.debug("TLS connection %s is gone; dropped %d bytes", peer.connection, len(data))
            return
        task = asyncio.ensure_future(self._send_connected(data, peer.host, peer.port))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_connected(self, data: bytes, host: str, port: int) -> None:
        writer = await self._outgoing_connection(host, port)
        if writer is None:
            logger.debug("TCP connect to %s:%s failed; dropped %d bytes", host, port, len(data))
            return
        writer.write(data)

    async def _outgoing_connection(self, host: str, port: int) -> asyncio.StreamWriter | None:
        """Return an open connection to host:port, opening one (shared by concurrent sends)."""
        address = (host, port)
        existing = self._by_address.get(address)
        if existing is not None and not existing.is_closing():
            return existing
        pending = self._connecting.get(address)
        if pending is None:
            pending = asyncio.ensure_future(self._connect(host, port))
            self._connecting[address] = pending
            pending.add_done_callback(lambda _: self._connecting.pop(address, None))
        return await asyncio.shield(pending)

    async def _connect(self, host: str, port: int) -> asyncio.StreamWriter | None:
        if len(self._writers) >= self._max_connections:
            return None
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5.0)
        except (TimeoutError, OSError) as error:
            logger.debug("TCP connect to %s:%s failed: %s", host, port, error)
            return None
        self._by_address[(host, port)] = writer
        task = asyncio.ensure_future(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return writer

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers.values()):
            writer.close()
        still_running = await cancel_and_wait(self._tasks, STOP_TIMEOUT_S)
        if still_running:
            logger.warning(
                "%d connection tasks did not stop within %.0f s", len(still_running), STOP_TIMEOUT_S
            )
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._writers) >= self._max_connections:
            logger.warning(
                "TCP connection limit %d reached; closing a new one", self._max_connections
            )
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._tasks.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read and dispatch messages of one connection until it closes."""
        connection = next(self._ids)
        host, port = writer.get_extra_info("peername")[:2]
        peer = Peer(self.transport, str(host), int(port), connection)
        self._writers[connection] = writer
        logger.debug("TCP connection %d from %s:%s", connection, host, port)
        parser = StreamParser(self._limits)
        try:
            while True:
                data = await asyncio.wait_for(reader.read(65_536), self._idle_timeout)
                if not data:
                    break
                if data in (b"\r\n\r\n",):
                    writer.write(b"\r\n")  # RFC 5626 §3.5.1 keep-alive pong
                    continue
                for item in parser.feed(data):
                    if isinstance(item, SipSyntaxError):
                        self._on_invalid(item, peer)
                    else:
                        self._on_message(item, peer)
                await writer.drain()
                if parser.broken:
                    logger.debug("TCP connection %d: framing error, closing", connection)
                    break
        except (TimeoutError, ConnectionError, OSError) as error:
            logger.debug("TCP connection %d closed: %s", connection, error)
        except asyncio.CancelledError:
            pass
        except Exception:
            logger.exception("TCP connection %d failed", connection)
        finally:
            self._writers.pop(connection, None)
            address = (str(host), int(port))
            if self._by_address.get(address) is writer:
                del self._by_address[address]
            writer.close()
