"""The UAS core without I/O: datagrams and commands in, datagrams and events out.

`UserAgent` owns the transactions (`signaling.sip.transaction`) and the
inbound INVITE sessions (`signaling.sip.dialog`). The asyncio adapter feeds
it with `receive` (bytes from a transport), `tick` (the clock) and the
application's commands (`ring`, `answer`, `reject`, `hangup`,
`answer_reoffer`, `shutdown`), then drains `take_outgoing()` and
`take_events()`. Every method takes `now` in seconds on the adapter's
monotonic clock, and `next_deadline()` tells the adapter when to call
`tick` again, so tests run timers on a virtual clock.

Requests pass the checks of RFC 3261 §8.2 in order: Max-Forwards, method,
To tag and merged requests, Require, content; each failure gets its
response. Peer input never raises out of `receive`.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

from signaling.sip.dialog import CallState, Dialog, InviteSession, new_branch, new_tag
from signaling.sip.errors import SipSyntaxError, SipUsageError
from signaling.sip.headers import media_type, parse_name_addr, parse_tokens, parse_via, split_list
from signaling.sip.message import (
    REASON_PHRASES,
    SipRequest,
    SipResponse,
    build_response,
    sdp_body,
    to_bytes,
)
from signaling.sip.parser import (
    DEFAULT_LIMITS,
    InvalidRequest,
    Limits,
    is_keepalive,
    parse_datagram,
    salvage_request,
)
from signaling.sip.transaction import (
    ClientNonInviteTransaction,
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
    client_key,
    server_key,
)

logger = logging.getLogger("sip.core")

ALLOWED_METHODS = ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "UPDATE")
# Methods we recognize but do not serve get 405 with Allow; any other gets 501.
KNOWN_METHODS = frozenset(
    {*ALLOWED_METHODS, "REGISTER", "PRACK", "SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "PUBLISH"}
)
SUPPORTED_OPTIONS = ("timer",)
ACCEPTED_BODIES = ("application/sdp", "multipart/mixed")


@dataclass(frozen=True, slots=True)
class Peer:
    """Where a message came from or goes to; `connection` names a stream connection."""

    transport: str
    host: str
    port: int
    connection: int | None = None

    @property
    def reliable(self) -> bool:
        return self.transport != "udp"


@dataclass(frozen=True, slots=True)
class Outgoing:
    data: bytes
    peer: Peer


@dataclass(frozen=True, slots=True)
class CallOffered:
    """A new INVITE created a session; the application must answer or reject it."""

    session: InviteSession
    source: Peer


@dataclass(frozen=True, slots=True)
class CallConfirmed:
    """The ACK for our 2xx arrived; `sdp` is the answer it carried (delayed offer)."""

    handle: str
    sdp: bytes | None


@dataclass(frozen=True, slots=True)
class CallTerminated:
    handle: str
    reason: str


@dataclass(frozen=True, slots=True)
class InfoReceived:
    handle: str
    content_type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class ReofferReceived:
    """A re-INVITE or UPDATE with an offer (or none); answer with `answer_reoffer`."""

    handle: str
    sdp: bytes | None


CoreEvent = CallOffered | CallConfirmed | CallTerminated | InfoReceived | ReofferReceived


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


class UserAgent:
    """The UAS core; see the module docstring for the calling contract."""

    def __init__(self, config: CoreConfig) -> None:
        self.config = config
        self._outgoing: list[Outgoing] = []
        self._events: list[CoreEvent] = []
        self._timers: dict[tuple[str, str, Timer | str], float] = {}
        self._server: dict[str, ServerTransaction] = {}
        self._server_peer: dict[str, Peer] = {}
        self._client: dict[str, ClientNonInviteTransaction] = {}
        self._client_peer: dict[str, Peer] = {}
        self._merge_keys: dict[tuple[str, str, int, str], str] = {}
        self.calls: dict[str, InviteSession] = {}
        self._dialogs: dict[tuple[str, str, str], str] = {}
        self._call_by_invite: dict[str, str] = {}
        self._call_peer: dict[str, Peer] = {}
        self._now = 0.0

    # ----- adapter interface

    def take_outgoing(self) -> list[Outgoing]:
        items, self._outgoing = self._outgoing, []
        return items

    def take_events(self) -> list[CoreEvent]:
        items, self._events = self._events, []
        return items

    def next_deadline(self) -> float | None:
        return min(self._timers.values(), default=None)

    def tick(self, now: float) -> None:
        """Fire every timer due at `now`, earliest first."""
        self._now = max(self._now, now)
        while True:
            due = [(deadline, key) for key, deadline in self._timers.items() if deadline <= now]
            if not due:
                return
            _, key = min(due, key=lambda item: item[0])
            del self._timers[key]
            kind, owner, name = key
            try:
                self._fire(kind, owner, name, now)
            except Exception:
                logger.exception("timer %s for %s %s failed", name, kind, owner)

    def receive(self, data: bytes, peer: Peer, now: float) -> None:
        """Handle one datagram or framed stream message; never raises for peer input."""
        self._now = max(self._now, now)
        if is_keepalive(data):
            return
        try:
            message = parse_datagram(data, self.config.limits)
        except SipSyntaxError as error:
            self._reject_unparsed(data, error, peer)
            return
        self.receive_message(message, peer, now)

    def receive_message(self, message: SipRequest | SipResponse, peer: Peer, now: float) -> None:
        self._now = max(self._now, now)
        try:
            if isinstance(message, SipResponse):
                self._on_response(message)
            else:
                self._on_request(message, peer, now)
        except SipSyntaxError as error:
            logger.debug("invalid message from %s: %s", peer.host, error.reason)
        except Exception:
            logger.exception("failed to handle a message from %s", peer.host)

    def reject_invalid(self, error: SipSyntaxError, peer: Peer) -> None:
        """Answer a request that a stream parser rejected, if its headers allow."""
        if isinstance(error, InvalidRequest):
            self._send_stateless(error.request, error.status, error.reason, peer)

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
        self._now = max(self._now, now)
        session = self._session(handle)
        if session.state not in (CallState.INCOMING, CallState.EARLY):
            raise SipUsageError(
                f"call {handle}: answer is not allowed in state {session.state.value}"
            )
        invite = session.invite
        info = invite.parsed
        remote_target = info.contact[0].uri_text if info.contact else info.from_.uri_text
        session.dialog = Dialog(
            call_id=info.call_id,
            local_tag=session.local_tag,
            remote_tag=info.from_.tag or "",
            local_uri=info.to.uri_text,
            remote_uri=info.from_.uri_text,
            remote_target=remote_target,
            route_set=[str(route) for route in info.record_route],
            remote_seq=info.cseq.number,
        )
        self._dialogs[session.dialog.id] = handle
        session.local_sdp = sdp
        extra = self._session_timer_headers(session)
        response = self._respond(
            session.transaction_key,
            200,
            to_tag=session.local_tag,
            contact=True,
            extra=extra,
            body=sdp,
            record_route=True,
        )
        session.answer = response
        session.change(CallState.ANSWERED, "answer")
        if not self._call_peer[handle].reliable:
            session.retransmit_interval = self.config.timers.t1
            self._arm("call", handle, "2xx", now + session.retransmit_interval)
        self._arm("call", handle, "ack", now + 64 * self.config.timers.t1)

    def reject(self, handle: str, status: int, reason: str | None, now: float) -> None:
        self._now = max(self._now, now)
        session = self._session(handle)
        if not 300 <= status <= 699:
            raise SipUsageError(f"call {handle}: reject needs a status 300-699, not {status}")
        if session.state not in (CallState.INCOMING, CallState.EARLY):
            raise SipUsageError(
                f"call {handle}: reject is not allowed in state {session.state.value}"
            )
        self._respond(session.transaction_key, status, reason, to_tag=session.local_tag)
        self._end(session, "hangup")

    def hangup(self, handle: str, now: float) -> None:
        """End the call from our side; idempotent. Before the answer this sends 480."""
        self._now = max(self._now, now)
        session = self.calls.get(handle)
        if session is not None:
            self._hang_up(session, "hangup", 480)

    def answer_reoffer(self, handle: str, sdp: bytes | None, now: float) -> None:
        """Answer the pending re-INVITE or UPDATE: 200 with `sdp`, or 488 for None."""
        self._now = max(self._now, now)
        session = self._session(handle)
        key = session.pending_offer_key
        if key is None:
            raise SipUsageError(f"call {handle}: no re-INVITE or UPDATE is pending")
        session.pending_offer_key = None
        if key not in self._server:
            return
        if sdp is None:
            self._respond(key, 488)
            return
        session.local_sdp = sdp
        self._respond(key, 200, contact=True, body=sdp, extra=self._session_timer_headers(session))
        self._arm_session_timer(session, now)

    def shutdown(self, now: float) -> None:
        """End every call: BYE for answered calls (after their ACK), 487 for unanswered ones."""
        self._now = max(self._now, now)
        for session in list(self.calls.values()):
            self._hang_up(session, "shutdown", 487)

    def _hang_up(self, session: InviteSession, reason: str, status: int) -> None:
        if session.ended or session.pending_end is not None:
            return
        if session.state in (CallState.INCOMING, CallState.EARLY):
            self._respond(session.transaction_key, status, to_tag=session.local_tag)
            self._end(session, reason)
        elif session.state is CallState.ANSWERED:
            # §15: the callee must not send BYE before the ACK for its 2xx (or
            # the ACK timeout), so the BYE waits for either.
            session.pending_end = reason
        else:
            self._send_bye(session)
            self._end(session, reason)

    # ----- requests

    def _on_request(self, request: SipRequest, peer: Peer, now: float) -> None:
        info = request.parsed
        self._stamp_via(request, peer)
        key = server_key(request)
        logger.debug("request %s cseq %s from %s", request.method, info.cseq.number, peer.host)
        if request.method == "ACK":
            self._on_ack(request, key, now)
            return
        transaction = self._server.get(key)
        if transaction is not None:
            self._apply(key, transaction.on_request(request))
            return
        if request.method == "CANCEL":
            self._on_cancel(request, key, peer, now)
            return
        reliable = peer.reliable
        created: ServerTransaction
        if request.method == "INVITE":
            created = ServerInviteTransaction(key, request, reliable, self.config.timers)
        else:
            created = ServerNonInviteTransaction(key, request, reliable, self.config.timers)
        self._server[key] = created
        self._server_peer[key] = self._response_peer(request, peer)
        if request.method == "INVITE":
            self._respond(key, 100)
        if self._check_request(request, key):
            return
        in_dialog = info.to.tag is not None
        if request.method == "OPTIONS":
            self._respond(key, 200, extra=self._capabilities())
        elif request.method == "INVITE" and not in_dialog:
            self._new_call(request, key, peer, now)
        elif in_dialog:
            self._on_dialog_request(request, key, now)
        else:
            # BYE, INFO or UPDATE outside a dialog (§12.2.2, §15.1.2).
            self._respond(key, 481)

    def _check_request(self, request: SipRequest, key: str) -> bool:
        """Apply the §8.2 checks; send the error response and return True on a failure."""
        info = request.parsed
        method = request.method
        if info.max_forwards == 0 and method != "OPTIONS":
            # VoxGate bridges calls onward as a B2BUA, so a spent hop budget ends here.
            return self._refuse(key, 483)
        if method not in ALLOWED_METHODS:
            status = 405 if method in KNOWN_METHODS else 501
            return self._refuse(key, status, extra=[("Allow", ", ".join(ALLOWED_METHODS))])
        if info.to.tag is None:
            merge = (info.from_.tag or "", info.call_id, info.cseq.number, method)
            other = self._merge_keys.get(merge)
            if other is not None and other != key and other in self._server:
                return self._refuse(key, 482)  # merged request, §8.2.2.2
            self._merge_keys[merge] = key
        if method != "CANCEL":
            try:
                required = parse_tokens(request.headers.get_list("Require"))
            except SipSyntaxError:
                return self._refuse(key, 400, "invalid Require header")
            unsupported = [tag for tag in required if tag.lower() not in SUPPORTED_OPTIONS]
            if unsupported:
                return self._refuse(key, 420, extra=[("Unsupported", ", ".join(unsupported))])
        if method in ("INVITE", "UPDATE"):
            return self._check_content(request, key)
        return False

    def _check_content(self, request: SipRequest, key: str) -> bool:
        headers = request.headers
        accept = [media_type(item) for item in headers.get_list("Accept")]
        if "Accept" in headers and not {"application/sdp", "application/*", "*/*"} & set(accept):
            return self._refuse(key, 406, extra=[("Accept", "application/sdp")])
        if not request.body:
            return False
        encoding = [item.lower() for item in headers.get_list("Content-Encoding")]
        if any(item != "identity" for item in encoding):
            return self._refuse(key, 415, extra=[("Accept-Encoding", "identity")])
        content_type = headers.get("Content-Type")
        accepted = [("Accept", ", ".join(ACCEPTED_BODIES))]
        if content_type is None or media_type(content_type) not in ACCEPTED_BODIES:
            return self._refuse(key, 415, extra=accepted)
        try:
            sdp_body(content_type, request.body)
        except SipSyntaxError as error:
            return self._refuse(key, 400, error.reason)
        return False

    def _new_call(self, request: SipRequest, key: str, peer: Peer, now: float) -> None:
        active = sum(1 for session in self.calls.values() if not session.ended)
        if self.config.max_calls is not None and active >= self.config.max_calls:
            self._respond(key, 503, extra=[("Retry-After", str(self.config.retry_after))])
            return
        expires = self._requested_session_expires(request, key)
        if expires == -1:
            return
        handle = secrets.token_hex(4)  # short id for logs, unrelated to the Call-ID
        session = InviteSession(handle, request, key, new_tag(), session_expires=expires or None)
        session.remote_sdp = sdp_body(request.headers.get("Content-Type"), request.body)
        self.calls[handle] = session
        self._call_by_invite[key] = handle
        self._call_peer[handle] = peer
        logger.info("call %s: INVITE received over %s", handle, peer.transport)
        self._events.append(CallOffered(session, peer))

    def _on_dialog_request(self, request: SipRequest, key: str, now: float) -> None:
        info = request.parsed
        handle = self._dialogs.get((info.call_id, info.to.tag or "", info.from_.tag or ""))
        session = self.calls.get(handle) if handle else None
        if session is None or session.dialog is None or session.ended:
            self._respond(key, 481)
            return
        if not session.dialog.accept_remote_cseq(info.cseq.number):
            self._respond(key, 500, "CSeq out of order")
            return
        method = request.method
        if method == "BYE":
            self._respond(key, 200)
            logger.info("call %s: BYE received", handle)
            self._end(session, "bye")
        elif method == "INFO":
            self._respond(key, 200)
            content_type = request.headers.get("Content-Type") or ""
            self._events.append(InfoReceived(session.handle, content_type, request.body))
        elif method in ("INVITE", "UPDATE"):
            self._on_reoffer(session, request, key, now)
        else:
            self._respond(key, 405, extra=[("Allow", ", ".join(ALLOWED_METHODS))])

    def _on_reoffer(
        self, session: InviteSession, request: SipRequest, key: str, now: float
    ) -> None:
        pending = session.pending_offer_key
        if pending is not None and pending in self._server:
            if request.method == "INVITE" and pending.endswith("|INVITE"):
                # §14.2: a second re-INVITE before the first has its final response.
                self._respond(key, 500, extra=[("Retry-After", "1")])
            else:
                self._respond(key, 491)
            return
        if request.method == "UPDATE" and session.state is not CallState.CONFIRMED:
            self._respond(key, 491)
            return
        expires = self._requested_session_expires(request, key)
        if expires == -1:
            return
        if expires:
            session.session_expires = expires
        if request.method == "INVITE" and session.dialog is not None:
            contacts = request.parsed.contact
            if contacts:
                session.dialog.remote_target = contacts[0].uri_text
        session.pending_offer_key = key
        sdp = sdp_body(request.headers.get("Content-Type"), request.body)
        if sdp is not None:
            session.remote_sdp = sdp
        logger.info(
            "call %s: %s with %s", session.handle, request.method, "offer" if sdp else "no offer"
        )
        self._events.append(ReofferReceived(session.handle, sdp))

    def _on_cancel(self, request: SipRequest, key: str, peer: Peer, now: float) -> None:
        transaction = ServerNonInviteTransaction(key, request, peer.reliable, self.config.timers)
        self._server[key] = transaction
        self._server_peer[key] = self._response_peer(request, peer)
        parts = key.split("|")
        # The INVITE's key differs from the CANCEL's only in the method (§9.2).
        method_index = -2 if key.startswith("2543|") else -1
        parts[method_index] = "INVITE"
        invite_key = "|".join(parts)
        invite = self._server.get(invite_key)
        if invite is None:
            self._respond(key, 481)
            return
        self._respond(key, 200)
        handle = self._call_by_invite.get(invite_key)
        session = self.calls.get(handle) if handle else None
        # §9.2: a CANCEL after the final response has no effect on the INVITE.
        if invite.state is State.PROCEEDING and session is not None and not session.ended:
            self._respond(invite_key, 487, to_tag=session.local_tag)
            logger.info("call %s: cancelled by the caller", session.handle)
            self._end(session, "cancel")

    def _on_ack(self, request: SipRequest, key: str, now: float) -> None:
        transaction = self._server.get(key)
        if isinstance(transaction, ServerInviteTransaction) and transaction.state in (
            State.COMPLETED,
            State.CONFIRMED,
        ):
            self._apply(key, transaction.on_request(request))
            return
        info = request.parsed
        handle = self._dialogs.get((info.call_id, info.to.tag or "", info.from_.tag or ""))
        session = self.calls.get(handle) if handle else None
        if session is None or session.state is not CallState.ANSWERED:
            return
        if info.cseq.number != session.invite.parsed.cseq.number:
            return
        self._disarm("call", session.handle, "2xx")
        self._disarm("call", session.handle, "ack")
        session.change(CallState.CONFIRMED, "ACK")
        sdp = sdp_body(request.headers.get("Content-Type"), request.body)
        if sdp is not None:
            session.remote_sdp = sdp
        logger.info("call %s: confirmed by ACK", session.handle)
        self._events.append(CallConfirmed(session.handle, sdp))
        if session.pending_end is not None:
            self._send_bye(session)
            self._end(session, session.pending_end)
            return
        self._arm_session_timer(session, now)

    # ----- responses

    def _on_response(self, response: SipResponse) -> None:
        info = response.parsed
        branch = info.top_via.branch
        if branch is None:
            return
        key = client_key(branch, info.cseq.method)
        transaction = self._client.get(key)
        if transaction is None:
            logger.debug("dropped a response that matches no client transaction")
            return
        self._apply(key, transaction.on_response(response), client=True)

    # ----- helpers

    def _session(self, handle: str) -> InviteSession:
        session = self.calls.get(handle)
        if session is None:
            raise SipUsageError(f"unknown call {handle}")
        return session

    def _end(self, session: InviteSession, reason: str) -> None:
        if session.ended:
            return
        if session.state is CallState.ANSWERED and reason == "cancel":
            return
        session.change(CallState.TERMINATED, reason)
        session.end_reason = reason
        for name in ("2xx", "ack", "session"):
            self._disarm("call", session.handle, name)
        logger.info("call %s: ended (%s)", session.handle, reason)
        self._events.append(CallTerminated(session.handle, reason))

    def _send_bye(self, session: InviteSession) -> None:
        dialog = session.dialog
        if dialog is None:
            return
        branch = new_branch()
        via = self._via(branch)
        request = dialog.build_request("BYE", via, extra=[("User-Agent", self.config.user_agent)])
        peer = self._request_peer(session)
        key = client_key(branch, "BYE")
        transaction = ClientNonInviteTransaction(key, request, peer.reliable, self.config.timers)
        self._client[key] = transaction
        self._client_peer[key] = peer
        logger.info("call %s: sending BYE", session.handle)
        self._apply(key, transaction.start(), client=True)

    def _request_peer(self, session: InviteSession) -> Peer:
        """Pick where in-dialog requests go.

        NOTE: the stack does not resolve host names. A first Route or the remote
        target is used when its host is an IP address; otherwise requests go
        back to the address the INVITE came from.
        """
        source = self._call_peer[session.handle]
        dialog = session.dialog
        if dialog is None or source.reliable:
            return source
        target_text = dialog.route_set[0] if dialog.route_set else f"<{dialog.remote_target}>"
        try:
            uri = parse_name_addr(target_text).uri
        except SipSyntaxError:
            return source
        if uri is None or not _is_ip(uri.bare_host):
            return source
        return Peer("udp", uri.bare_host, uri.effective_port())

    def _via(self, branch: str, transport: str = "UDP") -> str:
        host = self.config.host if ":" not in self.config.host else f"[{self.config.host}]"
        return f"SIP/2.0/{transport} {host}:{self.config.port};branch={branch};rport"

    def _contact(self) -> str:
        host = self.config.host if ":" not in self.config.host else f"[{self.config.host}]"
        return f"<sip:{host}:{self.config.port}>"

    def _capabilities(self) -> list[tuple[str, str]]:
        return [
            ("Allow", ", ".join(ALLOWED_METHODS)),
            ("Accept", ", ".join(ACCEPTED_BODIES)),
            ("Accept-Encoding", "identity"),
            ("Accept-Language", "en"),
            ("Supported", ", ".join(SUPPORTED_OPTIONS)),
        ]

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
        transaction = self._server.get(key)
        if transaction is None:
            return None
        headers = list(extra or ())
        if contact:
            headers.append(("Contact", self._contact()))
        if record_route:
            headers += [
                ("Record-Route", value) for value in transaction.request.headers.raw("Record-Route")
            ]
        if status >= 200 and transaction.request.method == "INVITE":
            headers.append(("Allow", ", ".join(ALLOWED_METHODS)))
            headers.append(("Supported", ", ".join(SUPPORTED_OPTIONS)))
        headers.append(("Server", self.config.user_agent))
        if status > 100 and to_tag is None and transaction.request.parsed.to.tag is None:
            to_tag = new_tag()
        response = build_response(
            transaction.request,
            status,
            reason,
            to_tag=to_tag,
            headers=headers,
            body=body,
            content_type="application/sdp" if body else None,
        )
        self._apply(key, transaction.send_response(response))
        return response

    def _refuse(self, key: str, status: int, reason: str | None = None, **kwargs: Any) -> bool:
        self._respond(key, status, reason, **kwargs)
        return True

    def _apply(self, key: str, effects: list[Effect], client: bool = False) -> None:
        peer = (self._client_peer if client else self._server_peer).get(key)
        kind = "client" if client else "server"
        for effect in effects:
            if isinstance(effect, Send) and peer is not None:
                self._outgoing.append(Outgoing(to_bytes(effect.message), peer))
            elif isinstance(effect, StartTimer):
                self._arm(kind, key, effect.timer, self._now + effect.delay)
            elif isinstance(effect, StopTimer):
                self._disarm(kind, key, effect.timer)
            elif isinstance(effect, TimedOut):
                self._on_timed_out(key, effect.timer)
            elif isinstance(effect, Terminated):
                self._forget(kind, key)
            elif isinstance(effect, Deliver):
                logger.debug("response %s for %s", effect.response.status, key)

    def _on_timed_out(self, key: str, timer: Timer) -> None:
        handle = self._call_by_invite.get(key)
        session = self.calls.get(handle) if handle else None
        if timer is Timer.H and session is not None and not session.ended:
            logger.warning("call %s: no ACK for the final response", session.handle)

    def _forget(self, kind: str, key: str) -> None:
        if kind == "server":
            transaction = self._server.pop(key, None)
            self._server_peer.pop(key, None)
            self._call_by_invite.pop(key, None)
            if transaction is not None:
                info = transaction.request.parsed
                merge = (
                    info.from_.tag or "",
                    info.call_id,
                    info.cseq.number,
                    transaction.request.method,
                )
                if self._merge_keys.get(merge) == key:
                    del self._merge_keys[merge]
        else:
            self._client.pop(key, None)
            self._client_peer.pop(key, None)
        for timer_key in [item for item in self._timers if item[0] == kind and item[1] == key]:
            del self._timers[timer_key]

    def _arm(self, kind: str, owner: str, name: Timer | str, deadline: float) -> None:
        self._timers[(kind, owner, name)] = deadline

    def _disarm(self, kind: str, owner: str, name: Timer | str) -> None:
        self._timers.pop((kind, owner, name), None)

    def _fire(self, kind: str, owner: str, name: Timer | str, now: float) -> None:
        if kind == "server" and isinstance(name, Timer):
            server = self._server.get(owner)
            if server is not None:
                self._apply(owner, server.on_timer(name))
        elif kind == "client" and isinstance(name, Timer):
            client = self._client.get(owner)
            if client is not None:
                self._apply(owner, client.on_timer(name), client=True)
        elif kind == "call":
            self._fire_call_timer(owner, str(name), now)

    def _fire_call_timer(self, handle: str, name: str, now: float) -> None:
        session = self.calls.get(handle)
        if session is None or session.ended:
            return
        if name == "2xx" and session.state is CallState.ANSWERED and session.answer is not None:
            peer = self._call_peer[handle]
            assert isinstance(session.answer, SipResponse)
            self._outgoing.append(
                Outgoing(to_bytes(session.answer), self._response_peer(session.invite, peer))
            )
            session.retransmit_interval = min(
                2 * session.retransmit_interval, self.config.timers.t2
            )
            self._arm("call", handle, "2xx", now + session.retransmit_interval)
        elif name == "ack" and session.state is CallState.ANSWERED:
            logger.warning("call %s: no ACK for the 2xx, sending BYE", handle)
            self._send_bye(session)
            self._end(session, session.pending_end or "timeout")
        elif name == "session":
            logger.warning("call %s: session timer expired without refresh, sending BYE", handle)
            self._send_bye(session)
            self._end(session, "timeout")

    # ----- session timers (RFC 4028)

    def _requested_session_expires(self, request: SipRequest, key: str) -> int | None:
        """Return the Session-Expires interval to use, None, or -1 after sending 422."""
        value = request.headers.get("Session-Expires")
        if value is None:
            return None
        text = value.split(";", 1)[0].strip()
        if not text.isdigit() or len(text) > 9:
            self._respond(key, 400, "invalid Session-Expires")
            return -1
        interval = int(text)
        if interval < self.config.min_session_expires:
            self._respond(key, 422, extra=[("Min-SE", str(self.config.min_session_expires))])
            return -1
        supported = [item.lower() for item in request.headers.get_list("Supported")]
        # RFC 4028 §9: without 'timer' support the UAS would have to refresh; we
        # decline the timer then, which the RFC allows.
        return interval if "timer" in supported else 0

    def _session_timer_headers(self, session: InviteSession) -> list[tuple[str, str]]:
        if not session.session_expires:
            return []
        return [
            ("Session-Expires", f"{session.session_expires};refresher=uac"),
            ("Require", "timer"),
        ]

    def _arm_session_timer(self, session: InviteSession, now: float) -> None:
        if session.session_expires:
            # RFC 4028 §10: without a refresh, BYE after the interval minus
            # min(32 s, a third of it).
            interval = session.session_expires
            self._arm("call", session.handle, "session", now + interval - min(32, interval / 3))

    # ----- addressing (§18.2.2, RFC 3581)

    def _stamp_via(self, request: SipRequest, peer: Peer) -> None:
        """Add received and rport to the top Via as RFC 3581 asks."""
        via = request.parsed.top_via
        changed = False
        if via.host.strip("[]") != peer.host:
            via.params["received"] = peer.host
            changed = True
        if "rport" in via.params:
            via.params["rport"] = str(peer.port)
            changed = True
        if not changed:
            return
        fields = request.headers.raw("Via")
        elements = split_list(fields[0])
        elements[0] = str(via)
        fields[0] = ", ".join(elements)
        request.headers.remove("Via")
        for value in fields:
            request.headers.add("Via", value)

    def _response_peer(self, request: SipRequest, peer: Peer) -> Peer:
        if peer.reliable:
            return peer
        try:
            via = request.parsed.top_via
        except SipSyntaxError:
            return peer
        if self.config.force_rport or "rport" in via.params:
            return peer
        return Peer(peer.transport, peer.host, via.port or 5060)

    def _reject_unparsed(self, data: bytes, error: SipSyntaxError, peer: Peer) -> None:
        if isinstance(error, InvalidRequest):
            request: SipRequest | None = error.request
        else:
            request = salvage_request(data, self.config.limits)
        if request is None:
            logger.debug("dropped an invalid message from %s: %s", peer.host, error.reason)
            return
        self._send_stateless(request, error.status, error.reason, peer)

    def _send_stateless(self, request: SipRequest, status: int, reason: str, peer: Peer) -> None:
        logger.debug("rejecting an invalid request from %s with %s: %s", peer.host, status, reason)
        headers: list[tuple[str, str]] = [("Server", self.config.user_agent)]
        if status == 505:
            headers.append(("Supported", ", ".join(SUPPORTED_OPTIONS)))
        response = build_response(request, status, _reason_phrase(status, reason), headers=headers)
        self._outgoing.append(Outgoing(to_bytes(response), self._stateless_peer(request, peer)))

    def _stateless_peer(self, request: SipRequest, peer: Peer) -> Peer:
        """Route a response to a request whose headers may not parse: Via if possible."""
        if peer.reliable or self.config.force_rport:
            return peer
        try:
            via = parse_via(request.headers.get_list("Via")[0])
        except (SipSyntaxError, IndexError):
            return peer
        return peer if "rport" in via.params else Peer(peer.transport, peer.host, via.port or 5060)


def _reason_phrase(status: int, reason: str) -> str:
    """Put the parser's reason into the status line; it names the problem for the peer."""
    cleaned = "".join(char if char.isprintable() else "?" for char in reason)[:120]
    base = REASON_PHRASES.get(status, "Bad Request")
    return f"{base} ({cleaned})" if cleaned else base


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
