"""The asyncio SIP endpoint: binds transports, runs the UA core, hands calls to the app.

`SipEndpoint` owns the sockets, the core's timer, and one task per inbound
call that runs `CallHandler.on_invite`. `InboundCall` is the application's
view of one call; its methods turn into core commands, and the core's events
resolve its futures. Everything here is glue: the protocol decisions live in
`signaling.sip.core`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar
from urllib.parse import unquote

from lifecycle.tasks import STOP_TIMEOUT_S, cancel_and_wait
from signaling.sip.auth import AuthConfig
from signaling.sip.core import CoreConfig, UserAgent
from signaling.sip.dialog import CallState, InviteSession
from signaling.sip.errors import CallEnded, SipSyntaxError, SipUsageError
from signaling.sip.events import (
    CallConfirmed,
    CallOffered,
    CallProgress,
    CallTerminated,
    CoreEvent,
    InfoReceived,
    PingChanged,
    ReferProgress,
    ReferReceived,
    RegistrationChanged,
    ReofferReceived,
    RequestAnswered,
)
from signaling.sip.message import SipMessage
from signaling.sip.parser import DEFAULT_LIMITS, Limits
from signaling.sip.ping import PingConfig
from signaling.sip.ratelimit import RateLimit
from signaling.sip.registration import Backoff, RegistrationConfig
from signaling.sip.resolver import ResolveError, SipResolver
from signaling.sip.routing import Outgoing, Peer, is_ip
from signaling.sip.transaction import TimerConfig
from signaling.sip.transport import TcpServer, UdpTransport
from signaling.sip.uri import SipUri, parse_sip_uri

logger = logging.getLogger("sip.endpoint")

T = TypeVar("T")

# Datagrams between two looks at the UDP receive queue (one getsockopt each)
# while the node is not overloaded.
QUEUE_CHECK_INTERVAL = 16

# How late the loop's timer may wake after the core's next deadline. Every timer
# due by then fires in that one `tick`, so deadlines close together share a
# wakeup. Each call has its own Timer K (5 s after the 200 to its BYE) and its
# lingering INVITE entry (32 s after the 2xx), so at 1,000 calls/s deadlines
# fall due about 2,000 times a second. libuv timers, under uvloop, have
# millisecond resolution anyway.
TIMER_SLACK_S = 0.005


@dataclass(slots=True)
class SipConfig:
    """Settings of one SIP endpoint.

    `advertised_host` goes into Via and Contact (defaults to `host`).
    `force_rport` sends every UDP response to the source address and port, as
    if the peer had asked with rport (RFC 3581), which suits peers behind NAT.
    `max_calls` bounds concurrent calls; more get 503 with Retry-After.
    A call without a final response after `answer_timeout` seconds gets 480
    and ends with reason "timeout". With `tls_port` set (0 picks a free
    port), TLS listens there with the PEM certificate chain `tls_certfile`
    and key `tls_keyfile`; clients are not asked for certificates.
    `registrations` are accounts at trunk registrars that the endpoint keeps
    registered while it runs (UDP or TCP). `rate_limit` caps new out-of-dialog
    requests per source address; the excess is dropped, with at most one
    503 per source and second.
    `auth` names digest users and trusted trunk networks; when both are
    empty, every source may call.
    Registrars and call targets may be host names, found with SRV and A/AAAA
    records (`signaling.sip.resolver`) on `dns_servers`, or on the system's
    DNS servers when it is empty. `pings` are peers (trunks, proxies) that
    get an OPTIONS every interval, to report whether they answer; their host
    may be a name too. `udp_receive_buffer` is the SIP UDP
    socket's receive buffer in bytes. Linux's default of about 208 KiB
    holds only a few hundred INVITEs, so during stalls of the event loop at
    1,000-1,500 calls/s some were dropped, and callers waited 500 ms or more
    for their retransmission. Linux grants at most net.core.rmem_max.
    `overload_queue_bytes` guards against CPU overload: while the datagrams
    waiting in the SIP UDP socket take more than this many bytes of kernel
    memory (about 2.3 KB per INVITE), new INVITEs get a stateless 503 with
    Retry-After, until the queue is below half of it. None turns the guard
    off. The default of 512 KiB is about 220 INVITEs, or 200 ms of backlog
    at 1,000 calls/s.
    """

    host: str = "127.0.0.1"
    port: int = 5060
    user_agent: str = "VoxGate"
    advertised_host: str | None = None
    tcp: bool = True
    force_rport: bool = False
    max_calls: int | None = None
    retry_after: int = 5
    min_session_expires: int = 90
    answer_timeout: float = 120.0
    shutdown_timeout: float = 2.0
    tls_port: int | None = None
    tls_certfile: str | None = None
    tls_keyfile: str | None = None
    registrations: list[RegistrationConfig] = field(default_factory=list)
    rate_limit: RateLimit | None = None
    timers: TimerConfig = field(default_factory=TimerConfig)
    limits: Limits = DEFAULT_LIMITS
    auth: AuthConfig = field(default_factory=AuthConfig)
    dns_servers: tuple[str, ...] = ()
    dns_port: int = 53
    pings: list[PingConfig] = field(default_factory=list)
    udp_receive_buffer: int = 4 * 1024 * 1024
    overload_queue_bytes: int | None = 512 * 1024


class CallHandler(Protocol):
    async def on_invite(self, call: InboundCall) -> None:
        """Handle one new inbound call: answer, ring or reject it."""
        ...


class DialogCall:
    """What inbound and outbound calls share: in-dialog callbacks and blind transfer.

    `on_refer` receives the target URI of a REFER from the peer; it performs
    the transfer and returns True on success, and the stack reports the
    outcome to the peer in a NOTIFY. Without it, a REFER gets 603.
    """

    def __init__(self, endpoint: SipEndpoint, handle: str) -> None:
        # `InboundCall.__init__` repeats these lines.
        self._endpoint = endpoint
        self._handle = handle
        self.call_id: str = handle
        self.on_info: Callable[[str, bytes], None] | None = None
        self.on_reoffer: Callable[[bytes | None], Awaitable[bytes]] | None = None
        # Told of each re-INVITE's or UPDATE's SDP (None without one) before it is answered.
        self.on_remote_sdp: Callable[[bytes | None], None] | None = None
        self.on_refer: Callable[[str], Awaitable[bool]] | None = None
        # The endpoint's loop, set by `start`, for the futures of the call. On
        # CPython 3.11 each `asyncio.get_running_loop` makes a getpid system call.
        loop = endpoint._loop if endpoint._loop is not None else asyncio.get_running_loop()
        self._loop = loop
        self._ended: asyncio.Future[str] = loop.create_future()
        self.end_future: asyncio.Future[str] = self._ended
        """A future with the end reason, for done callbacks; cancelling it is a bug."""
        self._refer_result: asyncio.Future[int] | None = None

    @property
    def ended(self) -> bool:
        return self._ended.done()

    async def wait_ended(self) -> str:
        """Wait for the end and return its reason (bye, hangup, cancel, timeout, ...)."""
        if self._ended.done():
            return self._ended.result()
        return await asyncio.shield(self._ended)

    async def refer(self, target_uri: str, timeout_s: float = 30.0) -> bool:
        """Transfer the peer to `target_uri` with REFER (blind transfer, RFC 3515).

        Return True when the peer reports a 2xx for its call to the target
        (NOTIFY with a message/sipfrag status line), and False for a REFER
        rejected by the peer, a failed transfer, the call ending first, or
        no outcome within `timeout_s`. The call itself stays up: the peer or
        the application hangs up afterwards. Raise `CallEnded` when the call
        is over, and `SipUsageError` before the call is confirmed, for a
        target that cannot be sent, or while another transfer runs.
        """
        if self._ended.done():
            raise CallEnded(self._ended.result())
        if self._refer_result is not None:
            raise SipUsageError(f"call {self.call_id}: a transfer is already in progress")
        loop = asyncio.get_running_loop()
        result: asyncio.Future[int] = loop.create_future()
        self._refer_result = result
        try:
            key = self._endpoint._command(
                lambda core, now: core.refer(self._handle, target_uri, now)
            )
            if key is None:
                return False
            answered = self._endpoint._expect_response(key)
            async with asyncio.timeout(timeout_s):
                first: set[asyncio.Future[Any]] = {answered, self._ended}
                await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
                if not answered.done() or not 200 <= answered.result() < 300:
                    logger.info("call %s: REFER not accepted", self.call_id)
                    return False
                second: set[asyncio.Future[Any]] = {result, self._ended}
                await asyncio.wait(second, return_when=asyncio.FIRST_COMPLETED)
            return result.done() and 200 <= result.result() < 300
        except TimeoutError:
            logger.info("call %s: no transfer outcome within %s s", self.call_id, timeout_s)
            return False
        finally:
            self._refer_result = None

    def _refer_progress(self, status: int, final: bool) -> None:
        if final and self._refer_result is not None and not self._refer_result.done():
            self._refer_result.set_result(status)


class InboundCall(DialogCall):
    """One inbound INVITE dialog as the application sees it.

    `caller` and `called` are caller data: never put them in log text.
    `on_reoffer` answers re-INVITEs and UPDATEs (hold, unhold, refresh); when
    unset, the previous local SDP is sent again. `ack_sdp` resolves with the
    SDP of the ACK (the answer of a delayed offer) or None, and is cancelled
    when the call ends without an ACK.
    """

    def __init__(self, endpoint: SipEndpoint, session: InviteSession, source: Peer) -> None:
        # `DialogCall.__init__` repeated, which saves a Python call per call.
        handle = session.handle
        self._endpoint = endpoint
        self._handle = handle
        self.call_id = handle
        self.on_info = None
        self.on_reoffer = None
        self.on_remote_sdp = None
        self.on_refer = None
        loop = endpoint._loop if endpoint._loop is not None else asyncio.get_running_loop()
        self._loop = loop
        self._ended = loop.create_future()
        self.end_future = self._ended
        self._refer_result = None
        invite = session.invite
        # `parsed` raises for a request the parser did not validate.
        info = invite.info if invite.info is not None else invite.parsed
        self.sip_call_id: str = info.call_id
        # `_user_part` inlined for SIP URIs whose user part has no escapes, the usual case.
        from_uri = info.from_.uri
        user = from_uri.user if from_uri is not None else None
        if user is None or "%" in user:
            user = _user_part(info.from_.uri_text, from_uri)
        self.caller: str = user
        request_uri = invite.request_uri
        user = request_uri.user if request_uri is not None else None
        if user is None or "%" in user:
            user = _user_part(invite.uri, request_uri)
        self.called: str = user or _user_part(info.to.uri_text, info.to.uri)
        self.remote_sdp: bytes | None = session.remote_sdp
        self.source: tuple[str, int] = (source.host, source.port)
        self.transport: str = source.transport
        self._invite_headers = session.invite.headers
        # Made on the first read of `ack_sdp`: only a call with a delayed offer waits for it.
        self._ack_sdp: asyncio.Future[bytes | None] | None = None
        # The SDP of the first ACK, once `_acked`.
        self._ack_sdp_value: bytes | None = None
        # Resolved by the ACK or by the end of the call, whichever comes first;
        # `_acked` tells which. Only `answer` awaits it.
        self._settled: asyncio.Future[None] = self._loop.create_future()
        self._acked = False

    @property
    def ack_sdp(self) -> asyncio.Future[bytes | None]:
        """A future of the ACK's SDP or None; it is cancelled when the call ends without an ACK."""
        future = self._ack_sdp
        if future is None:
            future = self._ack_sdp = self._loop.create_future()
            if self._acked:
                future.set_result(self._ack_sdp_value)
            elif self._settled.done():
                future.cancel()
        return future

    def header(self, name: str) -> str | None:
        """Return the first value of header `name` in the INVITE (case-insensitive), or None."""
        return self._invite_headers.get(name)

    async def ring(self) -> None:
        self._check_live()
        self._endpoint._command(lambda core, now: core.ring(self._handle, now))

    async def answer(self, sdp: bytes) -> None:
        """Send 200 OK with `sdp` and return once the caller's ACK arrives.

        Raise `CallEnded` when the call ends first (CANCEL, BYE, ACK timeout).
        """
        if self._ended.done():
            raise CallEnded(self._ended.result())
        # `SipEndpoint._command` inlined, which saves two Python calls per call.
        endpoint = self._endpoint
        core = endpoint._core
        if core is None:
            raise CallEnded("shutdown")
        try:
            core.answer(self._handle, sdp, endpoint._now())
        finally:
            endpoint._pump()
        if not self._settled.done():
            await self._settled
        if not self._acked:
            raise CallEnded(self._ended.result())

    async def reject(self, status: int, reason: str | None = None) -> None:
        self._check_live()
        self._endpoint._command(lambda core, now: core.reject(self._handle, status, reason, now))

    async def hangup(self) -> None:
        """End the call: BYE once answered (after the ACK), 480 before. Idempotent."""
        if self._ended.done():
            return
        # `SipEndpoint._command` inlined, which saves two Python calls per call.
        endpoint = self._endpoint
        core = endpoint._core
        if core is None:
            raise CallEnded("shutdown")
        try:
            core.hangup(self._handle, endpoint._now())
        finally:
            endpoint._pump()

    def hangup_for(self, reason: str) -> None:
        """Hang up as `hangup` does, and end the call with `reason` instead of `hangup`.

        For a call that the application ends for a cause the peer should
        know of in its records, such as `rtp_timeout`: `wait_ended` returns
        `reason`.
        """
        if not self.ended:
            # First, since the stack may report the end (`hangup`) within `_command`.
            self._finish(reason)
            self._endpoint._command(lambda core, now: core.hangup(self._handle, now))

    def _check_live(self) -> None:
        if self._ended.done():
            raise CallEnded(self._ended.result())

    def _confirm(self, sdp: bytes | None) -> None:
        if sdp is not None:
            self.remote_sdp = sdp
        ack_sdp = self._ack_sdp
        if ack_sdp is not None and not ack_sdp.done():
            ack_sdp.set_result(sdp)
        if not self._settled.done():
            self._acked = True
            self._ack_sdp_value = sdp
            self._settled.set_result(None)

    def _finish(self, reason: str, status: int | None = None) -> None:
        if not self._ended.done():
            self._ended.set_result(reason)
        # No SDP comes after the end, and the handler's callback usually refers
        # back to this call: dropping it spares the garbage collector a cycle.
        self.on_remote_sdp = None
        ack_sdp = self._ack_sdp
        if ack_sdp is not None and not ack_sdp.done():
            ack_sdp.cancel()
        if not self._settled.done():
            self._settled.set_result(None)


class OutboundCall(DialogCall):
    """One call we placed with `SipEndpoint.place_call`.

    `remote_sdp` is the answer (or the early media SDP of a 18x until the
    2xx) and follows re-INVITEs and UPDATEs. `status` is the last response
    status: the 18x while ringing, 200 once answered, or the final failure
    (408 when none came). `on_progress` is called with each 101-199 status.
    `on_info` and `on_reoffer` work as on `InboundCall`.
    """

    def __init__(self, endpoint: SipEndpoint, handle: str, sip_call_id: str) -> None:
        super().__init__(endpoint, handle)
        self.sip_call_id: str = sip_call_id
        self.remote_sdp: bytes | None = None
        self.status: int | None = None
        self.on_progress: Callable[[int], None] | None = None
        self._answered: asyncio.Future[None] = self._loop.create_future()

    @property
    def answered(self) -> bool:
        return self._answered.done()

    async def wait_answered(self) -> bytes | None:
        """Wait for the 2xx (our ACK is sent) and return the answer SDP.

        Raise `CallEnded` when the call ends first; its reason is
        `rejected` (see `status`), `cancel`, `hangup`, `timeout` or `shutdown`.
        """
        waiters: set[asyncio.Future[object]] = {self._answered, self._ended}  # type: ignore[arg-type]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if not self._answered.done():
            raise CallEnded(self._ended.result())
        return self.remote_sdp

    async def cancel(self) -> None:
        """Give up before the answer (CANCEL); a call answered meanwhile gets BYE."""
        if not self.ended:
            self._endpoint._command(lambda core, now: core.cancel_call(self._handle, now, "cancel"))

    async def hangup(self) -> None:
        """End the call: BYE once answered, CANCEL before. Idempotent."""
        if not self.ended:
            self._endpoint._command(lambda core, now: core.hangup(self._handle, now))

    def _progress(self, status: int, sdp: bytes | None) -> None:
        self.status = status
        if sdp is not None:
            self.remote_sdp = sdp
        if self.on_progress is not None:
            try:
                self.on_progress(status)
            except Exception:
                logger.exception("call %s: on_progress callback failed", self.call_id)

    def _confirm(self, sdp: bytes | None) -> None:
        self.status = 200
        if sdp is not None:
            self.remote_sdp = sdp
        if not self._answered.done():
            self._answered.set_result(None)

    def _finish(self, reason: str, status: int | None = None) -> None:
        if status is not None:
            self.status = status
        if not self._ended.done():
            self._ended.set_result(reason)


def _clock_before_start() -> float:
    raise RuntimeError("SipEndpoint is not started")


def _user_part(text: str, uri: SipUri | None) -> str:
    """Return the unescaped user of a SIP URI, or the number of a tel: URI."""
    if uri is not None:
        user = uri.user or ""
        # `unquote` is a Python call, and most users have no escapes.
        return unquote(user) if "%" in user else user
    if text[:4].lower() == "tel:":
        return unquote(text[4:].split(";", 1)[0])
    return ""


class SipEndpoint:
    """A SIP UAS on UDP (and TCP) that hands each new call to `handler`."""

    def __init__(self, config: SipConfig, handler: CallHandler) -> None:
        self._config = config
        self._handler = handler
        self._core: UserAgent | None = None
        self._udp: UdpTransport | None = None
        self._tcp: TcpServer | None = None
        self._tls: TcpServer | None = None
        self._tls_port = 0
        self._registration_changed = asyncio.Event()
        self._port = 0
        self._calls: dict[str, InboundCall | OutboundCall] = {}
        self._responses: dict[str, asyncio.Future[int]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # The loop's timer, set to wake no later than `TIMER_SLACK_S` after the
        # core's earliest deadline (see `_pump`), and the deadline it was set for.
        self._timer: asyncio.Handle | None = None
        self._timer_deadline = math.inf
        # The pending call of `_send_trying` (see `_defer_trying`).
        self._trying_handle: asyncio.Handle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # The loop's clock once `start` has run. It is the bound `loop.time`, which
        # spares a Python call on each datagram and command.
        self._now: Callable[[], float] = _clock_before_start
        self._resolver: SipResolver | None = None
        self._resolving: set[str] = set()
        self._datagrams = 0

    @property
    def resolver(self) -> SipResolver:
        """The DNS resolver for registrar and target host names, made on first use."""
        if self._resolver is None:
            self._resolver = SipResolver(self._config.dns_servers, port=self._config.dns_port)
        return self._resolver

    @property
    def port(self) -> int:
        return self._port

    @property
    def connection_count(self) -> int:
        """Open TCP and TLS connections, for metrics."""
        servers = (self._tcp, self._tls)
        return sum(server.connection_count for server in servers if server is not None)

    @property
    def tls_port(self) -> int:
        """The bound TLS port, or 0 without TLS."""
        return self._tls_port

    @property
    def core(self) -> UserAgent:
        if self._core is None:
            raise RuntimeError("SipEndpoint is not started")
        return self._core

    async def start(self) -> None:
        """Bind UDP (and TCP on the same port); port 0 picks a free port."""
        config = self._config
        self._loop = asyncio.get_running_loop()
        self._now = self._loop.time
        # With port 0 the UDP port is free but its TCP twin may be taken (for
        # example by an outgoing connection), so pick again a few times.
        attempts = 5 if config.port == 0 else 1
        for attempt in range(attempts):
            _, protocol = await self._loop.create_datagram_endpoint(
                lambda: UdpTransport(self._on_datagram), local_addr=(config.host, config.port)
            )
            self._udp = protocol
            self._port = protocol.port
            granted = protocol.set_receive_buffer(config.udp_receive_buffer)
            logger.debug("SIP UDP receive buffer: %d bytes", granted)
            if not config.tcp:
                break
            self._tcp = TcpServer(self._on_message, self._on_invalid, config.limits)
            try:
                await self._tcp.start(config.host, self._port)
                break
            except OSError:
                protocol.close()
                if attempt == attempts - 1:
                    raise
        if config.tls_port is not None:
            await self._start_tls(config)
        self._core = UserAgent(
            CoreConfig(
                host=config.advertised_host or config.host,
                port=self._port,
                user_agent=config.user_agent,
                timers=config.timers,
                limits=config.limits,
                force_rport=config.force_rport,
                max_calls=config.max_calls,
                retry_after=config.retry_after,
                min_session_expires=config.min_session_expires,
                answer_timeout=config.answer_timeout,
                tls_port=self._tls_port or None,
                auth=config.auth,
                rate_limit=config.rate_limit,
            )
        )
        logger.info("SIP endpoint listening on %s port %d", config.host, self._port)
        for registration in config.registrations:
            if is_ip(registration.registrar):
                self._add_registration(registration)
            else:
                self._resolving.add(registration.name)
                self._spawn(self._register_by_name(registration), registration.name)
        for ping in config.pings:
            self._spawn(self._start_ping(ping), ping.name)

    async def _start_tls(self, config: SipConfig) -> None:
        if not config.tls_certfile or not config.tls_keyfile:
            raise ValueError("tls_port needs tls_certfile and tls_keyfile")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(config.tls_certfile, config.tls_keyfile)
        assert config.tls_port is not None
        self._tls = TcpServer(self._on_message, self._on_invalid, config.limits, tls=context)
        self._tls_port = await self._tls.start(config.host, config.tls_port)

    async def stop(self) -> None:
        """End every call (BYE or 487), wait briefly for ACKs, then close the sockets."""
        if self._core is None:
            return
        self._command(lambda core, now: core.shutdown(now))
        await self._unregister_all()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._config.shutdown_timeout
        pending = [call._ended for call in self._calls.values() if not call.ended]
        if pending:
            await asyncio.wait(pending, timeout=self._config.shutdown_timeout)
        # Handlers see their calls end and may finish on their own; the rest are cancelled.
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=max(0.0, deadline - loop.time()))
        still_running = await cancel_and_wait(self._tasks, STOP_TIMEOUT_S)
        if still_running:
            logger.warning(
                "%d call handlers did not stop within %.0f s", len(still_running), STOP_TIMEOUT_S
            )
        if self._timer is not None:
            self._timer.cancel()
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            await self._tcp.close()
        if self._tls is not None:
            await self._tls.close()
        self._core = None
        logger.info("SIP endpoint stopped")

    async def place_call(
        self,
        target_uri: str,
        *,
        sdp_offer: bytes,
        from_user: str,
        headers: Mapping[str, str] | None = None,
        credentials: tuple[str, str] | None = None,
        timeout_s: float = 60.0,
        session_expires: int | None = None,
    ) -> OutboundCall:
        """Send an INVITE with `sdp_offer` and return the call at once.

        `target_uri` is a sip: URI whose host is an IP address (names are not
        resolved), over UDP or `;transport=tcp`. `from_user` is the user part
        of From and Contact; `headers` are added to the INVITE. A 401 or 407
        is answered once with `credentials` (user, password). Without a 2xx
        within `timeout_s` the call is cancelled and ends with `timeout`.
        `session_expires` (seconds) asks for session timers; when the callee
        makes us the refresher, we refresh at half the interval.
        A target host that is a name is looked up in DNS first (SRV, then A
        and AAAA records) and the INVITE goes to the first address found.
        Raise `SipUsageError` for a target, user or header that cannot be sent,
        and for a host name without an address.
        """
        destination = await self._destination(target_uri)
        now = self._now()
        handle = self.core.place_call(
            target_uri,
            sdp_offer,
            from_user,
            now,
            headers=headers,
            credentials=credentials,
            timeout=timeout_s,
            session_expires=session_expires,
            destination=destination,
        )
        call = OutboundCall(self, handle, self.core.outbound[handle].call_id)
        self._calls[handle] = call
        self._pump()
        return call

    async def _destination(self, target_uri: str) -> tuple[str, int] | None:
        """Return where to send a request for `target_uri` when its host is a name."""
        try:
            uri = parse_sip_uri(target_uri)
        except SipSyntaxError as error:
            raise SipUsageError(f"invalid target URI: {error.reason}") from None
        if is_ip(uri.bare_host):
            return None
        try:
            found = await self.resolver.resolve(uri.bare_host, uri.port, uri.transport)
        except ResolveError as error:
            raise SipUsageError(f"target not found: {error}") from None
        # NOTE: only the first address is tried; RFC 3263 §4.3 failover to the
        # next one after a timeout or 503 is not built.
        return found[0].address, found[0].port

    async def _register_by_name(self, config: RegistrationConfig) -> None:
        """Look up a registrar's name, retrying with backoff, then start the registration."""
        backoff = Backoff(config.retry_min, config.retry_max)
        while True:
            try:
                found = await self.resolver.resolve(config.registrar, config.port, config.transport)
                break
            except ResolveError as error:
                delay = backoff.next_delay()
                logger.warning("registration %s: %s; retrying in %.0f s", config.name, error, delay)
                await asyncio.sleep(delay)
        first = found[0]
        logger.info(
            "registration %s: registrar found at %s port %d", config.name, first.address, first.port
        )
        self._resolving.discard(config.name)
        self._add_registration(
            replace(
                config,
                registrar=first.address,
                port=first.port,
                domain=config.domain or config.registrar,
            )
        )

    async def _start_ping(self, config: PingConfig) -> None:
        """Look up the peer's name when it has one, retrying each interval, then start pinging."""
        while not is_ip(config.host):
            try:
                found = await self.resolver.resolve(config.host, config.port, config.transport)
            except ResolveError as error:
                logger.warning(
                    "ping %s: %s; retrying in %.0f s", config.name, error, config.interval
                )
                await asyncio.sleep(config.interval)
                continue
            config = replace(config, host=found[0].address, port=found[0].port)
        self._command(lambda core, now: core.add_ping(config, now))

    def ping_state(self, name: str) -> tuple[str, float | None]:
        """Return the state of pinged peer `name` (unknown, reachable, unreachable) and its RTT."""
        ping = self.core.pings.get(name)
        if ping is None:
            return "unknown", None
        return ping.state.value, ping.rtt

    async def wait_for_ping(self, name: str, state: str) -> None:
        """Wait until pinged peer `name` is in `state`; bound it with asyncio.timeout."""
        while self.ping_state(name)[0] != state:
            await self._registration_changed.wait()

    def registration_state(self, name: str) -> str:
        """Return the state of an outbound registration: resolving, registered, backing-off, ..."""
        if name in self._resolving:
            return "resolving"
        return self.core.registrations[name].state.value

    def _add_registration(self, config: RegistrationConfig) -> None:
        self._command(lambda core, now: core.add_registration(config, now))

    async def wait_for_registration(self, name: str, state: str) -> None:
        """Wait until registration `name` is in `state`; bound it with asyncio.timeout."""
        while self.registration_state(name) != state:
            await self._registration_changed.wait()

    async def _unregister_all(self) -> None:
        """Send Expires: 0 for every registration and wait, bounded, until each is stopped."""
        names = list(self.core.registrations)
        for name in names:
            self._remove_registration(name)
        try:
            async with asyncio.timeout(self._config.shutdown_timeout):
                for name in names:
                    await self.wait_for_registration(name, "stopped")
        except TimeoutError:
            logger.warning("registrations did not stop within %s s", self._config.shutdown_timeout)

    def _remove_registration(self, name: str) -> None:
        self._command(lambda core, now: core.remove_registration(name, now))

    # ----- transport callbacks

    def _on_datagram(self, data: bytes, peer: Peer) -> None:
        self._datagrams += 1
        core = self._core
        if core is None:
            core = self.core  # raises RuntimeError
        # While overloaded, every datagram checks, so that the first INVITE
        # after the queue drains is not rejected on a stale reading.
        if core.overloaded or self._datagrams % QUEUE_CHECK_INTERVAL == 0:
            self._check_queue()
        core.receive(data, peer, self._now())
        # `_pump` has nothing to do without datagrams, events or an earlier deadline,
        # as after the 200 to our BYE, so the test here spares its Python call.
        if core._outgoing or core._events or core.earliest_armed < self._timer_deadline:
            self._pump()
        loop = self._loop
        if core._trying and loop is not None:
            # `_defer_trying` inlined, which saves a Python call per INVITE.
            if self._trying_handle is not None:
                self._trying_handle.cancel()
            self._trying_handle = loop.call_soon(self._send_trying)

    def _check_queue(self) -> None:
        """Switch the core's overload rejection by the bytes waiting in the UDP socket."""
        limit = self._config.overload_queue_bytes
        queued = self._udp.queued_bytes() if self._udp is not None and limit else None
        if limit is None or queued is None or self._core is None:
            return
        # Debug only: under overload this switches several times a second, and
        # the core reports its rejections every 10 s.
        if not self._core.overloaded and queued > limit:
            logger.debug("SIP receive queue at %d bytes, over %d: overloaded", queued, limit)
            self._core.overloaded = True
        elif self._core.overloaded and queued < limit // 2:
            logger.debug("SIP receive queue down to %d bytes: no longer overloaded", queued)
            self._core.overloaded = False

    def _on_message(self, message: SipMessage, peer: Peer) -> None:
        core = self.core
        core.receive_message(message, peer, self._now())
        self._pump()
        if core._trying:
            self._defer_trying()

    def _on_invalid(self, error: SipSyntaxError, peer: Peer) -> None:
        self.core.reject_invalid(error, peer)
        self._pump()

    # ----- core plumbing

    def _command(self, command: Callable[[UserAgent, float], T]) -> T:
        if self._core is None:
            raise CallEnded("shutdown")
        try:
            return command(self._core, self._now())
        finally:
            self._pump()

    def _expect_response(self, key: str) -> asyncio.Future[int]:
        """Return a future for the final status of the in-dialog request `key`.

        Call it right after sending, before yielding to the loop, so that the
        response cannot arrive first.
        """
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._responses[key] = future
        return future

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_deadline = math.inf
        core = self._core
        if core is not None:
            core.tick(self._now())
            self._pump()
            if self._timer is None:
                self._arm_timer(core)

    def _pump(self) -> None:
        """Send the core's datagrams, dispatch its events, and move the timer earlier if needed."""
        core = self._core
        if core is None:
            return
        while True:
            # `take_all` inlined, except that an empty list stays in place, so
            # most pumps build no new list and make no Python call here.
            outgoing = core._outgoing
            if outgoing:
                core._outgoing = []
            events = core._events
            if events:
                core._events = []
            udp = self._udp
            for item in outgoing:
                # UDP, the usual case, is sent here to spare a Python call per datagram.
                if udp is not None and item.peer.transport == "udp":
                    udp.send(item.data, item.peer)
                else:
                    self._send(item)
            # Sending never reaches back into the core, but a dispatched event can.
            if not events:
                break
            calls = self._calls
            for event in events:
                # The three events of every inbound call are handled here, which
                # saves a Python call of `_dispatch` each.
                if type(event) is CallOffered:
                    inbound = InboundCall(self, event.session, event.source)
                    calls[inbound.call_id] = inbound
                    # `_spawn` inlined.
                    loop = self._loop if self._loop is not None else asyncio.get_running_loop()
                    task: asyncio.Task[None] = loop.create_task(self._run_handler(inbound))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                elif type(event) is CallConfirmed:
                    call = calls.get(event.handle)
                    if call is not None:
                        call._confirm(event.sdp)
                elif type(event) is CallTerminated:
                    call = calls.get(event.handle)
                    if call is not None:
                        call._finish(event.reason, event.status)
                        calls.pop(event.handle, None)
                else:
                    self._dispatch(event)
        # The loop's timer stays armed when the deadline it was set for is disarmed or
        # moves later. It then fires early, `tick` finds nothing due, and `_on_timer`
        # arms it again for the next deadline. That costs one wakeup, where cancelling
        # and re-creating the timer on every change cost two calls in most messages.
        if core.earliest_armed < self._timer_deadline:
            self._arm_timer(core)

    def _defer_trying(self) -> None:
        """Send the 100 Trying of new INVITEs after the callbacks queued so far.

        Those callbacks include the first step of each new call's handler, so
        a handler that answers in that step sends its response first, and the
        100 is dropped. Each received message moves the send behind the
        handlers it started; commands do not, so under load the 100 of an
        INVITE whose handler waits still goes out within a loop iteration.
        `_on_datagram` repeats this method inline.
        """
        if self._loop is None:
            return
        if self._trying_handle is not None:
            self._trying_handle.cancel()
        self._trying_handle = self._loop.call_soon(self._send_trying)

    def _send_trying(self) -> None:
        self._trying_handle = None
        core = self._core
        if core is not None:
            core.send_trying(self._now())
            self._pump()

    def _arm_timer(self, core: UserAgent) -> None:
        """Set the loop's timer to the core's next deadline, or clear it when there is none."""
        deadline = core.next_deadline()
        core.earliest_armed = math.inf
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_deadline = math.inf
        if deadline is not None and self._loop is not None:
            # uvloop's call_at returns a plain Handle, without when(), for a
            # deadline already past, so the deadline is kept beside it.
            self._timer = self._loop.call_at(deadline + TIMER_SLACK_S, self._on_timer)
            self._timer_deadline = deadline

    def _send(self, item: Outgoing) -> None:
        peer = item.peer
        transport = peer.transport
        if transport == "udp":
            if self._udp is not None:
                self._udp.send(item.data, peer)
        elif transport == "tls":
            if self._tls is not None:
                self._tls.send(item.data, peer)
        elif self._tcp is not None:
            self._tcp.send(item.data, peer)

    def _dispatch(self, event: CoreEvent) -> None:
        """Handle an event other than the three that `_pump` handles itself."""
        # No event class has subclasses, so comparing the type is the check that
        # isinstance makes, without a C call per event and class.
        if type(event) is RegistrationChanged or type(event) is PingChanged:
            self._registration_changed.set()
            self._registration_changed = asyncio.Event()
            return
        if type(event) is RequestAnswered:
            future = self._responses.pop(event.key, None)
            if future is not None and not future.done():
                future.set_result(event.status)
            return
        # Every other event names a call, but mypy does not narrow the union by the
        # `type(...) is` tests above.
        call_or_none = self._calls.get(event.handle)  # type: ignore[union-attr]
        if call_or_none is None:
            return
        call = call_or_none
        if type(event) is CallProgress:
            if isinstance(call, OutboundCall):
                call._progress(event.status, event.sdp)
        elif type(event) is ReferProgress:
            call._refer_progress(event.status, event.final)
        elif type(event) is ReferReceived:
            self._on_refer(call, event.target)
        elif type(event) is InfoReceived:
            if call.on_info is not None:
                try:
                    call.on_info(event.content_type, event.body)
                except Exception:
                    logger.exception("call %s: on_info callback failed", call.call_id)
        elif type(event) is ReofferReceived:
            call.remote_sdp = event.sdp if event.sdp is not None else call.remote_sdp
            self._spawn(self._run_reoffer(call, event.sdp), call.call_id)

    def _spawn(self, coroutine: Coroutine[Any, Any, None], call_id: str) -> None:
        # `_pump` repeats these lines for the handler task of each new call.
        # `loop.create_task` is what `asyncio.ensure_future` ends in, without its
        # three Python calls that check the argument's type.
        loop = self._loop if self._loop is not None else asyncio.get_running_loop()
        task: asyncio.Task[None] = loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_handler(self, call: InboundCall) -> None:
        try:
            await self._handler.on_invite(call)
        except CallEnded:
            pass
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("call %s: call handler failed", call.call_id)
            self._fail_unanswered(call, 500)

    def _fail_unanswered(self, call: InboundCall, status: int) -> None:
        session = self._core.calls.get(call.call_id) if self._core else None
        if session is not None and session.state in (CallState.INCOMING, CallState.EARLY):
            self._command(lambda core, now: core.reject(call.call_id, status, None, now))

    def _on_refer(self, call: InboundCall | OutboundCall, target: str) -> None:
        accept = call.on_refer is not None
        self._command(lambda core, now: core.answer_refer(call.call_id, accept, now))
        if accept:
            self._spawn(self._run_refer(call, target), call.call_id)

    async def _run_refer(self, call: InboundCall | OutboundCall, target: str) -> None:
        assert call.on_refer is not None
        status, reason = 603, "Declined"
        try:
            if await call.on_refer(target):
                status, reason = 200, "OK"
        except Exception:
            logger.exception("call %s: on_refer callback failed", call.call_id)
            status, reason = 500, "Server Internal Error"
        if self._core is not None and not call.ended:
            self._command(lambda core, now: core.notify_refer(call.call_id, status, reason, now))

    async def _run_reoffer(self, call: InboundCall | OutboundCall, sdp: bytes | None) -> None:
        session = self._core.calls.get(call.call_id) if self._core else None
        answer: bytes | None = session.local_sdp if session else None
        if call.on_remote_sdp is not None:
            try:
                call.on_remote_sdp(sdp)
            except Exception:
                logger.exception("call %s: on_remote_sdp callback failed", call.call_id)
        if call.on_reoffer is not None:
            try:
                answer = await call.on_reoffer(sdp)
            except Exception:
                logger.exception("call %s: on_reoffer callback failed", call.call_id)
                answer = None
        if self._core is not None and not call.ended:
            self._command(lambda core, now: core.answer_reoffer(call.call_id, answer, now))
