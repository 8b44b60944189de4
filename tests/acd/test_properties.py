"""Property tests: random arrivals, priority changes, departures and service on both stores.

Checked for every run: no caller is lost or offered twice, callers of one priority are served
in join order, and a normal caller is passed at most `max_passes` times and never by a caller
who joined more than `max_jump_s` after it.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acd.clock import VirtualClock
from acd.events import AcdEvent, CallerOffered
from acd.model import AcdSettings, AgentState, JumpSettings, QueueSettings
from acd.service import Acd
from acd.store.base import AcdStore
from acd.store.memory import MemoryStore
from acd.store.redis import RedisStore
from tests.acd.redis_server import RedisServer

JUMP = JumpSettings(credit_per_priority_s=30.0, max_jump_s=90.0, max_passes=3)
AGENTS = ("a1", "a2")

GAPS = (0.0, 0.5, 1.0, 3.0, 10.0, 45.0, 95.0)
KINDS = ("arrive", "arrive", "arrive", "serve", "bump", "leave")


def _operations(rng: random.Random, count: int) -> list[tuple[object, ...]]:
    """Draw uniformly: hypothesis's own list strategies favour short, low-priority runs that
    rarely push a caller to the pass limit."""
    ops: list[tuple[object, ...]] = []
    for _ in range(count):
        kind = rng.choice(KINDS)
        gap = rng.choice(GAPS)
        if kind == "arrive":
            ops.append((kind, gap, rng.randint(0, 3)))
        elif kind == "serve":
            ops.append((kind, gap, rng.randint(1, 2)))
        elif kind == "bump":
            ops.append((kind, gap, rng.randint(0, 40), rng.randint(0, 4)))
        else:
            ops.append((kind, gap, rng.randint(0, 40)))
    return ops


@dataclass
class Run:
    joined: dict[str, float] = field(default_factory=dict)
    priority: dict[str, int] = field(default_factory=dict)
    bumped: set[str] = field(default_factory=set)
    left: set[str] = field(default_factory=set)
    offered: list[str] = field(default_factory=list)
    served: list[str] = field(default_factory=list)
    waiting_at_end: list[str] = field(default_factory=list)


async def _play(store: AcdStore, ops: list[tuple[object, ...]]) -> Run:
    clock = VirtualClock(0.0)
    queue = QueueSettings(name="q", ring_timeout_s=1e6, announce_first_s=None)
    acd = Acd(store, clock, AcdSettings(queues={"q": queue}, jump=JUMP), node_id="p")
    run = Run()
    new_offers: list[CallerOffered] = []

    def on_event(event: AcdEvent) -> None:
        if isinstance(event, CallerOffered):
            new_offers.append(event)
            run.offered.append(event.offer.call_id)

    acd.events.listen(on_event)
    for agent in AGENTS:
        await acd.login(agent, ["q"], state=AgentState.AWAY, reason="setup")
    calls: list[str] = []
    for op in ops:
        clock.advance(float(op[1]))  # type: ignore[arg-type]
        if op[0] == "arrive":
            call_id = f"c{len(calls):03d}"
            calls.append(call_id)
            run.joined[call_id] = clock.now()
            run.priority[call_id] = int(op[2])  # type: ignore[call-overload]
            await acd.enqueue(call_id, "q", int(op[2]), reason="vip")  # type: ignore[call-overload]
        elif op[0] == "bump" and calls:
            call_id = calls[int(op[2]) % len(calls)]  # type: ignore[call-overload]
            if await store.entry_id_for_call(call_id) is not None:
                run.bumped.add(call_id)
                await acd.update_priority(call_id, int(op[3]), "sentiment")  # type: ignore[call-overload]
        elif op[0] == "leave" and calls:
            call_id = calls[int(op[2]) % len(calls)]  # type: ignore[call-overload]
            if await acd.leave(call_id):
                run.left.add(call_id)
        elif op[0] == "serve":
            for agent in AGENTS[: int(op[2])]:  # type: ignore[call-overload]
                await acd.set_state(agent, AgentState.AVAILABLE)
                await acd.step()
                for event in new_offers:
                    assert await acd.answer_offer(event.offer.agent_id, event.offer.entry_id)
                    run.served.append(event.offer.call_id)
                    await acd.hangup(event.offer.agent_id)
                new_offers.clear()
                await acd.set_state(agent, AgentState.AWAY, "break")
        await acd.step()
    run.waiting_at_end = [entry.call_id for entry in await store.queue_entries("q")]
    return run


def _check(run: Run) -> None:
    everyone = set(run.joined)
    served, left, waiting = set(run.served), run.left, set(run.waiting_at_end)

    assert len(run.offered) == len(set(run.offered)), "a caller was offered twice"
    assert len(run.served) == len(served), "a caller was served twice"
    assert served | left | waiting == everyone, "a caller was lost"
    assert not (served & left) and not (served & waiting) and not (left & waiting)

    order = run.served + run.waiting_at_end
    rank = {call_id: index for index, call_id in enumerate(order)}
    steady = [c for c in order if c not in run.bumped]
    for earlier in steady:
        for later in steady:
            same = run.priority[earlier] == run.priority[later]
            if same and run.joined[earlier] < run.joined[later]:
                assert rank[earlier] < rank[later], f"{later} served before {earlier}"

    for normal in steady:
        if run.priority[normal] != 0:
            continue
        jumpers = [
            other for other in order[: rank[normal]] if run.joined[other] > run.joined[normal]
        ]
        assert len(jumpers) <= JUMP.max_passes, f"{normal} passed by {jumpers}"
        for jumper in jumpers:
            assert run.joined[jumper] - run.joined[normal] <= JUMP.max_jump_s


@settings(max_examples=300, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(10, 80))
def test_properties_memory(rng: random.Random, count: int) -> None:
    _check(asyncio.run(_play(MemoryStore(), _operations(rng, count))))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.randoms(use_true_random=False), st.integers(10, 80))
def test_properties_redis(redis_server: RedisServer, rng: random.Random, count: int) -> None:
    ops = _operations(rng, count)

    async def play() -> Run:
        store = await RedisStore.connect(redis_server.url, prefix=f"p-{uuid.uuid4().hex[:8]}:")
        try:
            return await _play(store, ops)
        finally:
            await store.delete_all()
            await store.close()

    _check(asyncio.run(play()))
