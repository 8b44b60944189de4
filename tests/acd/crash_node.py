"""One ACD node process for the crash test: `python -m tests.acd.crash_node URL PREFIX NAME`.

The node enqueues its own callers, logs in its agents, then runs the real ACD loop on the wall
clock. Each offer is handled like a softphone would: ring a little, sometimes never answer or
answer only after the lease expired (so the caller is offered again and the late answer must be
refused), answer with `answer_offer` (the
claim_bridge), record the bridge in Redis, talk a little, hang up. When everything is set up it
writes its node id to `<PREFIX>test:ready:<NAME>`, so the test kills it only from then on.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import uuid

from acd.agents import AgentBusyError
from acd.clock import SystemClock
from acd.model import AcdSettings, Offer, QueueSettings
from acd.service import Acd
from acd.store.redis import RedisStore

QUEUE = QueueSettings(name="q", ring_timeout_s=2.0, announce_first_s=None, announce_every_s=None)
SETTINGS = AcdSettings(
    queues={"q": QUEUE},
    node_ttl_s=3.0,
    heartbeat_every_s=0.5,
    poll_every_s=0.05,
    away_after_missed=0,
)
UNANSWERED_SHARE = 0.05
LATE_SHARE = 0.05
LOGIN_RETRY_S = 0.1


async def handle_offer(acd: Acd, store: RedisStore, offer: Offer, rng: random.Random) -> None:
    prefix = store.prefix
    await store.client.incr(prefix + "test:offers")
    await asyncio.sleep(rng.uniform(0.0, 0.05))
    draw = rng.random()
    if draw < UNANSWERED_SHARE:
        return
    if draw < UNANSWERED_SHARE + LATE_SHARE:
        await asyncio.sleep(QUEUE.ring_timeout_s + 0.5)
    if not await acd.answer_offer(offer.agent_id, offer.entry_id):
        await store.client.incr(prefix + "test:refused_claims")
        return
    record = f"{offer.entry_id}|{offer.call_id}|{offer.agent_id}|{acd.node_id}"
    await store.client.rpush(prefix + "test:bridges", record)
    await asyncio.sleep(rng.uniform(0.05, 0.15))
    await acd.hangup(offer.agent_id)


async def log_in_again(acd: Acd, agent_id: str) -> None:
    """Log in an agent of the killed run of this node, once that run has released it.

    A login never replaces a record with an offer or a call, so an agent that the killed run
    had offered a caller or bridged waits until a reaper closes that run out (`node_ttl_s`).
    """
    while True:
        try:
            await acd.login(agent_id, ["q"])
            return
        except AgentBusyError:
            await asyncio.sleep(LOGIN_RETRY_S)


async def run(url: str, prefix: str, name: str, agents: int, own_callers: int) -> None:
    store = await RedisStore.connect(url, prefix=prefix)
    node_id = f"{name}-{uuid.uuid4().hex[:8]}"
    acd = Acd(store, SystemClock(), SETTINGS, node_id=node_id)
    rng = random.Random()
    acd.start()
    for number in range(own_callers):
        call_id = f"{node_id}-own-{number:03d}"
        await acd.enqueue(call_id, "q")
        await store.client.sadd(prefix + f"test:own:{node_id}", call_id)
    for number in range(agents):
        await log_in_again(acd, f"{name}-agent-{number}")
    await store.client.set(prefix + f"test:ready:{name}", node_id)
    tasks: set[asyncio.Task[None]] = set()
    async for offer in acd.offers():
        task = asyncio.create_task(handle_offer(acd, store, offer, rng))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("prefix")
    parser.add_argument("name")
    parser.add_argument("--agents", type=int, default=5)
    parser.add_argument("--own-callers", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(run(args.url, args.prefix, args.name, args.agents, args.own_callers))


if __name__ == "__main__":
    main()
