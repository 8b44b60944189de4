"""Reference measurements for `bench/acd_latency.py`, against the same redis-server.

- `redis_benchmark_bzpopmin`: redis-benchmark's BZPOPMIN, one C client, one round trip per
  request on a pre-filled sorted set, so it never blocks: the round-trip time of a C client.
- `redis_benchmark_ping`: redis-benchmark's PING with one client, the cheapest round trip of
  a C client.
- `round_trip_latency`: one redis-py client on the benchmark's event loop with hiredis, one
  command at a time (PING or ZADD), back to back or at a fixed rate: what one round trip
  costs a Python client. At a fixed rate the process idles between commands, as the node
  of the latency step does between callers, so each reply also pays for waking it up.
- `handoff_latency`: the smallest Python version of "a caller is queued, and a waiting
  consumer takes it": a producer ZADDs a member while a consumer task sits in BZPOPMIN on its
  own connection. Same process, event loop, redis-py and hiredis as the ACD measurement.
- `cycle_throughput`: the least Redis work per served caller with the ACD's shape: agents
  that take the next caller (one script: ZPOPMIN and mark the agent offered), answer (one
  HSET) and hang up (one HSET), all agents concurrently on one client whose connection pool
  has the size that `RedisStore` uses.
"""

from __future__ import annotations

import asyncio
import csv
import io
import shutil
import subprocess
import time
import uuid

import redis.asyncio as aioredis

from acd.store.redis import MAX_CONNECTIONS
from tests.acd.redis_server import RedisServer

REDIS_BENCHMARK_TIMEOUT_S = 120.0

# The offer step of the cycle reference: pop the head caller and mark the agent offered.
TAKE_NEXT = """
local popped = redis.call('ZPOPMIN', KEYS[1])
if #popped == 0 then return false end
redis.call('HSET', KEYS[2], 'state', 'offered', 'entry', popped[1])
return popped[1]
"""


def _redis_benchmark_target(server: RedisServer) -> list[str]:
    binary = shutil.which("redis-benchmark")
    if binary is None:
        raise RuntimeError("redis-benchmark is not installed (Debian package redis-tools)")
    return [binary, "-h", "127.0.0.1", "-p", str(server.port)]


def _redis_benchmark_one_client(
    target: list[str], requests: int, command: list[str]
) -> dict[str, float]:
    """Run `command` `requests` times with one client; return redis-benchmark's CSV row."""
    done = subprocess.run(
        [*target, "-c", "1", "-n", str(requests), "--csv", *command],
        check=True,
        capture_output=True,
        text=True,
        timeout=REDIS_BENCHMARK_TIMEOUT_S,
    )
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    if not rows:
        raise RuntimeError(f"redis-benchmark printed no CSV row: {done.stdout!r}")
    return {name: float(value) for name, value in rows[-1].items() if name != "test"}


def redis_benchmark_bzpopmin(server: RedisServer, requests: int) -> dict[str, float]:
    """Run BZPOPMIN with one client on a pre-filled sorted set; return redis-benchmark's CSV row.

    The set is filled with three times `requests` random members first, so no request blocks.
    """
    target = _redis_benchmark_target(server)
    key = f"bench-{uuid.uuid4().hex[:8]}:z"
    fill = [
        *target,
        *("-c", "4", "-n", str(requests * 3), "-q", "-r", "100000000"),
        *("ZADD", key, "__rand_int__", "m:__rand_int__"),
    ]
    subprocess.run(fill, check=True, capture_output=True, timeout=REDIS_BENCHMARK_TIMEOUT_S)
    row = _redis_benchmark_one_client(target, requests, ["BZPOPMIN", key, "1"])
    subprocess.run([*target, "-n", "1", "DEL", key], check=True, capture_output=True, timeout=30.0)
    return row


def redis_benchmark_ping(server: RedisServer, requests: int) -> dict[str, float]:
    """Run PING with one client; return redis-benchmark's CSV row."""
    return _redis_benchmark_one_client(_redis_benchmark_target(server), requests, ["PING"])


async def round_trip_latency(
    server: RedisServer, command: str, count: int, rate: float | None = None
) -> list[float]:
    """Return the times in ms of `count` PING or ZADD commands sent one at a time by one
    redis-py client, after as many unmeasured ones to warm up. With `rate` (per second) the
    commands start at that rate, else back to back. ZADD adds a new member each time.
    """
    key = f"bench-{uuid.uuid4().hex[:8]}:round-trip"
    client = aioredis.Redis.from_url(server.url, decode_responses=True)
    times: list[float] = []
    first = time.perf_counter()
    try:
        for number in range(2 * count):
            if rate is not None:
                delay = first + number / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            start = time.perf_counter()
            if command == "PING":
                await client.ping()
            elif command == "ZADD":
                await client.zadd(key, {f"m{number:07d}": number})
            else:
                raise ValueError(f"unsupported command {command!r}: expected PING or ZADD")
            if number >= count:
                times.append((time.perf_counter() - start) * 1000.0)
    finally:
        await client.delete(key)
        await client.aclose()
    return times


async def handoff_latency(
    server: RedisServer, count: int, rate: float, max_s: float
) -> list[float]:
    """Return ZADD -> BZPOPMIN-return times in ms for `count` members added at `rate` per second.

    The consumer has its own client, because a blocked BZPOPMIN holds its connection.
    """
    key = f"bench-{uuid.uuid4().hex[:8]}:handoff"
    producer = aioredis.Redis.from_url(server.url, decode_responses=True)
    consumer = aioredis.Redis.from_url(server.url, decode_responses=True)
    sent: dict[str, float] = {}
    received: dict[str, float] = {}
    deadline = time.monotonic() + max_s

    async def consume() -> None:
        while len(received) < count and time.monotonic() < deadline:
            popped = await consumer.bzpopmin(key, timeout=0.2)
            if popped is not None:
                received[str(popped[1])] = time.perf_counter()

    try:
        await consumer.ping()
        consumer_task = asyncio.create_task(consume())
        start = time.perf_counter()
        for number in range(count):
            delay = start + number / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if time.monotonic() > deadline:
                break
            member = f"m{number:06d}"
            sent[member] = time.perf_counter()
            await producer.zadd(key, {member: number})
        await consumer_task
    finally:
        await producer.delete(key)
        await producer.aclose()
        await consumer.aclose()
    return [(received[member] - sent[member]) * 1000.0 for member in sent if member in received]


async def cycle_throughput(
    server: RedisServer, backlog: int, agents: int, max_s: float
) -> tuple[int, float]:
    """Return (callers served, seconds) for `agents` concurrent take/answer/hang-up loops."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    queue_key = prefix + "waiting"
    pool = aioredis.BlockingConnectionPool.from_url(
        server.url, decode_responses=True, max_connections=MAX_CONNECTIONS
    )
    client = aioredis.Redis.from_pool(pool)
    take_next = client.register_script(TAKE_NEXT)
    served = 0
    deadline = time.monotonic() + max_s

    async def agent_loop(number: int) -> None:
        nonlocal served
        agent_key = f"{prefix}agent:{number:04d}"
        while time.monotonic() < deadline:
            entry = await take_next(keys=[queue_key, agent_key])
            if entry is None:
                return
            served += 1
            await client.hset(agent_key, mapping={"state": "on_call", "entry": entry})
            await client.hset(agent_key, mapping={"state": "available", "entry": ""})

    try:
        for first in range(0, backlog, 1000):
            last = min(first + 1000, backlog)
            await client.zadd(
                queue_key, {f"c{number:06d}": number for number in range(first, last)}
            )
        start = time.perf_counter()
        await asyncio.gather(*(agent_loop(number) for number in range(agents)))
        seconds = time.perf_counter() - start
    finally:
        keys = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
        for first in range(0, len(keys), 500):
            await client.delete(*keys[first : first + 500])
        await client.aclose()
    return served, seconds
