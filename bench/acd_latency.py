"""ACD benchmark on a local redis-server (loopback only, bounded in count and time).

Every round runs these steps against one redis-server, in an order that rotates per round:

1. Latency: callers arrive at a fixed rate (default 50/s, ten times a busy center's 5/s) at
   one ACD node with free agents that answer and hang up at once; p50/p99 of the time from
   `enqueue()` to the offer arriving from `next_offer()`.
2. References for it: `redis-benchmark` BZPOPMIN (one C client, one round trip) and a
   redis-py hand-off (ZADD by one task, BZPOPMIN-return in another) at the same rate. The
   floor of a Python client beside them: one redis-py round trip on the same event loop with
   hiredis (PING and ZADD back to back, and PING at the callers' rate), and
   `redis-benchmark` PING with one client.
3. Throughput: a backlog of waiting callers (default 10,000) and agents (default 500) set
   free at once; each agent answers and hangs up its offer in its own task. Offers per second
   until the backlog is offered, beside a redis-py reference doing the least Redis work per
   served caller (take the next caller, answer, hang up) with the same number of agents.

The machine this runs on is shared, so the script prints every round and the medians, and
every ratio compares two measurements of the same round.

Run from the repository root: `PYTHONPATH=. python bench/acd_latency.py [--help]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import cast

import redis.utils

import acd
from acd.clock import SystemClock
from acd.model import AcdSettings, AgentState, QueueSettings
from acd.service import Acd
from acd.store.redis import RedisStore
from bench.acd_reference import (
    cycle_throughput,
    handoff_latency,
    redis_benchmark_bzpopmin,
    redis_benchmark_ping,
    round_trip_latency,
)
from tests.acd.redis_server import RedisServer, start_redis

QUEUE = QueueSettings(name="q", announce_first_s=None, announce_every_s=None)
SETTINGS = AcdSettings(queues={"q": QUEUE}, poll_every_s=0.5)
OFFER_WAIT_S = 0.2


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


async def answer_and_hang_up(acd: Acd, agent_id: str, entry_id: str) -> None:
    if await acd.answer_offer(agent_id, entry_id):
        await acd.hangup(agent_id)


async def serve_offers(acd: Acd, offers: Offers, stop: asyncio.Event) -> None:
    """Answer and hang up every offer at once, each in its own task, until `stop` is set.

    A stop flag, not a cancellation: with redis-py 8.2 on Python 3.11 a cancelled consumer
    was seen to keep waiting forever. There is at most one task per agent, because an agent
    gets its next offer only after it hung up. Raises the first error of an answering task.
    """
    answering: set[asyncio.Task[None]] = set()
    failures: list[BaseException] = []

    def finished(task: asyncio.Task[None]) -> None:
        answering.discard(task)
        if not task.cancelled() and task.exception() is not None:
            failures.append(cast(BaseException, task.exception()))

    try:
        while not stop.is_set() and not failures:
            try:
                async with asyncio.timeout(OFFER_WAIT_S):
                    offer = await acd.next_offer()
            except TimeoutError:
                continue
            offers.note(offer.call_id)
            task = asyncio.create_task(answer_and_hang_up(acd, offer.agent_id, offer.entry_id))
            answering.add(task)
            task.add_done_callback(finished)
    finally:
        if answering:
            await asyncio.gather(*answering, return_exceptions=True)
    if failures:
        raise failures[0]


async def stop_task(task: asyncio.Task[None], stop: asyncio.Event) -> None:
    stop.set()
    await task


async def measure_latency(
    server: RedisServer, callers: int, rate: float, agents: int, max_s: float
) -> list[float]:
    """Return enqueue -> offer times in ms for `callers` arriving at `rate` per second."""
    store = await RedisStore.connect(server.url, prefix=f"bench-{uuid.uuid4().hex[:8]}:")
    acd = Acd(store, SystemClock(), SETTINGS, node_id=f"bench-latency-{uuid.uuid4().hex[:6]}")
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
            delay = start + number / rate - time.perf_counter()
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


@dataclass
class Throughput:
    offered: int
    seconds: float
    enqueue_s: float


async def measure_throughput(
    server: RedisServer, backlog: int, agents: int, max_s: float
) -> Throughput:
    """Enqueue `backlog` callers, then set `agents` free and time until all were offered."""
    store = await RedisStore.connect(server.url, prefix=f"bench-{uuid.uuid4().hex[:8]}:")
    acd = Acd(store, SystemClock(), SETTINGS, node_id=f"bench-throughput-{uuid.uuid4().hex[:6]}")
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
    return Throughput(len(offers.at), seconds, enqueue_s)


@dataclass
class Round:
    """The results of one round; latencies in ms, throughputs in callers per second."""

    load_before: str
    ours: list[float] = field(default_factory=list)
    handoff: list[float] = field(default_factory=list)
    bzpopmin: dict[str, float] = field(default_factory=dict)
    ping_c: dict[str, float] = field(default_factory=dict)
    ping_py: list[float] = field(default_factory=list)
    zadd_py: list[float] = field(default_factory=list)
    ping_paced: list[float] = field(default_factory=list)
    ours_rate: float = 0.0
    ours_offered: int = 0
    enqueue_rate: float = 0.0
    reference_rate: float = 0.0
    reference_served: int = 0
    load_after: str = ""


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


async def run_round(server: RedisServer, args: argparse.Namespace, index: int) -> Round:
    result = Round(load_before=load_average())

    async def ours_latency() -> None:
        result.ours = await measure_latency(
            server, args.callers, args.rate, args.agents, args.max_seconds
        )

    async def handoff() -> None:
        result.handoff = await handoff_latency(server, args.callers, args.rate, args.max_seconds)

    async def bzpopmin() -> None:
        result.bzpopmin = await asyncio.to_thread(
            redis_benchmark_bzpopmin, server, args.baseline_requests
        )

    async def round_trips() -> None:
        result.ping_py = await round_trip_latency(server, "PING", args.round_trips)
        result.zadd_py = await round_trip_latency(server, "ZADD", args.round_trips)
        result.ping_paced = await round_trip_latency(server, "PING", args.callers, args.rate)
        result.ping_c = await asyncio.to_thread(
            redis_benchmark_ping, server, args.baseline_requests
        )

    async def ours_throughput() -> None:
        measured = await measure_throughput(
            server, args.backlog, args.backlog_agents, args.max_seconds
        )
        result.ours_offered = measured.offered
        result.ours_rate = measured.offered / measured.seconds
        result.enqueue_rate = args.backlog / measured.enqueue_s

    async def reference_throughput() -> None:
        served, seconds = await cycle_throughput(
            server, args.backlog, args.backlog_agents, args.max_seconds
        )
        result.reference_served = served
        result.reference_rate = served / seconds

    latency_steps: list[Callable[[], Awaitable[None]]] = [
        ours_latency,
        handoff,
        bzpopmin,
        round_trips,
    ]
    shift = index % len(latency_steps)
    throughput_steps: list[Callable[[], Awaitable[None]]] = [ours_throughput, reference_throughput]
    if index % 2:
        throughput_steps.reverse()
    for step in [*latency_steps[shift:], *latency_steps[:shift], *throughput_steps]:
        print(f"round {index + 1}: {step.__name__} ...", file=sys.stderr, flush=True)
        await step()
    result.load_after = load_average()
    return result


def print_round(index: int, result: Round, args: argparse.Namespace) -> None:
    ours_p50, ours_p99 = percentile(result.ours, 0.5), percentile(result.ours, 0.99)
    hand_p50, hand_p99 = percentile(result.handoff, 0.5), percentile(result.handoff, 0.99)
    print(
        f"round {index + 1} (load {result.load_before} -> {result.load_after}): "
        f"enqueue->offer p50 {ours_p50:.3f} p99 {ours_p99:.3f} ms "
        f"({len(result.ours)}/{args.callers}); "
        f"redis-py hand-off p50 {hand_p50:.3f} p99 {hand_p99:.3f} ms; "
        f"BZPOPMIN p50 {result.bzpopmin['p50_latency_ms']:.3f} "
        f"p99 {result.bzpopmin['p99_latency_ms']:.3f} ms; "
        f"redis-py PING p50 {percentile(result.ping_py, 0.5):.3f} ms, "
        f"ZADD p50 {percentile(result.zadd_py, 0.5):.3f} ms, "
        f"PING at {args.rate:g}/s p50 {percentile(result.ping_paced, 0.5):.3f} ms; "
        f"redis-benchmark PING p50 {result.ping_c['p50_latency_ms']:.3f} ms; "
        f"dispatch {result.ours_rate:.0f} offers/s ({result.ours_offered}/{args.backlog}), "
        f"reference {result.reference_rate:.0f}/s; enqueue {result.enqueue_rate:.0f}/s"
    )


def print_summary(rounds: list[Round], args: argparse.Namespace) -> None:
    def median(values: list[float]) -> float:
        return statistics.median(values)

    ours_p50 = [percentile(r.ours, 0.5) for r in rounds]
    ours_p99 = [percentile(r.ours, 0.99) for r in rounds]
    hand_p50 = [percentile(r.handoff, 0.5) for r in rounds]
    hand_p99 = [percentile(r.handoff, 0.99) for r in rounds]
    bz_p50 = [r.bzpopmin["p50_latency_ms"] for r in rounds]
    bz_p99 = [r.bzpopmin["p99_latency_ms"] for r in rounds]
    print(f"medians of {len(rounds)} rounds:")
    print(
        f"  enqueue -> offer, {args.callers} callers at {args.rate:g}/s, {args.agents} agents: "
        f"p50 {median(ours_p50):.3f} ms, p99 {median(ours_p99):.3f} ms"
    )
    print(
        f"  redis-py hand-off ZADD -> BZPOPMIN return, same rate: "
        f"p50 {median(hand_p50):.3f} ms, p99 {median(hand_p99):.3f} ms"
    )
    print(
        f"  redis-benchmark BZPOPMIN, 1 client, {args.baseline_requests} requests: "
        f"p50 {median(bz_p50):.3f} ms, p99 {median(bz_p99):.3f} ms"
    )
    ping_p50 = [percentile(r.ping_py, 0.5) for r in rounds]
    zadd_p50 = [percentile(r.zadd_py, 0.5) for r in rounds]
    ping_c_p50 = [r.ping_c["p50_latency_ms"] for r in rounds]
    paced_p50 = [percentile(r.ping_paced, 0.5) for r in rounds]
    print(
        f"  one redis-py round trip, {args.round_trips} in a row: "
        f"PING p50 {median(ping_p50):.3f} ms, "
        f"p99 {median([percentile(r.ping_py, 0.99) for r in rounds]):.3f} ms; "
        f"ZADD p50 {median(zadd_p50):.3f} ms, "
        f"p99 {median([percentile(r.zadd_py, 0.99) for r in rounds]):.3f} ms"
    )
    print(
        f"  one redis-py PING at {args.rate:g}/s, {args.callers} of them: "
        f"p50 {median(paced_p50):.3f} ms, "
        f"p99 {median([percentile(r.ping_paced, 0.99) for r in rounds]):.3f} ms"
    )
    print(
        f"  redis-benchmark PING, 1 client, {args.baseline_requests} requests: "
        f"p50 {median(ping_c_p50):.3f} ms, "
        f"p99 {median([r.ping_c['p99_latency_ms'] for r in rounds]):.3f} ms"
    )

    def ratio(top: list[float], bottom: list[float]) -> float:
        return median([t / b for t, b in zip(top, bottom, strict=True)])

    print(f"  ratio enqueue->offer p50 / BZPOPMIN p50: {ratio(ours_p50, bz_p50):.1f}")
    print(f"  ratio enqueue->offer p50 / redis-py hand-off p50: {ratio(ours_p50, hand_p50):.1f}")
    print(f"  ratio enqueue->offer p50 / redis-py PING p50: {ratio(ours_p50, ping_p50):.1f}")
    print(f"  ratio redis-py PING p50 / BZPOPMIN p50: {ratio(ping_p50, bz_p50):.1f}")
    print(f"  ratio redis-py ZADD p50 / BZPOPMIN p50: {ratio(zadd_p50, bz_p50):.1f}")
    print(
        f"  ratio redis-py PING at the callers' rate p50 / BZPOPMIN p50: "
        f"{ratio(paced_p50, bz_p50):.1f}"
    )
    print(
        f"  ratio enqueue->offer p50 / redis-py PING at the callers' rate p50: "
        f"{ratio(ours_p50, paced_p50):.1f}"
    )
    print(
        f"  ratio redis-py PING p50 / redis-benchmark PING p50: {ratio(ping_p50, ping_c_p50):.1f}"
    )
    ours_rate = [r.ours_rate for r in rounds]
    reference_rate = [r.reference_rate for r in rounds]
    ratio_rate = [ref / ours for ref, ours in zip(reference_rate, ours_rate, strict=True)]
    print(
        f"  dispatch of {args.backlog} waiting callers to {args.backlog_agents} agents: "
        f"{median(ours_rate):.0f} offers/s"
    )
    print(
        f"  reference take/answer/hang-up with {args.backlog_agents} agents: "
        f"{median(reference_rate):.0f} callers/s; ratio reference / ours {median(ratio_rate):.1f}"
    )
    print(f"  enqueue of the backlog: {median([r.enqueue_rate for r in rounds]):.0f} callers/s")


def print_machine(loop: str) -> None:
    versions = ", ".join(
        f"{name} {metadata.version(name)}" for name in ("redis", "hiredis", "uvloop")
    )
    redis_version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=True
    ).stdout.split()[2]
    parser = "hiredis" if redis.utils.HIREDIS_AVAILABLE else "pure Python"
    print(
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, {versions}, "
        f"redis-py parser {parser}, redis-server {redis_version}, load {load_average()}"
    )
    code = Path(acd.__file__).resolve().parent.parent
    commit = subprocess.run(
        ["git", "-C", str(code), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    print(f"code: acd from {code} at {commit or 'unknown commit'}, loop {loop}")


async def run(args: argparse.Namespace) -> None:
    print_machine(args.loop)
    rounds: list[Round] = []
    with tempfile.TemporaryDirectory(prefix="acd-bench-") as directory:
        server = start_redis(Path(directory))
        try:
            for index in range(args.rounds):
                rounds.append(await run_round(server, args, index))
                print_round(index, rounds[-1], args)
        finally:
            server.stop()
    print_summary(rounds, args)
    if args.json is not None:
        args.json.write_text(json.dumps([dataclasses.asdict(r) for r in rounds]))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds of all steps")
    parser.add_argument("--callers", type=int, default=300, help="callers per latency step")
    parser.add_argument("--rate", type=float, default=50.0, help="arrivals per second")
    parser.add_argument("--agents", type=int, default=50, help="agents in the latency step")
    parser.add_argument(
        "--baseline-requests", type=int, default=20000, help="BZPOPMIN requests for redis-benchmark"
    )
    parser.add_argument(
        "--round-trips", type=int, default=2000, help="redis-py PING and ZADD round trips"
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="also write every round's results to this file"
    )
    parser.add_argument("--backlog", type=int, default=10000, help="waiting callers")
    parser.add_argument("--backlog-agents", type=int, default=500, help="agents serving them")
    parser.add_argument(
        "--max-seconds", type=float, default=120.0, help="time limit of each step in seconds"
    )
    parser.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="event loop (voxgate serve runs on uvloop)",
    )
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(run(args))
    else:
        asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
