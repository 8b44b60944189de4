"""The in-memory store: the embedded default for a single node.

Every method runs without awaiting in between, so each is atomic on the event loop. Records
are copied in and out so a caller can never change the store's state by accident.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import copy
import dataclasses
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from typing import TypeVar

from acd.model import Agent, AgentState, Entry, EntryStatus, JumpSettings, Strategy, time_key
from acd.ordering import Placement, Slot, desired_key, plan_insert
from acd.routing import choose_agent, eligible_agents
from acd.store.base import (
    HANDLE_TIMES_KEPT,
    DispatchView,
    DuplicateCall,
    Inserted,
    Offered,
    OfferRequest,
    OfferRule,
    QueueFull,
    ReapResult,
    Released,
    Removed,
)

BRIDGED_KEPT = 100_000
_Record = TypeVar("_Record", Entry, Agent)


class MemoryStore:
    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}
        self._order: dict[str, list[tuple[int, str]]] = {}
        self._calls: dict[str, str] = {}
        self._leases: dict[str, float] = {}
        self._bridged: OrderedDict[str, str] = OrderedDict()
        self._agents: dict[str, Agent] = {}
        self._nodes: dict[str, float] = {}
        self._names: dict[str, str] = {}
        self._handle_times: dict[str, deque[float]] = {}
        self._cursors: dict[str, str] = {}
        self._changed = asyncio.Event()

    # --- callers ---

    def _slots(self, queue: str, exclude: str | None = None) -> list[Slot]:
        slots = []
        for key, entry_id in self._order.get(queue, []):
            if entry_id == exclude:
                continue
            entry = self._entries[entry_id]
            slots.append(
                Slot(entry_id, key, time_key(entry.joined_at), entry.passes, entry.priority)
            )
        return slots

    def _place(self, entry: Entry, placement: Placement) -> Inserted:
        entry.key = placement.key
        bisect.insort(self._order.setdefault(entry.queue, []), (entry.key, entry.entry_id))
        for entry_id in placement.passed:
            self._entries[entry_id].passes += 1
        for entry_id in placement.overtaken:
            self._entries[entry_id].overtaken += 1
        self._changed.set()
        return Inserted(
            entry=_copy(entry),
            position=self._position(entry),
            passed=placement.passed,
            overtaken=placement.overtaken,
        )

    async def add_entry(
        self,
        entry: Entry,
        jump: JumpSettings,
        position: int | None = None,
        max_length: int | None = None,
    ) -> Inserted:
        if entry.call_id in self._calls:
            raise DuplicateCall(f"call {entry.call_id} is already queued")
        order = self._order.get(entry.queue, [])
        if max_length is not None and len(order) >= max_length:
            raise QueueFull(f"queue {entry.queue} is full ({len(order)} callers)")
        entry = _copy(entry)
        entry.status = EntryStatus.WAITING
        entry.passes = 0
        entry.overtaken = 0
        slots = self._slots(entry.queue)
        wanted = desired_key(entry.joined_at, entry.priority, jump, slots, position)
        placement = plan_insert(
            slots,
            entry.entry_id,
            time_key(entry.joined_at),
            wanted,
            jump.max_passes,
            priority=entry.priority if position is None else None,
        )
        self._entries[entry.entry_id] = entry
        self._calls[entry.call_id] = entry.entry_id
        return self._place(entry, placement)

    async def add_entry_and_view(
        self,
        entry: Entry,
        jump: JumpSettings,
        position: int | None,
        max_length: int | None,
        node_id: str,
        now: float,
        extra: int,
    ) -> tuple[Inserted, DispatchView]:
        inserted = await self.add_entry(entry, jump, position, max_length)
        return inserted, await self.dispatch_view(node_id, now, extra)

    async def add_entry_and_offer(
        self,
        entry: Entry,
        jump: JumpSettings,
        position: int | None,
        max_length: int | None,
        node_id: str,
        now: float,
        extra: int,
        rule: OfferRule,
    ) -> tuple[Inserted, DispatchView, Offered | None]:
        inserted, view = await self.add_entry_and_view(
            entry, jump, position, max_length, node_id, now, extra
        )
        queue = inserted.entry.queue
        if set(view.waiting) != {queue} or self._has_waiting(queue, 2):
            return inserted, view, None
        eligible = eligible_agents(inserted.entry, view.agents)
        if not eligible:
            return inserted, DispatchView(), None
        agent = choose_agent(rule.strategy, inserted.entry, eligible, view.cursors.get(queue))
        offered = await self.try_offer(
            inserted.entry.entry_id, agent.agent_id, now, rule.lease_until
        )
        if offered is None:
            return inserted, view, None
        if rule.strategy is Strategy.ROUND_ROBIN:
            self._cursors[queue] = agent.agent_id
        return inserted, DispatchView(), Offered(offered, agent)

    def _has_waiting(self, queue: str, count: int) -> bool:
        """Return True when `queue` has at least `count` WAITING entries."""
        found = 0
        for _, entry_id in self._order.get(queue, []):
            if self._entries[entry_id].status is EntryStatus.WAITING:
                found += 1
                if found >= count:
                    return True
        return False

    async def reprioritize(
        self, entry_id: str, priority: int, jump: JumpSettings
    ) -> Inserted | None:
        entry = self._entries.get(entry_id)
        if entry is None:
            return None
        slots = self._slots(entry.queue, exclude=entry_id)
        wanted = desired_key(entry.joined_at, priority, jump)
        placement = plan_insert(
            slots,
            entry_id,
            time_key(entry.joined_at),
            wanted,
            jump.max_passes,
            entry.key,
            priority,
        )
        self._order[entry.queue].remove((entry.key, entry_id))
        entry.priority = priority
        return self._place(entry, placement)

    def _position(self, entry: Entry) -> int:
        return bisect.bisect_left(self._order[entry.queue], entry.sort_key()) + 1

    def _take_out(self, entry: Entry) -> None:
        self._order[entry.queue].remove(entry.sort_key())
        self._leases.pop(entry.entry_id, None)
        self._calls.pop(entry.call_id, None)
        del self._entries[entry.entry_id]

    async def remove_entry(self, entry_id: str) -> Removed | None:
        entry = self._entries.get(entry_id)
        if entry is None:
            return None
        freed = None
        if entry.status is EntryStatus.OFFERED and entry.agent_id is not None:
            agent = self._agents.get(entry.agent_id)
            if agent is not None and agent.entry_id == entry_id:
                agent.state = AgentState.AVAILABLE
                agent.entry_id = None
                freed = _copy(agent)
        self._take_out(entry)
        entry.status = EntryStatus.LEFT
        self._changed.set()
        return Removed(entry=entry, freed_agent=freed)

    async def get_entry(self, entry_id: str) -> Entry | None:
        entry = self._entries.get(entry_id)
        return None if entry is None else _copy(entry)

    async def entry_id_for_call(self, call_id: str) -> str | None:
        return self._calls.get(call_id)

    async def position(self, entry_id: str) -> int | None:
        entry = self._entries.get(entry_id)
        return None if entry is None else self._position(entry)

    async def queue_entries(self, queue: str, limit: int | None = None) -> list[Entry]:
        order = self._order.get(queue, [])
        chosen = order if limit is None else order[:limit]
        return [_copy(self._entries[entry_id]) for _, entry_id in chosen]

    async def waiting(self, queue: str, limit: int) -> list[Entry]:
        found: list[Entry] = []
        for _, entry_id in self._order.get(queue, []):
            if len(found) >= limit:
                break
            entry = self._entries[entry_id]
            if entry.status is EntryStatus.WAITING:
                found.append(_copy(entry))
        return found

    async def queue_length(self, queue: str) -> int:
        return len(self._order.get(queue, []))

    async def mark_announced(self, entry_id: str, position: int, overtaken: int) -> None:
        entry = self._entries.get(entry_id)
        if entry is not None:
            entry.announced_position = position
            entry.announced_overtaken = overtaken

    async def set_callback(self, entry_id: str, context: Mapping[str, str]) -> Entry | None:
        entry = self._entries.get(entry_id)
        if entry is None or entry.status is not EntryStatus.WAITING:
            return None
        entry.callback = True
        entry.owner_node = None
        entry.context.update(context)
        return _copy(entry)

    # --- agents ---

    async def put_agent(
        self, agent: Agent, keep: frozenset[AgentState] = frozenset()
    ) -> Agent | None:
        current = self._agents.get(agent.agent_id)
        if current is not None and current.state in keep:
            return _copy(current)
        self._agents[agent.agent_id] = _copy(agent)
        self._changed.set()
        return None

    async def get_agent(self, agent_id: str) -> Agent | None:
        agent = self._agents.get(agent_id)
        return None if agent is None else _copy(agent)

    async def agents(self, node_id: str | None = None) -> list[Agent]:
        return [
            _copy(agent)
            for agent in self._agents.values()
            if node_id is None or agent.node_id == node_id
        ]

    async def free_agents(self, node_id: str, now: float) -> list[Agent]:
        return [
            _copy(agent)
            for agent in self._agents.values()
            if agent.node_id == node_id and agent.is_free(now)
        ]

    async def dispatch_view(self, node_id: str, now: float, extra: int) -> DispatchView:
        free = await self.free_agents(node_id, now)
        calling = {
            queue
            for agent in free
            for queue in agent.queues
            if any(
                self._entries[entry_id].status is EntryStatus.WAITING
                for _, entry_id in self._order.get(queue, [])
            )
        }
        agents = [agent for agent in free if calling.intersection(agent.queues)]
        if not agents:
            return DispatchView()
        waiting = {
            queue: await self.waiting(queue, len(agents) + extra) for queue in sorted(calling)
        }
        return DispatchView(agents, waiting, await self.cursors(sorted(calling)))

    async def remove_agent(self, agent_id: str, now: float) -> tuple[Agent, Released | None] | None:
        agent = self._agents.get(agent_id)
        if agent is None:
            return None
        last = _copy(agent)
        released = None
        if agent.state is AgentState.OFFERED and agent.entry_id is not None:
            released = await self.release_offer(agent.entry_id, agent_id, False, 0)
        del self._agents[agent_id]
        if released is not None:
            released = dataclasses.replace(released, agent=None)
        return last, released

    async def update_agent(
        self, agent_id: str, expected: frozenset[AgentState], changes: Mapping[str, object]
    ) -> Agent | None:
        agent = self._agents.get(agent_id)
        if agent is None or agent.state not in expected:
            return None
        for name, value in changes.items():
            setattr(agent, name, value)
        self._changed.set()
        return _copy(agent)

    # --- offers ---

    async def try_offer(
        self, entry_id: str, agent_id: str, now: float, lease_until: float
    ) -> Entry | None:
        entry = self._entries.get(entry_id)
        agent = self._agents.get(agent_id)
        if entry is None or agent is None:
            return None
        if entry.status is not EntryStatus.WAITING or not agent.is_free(now):
            return None
        entry.status = EntryStatus.OFFERED
        entry.agent_id = agent_id
        entry.lease_until = lease_until
        self._leases[entry_id] = lease_until
        agent.state = AgentState.OFFERED
        agent.entry_id = entry_id
        return _copy(entry)

    async def try_offers(self, offers: Sequence[OfferRequest], now: float) -> list[Entry | None]:
        results: list[Entry | None] = []
        for offer in offers:
            agent = self._agents.get(offer.agent_id)
            if offer.node_id is not None and (agent is None or agent.node_id != offer.node_id):
                results.append(None)
                continue
            results.append(
                await self.try_offer(offer.entry_id, offer.agent_id, now, offer.lease_until)
            )
        return results

    async def claim_bridge(self, entry_id: str, agent_id: str, now: float) -> Entry | None:
        entry = self._entries.get(entry_id)
        agent = self._agents.get(agent_id)
        if entry is None or agent is None:
            return None
        if entry.status is not EntryStatus.OFFERED or entry.agent_id != agent_id:
            return None
        if agent.state is not AgentState.OFFERED or agent.entry_id != entry_id:
            return None
        self._take_out(entry)
        entry.status = EntryStatus.BRIDGED
        entry.lease_until = None
        self._bridged[entry_id] = agent_id
        while len(self._bridged) > BRIDGED_KEPT:
            self._bridged.popitem(last=False)
        agent.state = AgentState.ON_CALL
        agent.call_queue = entry.queue
        agent.call_started = now
        agent.missed_in_row = 0
        return entry

    async def release_offer(
        self, entry_id: str, agent_id: str, missed: bool, away_after: int
    ) -> Released | None:
        entry = self._entries.get(entry_id)
        if entry is None or entry.status is not EntryStatus.OFFERED:
            return None
        if entry.agent_id != agent_id:
            return None
        entry.status = EntryStatus.WAITING
        entry.agent_id = None
        entry.lease_until = None
        self._leases.pop(entry_id, None)
        if missed and agent_id not in entry.missed_by:
            entry.missed_by.append(agent_id)
        agent = self._agents.get(agent_id)
        old_state = AgentState.LOGGED_OUT
        if agent is not None and agent.entry_id == entry_id:
            old_state = agent.state
            agent.entry_id = None
            agent.state = AgentState.AVAILABLE
            if missed:
                agent.missed_offers += 1
                agent.missed_in_row += 1
                if away_after and agent.missed_in_row >= away_after:
                    agent.state = AgentState.AWAY
                    agent.away_reason = "missed_offers"
        self._changed.set()
        agent_copy = None if agent is None else _copy(agent)
        return Released(entry=_copy(entry), agent=agent_copy, old_agent_state=old_state)

    async def finish_call(self, agent_id: str, now: float, wrap_up_s: float) -> Agent | None:
        agent = self._agents.get(agent_id)
        if agent is None or agent.state is not AgentState.ON_CALL:
            return None
        agent.calls += 1
        agent.entry_id = None
        agent.wrap_until = now + wrap_up_s
        agent.idle_since = agent.wrap_until
        agent.state = AgentState.WRAP_UP if wrap_up_s > 0 else AgentState.AVAILABLE
        self._changed.set()
        return _copy(agent)

    async def end_call(
        self, agent_id: str, now: float, wrap_up_s: Mapping[str, float]
    ) -> Agent | None:
        agent = self._agents.get(agent_id)
        if agent is None or agent.state is not AgentState.ON_CALL:
            return None
        queue, started = agent.call_queue, agent.call_started
        wrap = wrap_up_s.get(queue, 0.0) if queue is not None else 0.0
        ended = await self.finish_call(agent_id, now, wrap)
        if queue is not None:
            await self.record_handle_time(queue, now - started)
        return ended

    async def reap(self, now: float, node_ttl_s: float, away_after: int) -> ReapResult:
        result = ReapResult()
        for entry_id, until in list(self._leases.items()):
            entry = self._entries.get(entry_id)
            if until > now or entry is None or entry.agent_id is None:
                continue
            released = await self.release_offer(entry_id, entry.agent_id, True, away_after)
            if released is not None:
                result.returned.append(released)
        dead = [node for node, seen in self._nodes.items() if seen < now - node_ttl_s]
        for node in dead:
            for entry in list(self._entries.values()):
                if entry.owner_node == node:
                    removed = await self.remove_entry(entry.entry_id)
                    if removed is not None:
                        result.abandoned.append(removed)
            for agent in list(self._agents.values()):
                if agent.node_id == node:
                    outcome = await self.remove_agent(agent.agent_id, now)
                    if outcome is not None:
                        result.logged_out.append(outcome[0])
                        if outcome[1] is not None:
                            result.returned.append(outcome[1])
            del self._nodes[node]
            for name in [name for name, holder in self._names.items() if holder == node]:
                del self._names[name]
        return result

    async def next_lease_expiry(self) -> float | None:
        return min(self._leases.values(), default=None)

    # --- nodes, statistics, wake-ups ---

    async def heartbeat(self, node_id: str, now: float) -> None:
        self._nodes[node_id] = now

    async def forget_node(self, node_id: str) -> bool:
        self._nodes.pop(node_id, None)
        return True

    async def claim_name(
        self, name: str, node_id: str, now: float, node_ttl_s: float
    ) -> tuple[str, float] | None:
        holder = self._names.get(name)
        if holder is not None and holder != node_id:
            seen = self._nodes.get(holder)
            if seen is not None and seen >= now - node_ttl_s:
                return holder, seen
        self._names[name] = node_id
        self._nodes[node_id] = now
        return None

    async def release_name(self, name: str, node_id: str) -> None:
        if self._names.get(name) == node_id:
            del self._names[name]

    async def record_handle_time(self, queue: str, seconds: float) -> None:
        kept = self._handle_times.setdefault(queue, deque(maxlen=HANDLE_TIMES_KEPT))
        kept.append(seconds)

    async def handle_times(self, queue: str) -> list[float]:
        return list(self._handle_times.get(queue, ()))

    async def cursors(self, queues: Sequence[str]) -> dict[str, str]:
        return {queue: self._cursors[queue] for queue in queues if queue in self._cursors}

    async def set_cursors(self, cursors: Mapping[str, str]) -> None:
        self._cursors.update(cursors)

    async def wait_changed(self, max_wait_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), max_wait_s)
        self._changed.clear()

    async def close(self) -> None:
        return None


def _copy(record: _Record) -> _Record:
    return copy.deepcopy(record)
