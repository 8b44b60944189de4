"""SIP host resolution (SRV, A, AAAA, hosts file) against a DNS server on loopback."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from signaling.sip.auth import AuthConfig
from signaling.sip.endpoint import SipConfig, SipEndpoint
from signaling.sip.errors import SipUsageError
from signaling.sip.registration import RegistrationConfig
from signaling.sip.resolver import (
    Destination,
    ResolveError,
    SipResolver,
    _Service,
    order_services,
)
from tests.sip.support import ANSWER_SDP, SIPP, ScriptedHandler, start_sipp_uas
from tests.support.dns_server import DnsServer

RECORDS = {
    ("edge-a.trunk.test", "A"): ["127.0.0.2"],
    ("edge-b.trunk.test", "A"): ["127.0.0.3"],
    ("edge-b.trunk.test", "AAAA"): ["::1"],
    ("_sip._udp.trunk.test", "SRV"): [
        "20 0 5080 backup.trunk.test.",
        "10 60 5070 edge-a.trunk.test.",
        "10 40 5072 edge-b.trunk.test.",
    ],
    ("_sip._tcp.trunk.test", "SRV"): ["10 0 5090 edge-a.trunk.test."],
    ("backup.trunk.test", "A"): ["127.0.0.4"],
    ("plain.test", "A"): ["127.0.0.5"],
    ("dangling.test", "A"): [],
    ("_sip._udp.dangling.test", "SRV"): ["10 0 5060 nowhere.test."],
}


@pytest.fixture(scope="module")
def dns_server() -> Iterator[DnsServer]:
    with DnsServer(RECORDS) as server:
        yield server


@pytest.fixture
def resolver(dns_server: DnsServer, tmp_path: Path) -> SipResolver:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n# 127.0.0.9 commented.test\n127.0.0.7 pinned.test\n")
    return SipResolver(
        ["127.0.0.1"], port=dns_server.port, rng=random.Random(1), hosts_path=hosts, timeout_s=2
    )


async def test_ip_address_used_as_is(resolver: SipResolver, dns_server: DnsServer) -> None:
    before = sum(dns_server.queries.values())

    assert await resolver.resolve("192.0.2.10", None, "udp") == [
        Destination("udp", "192.0.2.10", 5060)
    ]
    assert await resolver.resolve("::1", 5062, "tcp") == [Destination("tcp", "::1", 5062)]
    assert sum(dns_server.queries.values()) == before


async def test_srv_by_priority_then_weight(resolver: SipResolver) -> None:
    found = await resolver.resolve("trunk.test", None, "udp")

    assert found[-1] == Destination("udp", "127.0.0.4", 5080)
    assert set(found[:3]) == {
        Destination("udp", "127.0.0.2", 5070),
        Destination("udp", "127.0.0.3", 5072),
        Destination("udp", "::1", 5072),
    }


async def test_srv_for_tcp_transport(resolver: SipResolver, dns_server: DnsServer) -> None:
    found = await resolver.resolve("trunk.test", None, "tcp")

    assert found == [Destination("tcp", "127.0.0.2", 5090)]
    assert dns_server.queries[("_sip._tcp.trunk.test", "SRV")] >= 1


async def test_explicit_port_skips_srv(resolver: SipResolver, dns_server: DnsServer) -> None:
    found = await resolver.resolve("plain.test", 5099, "udp")

    assert found == [Destination("udp", "127.0.0.5", 5099)]
    assert dns_server.queries[("_sip._udp.plain.test", "SRV")] == 0


async def test_no_srv_falls_back_to_a(resolver: SipResolver) -> None:
    assert await resolver.resolve("plain.test", None, "udp") == [
        Destination("udp", "127.0.0.5", 5060)
    ]


async def test_hosts_file_after_dns(resolver: SipResolver) -> None:
    assert await resolver.resolve("pinned.test", 5064, "udp") == [
        Destination("udp", "127.0.0.7", 5064)
    ]
    assert await resolver.resolve("localhost", None, "udp") == [
        Destination("udp", "127.0.0.1", 5060)
    ]


async def test_unknown_name_raises(resolver: SipResolver) -> None:
    with pytest.raises(ResolveError, match=r"no address for missing\.test"):
        await resolver.resolve("missing.test", None, "udp")
    with pytest.raises(ResolveError, match=r"commented\.test"):
        await resolver.resolve("commented.test", 5060, "udp")


async def test_srv_targets_without_address(resolver: SipResolver) -> None:
    with pytest.raises(ResolveError, match=r"SRV targets of dangling\.test"):
        await resolver.resolve("dangling.test", None, "udp")


def test_weights_share_first_place() -> None:
    heavy = _Service(10, 90, 5060, "heavy")
    light = _Service(10, 10, 5060, "light")
    rng = random.Random(7)

    firsts = [order_services([heavy, light], rng)[0].target for _ in range(2000)]

    assert 0.85 < firsts.count("heavy") / len(firsts) < 0.95


def test_zero_weights_keep_every_record() -> None:
    services = [_Service(20, 0, 1, "c"), _Service(10, 0, 2, "a"), _Service(10, 0, 3, "b")]

    ordered = order_services(services, random.Random(3))

    assert [service.target for service in ordered] == ["a", "b", "c"]


async def test_endpoint_registers_by_srv_name(dns_server: DnsServer) -> None:
    auth = AuthConfig(users={"alice": "secret"})
    registrar = SipEndpoint(SipConfig(port=0, auth=auth), ScriptedHandler())
    await registrar.start()
    dns_server.records[("_sip._udp.registrar.test", "SRV")] = [
        f"10 0 {registrar.port} proxy.registrar.test."
    ]
    dns_server.records[("proxy.registrar.test", "A")] = ["127.0.0.1"]
    dns_server.records[("registrar.test", "A")] = []
    account = RegistrationConfig("trunk", "registrar.test", "alice", "secret")
    config = SipConfig(
        port=0, registrations=[account], dns_servers=("127.0.0.1",), dns_port=dns_server.port
    )
    client = SipEndpoint(config, ScriptedHandler())
    await client.start()
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(10.0):
            await client.wait_for_registration("trunk", "registered")
        contacts = registrar.core.registrar.contacts("alice@registrar.test", loop.time())
        assert contacts == [f"sip:alice@127.0.0.1:{client.port}"]
    finally:
        await client.stop()
        await registrar.stop()


async def test_endpoint_keeps_resolving_unknown_registrar(dns_server: DnsServer) -> None:
    account = RegistrationConfig("trunk", "nobody.test", "alice", "secret", retry_min=0.05)
    config = SipConfig(
        port=0, registrations=[account], dns_servers=("127.0.0.1",), dns_port=dns_server.port
    )
    client = SipEndpoint(config, ScriptedHandler())
    await client.start()
    try:
        queried_twice = await asyncio.to_thread(dns_server.wait_for, "nobody.test", "A", 2, 10.0)

        assert queried_twice
        assert client.registration_state("trunk") == "resolving"
    finally:
        await client.stop()


@pytest.mark.peer
@pytest.mark.skipif(SIPP is None, reason="sipp is not installed")
async def test_call_to_name_reaches_sipp(dns_server: DnsServer, tmp_path: Path) -> None:
    dns_server.records[("callee.test", "A")] = ["127.0.0.1"]
    config = SipConfig(port=0, dns_servers=("127.0.0.1",), dns_port=dns_server.port)
    endpoint = SipEndpoint(config, ScriptedHandler())
    await endpoint.start()
    sipp = await start_sipp_uas("uas_answer.xml", tmp_path)
    try:
        call = await endpoint.place_call(
            f"sip:15550100000@callee.test:{sipp.port}",
            sdp_offer=ANSWER_SDP,
            from_user="15550100001",
            timeout_s=20,
        )
        answer = await asyncio.wait_for(call.wait_answered(), 20)
        await call.hangup()

        assert answer is not None
        assert call.status == 200
        assert await asyncio.wait_for(call.wait_ended(), 10) == "hangup"
        code, log = await sipp.finish()
        assert code == 0, log
    finally:
        sipp.kill()
        await endpoint.stop()


async def test_call_to_unknown_name_raises(dns_server: DnsServer) -> None:
    config = SipConfig(port=0, dns_servers=("127.0.0.1",), dns_port=dns_server.port)
    endpoint = SipEndpoint(config, ScriptedHandler())
    await endpoint.start()
    try:
        with pytest.raises(SipUsageError, match=r"target not found: no address for gone\.test"):
            await endpoint.place_call(
                "sip:15550100000@gone.test", sdp_offer=ANSWER_SDP, from_user="15550100001"
            )
    finally:
        await endpoint.stop()
