"""The store contract, run against the in-memory store and a real Redis server."""

from __future__ import annotations

import asyncio

import pytest

from acd.agents import BUSY
from acd.model import Agent, AgentState, Entry, EntryStatus, JumpSettings, time_key
from acd.store.base import AcdStore, DuplicateCall, OfferRequest, QueueFull

JUMP = JumpSettings(credit_per_priority_s=60.0, max_jump_s=300.0, max_passes=3)


def _entry(
    number: int, joined_at: float, priority: int = 0, queue: str = "q", **more: object
) -> Entry:
    fields: dict[str, object] = {
        "entry_id": f"n1.{number:04d}",
        "call_id": f"call-{number}",
        "queue": queue,
        "priority": priority,
        "joined_at": joined_at,
        "key": 0,
        "owner_node": "n1",
    }
    fields.update(more)
    return Entry(**fields)  # type: ignore[arg-type]


def _agent(agent_id: str, node: str = "n1", **more: object) -> Agent:
    fields: dict[str, object] = {"agent_id": agent_id, "node_id": node, "queues": ("q",)}
    fields.update(more)
    return Agent(**fields)  # type: ignore[arg-type]


async def _order(store: AcdStore, queue: str = "q") -> list[str]:
    return [entry.call_id for entry in await store.queue_entries(queue)]


async def test_fifo_within_priority(store: AcdStore) -> None:
    for number in range(3):
        await store.add_entry(_entry(number, joined_at=float(number)), JUMP)

    assert await _order(store) == ["call-0", "call-1", "call-2"]
    assert await store.position("n1.0002") == 3


async def test_priority_caller_jumps_and_counts_passes(store: AcdStore) -> None:
    await store.add_entry(_entry(1, 0.0), JUMP)
    await store.add_entry(_entry(2, 10.0), JUMP)

    inserted = await store.add_entry(_entry(3, 20.0, priority=1), JUMP)

    assert inserted.position == 1
    assert set(inserted.passed) == {"n1.0001", "n1.0002"}
    assert inserted.entry.key == time_key(20.0 - 60.0)
    first = await store.get_entry("n1.0001")
    assert first is not None and first.passes == 1


async def test_jump_never_passes_callers_older_than_max_jump(store: AcdStore) -> None:
    await store.add_entry(_entry(1, 0.0), JUMP)
    await store.add_entry(_entry(2, 250.0), JUMP)

    inserted = await store.add_entry(_entry(3, 400.0, priority=99), JUMP)

    assert inserted.passed == ("n1.0002",)
    assert await _order(store) == ["call-1", "call-3", "call-2"]


async def test_caller_passed_max_times_is_not_passed_again(store: AcdStore) -> None:
    await store.add_entry(_entry(1, 0.0), JUMP)
    for number in range(2, 5):
        await store.add_entry(_entry(number, 1.0 + number, priority=1), JUMP)
    pinned = await store.get_entry("n1.0001")
    assert pinned is not None and pinned.passes == JUMP.max_passes

    inserted = await store.add_entry(_entry(9, 10.0, priority=1), JUMP)

    assert inserted.passed == ()
    assert (await _order(store))[-1] == "call-9"
    assert inserted.position == 5


async def test_position_insert_is_bounded(store: AcdStore) -> None:
    await store.add_entry(_entry(1, 0.0), JUMP)
    await store.add_entry(_entry(2, 5.0), JUMP)

    inserted = await store.add_entry(_entry(3, 9.0), JUMP, position=1)

    assert inserted.position == 1
    assert await _order(store) == ["call-3", "call-1", "call-2"]


async def test_reprioritize_resorts_at_once(store: AcdStore) -> None:
    for number in range(3):
        await store.add_entry(_entry(number, float(number)), JUMP)

    raised = await store.reprioritize("n1.0002", 1, JUMP)
    assert raised is not None and raised.position == 1
    assert set(raised.passed) == {"n1.0000", "n1.0001"}
    assert set(raised.overtaken) == {"n1.0000", "n1.0001"}
    first = await store.get_entry("n1.0000")
    assert first is not None and first.overtaken == 1

    lowered = await store.reprioritize("n1.0002", 0, JUMP)
    assert lowered is not None and lowered.position == 3
    assert lowered.passed == ()
    assert await _order(store) == ["call-0", "call-1", "call-2"]


async def test_reprioritize_unknown_entry(store: AcdStore) -> None:
    assert await store.reprioritize("n1.9999", 1, JUMP) is None


async def test_max_length_and_duplicate_call(store: AcdStore) -> None:
    await store.add_entry(_entry(1, 0.0), JUMP, max_length=2)
    await store.add_entry(_entry(2, 1.0), JUMP, max_length=2)

    with pytest.raises(QueueFull):
        await store.add_entry(_entry(3, 2.0), JUMP, max_length=2)
    with pytest.raises(DuplicateCall):
        await store.add_entry(_entry(4, 2.0, call_id="call-1"), JUMP)
    assert await store.queue_length("q") == 2


async def test_offer_needs_waiting_entry_and_free_agent(store: AcdStore) -> None:
    await store.add_entry(_entry(1, 0.0), JUMP)
    await store.put_agent(_agent("a1"))
    await store.put_agent(_agent("a2"))
    await store.put_agent(_agent("away", state=AgentState.AWAY))

    assert await store.try_offer("n1.0001", "away", 1.0, 16.0) is None
    offered = await store.try_offer("n1.0001", "a1", 1.0, 16.0)
    assert offered is not None and offered.status is EntryStatus.OFFERED
    assert await store.try_offer("n1.0001", "a2", 1.0, 16.0) is None
    agent = await store.get_agent("a1")
    assert agent is not None and agent.state is AgentState.OFFERED
    assert await store.waiting("q", 10) == []
    assert await store.position("n1.0001") == 1


async def test_wrap_up_agent_free_only_after_wrap_time(store: AcdStore) -> None:
    await store.add_entry(_entry(1, 0.0), JUMP)
    await store.put_agent(_agent("a1", state=AgentState.WRAP_UP, wrap_until=30.0))

    assert await store.try_offer("n1.0001", "a1", 29.0, 40.0) is None
    assert await store.try_offer("n1.0001", "a1", 30.0, 40.0) is not None


async def test_claim_bridge_succeeds_once(store: AcdStore) -> None:
    await store.add_entry(_entry(1, 0.0), JUMP)
    await store.put_agent(_agent("a1"))
    await store.put_agent(_agent("a2"))
    await store.try_offer("n1.0001", "a1", 1.0, 16.0)

    assert await store.claim_bridge("n1.0001", "a2", 2.0) is None
    first = await store.claim_bridge("n1.0001", "a1", 2.0)
    second = await store.claim_bridge("n1.0001", "a1", 2.0)

    assert first is not None and first.status is EntryStatus.BRIDGED
    assert second is None
    assert await store.entry_id_for_call("call-1") is None
    assert await store.queue_length("q") == 0
    agent = await store.get_agent("a1")
    assert agent is not None and agent.state is AgentState.ON_CALL


async def test_release_keeps_place_and_counts_miss(store: AcdStore) -> None:
    await store.add_entry(_entry(1, 0.0), JUMP)
    await store.add_entry(_entry(2, 1.0), JUMP)
    await store.put_agent(_agent("a1"))
    await store.try_offer("n1.0001", "a1", 2.0, 17.0)

    released = await store.release_offer("n1.0001", "a1", True, away_after=2)

    assert released is not None and released.agent is not None
    assert released.entry.key == time_key(0.0)
    assert released.entry.missed_by == ["a1"]
    assert released.agent.missed_offers == 1
    assert released.agent.state is AgentState.AVAILABLE
    assert released.old_agent_state is AgentState.OFFERED
    assert [e.call_id for e in await store.waiting("q", 10)] == ["call-1", "call-2"]


async def test_agent_goes_away_after_missed_offers(store: AcdStore) -> None:
    await store.add_entry(_entry(1, 0.0), JUMP)
    await store.put_agent(_agent("a1"))
    for _ in range(2):
        await store.try_offer("n1.0001", "a1", 2.0, 17.0)
        released = await store.release_offer("n1.0001", "a1", True, away_after=2)
        assert released is not None

    agent = await store.get_agent("a1")
    assert agent is not None
    assert agent.state is AgentState.AWAY
    assert agent.away_reason == "missed_offers"
    assert agent.missed_offers == 2


async def test_reaper_returns_expired_lease_to_its_place(store: AcdStore) -> None:
    await store.add_entry(_entry(1, 0.0), JUMP)
    await store.add_entry(_entry(2, 1.0), JUMP)
    await store.put_agent(_agent("a1"))
    await store.heartbeat("n1", 2.0)
    await store.try_offer("n1.0001", "a1", 2.0, 17.0)
    assert await store.next_lease_expiry() == 17.0

    early = await store.reap(16.0, node_ttl_s=60.0, away_after=0)
    late = await store.reap(17.0, node_ttl_s=60.0, away_after=0)

    assert early.returned == []
    assert [r.entry.entry_id for r in late.returned] == ["n1.0001"]
    entry = await store.get_entry("n1.0001")
    assert entry is not None and entry.status is EntryStatus.WAITING
    assert entry.key == time_key(0.0)
    assert await store.position("n1.0001") == 1
    assert await store.next_lease_expiry() is None


async def test_reaper_closes_out_dead_node(store: AcdStore) -> None:
    await store.add_entry(_entry(1, 0.0), JUMP)
    await store.add_entry(_entry(2, 1.0, owner_node="n2"), JUMP)
    await store.add_entry(_entry(3, 2.0), JUMP)
    await store.set_callback("n1.0003", {"number": "+15550100"})
    await store.put_agent(_agent("a1"))
    await store.put_agent(_agent("b1", node="n2"))
    await store.try_offer("n1.0002", "a1", 3.0, 100.0)
    await store.heartbeat("n1", 0.0)
    await store.heartbeat("n2", 20.0)

    result = await store.reap(25.0, node_ttl_s=10.0, away_after=0)

    assert [r.entry.entry_id for r in result.abandoned] == ["n1.0001"]
    assert [a.agent_id for a in result.logged_out] == ["a1"]
    assert [r.entry.entry_id for r in result.returned] == ["n1.0002"]
    assert await _order(store) == ["call-2", "call-3"]
    assert await store.get_agent("a1") is None
    assert await store.get_agent("b1") is not None


async def test_remove_offered_entry_frees_agent(store: AcdStore) -> None:
    await store.add_entry(_entry(1, 0.0), JUMP)
    await store.put_agent(_agent("a1"))
    await store.try_offer("n1.0001", "a1", 1.0, 16.0)

    removed = await store.remove_entry("n1.0001")

    assert removed is not None and removed.freed_agent is not None
    assert removed.freed_agent.state is AgentState.AVAILABLE
    assert await store.remove_entry("n1.0001") is None
    assert await store.next_lease_expiry() is None
    assert await store.entry_id_for_call("call-1") is None


async def test_finish_call_starts_wrap_up(store: AcdStore) -> None:
    await store.add_entry(_entry(1, 0.0), JUMP)
    await store.put_agent(_agent("a1"))
    await store.try_offer("n1.0001", "a1", 1.0, 16.0)
    await store.claim_bridge("n1.0001", "a1", 2.0)

    agent = await store.finish_call("a1", 62.0, wrap_up_s=10.0)

    assert agent is not None
    assert agent.state is AgentState.WRAP_UP
    assert agent.wrap_until == 72.0
    assert agent.calls == 1
    assert agent.call_started == 2.0
    assert await store.finish_call("a1", 63.0, wrap_up_s=10.0) is None


async def test_update_agent_compares_state(store: AcdStore) -> None:
    await store.put_agent(_agent("a1", state=AgentState.AWAY, away_reason="lunch"))

    refused = await store.update_agent(
        "a1", frozenset({AgentState.WRAP_UP}), {"state": AgentState.AVAILABLE}
    )
    changed = await store.update_agent(
        "a1", frozenset({AgentState.AWAY}), {"state": AgentState.AVAILABLE, "idle_since": 5.0}
    )

    assert refused is None
    assert changed is not None
    assert changed.state is AgentState.AVAILABLE
    assert changed.idle_since == 5.0


async def test_remove_agent_returns_its_offer(store: AcdStore) -> None:
    await store.add_entry(_entry(1, 0.0), JUMP)
    await store.put_agent(_agent("a1"))
    await store.try_offer("n1.0001", "a1", 1.0, 16.0)

    outcome = await store.remove_agent("a1", 2.0)

    assert outcome is not None
    agent, released = outcome
    assert agent.state is AgentState.OFFERED
    assert released is not None and released.entry.status is EntryStatus.WAITING
    assert await store.agents() == []


async def test_callback_keeps_key(store: AcdStore) -> None:
    await store.add_entry(_entry(1, 0.0), JUMP)

    entry = await store.set_callback("n1.0001", {"number": "+15550100"})

    assert entry is not None
    assert entry.callback is True
    assert entry.owner_node is None
    assert entry.key == time_key(0.0)
    assert entry.context["number"] == "+15550100"


async def test_handle_times_and_cursors(store: AcdStore) -> None:
    for seconds in range(60):
        await store.record_handle_time("q", float(seconds))
    await store.set_cursors({"q": "a7"})

    kept = await store.handle_times("q")

    assert len(kept) == 50
    assert sorted(kept) == [float(s) for s in range(10, 60)]
    assert await store.cursors(["q", "other"]) == {"q": "a7"}


async def test_agents_by_node(store: AcdStore) -> None:
    await store.put_agent(_agent("a1", node="n1", skills={"es": 3}))
    await store.put_agent(_agent("b1", node="n2"))

    on_n1 = await store.agents("n1")

    assert [agent.agent_id for agent in on_n1] == ["a1"]
    assert on_n1[0].skills == {"es": 3}
    assert {agent.agent_id for agent in await store.agents()} == {"a1", "b1"}


async def test_put_agent_moves_agent_between_nodes(store: AcdStore) -> None:
    await store.put_agent(_agent("a1", node="old"))

    busy_record = await store.put_agent(_agent("a1", node="new", state=AgentState.AWAY), BUSY)

    assert busy_record is None
    agent = await store.get_agent("a1")
    assert agent is not None
    assert agent.node_id == "new"
    assert agent.state is AgentState.AWAY
    assert await store.agents("old") == []
    assert [agent.agent_id for agent in await store.agents("new")] == ["a1"]


@pytest.mark.parametrize("state", [AgentState.OFFERED, AgentState.ON_CALL])
async def test_put_agent_keeps_busy_record(store: AcdStore, state: AgentState) -> None:
    await store.put_agent(_agent("a1", node="old"))
    await store.add_entry(_entry(1, 0.0), JUMP)
    assert await store.try_offer("n1.0001", "a1", 1.0, 20.0) is not None
    if state is AgentState.ON_CALL:
        assert await store.claim_bridge("n1.0001", "a1", 2.0) is not None

    busy_record = await store.put_agent(_agent("a1", node="new"), BUSY)

    assert busy_record is not None
    assert busy_record.node_id == "old"
    assert busy_record.state is state
    agent = await store.get_agent("a1")
    assert agent is not None
    assert agent.node_id == "old"
    assert agent.state is state
    assert agent.entry_id == "n1.0001"
    assert await store.agents("new") == []


async def test_reaper_keeps_agent_logged_in_elsewhere(store: AcdStore) -> None:
    await store.put_agent(_agent("a1", node="old"))
    await store.heartbeat("old", 0.0)
    await store.put_agent(_agent("a1", node="new"))
    await store.heartbeat("new", 20.0)

    result = await store.reap(25.0, node_ttl_s=10.0, away_after=0)

    assert result.logged_out == []
    agent = await store.get_agent("a1")
    assert agent is not None and agent.node_id == "new"


async def test_free_agents_of_node(store: AcdStore) -> None:
    await store.put_agent(_agent("a1"))
    await store.put_agent(_agent("a2", state=AgentState.AWAY))
    await store.put_agent(_agent("a3", state=AgentState.WRAP_UP, wrap_until=50.0))
    await store.put_agent(_agent("b1", node="n2"))

    at_40 = await store.free_agents("n1", 40.0)
    at_50 = await store.free_agents("n1", 50.0)

    assert sorted(agent.agent_id for agent in at_40) == ["a1"]
    assert sorted(agent.agent_id for agent in at_50) == ["a1", "a3"]


async def test_dispatch_view_of_node(store: AcdStore) -> None:
    await store.put_agent(_agent("a1", queues=("q", "r"), skills={"es": 2}))
    await store.put_agent(_agent("a2", state=AgentState.AWAY))
    await store.put_agent(_agent("a3", state=AgentState.WRAP_UP, wrap_until=50.0))
    await store.put_agent(_agent("b1", node="n2", queues=("s",)))
    await store.put_agent(_agent("a4", queues=("t",)))
    for number in range(1, 6):
        await store.add_entry(_entry(number, float(number)), JUMP)
    await store.add_entry(_entry(6, 1.0, queue="r", skills={"es": 1}, context={"v": "a/b ü"}), JUMP)
    await store.add_entry(_entry(7, 1.0, queue="s"), JUMP)
    await store.put_agent(_agent("x1", node="n3"))
    await store.try_offer("n1.0001", "x1", 2.0, 17.0)
    await store.set_cursors({"q": "a0", "s": "b0"})

    at_40 = await store.dispatch_view("n1", 40.0, extra=1)
    at_50 = await store.dispatch_view("n1", 50.0, extra=1)

    assert [agent.agent_id for agent in at_40.agents] == ["a1"]
    assert at_40.agents[0].skills == {"es": 2}
    assert at_40.agents[0].queues == ("q", "r")
    assert {queue: [e.entry_id for e in entries] for queue, entries in at_40.waiting.items()} == {
        "q": ["n1.0002", "n1.0003"],
        "r": ["n1.0006"],
    }
    assert at_40.waiting["r"][0].skills == {"es": 1}
    assert at_40.waiting["r"][0].context == {"v": "a/b ü"}
    assert at_40.waiting["q"][0].status is EntryStatus.WAITING
    assert at_40.cursors == {"q": "a0"}
    assert sorted(agent.agent_id for agent in at_50.agents) == ["a1", "a3"]
    assert [e.entry_id for e in at_50.waiting["q"]] == ["n1.0002", "n1.0003", "n1.0004"]


async def test_dispatch_view_empty_without_match(store: AcdStore) -> None:
    await store.put_agent(_agent("a1"))
    await store.put_agent(_agent("a2", queues=("r",), state=AgentState.AWAY))
    await store.add_entry(_entry(1, 0.0, queue="r"), JUMP)

    view = await store.dispatch_view("n1", 1.0, extra=10)
    other_node = await store.dispatch_view("n2", 1.0, extra=10)

    assert view.agents == []
    assert view.waiting == {}
    assert view.cursors == {}
    assert other_node.agents == []


async def test_try_offers_skip_agent_moved_away(store: AcdStore) -> None:
    await store.add_entry(_entry(1, 1.0), JUMP)
    await store.add_entry(_entry(2, 2.0), JUMP)
    await store.put_agent(_agent("a1", node="n1"))
    await store.put_agent(_agent("a1", node="n2"))
    await store.put_agent(_agent("a2", node="n1"))
    requests = [
        OfferRequest("n1.0001", "a1", 16.0, "n1"),
        OfferRequest("n1.0002", "a2", 16.0, "n1"),
    ]

    results = await store.try_offers(requests, 1.0)

    assert results[0] is None
    assert results[1] is not None
    assert results[1].entry_id == "n1.0002"
    agent = await store.get_agent("a1")
    assert agent is not None
    assert agent.state is AgentState.AVAILABLE
    assert [entry.entry_id for entry in await store.waiting("q", 10)] == ["n1.0001"]


async def test_try_offers_commit_each_on_its_own(store: AcdStore) -> None:
    for number in (1, 2, 3):
        await store.add_entry(_entry(number, float(number)), JUMP)
    await store.put_agent(_agent("a1"))
    await store.put_agent(_agent("a2"))
    requests = [
        OfferRequest("n1.0001", "a1", 16.0),
        OfferRequest("n1.0002", "a1", 16.0),
        OfferRequest("n1.0009", "a2", 16.0),
        OfferRequest("n1.0003", "a2", 17.0),
    ]

    results = await store.try_offers(requests, 1.0)

    assert [None if entry is None else entry.entry_id for entry in results] == [
        "n1.0001",
        None,
        None,
        "n1.0003",
    ]
    third = results[3]
    assert third is not None
    assert third.status is EntryStatus.OFFERED
    assert third.agent_id == "a2"
    assert third.lease_until == 17.0
    assert [entry.entry_id for entry in await store.waiting("q", 10)] == ["n1.0002"]
    assert await store.next_lease_expiry() == 16.0
    assert await store.try_offers([], 1.0) == []


async def test_free_agents_follow_every_state_change(store: AcdStore) -> None:
    async def free_on(node: str, now: float = 1.0) -> list[str]:
        return sorted(agent.agent_id for agent in await store.free_agents(node, now))

    await store.put_agent(_agent("a1"))
    await store.put_agent(_agent("a2"))
    for number in (1, 2, 3):
        await store.add_entry(_entry(number, float(number)), JUMP)
    assert await free_on("n1") == ["a1", "a2"]

    await store.try_offer("n1.0001", "a1", 1.0, 16.0)
    assert await free_on("n1") == ["a2"]
    await store.claim_bridge("n1.0001", "a1", 2.0)
    assert await free_on("n1") == ["a2"]
    await store.finish_call("a1", 3.0, 10.0)
    assert await free_on("n1", 12.0) == ["a2"]
    assert await free_on("n1", 13.0) == ["a1", "a2"]

    await store.try_offer("n1.0002", "a2", 4.0, 19.0)
    await store.release_offer("n1.0002", "a2", True, 1)
    assert await free_on("n1", 13.0) == ["a1"]
    await store.update_agent(
        "a2", frozenset({AgentState.AWAY}), {"state": AgentState.AVAILABLE, "missed_in_row": 0}
    )
    assert await free_on("n1", 13.0) == ["a1", "a2"]

    await store.try_offer("n1.0002", "a2", 14.0, 29.0)
    await store.remove_entry("n1.0002")
    assert await free_on("n1", 14.0) == ["a1", "a2"]

    await store.try_offer("n1.0003", "a2", 15.0, 30.0)
    await store.remove_agent("a2", 15.0)
    assert await free_on("n1", 15.0) == ["a1"]

    await store.put_agent(_agent("a1", node="n2"))
    assert await free_on("n1", 15.0) == []
    assert await free_on("n2", 15.0) == ["a1"]
    assert [e.entry_id for e in await store.waiting("q", 10)] == ["n1.0003"]


async def test_many_concurrent_calls_all_answered(store: AcdStore) -> None:
    await store.put_agent(_agent("a1"))

    found = await asyncio.gather(*(store.get_agent("a1") for _ in range(300)))

    assert len(found) == 300
    assert all(agent is not None and agent.agent_id == "a1" for agent in found)


async def test_dispatch_view_agents_are_current(store: AcdStore) -> None:
    await store.put_agent(_agent("a1", skills={"es": 3}))
    await store.put_agent(_agent("a2"))
    for number in (1, 2, 3, 4):
        await store.add_entry(_entry(number, float(number)), JUMP)
    await store.try_offer("n1.0001", "a1", 1.0, 16.0)
    await store.claim_bridge("n1.0001", "a1", 2.0)
    await store.finish_call("a1", 3.0, 5.0)
    await store.try_offer("n1.0002", "a2", 4.0, 19.0)
    await store.release_offer("n1.0002", "a2", True, 0)
    await store.update_agent("a2", frozenset({AgentState.AVAILABLE}), {"idle_since": 6.0})

    view = await store.dispatch_view("n1", 10.0, extra=0)

    assert sorted(agent.agent_id for agent in view.agents) == ["a1", "a2"]
    for agent in view.agents:
        assert agent == await store.get_agent(agent.agent_id)
    first = next(agent for agent in view.agents if agent.agent_id == "a1")
    assert first.calls == 1
    assert first.state is AgentState.WRAP_UP
    second = next(agent for agent in view.agents if agent.agent_id == "a2")
    assert second.missed_offers == 1
    assert second.idle_since == 6.0


async def test_add_entry_and_view_in_one_step(store: AcdStore) -> None:
    await store.put_agent(_agent("a1"))
    await store.add_entry(_entry(1, 1.0), JUMP)

    inserted, view = await store.add_entry_and_view(_entry(2, 2.0), JUMP, None, None, "n1", 3.0, 0)
    _, elsewhere = await store.add_entry_and_view(_entry(3, 4.0), JUMP, None, None, "n2", 5.0, 0)

    assert inserted.position == 2
    assert inserted.entry.status is EntryStatus.WAITING
    assert [agent.agent_id for agent in view.agents] == ["a1"]
    assert [entry.entry_id for entry in view.waiting["q"]] == ["n1.0001"]
    assert elsewhere.agents == []
    with pytest.raises(DuplicateCall):
        await store.add_entry_and_view(
            _entry(4, 5.0, call_id="call-1"), JUMP, None, None, "n1", 6.0, 0
        )


async def test_end_call_with_handle_time(store: AcdStore) -> None:
    await store.put_agent(_agent("a1"))
    await store.put_agent(_agent("a2", queues=("r",)))
    await store.add_entry(_entry(1, 0.0), JUMP)
    await store.add_entry(_entry(2, 0.0, queue="r"), JUMP)
    await store.try_offer("n1.0001", "a1", 1.0, 16.0)
    await store.claim_bridge("n1.0001", "a1", 10.0)
    await store.try_offer("n1.0002", "a2", 1.0, 16.0)
    await store.claim_bridge("n1.0002", "a2", 10.0)

    wrapping = await store.end_call("a1", 25.1, {"q": 5.0})
    freed = await store.end_call("a2", 12.0, {"q": 5.0})

    assert wrapping is not None
    assert wrapping.state is AgentState.WRAP_UP
    assert wrapping.wrap_until == 25.1 + 5.0
    assert wrapping.calls == 1
    assert freed is not None
    assert freed.state is AgentState.AVAILABLE
    assert freed.wrap_until == 12.0
    assert await store.handle_times("q") == [25.1 - 10.0]
    assert await store.handle_times("r") == [2.0]
    assert await store.end_call("a1", 30.0, {"q": 5.0}) is None
    assert await store.get_agent("a1") == wrapping


async def test_claim_name_records_first_heartbeat(store: AcdStore) -> None:
    assert await store.claim_name("cc1", "cc1.aaaaaa", 100.0, node_ttl_s=10.0) is None

    # The claim is the node's first heartbeat, so the reaper sees the node as alive.
    await store.reap(105.0, node_ttl_s=10.0, away_after=0)
    assert await store.claim_name("cc1", "cc1.bbbbbb", 105.0, node_ttl_s=10.0) == (
        "cc1.aaaaaa",
        100.0,
    )


async def test_claim_name_refused_while_holder_beats(store: AcdStore) -> None:
    assert await store.claim_name("cc1", "cc1.aaaaaa", 100.0, node_ttl_s=10.0) is None
    await store.heartbeat("cc1.aaaaaa", 108.0)

    assert await store.claim_name("cc1", "cc1.bbbbbb", 118.0, node_ttl_s=10.0) == (
        "cc1.aaaaaa",
        108.0,
    )
    # Another name on the same store is free.
    assert await store.claim_name("cc2", "cc2.cccccc", 118.0, node_ttl_s=10.0) is None


async def test_claim_name_taken_over_from_dead_holder(store: AcdStore) -> None:
    assert await store.claim_name("cc1", "cc1.aaaaaa", 100.0, node_ttl_s=10.0) is None

    assert await store.claim_name("cc1", "cc1.bbbbbb", 110.5, node_ttl_s=10.0) is None
    assert await store.claim_name("cc1", "cc1.cccccc", 111.0, node_ttl_s=10.0) == (
        "cc1.bbbbbb",
        110.5,
    )


async def test_claim_name_free_after_holder_reaped(store: AcdStore) -> None:
    assert await store.claim_name("cc1", "cc1.aaaaaa", 100.0, node_ttl_s=10.0) is None
    await store.reap(120.0, node_ttl_s=10.0, away_after=0)

    assert await store.claim_name("cc1", "cc1.bbbbbb", 120.0, node_ttl_s=10.0) is None


async def test_release_name_lets_restart_claim(store: AcdStore) -> None:
    assert await store.claim_name("cc1", "cc1.aaaaaa", 100.0, node_ttl_s=10.0) is None
    # Only the holder can release the name.
    await store.release_name("cc1", "cc1.bbbbbb")
    assert await store.claim_name("cc1", "cc1.bbbbbb", 101.0, node_ttl_s=10.0) is not None

    await store.release_name("cc1", "cc1.aaaaaa")
    assert await store.claim_name("cc1", "cc1.bbbbbb", 101.0, node_ttl_s=10.0) is None
