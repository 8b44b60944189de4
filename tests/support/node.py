"""Start a real `voxgate serve` process for a test and stop it afterwards."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.ports import free_tcp_port, free_udp_port

REPOSITORY = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
# How a node's log says a port was taken: the SIP and RTP sockets, then the HTTP listener.
BIND_FAILURES = ("could not bind", "address already in use")
BIND_ATTEMPTS = 3


def free_port_range(size: int = 40) -> tuple[int, int]:
    """Return an even-based range of UDP ports that are free right now."""
    for _ in range(100):
        low = random.randrange(30_000, 60_000 - size, 2)
        try:
            sockets = []
            for port in range(low, low + size):
                probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sockets.append(probe)
                probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for probe in sockets:
                probe.close()
        return low, low + size - 1
    raise RuntimeError("no free UDP port range found after 100 tries")


@dataclass
class RunningNode:
    """A `voxgate serve` process and the ports it listens on."""

    process: subprocess.Popen[bytes]
    sip_port: int
    http_port: int
    rtp_ports: tuple[int, int]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def health(self) -> tuple[int, dict[str, Any]]:
        url = f"http://127.0.0.1:{self.http_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")


def wait_until_healthy(node: RunningNode, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if node.process.poll() is not None:
            raise RuntimeError(f"voxgate exited with {node.process.returncode}:\n{node.log()}")
        try:
            status, _ = node.health()
        except (OSError, ValueError):
            status = 0
        if status == 200:
            return
        time.sleep(0.1)
    raise TimeoutError(f"voxgate not healthy after {timeout_s} s:\n{node.log()}")


def start_node(
    config_path: Path, log_path: Path, env: dict[str, str], *, sip_port: int | None = None
) -> RunningNode:
    """Start `voxgate serve` on free loopback ports, or on `sip_port` when given."""
    sip_port = free_udp_port() if sip_port is None else sip_port
    http_port = free_tcp_port()
    rtp_ports = free_port_range()
    command = [
        sys.executable, "-m", "voxgate", "serve", "--config", str(config_path),
        "--sip-port", str(sip_port), "--http-port", str(http_port),
        "--rtp-ports", f"{rtp_ports[0]}-{rtp_ports[1]}",
    ]  # fmt: skip
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command, cwd=REPOSITORY, stdout=log_file, stderr=subprocess.STDOUT, env=env
        )
    return RunningNode(process, sip_port, http_port, rtp_ports, log_path)


def write_config(tmp_path: Path, settings: dict[str, Any] | None = None) -> Path:
    """Write `tmp_path/voxgate.yaml`: test defaults with `settings` merged section by section."""
    config: dict[str, Any] = {
        "log": {"level": "DEBUG"},
        "ivr": {
            "flows_dir": str(REPOSITORY / "config" / "flows"),
            "prompt_cache_dir": str(tmp_path / "prompts"),
        },
        # Most tests use no speech, so their nodes skip loading the models.
        "asr": {"preload": False},
    }
    for section, values in (settings or {}).items():
        config.setdefault(section, {}).update(values)
    config_path = tmp_path / "voxgate.yaml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return config_path


def node_env(extra_env: dict[str, str] | None = None) -> dict[str, str]:
    """Return the environment of a node process: this one, with the repository importable."""
    return {**os.environ, "PYTHONPATH": str(REPOSITORY), **(extra_env or {})}


def start_healthy_node(config_path: Path, log_dir: Path, env: dict[str, str]) -> RunningNode:
    """Start `voxgate serve` on free ports and wait until it is healthy; the caller stops it.

    A port found free can be taken by another process before the node binds
    it, so a start that fails to bind is retried on new ports.
    """
    for attempt in range(1, BIND_ATTEMPTS + 1):
        node = start_node(config_path, log_dir / f"voxgate-{attempt}.log", env)
        try:
            wait_until_healthy(node)
            return node
        except RuntimeError:
            taken = any(text in node.log() for text in BIND_FAILURES)
            if attempt == BIND_ATTEMPTS or not taken:
                raise
    raise AssertionError("unreachable: the last attempt returns or raises")


@contextmanager
def voxgate_node(
    tmp_path: Path,
    settings: dict[str, Any] | None = None,
    *,
    extra_env: dict[str, str] | None = None,
) -> Iterator[RunningNode]:
    """Run `voxgate serve` on free loopback ports with `settings` merged over the defaults.

    A start that fails to bind is retried on new ports (see `start_healthy_node`).
    """
    config_path = write_config(tmp_path, settings)
    node = start_healthy_node(config_path, tmp_path, node_env(extra_env))
    process = node.process
    try:
        wait_until_healthy(node)
        yield node
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_S)
