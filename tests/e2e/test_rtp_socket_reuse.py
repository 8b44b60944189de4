"""A node reuses RTP socket pairs between SIP calls and closes them when it stops."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from tests.support.node import REPOSITORY, voxgate_node
from tests.support.sipp import run_sipp

SCENARIO = REPOSITORY / "bench" / "sipp" / "uac_invite_bye.xml"
CALLS = 6
STOP_TIMEOUT_S = 30.0
POOL_CLOSED = re.compile(
    r"rtp socket pool closed: (\d+) idle pairs closed, (\d+) in use; "
    r"(\d+) pairs bound, (\d+) reuses"
)


@pytest.mark.peer
def test_calls_reuse_pairs_closed_at_stop(tmp_path: Path) -> None:
    settings = {
        "ivr": {"flows_dir": str(REPOSITORY / "bench" / "flows"), "default_flow": "answer_hangup"},
        "rtp": {"socket_quarantine_s": 0},
    }
    with voxgate_node(tmp_path, settings) as node:
        # One call at a time, so each call finds the previous call's pair released.
        result = run_sipp(
            SCENARIO,
            tmp_path,
            remote=("127.0.0.1", node.sip_port),
            calls=CALLS,
            extra_args=["-l", "1", "-r", "5"],
            timeout_s=60.0,
        )
        assert result.passed, result.describe()

        node.process.send_signal(signal.SIGTERM)
        assert node.process.wait(timeout=STOP_TIMEOUT_S) == 0
        log = node.log()

    assert "Traceback" not in log
    closed = POOL_CLOSED.search(log)
    assert closed is not None, log[-3000:]
    idle, in_use, bound, reuses = (int(value) for value in closed.groups())
    assert in_use == 0
    assert bound + reuses == CALLS
    assert reuses >= 1
    assert idle == bound
