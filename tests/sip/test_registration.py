"""Outbound registration: the state machine, two cores wired in memory, and over UDP."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from signaling.sip.auth import AuthConfig, Authenticator
from signaling.sip.core import CoreConfig, UserAgent
from signaling.sip.endpoint import SipConfig, SipEndpoint
from signaling.sip.events import RegistrationChanged
from signaling.sip.message import SipRequest, SipResponse, build_response, to_bytes
from signaling.sip.parser import parse_datagram
from signaling.sip.registration import (
    Backoff,
    Registration,
    RegistrationConfig,
)
from signaling.sip.routing import Peer
from tests.sip.support import ScriptedHandler

VIA = "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-r;rport"
CONFIG = RegistrationConfig("trunk", "127.0.0.1", "alice", "secret", port=5080, expires=300)


def parsed(request: SipRequest) -> SipRequest:
    """Round-trip a built request through the parser so that `parsed` works."""
    message = parse_datagram(to_bytes(request))
    assert isinstance(message, SipRequest)
    return message


def reply(
    request: SipRequest, status: int, headers: list[tuple[str, str]] | None = None
) -> SipResponse:
    response = build_response(parsed(request), status, to_tag="reg", headers=headers)
    from signaling.sip.message import to_bytes

    message = parse_datagram(to_bytes(response))
    assert isinstance(message, SipResponse)
    return message


def machine() -> Registration:
    return Registration(CONFIG, "<sip:alice@127.0.0.1:5070>", random.Random(1))


def test_backoff_doubles_to_maximum_with_jitter() -> None:
    backoff = Backoff(5.0, 60.0, random.Random(7))

    delays = [backoff.next_delay() for _ in range(6)]
    backoff.reset()

    for delay, base in zip(delays, [5, 10, 20, 40, 60, 60], strict=True):
        assert base * 0.9 <= delay <= base * 1.1
    assert 4.5 <= backoff.next_delay() <= 5.5


def test_challenge_answered_with_valid_digest() -> None:
    registration = machine()
    server = Authenticator(AuthConfig(realm="trunk", users={"alice": "secret"}))
    first = registration.start(VIA)
    challenge = reply(first, 401, server.challenges(100.0))

    second = registration.on_response(challenge, VIA, 100.0)

    assert second is not None
    assert second.headers.get("CSeq") == "2 REGISTER"
    assert second.headers.get("Call-ID") == first.headers.get("Call-ID")
    decision = server.check(
        "REGISTER", second.uri, second.headers.raw("Authorization"), "10.0.0.1", 101.0
    )
    assert decision.status is None
    assert decision.user == "alice"


def test_success_schedules_refresh() -> None:
    registration = machine()
    request = registration.start(VIA)
    contact = [("Contact", "<sip:alice@127.0.0.1:5070>;expires=200")]

    assert registration.on_response(reply(request, 200, contact), VIA, 1000.0) is None

    assert registration.state.value == "registered"
    assert registration.deadline == 1160.0
    assert registration.on_timer(VIA, 1159.0) is None
    refresh = registration.on_timer(VIA, 1160.0)
    assert refresh is not None
    assert refresh.headers.get("Expires") == "300"
    assert registration.state.value == "registering"


def test_rejected_credentials_back_off() -> None:
    registration = machine()
    server = Authenticator(AuthConfig(realm="trunk", users={"alice": "other"}))
    challenge_headers = server.challenges(100.0)
    first = registration.start(VIA)
    second = registration.on_response(reply(first, 401, challenge_headers), VIA, 100.0)
    assert second is not None

    third = registration.on_response(reply(second, 401, challenge_headers), VIA, 100.0)

    assert third is None
    assert registration.state.value == "backing-off"
    assert "credentials rejected" in registration.last_error
    assert registration.deadline is not None
    assert 104.5 <= registration.deadline <= 105.5


def test_interval_too_brief_retries_longer() -> None:
    registration = machine()
    first = registration.start(VIA)

    retry = registration.on_response(reply(first, 423, [("Min-Expires", "900")]), VIA, 1.0)

    assert retry is not None
    assert retry.headers.get("Expires") == "900"


def test_timeout_then_retry() -> None:
    registration = machine()
    registration.start(VIA)

    registration.on_timeout(50.0)
    assert registration.state.value == "backing-off"
    assert registration.deadline is not None
    retry = registration.on_timer(VIA, registration.deadline)

    assert retry is not None
    assert registration.state.value == "registering"


def test_stop_sends_expires_zero() -> None:
    registration = machine()
    request = registration.start(VIA)
    registration.on_response(reply(request, 200), VIA, 1.0)

    goodbye = registration.stop(VIA)

    assert goodbye is not None
    assert goodbye.headers.get("Expires") == "0"
    registration.on_response(reply(goodbye, 200), VIA, 2.0)
    assert registration.state.value == "stopped"


def wire(a: UserAgent, b: UserAgent, now: float, a_peer: Peer, b_peer: Peer) -> None:
    """Deliver everything each core sent to the other until both are quiet."""
    for _ in range(20):
        moved = False
        for source, target, source_peer in ((a, b, a_peer), (b, a, b_peer)):
            for item in source.take_outgoing():
                target.receive(item.data, source_peer, now)
                moved = True
        if not moved:
            return


def advance(
    cores: list[UserAgent], now: float, until: float, step: Callable[[float], None]
) -> float:
    while True:
        deadlines = [deadline for core in cores if (deadline := core.next_deadline()) is not None]
        due = min(deadlines, default=None)
        if due is None or due > until:
            return until
        now = max(now, due)
        for core in cores:
            core.tick(now)
        step(now)


def test_two_cores_register_refresh_and_unregister() -> None:
    registrar_peer = Peer("udp", "127.0.0.1", 5080)
    client_peer = Peer("udp", "127.0.0.1", 5070)
    registrar = UserAgent(CoreConfig(port=5080, auth=AuthConfig(users={"alice": "secret"})))
    client = UserAgent(CoreConfig(port=5070))
    now = 1000.0

    client.add_registration(CONFIG, now)
    wire(client, registrar, now, client_peer, registrar_peer)
    contacts = registrar.registrar.contacts("alice@127.0.0.1", now)
    states = [e.state for e in client.take_events() if isinstance(e, RegistrationChanged)]

    assert contacts == ["sip:alice@127.0.0.1:5070"]
    assert states == ["registering", "registered"]
    assert client.registrations["trunk"].deadline == now + 240

    now = advance([client, registrar], now, now + 1000, lambda t: wire(client, registrar, t,
                  client_peer, registrar_peer))  # fmt: skip
    assert registrar.registrar.contacts("alice@127.0.0.1", now) == ["sip:alice@127.0.0.1:5070"]

    client.remove_registration("trunk", now)
    wire(client, registrar, now, client_peer, registrar_peer)
    assert registrar.registrar.contacts("alice@127.0.0.1", now) == []
    assert client.registrations["trunk"].state.value == "stopped"


async def test_endpoint_registers_with_another_endpoint() -> None:
    auth = AuthConfig(users={"alice": "secret"})
    registrar = SipEndpoint(SipConfig(port=0, auth=auth), ScriptedHandler())
    await registrar.start()
    account = RegistrationConfig("trunk", "127.0.0.1", "alice", "secret", port=registrar.port)
    client = SipEndpoint(SipConfig(port=0, registrations=[account]), ScriptedHandler())
    await client.start()
    loop = asyncio.get_running_loop()

    def bound() -> list[str]:
        return registrar.core.registrar.contacts("alice@127.0.0.1", loop.time())

    try:
        async with asyncio.timeout(10.0):
            await client.wait_for_registration("trunk", "registered")
        assert bound() == [f"sip:alice@127.0.0.1:{client.port}"]
    finally:
        await client.stop()
    assert bound() == []
    await registrar.stop()


async def test_endpoint_with_wrong_password_backs_off() -> None:
    auth = AuthConfig(users={"alice": "secret"})
    registrar = SipEndpoint(SipConfig(port=0, auth=auth), ScriptedHandler())
    await registrar.start()
    account = RegistrationConfig("trunk", "127.0.0.1", "alice", "guess", port=registrar.port)
    client = SipEndpoint(SipConfig(port=0, registrations=[account]), ScriptedHandler())
    await client.start()
    try:
        async with asyncio.timeout(10.0):
            await client.wait_for_registration("trunk", "backing-off")
        assert "credentials rejected" in client.core.registrations["trunk"].last_error
    finally:
        await client.stop()
        await registrar.stop()


async def test_endpoint_registers_over_tcp() -> None:
    auth = AuthConfig(users={"alice": "secret"})
    registrar = SipEndpoint(SipConfig(port=0, auth=auth), ScriptedHandler())
    await registrar.start()
    account = RegistrationConfig(
        "trunk", "127.0.0.1", "alice", "secret", port=registrar.port, transport="tcp"
    )
    client = SipEndpoint(SipConfig(port=0, registrations=[account]), ScriptedHandler())
    await client.start()
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(10.0):
            await client.wait_for_registration("trunk", "registered")
        contacts = registrar.core.registrar.contacts("alice@127.0.0.1", loop.time())
        assert contacts == [f"sip:alice@127.0.0.1:{client.port};transport=tcp"]
    finally:
        await client.stop()
        await registrar.stop()
