"""How a real node ends queued SIP callers: media timeout and its own stop.

A SIPp caller that sends no RTP is ended with BYE and `rtp_timeout`, while
one that echoes the node's hold audio (so sends RTP all along) stays queued.
Stopping the node then ends the remaining caller as `node_stopped`, not as
abandoned, in the ACD events and the CDR.
"""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.support.node import REPOSITORY, voxgate_node
from tests.support.sipp import SippProcess
from tests.voxgate.node_api import SseReader, wait_for_cdr

pytestmark = pytest.mark.peer

TOKEN = "end-reason-token-7d41c0b2"
FLOWS = REPOSITORY / "tests" / "data" / "voxgate" / "flows"
WAIT_FOR_BYE = REPOSITORY / "tests" / "data" / "e2e" / "sipp_wait_for_bye.xml"
REINVITE_HOLD = REPOSITORY / "tests" / "data" / "voxgate" / "sipp_reinvite_hold.xml"
HELD_WAIT_FOR_BYE = REPOSITORY / "tests" / "data" / "voxgate" / "sipp_held_wait_for_bye.xml"
RTP_TIMEOUT_S = 2.0
EVENT_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0


def caller(work_dir: Path, sip_port: int, *, echo: bool) -> SippProcess:
    work_dir.mkdir(exist_ok=True)
    return SippProcess(
        WAIT_FOR_BYE,
        work_dir,
        remote=("127.0.0.1", sip_port),
        service="1000",
        rtp_echo=echo,
        global_timeout_s=90.0,
    )


def next_event(
    sse: SseReader, seen: list[dict[str, Any]], kind: str, call_id: str | None = None
) -> dict[str, Any]:
    """Return the next event of `kind` (of `call_id` when given); add all read to `seen`."""
    while True:
        events = sse.wait_for(kind, EVENT_TIMEOUT_S)
        seen.extend(events)
        if call_id is None or events[-1]["call_id"] == call_id:
            return events[-1]


def cdr_row(path: Path, call_id: str) -> dict[str, Any]:
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        row = db.execute("SELECT * FROM cdr WHERE call_id = ?", (call_id,)).fetchone()
    assert row is not None, f"no CDR for {call_id}"
    return dict(row)


def test_rtp_timeout_then_node_stop(tmp_path: Path) -> None:
    cdr_path = tmp_path / "cdr.sqlite"
    settings = {
        "ivr": {"flows_dir": str(FLOWS), "default_flow": "queue_now"},
        "acd": {"queues": {"general": {}}},
        "rtp": {"timeout_s": RTP_TIMEOUT_S},
        "cdr": {"path": str(cdr_path)},
        "api": {"token": TOKEN},
    }
    (tmp_path / "node").mkdir()
    with voxgate_node(tmp_path / "node", settings) as node:
        query = "?kinds=call.started,call.ended,acd.caller_joined,acd.caller_left"
        with (
            SseReader(node.http_port, TOKEN, query) as sse,
            caller(tmp_path / "talker", node.sip_port, echo=True) as talker,
        ):
            seen: list[dict[str, Any]] = []
            talking = next_event(sse, seen, "acd.caller_joined")["call_id"]
            with caller(tmp_path / "silent", node.sip_port, echo=False) as silent:
                started = next_event(sse, seen, "call.started")
                quiet = started["call_id"]
                ended = next_event(sse, seen, "call.ended", quiet)
                assert ended["payload"]["reason"] == "rtp_timeout"
                # The silent caller received a BYE and sent 200 OK.
                result = silent.wait(EVENT_TIMEOUT_S)
                assert result.passed, result.describe()
            # The talker joined before the silent caller, so it had no RTP
            # gap of RTP_TIMEOUT_S only because it sent RTP all along.
            record = wait_for_cdr(node.http_port, quiet, TOKEN, EVENT_TIMEOUT_S)
            assert record["end_reason"] == "rtp_timeout"
            assert record["disposition"] == "failed"
            assert record["queue"] == "general"
            talker_ends = [e for e in seen if e["kind"] == "call.ended" and e["call_id"] == talking]
            assert talker_ends == [], "the caller that sends RTP was cut"

            node.process.send_signal(signal.SIGTERM)
            left = next_event(sse, seen, "acd.caller_left", talking)
            ended = next_event(sse, seen, "call.ended", talking)
            assert node.process.wait(timeout=STOP_TIMEOUT_S) == 0
            result = talker.wait(EVENT_TIMEOUT_S)
            assert result.passed, result.describe()

    assert left["payload"]["reason"] == "node_stopped"
    assert left["payload"]["abandoned"] is False
    assert ended["payload"]["reason"] == "node_stopped"
    row = cdr_row(cdr_path, talking)
    assert row["end_reason"] == "node_stopped"
    assert row["disposition"] == "failed"
    assert row["queue"] == "general"
    log = node.log()
    assert "caller hung up while waiting" not in log


@pytest.mark.parametrize(
    "scenario", [HELD_WAIT_FOR_BYE, REINVITE_HOLD], ids=["held-offer", "held-reinvite"]
)
def test_held_caller_gets_hold_limit(tmp_path: Path, scenario: Path) -> None:
    hold_timeout_s = 3.0
    settings = {
        "ivr": {"flows_dir": str(FLOWS), "default_flow": "queue_now"},
        "acd": {"queues": {"general": {}}},
        "rtp": {"timeout_s": 1.0, "hold_timeout_s": hold_timeout_s},
        "cdr": {"path": None},
        "api": {"token": TOKEN},
    }
    (tmp_path / "node").mkdir()
    with (
        voxgate_node(tmp_path / "node", settings) as node,
        SseReader(node.http_port, TOKEN, "?kinds=call.answered,call.ended") as sse,
        SippProcess(
            scenario,
            tmp_path,
            remote=("127.0.0.1", node.sip_port),
            service="1000",
            global_timeout_s=90.0,
        ) as held,
    ):
        seen: list[dict[str, Any]] = []
        answered = next_event(sse, seen, "call.answered")
        ended = next_event(sse, seen, "call.ended", answered["call_id"])
        result = held.wait(EVENT_TIMEOUT_S)
        assert result.passed, result.describe()

    assert ended["payload"]["reason"] == "rtp_timeout"
    # The 1 s limit did not apply while the SDP held the call.
    assert ended["time"] - answered["time"] >= hold_timeout_s - 0.1
    assert "(on hold)" in node.log()
