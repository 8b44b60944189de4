"""Replaying a routing scenario on a virtual clock against the real ACD code.

The simulator owns one `Acd` node on a `VirtualClock`. Before each event it runs every timer
and lease expiry that falls due, in time order; after each event it runs one `step()`, so
offers appear at the moment the scenario makes them possible. It records the queue order and
positions at each `announce_positions` event, and every offer, answer and departure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from acd.clock import VirtualClock
from acd.events import AcdEvent, CallbackRequested, CallerLeft, CallerOffered
from acd.model import AgentState, Offer
from acd.scenario import Scenario, ScenarioError, ScenarioEvent
from acd.service import Acd
from acd.store.base import AcdStore

AGENT_STATES = {
    "available": AgentState.AVAILABLE,
    "away": AgentState.AWAY,
    "unavailable": AgentState.AWAY,
    "paused": AgentState.AWAY,
}


@dataclass(slots=True)
class SimResult:
    announcements: list[dict[str, Any]] = field(default_factory=list)
    offers: list[dict[str, Any]] = field(default_factory=list)
    answers: list[dict[str, Any]] = field(default_factory=list)
    left: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "announcements": self.announcements,
            "offers": self.offers,
            "answers": self.answers,
            "left": self.left,
        }


class Simulator:
    def __init__(self, scenario: Scenario, store: AcdStore, node_id: str = "sim") -> None:
        self.scenario = scenario
        self.clock = VirtualClock(0.0)
        self.acd = Acd(store, self.clock, scenario.settings, node_id=node_id)
        self.result = SimResult()
        self._offers: dict[str, Offer] = {}
        self._setup_agents = {agent.agent_id: agent for agent in scenario.agents}
        self.acd.events.listen(self._on_event)

    def _on_event(self, event: AcdEvent) -> None:
        if isinstance(event, CallerOffered | CallbackRequested):
            offer = event.offer
            self._offers[offer.agent_id] = offer
            self.result.offers.append(
                {
                    "t": event.at,
                    "caller": offer.call_id,
                    "agent": offer.agent_id,
                    "queue": offer.queue,
                    "kind": offer.kind.value,
                }
            )
        elif isinstance(event, CallerLeft):
            self.result.left.append(
                {
                    "t": event.at,
                    "caller": event.call_id,
                    "queue": event.queue,
                    "reason": event.reason,
                    "overflow_target": event.overflow_target,
                }
            )

    async def run(self) -> SimResult:
        await self._load_setup()
        for event in self.scenario.events:
            await self._run_until(event.t)
            await self._apply(event)
            await self.acd.step()
        if self.scenario.run_until_s is not None:
            await self._run_until(self.scenario.run_until_s)
        return self.result

    async def _load_setup(self) -> None:
        for caller in sorted(self.scenario.callers, key=lambda c: -c.wait_s):
            await self.acd.enqueue(
                caller.caller,
                caller.queue,
                caller.priority,
                caller.skills,
                joined_at=-caller.wait_s,
            )
        for agent in self.scenario.agents:
            state = self._state(agent.state, "setup.agents")
            await self.acd.login(
                agent.agent_id,
                agent.queues,
                agent.skills,
                state,
                "" if state is AgentState.AVAILABLE else "not_ready",
            )
        await self.acd.step()

    async def _run_until(self, until: float) -> None:
        while True:
            due = await self.acd.next_due()
            if due is None or due > until:
                break
            self.clock.advance_to(max(due, self.clock.now()))
            await self.acd.step()
        self.clock.advance_to(max(until, self.clock.now()))

    def _state(self, name: str, where: str) -> AgentState:
        try:
            return AGENT_STATES[name]
        except KeyError:
            raise ScenarioError(
                f"{where}: unknown agent state {name!r}; expected one of {sorted(AGENT_STATES)}"
            ) from None

    def _queue_of(self, fields: Mapping[str, Any]) -> str:
        if "queue" in fields:
            return str(fields["queue"])
        if len(self.scenario.settings.queues) == 1:
            return next(iter(self.scenario.settings.queues))
        raise ScenarioError("join without 'queue' in a scenario with several queues")

    async def _apply(self, event: ScenarioEvent) -> None:
        fields = event.fields
        op = event.op
        acd = self.acd
        if op in ("join", "rejoin"):
            context = (
                {"system_entry_t": str(fields["system_entry_t"])}
                if "system_entry_t" in fields
                else {}
            )
            skills = fields.get("skills") or {}
            await acd.enqueue(
                str(fields["caller"]),
                self._queue_of(fields),
                int(fields.get("priority", 0)),
                {str(k): int(v) for k, v in dict(skills).items()},
                context,
                reason=str(fields.get("reason", "priority")),
                position=None if fields.get("position") is None else int(fields["position"]),
            )
        elif op in ("leave", "hangup"):
            await acd.leave(str(fields["caller"]), str(fields.get("reason", "hangup")))
        elif op == "priority_change":
            await acd.update_priority(
                str(fields["caller"]),
                int(fields["priority"]),
                str(fields.get("reason", "priority")),
            )
        elif op == "callback":
            await acd.request_callback(str(fields["caller"]), {})
        elif op == "announce_positions":
            await self._announce(event.t)
        else:
            await self._apply_agent(op, str(fields["agent"]), fields)

    async def _apply_agent(self, op: str, agent_id: str, fields: Mapping[str, Any]) -> None:
        acd = self.acd
        if op in ("agent_login", "agent_available", "agent_state"):
            wanted = (
                "available" if op == "agent_available" else str(fields.get("state", "available"))
            )
            state = self._state(wanted, op)
            reason = str(fields.get("reason", "")) or (
                "" if state is AgentState.AVAILABLE else "not_ready"
            )
            if await acd.store.get_agent(agent_id) is None:
                setup = self._setup_agents.get(agent_id)
                queues = tuple(
                    fields.get(
                        "queues", setup.queues if setup else tuple(self.scenario.settings.queues)
                    )
                )
                skills = dict(fields.get("skills", setup.skills if setup else {}))
                await acd.login(agent_id, queues, skills, state, reason)
            else:
                await acd.set_state(agent_id, state, reason)
        elif op == "agent_logout":
            await acd.logout(agent_id)
        elif op in ("agent_answer", "agent_decline"):
            offer = self._offers.pop(agent_id, None)
            if offer is None:
                raise ScenarioError(f"{op}: agent {agent_id} has no offer")
            if op == "agent_answer":
                if await acd.answer_offer(agent_id, offer.entry_id):
                    self.result.answers.append(
                        {"t": self.clock.now(), "caller": offer.call_id, "agent": agent_id}
                    )
            else:
                await acd.decline_offer(agent_id, offer.entry_id)
        elif op == "agent_hangup":
            await acd.hangup(agent_id)

    async def _announce(self, at: float) -> None:
        queues: dict[str, list[str]] = {}
        positions: dict[str, dict[str, Any]] = {}
        for name in self.scenario.settings.queues:
            entries = await self.acd.store.queue_entries(name)
            queues[name] = [entry.call_id for entry in entries]
            for entry in entries:
                info = await self.acd.announce(entry.call_id)
                positions[entry.call_id] = {
                    "queue": name,
                    "position": info.position,
                    "eta_s": info.eta_s,
                    "jumped_ahead": info.jumped_ahead,
                }
        self.result.announcements.append({"t": at, "queues": queues, "positions": positions})
