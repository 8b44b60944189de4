"""Node addresses and caller cards in a real redis-server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from tests.acd.redis_server import RedisServer, start_redis
from voxgate.directory import CallerCard, NodeDirectory

pytestmark = pytest.mark.peer

CARD = CallerCard(
    node_id="a.123456",
    caller="+15550100",
    called="2900",
    ivr_path=("welcome", "to_agent"),
    words="refund please",
    intent="billing",
    priority=7,
    priority_reason="vip",
    joined_at=1_800_000_000.5,
)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
async def directory(redis_server: RedisServer) -> AsyncIterator[NodeDirectory]:
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    prefix = f"test:{time.monotonic_ns()}:"
    yield NodeDirectory(client, prefix)
    keys = [key async for key in client.scan_iter(f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def test_caller_card_round_trip(directory: NodeDirectory) -> None:
    await directory.put_caller("c1", CARD)
    assert await directory.get_caller("c1") == CARD
    await directory.remove_caller("c1")
    assert await directory.get_caller("c1") is None


async def test_card_gives_incoming_view() -> None:
    incoming = CARD.incoming("x1", "general", CARD.joined_at + 12.34)
    assert incoming.call_id == "x1"
    assert incoming.caller == "+15550100"
    assert incoming.ivr_path == ("welcome", "to_agent")
    assert incoming.words == "refund please"
    assert incoming.priority == 7
    assert incoming.priority_reason == "vip"
    assert incoming.waiting_s == 12.3


async def test_unreadable_card_is_none(directory: NodeDirectory) -> None:
    await directory._client.set(directory._key("card", "c2"), '{"node_id": "a"}')
    assert await directory.get_caller("c2") is None


async def test_node_address_expires(directory: NodeDirectory) -> None:
    await directory.publish_node("a.1", "127.0.0.1", 5070, ttl_s=0.3)
    assert await directory.node_address("a.1") == ("127.0.0.1", 5070)
    async with asyncio.timeout(5):
        while True:
            if await directory.node_address("a.1") is None:
                break
            await asyncio.sleep(0.05)
    assert await directory.node_address("a.1") is None


async def test_ipv6_node_address(directory: NodeDirectory) -> None:
    await directory.publish_node("a.2", "::1", 5080, ttl_s=10)
    assert await directory.node_address("a.2") == ("::1", 5080)
    await directory.remove_node("a.2")
    assert await directory.node_address("a.2") is None


def test_card_json_rejects_oversize() -> None:
    with pytest.raises(ValueError, match="longer than"):
        CallerCard.from_json("x" * 70_000)


def test_card_json_round_trip() -> None:
    assert CallerCard.from_json(CARD.to_json()) == CARD
