"""The started `Acd` (background work loop on the wall clock), against both stores."""

from __future__ import annotations

import asyncio
from collections import Counter

from acd.clock import SystemClock
from acd.events import AcdEvent, CallerAnswered, CallerOffered
from acd.model import AcdSettings, QueueSettings
from acd.service import Acd
from acd.store.base import AcdStore

QUEUE = QueueSettings(name="q", announce_first_s=None, announce_every_s=None)
SETTINGS = AcdSettings(queues={"q": QUEUE}, poll_every_s=0.05)
CALLERS = 12
OFFER_TIMEOUT_S = 10.0


async def test_running_acd_offers_each_caller_once(store: AcdStore) -> None:
    acd = Acd(store, SystemClock(), SETTINGS, node_id="node-running")
    events: list[AcdEvent] = []
    acd.events.listen(events.append)
    for agent_id in ("a1", "a2", "a3"):
        await acd.login(agent_id, ["q"])
    acd.start()
    try:
        tickets = await asyncio.gather(
            *(acd.enqueue(f"call-{number:02d}", "q") for number in range(CALLERS))
        )
        answered: list[str] = []
        while len(answered) < CALLERS:
            async with asyncio.timeout(OFFER_TIMEOUT_S):
                offer = await acd.next_offer()
            assert await acd.answer_offer(offer.agent_id, offer.entry_id)
            answered.append(offer.call_id)
            await acd.hangup(offer.agent_id)
    finally:
        await acd.close()

    assert all(ticket.entry_id is not None for ticket in tickets)
    assert sorted(answered) == [f"call-{number:02d}" for number in range(CALLERS)]
    offered = Counter(e.offer.call_id for e in events if isinstance(e, CallerOffered))
    assert set(offered.values()) == {1}
    assert len([e for e in events if isinstance(e, CallerAnswered)]) == CALLERS
    assert await store.queue_length("q") == 0
