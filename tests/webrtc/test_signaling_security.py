"""The WebSocket edge rejects foreign origins, bad tokens and bad messages."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from signaling.webrtc.auth import TokenSigner, hash_password
from signaling.webrtc.call import WebRtcCall, WebRtcTransport
from signaling.webrtc.config import WebRtcConfig
from signaling.webrtc.peer import create_peer
from signaling.webrtc.protocol import Presence, Role, TransferKind
from signaling.webrtc.server import WebRtcServer, add_routes

ORIGIN = "http://127.0.0.1:8080"
SECRET = b"t" * 32


class RecordingHandler:
    def __init__(self) -> None:
        self.presence: list[Presence] = []

    async def on_call(self, call: WebRtcCall) -> None:
        await call.ended.wait()

    async def on_transfer(self, call: WebRtcCall, kind: TransferKind, target: str) -> bool:
        return False

    def on_call_state(self, call: WebRtcCall) -> None:
        pass

    def on_agent_state(self, presence: Presence) -> None:
        self.presence.append(presence)


def _config(**overrides: Any) -> WebRtcConfig:
    values: dict[str, Any] = {
        "allowed_origins": [ORIGIN],
        "token_secret": SECRET,
        "users": {"alice": hash_password("pw-alice")},
        "advertised_addresses": ["127.0.0.1"],
        "max_message_bytes": 2048,
        "rate_per_s": 5.0,
        "rate_burst": 5,
        "max_rate_violations": 3,
        "login_timeout_s": 5.0,
    }
    values.update(overrides)
    return WebRtcConfig(**values)


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application()
    add_routes(app, _config(), RecordingHandler())
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield test_client


def _token(role: Role = Role.AGENT, ttl_s: int = 60) -> str:
    return TokenSigner(SECRET, ttl_s).issue("alice", role)[0]


async def _connect(
    client: TestClient[web.Request, web.Application], origin: str = ORIGIN
) -> aiohttp.ClientWebSocketResponse:
    return await client.ws_connect(
        "/ws", headers={"Origin": origin}, timeout=aiohttp.ClientWSTimeout(ws_close=5)
    )


async def _receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await ws.receive(timeout=10)
    assert msg.type is aiohttp.WSMsgType.TEXT, msg
    body: dict[str, Any] = json.loads(msg.data)
    return body


async def _logged_in(
    client: TestClient[web.Request, web.Application],
) -> aiohttp.ClientWebSocketResponse:
    ws = await _connect(client)
    await ws.send_json({"type": "login", "token": _token()})
    assert (await _receive(ws))["type"] == "session"
    assert (await _receive(ws))["type"] == "presence"
    return ws


async def test_foreign_origin_gets_403(client: TestClient[web.Request, web.Application]) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await _connect(client, origin="https://evil.example.com")
    assert info.value.status == 403


async def test_missing_origin_gets_403(client: TestClient[web.Request, web.Application]) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await client.ws_connect("/ws")
    assert info.value.status == 403


async def test_message_before_login_rejected_and_closed(
    client: TestClient[web.Request, web.Application],
) -> None:
    ws = await _connect(client)
    await ws.send_json({"type": "hold", "call_id": "c1"})
    error = await _receive(ws)
    assert error["code"] == "unauthorized"
    assert (await ws.receive(timeout=10)).type is aiohttp.WSMsgType.CLOSE


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("", "malformed token"),
        ("garbage", "malformed token"),
        (TokenSigner(b"x" * 32, 60).issue("alice", Role.AGENT)[0], "invalid token signature"),
        (TokenSigner(SECRET, -1).issue("alice", Role.AGENT)[0], "token expired"),
    ],
    ids=["empty", "malformed", "forged", "expired"],
)
async def test_bad_token_rejected(
    client: TestClient[web.Request, web.Application], token: str, reason: str
) -> None:
    ws = await _connect(client)
    await ws.send_json({"type": "login", "token": token})
    error = await _receive(ws)
    assert error["type"] == "error"
    assert error["code"] in ("unauthorized", "bad_message")
    assert reason in error["message"]


async def test_oversized_message_answered_with_error(
    client: TestClient[web.Request, web.Application],
) -> None:
    ws = await _logged_in(client)
    await ws.send_str(json.dumps({"type": "hangup", "call_id": "c1", "reason": "x" * 3000}))
    error = await _receive(ws)
    assert error["code"] == "too_large"
    await ws.send_json({"type": "agent_state", "state": "available"})
    assert (await _receive(ws))["state"] == "available"


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{", "bad_json"),
        ("[]", "bad_message"),
        ('{"type":"launch"}', "unknown_type"),
        ('{"type":"incoming","call_id":"c","caller":"x"}', "unknown_type"),
        ('{"type":"dtmf","call_id":"c1","digits":"9z"}', "bad_message"),
        ('{"type":"hold","call_id":"nope"}', "not_found"),
        ('{"type":"agent_state","state":"wrap_up"}', "bad_state"),
    ],
)
async def test_malformed_message_answered_socket_kept(
    client: TestClient[web.Request, web.Application], frame: str, code: str
) -> None:
    ws = await _logged_in(client)
    await ws.send_str(frame)
    error = await _receive(ws)
    assert error["type"] == "error"
    assert error["code"] == code
    await ws.send_json({"type": "agent_state", "state": "available"})
    assert (await _receive(ws))["state"] == "available"


async def test_binary_frame_answered_with_error(
    client: TestClient[web.Request, web.Application],
) -> None:
    ws = await _logged_in(client)
    await ws.send_bytes(b"\x00\x01")
    assert (await _receive(ws))["code"] == "bad_message"


async def test_message_flood_rate_limited_then_closed(
    client: TestClient[web.Request, web.Application],
) -> None:
    ws = await _logged_in(client)
    for _ in range(40):
        if ws.closed:
            break
        await ws.send_json({"type": "hold", "call_id": "none"})
    codes = []
    while True:
        msg = await ws.receive(timeout=10)
        if msg.type is not aiohttp.WSMsgType.TEXT:
            break
        codes.append(json.loads(msg.data)["code"])
    assert "rate_limited" in codes
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def test_caller_cannot_change_agent_state(
    client: TestClient[web.Request, web.Application],
) -> None:
    ws = await _connect(client)
    await ws.send_json({"type": "login", "token": _token(Role.CALLER)})
    assert (await _receive(ws))["type"] == "session"
    await ws.send_json({"type": "agent_state", "state": "available"})
    assert (await _receive(ws))["code"] == "forbidden"


async def test_login_endpoint_issues_agent_token(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.post(
        "/api/webrtc/login",
        json={"user": "alice", "password": "pw-alice"},
        headers={"Origin": ORIGIN},
    )
    assert response.status == 200
    body = await response.json()
    assert body["role"] == "agent"
    assert TokenSigner(SECRET, 60).verify(body["token"]).user == "alice"


async def test_login_endpoint_rejects_wrong_password(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.post(
        "/api/webrtc/login", json={"user": "alice", "password": "nope"}, headers={"Origin": ORIGIN}
    )
    assert response.status == 401


async def test_login_endpoint_rejects_foreign_origin(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.post(
        "/api/webrtc/login",
        json={"user": "alice", "password": "pw-alice"},
        headers={"Origin": "https://evil.example.com"},
    )
    assert response.status == 403


async def test_login_endpoint_rejects_oversized_body(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.post(
        "/api/webrtc/login", data=b"{" + b" " * 10_000 + b"}", headers={"Origin": ORIGIN}
    )
    assert response.status == 413


async def test_login_without_token_names_field(
    client: TestClient[web.Request, web.Application],
) -> None:
    ws = await _connect(client)
    await ws.send_json({"type": "login"})
    error = await _receive(ws)
    assert error["code"] == "bad_message"
    assert error["field"] == "token"
    await ws.send_json({"type": "hold", "call_id": "c1"})
    assert (await _receive(ws))["code"] == "unauthorized"


async def test_silent_socket_closed_after_login_timeout() -> None:
    app = web.Application()
    add_routes(app, _config(login_timeout_s=0.5), RecordingHandler())
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        ws = await _connect(test_client)
        error = await _receive(ws)
        assert error["code"] == "unauthorized"
        assert error["message"] == "login timed out"
        closing = await ws.receive(timeout=10)
        assert closing.type is aiohttp.WSMsgType.CLOSE
        assert closing.data == 4001


async def test_second_login_on_same_socket_rejected(
    client: TestClient[web.Request, web.Application],
) -> None:
    ws = await _logged_in(client)
    await ws.send_json({"type": "login", "token": _token()})
    error = await _receive(ws)
    assert error["code"] == "bad_state"
    assert error["field"] == "type"


async def test_other_users_call_not_found(
    client: TestClient[web.Request, web.Application],
) -> None:
    ws = await _logged_in(client)
    await ws.send_json({"type": "dtmf", "call_id": "someone-elses", "digits": "1"})
    error = await _receive(ws)
    assert error["code"] == "not_found"
    assert error["call_id"] == "someone-elses"


async def test_huge_frame_closes_with_1009(
    client: TestClient[web.Request, web.Application],
) -> None:
    ws = await _logged_in(client)
    await ws.send_str(json.dumps({"type": "hangup", "call_id": "c1", "reason": "x" * 9000}))
    closing = await ws.receive(timeout=10)
    assert closing.type is aiohttp.WSMsgType.CLOSE
    assert closing.data == 1009


def _existing_call(server: WebRtcServer, call_id: str, user: str) -> WebRtcCall:
    """Register a call without media, as if its offer had been applied."""
    transport = WebRtcTransport(create_peer(server.config), 16_000, call_id=call_id)
    call = WebRtcCall(
        call_id=call_id,
        role=Role.CALLER,
        user=user,
        to="sales",
        transport=transport,
        notify=lambda changed: None,
    )
    server.calls[call_id] = call
    return call


@pytest.mark.parametrize(
    ("limits", "owner", "code"),
    [
        ({"max_calls": 1}, "someone-else", "overloaded"),
        ({"max_calls_per_user": 1}, "alice", "bad_state"),
    ],
    ids=["node-full", "user-full"],
)
async def test_call_limits_enforced(limits: dict[str, int], owner: str, code: str) -> None:
    app = web.Application()
    server = add_routes(app, _config(**limits), RecordingHandler())
    existing = _existing_call(server, "c-0", owner)
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        ws = await _connect(test_client)
        await ws.send_json({"type": "login", "token": _token(Role.CALLER)})
        assert (await _receive(ws))["type"] == "session"
        await ws.send_json({"type": "call", "call_id": "c-1", "to": "sales", "sdp": "v=0\r\n"})
        error = await _receive(ws)
        while error["type"] != "error":
            error = await _receive(ws)
        assert error["code"] == code
        assert error["call_id"] == "c-1"
        assert "c-1" not in server.calls
    await existing.transport.pc.close()


async def test_guest_tokens_throttled_per_address(
    client: TestClient[web.Request, web.Application],
) -> None:
    statuses = []
    for _ in range(31):
        response = await client.post("/api/webrtc/guest", headers={"Origin": ORIGIN})
        statuses.append(response.status)
    assert statuses[:30] == [200] * 30
    assert statuses[30] == 429
