"""ACD benchmark on a local redis-server (loopback only, bounded in count and time).

1. Latency: callers arrive at a fixed rate (default 50/s, ten times a busy center's 5/s) at
   one ACD node with free agents that answer and hang up at once; prints p50/p99 of the time
   from `enqueue()` to the offer arriving on the node's offer stream.
2. Baseline: `redis-benchmark` runs BZPOPMIN (one client) against the same server in the
   same run, and the ratio of the two p50 values is printed.
3. Throughput: a backlog of waiting callers (default 10,000) and agents (default 500) are
   set free at once; prints offers per second until the backlog is served or time runs out.

Run from the repository root: `PYTHONPATH=. python bench/acd_latency.py [--help]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from acd.clock import SystemClock
from acd.model import AcdSettings, AgentState, QueueSettings
from acd.service import Acd
from acd.store.redis import RedisStore
from tests.acd.redis_server import RedisServer, start_redis

QUEUE = QueueSettings(name="q", announce_first_s=None, announce_every_s=None)
SETTINGS = AcdSettings(queues={"q": QUEUE}, poll_every_s=0.5)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


class Offers:
    """When each caller's first offer arrived, with an event set once `target` callers had one."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.target: int | None = None
        self.reached = asyncio.Event()

    def note(self, call_id: str) -> None:
        self.at.setdefault(call_id, time.perf_counter())
        self.check()

    def expect(self, target: int) -> None:
        self.target = target
        self.check()

    def check(self) -> None:
        if self.target is not None and len(self.at) >= self.target:
            self.reached.set()

    async def wait(self, deadline: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.reached.wait(), max(deadline - time.monotonic(), 0.0))


async def serve_offers(acd: Acd, offers: Offers, stop: asyncio.Event) -> None:
    """Answer and hang up every offer at once until `stop` is set.

    A stop flag, not a cancellation: with redis-py 8.2 on Python 3.11 a cancelled consumer
    was seen to keep waiting forever.
    """
    while not stop.is_set():
        try:
            offer = await asyncio.wait_for(acd.next_offer(), 0.2)
        except TimeoutError:
            continue
        offers.note(offer.call_id)
        if await acd.answer_offer(offer.agent_id, offer.entry_id):
            await acd.hangup(offer.agent_id)


async def stop_task(task: asyncio.Task[None], stop: asyncio.Event) -> None:
    stop.set()
    await task


async def measure_latency(
    server: RedisServer, callers: int, rate: float, agents: int, max_s: float
) -> list[float]:
    store = await RedisStore.connect(server.url, prefix=f"bench-{uuid.uuid4().hex[:8]}:")
    acd = Acd(store, SystemClock(), SETTINGS, node_id="bench-latency")
    for number in range(agents):
        await acd.login(f"agent-{number:04d}", ["q"])
    acd.start()
    offers = Offers()
    enqueued_at: dict[str, float] = {}
    stop = asyncio.Event()
    server_task = asyncio.create_task(serve_offers(acd, offers, stop))
    deadline = time.monotonic() + max_s
    start = time.perf_counter()
    try:
        for number in range(callers):
            due = start + number / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if time.monotonic() > deadline:
                break
            call_id = f"lat-{number:06d}"
            enqueued_at[call_id] = time.perf_counter()
            await acd.enqueue(call_id, "q")
        offers.expect(len(enqueued_at))
        await offers.wait(deadline)
    finally:
        await stop_task(server_task, stop)
        await acd.close()
        await store.delete_all()
        await store.close()
    return [
        (offers.at[call_id] - enqueued_at[call_id]) * 1000.0
        for call_id in enqueued_at
        if call_id in offers.at
    ]


def redis_benchmark_bzpopmin(server: RedisServer, requests: int) -> dict[str, float]:
    """Run BZPOPMIN with one client on a pre-filled sorted set; return redis-benchmark's CSV row."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        raise RuntimeError("redis-benchmark is not installed (Debian package redis-tools)")
    base = [binary, "-h", "127.0.0.1", "-p", str(server.port), "-c", "1", "-n", str(requests)]
    fill = [
        binary,
        "-h",
        "127.0.0.1",
        "-p",
        str(server.port),
        "-c",
        "4",
        "-n",
        str(requests * 3),
        "-q",
        "-r",
        "100000000",
        "ZADD",
        "bench:z",
        "__rand_int__",
        "m:__rand_int__",
    ]
    subprocess.run(fill, check=True, capture_output=True, timeout=120)
    done = subprocess.run(
        [*base, "--csv", "BZPOPMIN", "bench:z", "1"],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    if not rows:
        raise RuntimeError(f"redis-benchmark printed no CSV row: {done.stdout!r}")
    return {key: float(value) for key, value in rows[-1].items() if key != "test"}


async def measure_throughput(
    server: RedisServer, backlog: int, agents: int, max_s: float
) -> tuple[int, float, float]:
    """Return (callers offered, seconds, enqueue seconds) for a backlog drained by free agents."""
    store = await RedisStore.connect(server.url, prefix=f"bench-{uuid.uuid4().hex[:8]}:")
    acd = Acd(store, SystemClock(), SETTINGS, node_id="bench-throughput")
    enqueue_start = time.perf_counter()
    for number in range(backlog):
        await acd.enqueue(f"tp-{number:06d}", "q")
    enqueue_s = time.perf_counter() - enqueue_start
    for number in range(agents):
        await acd.login(f"agent-{number:04d}", ["q"], state=AgentState.AWAY, reason="bench")
    offers = Offers()
    offers.expect(backlog)
    stop = asyncio.Event()
    server_task = asyncio.create_task(serve_offers(acd, offers, stop))
    start = time.perf_counter()
    deadline = time.monotonic() + max_s
    for number in range(agents):
        await acd.set_state(f"agent-{number:04d}", AgentState.AVAILABLE)
    acd.start()
    try:
        await offers.wait(deadline)
        seconds = time.perf_counter() - start
    finally:
        await stop_task(server_task, stop)
        await acd.close()
        await store.delete_all()
        await store.close()
    return len(offers.at), seconds, enqueue_s


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="acd-bench-") as directory:
        server = start_redis(Path(directory))
        try:
            print("latency run ...", file=sys.stderr, flush=True)
            latencies = await measure_latency(
                server, args.callers, args.rate, args.agents, args.max_seconds
            )
            print("redis-benchmark run ...", file=sys.stderr, flush=True)
            baseline = redis_benchmark_bzpopmin(server, args.baseline_requests)
            print("throughput run ...", file=sys.stderr, flush=True)
            served, seconds, enqueue_s = await measure_throughput(
                server, args.backlog, args.backlog_agents, args.max_seconds
            )
        finally:
            server.stop()
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    base_p50 = baseline["p50_latency_ms"]
    print(
        f"enqueue -> offer, {len(latencies)}/{args.callers} callers at {args.rate:g}/s, "
        f"{args.agents} agents: p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
        f"mean {statistics.fmean(latencies):.2f} ms"
    )
    print(
        f"redis-benchmark BZPOPMIN (1 client, {args.baseline_requests} requests): "
        f"p50 {base_p50:.3f} ms, p99 {baseline['p99_latency_ms']:.3f} ms, "
        f"{baseline['rps']:.0f} requests/s"
    )
    print(f"ratio enqueue->offer p50 / BZPOPMIN p50: {p50 / base_p50:.1f}")
    print(
        f"backlog of {args.backlog} callers enqueued in {enqueue_s:.1f} s "
        f"({args.backlog / enqueue_s:.0f}/s)"
    )
    print(
        f"dispatch with {args.backlog_agents} agents: {served} offers in {seconds:.1f} s "
        f"({served / seconds:.0f} offers/s, each answered and hung up at once)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callers", type=int, default=500, help="callers in the latency run")
    parser.add_argument("--rate", type=float, default=50.0, help="arrivals per second")
    parser.add_argument("--agents", type=int, default=50, help="agents in the latency run")
    parser.add_argument(
        "--baseline-requests", type=int, default=20000, help="BZPOPMIN requests for redis-benchmark"
    )
    parser.add_argument("--backlog", type=int, default=10000, help="waiting callers")
    parser.add_argument("--backlog-agents", type=int, default=500, help="agents draining them")
    parser.add_argument(
        "--max-seconds", type=float, default=120.0, help="time limit of each phase in seconds"
    )
    args = parser.parse_args()
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
