"""CDRs of calls that an agent transferred, built from real ACD events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.cdr.journey import NODE_ID, Node, make_node
from tests.cdr.test_cdr_recorder import queue_through_ivr
from voxgate.callevents import CallEvent, EventHub
from voxgate.cdr import Disposition
from voxgate.cdrstore import CdrConfig, CdrRecorder


@pytest.fixture
async def hub() -> EventHub:
    return EventHub()


@pytest.fixture
async def recorder(tmp_path: Path, hub: EventHub) -> AsyncIterator[CdrRecorder]:
    recorder = CdrRecorder(CdrConfig(path=tmp_path / "cdr.db", node_id=NODE_ID), hub)
    await recorder.start()
    yield recorder
    await recorder.close()


async def answer(node: Node, events: list[CallEvent], agent_id: str) -> None:
    """Log `agent_id` in, let the ACD offer it the waiting caller and answer."""
    await node.acd.login(agent_id, ["care"])
    assert await node.acd.dispatch() == 1
    offered = [e for e in events if e.kind == "acd.caller_offered"]
    assert offered
    assert offered[-1].payload["agent_id"] == agent_id
    assert await node.acd.answer_offer(agent_id, offered[-1].payload["entry_id"])


async def test_queue_transfer_row_names_next_agent(hub: EventHub, recorder: CdrRecorder) -> None:
    node = make_node(hub)
    events = await queue_through_ivr(node, "call-1")
    node.clock.advance(42)
    await answer(node, events, "agent-7")
    node.clock.advance(10)
    node.legs.transferred("call-1", target="care", target_kind="queue", agent_id="agent-7")
    await node.acd.hangup("agent-7")
    # The first agent is in wrap-up on a real node; here it leaves, so the next offer
    # can only go to agent-8.
    assert await node.acd.logout("agent-7")
    ticket = await node.acd.enqueue("call-1", "care", 6, reason="refund")
    assert ticket.queued
    node.clock.advance(20)
    await answer(node, events, "agent-8")
    node.clock.advance(30)
    node.legs.ended("call-1", reason="agent_hangup")
    await recorder.flush()

    row = await recorder.get("call-1")
    assert row is not None
    assert row.disposition is Disposition.COMPLETED
    assert row.agent_id == "agent-8"
    assert row.queue == "care"
    assert row.wait_s == 42 + 20
    assert row.talk_s == 10 + 30
    assert row.end_reason == "agent_hangup"


async def test_abandon_after_queue_transfer_completed(hub: EventHub, recorder: CdrRecorder) -> None:
    node = make_node(hub)
    events = await queue_through_ivr(node, "call-3")
    node.clock.advance(8)
    await answer(node, events, "agent-7")
    node.clock.advance(12)
    node.legs.transferred("call-3", target="care", target_kind="queue", agent_id="agent-7")
    await node.acd.hangup("agent-7")
    ticket = await node.acd.enqueue("call-3", "care", 6, reason="refund")
    assert ticket.queued
    node.clock.advance(25)
    assert await node.acd.leave("call-3", "hangup")
    node.legs.ended("call-3", reason="caller_hangup")
    await recorder.flush()

    row = await recorder.get("call-3")
    assert row is not None
    assert row.disposition is Disposition.COMPLETED
    assert row.agent_id == "agent-7"
    assert row.wait_s == 8 + 25
    assert row.talk_s == 12
    assert row.end_reason == "caller_hangup"


async def test_number_transfer_row_is_transferred(hub: EventHub, recorder: CdrRecorder) -> None:
    node = make_node(hub)
    events = await queue_through_ivr(node, "call-2")
    node.clock.advance(5)
    await answer(node, events, "agent-7")
    node.clock.advance(15)
    node.legs.transferred(
        "call-2", target="sip:2000@192.0.2.10", target_kind="number", agent_id="agent-7"
    )
    node.legs.ended("call-2", reason="transferred")
    await recorder.flush()

    row = await recorder.get("call-2")
    assert row is not None
    assert row.disposition is Disposition.TRANSFERRED
    assert row.agent_id == "agent-7"
    assert row.talk_s == 15
    assert row.end_reason == "transferred"
