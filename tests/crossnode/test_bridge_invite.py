"""Bridge INVITEs from a real SIP peer (SIPp) to a `voxgate serve` node with a cluster secret:
a forged or expired token gets 403, a valid one for a caller not waiting here gets 404."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acd.redis_server import start_redis
from tests.support.node import REPOSITORY, RunningNode, voxgate_node
from tests.support.sipp import SIPP_BINARY, render_scenario, run_sipp
from voxgate.bridgetoken import BridgeClaim, sign_bridge

SECRET = "bridge-invite-test-cluster-secret-0123456789"
TEMPLATE = REPOSITORY / "tests" / "data" / "crossnode" / "sipp_bridge_invite.xml"

pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(not SIPP_BINARY.exists(), reason="sipp is not installed"),
]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    work_dir = tmp_path_factory.mktemp("bridge-invite")
    redis = start_redis(work_dir)
    try:
        settings = {"acd": {"store": redis.url}, "cluster": {"secret": SECRET}}
        with voxgate_node(work_dir, settings) as running:
            yield running
    finally:
        redis.stop()


def send_bridge(node: RunningNode, tmp_path: Path, header: str, status: int) -> None:
    scenario = render_scenario(
        TEMPLATE,
        tmp_path / "bridge.xml",
        {"BRIDGE_VALUE": header, "EXPECTED_STATUS": status},
    )
    result = run_sipp(scenario, tmp_path, remote=("127.0.0.1", node.sip_port), timeout_s=30)
    assert result.passed, result.describe()


def signed(secret: str, call_id: str, expires: float) -> str:
    claim = BridgeClaim(call_id, "agent1", "other-node", int(expires))
    return sign_bridge(secret.encode(), claim)


def test_forged_signature_gets_403(node: RunningNode, tmp_path: Path) -> None:
    header = signed("not-the-cluster-secret-but-long-enough!!", "c1", time.time() + 20)
    send_bridge(node, tmp_path, header, 403)
    assert "bridge INVITE rejected: bridge header signature does not match" in node.log()


def test_expired_token_gets_403(node: RunningNode, tmp_path: Path) -> None:
    send_bridge(node, tmp_path, signed(SECRET, "c2", time.time() - 5), 403)
    assert "bridge INVITE rejected: bridge header expired" in node.log()


def test_incomplete_header_gets_403(node: RunningNode, tmp_path: Path) -> None:
    send_bridge(node, tmp_path, "v1;call=c3;sig=00", 403)
    assert "bridge INVITE rejected: bridge header is missing a field" in node.log()


def test_valid_token_for_unknown_caller_gets_404(node: RunningNode, tmp_path: Path) -> None:
    send_bridge(node, tmp_path, signed(SECRET, "no-such-call", time.time() + 20), 404)
    assert "no longer waits here" in node.log()
    assert node.log().count("Traceback") == 0
