"""The IVR's queue adapter, the waiting caller's audio, and the agent presence mirror."""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from acd.clock import VirtualClock
from acd.events import AgentStateChanged
from acd.model import AcdSettings, QueueSettings
from acd.model import AgentState as AcdState
from acd.service import Acd
from acd.store.memory import MemoryStore
from ivr.model import QueueStep
from ivr.registry import FlowRegistry
from ivr.services import QueueError, QueueRequest
from media.tts import EspeakSynthesizer
from signaling.webrtc.agents import AgentPresence
from signaling.webrtc.call import WebRtcCall
from signaling.webrtc.config import WebRtcConfig
from signaling.webrtc.protocol import AgentState, Error, Message, Presence, TransferKind
from signaling.webrtc.server import WebRtcServer
from voxgate.agentmirror import AgentAccount
from voxgate.contact import ContactCenter
from voxgate.queueing import (
    HOLD_NOTES_HZ,
    HOLD_RATE,
    AcdQueueService,
    announcement_text,
    hold_tone,
    warn_unknown_queues,
)

FLOWS_DIR = Path(__file__).resolve().parents[2] / "config" / "flows"


def make_acd(max_length: int | None = None) -> Acd:
    settings = AcdSettings(queues={"general": QueueSettings(name="general", max_length=max_length)})
    return Acd(MemoryStore(), VirtualClock(1000.0), settings, node_id="test-node")


async def test_enqueue_returns_position_and_keeps_ticket() -> None:
    service = AcdQueueService(make_acd())
    placement = await service.enqueue("c1", QueueRequest(queue="general", priority=0))
    assert placement.position == 1
    placed = service.take_ticket("c1")
    assert placed is not None
    assert placed[0].queue == "general"
    assert placed[1] == 1000.0
    assert service.take_ticket("c1") is None


async def test_has_ticket_until_taken() -> None:
    service = AcdQueueService(make_acd())
    assert not service.has_ticket("c1")
    await service.enqueue("c1", QueueRequest(queue="general", priority=0))
    assert service.has_ticket("c1")
    assert service.take_ticket("c1") is not None
    assert not service.has_ticket("c1")


async def test_enqueue_requires_node_skill() -> None:
    acd = make_acd()
    service = AcdQueueService(acd, "node:test-node")
    await service.enqueue("c1", QueueRequest(queue="general", priority=0, skills=("en",)))
    placed = service.take_ticket("c1")
    assert placed is not None
    assert placed[0].entry_id is not None
    entry = await acd.store.get_entry(placed[0].entry_id)
    assert entry is not None
    assert entry.skills == {"en": 1, "node:test-node": 1}


async def test_enqueue_unknown_queue_raises_queue_error() -> None:
    service = AcdQueueService(make_acd())
    with pytest.raises(QueueError, match="sales"):
        await service.enqueue("c1", QueueRequest(queue="sales", priority=0))
    assert service.take_ticket("c1") is None


async def test_enqueue_full_queue_raises_queue_error() -> None:
    service = AcdQueueService(make_acd(max_length=1))
    await service.enqueue("c1", QueueRequest(queue="general", priority=0))
    with pytest.raises(QueueError, match="full"):
        await service.enqueue("c2", QueueRequest(queue="general", priority=0))


async def test_enqueue_priority_caller_goes_first() -> None:
    service = AcdQueueService(make_acd())
    await service.enqueue("c1", QueueRequest(queue="general", priority=0))
    placement = await service.enqueue("c2", QueueRequest(queue="general", priority=7, reason="vip"))
    assert placement.position == 1


@pytest.mark.parametrize(
    ("position", "eta_s", "expected"),
    [
        (3, None, "You are number 3 in the queue."),
        (1, 50.0, "You are number 1 in the queue. The expected wait is about 1 minute."),
        (2, 10.0, "You are number 2 in the queue. The expected wait is about 1 minute."),
        (4, 300.0, "You are number 4 in the queue. The expected wait is about 5 minutes."),
    ],
)
def test_announcement_text(position: int, eta_s: float | None, expected: str) -> None:
    assert announcement_text(position, eta_s) == expected


def test_hold_tone_plays_its_notes_quietly() -> None:
    audio = hold_tone()
    samples = np.frombuffer(audio.pcm, dtype="<i2").astype(np.float64)
    assert audio.sample_rate == HOLD_RATE
    assert np.max(np.abs(samples)) < 0.1 * 32767
    note = samples[: HOLD_RATE // 4]
    spectrum = np.abs(np.fft.rfft(note))
    peak = np.fft.rfftfreq(note.size, 1 / HOLD_RATE)[int(np.argmax(spectrum))]
    assert abs(peak - HOLD_NOTES_HZ[0]) < 10


class IdleHandler:
    async def on_call(self, call: WebRtcCall) -> None:
        return

    async def on_transfer(self, call: WebRtcCall, kind: TransferKind, target: str) -> bool:
        return False

    def on_call_state(self, call: WebRtcCall) -> None:
        return

    def on_agent_state(self, presence: Presence) -> None:
        return


@pytest.fixture
async def center() -> AsyncIterator[tuple[ContactCenter, WebRtcServer]]:
    acd = make_acd()
    contact = ContactCenter(
        acd,
        EspeakSynthesizer(),
        accounts={"ann": AgentAccount(("general",), {"en": 3})},
        hold_music={},
        default_hold=hold_tone(),
    )
    server = WebRtcServer(
        WebRtcConfig(allowed_origins=("http://127.0.0.1",), token_secret=b"s" * 32),
        IdleHandler(),
    )
    contact.webrtc = server
    contact.start()
    try:
        yield contact, server
    finally:
        await contact.close()


async def mirrored_state(
    contact: ContactCenter, expected: AcdState | None, timeout_s: float = 5.0
) -> AcdState | None:
    """Wait until the ACD's state of "ann" is `expected` (None: logged out); return the last."""
    state: AcdState | None = None
    async with asyncio.timeout(timeout_s):
        while True:
            agent = await contact.acd.store.get_agent("ann")
            state = agent.state if agent is not None else None
            if state is expected:
                return state
            await asyncio.sleep(0.01)


def change(server: WebRtcServer, contact: ContactCenter, state: AgentState) -> None:
    agent = server.agents.setdefault("ann", AgentPresence(user="ann"))
    agent.change(state, "test", 0.0)
    contact.on_agent_state(agent.presence())


async def test_presence_mirror_logs_agent_in_and_out(
    center: tuple[ContactCenter, WebRtcServer],
) -> None:
    contact, server = center
    change(server, contact, AgentState.AWAY)
    assert await mirrored_state(contact, AcdState.AWAY) is AcdState.AWAY
    agent = await contact.acd.store.get_agent("ann")
    assert agent is not None
    assert agent.queues == ("general",)
    assert agent.skills == {"en": 3, "node:test-node": 1}

    change(server, contact, AgentState.AVAILABLE)
    assert await mirrored_state(contact, AcdState.AVAILABLE) is AcdState.AVAILABLE

    change(server, contact, AgentState.WRAP_UP)
    assert await mirrored_state(contact, AcdState.AWAY) is AcdState.AWAY
    agent = await contact.acd.store.get_agent("ann")
    assert agent is not None
    assert agent.away_reason == "wrap_up"

    change(server, contact, AgentState.OFFLINE)
    assert await mirrored_state(contact, None) is None


async def test_presence_of_unknown_agent_is_not_routed(
    center: tuple[ContactCenter, WebRtcServer],
) -> None:
    contact, server = center
    stranger = server.agents.setdefault("bob", AgentPresence(user="bob"))
    stranger.change(AgentState.AVAILABLE, "test", 0.0)
    contact.on_agent_state(stranger.presence())
    change(server, contact, AgentState.AVAILABLE)
    await mirrored_state(contact, AcdState.AVAILABLE)
    assert await contact.acd.store.get_agent("bob") is None


class RecordingServer(WebRtcServer):
    """A signaling edge without sockets that keeps what it would send to each page."""

    def __init__(self) -> None:
        super().__init__(
            WebRtcConfig(allowed_origins=("http://127.0.0.1",), token_secret=b"s" * 32),
            IdleHandler(),
        )
        self.sent: list[tuple[str, Message]] = []

    def send_to(self, user: str, message: Message) -> bool:
        self.sent.append((user, message))
        return True


@pytest.fixture
async def two_nodes() -> AsyncIterator[tuple[ContactCenter, ContactCenter]]:
    """Two contact centers, on nodes "node-a" and "node-b", sharing one store."""
    store = MemoryStore()
    settings = AcdSettings(queues={"general": QueueSettings(name="general")})
    centers = []
    for node in ("node-a", "node-b"):
        acd = Acd(store, VirtualClock(1000.0), settings, node_id=node)
        contact = ContactCenter(
            acd,
            EspeakSynthesizer(),
            accounts={"ann": AgentAccount(("general",))},
            hold_music={},
            default_hold=hold_tone(),
        )
        contact.webrtc = RecordingServer()
        centers.append(contact)
    try:
        yield centers[0], centers[1]
    finally:
        for contact in centers:
            await contact.close()


async def synced(contact: ContactCenter, state: AgentState) -> None:
    """Set ann's page on `contact` to `state` and mirror it into the ACD at once."""
    server = contact.webrtc
    assert server is not None
    agent = server.agents.setdefault("ann", AgentPresence(user="ann"))
    agent.change(state, "test", 0.0)
    await contact._sync_agent("ann")


async def test_newest_page_takes_agent_over(
    two_nodes: tuple[ContactCenter, ContactCenter],
) -> None:
    node_a, node_b = two_nodes
    await synced(node_a, AgentState.AVAILABLE)

    await synced(node_b, AgentState.AWAY)

    agent = await node_a.acd.store.get_agent("ann")
    assert agent is not None
    assert agent.node_id == "node-b"
    assert agent.state is AcdState.AWAY
    assert agent.skills == {"node:node-b": 1}

    await synced(node_a, AgentState.OFFLINE)

    agent = await node_a.acd.store.get_agent("ann")
    assert agent is not None
    assert agent.node_id == "node-b"
    assert agent.state is AcdState.AWAY


async def test_page_losing_agent_goes_offline(
    two_nodes: tuple[ContactCenter, ContactCenter],
) -> None:
    node_a, node_b = two_nodes
    await synced(node_a, AgentState.AVAILABLE)
    await synced(node_b, AgentState.AWAY)
    server_a = node_a.webrtc
    assert server_a is not None

    node_a.on_relayed(AgentStateChanged(1000.0, "ann", AcdState.LOGGED_OUT, AcdState.AWAY, "away"))
    moved = [task for task in node_a._tasks if task.get_name() == "agent-moved-ann"]
    assert len(moved) == 1
    await asyncio.wait_for(moved[0], 5.0)

    assert server_a.agents["ann"].state is AgentState.OFFLINE
    assert server_a.agents["ann"].reason == "moved to another node"
    await node_a._sync_agent("ann")
    agent = await node_a.acd.store.get_agent("ann")
    assert agent is not None
    assert agent.node_id == "node-b"
    # An agent's login on another node is no queue event.
    counted = node_a.cluster_queue_counters()
    assert all(number == 0 for counts in counted.values() for number in counts.values())


async def test_agent_on_call_elsewhere_not_taken_over(
    two_nodes: tuple[ContactCenter, ContactCenter],
) -> None:
    node_a, node_b = two_nodes
    await synced(node_a, AgentState.AVAILABLE)
    await node_a.acd.enqueue("c1", "general", skills={"node:node-a": 1})
    await node_a.acd.dispatch()
    offer = await node_a.acd.next_offer()
    assert await node_a.acd.answer_offer("ann", offer.entry_id)

    await synced(node_b, AgentState.AVAILABLE)

    server_b = node_b.webrtc
    assert isinstance(server_b, RecordingServer)
    assert server_b.agents["ann"].state is AgentState.AWAY
    assert server_b.agents["ann"].reason == "busy on another node"
    await node_b._sync_agent("ann")
    errors = [message for _, message in server_b.sent if isinstance(message, Error)]
    assert len(errors) == 1
    assert "busy with a call on another node" in errors[0].message
    agent = await node_a.acd.store.get_agent("ann")
    assert agent is not None
    assert agent.node_id == "node-a"
    assert agent.state is AcdState.ON_CALL

    await synced(node_b, AgentState.OFFLINE)

    agent = await node_a.acd.store.get_agent("ann")
    assert agent is not None
    assert agent.node_id == "node-a"
    assert agent.state is AcdState.ON_CALL


async def test_agent_ringing_elsewhere_not_taken_over(
    two_nodes: tuple[ContactCenter, ContactCenter],
) -> None:
    node_a, node_b = two_nodes
    await synced(node_a, AgentState.AVAILABLE)
    await node_a.acd.enqueue("c1", "general", skills={"node:node-a": 1})
    await node_a.acd.dispatch()
    await node_a.acd.next_offer()

    await synced(node_b, AgentState.AVAILABLE)

    server_b = node_b.webrtc
    assert isinstance(server_b, RecordingServer)
    assert server_b.agents["ann"].state is AgentState.AWAY
    assert server_b.agents["ann"].reason == "busy on another node"
    await node_b._sync_agent("ann")
    errors = [message for _, message in server_b.sent if isinstance(message, Error)]
    assert len(errors) == 1
    assert "busy with a call on another node" in errors[0].message
    agent = await node_a.acd.store.get_agent("ann")
    assert agent is not None
    assert agent.node_id == "node-a"
    assert agent.state is AcdState.OFFERED


def test_unknown_flow_queue_warned(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    shutil.copy(FLOWS_DIR / "contact_center.yaml", tmp_path / "contact_center.yaml")
    (tmp_path / "extra.yaml").write_text(
        "flow: extra\n"
        "steps:\n"
        "  to_sales: {type: queue, queue: sales, on_error: by_intent}\n"
        "  by_intent: {type: queue, queue: '{{ intent }}', on_error: bye}\n"
        "  bye: {type: hangup}\n"
    )
    registry = FlowRegistry(tmp_path)
    assert registry.errors == {}
    flows = [flow for flow in map(registry.get, registry.names) if flow is not None]
    shipped = ["general", "billing", "support", "refunds", "payments"]

    with caplog.at_level(logging.WARNING, logger="queues"):
        count = warn_unknown_queues(flows, shipped)

    assert count == 1
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1
    assert "flow extra, step to_sales: queue 'sales' is not defined" in warnings[0]


def test_flow_queues_without_settings_warned(caplog: pytest.LogCaptureFixture) -> None:
    registry = FlowRegistry(FLOWS_DIR)
    flow = registry.get("contact_center")
    assert flow is not None

    with caplog.at_level(logging.WARNING, logger="queues"):
        count = warn_unknown_queues([flow], [])

    queue_steps = [step for step in flow.steps.values() if isinstance(step, QueueStep)]
    assert count == len(queue_steps)
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == count
    assert any("flow contact_center, step tech_queue: queue 'support'" in m for m in messages)
