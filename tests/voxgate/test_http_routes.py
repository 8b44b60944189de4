"""The node's HTTP routes: pages, agent login with its Origin check, and queue counters."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from signaling.webrtc.auth import hash_password
from tests.support.node import RunningNode, voxgate_node
from voxgate.queuecounters import NODE_COUNTS

PASSWORD = "route-test-password"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    settings = {
        "acd": {"queues": {"general": {}}},
        "webrtc": {"agents": {"ann": {"password_hash": hash_password(PASSWORD)}}},
    }
    with voxgate_node(tmp_path_factory.mktemp("node"), settings) as running:
        yield running


def request(
    node: RunningNode, path: str, body: dict[str, Any] | None = None, origin: str | None = None
) -> tuple[int, bytes]:
    url = f"http://127.0.0.1:{node.http_port}{path}"
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if origin is not None:
        headers["Origin"] = origin
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, data=data, headers=headers), timeout=5
        ) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def own_origin(node: RunningNode) -> str:
    return f"http://127.0.0.1:{node.http_port}"


@pytest.mark.parametrize("path", ["/", "/agent"])
def test_pages_are_served(node: RunningNode, path: str) -> None:
    status, body = request(node, path)
    assert status == 200
    assert b"<html" in body.lower()


def test_agent_login_from_own_origin(node: RunningNode) -> None:
    status, body = request(
        node, "/api/webrtc/login", {"user": "ann", "password": PASSWORD}, own_origin(node)
    )
    assert status == 200
    assert json.loads(body)["role"] == "agent"


def test_agent_login_with_wrong_password(node: RunningNode) -> None:
    status, _ = request(
        node, "/api/webrtc/login", {"user": "ann", "password": "wrong"}, own_origin(node)
    )
    assert status == 401


def test_login_from_other_origin_rejected(node: RunningNode) -> None:
    status, _ = request(
        node, "/api/webrtc/login", {"user": "ann", "password": PASSWORD}, "http://evil.example"
    )
    assert status == 403


def test_queue_counters_list_configured_queues_at_zero(node: RunningNode) -> None:
    status, body = request(node, "/api/queues")
    assert status == 200
    queues = json.loads(body)["queues"]
    assert list(queues) == ["general"]
    assert queues["general"] == dict.fromkeys(NODE_COUNTS, 0)


def test_health_lists_acd(node: RunningNode) -> None:
    status, body = node.health()
    assert status == 200
    assert body["components"]["acd"] is True
