"""A node binds its ports before it registers in Redis."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from tests.acd.redis_server import start_redis
from tests.support.node import (
    node_env,
    start_node,
    write_config,
)

pytestmark = pytest.mark.peer

WAIT_S = 30.0
MONITOR_END = "monitor-end"
# Commands that would make a node visible to the other nodes of the store.
REGISTERING = {"ZADD", "HSET", "SADD", "SUBSCRIBE", "PUBLISH", "EVALSHA"}


@contextmanager
def redis_commands(url: str) -> Iterator[list[str]]:
    """Collect every command the redis-server runs while the block runs (MONITOR)."""
    commands: list[str] = []
    client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=WAIT_S)
    monitor = client.monitor()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
    monitor.__enter__()

    def read() -> None:
        for command in monitor.listen():
            text = str(command["command"])
            if text == f"ECHO {MONITOR_END}":
                return
            commands.append(text)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield commands
    finally:
        client.echo(MONITOR_END)
        reader.join(timeout=WAIT_S)
        monitor.__exit__()
        client.close()
    assert not reader.is_alive(), "the MONITOR reader did not see the end marker"


def test_busy_sip_port_leaves_redis_untouched(tmp_path: Path) -> None:
    server = start_redis(tmp_path)
    try:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        config = write_config(tmp_path, {"acd": {"store": server.url}, "node": {"id": "cc1"}})
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
            busy.bind(("127.0.0.1", 0))
            port = busy.getsockname()[1]
            with redis_commands(server.url) as commands:
                node = start_node(config, tmp_path / "node.log", node_env(), sip_port=port)
                try:
                    code = node.process.wait(timeout=WAIT_S)
                finally:
                    if node.process.poll() is None:
                        node.process.kill()
                        node.process.wait(timeout=WAIT_S)
        log = node.log()
        assert code == 1, log
        assert f"could not bind to local_addr ('127.0.0.1', {port})" in log
        assert "--sip-port" in log
        assert "ACD started" not in log
        # The store was opened, but nothing was written that other nodes could see.
        written = [c for c in commands if c.split(" ", 1)[0].upper() in REGISTERING]
        assert written == []
        assert client.zrange("acd:nodes", 0, -1) == []
        client.close()
    finally:
        server.stop()
