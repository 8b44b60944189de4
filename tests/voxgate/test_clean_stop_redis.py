"""A node on a Redis store drops its heartbeat and per-node keys when it stops cleanly."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import cast

import pytest
import redis

from acd.store.redis import RedisStore
from tests.acd.redis_server import start_redis
from tests.journey.agent import AgentClient
from tests.journey.scenario import AGENT, AGENT_TONE_HZ, PASSWORD, node_settings
from tests.support.node import voxgate_node
from tests.support.waiting import wait_until

pytestmark = pytest.mark.peer

WAIT_S = 30.0


def test_clean_stop_forgets_the_node(tmp_path: Path) -> None:
    server = start_redis(tmp_path)
    try:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        (tmp_path / "node").mkdir()
        with voxgate_node(tmp_path / "node", {"acd": {"store": server.url}}) as node:

            def heartbeats() -> list[str] | None:
                return cast(list[str], client.zrange("acd:nodes", 0, -1)) or None

            nodes = wait_until(heartbeats, WAIT_S, "a heartbeat")
            assert len(nodes) == 1
            # What an agent's login leaves behind: the queues its node serves.
            client.sadd(f"acd:nq:{nodes[0]}", "general")
            node.process.send_signal(signal.SIGTERM)
            assert node.process.wait(timeout=WAIT_S) == 0
        assert client.zrange("acd:nodes", 0, -1) == []
        assert client.exists(f"acd:nq:{nodes[0]}") == 0
        client.close()
    finally:
        server.stop()


async def test_clean_stop_logs_out_idle_agent(tmp_path: Path) -> None:
    server = start_redis(tmp_path)
    try:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        (tmp_path / "node").mkdir()
        with voxgate_node(tmp_path / "node", node_settings(server.url)) as node:
            agent = AgentClient(
                f"http://127.0.0.1:{node.http_port}", AGENT, PASSWORD, AGENT_TONE_HZ
            )
            try:
                await agent.login()
                await agent.set_state("available")
                # The node mirrors the page's state into the ACD after it replies to the page.
                node_id = await asyncio.to_thread(
                    wait_until,
                    lambda: cast(str | None, client.hget(f"acd:a:{AGENT}", "node")),
                    WAIT_S,
                    "the agent's record",
                )
                assert client.sismember(f"acd:na:{node_id}", AGENT)
                node.process.send_signal(signal.SIGTERM)
                assert await asyncio.to_thread(node.process.wait, WAIT_S) == 0
            finally:
                await agent.close()
        assert client.exists(f"acd:a:{AGENT}") == 0
        assert client.zrange("acd:nodes", 0, -1) == []
        assert client.exists(f"acd:nq:{node_id}") == 0
        client.close()
    finally:
        server.stop()


async def test_forget_node_keeps_agents_node(tmp_path: Path) -> None:
    server = start_redis(tmp_path)
    try:
        store = await RedisStore.connect(server.url)
        try:
            await store.heartbeat("n1", 100.0)
            await store.client.sadd("acd:na:n1", "ann")
            await store.client.sadd("acd:nq:n1", "general")
            assert await store.forget_node("n1") is False
            assert await store.client.zscore("acd:nodes", "n1") == 100.0
            assert await store.client.exists("acd:nq:n1") == 1
            await store.client.srem("acd:na:n1", "ann")
            assert await store.forget_node("n1") is True
            assert await store.client.zscore("acd:nodes", "n1") is None
            assert await store.client.exists("acd:nq:n1") == 0
        finally:
            await store.close()
    finally:
        server.stop()
