"""Events the UA core reports to its adapter, one dataclass per kind.

An inbound call reports one each of CallOffered, CallConfirmed and
CallTerminated, so those three are not frozen: a frozen dataclass sets its
fields through object.__setattr__, which made a two-field __init__ take about
3 times as long (timeit, CPython 3.11). The adapter only reads events.
"""

from __future__ import annotations

from dataclasses import dataclass

from signaling.sip.dialog import InviteSession
from signaling.sip.routing import Peer


@dataclass(slots=True)
class CallOffered:
    """A new INVITE created a session; the application must answer or reject it."""

    session: InviteSession
    source: Peer


@dataclass(slots=True)
class CallConfirmed:
    """The ACK for our 2xx arrived; `sdp` is the answer it carried (delayed offer)."""

    handle: str
    sdp: bytes | None


@dataclass(slots=True)
class CallTerminated:
    """The call ended; `reason` is bye, cancel, hangup, timeout, shutdown or rejected.

    `status` is the final response that ended an outbound call before its
    answer (408 when none came), else None.
    """

    handle: str
    reason: str
    status: int | None = None


@dataclass(frozen=True, slots=True)
class CallProgress:
    """A provisional response (101-199) to our INVITE; `sdp` is its early media answer."""

    handle: str
    status: int
    sdp: bytes | None


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
class RequestAnswered:
    """The final response to a request we sent with `send_in_dialog` (408 on timeout)."""

    handle: str
    key: str
    status: int


@dataclass(frozen=True, slots=True)
class ReferProgress:
    """A NOTIFY about a transfer we asked for; `status` is its sipfrag status code."""

    handle: str
    status: int
    final: bool


@dataclass(frozen=True, slots=True)
class ReferReceived:
    """The peer asks us to transfer the call to `target`; answer with `answer_refer`."""

    handle: str
    target: str


@dataclass(frozen=True, slots=True)
class RegistrationChanged:
    """An outbound registration changed state; `detail` names the cause."""

    name: str
    state: str
    detail: str


@dataclass(frozen=True, slots=True)
class PingChanged:
    """An OPTIONS-pinged peer became reachable or unreachable; `rtt` in seconds."""

    name: str
    state: str
    rtt: float | None
    status: int | None


CoreEvent = (
    CallOffered | CallConfirmed | CallTerminated | CallProgress | InfoReceived | ReofferReceived
    | RequestAnswered | ReferProgress | ReferReceived | RegistrationChanged | PingChanged
)  # fmt: skip
