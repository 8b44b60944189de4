"""Delayed offer on a real node: INVITE without SDP, our offer in the 200, the answer in the ACK."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.capture import capture_available
from tests.support.node import REPOSITORY, RunningNode, voxgate_node
from tests.support.sipp import SippProcess, debian_dtmf_pcap, render_scenario
from tests.voxgate.node_api import SseReader, wait_for_cdr

pytestmark = pytest.mark.peer

TOKEN = "delayed-offer-token-41b7"
DATA = REPOSITORY / "tests" / "data" / "voxgate"
CALL_TIMEOUT_S = 90.0
EVENT_TIMEOUT_S = 30.0
CDR_TIMEOUT_S = 15.0
PCMA = 8
ONE_SECOND_OF_PACKETS = 50


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    with voxgate_node(tmp_path_factory.mktemp("node"), {"api": {"token": TOKEN}}) as running:
        yield running


@pytest.mark.skipif(not capture_available(), reason="SIPp plays pcaps and RTP is captured as root")
def test_delayed_offer_call_runs_flow(node: RunningNode, tmp_path: Path) -> None:
    scenario = render_scenario(
        DATA / "sipp_delayed_offer.xml",
        tmp_path / "delayed_offer.xml",
        {"DIGIT_DELAY_MS": 2500, "DTMF_PCAP": debian_dtmf_pcap("2")},
    )
    with SseReader(node.http_port, TOKEN, "?kinds=call.*,ivr.gather_result") as sse:
        sipp = SippProcess(
            scenario,
            tmp_path,
            remote=("127.0.0.1", node.sip_port),
            service="1000",
            global_timeout_s=CALL_TIMEOUT_S,
            capture_rtp=True,
        )
        with sipp:
            result = sipp.wait(CALL_TIMEOUT_S + 10)
            packets = sipp.received_packets()
        assert result.passed, result.describe()
        events = sse.wait_for("call.ended", EVENT_TIMEOUT_S)

    # The node sends with the codec that the ACK's answer chose, to the answer's port.
    assert len(packets) >= ONE_SECOND_OF_PACKETS
    assert {packet.payload_type for packet in packets} == {PCMA}

    kinds = [event["kind"] for event in events]
    assert kinds[:2] == ["call.started", "call.answered"], kinds
    gather = [event["payload"] for event in events if event["kind"] == "ivr.gather_result"]
    assert gather, kinds
    assert gather[-1]["value"] == "2"
    assert events[-1]["payload"] == {"reason": "ivr_hangup", "status": None}

    cdr = wait_for_cdr(node.http_port, events[0]["call_id"], TOKEN, CDR_TIMEOUT_S)
    assert cdr["ivr_path"] == ["welcome", "choose", "support", "goodbye"]
    assert cdr["disposition"] == "self_service"
    assert cdr["answered_at"] is not None


def test_delayed_offer_without_answer_gets_bye(node: RunningNode, tmp_path: Path) -> None:
    with SseReader(node.http_port, TOKEN, "?kinds=call.*,ivr.*") as sse:
        sipp = SippProcess(
            DATA / "sipp_delayed_offer_no_answer.xml",
            tmp_path,
            remote=("127.0.0.1", node.sip_port),
            service="1000",
            global_timeout_s=CALL_TIMEOUT_S,
        )
        with sipp:
            result = sipp.wait(CALL_TIMEOUT_S + 10)
        assert result.passed, result.describe()
        events = sse.wait_for("call.ended", EVENT_TIMEOUT_S)

    assert [event["kind"] for event in events] == ["call.started", "call.answered", "call.ended"]
    assert events[-1]["payload"] == {"reason": "invalid_answer", "status": None}
    cdr = wait_for_cdr(node.http_port, events[0]["call_id"], TOKEN, CDR_TIMEOUT_S)
    assert cdr["disposition"] == "failed"
    assert cdr["end_reason"] == "invalid_answer"
    assert cdr["ivr_path"] == []
