"""A real node's CDRs and event stream after real SIPp calls through the demo flow."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.capture import capture_available
from tests.support.node import REPOSITORY, RunningNode, voxgate_node
from tests.support.sipp import SippProcess, debian_dtmf_pcap, render_scenario
from tests.voxgate.node_api import SseReader, WebhookReceiver, get_json, wait_for_cdr
from voxgate.webhooks import SIGNATURE_HEADER, verify

pytestmark = pytest.mark.peer

TOKEN = "cdr-test-token-5f1c2a9e"
WEBHOOK_SECRET = "webhook-test-secret-93a1"
DEMO_CALL = REPOSITORY / "tests" / "data" / "e2e" / "sipp_demo_call.xml"
G729_ONLY = REPOSITORY / "tests" / "data" / "voxgate" / "sipp_g729_only.xml"
CALL_TIMEOUT_S = 90.0
EVENT_TIMEOUT_S = 30.0
CDR_TIMEOUT_S = 15.0


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running


@pytest.fixture(scope="module")
def node(
    tmp_path_factory: pytest.TempPathFactory, receiver: WebhookReceiver
) -> Iterator[RunningNode]:
    settings = {
        "api": {"token": TOKEN},
        "webhooks": {"urls": [receiver.url], "secret": WEBHOOK_SECRET, "kinds": ["call.*"]},
    }
    with voxgate_node(tmp_path_factory.mktemp("node"), settings) as running:
        yield running


def kinds_of(events: list[dict[str, Any]]) -> list[str]:
    return [event["kind"] for event in events]


@pytest.mark.skipif(not capture_available(), reason="SIPp plays RFC 4733 pcaps only as root")
def test_demo_call_cdr_and_events(node: RunningNode, tmp_path: Path) -> None:
    scenario = render_scenario(
        DEMO_CALL,
        tmp_path / "demo_call.xml",
        {"DIGIT_DELAY_MS": 2500, "DTMF_PCAP": debian_dtmf_pcap("1")},
    )
    with SseReader(node.http_port, TOKEN, "?kinds=call.*,ivr.*") as sse:
        sipp = SippProcess(
            scenario,
            tmp_path,
            remote=("127.0.0.1", node.sip_port),
            service="1000",
            global_timeout_s=CALL_TIMEOUT_S,
        )
        with sipp:
            result = sipp.wait(CALL_TIMEOUT_S + 10)
        assert result.passed, result.describe()
        events = sse.wait_for("call.ended", EVENT_TIMEOUT_S)

    kinds = kinds_of(events)
    assert kinds[0] == "call.started", kinds
    assert kinds[1] == "call.answered", kinds
    assert "ivr.session_ended" in kinds
    assert kinds[-1] == "call.ended"
    call_id = events[0]["call_id"]
    assert {event["call_id"] for event in events} == {call_id}

    started = events[0]["payload"]
    assert started["channel"] == "sip"
    assert started["called"] == "1000"
    assert started["caller"] == "sipp"
    gather = [e["payload"] for e in events if e["kind"] == "ivr.gather_result"]
    assert gather, kinds
    assert gather[-1]["value"] == "1"
    assert events[-1]["payload"] == {"reason": "ivr_hangup", "status": None}

    cdr = wait_for_cdr(node.http_port, call_id, TOKEN, CDR_TIMEOUT_S)
    assert cdr["call_id"] == call_id
    assert cdr["channel"] == "sip"
    assert cdr["called"] == "1000"
    assert cdr["flow"] == "demo"
    assert cdr["ivr_path"] == ["welcome", "choose", "sales", "goodbye"]
    assert cdr["ivr_outcome"] == "hangup"
    assert cdr["disposition"] == "self_service"
    assert cdr["end_reason"] == "ivr_hangup"
    assert cdr["answered_at"] is not None
    assert cdr["started_at"] <= cdr["answered_at"] < cdr["ended_at"]
    assert cdr["answered_at"] == events[1]["time"]
    assert cdr["ended_at"] == events[-1]["time"]
    assert cdr["talk_s"] is None
    assert cdr["wait_s"] is None
    assert cdr["queue"] is None

    status, listing = get_json(node.http_port, "/api/cdrs?limit=10", TOKEN)
    assert status == 200
    assert call_id in [record["call_id"] for record in listing["cdrs"]]


def test_rejected_call_cdr(node: RunningNode, tmp_path: Path) -> None:
    with SseReader(node.http_port, TOKEN, "?kinds=call.*") as sse:
        sipp = SippProcess(
            G729_ONLY,
            tmp_path,
            remote=("127.0.0.1", node.sip_port),
            service="1000",
            global_timeout_s=CALL_TIMEOUT_S,
        )
        with sipp:
            result = sipp.wait(CALL_TIMEOUT_S + 10)
        assert result.passed, result.describe()
        events = sse.wait_for("call.ended", EVENT_TIMEOUT_S)

    assert kinds_of(events) == ["call.started", "call.ended"]
    assert events[-1]["payload"] == {"reason": "rejected", "status": 488}
    cdr = wait_for_cdr(node.http_port, events[0]["call_id"], TOKEN, CDR_TIMEOUT_S)
    assert cdr["disposition"] == "failed"
    assert cdr["end_reason"] == "rejected"
    assert cdr["answered_at"] is None
    assert cdr["ivr_path"] == []


def test_webhook_gets_signed_call_events(
    node: RunningNode, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    with SseReader(node.http_port, TOKEN, "?kinds=call.started") as sse:
        sipp = SippProcess(
            G729_ONLY,
            tmp_path,
            remote=("127.0.0.1", node.sip_port),
            service="1000",
            global_timeout_s=CALL_TIMEOUT_S,
        )
        with sipp:
            result = sipp.wait(CALL_TIMEOUT_S + 10)
        assert result.passed, result.describe()
        call_id = sse.wait_for("call.started", EVENT_TIMEOUT_S)[-1]["call_id"]

    deliveries = receiver.wait_for("call.ended", call_id, EVENT_TIMEOUT_S)
    events = [json.loads(delivery.body) for delivery in deliveries]
    assert [event["kind"] for event in events] == ["call.started", "call.ended"]
    assert events[-1]["payload"] == {"reason": "rejected", "status": 488}
    for delivery in deliveries:
        assert delivery.path == "/hook"
        assert verify(WEBHOOK_SECRET, delivery.body, delivery.headers[SIGNATURE_HEADER])


@pytest.mark.parametrize("path", ["/api/cdrs", "/api/cdrs/x", "/api/events"])
@pytest.mark.parametrize("token", [None, "wrong-token-0000000000"], ids=["missing", "wrong"])
def test_api_without_valid_token_is_401(node: RunningNode, path: str, token: str | None) -> None:
    status, _ = get_json(node.http_port, path, token)
    assert status == 401
