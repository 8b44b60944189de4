"""A node's event sources wired to one hub: the real IVR engine and the real ACD."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from acd.clock import VirtualClock
from acd.model import AcdSettings, QueueSettings
from acd.service import Acd
from acd.store.memory import MemoryStore
from ivr.engine import IvrSession, SessionResult
from ivr.loader import parse_flow
from ivr.prompts import SilentSynthesizer
from ivr.textchannel import TextChannel, scripted
from voxgate.callevents import CallLegEvents, EventHub, attach_acd, ivr_event_callback
from voxgate.queueing import AcdQueueService

NODE_ID = "node-a"
START_TIME = 1_767_225_600.0  # 2026-01-01T00:00:00Z
CALLER = "+15550100042"
CALLED = "1000"

FLOW = """
flow: care
intents:
  refund: {examples: {en: [I want a refund, give me my money back]}}
  billing: {examples: {en: [question about my bill, invoice]}}
nlu: {engine: tfidf}
steps:
  ask:
    type: gather
    prompt: How can I help?
    speech: {intents: [refund, billing]}
    on: {refund: to_queue, billing: to_queue, no_input: bye, no_match: bye}
  to_queue:
    type: queue
    queue: care
    priority: 2
    rules:
      - {if: {var: intent, eq: refund}, priority: 6, reason: refund}
  bye: {type: hangup}
"""


@dataclass
class Node:
    hub: EventHub
    clock: VirtualClock
    acd: Acd
    legs: CallLegEvents

    async def run_ivr(self, call_id: str, turns: Sequence[str | None]) -> SessionResult:
        flow, _ = parse_flow(FLOW, "care.yaml")
        channel = TextChannel(scripted(turns), call_id=call_id, caller=CALLER, called=CALLED)
        session = IvrSession(
            flow,
            channel,
            SilentSynthesizer(),
            events=ivr_event_callback(self.hub, NODE_ID, self.clock.now),
            queue=AcdQueueService(self.acd),
            clock=channel.clock,
        )
        return await session.run()


def make_node(hub: EventHub) -> Node:
    clock = VirtualClock(START_TIME)
    queue = QueueSettings(name="care", announce_first_s=None, announce_every_s=None)
    acd = Acd(MemoryStore(), clock, AcdSettings(queues={"care": queue}), node_id=NODE_ID)
    attach_acd(acd.events, hub, NODE_ID)
    return Node(hub, clock, acd, CallLegEvents(hub, NODE_ID, clock.now))
