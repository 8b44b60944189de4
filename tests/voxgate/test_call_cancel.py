"""A SIP caller who cancels while the node rings: 487, and a `no_answer` CDR."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.node import REPOSITORY, RunningNode, voxgate_node
from tests.support.sipp import SippProcess
from tests.voxgate.node_api import SseReader, wait_for_cdr

pytestmark = pytest.mark.peer

TOKEN = "cancel-test-token-2c6d90"
SCENARIO = REPOSITORY / "tests" / "data" / "voxgate" / "sipp_cancel_while_ringing.xml"
# Long enough that SIPp's CANCEL always arrives while the node still rings.
RING_MS = 30_000
CALL_TIMEOUT_S = 60.0
EVENT_TIMEOUT_S = 30.0
CDR_TIMEOUT_S = 15.0


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    settings = {"api": {"token": TOKEN}, "sip": {"ring_ms": RING_MS}}
    with voxgate_node(tmp_path_factory.mktemp("node"), settings) as running:
        yield running


def test_cancel_while_ringing(node: RunningNode, tmp_path: Path) -> None:
    with SseReader(node.http_port, TOKEN, "?kinds=call.*,ivr.*") as sse:
        sipp = SippProcess(
            SCENARIO,
            tmp_path,
            remote=("127.0.0.1", node.sip_port),
            service="1000",
            global_timeout_s=CALL_TIMEOUT_S,
        )
        with sipp:
            result = sipp.wait(CALL_TIMEOUT_S + 10)
        assert result.passed, result.describe()
        events = sse.wait_for("call.ended", EVENT_TIMEOUT_S)

    assert [event["kind"] for event in events] == ["call.started", "call.ended"]
    assert events[-1]["payload"] == {"reason": "caller_cancel", "status": 487}
    cdr = wait_for_cdr(node.http_port, events[0]["call_id"], TOKEN, CDR_TIMEOUT_S)
    assert cdr["disposition"] == "no_answer"
    assert cdr["end_reason"] == "caller_cancel"
    assert cdr["answered_at"] is None
