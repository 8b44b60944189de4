"""Outbound calls (the UAC side of INVITE) without I/O.

Theory of operation
-------------------
`OutboundCore` sits between `TransactionUser` and the UA core. For each
call it sends an INVITE through a `ClientInviteTransaction` (Timer A
retransmits it over UDP, Timer B gives up) and tracks the call in an
`OutboundSession` with its own state machine:

    CALLING --1xx--> PROCEEDING --cancel--> CANCELLING
       |                 |                       |
       +-----------------+---- 2xx --> ANSWERED  +--> TERMINATED
       +---- final >= 300, Timer B, cancel timeout ---> TERMINATED

After a 401 or 407 the INVITE is sent once more with digest credentials
(new branch, next CSeq, same Call-ID and From tag). The transaction sends
the ACK for every non-2xx final response (§17.1.1.3). The ACK for a 2xx
belongs to the dialog (§13.2.2.4), so this core builds it and sends it
again for each retransmitted 2xx.

On the 2xx the call becomes an `InviteSession` in CONFIRMED state in the
core's call table, so BYE, INFO, re-INVITE, UPDATE, REFER and hangup work
the same for both directions. A CANCEL waits for a provisional
response (§9.1); a 2xx that crosses our CANCEL is acknowledged and ended
with BYE (§15).
"""

from __future__ import annotations

import enum
import logging
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from signaling.sip.auth import ALGORITHMS, build_authorization, parse_digest
from signaling.sip.dialog import CallState, Dialog, InviteSession, new_branch, new_tag
from signaling.sip.errors import SipSyntaxError, SipUsageError
from signaling.sip.events import CallConfirmed, CallProgress, CallTerminated, CoreEvent
from signaling.sip.headers import TOKEN_RE, Headers, canonical_name
from signaling.sip.message import SipRequest, SipResponse, sdp_body, to_bytes
from signaling.sip.parser import parse_datagram
from signaling.sip.routing import Outgoing, Peer, in_dialog_peer, is_ip
from signaling.sip.transaction import ClientInviteTransaction, client_key
from signaling.sip.tu import CoreConfig, TransactionUser
from signaling.sip.uri import parse_sip_uri

logger = logging.getLogger("sip.uac")

# Headers that the stack writes itself; an application value would corrupt the INVITE.
RESERVED_HEADERS = frozenset(
    {"via", "from", "to", "call-id", "cseq", "max-forwards", "contact", "content-length",
     "content-type", "route", "record-route"}
)  # fmt: skip
_USER_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,;?/%]+")


def _call_extra(handle: str) -> dict[str, str]:
    """Return the log record `extra` that names the call `handle` as its call id.

    Responses and timers reach this core outside the call's task, where the
    context's call id (voxgate.logs.CallIdFilter) is "-".
    """
    return {"call_id": handle}


class OutboundState(enum.Enum):
    CALLING = "calling"
    PROCEEDING = "proceeding"
    CANCELLING = "cancelling"
    ANSWERED = "answered"
    TERMINATED = "terminated"


_TRANSITIONS: dict[OutboundState, frozenset[OutboundState]] = {
    OutboundState.CALLING: frozenset(
        {OutboundState.PROCEEDING, OutboundState.ANSWERED, OutboundState.TERMINATED}
    ),
    OutboundState.PROCEEDING: frozenset(
        {OutboundState.CANCELLING, OutboundState.ANSWERED, OutboundState.TERMINATED}
    ),
    OutboundState.CANCELLING: frozenset({OutboundState.ANSWERED, OutboundState.TERMINATED}),
    OutboundState.ANSWERED: frozenset(),
    OutboundState.TERMINATED: frozenset(),
}


@dataclass(slots=True)
class OutboundSession:
    """State of one outbound INVITE, from its sending until its final response."""

    handle: str
    peer: Peer
    target: str
    local_uri: str
    local_tag: str
    call_id: str
    offer: bytes
    invite: SipRequest
    transaction_key: str
    credentials: tuple[str, str] | None
    extra: list[tuple[str, str]]
    state: OutboundState = OutboundState.CALLING
    cseq: int = 1
    authenticated: bool = False
    cancel_reason: str | None = None  # why the call was cancelled (cancel, hangup, timeout)
    early_sdp: bytes | None = None
    ack: SipRequest | None = None  # the ACK for the 2xx, resent for each retransmission
    ack_peer: Peer | None = None
    remote_tag: str | None = None  # To tag of the 2xx that made the dialog

    def change(self, new: OutboundState, event: str) -> None:
        """Move to `new`; raise `SipUsageError` naming the event for an illegal move."""
        if new not in _TRANSITIONS[self.state]:
            raise SipUsageError(
                f"outbound call {self.handle}: {event} is not allowed in state {self.state.value}"
            )
        logger.debug(
            "call %s: %s -> %s (%s)",
            self.handle,
            self.state.value,
            new.value,
            event,
            extra=_call_extra(self.handle),
        )
        self.state = new


class OutboundCore(TransactionUser):
    """Outbound INVITE handling shared by the UA core; see the module docstring."""

    def __init__(self, config: CoreConfig, allowed: tuple[str, ...]) -> None:
        super().__init__(config, allowed)
        self.calls: dict[str, InviteSession] = {}
        self.outbound: dict[str, OutboundSession] = {}
        self._events: list[CoreEvent] = []
        self._dialogs: dict[tuple[str, str, str], str] = {}
        self._call_peer: dict[str, Peer] = {}

    # ----- commands

    def place_call(
        self,
        target_uri: str,
        sdp_offer: bytes,
        from_user: str,
        now: float,
        *,
        headers: Mapping[str, str] | None = None,
        credentials: tuple[str, str] | None = None,
        timeout: float = 60.0,
        session_expires: int | None = None,
        destination: tuple[str, int] | None = None,
    ) -> str:
        """Send an INVITE with `sdp_offer` to `target_uri`; return the call handle.

        The INVITE goes to `destination` (IP address, port) when given, which
        the caller found for a target host name (`signaling.sip.resolver`);
        otherwise the target's host must be an IP address. The transport is
        UDP (default) or TCP. With `session_expires` the
        INVITE asks for session timers (RFC 4028). Raise `SipUsageError` for a
        target, user or header the stack cannot send.
        """
        self._now = max(self._now, now)
        try:
            uri = parse_sip_uri(target_uri)
        except SipSyntaxError as error:
            raise SipUsageError(f"invalid target URI: {error.reason}") from None
        if uri.scheme.lower() != "sip":
            raise SipUsageError("invalid target URI: only sip: targets are supported, not sips:")
        if destination is None and not is_ip(uri.bare_host):
            raise SipUsageError("invalid target URI: the host must be an IP address")
        if destination is not None and not is_ip(destination[0]):
            raise SipUsageError(f"invalid destination {destination[0]}: expected an IP address")
        if uri.transport not in ("udp", "tcp"):
            raise SipUsageError(f"unsupported transport {uri.transport} for an outbound call")
        if len(sdp_offer) > self.config.limits.max_body_bytes:
            raise SipUsageError(
                f"SDP offer of {len(sdp_offer)} bytes exceeds the body limit "
                f"{self.config.limits.max_body_bytes}"
            )
        if not _USER_RE.fullmatch(from_user):
            raise SipUsageError("invalid from_user: expected a non-empty SIP user part")
        extra = [(name, value) for name, value in (headers or {}).items()]
        for name, value in extra:
            if not TOKEN_RE.fullmatch(name) or any(char in value for char in "\r\n\0"):
                raise SipUsageError(f"invalid header {name!r} for an outbound call")
            if canonical_name(name).lower() in RESERVED_HEADERS:
                raise SipUsageError(f"header {name!r} is set by the stack; remove it")
        if session_expires is not None:
            extra += [("Supported", "timer"), ("Session-Expires", str(session_expires))]
        address, port = destination or (uri.bare_host, uri.effective_port())
        peer = Peer(uri.transport, address, port)
        handle = secrets.token_hex(4)
        local_uri = f"sip:{from_user}@{self._host()}:{self._port_for(peer)}"
        session = OutboundSession(
            handle=handle,
            peer=peer,
            target=target_uri,
            local_uri=local_uri,
            local_tag=new_tag(),
            call_id=f"{secrets.token_hex(12)}@{self._host()}",
            offer=sdp_offer,
            invite=SipRequest("INVITE", target_uri, Headers()),
            transaction_key="",
            credentials=credentials,
            extra=extra,
        )
        self.outbound[handle] = session
        # This runs in the task that places the call, so its context call id, if that task
        # set one (such as a callback), names this line and links the handle to it.
        logger.info("call %s: sending INVITE over %s", handle, peer.transport)
        self._send_invite(session, None)
        self._arm("outbound", handle, "answer", self._now + timeout)
        return handle

    def cancel_call(self, handle: str, now: float, reason: str = "cancel") -> None:
        """Give up an unanswered outbound call (CANCEL, §9.1); no effect once answered."""
        self._now = max(self._now, now)
        session = self.outbound.get(handle)
        if session is None or session.state not in (
            OutboundState.CALLING,
            OutboundState.PROCEEDING,
        ):
            return
        if session.cancel_reason is None:
            session.cancel_reason = reason
        if session.state is OutboundState.PROCEEDING:
            self._send_cancel(session)

    # ----- sending

    def _send_invite(self, session: OutboundSession, authorization: tuple[str, str] | None) -> None:
        branch = new_branch()
        headers = Headers()
        headers.add("Via", self._via(branch, session.peer))
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<{session.local_uri}>;tag={session.local_tag}")
        headers.add("To", f"<{session.target}>")
        headers.add("Call-ID", session.call_id)
        headers.add("CSeq", f"{session.cseq} INVITE")
        user = session.local_uri.split(":", 1)[1].split("@", 1)[0]
        headers.add("Contact", self._contact(session.peer).replace("<sip:", f"<sip:{user}@", 1))
        headers.add("Allow", ", ".join(self.allowed))
        headers.add("User-Agent", self.config.user_agent)
        if authorization is not None:
            headers.add(*authorization)
        for name, value in session.extra:
            headers.add(name, value)
        headers.add("Content-Type", "application/sdp")
        request = SipRequest("INVITE", session.target, headers, session.offer)
        session.invite = request
        key = client_key(branch, "INVITE")
        session.transaction_key = key
        transaction = ClientInviteTransaction(
            key, request, session.peer.reliable, self.config.timers
        )
        self._client[key] = transaction
        self._client_peer[key] = session.peer
        self._client_owner[key] = session.handle
        self._apply(key, transaction.start(), client=True)

    def _send_cancel(self, session: OutboundSession) -> None:
        """CANCEL copies the INVITE's Request-URI, top Via, From, To, Call-ID (§9.1)."""
        session.change(OutboundState.CANCELLING, "cancel")
        invite = session.invite
        headers = Headers()
        for name in ("Via", "From", "To", "Call-ID"):
            headers.add(name, invite.headers.raw(name)[0])
        headers.add("CSeq", f"{session.cseq} CANCEL")
        headers.add("Max-Forwards", "70")
        request = SipRequest("CANCEL", invite.uri, headers)
        branch = session.transaction_key.split("|", 1)[0]
        logger.info("call %s: sending CANCEL", session.handle, extra=_call_extra(session.handle))
        self._start_client(request, branch, session.peer)
        # §9.1: without a final response 64*T1 after the CANCEL, the INVITE is given up.
        self._arm("outbound", session.handle, "cancel", self._now + 64 * self.config.timers.t1)

    # ----- responses and timers

    def _on_outbound_response(self, key: str, response: SipResponse) -> bool:
        """Handle a response to one of our INVITEs; False when `key` is not one."""
        if not key.endswith("|INVITE"):
            return False
        session = self.outbound.get(self._client_owner.get(key, ""))
        if session is None:
            return False
        status = response.status
        sdp = sdp_body(response.headers.get("Content-Type"), response.body)
        if session.state is OutboundState.ANSWERED:
            if not 200 <= status < 300:
                return True
            if response.parsed.to.tag != session.remote_tag:
                self._end_forked_dialog(session, response)
            elif session.ack is not None and session.ack_peer is not None:
                self._outgoing.append(Outgoing(to_bytes(session.ack), session.ack_peer))
            return True
        if key != session.transaction_key or session.state is OutboundState.TERMINATED:
            return True
        if status < 200:
            self._on_provisional(session, status, sdp)
        elif status < 300:
            self._on_answer(session, response, sdp)
        elif status in (401, 407) and self._retry_with_credentials(session, response):
            pass
        else:
            reason = session.cancel_reason or "rejected"
            logger.info(
                "call %s: INVITE failed with status %s",
                session.handle,
                status,
                extra=_call_extra(session.handle),
            )
            self._finish_outbound(session, reason, status)
        return True

    def _on_provisional(self, session: OutboundSession, status: int, sdp: bytes | None) -> None:
        if session.state is OutboundState.CALLING:
            session.change(OutboundState.PROCEEDING, str(status))
        if sdp is not None:
            session.early_sdp = sdp
        if status > 100:
            self._events.append(CallProgress(session.handle, status, sdp))
        if session.cancel_reason is not None and session.state is OutboundState.PROCEEDING:
            self._send_cancel(session)

    def _dialog_from(self, session: OutboundSession, response: SipResponse) -> Dialog:
        info = response.parsed
        return Dialog(
            call_id=session.call_id,
            local_tag=session.local_tag,
            remote_tag=info.to.tag or "",
            local_uri=session.local_uri,
            remote_uri=session.target,
            remote_target=info.contact[0].uri_text if info.contact else session.target,
            # §12.1.2: the UAC's route set is the Record-Route in reverse order.
            route_set=[str(route) for route in reversed(info.record_route)],
            local_seq=session.cseq,
        )

    def _end_forked_dialog(self, session: OutboundSession, response: SipResponse) -> None:
        """Acknowledge a 2xx from a second fork and end its dialog with BYE (§13.2.2.4)."""
        dialog = self._dialog_from(session, response)
        peer = in_dialog_peer(dialog, session.peer)
        ack = dialog.build_request("ACK", self._via(new_branch(), peer))
        self._outgoing.append(Outgoing(to_bytes(ack), peer))
        branch = new_branch()
        self._start_client(dialog.build_request("BYE", self._via(branch, peer)), branch, peer)
        logger.info(
            "call %s: 2xx from a second fork; sending BYE to its dialog",
            session.handle,
            extra=_call_extra(session.handle),
        )

    def _on_answer(
        self, session: OutboundSession, response: SipResponse, sdp: bytes | None
    ) -> None:
        dialog = self._dialog_from(session, response)
        session.remote_tag = dialog.remote_tag
        peer = in_dialog_peer(dialog, session.peer)
        ack = dialog.build_request(
            "ACK", self._via(new_branch(), peer), extra=[("User-Agent", self.config.user_agent)]
        )
        session.ack, session.ack_peer = ack, peer
        self._outgoing.append(Outgoing(to_bytes(ack), peer))

        session.change(OutboundState.ANSWERED, str(response.status))
        self._disarm("outbound", session.handle, "answer", "cancel")
        parsed_invite = parse_datagram(to_bytes(session.invite), self.config.limits)
        assert isinstance(parsed_invite, SipRequest)

        call = InviteSession(
            session.handle,
            parsed_invite,
            "",
            session.local_tag,
            state=CallState.CONFIRMED,
            dialog=dialog,
            remote_sdp=sdp or session.early_sdp,
            local_sdp=session.offer,
        )
        self.calls[session.handle] = call
        self._dialogs[dialog.id] = session.handle
        self._call_peer[session.handle] = session.peer
        logger.info("call %s: answered", session.handle, extra=_call_extra(session.handle))
        self._events.append(CallConfirmed(session.handle, call.remote_sdp))
        if session.cancel_reason is not None:
            # §15: a 2xx that crossed our CANCEL still makes a dialog; end it with BYE.
            self._end_answered(call, session.cancel_reason)
        else:
            self._arm_refreshee_timer(call, response)

    def _retry_with_credentials(self, session: OutboundSession, response: SipResponse) -> bool:
        """Retry the INVITE once with digest credentials after a 401 or 407."""
        if session.credentials is None or session.authenticated or session.cancel_reason:
            return False
        header = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
        answer = "Authorization" if response.status == 401 else "Proxy-Authorization"
        for value in response.headers.raw(header):
            try:
                challenge = parse_digest(value)
            except SipSyntaxError:
                continue
            algorithm = challenge.params.get("algorithm", "MD5").upper()
            if challenge.scheme.lower() != "digest" or algorithm not in ALGORITHMS:
                continue
            user, password = session.credentials
            authorization = build_authorization(
                challenge, "INVITE", session.target, user, password,
                nc=1, cnonce=secrets.token_hex(8),
            )  # fmt: skip
            session.authenticated = True
            session.cseq += 1
            logger.info(
                "call %s: retrying the INVITE with credentials after %s",
                session.handle,
                response.status,
                extra=_call_extra(session.handle),
            )
            self._send_invite(session, (answer, authorization))
            return True
        logger.info(
            "call %s: no usable digest challenge in %s",
            session.handle,
            response.status,
            extra=_call_extra(session.handle),
        )
        return False

    def _on_outbound_timeout(self, key: str) -> bool:
        """Timer B fired for one of our INVITEs; False when `key` is not one."""
        session = self.outbound.get(self._client_owner.get(key, ""))
        if session is None or not key.endswith("|INVITE") or key != session.transaction_key:
            return False
        if session.state not in (OutboundState.ANSWERED, OutboundState.TERMINATED):
            logger.info(
                "call %s: no response to the INVITE",
                session.handle,
                extra=_call_extra(session.handle),
            )
            self._finish_outbound(session, session.cancel_reason or "timeout", 408)
        return True

    def _on_outbound_forgotten(self, key: str) -> None:
        """Drop the session once its INVITE transaction is gone and no 2xx can follow."""
        for handle, session in list(self.outbound.items()):
            if session.transaction_key == key and session.state in (
                OutboundState.ANSWERED,
                OutboundState.TERMINATED,
            ):
                del self.outbound[handle]

    def _fire_outbound_timer(self, handle: str, name: str) -> None:
        session = self.outbound.get(handle)
        if session is None:
            return
        if name == "answer" and session.state in (
            OutboundState.CALLING,
            OutboundState.PROCEEDING,
        ):
            logger.info(
                "call %s: answer timeout expired; sending CANCEL", handle, extra=_call_extra(handle)
            )
            self.cancel_call(handle, self._now, "timeout")
        elif name == "cancel" and session.state is OutboundState.CANCELLING:
            logger.info(
                "call %s: no final response after CANCEL", handle, extra=_call_extra(handle)
            )
            self._finish_outbound(session, session.cancel_reason or "cancel", 408)

    def _finish_outbound(self, session: OutboundSession, reason: str, status: int) -> None:
        session.change(OutboundState.TERMINATED, reason)
        self._disarm("outbound", session.handle, "answer", "cancel")
        logger.info(
            "call %s: ended (%s)", session.handle, reason, extra=_call_extra(session.handle)
        )
        self._events.append(CallTerminated(session.handle, reason, status))
        if session.transaction_key not in self._client:
            self.outbound.pop(session.handle, None)

    def _shutdown_outbound(self) -> None:
        for handle in list(self.outbound):
            self.cancel_call(handle, self._now, "shutdown")

    # ----- provided by the UA core

    def _end_answered(self, session: InviteSession, reason: str) -> None:
        raise NotImplementedError

    def _arm_refreshee_timer(self, session: InviteSession, response: SipResponse) -> None:
        raise NotImplementedError


def ack_for_failure(invite: SipRequest, response: SipResponse) -> SipRequest:
    """Build the ACK for a non-2xx final response (§17.1.1.3).

    It copies the INVITE's Request-URI, top Via, From, Call-ID and Route,
    takes the To (with its tag) from the response, and uses the INVITE's
    CSeq number.
    """
    headers = Headers()
    headers.add("Via", invite.headers.raw("Via")[0])
    headers.add("Max-Forwards", "70")
    headers.add("From", invite.headers.raw("From")[0])
    to = response.headers.raw("To")
    headers.add("To", to[0] if to else invite.headers.raw("To")[0])
    headers.add("Call-ID", invite.headers.raw("Call-ID")[0])
    number = invite.headers.raw("CSeq")[0].split()[0]
    headers.add("CSeq", f"{number} ACK")
    for route in invite.headers.raw("Route"):
        headers.add("Route", route)
    return SipRequest("ACK", invite.uri, headers)
