"""The SSE and WebSocket event streams on a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from voxgate.callevents import CallEvent, EventHub
from voxgate.eventstream import EventStream, EventStreamConfig, add_event_routes

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WAIT_S = 10.0

Client = TestClient[web.Request, web.Application]


def event(kind: str, call_id: str | None = "c1", index: int = 0) -> CallEvent:
    return CallEvent(kind, call_id, "node-a", 1000.0 + index, {"index": index})


async def serve(
    hub: EventHub, token: str | None = TOKEN, **limits: Any
) -> tuple[Client, EventStream]:
    app = web.Application()
    stream = add_event_routes(app, hub, token=token, config=EventStreamConfig(**limits))
    client: Client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client, stream


@pytest.fixture
async def hub() -> EventHub:
    return EventHub()


@pytest.fixture
async def setup(hub: EventHub) -> AsyncIterator[tuple[Client, EventStream]]:
    client, stream = await serve(hub)
    yield client, stream
    await client.close()


async def wait_for_clients(stream: EventStream, count: int) -> None:
    """Wait until `count` streams are open; a handler registers its client before it responds."""
    async with asyncio.timeout(WAIT_S):
        # The stream signals no event when a client comes or goes, so poll in bounded time.
        while len(stream.clients) != count:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def read_sse(response: aiohttp.ClientResponse) -> tuple[str, dict[str, Any]]:
    """Return the next SSE event's name and JSON data, skipping comments and `retry`."""
    name = ""
    async with asyncio.timeout(WAIT_S):
        while True:
            line = (await response.content.readline()).decode().rstrip("\n")
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                return name, json.loads(line.removeprefix("data: "))


async def test_sse_streams_published_events(
    hub: EventHub, setup: tuple[Client, EventStream]
) -> None:
    client, stream = setup
    async with client.get("/api/events", headers=AUTH) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        hub.publish(event("call.started", index=1))
        hub.publish(event("ivr.step_entered", index=2))
        first = await read_sse(response)
        second = await read_sse(response)
    assert first[0] == "call.started"
    assert first[1] == event("call.started", index=1).to_json()
    assert second[0] == "ivr.step_entered"
    assert second[1]["payload"] == {"index": 2}
    await wait_for_clients(stream, 0)


async def test_websocket_streams_published_events(
    hub: EventHub, setup: tuple[Client, EventStream]
) -> None:
    client, stream = setup
    async with client.ws_connect("/api/events/ws", headers=AUTH) as ws:
        await wait_for_clients(stream, 1)
        hub.publish(event("acd.caller_joined", index=3))
        message = await ws.receive_json(timeout=WAIT_S)
        assert message == event("acd.caller_joined", index=3).to_json()
    await wait_for_clients(stream, 0)


async def test_filters_by_kind_and_call(hub: EventHub, setup: tuple[Client, EventStream]) -> None:
    client, stream = setup
    async with (
        client.get("/api/events?kinds=call.ended,acd.*", headers=AUTH) as sse,
        client.ws_connect("/api/events/ws?call_id=c2", headers=AUTH) as ws,
    ):
        await wait_for_clients(stream, 2)
        hub.publish(event("call.started", call_id="c1"))
        hub.publish(event("ivr.step_entered", call_id="c1"))
        hub.publish(event("acd.caller_joined", call_id="c2"))
        hub.publish(event("call.ended", call_id="c1"))
        assert (await read_sse(sse))[0] == "acd.caller_joined"
        assert (await read_sse(sse))[0] == "call.ended"
        only_c2 = await ws.receive_json(timeout=WAIT_S)
        assert only_c2["kind"] == "acd.caller_joined"
        hub.publish(event("call.ended", call_id="c2"))
        assert (await ws.receive_json(timeout=WAIT_S))["kind"] == "call.ended"


async def test_missing_or_wrong_token_rejected(setup: tuple[Client, EventStream]) -> None:
    client, stream = setup
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        async with client.get("/api/events", headers=headers) as response:
            assert response.status == 401
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        with pytest.raises(aiohttp.WSServerHandshakeError) as raised:
            await client.ws_connect("/api/events/ws", headers=headers)
        assert raised.value.status == 401
    assert not stream.clients


async def test_no_token_configured_allows_clients(hub: EventHub) -> None:
    client, _ = await serve(hub, token=None)
    try:
        async with client.get("/api/events") as response:
            assert response.status == 200
    finally:
        await client.close()


async def test_invalid_filter_rejected(setup: tuple[Client, EventStream]) -> None:
    client, _ = setup
    too_many = ",".join(f"k{index}" for index in range(40))
    for query in ("kinds=Bad Kind", f"kinds={too_many}", "call_id=" + "x" * 300):
        async with client.get(f"/api/events?{query}", headers=AUTH) as response:
            assert response.status == 400, query


async def test_client_limit_returns_503(hub: EventHub) -> None:
    client, stream = await serve(hub, max_clients=1)
    try:
        async with client.get("/api/events", headers=AUTH) as first:
            assert first.status == 200
            await wait_for_clients(stream, 1)
            async with client.get("/api/events", headers=AUTH) as second:
                assert second.status == 503
    finally:
        await client.close()


async def test_slow_consumer_does_not_block_publisher(hub: EventHub) -> None:
    client, stream = await serve(hub, queue_size=10)
    try:
        async with client.get("/api/events", headers=AUTH) as slow:
            await wait_for_clients(stream, 1)
            fast = hub.subscribe(maxsize=5000)
            for index in range(2000):
                hub.publish(event("ivr.prompt_played", index=index))
            assert hub.published == 2000
            assert fast.pending() == 2000
            assert fast.dropped == 0
            (subscription,) = stream.clients
            assert subscription.pending() == 10
            assert subscription.dropped == 1990

            name, notice = await read_sse(slow)
            assert name == "stream.dropped"
            assert notice["payload"] == {"dropped": 1990}
            kept = [(await read_sse(slow))[1]["payload"]["index"] for _ in range(10)]
            assert kept == list(range(1990, 2000))
            fast.close()
    finally:
        await client.close()


async def test_shutdown_closes_open_streams(hub: EventHub) -> None:
    client, stream = await serve(hub)
    sse = await client.get("/api/events", headers=AUTH)
    ws = await client.ws_connect("/api/events/ws", headers=AUTH)
    await wait_for_clients(stream, 2)
    async with asyncio.timeout(WAIT_S):
        await client.close()
    assert not stream.clients
    assert ws.closed
    sse.release()
