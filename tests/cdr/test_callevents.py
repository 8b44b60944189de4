"""The event hub's fan-out and bounds, and the IVR and ACD adapters."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest

from acd.events import AgentStateChanged, CallerOffered
from acd.model import AgentState, Offer, OfferKind
from ivr.engine import IvrSession, Outcome, SessionResult
from ivr.events import EventKind, IvrEvent
from ivr.loader import parse_flow
from ivr.prompts import SilentSynthesizer
from ivr.services import QueueRequest
from ivr.textchannel import TextChannel, scripted
from tests.cdr.journey import FLOW
from voxgate.callevents import (
    CallEvent,
    CallLegEvents,
    Channel,
    EventHub,
    from_acd_event,
    from_ivr_event,
    ivr_event_callback,
    ivr_event_fields_callback,
)


def event(kind: str, call_id: str | None = "c1", index: int = 0) -> CallEvent:
    return CallEvent(kind, call_id, "node-a", 1000.0 + index, {"index": index})


async def test_subscription_receives_in_order() -> None:
    hub = EventHub()
    with hub.subscribe() as subscription:
        for index in range(3):
            hub.publish(event("call.started", index=index))
        received = [await subscription.get() for _ in range(3)]
    assert [e.payload["index"] for e in received] == [0, 1, 2]
    assert hub.subscriber_count == 0


async def test_slow_subscription_drops_oldest() -> None:
    hub = EventHub()
    subscription = hub.subscribe(maxsize=3)
    for index in range(10):
        hub.publish(event("ivr.step_entered", index=index))
    assert subscription.dropped == 7
    assert subscription.pending() == 3
    kept = [await subscription.get() for _ in range(3)]
    assert [e.payload["index"] for e in kept] == [7, 8, 9]
    subscription.close()


async def test_subscription_filters_kinds_and_call() -> None:
    hub = EventHub()
    by_kind = hub.subscribe(kinds=["call.ended", "acd.*"])
    by_call = hub.subscribe(call_id="c2")
    hub.publish(event("call.started"))
    hub.publish(event("call.ended"))
    hub.publish(event("acd.caller_joined", call_id="c2"))
    hub.publish(event("ivr.step_entered", call_id="c2"))
    assert [(await by_kind.get()).kind for _ in range(by_kind.pending())] == [
        "call.ended",
        "acd.caller_joined",
    ]
    assert [(await by_call.get()).kind for _ in range(by_call.pending())] == [
        "acd.caller_joined",
        "ivr.step_entered",
    ]


async def test_closed_subscription_ends_after_queue() -> None:
    hub = EventHub()
    subscription = hub.subscribe()
    waiter = asyncio.ensure_future(subscription.get())
    await asyncio.sleep(0)
    hub.publish(event("call.started"))
    assert (await asyncio.wait_for(waiter, 5)).kind == "call.started"
    hub.publish(event("call.ended"))
    subscription.close()
    hub.publish(event("call.answered"))
    assert (await subscription.get()).kind == "call.ended"
    with pytest.raises(EOFError):
        await subscription.get()


def test_failing_listener_does_not_stop_others(caplog: pytest.LogCaptureFixture) -> None:
    hub = EventHub()
    seen: list[str] = []

    def broken(event: CallEvent) -> None:
        raise RuntimeError("listener bug")

    hub.listen(broken)
    remove = hub.listen(lambda e: seen.append(e.kind))
    with caplog.at_level(logging.ERROR):
        hub.publish(event("call.started"))
    assert seen == ["call.started"]
    assert "event listener failed" in caplog.text
    remove()
    hub.publish(event("call.ended"))
    assert seen == ["call.started"]


def test_ivr_event_keeps_flow_step_and_payload() -> None:
    ivr = IvrEvent(EventKind.INTENT_SCORED, "c1", "care", "ask", 3.5, {"intent": "refund"})
    converted = from_ivr_event(ivr, "node-a", 1234.0)
    assert converted.kind == "ivr.intent_scored"
    assert converted.call_id == "c1"
    assert converted.time == 1234.0
    assert converted.payload == {"flow": "care", "step": "ask", "intent": "refund"}


def test_ivr_fields_callback_publishes_converted_event() -> None:
    hub = EventHub()
    seen: list[CallEvent] = []
    hub.listen(seen.append)
    ivr = IvrEvent(EventKind.INTENT_SCORED, "c1", "care", "ask", 3.5, {"intent": "refund"})
    ivr_event_fields_callback(hub, "node-a", lambda: 1234.0)(
        ivr.kind, ivr.call_id, ivr.flow, ivr.step, ivr.at, dict(ivr.payload)
    )
    expected = from_ivr_event(ivr, "node-a", 1234.0)
    assert seen == [expected]
    assert list(seen[0].payload) == ["flow", "step", "intent"]


def test_ivr_fields_callback_names_every_kind() -> None:
    hub = EventHub()
    seen: list[CallEvent] = []
    hub.listen(seen.append)
    publish = ivr_event_fields_callback(hub, "node-a", lambda: 1.0)
    for kind in EventKind:
        publish(kind, "c1", "care", None, 0.0, {})
    assert [e.kind for e in seen] == [f"ivr.{kind.value}" for kind in EventKind]
    assert all(type(e.kind) is str for e in seen)


async def test_ivr_fields_callback_matches_event_callback() -> None:
    by_instance: list[CallEvent] = []
    by_fields: list[CallEvent] = []
    instance_hub, fields_hub = EventHub(), EventHub()
    instance_hub.listen(by_instance.append)
    fields_hub.listen(by_fields.append)
    callbacks: list[dict[str, Any]] = [
        {"events": ivr_event_callback(instance_hub, "node-a", lambda: 7.0)},
        {"event_fields": ivr_event_fields_callback(fields_hub, "node-a", lambda: 7.0)},
    ]
    for callback in callbacks:
        flow, _ = parse_flow(FLOW, "care.yaml")
        channel = TextChannel(scripted(["I want a refund"]), call_id="c1")
        await IvrSession(flow, channel, SilentSynthesizer(), clock=channel.clock, **callback).run()
    assert len(by_instance) > 4
    assert by_fields == by_instance
    assert [list(e.payload) for e in by_fields] == [list(e.payload) for e in by_instance]


def test_acd_offer_event_leaves_out_context() -> None:
    offer = Offer(
        entry_id="e1",
        call_id="c1",
        queue="care",
        agent_id="agent-7",
        node_id="node-b",
        kind=OfferKind.CALL,
        offered_at=10.0,
        lease_until=25.0,
        context={"caller": "+15550100042"},
    )
    converted = from_acd_event(CallerOffered(10.0, offer), "node-a")
    assert converted.kind == "acd.caller_offered"
    assert converted.call_id == "c1"
    assert converted.time == 10.0
    assert converted.payload["agent_id"] == "agent-7"
    assert converted.payload["offer_node_id"] == "node-b"
    assert converted.payload["offer_kind"] == "call"
    assert "+15550100042" not in repr(converted.to_json())


def test_acd_agent_state_event_has_no_call() -> None:
    changed = AgentStateChanged(5.0, "agent-7", AgentState.AVAILABLE, AgentState.OFFERED, "call")
    converted = from_acd_event(changed, "node-a")
    assert converted.kind == "acd.agent_state_changed"
    assert converted.call_id is None
    assert converted.payload == {
        "agent_id": "agent-7",
        "old": "available",
        "new": "offered",
        "reason": "call",
    }


def test_flow_result_publishes_queue_or_transfer() -> None:
    hub = EventHub()
    seen: list[CallEvent] = []
    hub.listen(seen.append)
    legs = CallLegEvents(hub, "node-a", lambda: 50.0)
    request = QueueRequest(queue="care", priority=7, reason="vip")
    queued = SessionResult(Outcome.QUEUED, "queued to care", ["q"], {}, queue_request=request)
    moved = SessionResult(Outcome.TRANSFERRED, "transfer", ["t"], {}, transfer_target="2000")
    legs.flow_result("c1", queued)
    legs.flow_result("c2", moved)
    legs.flow_result("c3", None)
    legs.flow_result("c4", SessionResult(Outcome.HANGUP, "done", ["bye"], {}))
    assert [(e.kind, e.call_id) for e in seen] == [
        ("call.queued", "c1"),
        ("call.transferred", "c2"),
    ]
    assert seen[0].payload == {"queue": "care", "priority": 7, "reason": "vip"}
    assert seen[1].payload == {"target": "2000", "target_kind": "number"}
    assert seen[0].time == 50.0


def test_leg_events_wire_form() -> None:
    hub = EventHub()
    seen: list[CallEvent] = []
    hub.listen(seen.append)
    legs = CallLegEvents(hub, "node-a", lambda: 50.0)

    legs.started("c1", channel=Channel.SIP, caller="+15550100001", called="1000")
    legs.started("c2", channel=Channel.WEBRTC, caller="a", called="b", callback_of="c1", attempt=2)
    legs.answered("c1")
    legs.queued("c1", queue="care", priority=3, reason="vip")
    legs.bridged("c1", agent_id="agent-7")
    legs.transferred("c1", target="care", target_kind="queue", agent_id="agent-7")
    legs.recording("c1", path="/rec/c1.wav", format="wav", pauses=[])
    legs.ended("c1", reason="caller_hangup")
    legs.ended("c3", reason="rejected", status=486)

    # json.dumps keeps key order, so the order is part of the wire form.
    wire = [json.dumps(event.to_json()) for event in seen]
    header = '"node_id": "node-a", "time": 50.0'
    assert wire == [
        '{"kind": "call.started", "call_id": "c1", ' + header + ', "payload": '
        '{"channel": "sip", "caller": "+15550100001", "called": "1000"}}',
        '{"kind": "call.started", "call_id": "c2", ' + header + ', "payload": '
        '{"channel": "webrtc", "caller": "a", "called": "b", "callback_of": "c1", "attempt": 2}}',
        '{"kind": "call.answered", "call_id": "c1", ' + header + ', "payload": {}}',
        '{"kind": "call.queued", "call_id": "c1", ' + header + ', "payload": '
        '{"queue": "care", "priority": 3, "reason": "vip"}}',
        '{"kind": "call.bridged", "call_id": "c1", ' + header + ', "payload": '
        '{"agent_id": "agent-7"}}',
        '{"kind": "call.transferred", "call_id": "c1", ' + header + ', "payload": '
        '{"target": "care", "target_kind": "queue", "agent_id": "agent-7"}}',
        '{"kind": "call.recording", "call_id": "c1", ' + header + ', "payload": '
        '{"path": "/rec/c1.wav", "format": "wav", "pauses": []}}',
        '{"kind": "call.ended", "call_id": "c1", ' + header + ', "payload": '
        '{"reason": "caller_hangup", "status": null}}',
        '{"kind": "call.ended", "call_id": "c3", ' + header + ', "payload": '
        '{"reason": "rejected", "status": 486}}',
    ]
    assert all(type(event.kind) is str for event in seen)


def test_listener_changes_apply_to_next_event() -> None:
    hub = EventHub()
    seen: list[str] = []
    removers: list[Callable[[], None]] = []

    def once(event: CallEvent) -> None:
        seen.append(f"once {event.kind}")
        removers[0]()
        hub.listen(lambda e: seen.append(f"late {e.kind}"))

    removers.append(hub.listen(once))
    hub.listen(lambda e: seen.append(f"always {e.kind}"))

    hub.publish(event("call.started"))
    assert seen == ["once call.started", "always call.started"]

    hub.publish(event("call.ended"))
    assert seen[2:] == ["always call.ended", "late call.ended"]
