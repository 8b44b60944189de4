"""RTP sessions on asyncio: port allocation, receive path, paced sender.

Theory of operation. `RtpSession` is one UDP socket for one call leg and the
`FrameTransport` of that leg. The remote address starts as the SDP
connection address and port. Symmetric RTP (RFC 4961): the first packet with
a negotiated payload type latches its source address as the remote address,
so replies reach callers behind NAT. After latching, packets from any other
source are dropped until `set_remote` starts a new latch (after a re-INVITE).

Receive: each datagram is parsed (`RtpPacket.parse`), filtered by source and
payload type, and then either decoded into the jitter buffer (a new SSRC
starts a new buffer), or handed to the RFC 4733 receiver. A plain G.711
packet of the latched stream takes a shortcut through the same steps. Each
send tick also pops one 20 ms frame from the jitter buffer and, through the
clock's `FrameBatch`, hands it to the handler, so inbound audio reaches the
leg at an even pace. Malformed packets are counted and dropped; they never
stop the socket.

Send: the loop's shared `PacketClock` ticks every 20 ms and calls every
session in one burst. Tick n is due at start + n * 20 ms on the loop's
monotonic clock, so a late wake-up never shifts later ticks (no drift).
After a short stall of the event loop, the missed ticks run back to back, so
no audio is lost and the peer's jitter buffer absorbs the burst. After a
stall of more than `max_lag_ms`, the missed ticks are skipped and the RTP
timestamp advances over them, keeping media time equal to wall time.
`send_next_frame_now` sends the first frame of a prompt at once instead of
on the next tick, and that tick then sends nothing, so the frame leaves up
to 20 ms early and later frames keep their times.
Each tick sends one telephone-event packet while a digit is being sent
(RFC 4733 section 2.5.1.2: audio is suppressed during an event), otherwise the
handler's next frame, otherwise an encoded silence frame. Silence keeps
NAT bindings open and keeps peers with an RTP inactivity timer (common on
SBCs and PBXs) from hanging up during long silences such as queue waits.
The sender's state (sequence number, timestamp, marker bit, octets sent,
RTCP and activity deadlines) lives in the session's `SessionCore`
(`media/session_core.py`, in C when the extension is built). The core runs
a tick with nothing to do but idle silence and one inbound frame alone, and
hands every other tick to `_python_send_tick` and `_python_receive_tick`.

Inactivity: `watch_inactivity` arms the peer's media timeout (like
Asterisk's `rtptimeout` or FreeSWITCH's `media_timeout`). No timer or task
per session: every ACTIVITY_CHECK_TICKS ticks of the packet clock (0.5 s) the
session compares its receive counters (RTP packets, RTCP datagrams, RTCP on
the RTP port) with the last check, and once they have not moved for the
timeout (`hold_timeout_s` while `on_hold`), it calls the callback once. The
timeout is thus honoured to within 0.5 s plus the clock's lag.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import ipaddress
import logging
import os
import random
import socket
import struct
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

from ivr.channel import DtmfInput
from media import rtcp
from media.audio import PcmAudio
from media.codecs import Codec, Coder, get_codec
from media.frame_batch import FrameFeatures
from media.jitter import JitterBuffer, JitterConfig
from media.packet_clock import PacketClock
from media.rfc4733 import DtmfReceiver, build_event_payloads
from media.rtcp import (
    NativeReceptionStatistics,
    PythonReceptionStatistics,
    ReceptionStatistics,
    ReportBlock,
)
from media.rtp import RtpPacket
from media.rtp_sockets import NO_STREAM_CALLBACK, Address, RtpSocketPair, RtpSocketPool
from media.session_core import MAX_DATAGRAM, SessionCore
from media.transport import FRAME_MS, FrameHandler, frame_samples
from signaling.sip.tokens import random_bytes

logger = logging.getLogger("media.rtp")

# Ports in a row that may be held by another process before a session's bind gives up.
# A busy port goes back to the end of the range's free list, so later calls skip it.
BIND_ATTEMPTS = 64

_HEADER_SIZE = 12
_PLAIN_FIRST_BYTE = 0x80  # version 2, no padding, no extension, no CSRC
_PLAIN_HEADER = struct.Struct("!BHII")  # the header after its first byte
SOCKET_CLOSE_TIMEOUT_S = 1.0
_RTCP_PACKET_TYPES = range(200, 205)
# Interval, in 20 ms ticks, between checks of a watched session's receive counters.
ACTIVITY_CHECK_TICKS = 25
# SSRCs of the latched source that a pooled session hands on as stale streams.
MAX_REMEMBERED_SSRCS = 8
# The G.711 codecs by name: True for A-law, False for µ-law.
_G711_ALAW = {"PCMU": False, "PCMA": True}
# The jitter settings of every config that sets none. Because it is one instance,
# `_empty_jitter_buffer` can match a config by identity.
_DEFAULT_JITTER = JitterConfig()
# By codec name, the jitter config and the empty buffer that `_empty_jitter_buffer`
# returned last.
_empty_jitter_buffers: dict[str, tuple[JitterConfig, JitterBuffer]] = {}

_Reception = NativeReceptionStatistics | PythonReceptionStatistics
# A session's random seed: SSRC, first sequence number, first timestamp, CNAME suffix.
_SEED = struct.Struct("!IHI6s")
# Seeds are cut from one block of random bytes per _SEEDS_PER_BLOCK sessions, which costs a
# session about 40 instead of 330 ns (timeit, CPython 3.11, 2-vCPU VM).
_SEEDS_PER_BLOCK = 64
_seeds: Iterator[tuple[Any, ...]] = iter(())


def _next_seed_block() -> Iterator[tuple[Any, ...]]:
    """Draw the seeds of the next _SEEDS_PER_BLOCK sessions and return their iterator."""
    global _seeds
    _seeds = _SEED.iter_unpack(random_bytes(_SEED.size * _SEEDS_PER_BLOCK))
    return _seeds


def _drop_seeds() -> None:
    """Drop the unused seeds, so that a forked child never shares a seed with its parent."""
    global _seeds
    _seeds = iter(())


os.register_at_fork(after_in_child=_drop_seeds)
_NO_STREAMS: frozenset[tuple[Address, int]] = frozenset()


class RtpPortPool:
    """Even RTP ports in [low, high], handed out and taken back by sessions.

    The odd port above each even one stays free for RTCP (RFC 3550 section 11).
    """

    def __init__(self, low: int, high: int) -> None:
        if not 1024 <= low < high <= 65535:
            raise ValueError(f"invalid RTP port range {low}-{high}")
        first = low + (low & 1)
        self._free: deque[int] = deque(range(first, high, 2))
        self._used: set[int] = set()
        if not self._free:
            raise ValueError(f"RTP port range {low}-{high} contains no even port")

    def acquire(self) -> int:
        """Take the least recently used free port. Raises RuntimeError when none is free."""
        if not self._free:
            raise RuntimeError("no free RTP port in the configured range")
        port = self._free.popleft()
        self._used.add(port)
        return port

    def release(self, port: int) -> None:
        """Give `port` back. Releasing a port twice is harmless."""
        if port in self._used:
            self._used.discard(port)
            self._free.append(port)

    @property
    def free_count(self) -> int:
        return len(self._free)


@dataclass(frozen=True, slots=True)
class RtpSessionConfig:
    """The negotiated media of one RTP leg (from the SDP offer/answer)."""

    codec_name: str = "PCMU"
    payload_type: int = 0
    telephone_event_payload_type: int | None = 101
    telephone_event_clock_rate: int = 8000
    send_silence_when_idle: bool = True
    max_lag_ms: int = 300
    dtmf_gap_ms: int = 60
    dtmf_end_timeout_ms: int = 600
    jitter: JitterConfig = _DEFAULT_JITTER
    rtcp_mux: bool = False
    rtcp_interval_s: float = 5.0


def _empty_jitter_buffer(codec: Codec, config: JitterConfig) -> JitterBuffer:
    """Return a jitter buffer for `codec` and `config` that sessions share until their first audio.

    `RtpSession._receive_audio` gives a session a buffer of its own at its
    first audio packet, before any push, so nothing is ever pushed into the
    shared one. Popping a buffer that was never pushed returns None and
    changes no state, so a session that receives no audio builds no buffer of its own.
    """
    entry = _empty_jitter_buffers.get(codec.name)
    if entry is not None and entry[0] is config:
        return entry[1]
    buffer = JitterBuffer(codec.sample_rate, codec.clock_rate, config=config)
    _empty_jitter_buffers[codec.name] = (config, buffer)
    return buffer


@functools.cache
def _g711_silence_payload(codec_name: str) -> bytes:
    """Return one frame of encoded silence for the stateless G.711 codec `codec_name`."""
    codec = get_codec(codec_name)
    return codec.new_encoder()(bytes(2 * frame_samples(codec.sample_rate)))


@functools.cache
def _g711_coders(codec_name: str) -> tuple[Coder, Coder]:
    """Return the encoder and decoder of the stateless G.711 codec `codec_name`.

    Every session can share them, and the cache lookup by name costs no Python call.
    """
    codec = get_codec(codec_name)
    return codec.new_encoder(), codec.new_decoder()


@functools.cache
def _session_codec(codec_name: str) -> tuple[Codec, tuple[bool, Coder, Coder, bytes] | None]:
    """Return the codec called `codec_name` and, for G.711, the parts that sessions share.

    The parts are whether the payload is A-law, the encoder, the decoder and
    one frame of encoded silence. The cache lookup by name costs a session no
    Python call, where `get_codec` and the G.711 lookups cost one each. Raises
    KeyError for an unknown codec.
    """
    codec = get_codec(codec_name)
    g711_alaw = _G711_ALAW.get(codec.name)
    if g711_alaw is None:
        return codec, None
    encode, decode = _g711_coders(codec.name)
    return codec, (g711_alaw, encode, decode, _g711_silence_payload(codec.name))


def _bind_arguments(family: int, host: str, port: int) -> dict[str, Any]:
    """Return the `create_datagram_endpoint` arguments for a socket on `host:port`.

    An IP address is bound here and passed as `sock`, because uvloop 0.23
    resolves `local_addr` first, which made opening a session cost about
    four times the CPU (78 against 20 µs per socket, timeit on a 2-core VM).
    A host name still goes through `local_addr`. Raises OSError when the port is taken.
    """
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return {"local_addr": (host, port), "family": family}
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return {"sock": sock}


class LatchState(enum.Enum):
    WAITING = "waiting"
    LATCHED = "latched"


@dataclass(slots=True)
class RtpStats:
    """Counters of one session, for logs and metrics."""

    packets_received: int = 0
    packets_sent: int = 0
    malformed: int = 0
    wrong_source: int = 0
    wrong_payload_type: int = 0
    rtcp_ignored: int = 0
    """RTCP datagrams on the RTP port of a session that did not negotiate rtcp-mux."""
    rtcp_received: int = 0
    """RTCP datagrams from the peer's address, whether they parsed or not."""
    send_errors: int = 0
    stale_source: int = 0
    """Packets of the previous call's stream on a reused socket pair, never latched."""
    ticks_skipped: int = 0
    payload_types_seen: set[int] = field(default_factory=set)


@dataclass(slots=True)
class _OutgoingEvent:
    payloads: deque[bytes]
    timestamp: int
    first: bool = True


class RtpSession(asyncio.DatagramProtocol):
    """One RTP stream pair (receive and send) on one local UDP port."""

    # A node builds one session per call. Slots spare each of them an instance dict of
    # about fifty keys, which is too many for the keys to be shared between instances.
    __slots__ = (
        "__weakref__",
        "_activity_seen",
        "_audio_ssrc",
        "_clock",
        "_clock_key",
        "_closed",
        "_cname",
        "_core",
        "_decode",
        "_dtmf",
        "_dtmf_queue",
        "_encode",
        "_events",
        "_frame_receiver_read",
        "_frame_sent_early",
        "_gap_ticks",
        "_handler",
        "_hold_timeout_s",
        "_latch",
        "_loop",
        "_on_inactive",
        "_pair",
        "_quiet_since",
        "_reception",
        "_release_port",
        "_remote",
        "_rtcp_sent",
        "_rtcp_transport",
        "_sent_at_last_report",
        "_silence_payload",
        "_silence_pcm",
        "_socket_pool",
        "_sockets_lost",
        "_ssrc",
        "_ssrcs_seen",
        "_stale_streams",
        "_timeout_s",
        "_timestamp_step",
        "_transport",
        "call_id",
        "clock_core",
        "codec",
        "config",
        "datagram_received",
        "jitter",
        "on_hold",
        "remote_report",
        "round_trip_ms",
        "sample_rate",
        "stats",
    )
    # Spares `set_protocol` a caught AttributeError (see `media.rtp_sockets`).
    data_received = NO_STREAM_CALLBACK

    def __init__(
        self,
        config: RtpSessionConfig,
        *,
        call_id: str = "-",
        remote: tuple[str, int] | None = None,
    ) -> None:
        self.config = config
        self.call_id = call_id
        codec, g711 = _session_codec(config.codec_name)
        self.codec = codec
        # A plain attribute, because `MediaLeg` reads it for each new leg and a property
        # would cost a Python call.
        self.sample_rate: int = codec.sample_rate
        """The rate of the PCM frames exchanged with the handler, in Hz."""
        # Whether the payload is A-law, for the G.711 receive shortcut; None for other codecs.
        g711_alaw: bool | None
        # G.711 is stateless, so its coders are shared and its silence payload is encoded
        # once per process. G.722 keeps state and encodes `_silence_pcm` on each idle tick.
        if g711 is not None:
            g711_alaw, self._encode, self._decode, silence_payload = g711
            self._silence_payload: bytes | None = silence_payload
            self._silence_pcm = b""
        else:
            g711_alaw = None
            self._encode = codec.new_encoder()
            self._decode = codec.new_decoder()
            self._silence_payload = None
            self._silence_pcm = bytes(2 * frame_samples(codec.sample_rate))
        self.stats = RtpStats()
        self._remote = remote
        self._latch = LatchState.WAITING
        self._transport: asyncio.DatagramTransport | None = None
        self._handler: FrameHandler | None = None
        # The handler's C receiver of inbound frames (`MediaLeg.frame_receiver`) is read
        # at the first inbound frame after `attach`, because reading it makes a
        # `MediaLeg` build its endpointer and in-band detector. The core keeps it.
        self._frame_receiver_read = False
        self._clock: PacketClock | None = None
        self._clock_key: int | None = None
        self._frame_sent_early = False
        self._closed = False
        # Built by `_receive_event` at the first telephone-event packet.
        self._dtmf: DtmfReceiver | None = None
        self._timestamp_step = codec.clock_rate * FRAME_MS // 1000
        # 16 bytes from the OS random source (through the buffered pool of
        # `signaling.sip.tokens`) give SSRC, first sequence number, first
        # timestamp (RFC 3550 §5.1) and the CNAME's suffix. Each seed is used once.
        seed = next(_seeds, None)
        if seed is None:
            seed = next(_next_seed_block())
        ssrc, first_sequence, first_timestamp, cname_suffix = seed
        self._ssrc: int = ssrc
        # The digits to send and the events being sent, built by `send_dtmf` and
        # `_send_event_packet` at the first digit.
        self._dtmf_queue: deque[tuple[str, int]] | None = None
        self._events: deque[_OutgoingEvent] | None = None
        self._gap_ticks = 0
        self._audio_ssrc: int | None = None
        # The cache check of `_empty_jitter_buffer`, written out to save its Python call.
        shared = _empty_jitter_buffers.get(codec.name)
        if shared is not None and shared[0] is config.jitter:
            self.jitter = shared[1]
        else:
            self.jitter = _empty_jitter_buffer(codec, config.jitter)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rtcp_transport: asyncio.DatagramTransport | None = None
        # Built by the `reception` property at the first audio packet or RTCP report, so a
        # call that receives neither builds none.
        self._reception: _Reception | None = None
        self.remote_report: ReportBlock | None = None
        """The peer's latest reception report about our stream (loss, jitter)."""
        self.round_trip_ms: float | None = None
        self._sent_at_last_report = 0
        self._rtcp_sent = False
        self._cname = f"voxgate-{cname_suffix.hex()}"
        self._release_port: Callable[[], None] | None = None
        # The pooled socket pair this session runs on (`open_on_pair`), and its pool.
        self._pair: RtpSocketPair | None = None
        self._socket_pool: RtpSocketPool | None = None
        # The previous call's (source, SSRC) streams on a pooled pair, and the SSRCs
        # this session took from its latched source (at most MAX_REMEMBERED_SSRCS).
        self._stale_streams: frozenset[tuple[Address, int]] = _NO_STREAMS
        self._ssrcs_seen: set[int] | None = None
        # Resolved by connection_lost of the RTP socket (first) and the RTCP socket.
        self._sockets_lost: list[asyncio.Future[None]] = []
        # The peer's media timeout (`watch_inactivity`); None while unwatched.
        self._on_inactive: Callable[[], None] | None = None
        self._timeout_s = 0.0
        self._hold_timeout_s = 0.0
        self.on_hold = False
        """True while the peer's SDP puts the call on hold or sends no audio (see `sdp_holds`)."""
        self._activity_seen = -1
        self._quiet_since = 0.0
        # The core keeps the sender's state and runs the common tick (see
        # `media.session_core`). On a G.711 session that sends silence when idle, `attach`
        # makes a handler with an `outbound_idle` flag (a `MediaLeg`) its `idle_handler`.
        self._core = SessionCore(
            ssrc,
            first_sequence,
            first_timestamp,
            self._timestamp_step,
            config.payload_type,
            config.max_lag_ms,
            FRAME_MS,
            self.stats,
            self._silence_payload,
        )
        self._core.remote = remote
        self._core.jitter = self.jitter
        self._core.g711_alaw = g711_alaw
        self._core.session_ref = weakref.ref(self)
        self.clock_core = self._core
        """The core that `PacketClock` runs this session's ticks on."""
        # The event loop looks up `datagram_received` on the protocol for each datagram. This
        # slot is the core's bound method, so a datagram reaches C without a Python frame.
        # The usual packet of a latched G.711 stream has a plain header from the latched
        # source with the audio payload type and the current SSRC. For such a packet, that
        # one call (in C when media._rtpcore is built) checks the header, decodes the payload
        # into the jitter buffer and updates the RTCP reception statistics. The core hands
        # any other packet to `_receive_datagram`.
        self.datagram_received = self._core.datagram_received  # type: ignore[method-assign]

    # -- setup -----------------------------------------------------------

    @classmethod
    async def open(
        cls,
        config: RtpSessionConfig,
        *,
        local_host: str,
        local_port: int,
        remote: tuple[str, int] | None = None,
        call_id: str = "-",
    ) -> RtpSession:
        """Bind a session to `local_host:local_port` (and RTCP to the next port unless muxed).

        Raises OSError if a port is taken.
        """
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in local_host else socket.AF_INET
        _, protocol = await loop.create_datagram_endpoint(
            lambda: cls(config, call_id=call_id, remote=remote),
            **_bind_arguments(family, local_host, local_port),
        )
        if not config.rtcp_mux:
            try:
                rtcp_transport, _ = await loop.create_datagram_endpoint(
                    lambda: _RtcpProtocol(protocol),
                    **_bind_arguments(family, local_host, local_port + 1),
                )
            except OSError:
                protocol._close_sockets()
                raise
            protocol._rtcp_transport = rtcp_transport
        return protocol

    @classmethod
    async def open_from_pool(
        cls,
        pool: RtpPortPool,
        config: RtpSessionConfig,
        *,
        local_host: str,
        remote: tuple[str, int] | None = None,
        call_id: str = "-",
        attempts: int = BIND_ATTEMPTS,
    ) -> RtpSession:
        """Bind to a port from `pool`, skipping ports another process holds.

        The port goes back to the pool when the session closes. Raises
        RuntimeError when the pool is exhausted, OSError after `attempts` busy ports.
        """
        last_error: OSError | None = None
        for _ in range(attempts):
            port = pool.acquire()
            try:
                session = await cls.open(
                    config, local_host=local_host, local_port=port, remote=remote, call_id=call_id
                )
            except OSError as exc:
                last_error = exc
                pool.release(port)
                logger.warning("call %s: rtp port %d busy, trying another", call_id, port)
                continue
            session.on_close_release(functools.partial(pool.release, port))
            return session
        assert last_error is not None
        raise last_error

    @classmethod
    def open_on_pair(
        cls,
        pool: RtpSocketPool,
        pair: RtpSocketPair,
        config: RtpSessionConfig,
        *,
        remote: tuple[str, int] | None = None,
        call_id: str = "-",
    ) -> RtpSession:
        """Run a session on a pair from `pool.acquire()`; `close` gives the pair back.

        The session never latches onto a stream of the previous call
        (`pair.stale_streams`: source and SSRC) unless that source is
        `remote` itself. The RTCP socket stays idle when the session muxes RTCP.
        """
        if pair.rtp is None or pair.rtcp is None:
            raise RuntimeError(f"RTP socket pair on port {pair.port} is not bound")
        session = cls(config, call_id=call_id, remote=remote)
        session._pair = pair
        session._socket_pool = pool
        if pair.stale_streams:
            session._stale_streams = frozenset(
                stream for stream in pair.stale_streams if stream[0] != remote
            )
        # The loop that bound the pair runs its sessions. Reading it from the pair spares
        # the getpid system call of `asyncio.get_running_loop` on CPython 3.11.
        loop = session._loop = pair.loop if pair.loop is not None else asyncio.get_running_loop()
        session._core.loop_time = loop.time
        session._transport = session._core.transport = pair.rtp
        pair.rtp.set_protocol(session)
        if not config.rtcp_mux:
            session._rtcp_transport = pair.rtcp
            # One RTCP protocol serves every session of the pair in turn, and `close` clears
            # its session.
            rtcp_protocol = pair.rtcp_protocol
            if rtcp_protocol is None:
                rtcp_protocol = pair.rtcp_protocol = _RtcpProtocol(session, track_close=False)
            else:
                rtcp_protocol._session = session
            pair.rtcp.set_protocol(rtcp_protocol)
        return session

    def on_close_release(self, release: Callable[[], None]) -> None:
        """Call `release` (giving the port back) once `close` has closed the sockets."""
        self._release_port = release

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = self._core.transport = cast(asyncio.DatagramTransport, transport)
        self._loop = asyncio.get_running_loop()
        self._core.loop_time = self._loop.time
        self._sockets_lost.append(self._loop.create_future())

    @property
    def local_address(self) -> tuple[str, int]:
        if self._transport is None:
            raise RuntimeError("RTP session is not bound")
        host, port = self._transport.get_extra_info("sockname")[:2]
        return host, port

    @property
    def remote(self) -> tuple[str, int] | None:
        return self._remote

    @property
    def latch_state(self) -> LatchState:
        return self._latch

    @property
    def ssrc(self) -> int:
        return self._ssrc

    @property
    def reception(self) -> _Reception:
        """RTCP reception statistics of the received audio stream (RFC 3550 A.1, A.8)."""
        reception = self._reception
        if reception is None:
            reception = self._reception = self._core.reception = ReceptionStatistics(
                self.codec.clock_rate
            )
        return reception

    def set_remote(self, remote: tuple[str, int] | None) -> None:
        """Point the stream at a new SDP address (None: on hold) and latch again."""
        self._remote = self._core.remote = remote
        if remote is not None and self._stale_streams:
            self._stale_streams = frozenset(
                stream for stream in self._stale_streams if stream[0] != remote
            )
        self._set_latch(LatchState.WAITING)

    def watch_inactivity(
        self, timeout_s: float, hold_timeout_s: float, on_inactive: Callable[[], None]
    ) -> None:
        """Call `on_inactive` once when no RTP or RTCP came for `timeout_s`.

        While `on_hold` is True the limit is `hold_timeout_s` instead. A limit
        of 0 never fires. The time counts from this call, and the checks run on
        the packet clock's ticks, so only an attached session is watched.
        """
        self._on_inactive = on_inactive
        self._core.watching = True
        self._timeout_s = timeout_s
        self._hold_timeout_s = hold_timeout_s
        stats = self.stats
        self._activity_seen = stats.packets_received + stats.rtcp_received + stats.rtcp_ignored
        self._quiet_since = time.monotonic()

    def _check_activity(self, tick: int) -> None:
        self._core.next_activity_tick = tick + ACTIVITY_CHECK_TICKS
        stats = self.stats
        seen = stats.packets_received + stats.rtcp_received + stats.rtcp_ignored
        now = time.monotonic()
        if seen != self._activity_seen:
            self._activity_seen = seen
            self._quiet_since = now
            return
        limit = self._hold_timeout_s if self.on_hold else self._timeout_s
        if limit <= 0 or now - self._quiet_since < limit:
            return
        callback, self._on_inactive = self._on_inactive, None
        self._core.watching = False
        logger.debug(
            "call %s: no RTP or RTCP for %.1f s%s",
            self.call_id,
            now - self._quiet_since,
            " (on hold)" if self.on_hold else "",
        )
        if callback is not None:
            callback()

    def attach(self, handler: FrameHandler) -> None:
        """Start the paced sender and deliver received media to `handler`."""
        if self._closed:
            raise RuntimeError("RTP session is closed")
        self._handler = handler
        self._core.frame_receiver = None
        self._frame_receiver_read = False
        silence_shortcut = self._silence_payload is not None and self.config.send_silence_when_idle
        if silence_shortcut and hasattr(handler, "outbound_idle"):
            self._core.idle_handler = handler
        else:
            self._core.idle_handler = None
        if self._clock_key is None:
            # RFC 3550 section 6.2: the first report waits half the interval. This is
            # `_schedule_rtcp(0.5)`, written out to save its Python call per call.
            self._core.next_rtcp_s = time.monotonic() + self.config.rtcp_interval_s * 0.5 * (
                0.5 + random.random()
            )
            # The loop kept by `open_on_pair` or `connection_made` spares the getpid
            # system call of `asyncio.get_running_loop` on CPython 3.11.
            loop = self._loop if self._loop is not None else asyncio.get_running_loop()
            self._clock = PacketClock.for_loop(loop)
            self._clock_key = self._clock.add(self)

    async def close(self) -> None:
        """Stop sending, close the socket and tell the handler. Safe to call twice."""
        if self._closed:
            return
        self._closed = self._core.closed = True
        # The callback usually refers back to this session, so drop it to spare the
        # garbage collector a cycle per call.
        self._on_inactive = None
        self._core.watching = False
        if self._clock is not None and self._clock_key is not None:
            self._clock.remove(self._clock_key)
            self._clock_key = None
        # RFC 3550 section 6.3.7: no BYE from a participant that sent no RTP or RTCP.
        if self.stats.packets_sent or self._rtcp_sent:
            self._send_rtcp(bye=True)
        pair = self._pair
        if pair is not None:
            # Give the pair back with the streams of this call, so that the next session on
            # it drops their late packets (see `media.rtp_sockets`).
            streams = _NO_STREAMS
            source = self._remote
            if self._latch is LatchState.LATCHED and source is not None and self._ssrcs_seen:
                streams = frozenset((source, ssrc) for ssrc in self._ssrcs_seen)
            # `_transport` stays for `local_address`; `_closed` already stops every send on it.
            self._rtcp_transport = None
            if pair.rtcp_protocol is not None:
                # The pair keeps its RTCP protocol for the next session, but not this session.
                pair.rtcp_protocol._session = None
            pool = self._socket_pool
            assert pool is not None
            pool.release(pair, streams)
            self._finish_close()
            return
        self._close_sockets()
        try:
            await self._wait_sockets_closed()
        finally:
            # Even when the caller is cancelled meanwhile, the port goes back
            # and the handler learns of the end.
            self._finish_close()

    def _finish_close(self) -> None:
        if self._release_port is not None:
            self._release_port()
            self._release_port = None
        handler, self._handler = self._handler, None
        # The receiver is bound to the handler's C core, which refers to the handler.
        self._core.frame_receiver = None
        self._core.idle_handler = None
        if handler is not None:
            handler.on_transport_closed()
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "call %s: rtp closed, received %d sent %d malformed %d wrong source %d",
                self.call_id,
                self.stats.packets_received,
                self.stats.packets_sent,
                self.stats.malformed,
                self.stats.wrong_source,
            )

    async def _wait_sockets_closed(self) -> None:
        """Wait until the loop has closed both sockets, so that their ports can be bound again.

        A transport closes its socket on a later loop iteration, and a
        delayed-offer call reopens the same port right after `close`.
        """
        pending = [future for future in self._sockets_lost if not future.done()]
        if pending:
            await asyncio.wait(pending, timeout=SOCKET_CLOSE_TIMEOUT_S)

    def _close_sockets(self) -> None:
        if self._transport is not None:
            self._transport.close()
        if self._rtcp_transport is not None:
            self._rtcp_transport.close()

    def _set_latch(self, new: LatchState) -> None:
        if new is not self._latch:
            logger.debug("call %s: rtp latch %s -> %s", self.call_id, self._latch.value, new.value)
            self._latch = new
            self._core.latched = new is LatchState.LATCHED

    # -- receive ---------------------------------------------------------

    def _receive_datagram(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        source = (str(addr[0]), int(addr[1]))
        if len(data) > MAX_DATAGRAM:
            self.stats.malformed += 1
            return
        if len(data) >= 2 and data[1] in _RTCP_PACKET_TYPES:
            if self.config.rtcp_mux:
                self.rtcp_received(data, source)
            else:
                self.stats.rtcp_ignored += 1
            return
        if len(data) > _HEADER_SIZE and data[0] == _PLAIN_FIRST_BYTE:
            # The usual packet (version 2 without padding, extension or CSRCs) is read
            # here without building an RtpPacket; anything else takes the full parser.
            second, sequence, timestamp, ssrc = _PLAIN_HEADER.unpack_from(data, 1)
            self.stats.packets_received += 1
            self._receive_packet(second & 0x7F, sequence, timestamp, ssrc, data[12:], source)
            return
        try:
            packet = RtpPacket.parse(data)
        except ValueError as exc:
            self.stats.malformed += 1
            logger.debug("call %s: dropped malformed RTP: %s", self.call_id, exc)
            return
        self.stats.packets_received += 1
        self._receive_packet(
            packet.payload_type,
            packet.sequence_number,
            packet.timestamp,
            packet.ssrc,
            packet.payload,
            source,
        )

    def _receive_packet(
        self,
        payload_type: int,
        sequence: int,
        timestamp: int,
        ssrc: int,
        payload: bytes,
        source: tuple[str, int],
    ) -> None:
        is_audio = payload_type == self.config.payload_type
        is_event = payload_type == self.config.telephone_event_payload_type
        if not (is_audio or is_event):
            self.stats.wrong_payload_type += 1
            if payload_type not in self.stats.payload_types_seen:
                self.stats.payload_types_seen.add(payload_type)
                logger.debug(
                    "call %s: dropped RTP with unnegotiated payload type %d",
                    self.call_id,
                    payload_type,
                )
            return

        if self._latch is LatchState.WAITING:
            if self._stale_streams and (source, ssrc) in self._stale_streams:
                # The previous call's stream on a reused socket pair (see `media.rtp_sockets`).
                self.stats.stale_source += 1
                return
            # NOTE: the first packet with a negotiated payload type is trusted whatever its
            # source, as most SBCs do; a packet injected before the caller's first one wins.
            if source != self._remote:
                logger.info("call %s: rtp source latched, replies follow the source", self.call_id)
            self._remote = self._core.remote = source
            self._set_latch(LatchState.LATCHED)
        elif source != self._remote:
            self.stats.wrong_source += 1
            return
        seen = self._ssrcs_seen
        if seen is None:
            seen = self._ssrcs_seen = set()
        if ssrc not in seen and len(seen) < MAX_REMEMBERED_SSRCS:
            seen.add(ssrc)

        if is_audio:
            self._receive_audio(sequence, timestamp, ssrc, payload)
        else:
            self._receive_event(timestamp, ssrc, payload)

    def _receive_audio(self, sequence: int, timestamp: int, ssrc: int, payload: bytes) -> None:
        reception = self._reception
        if reception is None:
            reception = self.reception
        reception.update(ssrc, sequence, timestamp, time.time())
        if ssrc != self._audio_ssrc:
            if self._audio_ssrc is not None:
                logger.debug("call %s: rtp ssrc changed, jitter buffer reset", self.call_id)
            self._audio_ssrc = self._core.audio_ssrc = ssrc
            self.jitter = self._core.jitter = self._new_jitter_buffer()
        try:
            pcm = self._decode(payload)
        except ValueError as exc:
            self.stats.malformed += 1
            logger.debug("call %s: undecodable audio payload: %s", self.call_id, exc)
            return
        self.jitter.push(timestamp, pcm, self._now_ms())

    def _new_jitter_buffer(self) -> JitterBuffer:
        return JitterBuffer(
            self.codec.sample_rate, self.codec.clock_rate, config=self.config.jitter
        )

    def _receive_event(self, timestamp: int, ssrc: int, payload: bytes) -> None:
        receiver = self._dtmf
        if receiver is None:
            receiver = self._dtmf = DtmfReceiver(
                self.config.telephone_event_clock_rate,
                end_timeout_ms=self.config.dtmf_end_timeout_ms,
                call_id=self.call_id,
            )
        try:
            digits = receiver.receive(ssrc, timestamp, payload, self._now_ms())
        except ValueError as exc:
            self.stats.malformed += 1
            logger.debug("call %s: dropped telephone-event: %s", self.call_id, exc)
            return
        finally:
            # A digit that started needs `_dtmf.poll` on each tick until it ends.
            self._update_python_due()
        self._deliver_digits(digits)

    def _deliver_digits(self, digits: list[DtmfInput]) -> None:
        handler = self._handler
        if handler is None:
            return
        for digit in digits:
            logger.debug("call %s: rfc4733 digit received", self.call_id)
            handler.on_dtmf(digit)

    def error_received(self, exc: Exception) -> None:
        self.stats.send_errors += 1
        logger.debug("call %s: rtp socket error: %s", self.call_id, exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            logger.warning("call %s: rtp socket lost: %s", self.call_id, exc)
        if self._pair is not None:
            self._pair.socket_closed()
        if self._sockets_lost and not self._sockets_lost[0].done():
            self._sockets_lost[0].set_result(None)

    def _now_ms(self) -> int:
        loop = self._loop or asyncio.get_running_loop()
        return int(loop.time() * 1000)

    # -- send ------------------------------------------------------------

    def send_dtmf(self, digits: str, duration_ms: int = 100) -> None:
        """Queue digits to send as RFC 4733 events. Raises ValueError for a non-DTMF character."""
        if self.config.telephone_event_payload_type is None:
            raise RuntimeError("telephone-event was not negotiated for this session")
        queue = self._dtmf_queue
        if queue is None:
            queue = self._dtmf_queue = deque()
        for digit in digits:
            build_event_payloads(digit, duration_ms)  # validates before queueing
            queue.append((digit, duration_ms))
        self._update_python_due()

    @property
    def sending_dtmf(self) -> bool:
        """Whether queued or running digits remain to be sent."""
        return bool(self._events or self._dtmf_queue)

    def send_next_frame_now(self) -> None:
        """Send the handler's next frame now instead of on the next tick (a prompt's start).

        The next tick then sends nothing, so the RTP timestamps keep their
        spacing and the frame leaves at most one ptime early. Does nothing
        while DTMF events are queued or before `attach`.
        """
        handler = self._handler
        if (
            handler is None
            or self._closed
            or self._clock_key is None
            or self._frame_sent_early
            or self.sending_dtmf
        ):
            return
        self._frame_sent_early = True
        self._core.python_due = True
        self._send_outbound(handler)

    def clock_send(self, tick: int, lag_s: float) -> None:
        """Run the send half of one 20 ms tick of the packet clock.

        The core skips the ticks missed after a stall of more than
        `max_lag_ms` and sends the silence packet of an idle tick. It hands
        any other tick to `_python_send_tick`.
        """
        self._core.clock_send(self, tick, lag_s)

    def _python_send_tick(self, tick: int) -> None:
        """Run the send half of a tick that the core does not finish alone."""
        core = self._core
        try:
            if self._on_inactive is not None and tick >= core.next_activity_tick:
                self._check_activity(tick)
            receiver = self._dtmf
            if receiver is not None and receiver.active:
                self._deliver_digits(receiver.poll(self._now_ms()))
            if time.monotonic() >= core.next_rtcp_s:
                self._send_rtcp()
            idle_handler = core.idle_handler
            if self._frame_sent_early:
                # This tick's frame already left in `send_next_frame_now`.
                self._frame_sent_early = False
            elif (
                idle_handler is not None
                and idle_handler.outbound_idle
                and not self._events
                and not self._dtmf_queue
                and not self._gap_ticks
            ):
                core.send_idle()
            else:
                self._send_outbound(self._handler)
        except Exception:
            logger.exception("call %s: rtp send tick failed", self.call_id)
        self._update_python_due()

    def _update_python_due(self) -> None:
        """Tell the core whether the send half of the next tick needs `_python_send_tick`."""
        self._core.python_due = bool(
            self._events
            or self._dtmf_queue
            or self._gap_ticks
            or self._frame_sent_early
            or (self._dtmf is not None and self._dtmf.active)
        )

    def _log_tick_error(self, receiving: bool, error: Exception) -> None:
        if receiving:
            logger.error("call %s: inbound frame handling failed", self.call_id, exc_info=error)
        else:
            logger.error("call %s: rtp send tick failed", self.call_id, exc_info=error)

    def clock_receive(self, tick: int) -> None:
        """Pop one frame from the jitter buffer for the handler, once per tick that sent.

        A handler with a C receiver (`MediaLeg.frame_receiver`) gets the frame
        at once, and the receiver computes its features. Otherwise the frame
        joins the clock's `FrameBatch`, which analyzes the frames of all
        sessions of the tick together and then calls `_deliver_frame`.
        """
        self._core.clock_receive(self)

    def _python_receive_tick(self) -> None:
        """Pop the tick's frame while the core has no frame receiver, and hand it out."""
        inbound = self.jitter.pop()
        if inbound is None or self._handler is None:
            return
        receiver = self._core.frame_receiver
        if not self._frame_receiver_read:
            receiver = self._core.frame_receiver = getattr(self._handler, "frame_receiver", None)
            self._frame_receiver_read = True
        if receiver is not None:
            try:
                receiver(inbound[0], None)
            except Exception:
                logger.exception("call %s: inbound frame handling failed", self.call_id)
        elif self._clock is not None:
            self._clock.frames.add(inbound[0], self.codec.sample_rate, self._deliver_frame)
        else:
            self._deliver_frame(inbound[0], None)

    def _deliver_frame(self, pcm: bytes, features: FrameFeatures | None) -> None:
        handler = self._handler
        if handler is None:
            return
        frame = PcmAudio(pcm, self.codec.sample_rate)
        try:
            analyzed = getattr(handler, "on_analyzed_frame", None)
            if analyzed is not None:
                analyzed(frame, features)
            else:
                handler.on_audio_frame(frame)
        except Exception:
            logger.exception("call %s: inbound frame handling failed", self.call_id)

    def _send_outbound(self, handler: FrameHandler | None) -> None:
        core = self._core
        frame = handler.next_frame() if handler is not None else None
        if self._send_event_packet():
            pass
        elif frame is not None:
            if frame.sample_rate != self.codec.sample_rate:
                raise ValueError(
                    f"outbound frame at {frame.sample_rate} Hz, session runs at "
                    f"{self.codec.sample_rate} Hz"
                )
            core.send(self.config.payload_type, self._encode(frame.pcm), core.timestamp, False)
        elif self.config.send_silence_when_idle:
            payload = self._silence_payload
            if payload is None:
                payload = self._encode(self._silence_pcm)
            core.send(self.config.payload_type, payload, core.timestamp, False)
        else:
            core.marker_next = True  # the next packet starts a talkspurt (RFC 3551 section 4.1)
        core.timestamp = (core.timestamp + self._timestamp_step) & 0xFFFFFFFF

    def _send_event_packet(self) -> bool:
        events = self._events
        if not events:
            if self._gap_ticks > 0:
                self._gap_ticks -= 1
                return False
            queue = self._dtmf_queue
            if not queue:
                return False
            digit, duration_ms = queue.popleft()
            payloads = build_event_payloads(
                digit, duration_ms, clock_rate=self.config.telephone_event_clock_rate
            )
            if events is None:
                events = self._events = deque()
            events.append(_OutgoingEvent(deque(payloads), self._core.timestamp))
        event = events[0]
        payload_type = self.config.telephone_event_payload_type
        assert payload_type is not None
        self._core.send(payload_type, event.payloads.popleft(), event.timestamp, event.first)
        event.first = False
        if not event.payloads:
            events.popleft()
            self._gap_ticks = self.config.dtmf_gap_ms // FRAME_MS
        return True

    # -- RTCP (RFC 3550 section 6) -----------------------------------------

    def _rtcp_remote(self) -> tuple[str, int] | None:
        if self._remote is None:
            return None
        host, port = self._remote
        return (host, port) if self.config.rtcp_mux else (host, port + 1)

    def _schedule_rtcp(self, share: float) -> None:
        # `attach` repeats this inline for the first report of a session.
        interval = self.config.rtcp_interval_s * share
        # RFC 3550 section 6.3.1: randomize the interval to 0.5-1.5 times its value. The
        # factor only keeps participants from reporting in step, so it needs no secret source.
        self._core.next_rtcp_s = time.monotonic() + interval * (0.5 + random.random())

    def _send_rtcp(self, *, bye: bool = False) -> None:
        self._schedule_rtcp(1.0)
        transport = self._transport if self.config.rtcp_mux else self._rtcp_transport
        remote = self._rtcp_remote()
        if transport is None or remote is None or transport.is_closing():
            return
        if self._closed and not bye:
            # A closed session's pooled socket may already carry another call.
            return
        now = time.time()
        # A session without reception statistics received no audio, so its report has no block.
        block = self._reception.report_block(now) if self._reception is not None else None
        blocks = (block,) if block is not None else ()
        report: rtcp.RtcpPacket
        if self.stats.packets_sent > self._sent_at_last_report:
            report = rtcp.SenderReport(
                self._ssrc,
                rtcp.ntp_timestamp(now),
                self._core.timestamp,
                self.stats.packets_sent,
                self._core.octets_sent,
                blocks,
            )
        else:
            report = rtcp.ReceiverReport(self._ssrc, blocks)
        self._sent_at_last_report = self.stats.packets_sent
        parts: list[rtcp.RtcpPacket] = [
            report,
            rtcp.SourceDescription(((self._ssrc, self._cname),)),
        ]
        if bye:
            parts.append(rtcp.Bye((self._ssrc,)))
        transport.sendto(b"".join(rtcp.serialize(part) for part in parts), remote)
        self._rtcp_sent = True

    def rtcp_received(self, data: bytes, source: tuple[str, int]) -> None:
        """Take one RTCP datagram (from the RTCP socket, or muxed on the RTP port)."""
        if self._remote is not None and source[0] != self._remote[0]:
            self.stats.wrong_source += 1
            return
        self.stats.rtcp_received += 1
        try:
            packets = rtcp.parse_compound(data)
        except ValueError as exc:
            self.stats.malformed += 1
            logger.debug("call %s: dropped malformed RTCP: %s", self.call_id, exc)
            return
        now = time.time()
        for packet in packets:
            if isinstance(packet, rtcp.SenderReport):
                self.reception.note_sender_report(packet.ntp_timestamp, now)
            if isinstance(packet, rtcp.SenderReport | rtcp.ReceiverReport):
                for block in packet.reports:
                    if block.ssrc == self._ssrc:
                        self.remote_report = block
                        self.round_trip_ms = rtcp.round_trip_ms(block, now)
            elif isinstance(packet, rtcp.Bye):
                logger.debug("call %s: rtcp bye received", self.call_id)


class _RtcpProtocol(asyncio.DatagramProtocol):
    """The RTCP socket of a session without rtcp-mux, handing datagrams to the session.

    A pooled pair keeps one for all its sessions (`RtpSocketPair.rtcp_protocol`).
    Its session is None between them, while the idle protocol has the socket.
    """

    __slots__ = ("_lost", "_session")
    # Spares `set_protocol` a caught AttributeError (see `media.rtp_sockets`).
    data_received = NO_STREAM_CALLBACK

    def __init__(self, session: RtpSession, *, track_close: bool = True) -> None:
        self._session: RtpSession | None = session
        self._lost: asyncio.Future[None] | None = None
        if track_close:
            self._lost = asyncio.get_running_loop().create_future()
            session._sockets_lost.append(self._lost)

    def connection_lost(self, exc: Exception | None) -> None:
        session = self._session
        if session is not None and session._pair is not None:
            session._pair.socket_closed()
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        session = self._session
        if session is not None and len(data) <= MAX_DATAGRAM:
            session.rtcp_received(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        call_id = self._session.call_id if self._session is not None else "-"
        logger.debug("call %s: rtcp socket error: %s", call_id, exc)
