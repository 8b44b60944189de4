"""Dialogs (RFC 3261 §12) and the state of one inbound INVITE session.

Theory of operation
-------------------
`Dialog` is the peer-to-peer relationship an INVITE creates: Call-ID, local
and remote tags, CSeq counters in each direction, remote target and route
set. It builds in-dialog requests (§12.2.1.1) and checks the CSeq of
requests it receives (§12.2.2).

`InviteSession` is one inbound call as the UA core tracks it, with its own
state machine (`CallState`):

    INCOMING --180--> EARLY --2xx--> ANSWERED --ACK--> CONFIRMED
        |               |               |                  |
        +---------------+---- final >= 300, CANCEL, BYE ---+--> TERMINATED

The UA core feeds it: the INVITE creates it, the application's answer moves
it to ANSWERED (the dialog exists from then on), and the ACK for the 2xx
confirms it. While ANSWERED the core retransmits the 2xx itself
(§13.3.1.4), because the server INVITE transaction leaves that to the TU;
the 2xx to a re-INVITE is retransmitted the same way until its ACK.
A BYE, our hangup, a CANCEL before the final response, a missing ACK, an
expired session timer or an unanswered INVITE ends the session in
TERMINATED, which is final. Only one offer/answer exchange runs at a time:
a re-INVITE while another re-INVITE is pending gets 500 with Retry-After
(RFC 3261 §14.2), and any other overlapping offer gets 491 (RFC 3311 §5.2).
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from signaling.sip.errors import SipUsageError
from signaling.sip.headers import Headers
from signaling.sip.message import SipRequest, SipResponse
from signaling.sip.tokens import random_hex

if TYPE_CHECKING:
    from signaling.sip.routing import Peer

logger = logging.getLogger("sip.dialog")


def new_tag() -> str:
    return random_hex(12)


def new_branch() -> str:
    # `ReferCore._send_request` repeats this inline.
    return "z9hG4bK" + random_hex(16)


@dataclass(slots=True)
class Dialog:
    """Dialog state of §12; for our UAS side, local is the To and remote the From.

    `UserAgent.answer` passes the fields by position, in this order.
    """

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str
    remote_uri: str
    remote_target: str
    route_set: list[str] = field(default_factory=list)
    local_seq: int = 0
    remote_seq: int | None = None

    @property
    def id(self) -> tuple[str, str, str]:
        return (self.call_id, self.local_tag, self.remote_tag)

    def accept_remote_cseq(self, number: int) -> bool:
        """Check a received request's CSeq (§12.2.2); False means answer 500."""
        if self.remote_seq is not None and number <= self.remote_seq:
            return False
        self.remote_seq = number
        return True

    def build_request(
        self,
        method: str,
        via: str,
        *,
        extra: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        content_type: str | None = None,
    ) -> SipRequest:
        """Build an in-dialog request (§12.2.1.1) with the next local CSeq."""
        if method != "ACK":
            self.local_seq += 1
        to = f"<{self.remote_uri}>" + (f";tag={self.remote_tag}" if self.remote_tag else "")
        items = [
            ("Via", via),
            ("Max-Forwards", "70"),
            ("From", f"<{self.local_uri}>;tag={self.local_tag}"),
            ("To", to),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self.local_seq} {method}"),
        ]
        # Loose routing (§12.2.1.1): the route set becomes the Route header, and
        # the Request-URI is the remote target.
        for route in self.route_set:
            items.append(("Route", route))
        if extra:
            items.extend(extra)
        if body and content_type:
            items.append(("Content-Type", content_type))
        return SipRequest(method, self.remote_target, Headers(items), body)


class CallState(enum.Enum):
    INCOMING = "incoming"
    EARLY = "early"
    ANSWERED = "answered"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"

    # Members are compared by identity, so the identity hash agrees with ==, and
    # unlike Enum.__hash__ it runs no Python code in the dict and set lookups.
    __hash__ = object.__hash__


_TRANSITIONS: dict[CallState, frozenset[CallState]] = {
    CallState.INCOMING: frozenset({CallState.EARLY, CallState.ANSWERED, CallState.TERMINATED}),
    CallState.EARLY: frozenset({CallState.ANSWERED, CallState.TERMINATED}),
    CallState.ANSWERED: frozenset({CallState.CONFIRMED, CallState.TERMINATED}),
    CallState.CONFIRMED: frozenset({CallState.TERMINATED}),
    CallState.TERMINATED: frozenset(),
}


@dataclass(slots=True)
class InviteSession:
    """One inbound INVITE and the dialog it creates."""

    handle: str
    invite: SipRequest
    transaction_key: str
    local_tag: str
    state: CallState = CallState.INCOMING
    dialog: Dialog | None = None
    remote_sdp: bytes | None = None
    local_sdp: bytes | None = None
    answer: SipResponse | None = None  # the 2xx, kept for retransmission until the ACK
    retransmit_interval: float = 0.0
    pending_offer_key: str | None = None  # server transaction of a re-INVITE/UPDATE in progress
    session_expires: int | None = None
    end_reason: str | None = None
    pending_end: str | None = None  # hangup requested while waiting for the ACK
    reinvite_answer: SipResponse | None = None  # 2xx to a re-INVITE, until its ACK
    reinvite_cseq: int | None = None
    reinvite_peer: Peer | None = None
    refer_key: str | None = None  # server transaction of a REFER awaiting the application
    refresh_interval: int = 0  # Session-Expires when we are the refresher, else 0
    refresh_with_update: bool = False
    refresh_cseq: int | None = None  # CSeq of our last refresh re-INVITE, for its ACK
    refer_pending: bool = False  # a REFER was accepted and its final NOTIFY is not sent yet

    def change(self, new: CallState, event: str) -> None:
        """Move to `new`; raise `SipUsageError` naming the event for an illegal move.

        `UserAgent.answer`, `_on_ack` and `_end` set the state themselves
        while this logger is not at DEBUG, for moves they know to be legal.
        """
        if new not in _TRANSITIONS[self.state]:
            raise SipUsageError(
                f"call {self.handle}: {event} is not allowed in state {self.state.value}"
            )
        # Guarded, because reading an enum's value runs Python code even when debug is off.
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("call %s: %s -> %s (%s)", self.handle, self.state.value, new.value, event)
        self.state = new

    @property
    def ended(self) -> bool:
        return self.state is CallState.TERMINATED
