"""Agent sessions over the WebSocket: ringing, rejection, no answer, wrap-up, grace.

No media is set up here: these paths end before an offer is applied. The
timers are real but short, and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from signaling.webrtc.auth import TokenSigner
from signaling.webrtc.call import WebRtcCall
from signaling.webrtc.config import WebRtcConfig
from signaling.webrtc.protocol import AgentState, Incoming, Presence, Role, TransferKind
from signaling.webrtc.server import WebRtcServer, add_routes

ORIGIN = "http://127.0.0.1:8080"
SECRET = b"a" * 32
INCOMING = Incoming(call_id="acd-1", caller="+15550100", queue="billing", priority=1)


class PresenceHandler:
    def __init__(self) -> None:
        self.changes: asyncio.Queue[Presence] = asyncio.Queue()

    async def on_call(self, call: WebRtcCall) -> None:
        await call.ended.wait()

    async def on_transfer(self, call: WebRtcCall, kind: TransferKind, target: str) -> bool:
        return False

    def on_call_state(self, call: WebRtcCall) -> None:
        pass

    def on_agent_state(self, presence: Presence) -> None:
        self.changes.put_nowait(presence)

    async def next_state(self) -> tuple[AgentState, str]:
        presence = await asyncio.wait_for(self.changes.get(), 10)
        return presence.state, presence.reason


Setup = tuple[TestClient[web.Request, web.Application], WebRtcServer, PresenceHandler]


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    handler = PresenceHandler()
    config = WebRtcConfig(
        allowed_origins=[ORIGIN],
        token_secret=SECRET,
        advertised_addresses=["127.0.0.1"],
        wrap_up_s=1,
        reconnect_grace_s=0.5,
    )
    app = web.Application()
    server = add_routes(app, config, handler)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client, server, handler


async def _receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await ws.receive(timeout=10)
    assert msg.type is aiohttp.WSMsgType.TEXT, msg
    body: dict[str, Any] = json.loads(msg.data)
    return body


async def _receive_type(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    while True:
        body = await _receive(ws)
        if body["type"] == kind:
            return body


async def _available_agent(setup: Setup) -> aiohttp.ClientWebSocketResponse:
    client, _, handler = setup
    ws = await client.ws_connect("/ws", headers={"Origin": ORIGIN})
    token, _ = TokenSigner(SECRET, 60).issue("alice", Role.AGENT)
    await ws.send_json({"type": "login", "token": token})
    await _receive_type(ws, "session")
    assert await handler.next_state() == (AgentState.AWAY, "logged in")
    await ws.send_json({"type": "agent_state", "state": "available"})
    assert await handler.next_state() == (AgentState.AVAILABLE, "")
    return ws


async def test_rejected_call_returns_agent_to_available(setup: Setup) -> None:
    _, server, handler = setup
    ws = await _available_agent(setup)
    offering = asyncio.create_task(server.offer_call("alice", INCOMING, timeout_s=10))
    incoming = await _receive_type(ws, "incoming")
    assert incoming["call_id"] == "acd-1"
    assert incoming["caller"] == "+15550100"
    assert await handler.next_state() == (AgentState.RINGING, "")
    await ws.send_json({"type": "hangup", "call_id": "acd-1", "reason": "rejected"})
    assert await asyncio.wait_for(offering, 10) is None
    assert await handler.next_state() == (AgentState.AVAILABLE, "rejected a call")


async def test_unanswered_call_sets_agent_away(setup: Setup) -> None:
    _, server, handler = setup
    ws = await _available_agent(setup)
    result = await server.offer_call("alice", INCOMING, timeout_s=0.3)
    assert result is None
    assert await handler.next_state() == (AgentState.RINGING, "")
    assert await handler.next_state() == (AgentState.AWAY, "missed call")
    withdrawn = await _receive_type(ws, "hangup")
    assert withdrawn["reason"] == "not answered"


async def test_agent_not_available_is_not_rung(setup: Setup) -> None:
    _, server, _ = setup
    assert await server.offer_call("nobody", INCOMING, timeout_s=1) is None


async def test_bad_offer_for_ringing_call_reports_sdp_error(setup: Setup) -> None:
    _, server, handler = setup
    ws = await _available_agent(setup)
    offering = asyncio.create_task(server.offer_call("alice", INCOMING, timeout_s=10))
    await _receive_type(ws, "incoming")
    await ws.send_json({"type": "offer", "call_id": "acd-1", "sdp": "v=0\r\n"})
    error = await _receive_type(ws, "error")
    assert error["code"] == "bad_sdp"
    assert error["call_id"] == "acd-1"
    assert await asyncio.wait_for(offering, 10) is None
    assert await handler.next_state() == (AgentState.RINGING, "")
    assert await handler.next_state() == (AgentState.AVAILABLE, "call setup failed")


async def test_offer_for_unknown_call_not_found(setup: Setup) -> None:
    ws = await _available_agent(setup)
    await ws.send_json({"type": "offer", "call_id": "acd-9", "sdp": "v=0\r\n"})
    error = await _receive_type(ws, "error")
    assert error["code"] == "not_found"


async def test_wrap_up_ends_by_timer(setup: Setup) -> None:
    _, _, handler = setup
    ws = await _available_agent(setup)
    await ws.send_json({"type": "agent_state", "state": "wrap_up"})
    assert await handler.next_state() == (AgentState.WRAP_UP, "")
    presence = await _receive_type(ws, "presence")
    while presence["state"] != "wrap_up":
        presence = await _receive_type(ws, "presence")
    assert presence["wrap_up_s"] == 1
    assert await handler.next_state() == (AgentState.AVAILABLE, "wrap-up time over")


async def test_reconnect_within_grace_keeps_state(setup: Setup) -> None:
    client, _, handler = setup
    ws = await _available_agent(setup)
    await ws.close()
    again = await client.ws_connect("/ws", headers={"Origin": ORIGIN})
    token, _ = TokenSigner(SECRET, 60).issue("alice", Role.AGENT)
    await again.send_json({"type": "login", "token": token})
    await _receive_type(again, "session")
    presence = await _receive_type(again, "presence")
    assert presence["state"] == "available"
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(handler.changes.get(), timeout=1.0)


async def test_agent_offline_after_grace(setup: Setup) -> None:
    _, server, handler = setup
    ws = await _available_agent(setup)
    await ws.close()
    assert await handler.next_state() == (AgentState.OFFLINE, "signaling lost")
    assert "alice" not in server.agents


async def test_ringing_agent_lost_goes_offline_not_away(setup: Setup) -> None:
    _, server, handler = setup
    ws = await _available_agent(setup)
    offering = asyncio.create_task(server.offer_call("alice", INCOMING, timeout_s=30))
    await _receive_type(ws, "incoming")
    assert await handler.next_state() == (AgentState.RINGING, "")
    await ws.close()
    assert await asyncio.wait_for(offering, 10) is None
    assert await handler.next_state() == (AgentState.OFFLINE, "signaling lost")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(handler.changes.get(), timeout=1.0)


async def test_newer_login_closes_older_socket(setup: Setup) -> None:
    client, _, _ = setup
    first = await _available_agent(setup)
    second = await client.ws_connect("/ws", headers={"Origin": ORIGIN})
    token, _ = TokenSigner(SECRET, 60).issue("alice", Role.AGENT)
    await second.send_json({"type": "login", "token": token})
    await _receive_type(second, "session")
    while True:
        msg = await first.receive(timeout=10)
        if msg.type is not aiohttp.WSMsgType.TEXT:
            break
    assert msg.type is aiohttp.WSMsgType.CLOSE
    assert msg.data == 4000
    presence = await _receive_type(second, "presence")
    assert presence["state"] == "available"


async def test_session_token_refreshed_before_expiry() -> None:
    config = WebRtcConfig(
        allowed_origins=[ORIGIN],
        token_secret=SECRET,
        advertised_addresses=["127.0.0.1"],
        token_ttl_s=2,
    )
    app = web.Application()
    add_routes(app, config, PresenceHandler())
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        ws = await client.ws_connect("/ws", headers={"Origin": ORIGIN})
        token, expires_at = TokenSigner(SECRET, 2).issue("alice", Role.AGENT)
        await ws.send_json({"type": "login", "token": token})
        first = await _receive_type(ws, "session")
        refreshed = await _receive_type(ws, "session")
        assert first["session_id"] == refreshed["session_id"]
        assert refreshed["expires_at"] > expires_at
        claims = TokenSigner(SECRET, 2).verify(refreshed["token"])
        assert claims.user == "alice"
        assert claims.role is Role.AGENT


async def test_cancelled_offer_tells_agent_and_frees_them(setup: Setup) -> None:
    _, server, handler = setup
    ws = await _available_agent(setup)
    offering = asyncio.create_task(server.offer_call("alice", INCOMING, timeout_s=30))
    await _receive_type(ws, "incoming")
    assert await handler.next_state() == (AgentState.RINGING, "")
    assert server.cancel_offer("acd-1", "caller left") is True
    assert await asyncio.wait_for(offering, 10) is None
    withdrawn = await _receive_type(ws, "hangup")
    assert withdrawn["call_id"] == "acd-1"
    assert withdrawn["reason"] == "caller left"
    assert await handler.next_state() == (AgentState.AVAILABLE, "caller left")
    assert server.cancel_offer("acd-1") is False


async def test_cancelling_offer_task_withdraws_ring(setup: Setup) -> None:
    _, server, handler = setup
    ws = await _available_agent(setup)
    offering = asyncio.create_task(server.offer_call("alice", INCOMING, timeout_s=30))
    await _receive_type(ws, "incoming")
    assert await handler.next_state() == (AgentState.RINGING, "")
    offering.cancel()
    with pytest.raises(asyncio.CancelledError):
        await offering
    withdrawn = await _receive_type(ws, "hangup")
    assert withdrawn["reason"] == "offer withdrawn"
    assert await handler.next_state() == (AgentState.AVAILABLE, "offer withdrawn")
