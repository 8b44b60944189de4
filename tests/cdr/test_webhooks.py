"""Webhook delivery to a real aiohttp receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from voxgate.callevents import CallEvent, EventHub
from voxgate.webhooks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    RetryPolicy,
    WebhookConfig,
    WebhookSender,
    verify,
)

SECRET = "webhook-secret"
WAIT_S = 10.0


def event(kind: str = "call.ended", index: int = 0) -> CallEvent:
    return CallEvent(kind, f"call-{index}", "node-a", 1000.0 + index, {"index": index})


@dataclass
class Receiver:
    """A webhook endpoint that responds to each request with the next scripted reply.

    A reply is an HTTP status, or "hang" to wait until the test ends.
    """

    replies: deque[int | str] = field(default_factory=deque)
    received: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    delivered: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append((body, dict(request.headers)))
        reply = self.replies.popleft() if self.replies else 200
        if reply == "hang":
            await self.release.wait()
            return web.Response(status=200)
        assert isinstance(reply, int)
        if 200 <= reply < 300:
            self.delivered.put_nowait(json.loads(body))
        return web.Response(status=reply)

    async def next_delivery(self) -> dict[str, Any]:
        return await asyncio.wait_for(self.delivered.get(), WAIT_S)


@pytest.fixture
def hub() -> EventHub:
    return EventHub()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()
    app = web.Application()
    app.router.add_post("/hook", state.handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.url = f"http://127.0.0.1:{port}/hook?key=abc"
    yield state
    state.release.set()
    await runner.cleanup()


class RecordedSleep:
    """The sender's wait between attempts: records each delay and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


def make_sender(
    hub: EventHub, receiver: Receiver, sleep: RecordedSleep, **options: Any
) -> WebhookSender:
    config = WebhookConfig(urls=(receiver.url,), secret=SECRET, **options)
    return WebhookSender(config, hub, sleep=sleep)


async def test_signature_verifies(hub: EventHub, receiver: Receiver) -> None:
    sender = make_sender(hub, receiver, RecordedSleep())
    await sender.start()
    try:
        hub.publish(event(index=4))
        delivered = await receiver.next_delivery()
    finally:
        await sender.close()
    body, headers = receiver.received[0]
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER] == f"sha256={expected}"
    assert verify(SECRET, body, headers[SIGNATURE_HEADER])
    assert not verify("other-secret", body, headers[SIGNATURE_HEADER])
    assert headers["Content-Type"] == "application/json"
    assert int(headers[TIMESTAMP_HEADER]) == delivered["sent_at"]
    assert delivered["kind"] == "call.ended"
    assert delivered["call_id"] == "call-4"
    assert delivered["payload"] == {"index": 4}


async def test_retry_after_500_succeeds(hub: EventHub, receiver: Receiver) -> None:
    sleep = RecordedSleep()
    retry = RetryPolicy(max_attempts=4, initial_delay_s=0.5, multiplier=2.0)
    sender = make_sender(hub, receiver, sleep, retry=retry)
    receiver.replies.extend([500, 503])
    await sender.start()
    try:
        hub.publish(event(index=1))
        delivered = await receiver.next_delivery()
    finally:
        await sender.close()
    assert delivered["call_id"] == "call-1"
    assert sleep.delays == [0.5, 1.0]
    bodies = [body for body, _ in receiver.received]
    assert len(bodies) == 3
    assert bodies[0] == bodies[1] == bodies[2]
    stats = next(iter(sender.stats().values()))
    assert stats["delivered"] == 1
    assert stats["attempts"] == 3
    assert stats["failed"] == 0


async def test_timeout_then_retry_delivers(hub: EventHub, receiver: Receiver) -> None:
    sleep = RecordedSleep()
    sender = make_sender(hub, receiver, sleep, timeout_s=1.5)
    receiver.replies.append("hang")
    await sender.start()
    try:
        hub.publish(event(index=2))
        delivered = await receiver.next_delivery()
    finally:
        await sender.close()
    assert delivered["call_id"] == "call-2"
    assert len(receiver.received) == 2
    assert sleep.delays == [RetryPolicy().delay_after(1)]


async def test_gives_up_after_max_attempts(
    hub: EventHub, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    sleep = RecordedSleep()
    retry = RetryPolicy(max_attempts=3, initial_delay_s=1.0, multiplier=3.0, max_delay_s=2.5)
    sender = make_sender(hub, receiver, sleep, retry=retry)
    receiver.replies.extend([502, 502, 502])
    await sender.start()
    with caplog.at_level(logging.WARNING, logger="voxgate.webhooks"):
        hub.publish(event(index=3))
        hub.publish(event(index=5))
        delivered = await receiver.next_delivery()
        stats = next(iter(sender.stats().values()))
        await sender.close()
    assert delivered["call_id"] == "call-5"
    assert sleep.delays == [1.0, 2.5]
    assert stats["failed"] == 1
    assert stats["delivered"] == 1
    assert stats["attempts"] == 4
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("failed after 3 attempts" in message for message in warnings)
    assert all("key=abc" not in message for message in warnings)


async def test_client_error_not_retried(hub: EventHub, receiver: Receiver) -> None:
    sleep = RecordedSleep()
    sender = make_sender(hub, receiver, sleep)
    receiver.replies.append(400)
    await sender.start()
    try:
        hub.publish(event(index=6))
        hub.publish(event(index=7))
        delivered = await receiver.next_delivery()
        stats = next(iter(sender.stats().values()))
    finally:
        await sender.close()
    assert delivered["call_id"] == "call-7"
    assert sleep.delays == []
    assert stats["failed"] == 1


async def test_queue_bound_drops_oldest(hub: EventHub, receiver: Receiver) -> None:
    sender = make_sender(hub, receiver, RecordedSleep(), queue_size=3)
    await sender.start()
    try:
        for index in range(10):
            hub.publish(event(index=index))
        stats = next(iter(sender.stats().values()))
        assert stats["dropped"] == 7
        assert stats["queued"] == 3
        delivered = [(await receiver.next_delivery())["call_id"] for _ in range(3)]
    finally:
        await sender.close()
    assert delivered == ["call-7", "call-8", "call-9"]
    assert len(receiver.received) == 3


async def test_kinds_filter_selects_events(hub: EventHub, receiver: Receiver) -> None:
    sender = make_sender(hub, receiver, RecordedSleep(), kinds=("acd.*",))
    await sender.start()
    try:
        hub.publish(event("call.started", index=1))
        hub.publish(event("acd.caller_joined", index=2))
        delivered = await receiver.next_delivery()
    finally:
        await sender.close()
    assert delivered["kind"] == "acd.caller_joined"
    assert len(receiver.received) == 1


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="secret"):
        WebhookConfig(urls=("http://127.0.0.1/hook",), secret="")
    with pytest.raises(ValueError, match="invalid webhook URL"):
        WebhookConfig(urls=("ftp://127.0.0.1/hook",), secret=SECRET)
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


def test_backoff_grows_and_caps() -> None:
    policy = RetryPolicy(initial_delay_s=0.5, multiplier=2.0, max_delay_s=3.0)
    assert [policy.delay_after(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
