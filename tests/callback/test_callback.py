"""Callback journeys with real parts: a `voxgate serve` node, a baresip caller
that presses the callback key, a SIPp customer phone and an agent (the real
page in Chromium, or aiortc), in a loopback-only namespace."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.support.namespace import run_in_namespace

pytestmark = pytest.mark.timeout(300)


def run_callback(case: str, out: Path, timeout_s: float = 260.0) -> dict[str, Any]:
    """Run tests/callback/scenario.py for `case` in a private network namespace."""
    return run_in_namespace(
        "tests.callback.scenario",
        [case, "--out", str(out)],
        out / f"{case}-result.json",
        timeout_s=timeout_s,
        tools=["baresip", "sipp", "redis-server"],
    )


def by_kind(report: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [event for event in report["events"] if event["kind"] == kind]


def callback_legs(report: dict[str, Any], caller_call_id: str) -> list[dict[str, Any]]:
    legs = [cdr for cdr in report["cdrs"] if cdr["callback_of"] == caller_call_id]
    return sorted(legs, key=lambda cdr: cdr["callback_attempt"])


def check_request(report: dict[str, Any]) -> str:
    """Check the caller's side: hung up by the node, CDR disposition callback."""
    assert report["caller_end"] == "remote"
    requested = report["requested"]
    assert requested["payload"]["queue"] == "general"
    call_id: str = requested["call_id"]
    caller_rows = [cdr for cdr in report["cdrs"] if cdr["call_id"] == call_id]
    assert len(caller_rows) == 1
    assert caller_rows[0]["disposition"] == "callback"
    assert caller_rows[0]["end_reason"] == "callback_requested"
    assert caller_rows[0]["caller"] == "5551234"
    return call_id


def test_answered_callback_bridges_agent_page(tmp_path: Path) -> None:
    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed")
    report = run_callback("answered", tmp_path)
    call_id = check_request(report)
    assert report["context"]["caller"] == "5551234"
    assert report["context"]["queue"] == "general"
    assert report["context"]["intent"] == "billing"
    assert report["kind"].startswith("Callback")
    assert report["agent_heard_customer_s"] >= 2.0
    assert report["customer_heard_agent_s"] >= 1.0
    assert report["presence_after_call"] == "available"
    closed = report["closed"]
    assert len(closed) == 1
    assert closed[0]["call_id"] == call_id
    assert closed[0]["payload"]["outcome"] == "answered"
    assert closed[0]["payload"]["attempts"] == 1
    legs = callback_legs(report, call_id)
    assert len(legs) == 1
    assert legs[0]["disposition"] == "completed"
    assert legs[0]["agent_id"] == "agent1"
    assert legs[0]["called"] == "5551234"
    assert legs[0]["caller"] == "4000"
    assert legs[0]["talk_s"] > 0
    assert report["customer_sipp"]["returncode"] == 0, report["customer_sipp"]["log"]
    assert report["node_log_tracebacks"] == 0


def test_unanswered_callback_retries_then_closes(tmp_path: Path) -> None:
    report = run_callback("no_answer", tmp_path)
    call_id = check_request(report)
    offers = report["offers"]
    assert len(offers) == 2
    assert all(offer["kind"] == "callback" for offer in offers)
    assert all(offer["caller"] == "5551234" for offer in offers)
    reasons = [hangup["reason"] for hangup in report["agent_hangups"]]
    assert reasons == ["customer did not answer", "customer did not answer"]
    attempts = [event["payload"] for event in report["attempts"]]
    assert [attempt["attempt"] for attempt in attempts] == [1, 2]
    assert all(attempt["outcome"] == "no_answer" for attempt in attempts)
    closed = report["closed"]
    assert len(closed) == 1
    assert closed[0]["payload"]["outcome"] == "no_answer"
    assert closed[0]["payload"]["attempts"] == 2
    legs = callback_legs(report, call_id)
    assert [leg["callback_attempt"] for leg in legs] == [1, 2]
    assert all(leg["disposition"] == "no_answer" for leg in legs)
    assert all(leg["talk_s"] is None for leg in legs)
    assert report["customer_sipp"]["returncode"] == 0, report["customer_sipp"]["log"]
    assert report["node_log_tracebacks"] == 0


def test_missed_callback_offer_returns(tmp_path: Path) -> None:
    report = run_callback("agent_misses", tmp_path)
    call_id = check_request(report)
    first, second = report["offers"]
    assert first["kind"] == "callback"
    assert second["kind"] == "callback"
    assert first["call_id"] != second["call_id"]
    assert second["waiting_s"] >= first["waiting_s"]
    assert report["agent_hangups"][0]["reason"] == "not answered"
    returned = report["returned"]
    assert returned[0]["call_id"] == call_id
    assert report["agent_heard_customer_s"] >= 2.0
    assert report["customer_heard_agent_s"] >= 1.0
    closed = report["closed"]
    assert closed[0]["payload"]["outcome"] == "answered"
    assert closed[0]["payload"]["attempts"] == 1
    legs = callback_legs(report, call_id)
    assert len(legs) == 1
    assert legs[0]["disposition"] == "completed"
    assert report["counters"]["returned"] >= 1
    assert report["customer_sipp"]["returncode"] == 0, report["customer_sipp"]["log"]
    assert report["node_log_tracebacks"] == 0


def test_retry_survives_node_death(tmp_path: Path) -> None:
    report = run_callback("node_dies", tmp_path)
    assert report["caller_end"] == "remote"
    call_id = report["requested"]["call_id"]
    assert report["first_offer"]["kind"] == "callback"
    assert report["first_attempt"]["call_id"] == call_id
    assert report["first_attempt"]["payload"]["attempt"] == 1
    assert report["first_attempt"]["payload"]["agent_id"] == "agent1"
    assert report["retry_due"] is not None
    assert report["killed_before_due"]
    assert report["second_offer"]["kind"] == "callback"
    assert report["second_offer"]["caller"] == "5551234"
    assert report["second_hangup"]["reason"] == "customer did not answer"
    attempts = [event["payload"] for event in report["b_attempts"]]
    assert [attempt["attempt"] for attempt in attempts] == [2]
    assert attempts[0]["agent_id"] == "agent2"
    assert report["b_attempts"][0]["node_id"] == "node-b"
    closed = report["b_closed"]
    assert len(closed) == 1
    assert closed[0]["call_id"] == call_id
    assert closed[0]["payload"]["outcome"] == "no_answer"
    assert closed[0]["payload"]["attempts"] == 2
    assert report["a_closed"] == []
    assert report["retry_left_in_redis"] is None
    assert report["customer_sipp"]["returncode"] == 0, report["customer_sipp"]["log"]
    assert report["node_b_log_tracebacks"] == 0
