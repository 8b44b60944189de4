"""`add_entry_and_offer`: the offer committed by the insert itself, on both stores.

The store may offer a new caller in its insert only when `plan_offers` on the node's dispatch
view would make exactly that offer. The property tests build each random case twice, read
the view and run `plan_offers` on one copy, and hold the other copy's one-step offer to it.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acd.clock import SystemClock
from acd.events import AcdEvent, AgentStateChanged, CallerJoined, CallerOffered
from acd.model import (
    AcdSettings,
    Agent,
    AgentState,
    CrossQueueRule,
    Entry,
    EntryStatus,
    JumpSettings,
    QueueSettings,
    Strategy,
)
from acd.routing import plan_offers
from acd.service import Acd
from acd.store.base import AcdStore, DispatchView, DuplicateCall, Offered, OfferRule, QueueFull
from acd.store.memory import MemoryStore
from acd.store.redis import RedisStore
from tests.acd.redis_server import RedisServer

JUMP = JumpSettings(credit_per_priority_s=60.0, max_jump_s=300.0, max_passes=3)
NOW = 100.0
LEASE = 115.0
LONGEST_IDLE = OfferRule(Strategy.LONGEST_IDLE, LEASE)


def _entry(number: int, queue: str = "q", **more: object) -> Entry:
    fields: dict[str, object] = {
        "entry_id": f"n1.{number:04d}",
        "call_id": f"call-{number}",
        "queue": queue,
        "priority": 0,
        "joined_at": float(number),
        "key": 0,
        "owner_node": "n1",
    }
    fields.update(more)
    return Entry(**fields)  # type: ignore[arg-type]


def _agent(agent_id: str, node: str = "n1", **more: object) -> Agent:
    fields: dict[str, object] = {"agent_id": agent_id, "node_id": node, "queues": ("q",)}
    fields.update(more)
    return Agent(**fields)  # type: ignore[arg-type]


async def _insert(
    store: AcdStore, entry: Entry, rule: OfferRule = LONGEST_IDLE, node: str = "n1"
) -> tuple[DispatchView, Offered | None]:
    _, view, offered = await store.add_entry_and_offer(entry, JUMP, None, None, node, NOW, 2, rule)
    return view, offered


async def test_lone_caller_offered_by_insert(store: AcdStore) -> None:
    await store.put_agent(_agent("a1", idle_since=5.0))
    await store.put_agent(_agent("a2", idle_since=3.0))
    await store.put_agent(_agent("a3", idle_since=1.0, state=AgentState.AWAY))

    inserted, view, offered = await store.add_entry_and_offer(
        _entry(1), JUMP, None, None, "n1", NOW, 2, LONGEST_IDLE
    )

    assert inserted.position == 1
    assert inserted.entry.status is EntryStatus.WAITING
    assert offered is not None
    assert offered.agent.agent_id == "a2"
    assert offered.agent.state is AgentState.AVAILABLE
    assert offered.entry.entry_id == "n1.0001"
    assert offered.entry.status is EntryStatus.OFFERED
    assert offered.entry.agent_id == "a2"
    assert offered.entry.lease_until == LEASE
    assert view == DispatchView()
    stored_agent = await store.get_agent("a2")
    assert stored_agent is not None
    assert stored_agent.state is AgentState.OFFERED
    assert stored_agent.entry_id == "n1.0001"
    assert await store.waiting("q", 10) == []
    assert await store.position("n1.0001") == 1
    assert await store.next_lease_expiry() == LEASE
    assert await store.entry_id_for_call("call-1") == "n1.0001"
    claimed = await store.claim_bridge("n1.0001", "a2", NOW + 1.0)
    assert claimed is not None


async def test_insert_offer_falls_back_behind_waiting_caller(store: AcdStore) -> None:
    await store.put_agent(_agent("a1"))
    await store.add_entry(_entry(1, skills={"es": 2}), JUMP)

    view, offered = await _insert(store, _entry(2))

    assert offered is None
    assert [agent.agent_id for agent in view.agents] == ["a1"]
    assert [entry.entry_id for entry in view.waiting["q"]] == ["n1.0001", "n1.0002"]
    agent = await store.get_agent("a1")
    assert agent is not None
    assert agent.state is AgentState.AVAILABLE


async def test_insert_offer_falls_back_for_other_served_queue(store: AcdStore) -> None:
    await store.put_agent(_agent("a1", queues=("q", "r")))
    await store.add_entry(_entry(1, queue="r", skills={"es": 1}), JUMP)

    view, offered = await _insert(store, _entry(2))

    assert offered is None
    assert sorted(view.waiting) == ["q", "r"]


async def test_insert_offer_ignores_queue_nobody_free_serves(store: AcdStore) -> None:
    await store.put_agent(_agent("a1"))
    await store.put_agent(_agent("b1", queues=("r",), state=AgentState.AWAY))
    await store.add_entry(_entry(1, queue="r"), JUMP)

    _, offered = await _insert(store, _entry(2))

    assert offered is not None
    assert offered.agent.agent_id == "a1"
    assert [entry.entry_id for entry in await store.waiting("r", 10)] == ["n1.0001"]


async def test_insert_offer_needs_skills(store: AcdStore) -> None:
    await store.put_agent(_agent("a1", skills={"es": 1}))
    await store.put_agent(_agent("a2", skills={"es": 3}, idle_since=9.0))

    _, offered = await _insert(store, _entry(1, skills={"es": 2}))
    view, nobody = await _insert(store, _entry(2, queue="r"))

    assert offered is not None
    assert offered.agent.agent_id == "a2"
    assert nobody is None
    assert view == DispatchView()


async def test_insert_offer_without_able_agent_waits(store: AcdStore) -> None:
    await store.put_agent(_agent("a1", skills={"es": 1}))

    view, offered = await _insert(store, _entry(1, skills={"es": 2}))

    assert offered is None
    assert view == DispatchView()
    assert [entry.entry_id for entry in await store.waiting("q", 10)] == ["n1.0001"]


async def test_insert_offer_only_to_own_node(store: AcdStore) -> None:
    await store.put_agent(_agent("b1", node="n2"))

    view, offered = await _insert(store, _entry(1))
    _, on_n2 = await _insert(store, _entry(2), node="n2")

    assert offered is None
    assert view == DispatchView()
    assert on_n2 is None


async def test_insert_offer_after_wrap_up(store: AcdStore) -> None:
    await store.put_agent(_agent("a1", state=AgentState.WRAP_UP, wrap_until=NOW + 5.0))
    await store.put_agent(
        _agent("a2", state=AgentState.WRAP_UP, wrap_until=NOW - 5.0, idle_since=NOW - 5.0)
    )

    _, offered = await _insert(store, _entry(1))

    assert offered is not None
    assert offered.agent.agent_id == "a2"
    assert offered.agent.state is AgentState.WRAP_UP


async def test_insert_offer_moves_round_robin_cursor(store: AcdStore) -> None:
    for agent_id in ("a1", "a2", "a3"):
        await store.put_agent(_agent(agent_id))
    await store.set_cursors({"q": "a1"})
    rule = OfferRule(Strategy.ROUND_ROBIN, LEASE)

    _, first = await _insert(store, _entry(1), rule)
    _, second = await _insert(store, _entry(2), rule)
    _, third = await _insert(store, _entry(3), rule)

    assert first is not None
    assert first.agent.agent_id == "a2"
    assert second is not None
    assert second.agent.agent_id == "a3"
    assert third is not None
    assert third.agent.agent_id == "a1"
    assert await store.cursors(["q"]) == {"q": "a1"}


async def test_insert_offer_to_fewest_calls(store: AcdStore) -> None:
    await store.put_agent(_agent("a1", calls=2, idle_since=1.0))
    await store.put_agent(_agent("a2", calls=1, idle_since=4.0))
    await store.put_agent(_agent("a3", calls=1, idle_since=3.0))

    _, offered = await _insert(store, _entry(1), OfferRule(Strategy.FEWEST_CALLS, LEASE))

    assert offered is not None
    assert offered.agent.agent_id == "a3"


async def test_insert_offer_to_best_skills(store: AcdStore) -> None:
    await store.put_agent(_agent("a1", skills={"es": 1, "fr": 1}, idle_since=1.0))
    await store.put_agent(_agent("a2", skills={"es": 3, "fr": 2}, idle_since=3.0))
    await store.put_agent(_agent("a3", skills={"es": 4}, idle_since=2.0))
    await store.put_agent(_agent("a4", skills={"es": 2, "fr": 2}, idle_since=2.0))

    _, offered = await _insert(
        store, _entry(1, skills={"es": 1, "fr": 1}), OfferRule(Strategy.SKILLS_WEIGHTED, LEASE)
    )

    assert offered is not None
    assert offered.agent.agent_id == "a2"


async def test_insert_offer_compares_ids_by_code_point(store: AcdStore) -> None:
    for agent_id in ("b1", "b", "B", "é", "a-b", "ab"):
        await store.put_agent(_agent(agent_id, idle_since=1.0))
    await store.set_cursors({"q": "b"})
    round_robin = OfferRule(Strategy.ROUND_ROBIN, LEASE)

    _, by_idle = await _insert(store, _entry(1))
    _, after_b = await _insert(store, _entry(2), round_robin)
    _, after_b1 = await _insert(store, _entry(3), round_robin)
    _, wrapped = await _insert(store, _entry(4), round_robin)

    assert by_idle is not None
    assert by_idle.agent.agent_id == "B"
    assert after_b is not None
    assert after_b.agent.agent_id == "b1"
    assert after_b1 is not None
    assert after_b1.agent.agent_id == "é"
    assert wrapped is not None
    assert wrapped.agent.agent_id == "a-b"


async def test_insert_offer_prefers_agent_that_did_not_miss(store: AcdStore) -> None:
    await store.put_agent(_agent("a1", idle_since=1.0))
    await store.put_agent(_agent("a2", idle_since=2.0))

    _, offered = await _insert(store, _entry(1, missed_by=["a1"]))

    assert offered is not None
    assert offered.agent.agent_id == "a2"


async def test_longest_idle_walks_past_busy_agents(store: AcdStore) -> None:
    for number in range(20):
        await store.put_agent(
            _agent(
                f"w{number:02d}",
                state=AgentState.WRAP_UP,
                wrap_until=NOW + 1.0,
                idle_since=float(number),
            )
        )
    await store.put_agent(_agent("r1", queues=("r",), idle_since=20.0))
    await store.put_agent(_agent("s1", skills={"es": 1}, idle_since=20.5))
    await store.put_agent(_agent("m1", skills={"es": 3}, idle_since=20.5))
    await store.put_agent(_agent("z1", skills={"es": 2}, idle_since=90.0))
    await store.put_agent(_agent("y1", skills={"es": 2}, idle_since=95.0))

    _, offered = await _insert(store, _entry(1, skills={"es": 2}, missed_by=["m1"]))

    assert offered is not None
    assert offered.agent.agent_id == "z1"


async def test_longest_idle_takes_missed_agent_last(store: AcdStore) -> None:
    await store.put_agent(_agent("a1", idle_since=1.0))
    await store.put_agent(_agent("a2", idle_since=2.0, state=AgentState.AWAY))

    _, offered = await _insert(store, _entry(1, missed_by=["a1"]))

    assert offered is not None
    assert offered.agent.agent_id == "a1"


async def test_longest_idle_follows_agent_changes(store: AcdStore) -> None:
    await store.put_agent(_agent("a1", idle_since=1.0))
    await store.put_agent(_agent("a2", idle_since=10.0))
    await store.put_agent(_agent("a3", idle_since=5.0))
    _, first = await _insert(store, _entry(1))
    assert first is not None
    assert first.agent.agent_id == "a1"
    await store.claim_bridge("n1.0001", "a1", 40.0)
    await store.finish_call("a1", 50.0, 0.0)
    await store.update_agent("a3", frozenset({AgentState.AVAILABLE}), {"idle_since": 60.0})

    _, second = await _insert(store, _entry(2))

    assert second is not None
    assert second.agent.agent_id == "a2"


async def test_insert_offer_without_idle_index(redis_server: RedisServer) -> None:
    store = await RedisStore.connect(redis_server.url, prefix=f"t-{uuid.uuid4().hex[:8]}:")
    try:
        await store.put_agent(_agent("a1", idle_since=3.0))
        await store.put_agent(_agent("a2", idle_since=2.0))
        await store.client.delete(store.prefix + "fi:n1")

        _, offered = await _insert(store, _entry(1))
    finally:
        await store.delete_all()
        await store.close()

    assert offered is not None
    assert offered.agent.agent_id == "a2"


async def test_insert_offer_keeps_insert_errors(store: AcdStore) -> None:
    await store.put_agent(_agent("a1"))
    await _insert(store, _entry(1))

    with pytest.raises(DuplicateCall):
        await _insert(store, _entry(2, call_id="call-1"))
    with pytest.raises(QueueFull):
        await store.add_entry_and_offer(_entry(3), JUMP, None, 1, "n1", NOW, 2, LONGEST_IDLE)


# --- equal to plan_offers on the view, for random cases ---

AGENT_IDS = ("a", "B", "b", "b-1", "b1", "b_1", "ab", "Z9", "é", "ä", "a.b")
IDLE_TIMES = (1.0, 2.0, 2.0, 0.5, 3.25)
SKILLS = ("es", "fr")


@dataclass
class Case:
    agents: list[Agent]
    earlier: list[Entry]
    entry: Entry
    cursor: str | None
    settings: AcdSettings

    @property
    def strategy(self) -> Strategy:
        return self.settings.queue("q").strategy


def _skills(rng: random.Random, top: int) -> dict[str, int]:
    return {name: rng.randint(0, top) for name in SKILLS if rng.random() < 0.6}


def _case(rng: random.Random) -> Case:
    agents = []
    for agent_id in rng.sample(AGENT_IDS, rng.randint(1, 7)):
        state = rng.choice((AgentState.AVAILABLE, AgentState.AVAILABLE, AgentState.WRAP_UP))
        if rng.random() < 0.15:
            state = AgentState.AWAY
        agent = _agent(
            agent_id,
            node=rng.choice(("n1", "n1", "n1", "n1", "n2")),
            queues=rng.choice((("q",), ("q",), ("q",), ("q", "r"), ("r",))),
            skills=_skills(rng, 3),
            state=state,
            idle_since=rng.choice(IDLE_TIMES),
            wrap_until=rng.choice((NOW - 1.0, NOW, NOW + 1.0)),
            calls=rng.randint(0, 3),
        )
        agents.append(agent)
    earlier = []
    if rng.random() < 0.3:
        earlier.append(_entry(1, queue=rng.choice(("q", "r")), skills=_skills(rng, 4)))
    missed = [agent.agent_id for agent in agents if rng.random() < 0.2]
    entry = _entry(2, skills=_skills(rng, 2), missed_by=missed)
    queues = {
        name: QueueSettings(name=name, strategy=rng.choice(list(Strategy))) for name in ("q", "r")
    }
    return Case(
        agents=agents,
        earlier=earlier,
        entry=entry,
        cursor=rng.choice((None, "", "b", "b-", "a.b", "zz", "é")),
        settings=AcdSettings(
            queues=queues, jump=JUMP, cross_queue_rule=rng.choice(list(CrossQueueRule))
        ),
    )


async def _prepare(store: AcdStore, case: Case) -> None:
    for agent in case.agents:
        await store.put_agent(agent)
    for entry in case.earlier:
        await store.add_entry(entry, JUMP)
    if case.cursor is not None:
        await store.set_cursors({"q": case.cursor})


def _sorted_view(view: DispatchView) -> DispatchView:
    return DispatchView(
        sorted(view.agents, key=lambda agent: agent.agent_id), view.waiting, view.cursors
    )


async def _check_case(make_store: Callable[[], Awaitable[AcdStore]], case: Case) -> None:
    reference, store = await make_store(), await make_store()
    try:
        await _prepare(reference, case)
        _, expected_view = await reference.add_entry_and_view(
            case.entry, JUMP, None, None, "n1", NOW, 2
        )
        plan = plan_offers(
            expected_view.agents, expected_view.waiting, case.settings, expected_view.cursors
        )
        await _prepare(store, case)
        rule = OfferRule(case.strategy, LEASE)
        _, view, offered = await store.add_entry_and_offer(
            case.entry, JUMP, None, None, "n1", NOW, 2, rule
        )
        cursors_before = await reference.cursors(["q"])
        cursors_after = await store.cursors(["q"])
    finally:
        for done in (reference, store):
            if isinstance(done, RedisStore):
                await done.delete_all()
            await done.close()

    planned = [(match.entry.entry_id, match.agent.agent_id) for match in plan.matches]
    if offered is not None:
        assert planned == [(case.entry.entry_id, offered.agent.agent_id)]
        assert view == DispatchView()
        assert offered.agent == next(
            agent for agent in expected_view.agents if agent.agent_id == offered.agent.agent_id
        )
        if case.strategy is Strategy.ROUND_ROBIN:
            assert cursors_after == {"q": offered.agent.agent_id}
        else:
            assert cursors_after == cursors_before
        return
    if not case.earlier:
        assert planned == [], "a lone caller with an able agent must be offered by the insert"
    if view.agents:
        assert _sorted_view(view) == _sorted_view(expected_view)
    else:
        assert planned == []


@settings(max_examples=300, deadline=None)
@given(st.randoms(use_true_random=False))
def test_insert_offer_equals_plan_memory(rng: random.Random) -> None:
    async def make() -> AcdStore:
        return MemoryStore()

    asyncio.run(_check_case(make, _case(rng)))


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.randoms(use_true_random=False))
def test_insert_offer_equals_plan_redis(redis_server: RedisServer, rng: random.Random) -> None:
    async def make() -> AcdStore:
        return await RedisStore.connect(redis_server.url, prefix=f"io-{uuid.uuid4().hex[:8]}:")

    asyncio.run(_check_case(make, _case(rng)))


# --- the started node ---


class _CountingStore:
    """A store that records which store methods each task called, then runs them."""

    def __init__(self, store: AcdStore) -> None:
        self.store = store
        self.calls: list[tuple[asyncio.Task[object] | None, str]] = []

    def __getattr__(self, name: str) -> object:
        method = getattr(self.store, name)

        async def counted(*args: object, **kwargs: object) -> object:
            self.calls.append((asyncio.current_task(), name))
            return await method(*args, **kwargs)

        return counted

    def made_by(self, task: asyncio.Task[object] | None) -> list[str]:
        return [name for caller, name in self.calls if caller is task]


NODE_SETTINGS = AcdSettings(
    queues={"q": QueueSettings(name="q", announce_first_s=None, announce_every_s=None)}
)
OFFER_TIMEOUT_S = 10.0


async def test_started_node_offers_in_insert_call(store: AcdStore) -> None:
    counting = _CountingStore(store)
    acd = Acd(cast(AcdStore, counting), SystemClock(), NODE_SETTINGS, node_id="node-fast")
    events: list[AcdEvent] = []
    acd.events.listen(events.append)
    await acd.login("a1", ["q"])
    acd.start()
    try:
        ticket = await acd.enqueue("call-1", "q")
        async with asyncio.timeout(OFFER_TIMEOUT_S):
            offer = await acd.next_offer()
        answered = await acd.answer_offer(offer.agent_id, offer.entry_id)
    finally:
        await acd.close()

    assert ticket.position == 1
    assert offer.call_id == "call-1"
    assert offer.agent_id == "a1"
    assert answered
    enqueue_calls = counting.made_by(asyncio.current_task())
    assert "add_entry_and_offer" in enqueue_calls
    assert "add_entry_and_view" not in enqueue_calls
    assert "try_offers" not in enqueue_calls
    kinds = [type(event) for event in events]
    assert kinds.index(CallerJoined) < kinds.index(CallerOffered)
    assert [(event.old, event.new) for event in events if isinstance(event, AgentStateChanged)] == [
        (AgentState.LOGGED_OUT, AgentState.AVAILABLE),
        (AgentState.AVAILABLE, AgentState.OFFERED),
        (AgentState.OFFERED, AgentState.ON_CALL),
    ]


async def test_insert_during_dispatch_round_offers_later(store: AcdStore) -> None:
    counting = _CountingStore(store)
    acd = Acd(cast(AcdStore, counting), SystemClock(), NODE_SETTINGS, node_id="node-busy")
    joined = asyncio.Event()
    acd.events.listen(lambda event: joined.set() if isinstance(event, CallerJoined) else None)
    await acd.login("a1", ["q"])
    acd.start()
    try:
        async with acd._dispatching:
            enqueue = asyncio.create_task(acd.enqueue("call-1", "q"))
            async with asyncio.timeout(OFFER_TIMEOUT_S):
                await joined.wait()
            agent_meanwhile = await store.get_agent("a1")
        async with asyncio.timeout(OFFER_TIMEOUT_S):
            offer = await acd.next_offer()
            await enqueue
    finally:
        await acd.close()

    assert agent_meanwhile is not None
    assert agent_meanwhile.state is AgentState.AVAILABLE
    assert offer.call_id == "call-1"
    enqueue_calls = counting.made_by(cast("asyncio.Task[object]", enqueue))
    assert "add_entry_and_view" in enqueue_calls
    assert "add_entry_and_offer" not in enqueue_calls
