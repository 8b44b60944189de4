"""The UA core without I/O: datagrams and commands in, datagrams and events out.

`UserAgent` adds the inbound INVITE sessions (`signaling.sip.dialog`), the
registrar and outbound registrations to a chain of base classes:
`TransactionUser` (`signaling.sip.tu`, transactions and timers),
`OutboundCore` (`signaling.sip.uac`, outbound INVITEs), `ReferCore`
(`signaling.sip.refer`, in-dialog requests and REFER) and `RefreshCore`
(`signaling.sip.refresh`, session refreshes). The asyncio adapter feeds it
with `receive` (bytes from a transport), `tick` (the clock) and the
application's commands (`ring`, `answer`, `reject`, `hangup`,
`answer_reoffer`, `place_call`, `cancel_call`, `refer`, `answer_refer`,
`notify_refer`, `shutdown`), then drains `take_outgoing()` and
`take_events()`, or both at once with `take_all()`. Every method takes
`now` in seconds on the adapter's monotonic clock, and `next_deadline()`
returns the time of the adapter's next `tick` call, so tests run timers on
a virtual clock.

A new request passes the checks of RFC 3261 §8.2 (`signaling.sip.checks`),
then merged-request detection and authentication, before it reaches a
dialog or the application. Peer input never raises out of `receive`.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import secrets
from collections.abc import Callable

from signaling.sip import checks
from signaling.sip import parser as sip_parser
from signaling.sip.auth import Authenticator
from signaling.sip.checks import Rejection
from signaling.sip.dialog import CallState, Dialog, InviteSession, new_branch
from signaling.sip.errors import FramingError, SipSyntaxError, SipUsageError
from signaling.sip.events import (
    CallConfirmed,
    CallOffered,
    CallTerminated,
    CoreEvent,
    InfoReceived,
    PingChanged,
    RegistrationChanged,
    ReofferReceived,
    RequestAnswered,
)
from signaling.sip.message import (
    MessageInfo,
    SipRequest,
    SipResponse,
    build_response,
    sdp_body,
    to_bytes,
)
from signaling.sip.parser import (
    InvalidRequest,
    is_keepalive,
    python_parse_datagram,
    salvage_request,
)
from signaling.sip.ping import Ping, PingConfig
from signaling.sip.ratelimit import OverloadReport, SourceRateLimiter
from signaling.sip.refresh import RefreshCore, session_expires_of
from signaling.sip.registrar import Registrar
from signaling.sip.registration import Registration, RegistrationConfig
from signaling.sip.routing import Outgoing, Peer, response_peer, stamp_via
from signaling.sip.tokens import random_hex
from signaling.sip.transaction import (
    ClientInviteTransaction,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    ServerTransaction,
    State,
    Timer,
    client_key,
    server_key,
)
from signaling.sip.tu import _HEAP_SLACK
from signaling.sip.tu import CoreConfig as CoreConfig
from signaling.sip.uac import ack_for_failure

logger = logging.getLogger("sip.core")
# The logger of `InviteSession.change`, which the core's inlined state changes check.
_dialog_logger = logging.getLogger("sip.dialog")

CALL_METHODS = (
    "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "UPDATE", "REFER", "NOTIFY",
)  # fmt: skip
# Every timer a call can arm, which `_end` stops.
_CALL_TIMERS = ("2xx", "ack", "session", "unanswered", "re2xx", "reack", "refresh")
# Those a confirmed call can have armed: `answer` stopped its "unanswered" timer,
# `_on_ack` its "2xx" and "ack" timers, and only an answered call arms them again.
_CONFIRMED_CALL_TIMERS = ("session", "re2xx", "reack", "refresh")

# End reasons of a call that ran its course: the caller's BYE (`bye`) or the
# application's hangup or rejection (`hangup`). Their "ended" line is DEBUG, and
# every other end (cancel, timeout, shutdown) stays INFO. The CDR and the
# `call.ended` event record every end. At 1,000 calls/s a line per call would be
# three times what journald's default rate limit lets a service log (10,000 lines
# per 30 s, journald.conf(5)), and journald drops every line past it, warnings too.
QUIET_ENDS = frozenset({"bye", "hangup"})


class UserAgent(RefreshCore):
    """The UA core; see the module docstring for the calling contract."""

    def __init__(self, config: CoreConfig) -> None:
        super().__init__(config, CALL_METHODS + (("REGISTER",) if config.auth.users else ()))
        self.authenticator = Authenticator(config.auth)
        self.registrar = Registrar()
        self.registrations: dict[str, Registration] = {}
        self.pings: dict[str, Ping] = {}
        self._ping_keys: dict[str, str] = {}
        self._merge_keys: dict[tuple[str, str, int, str], str] = {}
        # The merge key of each server transaction that registered one, by transaction key.
        self._merge_key_of: dict[str, tuple[str, str, int, str]] = {}
        self._call_by_invite: dict[str, str] = {}
        # Inbound calls by (Call-ID, From tag), to find the call of an ACK without a scan.
        self._inbound_by_caller: dict[tuple[str, str], str] = {}
        self._rate_limiter = SourceRateLimiter(config.rate_limit) if config.rate_limit else None
        self._overload = OverloadReport()
        self.overloaded = False
        """Set by the adapter while the node cannot keep up; new INVITEs then get 503."""
        self._stateless_tag_key = secrets.token_bytes(16)

    # ----- adapter interface

    def take_events(self) -> list[CoreEvent]:
        items, self._events = self._events, []
        return items

    def take_all(self) -> tuple[list[Outgoing], list[CoreEvent]]:
        """Return what `take_outgoing` and then `take_events` would return, in one call."""
        outgoing, self._outgoing = self._outgoing, []
        events, self._events = self._events, []
        return outgoing, events

    def receive(self, data: bytes, peer: Peer, now: float) -> None:
        """Handle one datagram; never raises for peer input."""
        if now > self._now:
            self._now = now
        # A keep-alive starts with CR or LF, so other datagrams skip the Python call.
        if (not data or data[0] in b"\r\n") and is_keepalive(data):
            return
        limits = self.config.limits
        try:
            # `parse_datagram` inlined: the C parser returns None for a datagram
            # that only the Python parser handles, and tests turn it off.
            native = sip_parser.native
            message = native.parse_datagram(data, limits) if native is not None else None
            if message is None:
                message = python_parse_datagram(data, limits)
        except SipSyntaxError as error:
            self._reject_unparsed(data, error, peer)
            return
        except Exception:
            logger.exception("parser failed on a datagram from %s", peer.host)
            return
        # The rest is `receive_message`, inlined to save a Python call per datagram.
        self._debug = logger.isEnabledFor(logging.DEBUG)
        try:
            if isinstance(message, SipResponse):
                self._on_response(message)
            else:
                self._on_request(message, peer)
        except SipSyntaxError as error:
            logger.debug("invalid message from %s: %s", peer.host, error.reason)
        except Exception:
            logger.exception("failed to handle a message from %s", peer.host)

    def _reject_unparsed(self, data: bytes, error: SipSyntaxError, peer: Peer) -> None:
        request = error.request if isinstance(error, InvalidRequest) else None
        if request is None:
            request = salvage_request(data, self.config.limits)
        if request is None:
            logger.debug("dropped an invalid message from %s: %s", peer.host, error.reason)
            return
        self._send_stateless(request, error.status, error.reason, peer)

    def receive_message(self, message: SipRequest | SipResponse, peer: Peer, now: float) -> None:
        """Handle one parsed message from a stream transport; `receive` does the same inline."""
        if now > self._now:
            self._now = now
        self._debug = logger.isEnabledFor(logging.DEBUG)
        try:
            if isinstance(message, SipResponse):
                self._on_response(message)
            else:
                self._on_request(message, peer)
        except SipSyntaxError as error:
            logger.debug("invalid message from %s: %s", peer.host, error.reason)
        except Exception:
            logger.exception("failed to handle a message from %s", peer.host)

    def reject_invalid(self, error: SipSyntaxError, peer: Peer) -> None:
        """Answer a request that a stream parser rejected, when its headers allow it."""
        request: object | None = None
        if isinstance(error, (InvalidRequest, FramingError)):
            request = error.request
        if isinstance(request, SipRequest):
            self._send_stateless(request, error.status, error.reason, peer)
        else:
            logger.debug("dropped an invalid message from %s: %s", peer.host, error.reason)

    def send_trying(self, now: float) -> None:
        """Send 100 Trying to each new INVITE that has had no response yet.

        The adapter calls it after the application had its first chance to
        answer the INVITEs of the last datagrams, and `trying_due` says when
        there is something to send. An INVITE answered before then gets no
        100, which RFC 3261 §17.2.1 allows for a response within 200 ms.
        """
        self._now = max(self._now, now)
        trying, self._trying = self._trying, {}
        for key in trying:
            self._respond(key, 100)

    @property
    def trying_due(self) -> bool:
        """Whether an INVITE waits for its 100 Trying (see `send_trying`)."""
        return bool(self._trying)

    # ----- application commands

    def ring(self, handle: str, now: float) -> None:
        self._now = max(self._now, now)
        session = self._session(handle)
        if session.state is CallState.INCOMING:
            session.change(CallState.EARLY, "ring")
        if session.state is CallState.EARLY:
            self._respond(session.transaction_key, 180, to_tag=session.local_tag, contact=True)

    def answer(self, handle: str, sdp: bytes, now: float) -> None:
        """Send the 2xx with `sdp` and retransmit it until the ACK (§13.3.1.4)."""
        if now > self._now:
            self._now = now
        session = self.calls.get(handle)  # `_session` inlined
        if session is None:
            raise SipUsageError(f"unknown call {handle}")
        if session.state not in (CallState.INCOMING, CallState.EARLY):
            raise SipUsageError(f"call {handle}: answer not allowed in state {session.state.value}")
        info = session.invite.info
        assert info is not None, "a session's INVITE passed the checks of `_on_request`"
        # Positional arguments, in the order of the fields: a class called with
        # keywords gets them in a dict, which took about 200 ns more here
        # (timeit, CPython 3.11).
        dialog = session.dialog = Dialog(
            info.call_id,
            session.local_tag,
            info.from_.params.get("tag") or "",  # remote_tag, `NameAddr.tag` inlined
            info.to.uri_text,  # local_uri
            info.from_.uri_text,  # remote_uri
            info.contact[0].uri_text if info.contact else info.from_.uri_text,  # remote_target
            [str(route) for route in info.record_route] if info.record_route else [],  # route_set
            0,  # local_seq
            info.cseq.number,  # remote_seq
        )
        # `Dialog.id` inlined, as in `_end`.
        self._dialogs[(dialog.call_id, dialog.local_tag, dialog.remote_tag)] = handle
        session.local_sdp = sdp
        session.answer = self._respond(
            session.transaction_key,
            200,
            to_tag=session.local_tag,
            contact=True,
            extra=self._session_timer_headers(session) if session.session_expires else None,
            body=sdp,
            record_route=True,
        )
        # `InviteSession.change` inlined unless it logs. The state is INCOMING or EARLY,
        # which may move to ANSWERED.
        if _dialog_logger.isEnabledFor(logging.DEBUG):
            session.change(CallState.ANSWERED, "answer")
        else:
            session.state = CallState.ANSWERED
        # `_disarm` and `_arm` inlined, which saves three Python calls per call.
        timers = self._timers
        heap = self._timer_heap
        timers.pop(("call", handle, "unanswered"), None)
        if len(heap) > 2 * len(timers) + _HEAP_SLACK:
            self._compact_timer_heap()
            heap = self._timer_heap
        now = self._now
        t1 = self.config.timers.t1
        if self._call_peer[handle].transport == "udp":
            session.retransmit_interval = t1
            timer_key = ("call", handle, "2xx")
            deadline = now + t1
            timers[timer_key] = deadline
            heapq.heappush(heap, (deadline, next(self._timer_sequence), timer_key))
            if deadline < self.earliest_armed:
                self.earliest_armed = deadline
        timer_key = ("call", handle, "ack")
        deadline = now + 64 * t1
        timers[timer_key] = deadline
        heapq.heappush(heap, (deadline, next(self._timer_sequence), timer_key))
        if deadline < self.earliest_armed:
            self.earliest_armed = deadline

    def reject(self, handle: str, status: int, reason: str | None, now: float) -> None:
        """Send the final response `status` (300-699); a 503 carries Retry-After."""
        self._now = max(self._now, now)
        session = self._session(handle)
        if not 300 <= status <= 699:
            raise SipUsageError(f"call {handle}: reject needs a status 300-699, not {status}")
        if session.state not in (CallState.INCOMING, CallState.EARLY):
            raise SipUsageError(f"call {handle}: reject not allowed in state {session.state.value}")
        if reason is not None:
            # The reason phrase ends at CRLF, so control characters would split the message.
            reason = "".join(char for char in reason if char.isprintable())[:120] or None
        extra = [("Retry-After", str(self.config.retry_after))] if status == 503 else None
        self._respond(
            session.transaction_key, status, reason, to_tag=session.local_tag, extra=extra
        )
        self._end(session, "hangup")

    def hangup(self, handle: str, now: float) -> None:
        """End the call from our side; idempotent. Before the answer this sends 480."""
        if now > self._now:
            self._now = now
        self._debug = logger.isEnabledFor(logging.DEBUG)
        session = self.calls.get(handle)
        if session is None:
            self.cancel_call(handle, now, "hangup")
        elif (
            session.state is CallState.CONFIRMED and session.pending_end is None and not self._debug
        ):
            # `_hang_up` and `_send_bye` inlined for a confirmed call, the usual
            # case, while `_send_bye` would not log.
            self._send_request(session, "BYE")
            self._end(session, "hangup")
        else:
            self._hang_up(session, "hangup", 480)

    def answer_reoffer(self, handle: str, sdp: bytes | None, now: float) -> None:
        """Answer the pending re-INVITE or UPDATE: 200 with `sdp`, or 488 for None."""
        self._now = max(self._now, now)
        session = self._session(handle)
        key = session.pending_offer_key
        session.pending_offer_key = None
        transaction = self._server.get(key) if key else None
        if key is None or transaction is None:
            # The caller cancelled the re-INVITE, or its transaction is gone.
            logger.debug("call %s: no re-INVITE or UPDATE left to answer", handle)
            return
        if sdp is None:
            self._respond(key, 488)
            return
        session.local_sdp = sdp
        extra = self._session_timer_headers(session)
        request = transaction.request
        if request.method == "UPDATE" and not request.body:
            # RFC 3311 §5.2: an UPDATE without an offer (a session refresh) gets no SDP.
            sdp = b""
        # The transaction lingers without its peer once the 2xx is sent, so read it first.
        peer = self._server_peer.get(key)
        response = self._respond(key, 200, contact=True, body=sdp, extra=extra)
        self._arm_session_timer(session)
        if request.method == "INVITE" and response is not None:
            # §13.3.1.4 holds for a re-INVITE too: the TU retransmits its 2xx until the ACK.
            session.reinvite_answer = response
            session.reinvite_cseq = request.parsed.cseq.number
            session.reinvite_peer = peer
            if session.reinvite_peer is not None and not session.reinvite_peer.reliable:
                session.retransmit_interval = self.config.timers.t1
                self._arm("call", handle, "re2xx", self._now + session.retransmit_interval)
            self._arm("call", handle, "reack", self._now + 64 * self.config.timers.t1)

    def shutdown(self, now: float) -> None:
        """End every call: BYE for answered calls (after their ACK), 487 for unanswered ones."""
        self._now = max(self._now, now)
        for session in list(self.calls.values()):
            self._hang_up(session, "shutdown", 487)
        self._shutdown_outbound()

    def add_registration(self, config: RegistrationConfig, now: float) -> None:
        """Start keeping a binding at `config.registrar` (see `signaling.sip.registration`)."""
        self._now = max(self._now, now)
        if config.name in self.registrations:
            raise SipUsageError(f"registration {config.name} already exists")
        peer = self._registrar_peer(config)
        params = f";transport={peer.transport}" if peer.reliable else ""
        contact = f"<sip:{config.user}@{self._host()}:{self._port_for(peer)}{params}>"
        registration = Registration(config, contact)
        self.registrations[config.name] = registration
        branch = new_branch()
        self._drive(registration, lambda: registration.start(self._via(branch, peer)), branch)

    def remove_registration(self, name: str, now: float) -> None:
        """Unregister (Expires: 0) and stop refreshing; the entry stays to report STOPPED."""
        self._now = max(self._now, now)
        registration = self.registrations.get(name)
        if registration is None:
            raise SipUsageError(f"unknown registration {name}")
        self._disarm("registration", name, "refresh")
        branch = new_branch()
        peer = self._registrar_peer(registration.config)
        self._drive(registration, lambda: registration.stop(self._via(branch, peer)), branch)

    def add_ping(self, config: PingConfig, now: float) -> None:
        """Start sending OPTIONS to `config.host` every `config.interval` s (see `ping`)."""
        self._now = max(self._now, now)
        if config.name in self.pings:
            raise SipUsageError(f"ping {config.name} already exists")
        peer = _ping_peer(config)
        contact = self._contact(peer)
        ping = Ping(config, contact, contact[1:-1])
        self.pings[config.name] = ping
        ping.start(self._now)
        self._arm("ping", config.name, "next", self._now)

    def remove_ping(self, name: str) -> None:
        """Stop pinging `name`; an answer still on its way is ignored."""
        if self.pings.pop(name, None) is not None:
            self._disarm("ping", name, "next")
            self._ping_keys.pop(name, None)

    def _fire_ping(self, name: str) -> None:
        ping = self.pings.get(name)
        if ping is None:
            return
        before = ping.state
        peer = _ping_peer(ping.config)
        branch = new_branch()
        request = ping.on_timer(self._via(branch, peer), self._now)
        if request is not None:
            self._ping_keys[name] = client_key(branch, "OPTIONS")
            self._start_client(request, branch, peer, f"ping:{name}")
        if ping.state is not before:
            self._events.append(PingChanged(name, ping.state.value, ping.rtt, ping.last_status))
        if ping.deadline is not None:
            self._arm("ping", name, "next", ping.deadline)

    def _on_ping_response(self, name: str, key: str, response: SipResponse) -> None:
        ping = self.pings.get(name)
        if ping is None or self._ping_keys.get(name) != key or response.status < 200:
            return
        if ping.on_response(response.status, self._now):
            self._events.append(PingChanged(name, ping.state.value, ping.rtt, ping.last_status))
        if ping.deadline is not None:
            self._arm("ping", name, "next", ping.deadline)

    def _registrar_peer(self, config: RegistrationConfig) -> Peer:
        return Peer(config.transport, config.registrar, config.port or 5060)

    def _drive(
        self, registration: Registration, step: Callable[[], SipRequest | None], branch: str
    ) -> None:
        """Run one registration step, send its REGISTER, rearm its timer, report changes."""
        before = registration.state
        request = step()
        name = registration.config.name
        if request is not None:
            self._start_client(request, branch, self._registrar_peer(registration.config), name)
        if registration.deadline is not None:
            self._arm("registration", name, "refresh", registration.deadline)
        else:
            self._disarm("registration", name, "refresh")
        if registration.state is not before:
            detail = registration.last_error or registration.state.value
            self._events.append(RegistrationChanged(name, registration.state.value, detail))

    def _on_registration_response(self, key: str, response: SipResponse) -> None:
        registration = self.registrations.get(self._client_owner.get(key, ""))
        if registration is None or response.status < 200:
            return
        branch = new_branch()
        peer = self._registrar_peer(registration.config)
        via = self._via(branch, peer)
        self._drive(
            registration, lambda: registration.on_response(response, via, self._now), branch
        )

    def _on_registration_timeout(self, key: str) -> None:
        registration = self.registrations.get(self._client_owner.get(key, ""))
        if registration is not None:
            self._drive(registration, lambda: registration.on_timeout(self._now), new_branch())

    def _hang_up(self, session: InviteSession, reason: str, status: int) -> None:
        # `hangup` repeats the case of a confirmed call inline.
        state = session.state
        if state is CallState.TERMINATED or session.pending_end is not None:
            return
        if state in (CallState.INCOMING, CallState.EARLY):
            self._respond(session.transaction_key, status, to_tag=session.local_tag)
            self._end(session, reason)
        elif session.state is CallState.ANSWERED:
            # §15: the callee must not send BYE before the ACK for its 2xx (or
            # the ACK timeout), so the BYE waits for either.
            session.pending_end = reason
        else:
            # `_send_bye` inlined unless it logs.
            if self._debug:
                self._send_bye(session)
            else:
                self._send_request(session, "BYE")
            self._end(session, reason)

    # ----- requests

    def _on_request(self, request: SipRequest, peer: Peer) -> None:
        # `parsed` raises for a request the parser did not validate.
        info = request.info if request.info is not None else request.parsed
        method = request.method
        via = info.vias[0]
        params = via.params
        # `stamp_via` runs only when it changes the Via (a host other than the source,
        # or rport), which saves a Python call for the other requests.
        if "rport" in params or via.host.strip("[]") != peer.host:
            stamp_via(request, peer)
        # `server_key` inlined for an RFC 3261 branch, which saves a Python call per request.
        branch = params.get("branch")
        if branch is not None and branch.startswith("z9hG4bK") and len(branch) > 7:
            port = via.port
            sent_by = via.host if port is None else f"{via.host}:{port}"
            key = f"{branch}|{sent_by}|{'INVITE' if method == 'ACK' else method}"
        else:
            key = server_key(request)
        if self._debug:
            logger.debug("request %s cseq %s from %s", method, info.cseq.number, peer.host)
        if method == "ACK":
            self._on_ack(request, info, key)
            return
        transaction = self._server.get(key)
        if transaction is not None:
            if key in self._trying:
                # A retransmission that arrives before `send_trying` gets the 100 now.
                self._respond(key, 100)
                return
            self._apply(key, transaction.on_request(request))
            return
        if key in self._lingering and self._absorb(key):
            return
        to_tag = info.to.params.get("tag")  # `NameAddr.tag` inlined
        limited = to_tag is None and self._rate_limiter is not None
        if limited and not self._within_rate(request, peer):
            return
        # The cheap tests of `_at_call_limit` come first, which spares most INVITEs its call.
        max_calls = self.config.max_calls
        if (
            method == "INVITE"
            and to_tag is None
            and (self.overloaded or max_calls is not None)
            and self._at_call_limit()
        ):
            self._reject_at_call_limit(request, peer)
            return
        created: ServerTransaction
        reliable = peer.transport != "udp"
        if method == "INVITE":
            created = ServerInviteTransaction(key, request, reliable, self.config.timers)
        else:
            created = ServerNonInviteTransaction(key, request, reliable, self.config.timers)
        self._server[key] = created
        self._server_peer[key] = response_peer(request, peer, self.config.force_rport)
        if method == "CANCEL":
            self._on_cancel(key)
            return
        if method == "INVITE":
            # §17.2.1: a UAS that responds within 200 ms may skip the 100 Trying. It
            # waits for `send_trying`, which the adapter calls once the work that
            # this datagram started has run, and a response sent before drops it.
            self._trying[key] = None
        rejection = checks.check_request(request, self.allowed)
        if rejection is None and to_tag is None:
            rejection = self._check_merged(request, info, key)
            # `AuthConfig.enabled` inlined, which saves a Python call per call.
            auth = self.authenticator.config
            if (
                rejection is None
                and method in ("INVITE", "REGISTER")
                and (auth.users or auth.trusted_networks)
            ):
                rejection = self._authenticate(request, peer)
        if rejection is not None:
            self._respond(key, rejection.status, rejection.reason, extra=rejection.headers)
        elif method == "OPTIONS":
            self._respond(key, 200, extra=checks.capabilities(self.allowed))
        elif method == "REGISTER":
            self._on_register(request, key)
        elif to_tag is not None:
            self._on_dialog_request(request, key)
        elif method == "INVITE":
            self._new_call(request, info, key, peer)
        else:
            # BYE, INFO or UPDATE outside a dialog (§12.2.2).
            self._respond(key, 481)

    def _within_rate(self, request: SipRequest, peer: Peer) -> bool:
        """Apply the per-source rate limit to a new out-of-dialog request."""
        if self._rate_limiter is None or request.method == "CANCEL":
            return True
        if self._rate_limiter.allow(peer.host, self._now):
            return True
        if self._rate_limiter.should_answer_refusal(peer.host, self._now):
            logger.warning("request rate limit exceeded by %s; answering 503", peer.host)
            response = build_response(
                request, 503, headers=[("Retry-After", str(self.config.retry_after))]
            )
            destination = response_peer(request, peer, self.config.force_rport)
            self._outgoing.append(Outgoing(to_bytes(response), destination))
        return False

    def _at_call_limit(self) -> bool:
        """Return whether a new call must be rejected: `overloaded`, or `max_calls` reached."""
        if self.overloaded:
            return True
        # `calls` contains only calls that have not ended, because `_end` removes a
        # call as it ends it, so its size is the number of active calls.
        return self.config.max_calls is not None and len(self.calls) >= self.config.max_calls

    def _reject_at_call_limit(self, request: SipRequest, peer: Peer) -> None:
        """Reject a new INVITE with a stateless 503 and Retry-After (see `_at_call_limit`).

        The check runs before the server transaction, the 100 Trying and the
        request checks, so an overloaded node spends on a rejected INVITE
        little more than its parse. Stateless (§8.2.7): a retransmitted INVITE
        gets the same 503 again, with the same To tag, and its ACK matches
        nothing and is dropped.
        """
        if self._overload.count(self._now):
            logger.warning(
                "%s: rejected %d new INVITEs with 503 since the last report",
                "node overloaded" if self.overloaded else f"call limit {self.config.max_calls}",
                self._overload.reported,
            )
        response = build_response(
            request,
            503,
            to_tag=self._stateless_tag(request),
            headers=[
                ("Retry-After", str(self.config.retry_after)),
                ("Server", self.config.user_agent),
            ],
        )
        destination = response_peer(request, peer, self.config.force_rport)
        self._outgoing.append(Outgoing(to_bytes(response), destination))

    def _stateless_tag(self, request: SipRequest) -> str:
        """Return a To tag that is the same for every retransmission of `request` (§8.2.7)."""
        info = request.parsed
        branch = info.top_via.branch or ""
        identity = f"{info.call_id}|{info.from_.tag}|{info.cseq.number}|{branch}".encode()
        return hashlib.blake2s(identity, key=self._stateless_tag_key, digest_size=8).hexdigest()

    def _check_merged(self, request: SipRequest, info: MessageInfo, key: str) -> Rejection | None:
        """Detect a request without a To tag that forked back to us by another path (§8.2.2.2)."""
        # `NameAddr.tag` inlined here and in `_new_call`, `_on_ack` and `_end`, which
        # run for every call.
        merge = (info.from_.params.get("tag") or "", info.call_id, info.cseq.number, request.method)
        other = self._merge_keys.get(merge)
        if (
            other is not None
            and other != key
            and (other in self._server or other in self._lingering)
        ):
            return Rejection(482)
        self._merge_keys[merge] = key
        self._merge_key_of[key] = merge
        return None

    def _authenticate(self, request: SipRequest, peer: Peer) -> Rejection | None:
        if not self.authenticator.config.enabled:
            # Without users or trusted networks, `Authenticator.check` lets every request proceed.
            return None
        authorizations = request.headers.raw("Authorization")
        decision = self.authenticator.check(
            request.method, request.uri, authorizations, peer.host, self._now
        )
        if decision.status is None:
            if request.method == "REGISTER" and decision.user is not None:
                to_uri = request.parsed.to.uri
                if to_uri is None or to_uri.user != decision.user:
                    return Rejection(403, "authenticated user does not own this address of record")
            return None
        # The first request of every client has no credentials, so only failures are info.
        level = logging.INFO if authorizations else logging.DEBUG
        logger.log(
            level, "%s from %s not authorized: %s", request.method, peer.host, decision.reason
        )
        if decision.status == 403:
            return Rejection(403)
        return Rejection(401, headers=self.authenticator.challenges(self._now, decision.stale))

    def _on_register(self, request: SipRequest, key: str) -> None:
        result = self.registrar.register(request, self._now)
        if isinstance(result, Rejection):
            self._respond(key, result.status, result.reason, extra=result.headers)
            return
        status, headers = result
        self._respond(key, status, extra=headers)

    def _new_call(self, request: SipRequest, info: MessageInfo, key: str, peer: Peer) -> None:
        # One read of the header index stands for two `Headers.get` calls, and
        # `checks.session_expires` returns None without its header, so most calls
        # spare three Python calls.
        table = request.headers.by_key()
        expires = (
            checks.session_expires(request, self.config.min_session_expires)
            if "session-expires" in table
            else None
        )
        if isinstance(expires, Rejection):
            self._respond(key, expires.status, expires.reason, extra=expires.headers)
            return
        # One draw for the handle (8 hex digits, a short id for logs, unrelated to the
        # Call-ID) and the To tag (12 hex digits, the size `new_tag` draws).
        tokens = random_hex(20)
        handle = tokens[:8]
        # Without keywords, which cost a dict per call (see `answer`).
        session = InviteSession(handle, request, key, tokens[8:])
        session.session_expires = expires
        if request.body:
            content_type = table.get("content-type")
            if content_type and content_type[0] == "application/sdp":
                # What `sdp_body` returns for this type, without its Python call.
                session.remote_sdp = request.body
            else:
                session.remote_sdp = sdp_body(
                    content_type[0] if content_type else None, request.body
                )
        self.calls[handle] = session
        self._call_by_invite[key] = handle
        self._inbound_by_caller[(info.call_id, info.from_.params.get("tag") or "")] = handle
        self._call_peer[handle] = peer
        if self._debug:
            logger.debug("call %s: INVITE received over %s", handle, peer.transport)
        # `_arm` inlined, which saves a Python call per call.
        timer_key = ("call", handle, "unanswered")
        deadline = self._now + self.config.answer_timeout
        self._timers[timer_key] = deadline
        heapq.heappush(self._timer_heap, (deadline, next(self._timer_sequence), timer_key))
        if deadline < self.earliest_armed:
            self.earliest_armed = deadline
        self._events.append(CallOffered(session, peer))

    def _dialog_session(self, info: MessageInfo) -> InviteSession | None:
        handle = self._dialogs.get((info.call_id, info.to.tag or "", info.from_.tag or ""))
        return self.calls.get(handle) if handle else None

    def _answered_call_for_ack(self, info: MessageInfo) -> InviteSession | None:
        """Find the answered call that an ACK with another To tag acknowledges.

        NOTE: RFC 3261 §12.2.2 matches an ACK by its dialog ID, but pyVoIP
        1.6.8 puts a random To tag in every ACK. An ACK whose Call-ID, From
        tag and CSeq number match one answered, unacknowledged INVITE
        confirms that call. Only a party that saw the INVITE can build such an ACK.
        """
        handle = self._inbound_by_caller.get((info.call_id, info.from_.tag or ""))
        session = self.calls.get(handle) if handle is not None else None
        if (
            session is not None
            and session.state is CallState.ANSWERED
            and session.invite.parsed.cseq.number == info.cseq.number
        ):
            logger.debug("call %s: ACK with another To tag accepted", session.handle)
            return session
        return None

    def _on_dialog_request(self, request: SipRequest, key: str) -> None:
        session = self._dialog_session(request.parsed)
        if session is None or session.dialog is None or session.ended:
            self._respond(key, 481)
            return
        if not session.dialog.accept_remote_cseq(request.parsed.cseq.number):
            self._respond(key, 500, "CSeq out of order")
            return
        method = request.method
        if method == "BYE":
            self._respond(key, 200)
            if self._debug:
                logger.debug("call %s: BYE received", session.handle)
            self._end(session, "bye")
        elif method == "INFO":
            self._respond(key, 200)
            content_type = request.headers.get("Content-Type") or ""
            self._events.append(InfoReceived(session.handle, content_type, request.body))
        elif method in ("INVITE", "UPDATE"):
            self._on_reoffer(session, request, key)
        elif method == "REFER":
            self._on_refer(session, request, key)
        elif method == "NOTIFY":
            self._on_notify(session, request, key)
        else:
            self._respond(key, 405, extra=[("Allow", ", ".join(self.allowed))])

    def _on_reoffer(self, session: InviteSession, request: SipRequest, key: str) -> None:
        pending = session.pending_offer_key
        pending_transaction = self._server.get(pending) if pending else None
        if pending_transaction is not None:
            if request.method == "INVITE" and pending_transaction.request.method == "INVITE":
                # §14.2: a second re-INVITE before the first has its final response.
                self._respond(key, 500, extra=[("Retry-After", "1")])
            else:
                # RFC 3311 §5.2: an offer while another offer is pending.
                self._respond(key, 491)
            return
        if request.method == "UPDATE" and session.state is not CallState.CONFIRMED:
            # NOTE: an UPDATE before the ACK would race the 2xx answer; RFC 3311
            # allows it in early dialogs, but we have no early offer/answer.
            self._respond(key, 491)
            return
        if request.method == "INVITE" and session.state is not CallState.CONFIRMED:
            self._respond(key, 491)
            return
        expires = checks.session_expires(request, self.config.min_session_expires)
        if isinstance(expires, Rejection):
            self._respond(key, expires.status, expires.reason, extra=expires.headers)
            return
        session.session_expires = expires
        self._disarm("call", session.handle, "session")
        contacts = request.parsed.contact
        if contacts and session.dialog is not None:
            session.dialog.remote_target = contacts[0].uri_text  # §12.2.2 target refresh
        session.pending_offer_key = key
        sdp = sdp_body(request.headers.get("Content-Type"), request.body)
        if sdp is not None:
            session.remote_sdp = sdp
        offer = "an offer" if sdp else "no offer"
        logger.info("call %s: %s with %s", session.handle, request.method, offer)
        self._events.append(ReofferReceived(session.handle, request.method, sdp))

    def _on_cancel(self, key: str) -> None:
        # The INVITE's key differs from the CANCEL's only in the method (§9.2).
        parts = key.split("|")
        parts[-2 if key.startswith("2543|") else -1] = "INVITE"
        invite_key = "|".join(parts)
        invite = self._server.get(invite_key)
        if invite is None and invite_key in self._lingering:
            # §9.2: the INVITE has its final response, so the CANCEL has no effect.
            self._respond(key, 200)
            return
        if invite is None:
            self._respond(key, 481)
            return
        self._respond(key, 200)
        handle = self._call_by_invite.get(invite_key)
        session = self.calls.get(handle) if handle else None
        if session is None and invite.state is State.PROCEEDING:
            self._cancel_reoffer(invite_key)
            return
        # §9.2: a CANCEL after the final response has no effect on the INVITE.
        if invite.state is State.PROCEEDING and session is not None and not session.ended:
            self._respond(invite_key, 487, to_tag=session.local_tag)
            logger.info("call %s: cancelled by the caller", session.handle)
            self._end(session, "cancel")

    def _cancel_reoffer(self, invite_key: str) -> None:
        """Answer a cancelled re-INVITE with 487; the dialog itself continues (§9.2)."""
        for session in self.calls.values():
            if session.pending_offer_key == invite_key:
                session.pending_offer_key = None
                self._respond(invite_key, 487)
                logger.info("call %s: re-INVITE cancelled by the caller", session.handle)
                return

    def _on_reinvite_ack(self, session: InviteSession, request: SipRequest) -> None:
        if request.parsed.cseq.number != session.reinvite_cseq:
            return
        self._disarm("call", session.handle, "re2xx", "reack")
        session.reinvite_answer = None
        session.reinvite_cseq = None
        sdp = sdp_body(request.headers.get("Content-Type"), request.body)
        if sdp is not None:
            # The answer to an offer we made in the 2xx of an offerless re-INVITE.
            session.remote_sdp = sdp
            self._events.append(CallConfirmed(session.handle, sdp))

    def _on_ack(self, request: SipRequest, info: MessageInfo, key: str) -> None:
        transaction = self._server.get(key)
        if isinstance(transaction, ServerInviteTransaction) and transaction.state in (
            State.COMPLETED,
            State.CONFIRMED,
        ):
            self._apply(key, transaction.on_request(request))
            return
        # `_dialog_session` inlined, which saves a Python call per call.
        to_tag = info.to.params.get("tag") or ""
        handle = self._dialogs.get((info.call_id, to_tag, info.from_.params.get("tag") or ""))
        session = self.calls.get(handle) if handle else None
        if session is None:
            session = self._answered_call_for_ack(info)
        if session is not None and session.state is CallState.CONFIRMED:
            self._on_reinvite_ack(session, request)
            return
        if session is None or session.state is not CallState.ANSWERED:
            return  # a retransmitted or stray ACK is absorbed (§17.2.1, §13.3.2.4)
        invite = session.invite.info
        assert invite is not None, "a session's INVITE passed the checks of `_on_request`"
        if info.cseq.number != invite.cseq.number:
            return
        # `_disarm` inlined, which saves a Python call per call.
        handle = session.handle
        timers = self._timers
        timers.pop(("call", handle, "2xx"), None)
        timers.pop(("call", handle, "ack"), None)
        if len(self._timer_heap) > 2 * len(timers) + _HEAP_SLACK:
            self._compact_timer_heap()
        # `InviteSession.change` inlined unless it logs. ANSWERED may move to CONFIRMED.
        if _dialog_logger.isEnabledFor(logging.DEBUG):
            session.change(CallState.CONFIRMED, "ACK")
        else:
            session.state = CallState.CONFIRMED
        sdp = sdp_body(request.headers.get("Content-Type"), request.body) if request.body else None
        if sdp is not None:
            session.remote_sdp = sdp
        if self._debug:
            logger.debug("call %s: confirmed by ACK", handle)
        self._events.append(CallConfirmed(handle, sdp))
        if session.pending_end is not None:
            self._send_bye(session)
            self._end(session, session.pending_end)
            return
        if session.session_expires:
            self._arm_session_timer(session)

    # ----- responses

    def _on_response(self, response: SipResponse) -> None:
        info = response.info if response.info is not None else response.parsed
        # `Via.branch` and `client_key` inlined, which saves two Python calls per response.
        branch = info.vias[0].params.get("branch") or ""
        method = info.cseq.method
        key = f"{branch}|{'INVITE' if method == 'ACK' else method}"
        transaction = self._client.get(key)
        if transaction is None:
            # A lingering entry absorbs the response, as its Completed transaction did.
            if key not in self._client_lingering:
                logger.debug("dropped a response that matches no client transaction")
            return
        if isinstance(transaction, ClientInviteTransaction):
            self._apply(key, transaction.on_response(response, ack_for_failure), client=True)
        else:
            self._apply(key, transaction.on_response(response), client=True)

    # ----- calls

    def _end(self, session: InviteSession, reason: str) -> None:
        if session.state is CallState.TERMINATED:
            return
        handle = session.handle
        state = session.state
        # `InviteSession.change` inlined unless it logs. Every state but TERMINATED
        # may move to TERMINATED.
        if _dialog_logger.isEnabledFor(logging.DEBUG):
            session.change(CallState.TERMINATED, reason)
        else:
            session.state = CallState.TERMINATED
        session.end_reason = reason
        if session.refer_key is not None:
            self._respond(session.refer_key, 603)
            session.refer_key = None
        # This stops every call timer as `_disarm` would, without its Python call.
        timers = self._timers
        for name in _CONFIRMED_CALL_TIMERS if state is CallState.CONFIRMED else _CALL_TIMERS:
            timers.pop(("call", handle, name), None)
        dialog = session.dialog
        if dialog is not None:
            # `Dialog.id` inlined, which saves a Python call per call.
            self._dialogs.pop((dialog.call_id, dialog.local_tag, dialog.remote_tag), None)
        # A BYE, its 200 or a timer ends most calls, and those run outside the
        # call's task, so the record names the call itself rather than
        # relying on the task's call id (voxgate.logs.CallIdFilter keeps it).
        # A call that ran its course logs its end at DEBUG only (see QUIET_ENDS).
        if reason not in QUIET_ENDS:
            logger.info("call %s: ended (%s)", handle, reason, extra={"call_id": handle})
        elif self._debug:
            logger.debug("call %s: ended (%s)", handle, reason, extra={"call_id": handle})
        self._events.append(CallTerminated(handle, reason))
        self.calls.pop(handle, None)
        self._call_peer.pop(handle, None)
        invite = session.invite.info
        assert invite is not None, "a session's INVITE passed the checks of `_on_request`"
        caller = (invite.call_id, invite.from_.params.get("tag") or "")
        if self._inbound_by_caller.get(caller) == handle:
            del self._inbound_by_caller[caller]

    def _send_bye(self, session: InviteSession) -> None:
        # `hangup` and `_hang_up` repeat this inline while it would not log.
        if self._debug:
            logger.debug("call %s: sending BYE", session.handle)
        self._send_request(session, "BYE")

    # ----- hooks of TransactionUser

    def _on_client_response(self, key: str, response: SipResponse) -> None:
        owner = self._client_owner.get(key, "")
        if owner.startswith("dialog:"):
            if response.status >= 200:
                self._events.append(RequestAnswered(owner[7:], key, response.status))
        elif owner.startswith("refresh:"):
            self._on_refresh_response(owner[8:], key, response)
        elif owner.startswith("ping:"):
            self._on_ping_response(owner[5:], key, response)
        elif owner:
            if not self._on_outbound_response(key, response):
                self._on_registration_response(key, response)
        elif "" in self.registrations:
            # Requests without an owner (BYE, CANCEL, NOTIFY) belong to no outbound call.
            # `_start_client` keeps no empty owner, so a registration named ""
            # owns those keys too, as it owns its REGISTERs.
            self._on_registration_response(key, response)

    def _on_timed_out(self, key: str, timer: Timer, client: bool) -> None:
        super()._on_timed_out(key, timer, client)
        owner = self._client_owner.get(key, "")
        if client and owner.startswith("dialog:"):
            self._events.append(RequestAnswered(owner[7:], key, 408))
        elif client and owner.startswith("refresh:"):
            session = self.calls.get(owner[8:])
            if session is not None and not session.ended:
                self._refresh_failed(session, 408)
        elif client and owner.startswith("ping:"):
            return  # the ping's own, shorter timeout has marked the peer already
        elif client and not self._on_outbound_timeout(key):
            self._on_registration_timeout(key)

    def _on_client_forgotten(self, key: str) -> None:
        # Only the key of a client INVITE transaction can belong to an outbound call.
        if key.endswith("|INVITE"):
            self._on_outbound_forgotten(key)

    def _end_answered(self, session: InviteSession, reason: str) -> None:
        self._send_bye(session)
        self._end(session, reason)

    def _arm_refreshee_timer(self, session: InviteSession, response: SipResponse) -> None:
        """Run the session timer of an answered outbound call (RFC 4028 §7.2).

        With `refresher=uac` we send the refreshes; otherwise the callee
        does, and we send BYE when they stop.
        """
        granted = session_expires_of(response)
        if granted is None or granted[0] <= 0:
            return
        interval, refresher = granted
        if refresher == "uac":
            self._start_refreshing(session, interval, response)
        else:
            session.session_expires = interval
            self._arm_session_timer(session)

    def _on_server_forgotten(self, key: str) -> None:
        self._call_by_invite.pop(key, None)
        merge = self._merge_key_of.pop(key, None)
        if merge is not None and self._merge_keys.get(merge) == key:
            del self._merge_keys[merge]

    def _fire_owner_timer(self, kind: str, owner: str, name: str) -> None:
        if kind == "call":
            self._fire_call_timer(owner, name)
        elif kind == "outbound":
            self._fire_outbound_timer(owner, name)
        elif kind == "ping":
            self._fire_ping(owner)
        elif kind == "registration":
            registration = self.registrations.get(owner)
            if registration is not None:
                branch = new_branch()
                via = self._via(branch, self._registrar_peer(registration.config))
                self._drive(registration, lambda: registration.on_timer(via, self._now), branch)

    def _fire_call_timer(self, handle: str, name: str) -> None:
        session = self.calls.get(handle)
        if session is None or session.ended:
            return
        if name == "2xx" and session.state is CallState.ANSWERED and session.answer is not None:
            source = self._call_peer[handle]
            peer = response_peer(session.invite, source, self.config.force_rport)
            self._outgoing.append(Outgoing(to_bytes(session.answer), peer))
            interval = min(2 * session.retransmit_interval, self.config.timers.t2)
            session.retransmit_interval = interval
            self._arm("call", handle, "2xx", self._now + interval)
        elif name == "re2xx" and session.reinvite_answer is not None and session.reinvite_peer:
            self._outgoing.append(
                Outgoing(to_bytes(session.reinvite_answer), session.reinvite_peer)
            )
            interval = min(2 * session.retransmit_interval, self.config.timers.t2)
            session.retransmit_interval = interval
            self._arm("call", handle, "re2xx", self._now + interval)
        elif name == "reack" and session.reinvite_answer is not None:
            logger.warning("call %s: no ACK for the 2xx to a re-INVITE, sending BYE", handle)
            self._send_bye(session)
            self._end(session, "timeout")
        elif name == "ack" and session.state is CallState.ANSWERED:
            # §13.3.1.4: no ACK within 64*T1 ends the dialog with a BYE.
            logger.warning("call %s: no ACK for the 2xx, sending BYE", handle)
            self._send_bye(session)
            self._end(session, session.pending_end or "timeout")
        elif name == "unanswered" and session.state in (CallState.INCOMING, CallState.EARLY):
            # The INVITE server transaction has no timer of its own in Proceeding, so
            # a handler that never answers would hold the call forever.
            logger.warning("call %s: not answered within %s s", handle, self.config.answer_timeout)
            self._respond(session.transaction_key, 480, to_tag=session.local_tag)
            self._end(session, "timeout")
        elif name == "refresh":
            self._send_refresh(session)
        elif name == "session":
            logger.warning("call %s: session timer expired without a refresh", handle)
            self._send_bye(session)
            self._end(session, "timeout")

    def _session_timer_headers(self, session: InviteSession) -> list[tuple[str, str]]:
        if not session.session_expires:
            return []
        return [
            ("Session-Expires", f"{session.session_expires};refresher=uac"),
            ("Require", "timer"),
        ]

    def _arm_session_timer(self, session: InviteSession) -> None:
        if session.session_expires:
            # RFC 4028 §10: without a refresh, the refreshee sends BYE at the
            # interval minus min(32 s, a third of it).
            interval = session.session_expires
            deadline = self._now + interval - min(32, interval / 3)
            self._arm("call", session.handle, "session", deadline)


def _ping_peer(config: PingConfig) -> Peer:
    """Return where the OPTIONS pings of `config` go; a port left unset means 5060."""
    return Peer(config.transport, config.host, config.port or 5060)
