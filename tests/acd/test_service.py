"""The `Acd` facade on a virtual clock, against both stores."""

from __future__ import annotations

import logging
from typing import TypeVar

import pytest

from acd.agents import AgentBusyError, AgentStateError
from acd.clock import VirtualClock
from acd.events import (
    AcdEvent,
    AgentStateChanged,
    CallbackRequested,
    CallerAnswered,
    CallerJumped,
    CallerLeft,
    CallerOffered,
    OfferReturned,
    PositionChanged,
)
from acd.model import AcdSettings, AgentState, JumpSettings, OfferKind, QueueSettings, Strategy
from acd.service import Acd, NodeNameTaken
from acd.store.base import AcdStore

_Event = TypeVar("_Event")


def _settings(**queue_options: object) -> AcdSettings:
    sales = QueueSettings(name="sales", **queue_options)  # type: ignore[arg-type]
    support = QueueSettings(name="support")
    return AcdSettings(
        queues={"sales": sales, "support": support},
        jump=JumpSettings(credit_per_priority_s=60.0, max_jump_s=600.0, max_passes=5),
    )


class Harness:
    def __init__(self, store: AcdStore, settings: AcdSettings) -> None:
        self.clock = VirtualClock(1000.0)
        self.acd = Acd(store, self.clock, settings, node_id="node-a")
        self.events: list[AcdEvent] = []
        self.acd.events.listen(self.events.append)

    def of_type(self, kind: type[_Event]) -> list[_Event]:
        return [event for event in self.events if isinstance(event, kind)]

    def offers(self) -> list[tuple[str, str]]:
        return [(e.offer.call_id, e.offer.agent_id) for e in self.of_type(CallerOffered)]

    async def advance(self, seconds: float) -> None:
        """Advance the clock, stepping at every due timer or lease on the way."""
        until = self.clock.now() + seconds
        while True:
            due = await self.acd.next_due()
            if due is None or due > until:
                break
            self.clock.advance_to(max(due, self.clock.now()))
            await self.acd.step()
        self.clock.advance_to(until)
        await self.acd.step()


def harness(store: AcdStore, **queue_options: object) -> Harness:
    return Harness(store, _settings(**queue_options))


async def test_offer_answer_hangup_wrap_up(store: AcdStore) -> None:
    h = harness(store, wrap_up_s=30.0)
    await h.acd.enqueue("call-1", "sales")
    await h.acd.login("alice", ["sales"])

    await h.acd.step()
    offer = h.of_type(CallerOffered)[0].offer
    assert (offer.call_id, offer.agent_id, offer.kind) == ("call-1", "alice", OfferKind.CALL)
    assert await h.acd.answer_offer("alice", offer.entry_id) is True
    assert await h.acd.answer_offer("alice", offer.entry_id) is False
    await h.advance(120.0)
    agent = await h.acd.hangup("alice")

    assert agent is not None and agent.state is AgentState.WRAP_UP
    assert [e.waited_s for e in h.of_type(CallerAnswered)] == [0.0]
    assert [e.within_service_level for e in h.of_type(CallerAnswered)] == [True]
    await h.acd.enqueue("call-2", "sales")
    await h.advance(29.0)
    assert h.offers() == [("call-1", "alice")]
    await h.advance(1.0)
    assert h.offers() == [("call-1", "alice"), ("call-2", "alice")]
    assert await store.handle_times("sales") == [120.0]


async def test_offer_stream_yields_offers(store: AcdStore) -> None:
    h = harness(store)
    await h.acd.login("alice", ["sales"])
    await h.acd.enqueue("call-1", "sales")
    await h.acd.step()

    stream = h.acd.offers()
    offer = await anext(stream)

    assert offer.call_id == "call-1"
    assert offer.node_id == "node-a"
    with pytest.raises(ValueError, match="not node-b"):
        await anext(h.acd.offers("node-b"))


async def test_ring_timeout_offers_next_agent(store: AcdStore) -> None:
    h = harness(store, strategy=Strategy.ROUND_ROBIN, ring_timeout_s=15.0)
    await h.acd.login("alice", ["sales"])
    await h.acd.login("bob", ["sales"])
    await h.acd.enqueue("call-1", "sales")
    await h.acd.enqueue("call-2", "sales")
    await h.acd.step()
    assert h.offers() == [("call-1", "alice"), ("call-2", "bob")]
    answered = h.of_type(CallerOffered)[1].offer
    assert await h.acd.answer_offer("bob", answered.entry_id)

    await h.advance(15.0)

    returned = h.of_type(OfferReturned)
    assert [(e.call_id, e.agent_id, e.missed) for e in returned] == [("call-1", "alice", True)]
    alice = await store.get_agent("alice")
    assert alice is not None and alice.missed_offers == 1
    assert h.offers()[-1] == ("call-1", "alice")
    assert (await h.acd.position("call-1")).position == 1


async def test_missed_offer_goes_to_other_agent(store: AcdStore) -> None:
    h = harness(store, ring_timeout_s=10.0)
    await h.acd.login("alice", ["sales"])
    await h.acd.enqueue("call-1", "sales")
    await h.acd.step()
    await h.acd.login("bob", ["sales"])

    await h.advance(10.0)

    assert h.offers() == [("call-1", "alice"), ("call-1", "bob")]


async def test_no_offers_while_away(store: AcdStore) -> None:
    h = harness(store)
    await h.acd.login("alice", ["sales", "support"], state=AgentState.AWAY, reason="lunch")
    await h.acd.enqueue("call-1", "sales")
    await h.acd.enqueue("call-2", "support")

    await h.advance(60.0)
    assert h.offers() == []
    await h.acd.set_state("alice", AgentState.AVAILABLE)
    await h.acd.step()

    assert h.offers() == [("call-1", "alice")]
    with pytest.raises(AgentStateError):
        await h.acd.set_state("alice", AgentState.AWAY, "break")


async def test_longest_idle_agent_first(store: AcdStore) -> None:
    h = harness(store, strategy=Strategy.LONGEST_IDLE)
    await h.acd.login("late", ["sales"])
    await h.acd.login("early", ["sales"])
    await store.update_agent("early", frozenset({AgentState.AVAILABLE}), {"idle_since": 10.0})

    await h.acd.enqueue("call-1", "sales")
    await h.acd.step()

    assert h.offers() == [("call-1", "early")]


async def test_fewest_calls_agent_first(store: AcdStore) -> None:
    h = harness(store, strategy=Strategy.FEWEST_CALLS)
    for name in ("busy", "fresh"):
        await h.acd.login(name, ["sales"])
    await h.acd.enqueue("call-1", "sales")
    await h.acd.step()
    first_agent = h.offers()[0][1]
    await h.acd.answer_offer(first_agent, h.of_type(CallerOffered)[0].offer.entry_id)
    await h.acd.hangup(first_agent)

    await h.acd.enqueue("call-2", "sales")
    await h.acd.step()

    assert h.offers()[1][1] != first_agent


async def test_skills_weighted_prefers_best_match(store: AcdStore) -> None:
    h = harness(store, strategy=Strategy.SKILLS_WEIGHTED)
    await h.acd.login("novice", ["sales"], {"spanish": 2})
    await h.acd.login("expert", ["sales"], {"spanish": 9})
    await h.acd.login("none", ["sales"])

    await h.acd.enqueue("call-1", "sales", skills={"spanish": 1})
    await h.acd.step()

    assert h.offers() == [("call-1", "expert")]


async def test_skill_gap_does_not_block_queue(store: AcdStore) -> None:
    h = harness(store)
    await h.acd.enqueue("call-1", "sales", skills={"german": 5})
    await h.acd.enqueue("call-2", "sales")
    await h.acd.login("alice", ["sales"], {"german": 2})

    await h.acd.step()

    assert h.offers() == [("call-2", "alice")]


async def test_priority_update_resorts_and_logs_reason(
    store: AcdStore, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness(store)
    caplog.set_level(logging.DEBUG, logger="queues")
    await h.acd.enqueue("call-1", "sales", context={"caller": "+15550100"})
    h.clock.advance(5.0)
    await h.acd.enqueue("call-2", "sales", context={"caller": "+15550199"})

    info = await h.acd.update_priority("call-2", 2, "payment_intent")

    assert info.position == 1
    jumps = h.of_type(CallerJumped)
    assert [(j.call_id, j.reason, j.passed) for j in jumps] == [("call-2", "payment_intent", 1)]
    assert (await h.acd.position("call-1")).jumped_ahead == 1
    assert "payment_intent" in caplog.text
    assert "+1555" not in caplog.text
    with pytest.raises(ValueError, match="invalid reason"):
        await h.acd.update_priority("call-2", 3, "Caller said: refund!")


async def test_announcements_follow_schedule(store: AcdStore) -> None:
    h = harness(store, announce_first_s=30.0, announce_every_s=60.0)
    await h.acd.enqueue("call-1", "sales")
    await h.acd.enqueue("call-2", "sales")

    await h.advance(150.0)

    times = [e.at - 1000.0 for e in h.of_type(PositionChanged) if e.call_id == "call-2"]
    assert times == [30.0, 90.0, 150.0]
    assert {e.position for e in h.of_type(PositionChanged) if e.call_id == "call-2"} == {2}


async def test_max_wait_overflows(store: AcdStore) -> None:
    h = harness(store, max_wait_s=120.0, overflow_target="voicemail")
    await h.acd.enqueue("call-1", "sales")

    await h.advance(119.0)
    assert h.of_type(CallerLeft) == []
    await h.advance(1.0)

    left = h.of_type(CallerLeft)
    assert [(e.call_id, e.reason, e.overflow_target, e.abandoned) for e in left] == [
        ("call-1", "max_wait", "voicemail", False)
    ]
    assert await store.queue_length("sales") == 0


async def test_max_length_returns_overflow_ticket(store: AcdStore) -> None:
    h = harness(store, max_length=1, overflow_target="support")
    first = await h.acd.enqueue("call-1", "sales")

    second = await h.acd.enqueue("call-2", "sales")

    assert first.queued and first.position == 1
    assert not second.queued
    assert second.overflow_target == "support"


async def test_leave_during_offer_frees_agent(store: AcdStore) -> None:
    h = harness(store)
    await h.acd.login("alice", ["sales"])
    await h.acd.enqueue("call-1", "sales")
    await h.acd.step()

    assert await h.acd.leave("call-1") is True
    assert await h.acd.leave("call-1") is False

    left = h.of_type(CallerLeft)
    assert [(e.reason, e.abandoned) for e in left] == [("hangup", True)]
    alice = await store.get_agent("alice")
    assert alice is not None and alice.state is AgentState.AVAILABLE
    assert [e.missed for e in h.of_type(OfferReturned)] == [False]


async def test_callback_reserves_agent_at_head(store: AcdStore) -> None:
    h = harness(store)
    await h.acd.enqueue("call-1", "sales")
    await h.acd.enqueue("call-2", "sales")
    info = await h.acd.request_callback("call-1", {"number": "+15550100"})
    assert info.position == 1

    await h.acd.login("alice", ["sales"])
    await h.acd.step()

    requests = h.of_type(CallbackRequested)
    assert [(r.offer.call_id, r.offer.agent_id) for r in requests] == [("call-1", "alice")]
    assert requests[0].offer.kind is OfferKind.CALLBACK
    assert requests[0].offer.context["number"] == "+15550100"
    assert await h.acd.answer_offer("alice", requests[0].offer.entry_id) is True


async def test_eta_uses_staff_and_handle_time(store: AcdStore) -> None:
    h = harness(store, default_handle_time_s=100.0)
    for number in range(4):
        await h.acd.enqueue(f"call-{number}", "sales")
    assert (await h.acd.position("call-3")).eta_s is None

    await h.acd.login("alice", ["sales"], state=AgentState.AWAY, reason="setup")
    await h.acd.login("bob", ["sales"], state=AgentState.AWAY, reason="setup")
    await store.update_agent("alice", frozenset({AgentState.AWAY}), {"state": AgentState.ON_CALL})
    h.clock.advance(2.0)
    one_agent = (await h.acd.position("call-3")).eta_s
    await store.update_agent("bob", frozenset({AgentState.AWAY}), {"state": AgentState.ON_CALL})
    h.clock.advance(2.0)
    two_agents = (await h.acd.position("call-3")).eta_s

    assert one_agent == 350.0
    assert two_agents == 175.0


async def test_logout_returns_offer(store: AcdStore) -> None:
    h = harness(store)
    await h.acd.login("alice", ["sales"])
    await h.acd.enqueue("call-1", "sales")
    await h.acd.step()

    assert await h.acd.logout("alice") is True

    changes = [(e.old, e.new) for e in h.of_type(AgentStateChanged) if e.agent_id == "alice"]
    assert changes[-1] == (AgentState.OFFERED, AgentState.LOGGED_OUT)
    assert (await h.acd.position("call-1")).position == 1


async def test_login_takes_agent_over_from_other_node(store: AcdStore) -> None:
    h = harness(store)
    other = Acd(store, h.clock, h.acd.settings, node_id="node-b")
    await other.login("alice", ["sales"])

    await h.acd.login("alice", ["sales"], state=AgentState.AWAY, reason="away")

    agent = await store.get_agent("alice")
    assert agent is not None
    assert agent.node_id == "node-a"
    assert agent.state is AgentState.AWAY
    assert await store.agents("node-b") == []


async def test_login_rejected_while_busy_elsewhere(store: AcdStore) -> None:
    h = harness(store)
    other = Acd(store, h.clock, h.acd.settings, node_id="node-b")
    await other.login("alice", ["sales"])
    await h.acd.enqueue("call-1", "sales")
    await other.step()
    offer = await other.next_offer()
    assert await other.answer_offer("alice", offer.entry_id)

    with pytest.raises(AgentBusyError, match="on_call on node node-b") as raised:
        await h.acd.login("alice", ["sales"])

    assert raised.value.node_id == "node-b"
    agent = await store.get_agent("alice")
    assert agent is not None
    assert agent.node_id == "node-b"
    assert agent.state is AgentState.ON_CALL
    assert not [e for e in h.of_type(AgentStateChanged) if e.agent_id == "alice"]


async def test_unknown_queue_rejected(store: AcdStore) -> None:
    h = harness(store)

    with pytest.raises(KeyError, match="unknown queue 'nope'"):
        await h.acd.enqueue("call-1", "nope")
    with pytest.raises(KeyError, match="unknown queue 'nope'"):
        await h.acd.login("alice", ["nope"])


async def test_position_rise_after_priority_change_is_reported(store: AcdStore) -> None:
    h = harness(store)
    await h.acd.enqueue("early", "sales")
    h.clock.advance(5.0)
    await h.acd.enqueue("vip", "sales", 2, reason="vip")
    assert (await h.acd.announce("vip")).position == 1

    await h.acd.update_priority("early", 3, "payment_intent")
    info = await h.acd.announce("vip")

    assert info.position == 2
    assert info.jumped_ahead == 1
    assert (await h.acd.announce("vip")).jumped_ahead == 0


async def test_answer_after_service_level_flagged(store: AcdStore) -> None:
    h = harness(store, service_level_s=20.0, announce_first_s=None)
    await h.acd.enqueue("call-1", "sales")
    await h.advance(30.0)
    await h.acd.login("alice", ["sales"])
    await h.acd.step()

    offer = h.of_type(CallerOffered)[0].offer
    assert await h.acd.answer_offer("alice", offer.entry_id)

    answered = h.of_type(CallerAnswered)
    assert [e.waited_s for e in answered] == [30.0]
    assert [e.within_service_level for e in answered] == [False]


async def test_requeued_callback_keeps_place_as_callback(store: AcdStore) -> None:
    h = harness(store)
    await h.acd.enqueue("call-1", "sales")
    h.clock.advance_to(1010.0)
    await h.acd.enqueue("call-2", "sales")
    await h.acd.request_callback("call-1", {"callback_number": "+15550100"})
    await h.acd.login("alice", ["sales"])
    await h.acd.step()
    first = h.of_type(CallbackRequested)[0].offer
    assert await h.acd.answer_offer("alice", first.entry_id) is True
    await h.acd.hangup("alice")

    ticket = await h.acd.enqueue(
        "call-1",
        "sales",
        context=dict(first.context),
        reason="callback",
        joined_at=1000.0,
        callback=True,
    )
    assert ticket.position == 1
    assert ticket.eta_s is None
    await h.advance(40.0)

    requests = h.of_type(CallbackRequested)
    assert [r.offer.call_id for r in requests] == ["call-1", "call-1"]
    assert requests[1].offer.kind is OfferKind.CALLBACK
    assert requests[1].offer.context["callback_number"] == "+15550100"
    assert ("call-1", "alice") not in h.offers()
    assert [e.call_id for e in h.of_type(PositionChanged)] == ["call-2"] * len(
        h.of_type(PositionChanged)
    )


async def test_claim_name_refused_while_holder_beats(store: AcdStore) -> None:
    h = harness(store)
    await h.acd.claim_name("cc1")
    h.clock.advance_to(1004.0)
    second = Acd(store, h.clock, h.acd.settings, node_id="node-b")

    with pytest.raises(NodeNameTaken, match=r"'cc1' is held by live node node-a") as raised:
        await second.claim_name("cc1")

    assert raised.value.holder == "node-a"
    assert raised.value.heartbeat_age_s == 4.0


async def test_claim_name_taken_over_after_ttl(store: AcdStore) -> None:
    h = harness(store)
    await h.acd.claim_name("cc1")
    h.clock.advance_to(1000.0 + h.acd.settings.node_ttl_s + 0.5)
    second = Acd(store, h.clock, h.acd.settings, node_id="node-b")

    await second.claim_name("cc1")

    third = Acd(store, h.clock, h.acd.settings, node_id="node-c")
    with pytest.raises(NodeNameTaken, match="node-b"):
        await third.claim_name("cc1")


async def test_release_name_frees_it_at_once(store: AcdStore) -> None:
    h = harness(store)
    await h.acd.claim_name("cc1")
    await h.acd.release_name()
    second = Acd(store, h.clock, h.acd.settings, node_id="node-b")

    await second.claim_name("cc1")


async def test_hangup_wrap_up_at_least_page_time(store: AcdStore) -> None:
    h = harness(store)
    await h.acd.enqueue("call-1", "sales")
    await h.acd.login("alice", ["sales"])
    await h.acd.step()
    offer = h.of_type(CallerOffered)[0].offer
    assert await h.acd.answer_offer("alice", offer.entry_id) is True
    await h.acd.enqueue("call-2", "sales")

    agent = await h.acd.hangup("alice", min_wrap_up_s=10.0)

    assert agent is not None
    assert agent.state is AgentState.WRAP_UP
    await h.advance(9.0)
    assert h.offers() == [("call-1", "alice")]
    await h.advance(1.0)
    assert h.offers() == [("call-1", "alice"), ("call-2", "alice")]
