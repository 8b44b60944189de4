"""An agent's `transfer` message on the signaling edge: results, errors and a free loop.

The agent's call is a real `WebRtcCall` on an aiortc peer connection that
is never negotiated, because these paths need no media. The handler takes
the application's place: it returns or raises what the test sets, which is
how a transfer's failures reach the server.
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
from signaling.webrtc.call import WebRtcCall, WebRtcTransport
from signaling.webrtc.config import WebRtcConfig
from signaling.webrtc.peer import create_peer
from signaling.webrtc.protocol import ErrorCode, Presence, ProtocolError, Role, TransferKind
from signaling.webrtc.server import WebRtcServer, add_routes

ORIGIN = "http://127.0.0.1:8080"
SECRET = b"t" * 32
CALL_ID = "q-transfer-1"


class TransferHandler:
    """Returns `result` from `on_transfer`, or raises it when it is an exception."""

    def __init__(self) -> None:
        self.result: bool | Exception = True
        self.release = asyncio.Event()
        self.release.set()
        self.requests: list[tuple[str, TransferKind, str]] = []

    async def on_call(self, call: WebRtcCall) -> None:
        await call.ended.wait()

    async def on_transfer(self, call: WebRtcCall, kind: TransferKind, target: str) -> bool:
        self.requests.append((call.call_id, kind, target))
        await self.release.wait()
        if isinstance(self.result, Exception):
            raise self.result
        return self.result

    def on_call_state(self, call: WebRtcCall) -> None:
        pass

    def on_agent_state(self, presence: Presence) -> None:
        pass


Setup = tuple[aiohttp.ClientWebSocketResponse, WebRtcServer, TransferHandler, WebRtcCall]


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    handler = TransferHandler()
    config = WebRtcConfig(
        allowed_origins=[ORIGIN], token_secret=SECRET, advertised_addresses=["127.0.0.1"]
    )
    app = web.Application()
    server = add_routes(app, config, handler)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        ws = await client.ws_connect("/ws", headers={"Origin": ORIGIN})
        token, _ = TokenSigner(SECRET, 60).issue("alice", Role.AGENT)
        await ws.send_json({"type": "login", "token": token})
        await receive_type(ws, "session")
        pc = create_peer(config)
        call = WebRtcCall(
            call_id=CALL_ID,
            role=Role.AGENT,
            user="alice",
            to="caller",
            transport=WebRtcTransport(pc, config.audio_rate, call_id=CALL_ID),
            notify=server._call_changed,
        )
        server.calls[CALL_ID] = call
        call.connected()
        await receive_type(ws, "call_state")
        yield ws, server, handler, call
        await call.hangup("test over")


async def receive_type(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            msg = await ws.receive()
            assert msg.type is aiohttp.WSMsgType.TEXT, msg
            body: dict[str, Any] = json.loads(msg.data)
            if body["type"] == kind:
                return body


async def send_transfer(ws: aiohttp.ClientWebSocketResponse, kind: str, target: str) -> None:
    await ws.send_json(
        {"type": "transfer", "call_id": CALL_ID, "target_kind": kind, "target": target}
    )


async def test_done_transfer_ends_agent_leg(setup: Setup) -> None:
    ws, _, handler, call = setup
    await send_transfer(ws, "queue", "billing")
    hangup = await receive_type(ws, "hangup")
    assert hangup["call_id"] == CALL_ID
    assert hangup["reason"] == "transferred"
    assert handler.requests == [(CALL_ID, TransferKind.QUEUE, "billing")]
    assert call.ended.is_set()


async def test_handler_error_reaches_page(setup: Setup) -> None:
    ws, _, handler, call = setup
    handler.result = ProtocolError(ErrorCode.NOT_FOUND, "queue 'nosuch' not found", field="target")
    await send_transfer(ws, "queue", "nosuch")
    error = await receive_type(ws, "error")
    assert error["code"] == "not_found"
    assert error["message"] == "queue 'nosuch' not found"
    assert error["field"] == "target"
    assert error["call_id"] == CALL_ID
    assert not call.ended.is_set()


async def test_false_result_reports_not_accepted(setup: Setup) -> None:
    ws, _, handler, call = setup
    handler.result = False
    await send_transfer(ws, "number", "sip:2000@127.0.0.1:5070")
    error = await receive_type(ws, "error")
    assert error["code"] == "bad_state"
    assert error["message"] == "transfer was not accepted"
    assert error["call_id"] == CALL_ID
    assert handler.requests == [(CALL_ID, TransferKind.NUMBER, "sip:2000@127.0.0.1:5070")]
    assert not call.ended.is_set()


async def test_handler_bug_reports_internal(setup: Setup) -> None:
    ws, _, handler, call = setup
    handler.result = RuntimeError("injected handler fault")
    await send_transfer(ws, "queue", "billing")
    error = await receive_type(ws, "error")
    assert error["code"] == "internal"
    assert "injected" not in error["message"]
    assert error["call_id"] == CALL_ID
    assert not call.ended.is_set()


async def test_pending_transfer_leaves_loop_free(setup: Setup) -> None:
    ws, _, handler, call = setup
    handler.release.clear()
    await send_transfer(ws, "number", "2000")
    await ws.send_json({"type": "hold", "call_id": CALL_ID})
    held = await receive_type(ws, "call_state")
    assert held["state"] == "held"
    assert handler.requests == [(CALL_ID, TransferKind.NUMBER, "2000")]
    handler.release.set()
    hangup = await receive_type(ws, "hangup")
    assert hangup["reason"] == "transferred"
    assert call.ended.is_set()


async def test_sip_uri_target_passes_parser(setup: Setup) -> None:
    ws, _, handler, _ = setup
    target = "sip:support;phone-context=example@pbx.example.com:5061;transport=tls"
    await send_transfer(ws, "number", target)
    await receive_type(ws, "hangup")
    assert handler.requests == [(CALL_ID, TransferKind.NUMBER, target)]


async def test_target_with_space_names_field(setup: Setup) -> None:
    ws, _, handler, call = setup
    await send_transfer(ws, "number", "20 00")
    error = await receive_type(ws, "error")
    assert error["code"] == "bad_message"
    assert error["field"] == "target"
    assert handler.requests == []
    assert not call.ended.is_set()
