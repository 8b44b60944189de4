"""The four RFC 3261 §17 transaction state machines, without I/O.

Theory of operation
-------------------
A transaction is one request and every response to it. The UA core creates
a server transaction for each new request it receives and a client
transaction for each request it sends. Four machines exist:

* `ServerInviteTransaction` (§17.2.1, with the Accepted state of RFC 6026),
* `ServerNonInviteTransaction` (§17.2.2),
* `ClientInviteTransaction` (§17.1.1, with Accepted from RFC 6026),
* `ClientNonInviteTransaction` (§17.1.2).

Inputs are method calls: a retransmitted request or a response from the
network, a response from the transaction user (TU), or a fired timer. Each
call returns a list of effects (`Send`, `StartTimer`, `StopTimer`,
`Deliver`, `TimedOut`, `Terminated`) that the UA core carries out. Timers
are named as in RFC 3261 and RFC 6026 (A-M) and are effects too, so tests run them on a
virtual clock. Retransmission timers (A, E, G) are started only on
unreliable transports, and the wait timers (D, I, J, K) are zero on
reliable ones (§17.1.1.2, §17.2.1).

Invariant: a transaction in TERMINATED never emits another `Send`, and
emits `Terminated` exactly once, which tells the core to forget it. The ACK
for a 2xx is not part of any transaction (§13.3.1.4, §17.1.1.3): the dialog
layer sends and absorbs it.
"""

from __future__ import annotations

import enum
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

from signaling.sip.errors import SipUsageError
from signaling.sip.message import SipRequest, SipResponse

logger = logging.getLogger("sip.transaction")


class Timer(enum.Enum):
    A = "A"  # INVITE request retransmit (client, unreliable)
    B = "B"  # INVITE transaction timeout (client)
    D = "D"  # wait time for response retransmits (client INVITE)
    E = "E"  # non-INVITE request retransmit (client, unreliable)
    F = "F"  # non-INVITE transaction timeout (client)
    G = "G"  # INVITE final response retransmit (server, unreliable)
    H = "H"  # wait time for ACK receipt (server INVITE)
    I = "I"  # noqa: E741  wait time for ACK retransmits (server INVITE)
    J = "J"  # wait time for non-INVITE request retransmits (server)
    K = "K"  # wait time for response retransmits (client non-INVITE)
    L = "L"  # wait time for INVITE retransmits after a 2xx (RFC 6026)
    M = "M"  # wait time for 2xx retransmits in Accepted (client INVITE, RFC 6026)

    # Members are compared by identity, so the identity hash agrees with ==, and
    # unlike Enum.__hash__ it runs no Python code in the dict and set lookups.
    __hash__ = object.__hash__


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """RFC 3261 timer values in seconds (§17.1.1.1, Table 4)."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0


# Send and Deliver are built for most responses, so they are not frozen, as
# `routing.Outgoing` explains. Unlike the shared effects below, each is used once.
@dataclass(slots=True)
class Send:
    message: SipRequest | SipResponse


@dataclass(frozen=True, slots=True)
class StartTimer:
    timer: Timer
    delay: float


@dataclass(frozen=True, slots=True)
class StopTimer:
    timer: Timer


@dataclass(slots=True)
class Deliver:
    """A response for the TU (client transactions only)."""

    response: SipResponse


@dataclass(frozen=True, slots=True)
class TimedOut:
    """Timer B, F or H fired: no response (client) or no ACK (server INVITE)."""

    timer: Timer


@dataclass(frozen=True, slots=True)
class Terminated:
    pass


Effect = Send | StartTimer | StopTimer | Deliver | TimedOut | Terminated

# Effects without a varying field are immutable, so one instance of each serves
# every transaction and saves building a frozen dataclass per use. StartTimer
# repeats a few (timer, delay) pairs, so a cache hands out shared ones too, and
# a cache hit runs no Python code.
_STOP = {timer: StopTimer(timer) for timer in Timer}
_start_timer = functools.lru_cache(maxsize=256)(StartTimer)
_TERMINATED = Terminated()


# Builds the ACK for a non-2xx final response: (INVITE, response) -> ACK (§17.1.1.3).
AckBuilder = Callable[[SipRequest, SipResponse], SipRequest]


class State(enum.Enum):
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    ACCEPTED = "accepted"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class _Transaction:
    kind = "transaction"

    # The subclasses that run for every call repeat these lines in their own
    # `__init__`, which saves the Python call of `super().__init__`.
    def __init__(self, key: str, request: SipRequest, reliable: bool, timers: TimerConfig) -> None:
        self.key = key
        self.request = request
        self.reliable = reliable
        self.timers = timers
        self.state = State.TRYING
        self.last_response: SipResponse | None = None

    def _change(self, new: State, effects: list[Effect]) -> None:
        # Guarded, because reading an enum's value runs Python code even when debug is off.
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s %s: %s -> %s", self.kind, self.key, self.state.value, new.value)
        self.state = new
        if new is State.TERMINATED:
            effects.append(_TERMINATED)

    def _illegal(self, event: str) -> SipUsageError:
        return SipUsageError(
            f"{self.kind} {self.key}: {event} is not allowed in state {self.state.value}"
        )

    def _doubled(self, previous: float, cap: bool) -> float:
        return min(previous * 2, self.timers.t2) if cap else previous * 2

    def on_timer(self, timer: Timer) -> list[Effect]:
        raise NotImplementedError


class ServerInviteTransaction(_Transaction):
    """§17.2.1 with RFC 6026: Proceeding -> Accepted/Completed -> Confirmed -> Terminated."""

    kind = "server INVITE"

    def __init__(self, key: str, request: SipRequest, reliable: bool, timers: TimerConfig) -> None:
        # `_Transaction.__init__` repeated, with the first state of this machine.
        self.key = key
        self.request = request
        self.reliable = reliable
        self.timers = timers
        self.state = State.PROCEEDING
        self.last_response: SipResponse | None = None
        self._interval_g = timers.t1

    def on_request(self, request: SipRequest) -> list[Effect]:
        """Handle a retransmitted INVITE or the ACK for a non-2xx final response."""
        effects: list[Effect] = []
        if request.method == "ACK":
            if self.state is State.COMPLETED:
                effects += [_STOP[Timer.G], _STOP[Timer.H]]
                self._change(State.CONFIRMED, effects)
                effects.append(_start_timer(Timer.I, 0.0 if self.reliable else self.timers.t4))
            return effects
        if self.state in (State.PROCEEDING, State.COMPLETED) and self.last_response is not None:
            effects.append(Send(self.last_response))
        return effects

    def send_response(self, response: SipResponse) -> list[Effect]:
        if self.state is not State.PROCEEDING:
            raise self._illegal(f"sending {response.status}")
        self.last_response = response
        effects: list[Effect] = [Send(response)]
        if response.status < 200:
            return effects
        if response.status < 300:
            # Accepted never sends again (the TU retransmits the 2xx), so the
            # response is not kept for the 32 s of Timer L.
            self.last_response = None
            # `_change` inlined unless it logs, which saves a Python call per call.
            if logger.isEnabledFor(logging.DEBUG):
                self._change(State.ACCEPTED, effects)
            else:
                self.state = State.ACCEPTED
            effects.append(_start_timer(Timer.L, 64 * self.timers.t1))
            return effects
        self._change(State.COMPLETED, effects)
        if not self.reliable:
            effects.append(_start_timer(Timer.G, self._interval_g))
        effects.append(_start_timer(Timer.H, 64 * self.timers.t1))
        return effects

    def on_timer(self, timer: Timer) -> list[Effect]:
        effects: list[Effect] = []
        if timer is Timer.G and self.state is State.COMPLETED and self.last_response:
            self._interval_g = self._doubled(self._interval_g, cap=True)
            effects += [Send(self.last_response), _start_timer(Timer.G, self._interval_g)]
        elif timer is Timer.H and self.state is State.COMPLETED:
            effects += [_STOP[Timer.G], TimedOut(Timer.H)]
            self._change(State.TERMINATED, effects)
        elif (timer is Timer.I and self.state is State.CONFIRMED) or (
            timer is Timer.L and self.state is State.ACCEPTED
        ):
            self._change(State.TERMINATED, effects)
        return effects

    def terminate(self) -> list[Effect]:
        """Drop the transaction at once (transport error, shutdown)."""
        effects: list[Effect] = []
        if self.state is not State.TERMINATED:
            effects += [_STOP[timer] for timer in (Timer.G, Timer.H, Timer.I, Timer.L)]
            self._change(State.TERMINATED, effects)
        return effects


class ServerNonInviteTransaction(_Transaction):
    """§17.2.2: Trying -> Proceeding -> Completed -> Terminated."""

    kind = "server non-INVITE"

    def on_request(self, request: SipRequest) -> list[Effect]:
        if self.state in (State.PROCEEDING, State.COMPLETED) and self.last_response is not None:
            return [Send(self.last_response)]
        return []

    def send_response(self, response: SipResponse) -> list[Effect]:
        if self.state not in (State.TRYING, State.PROCEEDING):
            raise self._illegal(f"sending {response.status}")
        self.last_response = response
        effects: list[Effect] = [Send(response)]
        if response.status < 200:
            if self.state is State.TRYING:
                self._change(State.PROCEEDING, effects)
            return effects
        self._change(State.COMPLETED, effects)
        effects.append(_start_timer(Timer.J, 0.0 if self.reliable else 64 * self.timers.t1))
        return effects

    def on_timer(self, timer: Timer) -> list[Effect]:
        effects: list[Effect] = []
        if timer is Timer.J and self.state is State.COMPLETED:
            self._change(State.TERMINATED, effects)
        return effects


class ClientInviteTransaction(_Transaction):
    """§17.1.1 with RFC 6026: Calling -> Proceeding -> Accepted/Completed -> Terminated.

    `start()` returns the first send. The ACK for a non-2xx response is built
    here (§17.1.1.3); the ACK for a 2xx belongs to the dialog.
    """

    kind = "client INVITE"

    def __init__(self, key: str, request: SipRequest, reliable: bool, timers: TimerConfig) -> None:
        # `_Transaction.__init__` repeated, with the first state of this machine.
        self.key = key
        self.request = request
        self.reliable = reliable
        self.timers = timers
        self.state = State.CALLING
        self.last_response: SipResponse | None = None
        self._interval_a = timers.t1
        self.ack: SipRequest | None = None

    def start(self) -> list[Effect]:
        effects: list[Effect] = [Send(self.request)]
        if not self.reliable:
            effects.append(_start_timer(Timer.A, self._interval_a))
        effects.append(_start_timer(Timer.B, 64 * self.timers.t1))
        return effects

    def on_response(self, response: SipResponse, build_ack: AckBuilder) -> list[Effect]:
        effects: list[Effect] = []
        status = response.status
        if self.state in (State.CALLING, State.PROCEEDING):
            effects += [_STOP[Timer.A]]
            if status < 200:
                if self.state is State.CALLING:
                    effects.append(_STOP[Timer.B])
                    self._change(State.PROCEEDING, effects)
                effects.append(Deliver(response))
            elif status < 300:
                effects += [_STOP[Timer.B], Deliver(response)]
                self._change(State.ACCEPTED, effects)
                effects.append(_start_timer(Timer.M, 64 * self.timers.t1))
            else:
                self.ack = build_ack(self.request, response)
                effects += [_STOP[Timer.B], Send(self.ack), Deliver(response)]
                self._change(State.COMPLETED, effects)
                effects.append(_start_timer(Timer.D, 0.0 if self.reliable else 32.0))
        elif self.state is State.ACCEPTED and 200 <= status < 300:
            effects.append(Deliver(response))
        elif self.state is State.COMPLETED and status >= 300 and self.ack is not None:
            effects.append(Send(self.ack))
        return effects

    def on_timer(self, timer: Timer) -> list[Effect]:
        effects: list[Effect] = []
        if timer is Timer.A and self.state is State.CALLING:
            self._interval_a *= 2
            effects += [Send(self.request), _start_timer(Timer.A, self._interval_a)]
        elif timer is Timer.B and self.state is State.CALLING:
            effects += [_STOP[Timer.A], TimedOut(Timer.B)]
            self._change(State.TERMINATED, effects)
        elif (timer is Timer.D and self.state is State.COMPLETED) or (
            timer is Timer.M and self.state is State.ACCEPTED
        ):
            self._change(State.TERMINATED, effects)
        return effects


class ClientNonInviteTransaction(_Transaction):
    """§17.1.2: Trying -> Proceeding -> Completed -> Terminated."""

    kind = "client non-INVITE"

    def __init__(self, key: str, request: SipRequest, reliable: bool, timers: TimerConfig) -> None:
        # `_Transaction.__init__` repeated.
        self.key = key
        self.request = request
        self.reliable = reliable
        self.timers = timers
        self.state = State.TRYING
        self.last_response: SipResponse | None = None
        self._interval_e = timers.t1

    def start(self) -> list[Effect]:
        effects: list[Effect] = [Send(self.request)]
        if not self.reliable:
            effects.append(_start_timer(Timer.E, self._interval_e))
        effects.append(_start_timer(Timer.F, 64 * self.timers.t1))
        return effects

    def on_response(self, response: SipResponse) -> list[Effect]:
        effects: list[Effect] = []
        if self.state not in (State.TRYING, State.PROCEEDING):
            return effects
        if response.status < 200:
            if self.state is State.TRYING:
                self._change(State.PROCEEDING, effects)
            effects.append(Deliver(response))
            return effects
        effects += [_STOP[Timer.E], _STOP[Timer.F], Deliver(response)]
        # `_change` inlined unless it logs, which saves a Python call per call.
        if logger.isEnabledFor(logging.DEBUG):
            self._change(State.COMPLETED, effects)
        else:
            self.state = State.COMPLETED
        effects.append(_start_timer(Timer.K, 0.0 if self.reliable else self.timers.t4))
        return effects

    def on_timer(self, timer: Timer) -> list[Effect]:
        effects: list[Effect] = []
        if timer is Timer.E and self.state in (State.TRYING, State.PROCEEDING):
            # §17.1.2.2: in Proceeding the retransmit interval is T2.
            if self.state is State.PROCEEDING:
                self._interval_e = self.timers.t2
            else:
                self._interval_e = self._doubled(self._interval_e, cap=True)
            effects += [Send(self.request), _start_timer(Timer.E, self._interval_e)]
        elif timer is Timer.F and self.state in (State.TRYING, State.PROCEEDING):
            effects += [_STOP[Timer.E], TimedOut(Timer.F)]
            self._change(State.TERMINATED, effects)
        elif timer is Timer.K and self.state is State.COMPLETED:
            self._change(State.TERMINATED, effects)
        return effects


ServerTransaction = ServerInviteTransaction | ServerNonInviteTransaction
ClientTransaction = ClientInviteTransaction | ClientNonInviteTransaction


def server_key(request: SipRequest) -> str:
    """Match requests to server transactions (§17.2.3).

    With an RFC 3261 branch the key is branch, sent-by and method (ACK maps to
    INVITE). Without one (RFC 2543 peers, or a bare magic cookie) it falls
    back to Request-URI, From tag, Call-ID, CSeq number and top Via.
    `UserAgent._on_request` repeats the first case inline.
    """
    # `parsed` raises for a request the parser did not validate.
    info = request.info if request.info is not None else request.parsed
    via = info.vias[0]
    method = "INVITE" if request.method == "ACK" else request.method
    # `Via.branch`, `Via.rfc3261_branch` and `Via.sent_by` inlined, which saves
    # two Python calls per request.
    branch = via.params.get("branch")
    if branch is not None and branch.startswith("z9hG4bK") and len(branch) > 7:
        port = via.port
        sent_by = via.host if port is None else f"{via.host}:{port}"
        return f"{branch}|{sent_by}|{method}"
    parts = ("2543", request.uri, info.from_.tag or "", info.call_id, str(info.cseq.number))
    return "|".join((*parts, method, str(via)))


def client_key(branch: str, method: str) -> str:
    """Match responses to client transactions: branch and CSeq method (§17.1.3).

    `TransactionUser._start_client` and `UserAgent._on_response` repeat it inline.
    """
    return f"{branch}|{'INVITE' if method == 'ACK' else method}"
