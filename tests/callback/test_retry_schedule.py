"""The schedule of pending callback retries, in memory and on a real Redis server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from acd.store.redis import RedisStore
from tests.acd.redis_server import RedisServer, start_redis
from voxgate.callbackretry import MemoryRetries, PendingRetry, RedisRetries, RetrySchedule


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(params=["memory", "redis"])
async def schedule(
    request: pytest.FixtureRequest, redis_server: RedisServer
) -> AsyncIterator[RetrySchedule]:
    if request.param == "memory":
        yield MemoryRetries()
        return
    store = await RedisStore.connect(redis_server.url, prefix=f"t-{uuid.uuid4().hex[:8]}:")
    try:
        yield RedisRetries(store.client, store.prefix)
    finally:
        await store.delete_all()
        await store.close()


def retry(call_id: str) -> PendingRetry:
    return PendingRetry(
        call_id,
        "general",
        2,
        950.5,
        {"node:a": 1, "es": 3},
        {"callback_number": "5551234", "callback_attempts": "1"},
    )


async def test_claim_returns_due_retries_once(schedule: RetrySchedule) -> None:
    await schedule.add(retry("c1"), 1000.0)
    await schedule.add(retry("c2"), 1010.0)

    assert await schedule.claim(999.0, 30.0, 10) == []
    claimed = await schedule.claim(1000.0, 30.0, 10)

    assert claimed == [retry("c1")]
    assert await schedule.claim(1005.0, 30.0, 10) == []
    assert await schedule.next_due() == 1010.0


async def test_claim_expires_for_other_nodes(schedule: RetrySchedule) -> None:
    await schedule.add(retry("c1"), 1000.0)
    await schedule.claim(1000.0, 30.0, 10)

    assert await schedule.next_due() == 1030.0
    assert await schedule.claim(1029.0, 30.0, 10) == []
    assert await schedule.claim(1030.0, 30.0, 10) == [retry("c1")]


async def test_remove_ends_retry(schedule: RetrySchedule) -> None:
    await schedule.add(retry("c1"), 1000.0)
    await schedule.remove("c1")

    assert await schedule.claim(2000.0, 30.0, 10) == []
    assert await schedule.next_due() is None
    assert await schedule.count() == 0


async def test_claim_limits_batch_in_due_order(schedule: RetrySchedule) -> None:
    for number, due in enumerate((1003.0, 1001.0, 1002.0)):
        await schedule.add(retry(f"c{number}"), due)

    claimed = await schedule.claim(1005.0, 30.0, 2)

    assert [item.call_id for item in claimed] == ["c1", "c2"]
    assert await schedule.count() == 3


def test_pending_retry_json_round_trip() -> None:
    assert PendingRetry.from_json(retry("c1").to_json()) == retry("c1")
    with pytest.raises(ValueError, match="invalid pending callback retry"):
        PendingRetry.from_json('{"call_id": "c1"}')
