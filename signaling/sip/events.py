"""Events the UA core reports to its adapter, one dataclass per kind."""

from __future__ import annotations

from dataclasses import dataclass

from signaling.sip.dialog import InviteSession
from signaling.sip.routing import Peer


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
    """The call ended; `reason` is bye, cancel, hangup, timeout or shutdown."""

    handle: str
    reason: str


@dataclass(frozen=True, slots=True)
class InfoReceived:
    """An in-dialog INFO, already answered with 200."""

    handle: str
    content_type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class ReofferReceived:
    """A re-INVITE or UPDATE with an offer (or none); answer with `answer_reoffer`."""

    handle: str
    method: str
    sdp: bytes | None


@dataclass(frozen=True, slots=True)
class RegistrationChanged:
    """An outbound registration changed state; `detail` names the cause."""

    name: str
    state: str
    detail: str


CoreEvent = (
    CallOffered | CallConfirmed | CallTerminated | InfoReceived | ReofferReceived
    | RegistrationChanged
)  # fmt: skip
