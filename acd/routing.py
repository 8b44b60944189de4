"""Matching waiting callers to free agents, without I/O.

`plan_offers` repeats one step until nothing matches: for every queue, find its first caller
that some free agent can serve (the head, unless no free agent has the skills the head needs);
among those candidates take the best by the cross-queue rule; give it to the agent chosen by
its queue's strategy. Because only these per-queue candidates are compared, a caller inserted
at position 1 is simply the new candidate of its queue and never stalls the other queues.

The plan is a proposal. The store commits each offer atomically (`try_offer`) and refuses
one whose caller or agent changed in the meantime; the dispatcher then plans again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from acd.model import AcdSettings, Agent, CrossQueueRule, Entry, Strategy, time_key


@dataclass(frozen=True, slots=True)
class Match:
    entry: Entry
    agent: Agent


@dataclass(slots=True)
class Plan:
    matches: list[Match]
    round_robin_cursors: dict[str, str]


def _eligible(
    entry: Entry,
    free: Sequence[Agent],
    matched: set[str],
    able: dict[tuple[str, frozenset[tuple[str, int]]], list[Agent]],
) -> list[Agent]:
    """Return the free agents that may get `entry`, preferring those who did not miss it.

    `matched` contains the ids of agents already given a caller in this plan. `able` keeps, per
    queue and required skills, the agents that could serve such an entry when last asked, so
    callers with the same needs are not tested against every free agent again.
    """
    needs = (entry.queue, frozenset(entry.skills.items()))
    known = able.get(needs)
    if known is None:
        known = [a for a in free if a.agent_id not in matched and a.can_serve(entry)]
    else:
        known = [a for a in known if a.agent_id not in matched]
    able[needs] = known
    return _fresh_first(entry, known)


def _fresh_first(entry: Entry, able: list[Agent]) -> list[Agent]:
    fresh = [agent for agent in able if agent.agent_id not in entry.missed_by]
    return fresh or able


def eligible_agents(entry: Entry, free: Sequence[Agent]) -> list[Agent]:
    """Return the agents of `free` that `plan_offers` chooses from when `entry` is the only
    caller: those that can serve it, and among them only those that did not miss it, if any."""
    return _fresh_first(entry, [agent for agent in free if agent.can_serve(entry)])


def _cross_queue_rank(entry: Entry, settings: AcdSettings) -> tuple[int, str]:
    if settings.cross_queue_rule is CrossQueueRule.LONGEST_WAITING_HEAD:
        return (time_key(entry.joined_at), entry.entry_id)
    weight = settings.queue(entry.queue).weight
    weight_credit = time_key(settings.jump.credit_s(weight)) if weight > 0 else 0
    return (entry.key - weight_credit, entry.entry_id)


def choose_agent(
    strategy: Strategy, entry: Entry, agents: Sequence[Agent], cursor: str | None
) -> Agent:
    """Return the agent that `strategy` picks for `entry` among `agents` (not empty)."""
    if strategy is Strategy.ROUND_ROBIN:
        ordered = sorted(agents, key=lambda a: a.agent_id)
        if cursor is not None:
            for agent in ordered:
                if agent.agent_id > cursor:
                    return agent
        return ordered[0]
    if strategy is Strategy.FEWEST_CALLS:
        return min(agents, key=lambda a: (a.calls, a.idle_since, a.agent_id))
    if strategy is Strategy.SKILLS_WEIGHTED:
        return min(
            agents,
            key=lambda a: (
                -sum(a.skills.get(name, 0) for name in entry.skills),
                a.idle_since,
                a.agent_id,
            ),
        )
    return min(agents, key=lambda a: (a.idle_since, a.agent_id))


def plan_offers(
    free_agents: Sequence[Agent],
    waiting: Mapping[str, Sequence[Entry]],
    settings: AcdSettings,
    cursors: Mapping[str, str],
) -> Plan:
    """Plan offers for `free_agents` from `waiting` (each queue's waiting callers in order)."""
    free = list(free_agents)
    taken: set[str] = set()
    matched: set[str] = set()
    able: dict[tuple[str, frozenset[tuple[str, int]]], list[Agent]] = {}
    new_cursors: dict[str, str] = {}
    matches: list[Match] = []
    while len(matched) < len(free):
        best: tuple[tuple[int, str], Entry, list[Agent]] | None = None
        for entries in waiting.values():
            for entry in entries:
                if entry.entry_id in taken:
                    continue
                eligible = _eligible(entry, free, matched, able)
                if not eligible:
                    continue
                rank = _cross_queue_rank(entry, settings)
                if best is None or rank < best[0]:
                    best = (rank, entry, eligible)
                break
        if best is None:
            break
        _, entry, eligible = best
        queue = settings.queue(entry.queue)
        cursor = new_cursors.get(entry.queue, cursors.get(entry.queue))
        agent = choose_agent(queue.strategy, entry, eligible, cursor)
        if queue.strategy is Strategy.ROUND_ROBIN:
            new_cursors[entry.queue] = agent.agent_id
        matches.append(Match(entry=entry, agent=agent))
        taken.add(entry.entry_id)
        matched.add(agent.agent_id)
    return Plan(matches=matches, round_robin_cursors=new_cursors)
