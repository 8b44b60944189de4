"""A flow's transfer step moves a SIP caller with REFER; SIPp plays the transferee."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import assert_clean_log
from tests.support.node import REPOSITORY, RunningNode, voxgate_node
from tests.support.ports import free_udp_port

pytestmark = pytest.mark.peer

SCENARIO = REPOSITORY / "tests" / "data" / "e2e" / "sipp_transfer.xml"
FLOWS = REPOSITORY / "tests" / "data" / "e2e" / "flows"
SIPP_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    settings = {"ivr": {"flows_dir": str(FLOWS), "default_flow": "transfer_test"}}
    with voxgate_node(tmp_path_factory.mktemp("node"), settings) as running:
        yield running


def test_transfer_step_sends_refer(node: RunningNode, tmp_path: Path) -> None:
    errors = tmp_path / "sipp_errors.log"
    command = [
        "sipp", f"127.0.0.1:{node.sip_port}", "-sf", str(SCENARIO), "-m", "1", "-s", "3000",
        "-i", "127.0.0.1", "-p", str(free_udp_port()), "-mp", str(free_udp_port()),
        "-trace_err", "-error_file", str(errors),
        "-nostdin", "-timeout", f"{SIPP_TIMEOUT_S}s", "-timeout_error",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, timeout=SIPP_TIMEOUT_S + 30)

    # SIPp exits 0 only after the REFER to 2000, both NOTIFYs answered 200, and the BYE.
    assert result.returncode == 0, errors.read_text(errors="replace") if errors.exists() else ""
    log = node.log()
    assert "transfer failed" not in log
    assert "flow ended: transferred" in log
    assert_clean_log(node)
