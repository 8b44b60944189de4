"""Events relayed between two nodes on one real Redis server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest

from acd.clock import VirtualClock
from acd.events import AcdEvent, AgentStateChanged, CallerAnswered, CallerLeft, CallerOffered
from acd.model import AcdSettings, AgentState, Offer, OfferKind, QueueSettings
from acd.relay import EventRelay, decode_event, encode_event
from acd.service import Acd
from acd.store.redis import RedisStore
from tests.acd.redis_server import RedisServer

EVENT_TIMEOUT_S = 10.0


def test_event_round_trip_drops_context() -> None:
    offer = Offer(
        "e1",
        "call-1",
        "sales",
        "alice",
        "node-b",
        OfferKind.CALL,
        1.0,
        16.0,
        {"number": "+15550100"},
    )

    origin, event = decode_event(encode_event(CallerOffered(1.0, offer), "node-b"))

    assert origin == "node-b"
    assert isinstance(event, CallerOffered)
    assert event.offer.kind is OfferKind.CALL
    assert event.offer.agent_id == "alice"
    assert event.offer.context == {}
    assert "+1555" not in encode_event(CallerOffered(1.0, offer), "node-b")


def test_decode_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="invalid relayed ACD event"):
        decode_event('{"type": "Nope", "origin": "x", "fields": {}}')
    with pytest.raises(ValueError, match="invalid relayed ACD event"):
        decode_event("not json")


async def test_caller_node_hears_remote_answer(redis_server: RedisServer) -> None:
    prefix = f"relay-{uuid.uuid4().hex[:8]}:"
    settings = AcdSettings(queues={"sales": QueueSettings(name="sales", announce_first_s=None)})
    clock = VirtualClock(100.0)
    store_a = await RedisStore.connect(redis_server.url, prefix=prefix)
    store_b = await RedisStore.connect(redis_server.url, prefix=prefix)
    node_a = Acd(store_a, clock, settings, node_id="node-a")
    node_b = Acd(store_b, clock, settings, node_id="node-b")
    relay_a, relay_b = EventRelay(node_a, store_a), EventRelay(node_b, store_b)
    heard: list[AcdEvent] = []
    answered = asyncio.Event()

    def on_a(event: AcdEvent) -> None:
        heard.append(event)
        if isinstance(event, AgentStateChanged) and event.new is AgentState.ON_CALL:
            answered.set()

    node_a.events.listen(on_a)
    await relay_a.start()
    await relay_b.start()
    try:
        await node_a.enqueue("call-1", "sales", context={"number": "+15550100"})
        await node_b.login("alice", ["sales"])
        await node_a.step()
        await node_b.step()
        offer = await asyncio.wait_for(node_b.next_offer(), EVENT_TIMEOUT_S)
        assert offer.context == {"number": "+15550100"}
        assert await node_b.answer_offer("alice", offer.entry_id)

        await asyncio.wait_for(answered.wait(), EVENT_TIMEOUT_S)
    finally:
        await relay_a.close()
        await relay_b.close()
        await store_a.delete_all()
        await store_a.close()
        await store_b.close()

    offered = [e for e in heard if isinstance(e, CallerOffered)]
    assert [(e.offer.call_id, e.offer.agent_id) for e in offered] == [("call-1", "alice")]
    assert offered[0].offer.context == {}
    assert [e.agent_id for e in heard if isinstance(e, CallerAnswered)] == ["alice"]
    states = [e.new for e in heard if isinstance(e, AgentStateChanged)]
    assert AgentState.ON_CALL in states
    assert sum(isinstance(e, CallerAnswered) for e in heard) == 1


async def test_deliver_gets_other_nodes_events_once(redis_server: RedisServer) -> None:
    prefix = f"relay-{uuid.uuid4().hex[:8]}:"
    settings = AcdSettings(queues={"sales": QueueSettings(name="sales", announce_first_s=None)})
    clock = VirtualClock(100.0)
    store_a = await RedisStore.connect(redis_server.url, prefix=prefix)
    store_b = await RedisStore.connect(redis_server.url, prefix=prefix)
    node_a = Acd(store_a, clock, settings, node_id="node-a")
    node_b = Acd(store_b, clock, settings, node_id="node-b")
    relayed: dict[str, list[tuple[str, AcdEvent]]] = {"node-a": [], "node-b": []}
    own_bus: list[AcdEvent] = []
    node_a.events.listen(own_bus.append)
    b_left = asyncio.Event()

    def deliver_to(node: str) -> Callable[[str, AcdEvent], None]:
        def deliver(origin: str, event: AcdEvent) -> None:
            relayed[node].append((origin, event))
            if isinstance(event, CallerLeft):
                b_left.set()

        return deliver

    relay_a = EventRelay(node_a, store_a, deliver_to("node-a"))
    relay_b = EventRelay(node_b, store_b, deliver_to("node-b"))
    await relay_a.start()
    await relay_b.start()
    try:
        await node_a.login("alice", ["sales"], state=AgentState.AWAY, reason="lunch")
        await node_b.enqueue("call-1", "sales")
        await node_b.leave("call-1")

        await asyncio.wait_for(b_left.wait(), EVENT_TIMEOUT_S)
    finally:
        await relay_a.close()
        await relay_b.close()
        await store_a.delete_all()
        await store_a.close()
        await store_b.close()

    kinds_on_a = [(origin, type(event).__name__) for origin, event in relayed["node-a"]]
    assert kinds_on_a == [("node-b", "CallerJoined"), ("node-b", "CallerLeft")]
    assert [type(event).__name__ for event in own_bus] == ["AgentStateChanged"]
    assert all(origin == "node-a" for origin, _ in relayed["node-b"])
