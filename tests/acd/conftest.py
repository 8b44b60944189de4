from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from acd.store.base import AcdStore
from acd.store.memory import MemoryStore
from acd.store.redis import RedisStore
from tests.acd.redis_server import RedisServer, start_redis

DATA = Path(__file__).resolve().parent.parent / "data" / "acd"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(params=["memory", "redis"])
def store_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def store_spec(store_kind: str, request: pytest.FixtureRequest) -> str:
    """'memory' or the URL of the session's Redis server."""
    if store_kind == "memory":
        return "memory"
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url


@pytest.fixture
async def store(store_spec: str) -> AsyncIterator[AcdStore]:
    if store_spec == "memory":
        yield MemoryStore()
        return
    redis_store = await RedisStore.connect(store_spec, prefix=f"t-{uuid.uuid4().hex[:8]}:")
    try:
        yield redis_store
    finally:
        await redis_store.delete_all()
        await redis_store.close()
