"""OPTIONS keepalives: the ping state machine on a virtual clock, then against SIPp."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from signaling.sip.endpoint import SipConfig, SipEndpoint
from signaling.sip.ping import Ping, PingConfig, PingState
from tests.sip.support import SIPP, ScriptedHandler, start_sipp_uas

VIA = "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKping;rport"
CONTACT = "<sip:127.0.0.1:5060>"


def make_ping(interval: float = 30.0, timeout: float = 5.0) -> Ping:
    config = PingConfig(
        "trunk", "sip:203.0.113.5", "203.0.113.5", interval=interval, timeout=timeout
    )
    return Ping(config, CONTACT, "sip:127.0.0.1:5060")


def test_first_ping_is_sent_at_start() -> None:
    ping = make_ping()
    ping.start(100.0)

    request = ping.on_timer(VIA, 100.0)

    assert request is not None
    assert request.method == "OPTIONS"
    assert request.uri == "sip:203.0.113.5"
    assert request.headers.get("CSeq") == "1 OPTIONS"
    assert ping.deadline == 105.0
    assert ping.state is PingState.UNKNOWN


def test_any_final_response_means_reachable() -> None:
    ping = make_ping()
    ping.start(0.0)
    ping.on_timer(VIA, 0.0)

    changed = ping.on_response(405, 0.25)

    assert changed
    assert ping.state is PingState.REACHABLE
    assert ping.rtt == 0.25
    assert ping.last_status == 405
    assert ping.deadline == 30.0


def test_provisional_response_is_ignored() -> None:
    ping = make_ping()
    ping.start(0.0)
    ping.on_timer(VIA, 0.0)

    assert not ping.on_response(100, 0.1)
    assert ping.state is PingState.UNKNOWN


def test_late_answer_marks_unreachable_then_recovers() -> None:
    ping = make_ping(interval=30.0, timeout=5.0)
    ping.start(0.0)
    ping.on_timer(VIA, 0.0)

    assert ping.on_timer(VIA, 5.0) is None
    assert ping.state is PingState.UNREACHABLE
    assert ping.deadline == 30.0

    second = ping.on_timer(VIA, 30.0)
    assert second is not None
    assert second.headers.get("CSeq") == "2 OPTIONS"
    assert ping.on_response(200, 30.5)
    assert (ping.state, ping.rtt) == (PingState.REACHABLE, 0.5)


def test_timeout_must_be_below_interval() -> None:
    with pytest.raises(ValueError, match="below the interval"):
        PingConfig("trunk", "sip:203.0.113.5", "203.0.113.5", interval=5.0, timeout=5.0)


@pytest.mark.peer
@pytest.mark.skipif(SIPP is None, reason="sipp is not installed")
async def test_endpoint_pings_sipp(tmp_path: Path) -> None:
    sipp = await start_sipp_uas("uas_options.xml", tmp_path)
    target = f"sip:127.0.0.1:{sipp.port}"
    ping = PingConfig("sipp", target, "127.0.0.1", sipp.port, interval=30.0, timeout=5.0)
    endpoint = SipEndpoint(SipConfig(port=0, pings=[ping]), ScriptedHandler())
    await endpoint.start()
    try:
        async with asyncio.timeout(20.0):
            await endpoint.wait_for_ping("sipp", "reachable")
        state, rtt = endpoint.ping_state("sipp")

        assert state == "reachable"
        assert rtt is not None
        assert rtt >= 0
        code, log = await sipp.finish()
        assert code == 0, log
    finally:
        sipp.kill()
        await endpoint.stop()


async def test_silent_peer_becomes_unreachable() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        target = f"sip:127.0.0.1:{port}"
        ping = PingConfig("silent", target, "127.0.0.1", port, interval=2.0, timeout=0.5)
        endpoint = SipEndpoint(SipConfig(port=0, pings=[ping]), ScriptedHandler())
        await endpoint.start()
        try:
            async with asyncio.timeout(10.0):
                await endpoint.wait_for_ping("silent", "unreachable")
            received, _ = silent.recvfrom(4096)

            assert received.startswith(b"OPTIONS sip:127.0.0.1:")
            assert endpoint.ping_state("silent") == ("unreachable", None)
        finally:
            await endpoint.stop()
