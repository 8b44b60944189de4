"""Crash test: three node processes on one redis-server, killed with SIGKILL while dispatching.

The test process is a fourth, stable node (`trunk`) holding 440 of the 500 waiting callers;
each node process holds 20 callers of its own and 5 agents. Nodes are killed at random
moments (bounded count and time) and restarted as new nodes. Expected: every trunk caller is
bridged exactly once, no entry is bridged twice, every caller keeps its sort key whenever it
is seen in the queue, and the callers of killed nodes are either bridged or closed out by the
reaper, with nothing left in the queue.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from acd.clock import SystemClock
from acd.events import AcdEvent, CallerLeft
from acd.model import AcdSettings, QueueSettings
from acd.service import Acd
from acd.store.redis import RedisStore
from tests.acd.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
TRUNK_CALLERS = 440
NODE_NAMES = ("n1", "n2", "n3")
MAX_KILLS = 6
KILL_PHASE_S = 8.0
DRAIN_TIMEOUT_S = 40.0
# A restarted node logs in an agent that its killed run had busy only once a reaper closes that
# run out, up to `node_ttl_s` (3 s) later, so its start may take that much longer.
READY_TIMEOUT_S = 15.0


class NodeProcess:
    def __init__(self, name: str, url: str, prefix: str, log_dir: Path) -> None:
        self.name = name
        self.url = url
        self.prefix = prefix
        self.log_dir = log_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log_path = self.log_dir / f"{self.name}-{self.starts}.log"
        with log_path.open("wb") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.acd.crash_node", self.url, self.prefix, self.name],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signum)
            self.process.wait(timeout=10)


async def _wait_ready(store: RedisStore, name: str, previous: str | None) -> str:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        node_id = await store.client.get(store.prefix + f"test:ready:{name}")
        if node_id is not None and node_id != previous:
            return str(node_id)
        await asyncio.sleep(0.05)
    raise AssertionError(f"node {name} did not get ready within {READY_TIMEOUT_S} s")


async def _sample_keys(store: RedisStore, first_seen: dict[str, int]) -> None:
    """Check that every entry in the queue still has the key it had when first seen."""
    for set_name in ("w:q", "o:q"):
        for entry_id, score in await store.client.zrange(
            store.prefix + set_name, 0, -1, withscores=True
        ):
            key = int(score)
            assert first_seen.setdefault(entry_id, key) == key, f"{entry_id} changed place"


async def _queue_empty(store: RedisStore) -> bool:
    return await store.queue_length("q") == 0


@pytest.mark.slow
@pytest.mark.peer
@pytest.mark.timeout(180)
async def test_node_kills_lose_and_double_nothing(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    prefix = f"crash-{uuid.uuid4().hex[:8]}:"
    store = await RedisStore.connect(redis_server.url, prefix=prefix)
    settings = AcdSettings(
        queues={"q": QueueSettings(name="q", announce_first_s=None)},
        node_ttl_s=3.0,
        heartbeat_every_s=0.5,
        poll_every_s=0.05,
        away_after_missed=0,
    )
    trunk = Acd(store, SystemClock(), settings, node_id="trunk")
    abandoned_seen: list[str] = []

    def on_event(event: AcdEvent) -> None:
        if isinstance(event, CallerLeft):
            abandoned_seen.append(event.call_id)

    trunk.events.listen(on_event)
    nodes = [NodeProcess(name, redis_server.url, prefix, tmp_path) for name in NODE_NAMES]
    rng = random.Random(7)
    killed: list[str] = []
    live: dict[str, str] = {}
    first_seen: dict[str, int] = {}
    try:
        await store.heartbeat("trunk", trunk.clock.now())
        trunk_calls = [f"trunk-{number:03d}" for number in range(TRUNK_CALLERS)]
        for call_id in trunk_calls:
            await trunk.enqueue(call_id, "q")
        trunk.start()
        for node in nodes:
            node.start()
        for node in nodes:
            live[node.name] = await _wait_ready(store, node.name, None)
        await _sample_keys(store, first_seen)

        kill_until = time.monotonic() + KILL_PHASE_S
        while len(killed) < MAX_KILLS and time.monotonic() < kill_until:
            await asyncio.sleep(rng.uniform(0.3, 0.9))
            await _sample_keys(store, first_seen)
            if await _queue_empty(store):
                break
            victim = rng.choice(nodes)
            victim.signal(signal.SIGKILL)
            killed.append(live.pop(victim.name))
            victim.start()
            live[victim.name] = await _wait_ready(store, victim.name, killed[-1])

        drain_until = time.monotonic() + DRAIN_TIMEOUT_S
        while not await _queue_empty(store):
            assert time.monotonic() < drain_until, "queue did not drain"
            await _sample_keys(store, first_seen)
            await asyncio.sleep(0.2)
    finally:
        for node in nodes:
            node.signal(signal.SIGTERM)
        await trunk.close()

    bridges = await store.client.lrange(prefix + "test:bridges", 0, -1)
    bridged_entries = [record.split("|")[0] for record in bridges]
    bridged_calls = {record.split("|")[1] for record in bridges}

    async def is_bridged(call_id: str, entry_ids: dict[str, str]) -> bool:
        if call_id in bridged_calls:
            return True
        entry_id = entry_ids.get(call_id)
        status = (
            None
            if entry_id is None
            else await store.client.hget(prefix + f"e:{entry_id}", "status")
        )
        return status == "bridged"

    entry_ids: dict[str, str] = {}
    for entry_id in first_seen:
        call_id = await store.client.hget(prefix + f"e:{entry_id}", "call")
        if call_id is not None:
            entry_ids[str(call_id)] = entry_id

    assert len(killed) >= 1
    assert len(bridged_entries) == len(set(bridged_entries)), "an entry was bridged twice"
    assert len(bridges) == len(bridged_calls), "a call was bridged twice"
    missing = [c for c in trunk_calls if not await is_bridged(c, entry_ids)]
    assert missing == [], f"trunk callers lost: {missing[:10]}"

    closed_out = 0
    for node_id in killed:
        for call_id in await store.client.smembers(prefix + f"test:own:{node_id}"):
            if await is_bridged(call_id, entry_ids):
                continue
            assert await store.entry_id_for_call(call_id) is None, f"{call_id} still queued"
            closed_out += 1
    assert closed_out >= 1, "no caller of a killed node was closed out by the reaper"
    for node_id in live.values():
        for call_id in await store.client.smembers(prefix + f"test:own:{node_id}"):
            assert await is_bridged(call_id, entry_ids), f"{call_id} of a live node lost"
    assert await store.next_lease_expiry() is None
    offers = int(await store.client.get(prefix + "test:offers") or 0)
    assert offers > len(bridges), "no offer was ever delivered again"
    refused = int(await store.client.get(prefix + "test:refused_claims") or 0)
    assert refused >= 1, "no late answer was refused"
    await store.delete_all()
    await store.close()
