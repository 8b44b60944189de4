"""The transaction user (TU) plumbing of the UA core: transactions, timers, sending.

`TransactionUser` owns the server and client transactions, the timer table
and the queue of outgoing datagrams, and builds responses and Via/Contact
values. It knows nothing of calls: `UserAgent` (in `signaling.sip.core`)
subclasses it and reacts through the hook methods (`_on_client_response`,
`_on_timed_out`, `_on_server_forgotten`, `_fire_owner_timer`).

Timers are entries in one table keyed by (kind, owner, name) with absolute
deadlines on the caller's clock; `tick(now)` fires those that are due.

A server transaction that has sent its final response and only waits out
Timer L (an Accepted INVITE, RFC 6026) or Timer J (a Completed non-INVITE)
is replaced by a lingering entry: its key, the bytes of its final response
(non-INVITE only) and the peer's address, all in atomic values. At a steady
call rate every call left a transaction object, its request and the timer
entries for those 32 s, and the garbage collector walked them all in every
collection. The lingering entry absorbs retransmissions or resends the
final response, as the transaction did. Lingering entries end from a queue
of their own, not from the timer heap. Timer L and J last 64*T1 alike, so
entries end in the order they began. The heap and its timer table then
hold about as many entries as there are calls in progress.

A client non-INVITE transaction in Completed (the BYE of every call we end)
only waits out Timer K (T4 on UDP) to absorb retransmitted responses, so it
lingers the same way: its key and deadline stay in a second table with a
queue of its own, and `_on_client_forgotten` runs when Timer K would have
ended the transaction.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import logging
import math
from collections import deque
from dataclasses import dataclass, field

from signaling.sip import checks
from signaling.sip import message as sip_message
from signaling.sip.auth import AuthConfig
from signaling.sip.dialog import new_tag
from signaling.sip.message import (
    REASON_PHRASES,
    SipRequest,
    SipResponse,
    build_response,
    python_build_response,
    to_bytes,
)
from signaling.sip.parser import DEFAULT_LIMITS, Limits
from signaling.sip.ratelimit import RateLimit
from signaling.sip.routing import Outgoing, Peer, response_peer
from signaling.sip.transaction import (
    ClientNonInviteTransaction,
    ClientTransaction,
    Deliver,
    Effect,
    Send,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    ServerTransaction,
    StartTimer,
    State,
    StopTimer,
    Terminated,
    TimedOut,
    Timer,
    TimerConfig,
)

logger = logging.getLogger("sip.core")

TimerKey = tuple[str, str, Timer | str]

# Stale heap entries tolerated beyond the number of armed timers before a rebuild.
_HEAP_SLACK = 1024
# The timers that the server and the client transactions of RFC 3261 §17 arm.
_SERVER_TIMERS = (Timer.G, Timer.H, Timer.I, Timer.J, Timer.L)
_CLIENT_TIMERS = (Timer.A, Timer.B, Timer.D, Timer.E, Timer.F, Timer.K, Timer.M)
# The wait timers of a transaction after its final response, which a lingering
# entry replaces: Timer L (Accepted server INVITE) and J (Completed server
# non-INVITE) through `_linger`, Timer K (Completed client non-INVITE) through
# `_linger_client`.
_LINGER_TIMERS = frozenset((Timer.L, Timer.J, Timer.K))


@dataclass(slots=True)
class CoreConfig:
    """Settings of the UA core; `host` and `port` are what Via and Contact advertise."""

    host: str = "127.0.0.1"
    port: int = 5060
    user_agent: str = "VoxGate"
    timers: TimerConfig = field(default_factory=TimerConfig)
    limits: Limits = DEFAULT_LIMITS
    force_rport: bool = False
    max_calls: int | None = None
    retry_after: int = 5
    min_session_expires: int = 90
    answer_timeout: float = 120.0
    tls_port: int | None = None
    auth: AuthConfig = field(default_factory=AuthConfig)
    rate_limit: RateLimit | None = None


class TransactionUser:
    """Transactions, timers and the outgoing queue shared by the UA core."""

    def __init__(self, config: CoreConfig, allowed: tuple[str, ...]) -> None:
        self.config = config
        self.allowed = allowed
        # Header values of every final response to an INVITE, and by transport the
        # Contact and the Via up to its parameters, built on first use from `config`.
        self._allow_value = ", ".join(allowed)
        self._supported_value = ", ".join(checks.SUPPORTED_OPTIONS)
        self._contacts: dict[str, str] = {}
        self._via_prefix: dict[str, str] = {}
        self._outgoing: list[Outgoing] = []
        self._timers: dict[TimerKey, float] = {}
        # A heap of (deadline, sequence, key); entries whose deadline no longer
        # matches `_timers` were disarmed or rearmed and are skipped lazily.
        self._timer_heap: list[tuple[float, int, TimerKey]] = []
        self._timer_sequence = itertools.count()
        self._server: dict[str, ServerTransaction] = {}
        self._server_peer: dict[str, Peer] = {}
        # New INVITE server transactions whose 100 Trying waits for `send_trying`,
        # in arrival order (see `UserAgent._on_request`). A response sent first drops it.
        self._trying: dict[str, None] = {}
        # Server transactions past their final response, by key: the response to
        # send again for a retransmitted request (None for an Accepted INVITE,
        # which absorbs them), the peer's transport, host and port, and the deadline.
        self._lingering: dict[str, tuple[bytes | None, str, str, int, float]] = {}
        # (deadline, key) of the lingering entries, earliest deadline first.
        self._lingering_ends: deque[tuple[float, str]] = deque()
        # Client non-INVITE transactions past their final response: the deadline
        # of Timer K by key, and (deadline, key) earliest first.
        self._client_lingering: dict[str, float] = {}
        self._client_lingering_ends: deque[tuple[float, str]] = deque()
        self._client: dict[str, ClientTransaction] = {}
        self._client_peer: dict[str, Peer] = {}
        self._client_owner: dict[str, str] = {}
        self._now = 0.0
        self.earliest_armed = math.inf
        """The earliest deadline armed since the adapter last set this to infinity.

        An adapter whose own timer is set later than this calls `next_deadline()`
        again. Lingering entries take their deadlines from Timer L and J, which
        count here when they are armed.
        """
        # Whether this logger emits DEBUG records, as read by the last `tick`, and in
        # `UserAgent` by the last `receive_message` or `hangup`. Debug lines on the
        # path of every call check it first, because `logger.debug` costs a Python
        # call and a level check even when it logs nothing.
        self._debug = logger.isEnabledFor(logging.DEBUG)

    def take_outgoing(self) -> list[Outgoing]:
        items, self._outgoing = self._outgoing, []
        return items

    def next_deadline(self) -> float | None:
        heap = self._timer_heap
        while heap and self._timers.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)
        deadline = heap[0][0] if heap else None
        ends = self._lingering_ends
        if ends and (deadline is None or ends[0][0] < deadline):
            deadline = ends[0][0]
        client_ends = self._client_lingering_ends
        if client_ends and (deadline is None or client_ends[0][0] < deadline):
            deadline = client_ends[0][0]
        return deadline

    def tick(self, now: float) -> None:
        """End the lingering entries due at `now`, then fire every timer due, earliest first."""
        self._now = max(self._now, now)
        self._debug = logger.isEnabledFor(logging.DEBUG)
        ends = self._lingering_ends
        while ends and ends[0][0] <= now:
            self._end_lingering(*ends.popleft())
        # Ending a lingering client entry is inlined: the BYE of every call leaves one.
        client_ends = self._client_lingering_ends
        client_lingering = self._client_lingering
        while client_ends and client_ends[0][0] <= now:
            lingering_deadline, lingering_key = client_ends.popleft()
            if client_lingering.get(lingering_key) != lingering_deadline:
                continue
            del client_lingering[lingering_key]
            try:
                self._on_client_forgotten(lingering_key)
            except Exception:
                logger.exception("ending the lingering client entry %s failed", lingering_key)
        while True:
            deadline = self.next_deadline()
            if deadline is None or deadline > now:
                return
            _, _, key = heapq.heappop(self._timer_heap)
            del self._timers[key]
            kind, owner, name = key
            try:
                self._fire(kind, owner, name)
            except Exception:
                logger.exception("timer %s for %s %s failed", name, kind, owner)

    def _start_client(self, request: SipRequest, branch: str, peer: Peer, owner: str = "") -> str:
        """Send `request` through a new client non-INVITE transaction and return its key."""
        method = request.method
        key = f"{branch}|{'INVITE' if method == 'ACK' else method}"  # `client_key` inlined
        reliable = peer.transport != "udp"
        transaction = ClientNonInviteTransaction(key, request, reliable, self.config.timers)
        self._client[key] = transaction
        self._client_peer[key] = peer
        if owner:
            self._client_owner[key] = owner
        self._apply(key, transaction.start(), client=True)
        return key

    def _host(self) -> str:
        host = self.config.host
        return f"[{host}]" if ":" in host else host

    def _port_for(self, peer: Peer | None) -> int:
        if peer is not None and peer.transport == "tls" and self.config.tls_port:
            return self.config.tls_port
        return self.config.port

    def _via(self, branch: str, peer: Peer) -> str:
        # `ReferCore._send_request` repeats the case of a built prefix inline.
        prefix = self._via_prefix.get(peer.transport)
        if prefix is None:
            prefix = f"SIP/2.0/{peer.transport.upper()} {self._host()}:{self._port_for(peer)}"
            self._via_prefix[peer.transport] = prefix
        return f"{prefix};branch={branch};rport"

    def _contact(self, peer: Peer | None) -> str:
        # `_respond` repeats the case of a built Contact inline.
        transport = peer.transport if peer is not None else ""
        contact = self._contacts.get(transport)
        if contact is None:
            params = f";transport={peer.transport}" if peer is not None and peer.reliable else ""
            contact = f"<sip:{self._host()}:{self._port_for(peer)}{params}>"
            self._contacts[transport] = contact
        return contact

    def _respond(
        self,
        key: str,
        status: int,
        reason: str | None = None,
        *,
        to_tag: str | None = None,
        contact: bool = False,
        extra: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        record_route: bool = False,
    ) -> SipResponse | None:
        """Send a response through the server transaction `key` and return it."""
        if self._trying:
            self._trying.pop(key, None)
        transaction = self._server.get(key)
        if transaction is None:
            return None
        request = transaction.request
        headers = list(extra) if extra else []
        if contact:
            # `_contact` inlined for a transport whose Contact is built already.
            peer = self._server_peer.get(key)
            value = self._contacts.get(peer.transport) if peer is not None else None
            headers.append(("Contact", value if value is not None else self._contact(peer)))
        routes = request.headers.raw("Record-Route") if record_route else None
        if routes:
            headers += [("Record-Route", value) for value in routes]
        if status >= 200 and request.method == "INVITE":
            headers.append(("Allow", self._allow_value))
            headers.append(("Supported", self._supported_value))
        headers.append(("Server", self.config.user_agent))
        if status > 100 and to_tag is None and request.parsed.to.tag is None:
            to_tag = new_tag()
        # `build_response` inlined, which saves a Python call per response. The C
        # builder returns None for the arguments that it leaves to the Python one.
        content_type = "application/sdp" if body else None
        native = sip_message.native
        response = (
            native.build_response(
                request,
                status,
                reason or REASON_PHRASES.get(status, "Unknown"),
                to_tag,
                headers,
                body,
                content_type,
            )
            if native is not None
            else None
        )
        if response is None:
            response = python_build_response(
                request,
                status,
                reason,
                to_tag=to_tag,
                headers=headers,
                body=body,
                content_type=content_type,
            )
        self._apply(key, transaction.send_response(response))
        return response

    def _send_stateless(self, request: SipRequest, status: int, reason: str, peer: Peer) -> None:
        """Answer a request that failed to parse, outside any transaction (§8.2.6)."""
        logger.debug("rejecting an invalid request from %s with %s: %s", peer.host, status, reason)
        headers: list[tuple[str, str]] = [("Server", self.config.user_agent)]
        response = build_response(request, status, _reason_phrase(status, reason), headers=headers)
        destination = response_peer(request, peer, self.config.force_rport)
        self._outgoing.append(Outgoing(to_bytes(response), destination))

    def _apply(self, key: str, effects: list[Effect], client: bool = False) -> None:
        """Carry out a transaction's effects."""
        if client:
            peer = self._client_peer.get(key)
            kind = "client"
        else:
            peer = self._server_peer.get(key)
            kind = "server"
        sent: bytes | None = None
        linger_timer: Timer | None = None
        linger_deadline = 0.0
        # `_arm` and `_disarm` are inlined: transactions start and stop most timers.
        timers = self._timers
        for effect in effects:
            # No effect class has subclasses, so comparing the type is the check
            # that isinstance makes, without a C call per effect and class.
            if type(effect) is Send:
                if peer is not None:
                    sent = to_bytes(effect.message)
                    self._outgoing.append(Outgoing(sent, peer))
            elif type(effect) is StartTimer:
                timer = effect.timer
                deadline = self._now + effect.delay
                if timer in _LINGER_TIMERS and deadline > self._now:
                    # `_linger` or `_linger_client` below arms it unless the transaction lingers.
                    linger_timer, linger_deadline = timer, deadline
                    continue
                timer_key = (kind, key, timer)
                timers[timer_key] = deadline
                heapq.heappush(self._timer_heap, (deadline, next(self._timer_sequence), timer_key))
                if deadline < self.earliest_armed:
                    self.earliest_armed = deadline
            elif type(effect) is StopTimer:
                timers.pop((kind, key, effect.timer), None)
            elif type(effect) is Deliver:
                response = effect.response
                if self._debug:
                    logger.debug("response %s for %s", response.status, key)
                self._on_client_response(key, response)
            elif type(effect) is Terminated:
                self._forget(kind, key)
            elif type(effect) is TimedOut:
                self._on_timed_out(key, effect.timer, client)
        if linger_timer is not None:
            if client:
                self._linger_client(key, linger_timer, linger_deadline)
            else:
                self._linger(key, sent, linger_timer, linger_deadline)

    def _linger(self, key: str, sent: bytes | None, timer: Timer, deadline: float) -> None:
        """Replace the server transaction `key` by a lingering entry until `deadline`.

        The transaction has just sent `sent`, its final response, and started
        `timer` (L or J) to end at `deadline`, which is later than now. Timer J
        is zero on TCP and TLS, so there `_apply` arms it instead. A transaction
        that is not in Accepted or Completed gets `timer` armed as usual.
        """
        transaction = self._server.get(key)
        peer = self._server_peer.get(key)
        response: bytes | None = None
        if isinstance(transaction, ServerInviteTransaction):
            waiting = transaction.state is State.ACCEPTED
        elif isinstance(transaction, ServerNonInviteTransaction):
            waiting = transaction.state is State.COMPLETED
            response = sent
        else:
            waiting = False
        if not waiting or peer is None or sent is None:
            self._arm("server", key, timer, deadline)
            return
        del self._server[key]
        del self._server_peer[key]
        self._lingering[key] = (response, peer.transport, peer.host, peer.port, deadline)
        if deadline < self.earliest_armed:
            self.earliest_armed = deadline
        ends = self._lingering_ends
        if ends and deadline < ends[-1][0]:
            # Timer L and J both last 64*T1, so this runs only for other timer settings.
            bisect.insort(ends, (deadline, key))
        else:
            ends.append((deadline, key))

    def _end_lingering(self, deadline: float, key: str) -> None:
        entry = self._lingering.get(key)
        if entry is None or entry[4] != deadline:
            return
        del self._lingering[key]
        try:
            self._on_server_forgotten(key)
        except Exception:
            logger.exception("ending the lingering entry %s failed", key)

    def _linger_client(self, key: str, timer: Timer, deadline: float) -> None:
        """Replace the client transaction `key` by a lingering entry until `deadline`.

        The transaction has just delivered its final response and started
        `timer` (K) to end at `deadline`, which is later than now. Timer K is
        zero on TCP and TLS, so there `_apply` arms it instead. A transaction
        that is not a Completed non-INVITE gets `timer` armed as usual.
        """
        transaction = self._client.get(key)
        if (
            not isinstance(transaction, ClientNonInviteTransaction)
            or transaction.state is not State.COMPLETED
        ):
            self._arm("client", key, timer, deadline)
            return
        # In Completed the transaction absorbs every response and sends nothing,
        # and the effects of its final response stopped its other timers.
        del self._client[key]
        self._client_peer.pop(key, None)
        self._client_owner.pop(key, None)
        self._client_lingering[key] = deadline
        if deadline < self.earliest_armed:
            self.earliest_armed = deadline
        ends = self._client_lingering_ends
        if ends and deadline < ends[-1][0]:
            # Timer K always lasts T4 and `_now` never decreases, so entries come
            # in deadline order, and this only guards that order.
            bisect.insort(ends, (deadline, key))
        else:
            ends.append((deadline, key))

    def _absorb(self, key: str) -> bool:
        """Resend the final response for a retransmission to a lingering `key`; False if none."""
        entry = self._lingering.get(key)
        if entry is None:
            return False
        response, transport, host, port, _ = entry
        if response is not None:
            self._outgoing.append(Outgoing(response, Peer(transport, host, port)))
        return True

    def _on_timed_out(self, key: str, timer: Timer, client: bool) -> None:
        """Hook: Timer B, F or H fired for transaction `key`."""
        if timer is Timer.H:
            logger.debug("no ACK for a non-2xx final response (%s)", key)
        elif timer is Timer.F:
            logger.debug("no response to our request (%s)", key)

    def _on_client_response(self, key: str, response: SipResponse) -> None:
        """Hook: a client transaction delivered a response."""

    def _on_server_forgotten(self, key: str) -> None:
        """Hook: a server transaction terminated, or its lingering entry ended, and was dropped."""

    def _on_client_forgotten(self, key: str) -> None:
        """Hook: a client transaction terminated and was dropped."""

    def _fire_owner_timer(self, kind: str, owner: str, name: str) -> None:
        """Hook: a timer armed by the subclass (kind other than server or client) fired."""

    def _forget(self, kind: str, key: str) -> None:
        if kind == "server":
            transaction = self._server.pop(key, None)
            self._server_peer.pop(key, None)
            if transaction is not None:
                self._on_server_forgotten(key)
        else:
            self._client.pop(key, None)
            self._client_peer.pop(key, None)
            self._client_owner.pop(key, None)
            self._on_client_forgotten(key)
        # A transaction arms timers only through `_apply`, and only those of its own
        # state machine, so popping these reaches all of them without a scan.
        timers = self._timers
        for timer in _SERVER_TIMERS if kind == "server" else _CLIENT_TIMERS:
            timers.pop((kind, key, timer), None)
        if len(self._timer_heap) > 2 * len(timers) + _HEAP_SLACK:
            self._compact_timer_heap()

    # ----- timers

    def _arm(self, kind: str, owner: str, name: Timer | str, deadline: float) -> None:
        # `_apply`, `UserAgent.answer` and `UserAgent._new_call` repeat this inline.
        key = (kind, owner, name)
        self._timers[key] = deadline
        heapq.heappush(self._timer_heap, (deadline, next(self._timer_sequence), key))
        if deadline < self.earliest_armed:
            self.earliest_armed = deadline

    def _disarm(self, kind: str, owner: str, *names: Timer | str) -> None:
        """Stop the timers `names` of `owner`, skipping any that is not armed.

        `UserAgent.answer` and `UserAgent._on_ack` repeat this method inline.
        """
        timers = self._timers
        for name in names:
            timers.pop((kind, owner, name), None)
        # `_compact_timer_heap` checks this too; checking here first saves a Python call
        # on the usual disarm, which finds nothing to compact.
        if len(self._timer_heap) > 2 * len(self._timers) + _HEAP_SLACK:
            self._compact_timer_heap()

    def _compact_timer_heap(self) -> None:
        """Rebuild the heap without its stale entries once they outnumber the live ones.

        Disarmed and rearmed timers leave entries that stay until their deadline
        reaches the top, which is long for a call's answer timeout (120 s by
        default) or session timer. A rebuild costs O(heap) and runs only when
        more than half of the heap is stale, so its cost is amortized O(1) per
        stale entry. Entries keep their (deadline, sequence), so the firing
        order does not change.
        """
        heap = self._timer_heap
        if len(heap) <= 2 * len(self._timers) + _HEAP_SLACK:
            return
        timers = self._timers
        self._timer_heap = [entry for entry in heap if timers.get(entry[2]) == entry[0]]
        heapq.heapify(self._timer_heap)

    def _fire(self, kind: str, owner: str, name: Timer | str) -> None:
        if kind == "server" and isinstance(name, Timer):
            server = self._server.get(owner)
            if server is not None:
                self._apply(owner, server.on_timer(name))
        elif kind == "client" and isinstance(name, Timer):
            client = self._client.get(owner)
            if client is not None:
                self._apply(owner, client.on_timer(name), client=True)
        else:
            self._fire_owner_timer(kind, owner, str(name))


def _reason_phrase(status: int, reason: str) -> str:
    """Put the parser's reason into the status line so that it names the problem."""
    cleaned = "".join(char if char.isprintable() else "?" for char in reason)[:120]
    base = REASON_PHRASES.get(status, "Bad Request")
    return f"{base} ({cleaned})" if cleaned else base
