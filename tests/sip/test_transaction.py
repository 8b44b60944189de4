"""The four RFC 3261 §17 transaction machines, driven on a virtual clock."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from signaling.sip.errors import SipUsageError
from signaling.sip.headers import Headers
from signaling.sip.message import SipRequest, SipResponse, build_response
from signaling.sip.parser import parse_datagram
from signaling.sip.transaction import (
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    Deliver,
    Effect,
    Send,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    StartTimer,
    State,
    StopTimer,
    Terminated,
    TimedOut,
    Timer,
    TimerConfig,
    server_key,
)

TIMERS = TimerConfig(t1=0.5, t2=4.0, t4=5.0)


def request(method: str, branch: str = "z9hG4bK-t1") -> SipRequest:
    data = (
        f"{method} sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}\r\n"
        f"From: <sip:a@127.0.0.1>;tag=f1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: t1\r\n"
        f"CSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    message = parse_datagram(data)
    assert isinstance(message, SipRequest)
    return message


def state_of(machine: object) -> State:
    """Read the state through a call, so mypy does not narrow it between asserts."""
    state = machine.state  # type: ignore[attr-defined]
    assert isinstance(state, State)
    return state


def response(to: SipRequest, status: int) -> SipResponse:
    return build_response(to, status, to_tag="t2" if status > 100 else None)


@dataclass
class Clock:
    """Applies timer effects and fires them in order on a virtual clock."""

    now: float = 0.0
    timers: dict[Timer, float] = field(default_factory=dict)
    sends: list[tuple[float, SipRequest | SipResponse]] = field(default_factory=list)
    others: list[Effect] = field(default_factory=list)

    def apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, StartTimer):
                self.timers[effect.timer] = self.now + effect.delay
            elif isinstance(effect, StopTimer):
                self.timers.pop(effect.timer, None)
            elif isinstance(effect, Send):
                self.sends.append((self.now, effect.message))
            else:
                self.others.append(effect)

    def run(self, machine: object, until: float) -> None:
        while self.timers:
            timer, deadline = min(self.timers.items(), key=lambda item: item[1])
            if deadline > until:
                break
            del self.timers[timer]
            self.now = deadline
            self.apply(machine.on_timer(timer))  # type: ignore[attr-defined]
        self.now = until

    def send_times(self) -> list[float]:
        return [round(moment, 3) for moment, _ in self.sends]


def test_server_invite_retransmits_final_until_timer_h() -> None:
    invite = request("INVITE")
    machine = ServerInviteTransaction("k", invite, reliable=False, timers=TIMERS)
    clock = Clock()

    clock.apply(machine.send_response(response(invite, 486)))
    clock.run(machine, 40.0)

    # Timer G: T1, doubling up to T2; Timer H ends it at 64*T1 = 32 s.
    assert clock.send_times() == [0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert TimedOut(Timer.H) in clock.others
    assert clock.others[-1] == Terminated()
    assert state_of(machine) is State.TERMINATED


def test_server_invite_ack_confirms_then_timer_i() -> None:
    invite = request("INVITE")
    machine = ServerInviteTransaction("k", invite, reliable=False, timers=TIMERS)
    clock = Clock()
    clock.apply(machine.send_response(response(invite, 486)))

    clock.apply(machine.on_request(request("ACK")))

    assert state_of(machine) is State.CONFIRMED
    assert clock.timers == {Timer.I: 5.0}
    clock.run(machine, 10.0)
    assert state_of(machine) is State.TERMINATED
    assert len(clock.sends) == 1


def test_server_invite_reliable_skips_timer_g() -> None:
    invite = request("INVITE")
    machine = ServerInviteTransaction("k", invite, reliable=True, timers=TIMERS)
    clock = Clock()

    clock.apply(machine.send_response(response(invite, 603)))

    assert Timer.G not in clock.timers
    assert clock.timers[Timer.H] == 32.0
    clock.apply(machine.on_request(request("ACK")))
    assert clock.timers[Timer.I] == 0.0


def test_server_invite_resends_provisional_on_retransmit() -> None:
    invite = request("INVITE")
    machine = ServerInviteTransaction("k", invite, reliable=False, timers=TIMERS)
    ringing = response(invite, 180)
    machine.send_response(response(invite, 100))
    machine.send_response(ringing)

    effects = machine.on_request(invite)

    assert effects == [Send(ringing)]


def test_server_invite_2xx_enters_accepted() -> None:
    invite = request("INVITE")
    machine = ServerInviteTransaction("k", invite, reliable=False, timers=TIMERS)
    clock = Clock()

    clock.apply(machine.send_response(response(invite, 200)))

    assert state_of(machine) is State.ACCEPTED
    assert machine.on_request(invite) == []
    clock.run(machine, 32.0)
    assert state_of(machine) is State.TERMINATED
    with pytest.raises(SipUsageError, match="terminated"):
        machine.send_response(response(invite, 200))


def test_server_non_invite_absorbs_and_resends() -> None:
    bye = request("BYE")
    machine = ServerNonInviteTransaction("k", bye, reliable=False, timers=TIMERS)
    clock = Clock()

    assert machine.on_request(bye) == []
    ok = response(bye, 200)
    clock.apply(machine.send_response(ok))
    assert machine.on_request(bye) == [Send(ok)]
    assert clock.timers == {Timer.J: 32.0}
    clock.run(machine, 32.0)
    assert state_of(machine) is State.TERMINATED


def test_server_non_invite_reliable_timer_j_zero() -> None:
    bye = request("BYE")
    machine = ServerNonInviteTransaction("k", bye, reliable=True, timers=TIMERS)
    clock = Clock()

    clock.apply(machine.send_response(response(bye, 200)))

    assert clock.timers == {Timer.J: 0.0}


def test_client_non_invite_timer_e_and_f() -> None:
    bye = request("BYE")
    machine = ClientNonInviteTransaction("k", bye, reliable=False, timers=TIMERS)
    clock = Clock()

    clock.apply(machine.start())
    clock.run(machine, 40.0)

    # Timer E: T1 doubling up to T2 (§17.1.2.2), Timer F at 64*T1.
    assert clock.send_times()[:6] == [0, 0.5, 1.5, 3.5, 7.5, 11.5]
    assert TimedOut(Timer.F) in clock.others
    assert state_of(machine) is State.TERMINATED


def test_client_non_invite_proceeding_uses_t2() -> None:
    bye = request("BYE")
    machine = ClientNonInviteTransaction("k", bye, reliable=False, timers=TIMERS)
    clock = Clock()
    clock.apply(machine.start())

    clock.apply(machine.on_response(response(bye, 100)))
    clock.run(machine, 5.0)

    # §17.1.2.2: Timer E still fires in Proceeding, then rearms with T2.
    assert state_of(machine) is State.PROCEEDING
    assert clock.send_times() == [0, 0.5, 4.5]


def test_client_non_invite_final_then_timer_k() -> None:
    bye = request("BYE")
    machine = ClientNonInviteTransaction("k", bye, reliable=False, timers=TIMERS)
    clock = Clock()
    clock.apply(machine.start())
    ok = response(bye, 200)

    clock.apply(machine.on_response(ok))

    assert Deliver(ok) in clock.others
    assert clock.timers == {Timer.K: 5.0}
    assert machine.on_response(ok) == []
    clock.run(machine, 5.0)
    assert state_of(machine) is State.TERMINATED


def build_ack(invite: SipRequest, final: SipResponse) -> SipRequest:
    return SipRequest("ACK", invite.uri, Headers([("CSeq", "1 ACK")]))


def test_client_invite_timer_a_and_b() -> None:
    invite = request("INVITE")
    machine = ClientInviteTransaction("k", invite, reliable=False, timers=TIMERS)
    clock = Clock()

    clock.apply(machine.start())
    clock.run(machine, 40.0)

    # Timer A doubles without a cap; Timer B ends it at 64*T1.
    assert clock.send_times() == [0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert TimedOut(Timer.B) in clock.others


def test_client_invite_non_2xx_sends_ack() -> None:
    invite = request("INVITE")
    machine = ClientInviteTransaction("k", invite, reliable=False, timers=TIMERS)
    clock = Clock()
    clock.apply(machine.start())
    busy = response(invite, 486)

    clock.apply(machine.on_response(busy, build_ack))

    assert state_of(machine) is State.COMPLETED
    assert clock.sends[-1][1].start_line().startswith("ACK")
    again = machine.on_response(busy, build_ack)
    assert len([effect for effect in again if isinstance(effect, Send)]) == 1
    assert clock.timers == {Timer.D: 32.0}


def test_client_invite_2xx_accepted() -> None:
    invite = request("INVITE")
    machine = ClientInviteTransaction("k", invite, reliable=False, timers=TIMERS)
    clock = Clock()
    clock.apply(machine.start())
    clock.apply(machine.on_response(response(invite, 180), build_ack))
    assert state_of(machine) is State.PROCEEDING
    ok = response(invite, 200)

    clock.apply(machine.on_response(ok, build_ack))

    assert state_of(machine) is State.ACCEPTED
    assert machine.on_response(ok, build_ack) == [Deliver(ok)]
    clock.run(machine, 32.0)
    assert state_of(machine) is State.TERMINATED


def test_server_key_rfc3261_and_2543() -> None:
    invite = request("INVITE")
    ack = request("ACK")
    cookie_only = request("INVITE", branch="z9hG4bK")

    assert server_key(invite) == server_key(ack)
    assert server_key(invite).startswith("z9hG4bK-t1|127.0.0.1:5070|INVITE")
    assert server_key(cookie_only).startswith("2543|")
