"""A node binds its ports before it registers in Redis, and holds its node.id while alive."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

import pytest
import redis

from tests.acd.redis_server import start_redis
from tests.support.node import (
    BIND_ATTEMPTS,
    BIND_FAILURES,
    node_env,
    start_healthy_node,
    start_node,
    voxgate_node,
    write_config,
)
from tests.support.waiting import wait_until

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


def run_to_exit(config: Path, log_dir: Path, sip_port: int | None = None) -> tuple[int, str]:
    """Run `voxgate serve` until it exits by itself; return its exit code and log.

    The HTTP and RTP ports are picked free but can be taken before the node
    binds them, so a start that failed on one of those is run again on new ports.
    """
    for attempt in range(1, BIND_ATTEMPTS + 1):
        node = start_node(config, log_dir / f"run-{attempt}.log", node_env(), sip_port=sip_port)
        try:
            code = node.process.wait(timeout=WAIT_S)
        finally:
            if node.process.poll() is None:
                node.process.kill()
                node.process.wait(timeout=WAIT_S)
        log = node.log()
        other_port_taken = any(text in log for text in BIND_FAILURES) and (
            sip_port is None or f"'127.0.0.1', {sip_port})" not in log
        )
        if not other_port_taken or attempt == BIND_ATTEMPTS:
            return code, log
    raise AssertionError("unreachable: the last attempt returns")


def test_busy_sip_port_leaves_redis_untouched(tmp_path: Path) -> None:
    server = start_redis(tmp_path)
    try:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        config = write_config(tmp_path, {"acd": {"store": server.url}, "node": {"id": "cc1"}})
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
            busy.bind(("127.0.0.1", 0))
            port = busy.getsockname()[1]
            with redis_commands(server.url) as commands:
                code, log = run_to_exit(config, tmp_path, sip_port=port)
        assert code == 1, log
        assert f"could not bind to local_addr ('127.0.0.1', {port})" in log
        assert "--sip-port" in log
        assert "ACD started" not in log
        # The store was opened, but nothing was written that other nodes could see.
        written = [c for c in commands if c.split(" ", 1)[0].upper() in REGISTERING]
        assert written == []
        assert client.zrange("acd:nodes", 0, -1) == []
        assert client.hgetall("acd:names") == {}
        client.close()
    finally:
        server.stop()


def test_second_node_with_live_id_is_refused(tmp_path: Path) -> None:
    server = start_redis(tmp_path)
    try:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        settings = {"acd": {"store": server.url}, "node": {"id": "cc1"}}
        (tmp_path / "first").mkdir()
        (tmp_path / "second").mkdir()
        with voxgate_node(tmp_path / "first", settings) as first:
            holder = cast(str | None, client.hget("acd:names", "cc1"))
            assert holder is not None and holder.startswith("cc1.")
            config = write_config(tmp_path / "second", settings)
            code, log = run_to_exit(config, tmp_path / "second")
            assert code == 1, log
            assert f"node name 'cc1' is held by live node {holder}" in log
            assert "node.id must be unique among the nodes that share the ACD store" in log
            assert "ACD started" not in log
            assert first.health()[0] == 200
            assert client.hget("acd:names", "cc1") == holder
            assert client.zrange("acd:nodes", 0, -1) == [holder]
        client.close()
    finally:
        server.stop()


def test_id_of_crashed_node_is_taken_over(tmp_path: Path) -> None:
    server = start_redis(tmp_path)
    try:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        ttl_s = 1.0
        settings = {"acd": {"store": server.url, "node_ttl_s": ttl_s}, "node": {"id": "cc1"}}
        (tmp_path / "first").mkdir()
        (tmp_path / "second").mkdir()
        config = write_config(tmp_path / "first", settings)
        first = start_healthy_node(config, tmp_path / "first", node_env())
        try:
            holder = cast(str, client.hget("acd:names", "cc1"))
            first.process.send_signal(signal.SIGKILL)
            first.process.wait(timeout=WAIT_S)
        finally:
            if first.process.poll() is None:
                first.process.kill()
                first.process.wait(timeout=WAIT_S)
        # The crashed node keeps the name until its last heartbeat is older than the TTL.
        last_beat = cast(float, client.zscore("acd:nodes", holder))
        wait_until(lambda: time.time() > last_beat + ttl_s + 0.2, WAIT_S, "the heartbeat to expire")

        with voxgate_node(tmp_path / "second", settings) as second:
            successor = cast(str | None, client.hget("acd:names", "cc1"))
            assert successor is not None and successor != holder
            # The successor's reaper closes out the crashed node.
            wait_until(
                lambda: client.zscore("acd:nodes", holder) is None,
                WAIT_S,
                "the crashed node's close-out",
            )
            assert second.health()[0] == 200
        # A clean stop frees the name, so a restart can claim it at once.
        assert client.hget("acd:names", "cc1") is None
        client.close()
    finally:
        server.stop()
