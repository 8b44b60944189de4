"""Live call events over HTTP: Server-Sent Events and WebSocket.

`GET /api/events` streams events as SSE (`event: <kind>`, `data: <json>`);
`GET /api/events/ws` sends one JSON text message per event. Both take
`?kinds=a,b` (exact kinds, or prefixes such as `acd.*`) and `?call_id=`.
Each client reads from its own bounded hub subscription. A client that
falls behind loses the oldest events and then receives a `stream.dropped`
notice with the count, so the hub's publisher never waits for a client.

Threat model: the stream carries caller data (numbers, transcripts), so a
configured bearer token is required (compared in constant time). Without
one, only loopback clients are served. The number of clients is bounded,
query values are bounded in size and shape, and a WebSocket client may
send only small frames, which are ignored.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from voxgate.callevents import EventHub, Subscription

logger = logging.getLogger("api")

MAX_KINDS = 32
MAX_CALL_ID_LENGTH = 256
_KIND_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*(\.\*)?$")
DROPPED_KIND = "stream.dropped"


@dataclass(frozen=True, slots=True)
class EventStreamConfig:
    """Limits of the event stream endpoints.

    `queue_size` is the number of events held per client, `max_clients` the
    number of open streams (SSE and WebSocket together), `heartbeat_s` the
    idle time after which a keep-alive goes out, so dead clients are found.
    """

    token: str | None = None
    queue_size: int = 500
    max_clients: int = 64
    heartbeat_s: float = 15.0
    max_ws_message: int = 4096


@dataclass(frozen=True, slots=True)
class StreamFilter:
    kinds: tuple[str, ...]
    call_id: str | None


class EventStream:
    """The state behind the routes: the hub, the limits and the open subscriptions."""

    def __init__(self, hub: EventHub, config: EventStreamConfig) -> None:
        self.hub = hub
        self.config = config
        self.clients: set[Subscription] = set()
        self.websockets: set[web.WebSocketResponse] = set()

    def check_token(self, request: web.Request) -> None:
        check_bearer(request, self.config.token)

    def open(self, request: web.Request) -> Subscription:
        """Check the token, the filter and the client limit, then subscribe."""
        self.check_token(request)
        stream_filter = parse_filter(request.query.get("kinds"), request.query.get("call_id"))
        if len(self.clients) >= self.config.max_clients:
            logger.warning("event stream client rejected: %d clients open", len(self.clients))
            raise web.HTTPServiceUnavailable(
                text="too many event stream clients", headers={"Retry-After": "5"}
            )
        subscription = self.hub.subscribe(
            maxsize=self.config.queue_size,
            kinds=stream_filter.kinds,
            call_id=stream_filter.call_id,
        )
        self.clients.add(subscription)
        return subscription

    def release(self, subscription: Subscription) -> None:
        subscription.close()
        self.clients.discard(subscription)

    async def next_message(
        self, subscription: Subscription, reported: int
    ) -> dict[str, Any] | None:
        """Return the next message for a client, or None after `heartbeat_s` without one.

        A drop notice comes first when events were dropped since `reported`.
        Raises `EOFError` when the subscription is closed.
        """
        if subscription.dropped == reported:
            try:
                await asyncio.wait_for(subscription.wait(), self.config.heartbeat_s)
            except TimeoutError:
                return None
        # Events may have been dropped while this client waited, before the next one is sent.
        if subscription.dropped > reported:
            return dropped_notice(subscription.dropped - reported)
        return subscription.get_nowait().to_json()

    async def close_all(self, app: web.Application) -> None:
        """Close every stream so that the server can stop without waiting for clients."""
        for subscription in list(self.clients):
            subscription.close()
        for ws in list(self.websockets):
            await ws.close(code=1001, message=b"server shutdown")


def is_loopback(remote: str | None) -> bool:
    """Return True when `remote` (the peer address of a request) is 127.0.0.0/8 or ::1."""
    if remote is None:
        return False
    try:
        return ipaddress.ip_address(remote.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def check_bearer(request: web.Request, expected: str | None) -> None:
    """Raise 401 unless the request carries `expected` as bearer token.

    Without a token (`expected` is None) only loopback clients are let in,
    so caller data never reaches the network unless a token is configured.
    """
    if expected is None:
        if is_loopback(request.remote):
            return
        logger.info(
            "%s request from %s rejected: no API token is set, so only loopback is allowed",
            request.path,
            request.remote,
        )
        raise web.HTTPUnauthorized(
            text="this node has no API token, so only loopback clients may read this route",
            headers={"WWW-Authenticate": 'Bearer realm="voxgate"'},
        )
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        presented.strip().encode(), expected.encode()
    ):
        logger.info(
            "%s request from %s rejected: missing or invalid token", request.path, request.remote
        )
        raise web.HTTPUnauthorized(
            text="missing or invalid bearer token",
            headers={"WWW-Authenticate": 'Bearer realm="voxgate"'},
        )


def parse_filter(kinds: str | None, call_id: str | None) -> StreamFilter:
    """Parse the `kinds` and `call_id` query values; raise 400 for invalid ones."""
    parsed: list[str] = []
    if kinds:
        parsed = [kind.strip() for kind in kinds.split(",") if kind.strip()]
        if len(parsed) > MAX_KINDS:
            raise web.HTTPBadRequest(text=f"too many kinds: {len(parsed)} (maximum {MAX_KINDS})")
        for kind in parsed:
            if len(kind) > 64 or not _KIND_PATTERN.match(kind):
                raise web.HTTPBadRequest(
                    text=f"invalid event kind {kind[:64]!r}: expected a kind such as "
                    "call.ended or a prefix such as acd.*"
                )
    if call_id is not None and not 0 < len(call_id) <= MAX_CALL_ID_LENGTH:
        raise web.HTTPBadRequest(
            text=f"invalid call_id: length must be 1 to {MAX_CALL_ID_LENGTH} characters"
        )
    return StreamFilter(tuple(parsed), call_id)


def dropped_notice(count: int) -> dict[str, Any]:
    return {
        "kind": DROPPED_KIND,
        "call_id": None,
        "node_id": None,
        "time": time.time(),
        "payload": {"dropped": count},
    }


def sse_frame(message: dict[str, Any]) -> bytes:
    """Encode one SSE event; JSON has no raw newlines, so `data` fits one line."""
    data = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
    return f"event: {message['kind']}\ndata: {data}\n\n".encode()


EVENT_STREAM_KEY: web.AppKey[EventStream] = web.AppKey("event_stream", EventStream)


async def _sse(request: web.Request) -> web.StreamResponse:
    stream = request.app[EVENT_STREAM_KEY]
    subscription = stream.open(request)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    try:
        await response.prepare(request)
        await response.write(b"retry: 3000\n\n")
        reported = 0
        while True:
            try:
                message = await stream.next_message(subscription, reported)
            except EOFError:
                break
            if message is None:
                await response.write(b": keep-alive\n\n")
                continue
            if message["kind"] == DROPPED_KIND:
                reported = subscription.dropped
            await response.write(sse_frame(message))
    except ConnectionResetError:
        logger.debug("SSE client %s disconnected", request.remote)
    finally:
        stream.release(subscription)
    return response


async def _websocket(request: web.Request) -> web.WebSocketResponse:
    stream = request.app[EVENT_STREAM_KEY]
    subscription = stream.open(request)
    ws = web.WebSocketResponse(
        heartbeat=stream.config.heartbeat_s, max_msg_size=stream.config.max_ws_message
    )
    reader: asyncio.Future[None] | None = None
    stream.websockets.add(ws)
    try:
        await ws.prepare(request)
        reader = asyncio.ensure_future(_read_until_closed(ws, subscription))
        reported = 0
        while not ws.closed:
            try:
                message = await stream.next_message(subscription, reported)
            except EOFError:
                break
            if message is None:
                continue
            if message["kind"] == DROPPED_KIND:
                reported = subscription.dropped
            await ws.send_str(json.dumps(message, ensure_ascii=False, separators=(",", ":")))
    except ConnectionResetError:
        logger.debug("WebSocket event client %s disconnected", request.remote)
    finally:
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        stream.release(subscription)
        stream.websockets.discard(ws)
        await ws.close()
    return ws


async def _read_until_closed(ws: web.WebSocketResponse, subscription: Subscription) -> None:
    """Drain the client's frames (ignored) and end the stream when the client goes away."""
    async for message in ws:
        if message.type is WSMsgType.ERROR:
            logger.debug("WebSocket event client error: %s", ws.exception())
    subscription.close()


def add_event_routes(
    app: web.Application,
    hub: EventHub,
    *,
    token: str | None,
    config: EventStreamConfig | None = None,
) -> EventStream:
    """Serve `GET /api/events` (SSE) and `GET /api/events/ws` (WebSocket) from `hub`.

    `token`, when set, is the bearer token every client must send; when None,
    only loopback clients are served. `config`
    sets the limits; its own `token` field is replaced by `token`.
    """
    base = config or EventStreamConfig()
    stream = EventStream(
        hub,
        EventStreamConfig(
            token=token,
            queue_size=base.queue_size,
            max_clients=base.max_clients,
            heartbeat_s=base.heartbeat_s,
            max_ws_message=base.max_ws_message,
        ),
    )
    app[EVENT_STREAM_KEY] = stream
    app.router.add_get("/api/events", _sse)
    app.router.add_get("/api/events/ws", _websocket)
    app.on_shutdown.append(stream.close_all)
    return stream
