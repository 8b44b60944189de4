"""Unit tests of `CallTrace.finish`, which builds the record with positional arguments."""

from __future__ import annotations

import dataclasses

from voxgate.cdr import CallDetailRecord, CallTrace, Disposition


def _full_trace() -> CallTrace:
    """Return a trace whose record gets a distinct value in every field."""
    trace = CallTrace("call-1", "node-a", 9.0)
    trace.channel = "sip"
    trace.caller = "1000"
    trace.called = "2000"
    trace.started_at = 10.0
    trace.answered_at = 11.0
    trace.flow = "main"
    trace.ivr_path = ["menu"]
    trace.ivr_outcome = "queued"
    trace.intent = "billing"
    trace.intent_score = 0.5
    trace.sentiment = [0.25]
    trace.queue = "sales"
    trace.priority = 3
    trace.priority_reason = "vip"
    trace.queued = True
    trace.waited_s = 2.0
    trace.agent_id = "alice"
    trace.bridged_at = 15.0
    trace.recording_path = "/rec/call-1.wav"
    trace.recording_pauses = [{"offset_ms": 100}]
    trace.callback_of = "call-0"
    trace.callback_attempt = 2
    return trace


def test_finish_fills_every_field() -> None:
    record = _full_trace().finish(20.0, "agent_hangup", None)
    expected = CallDetailRecord(
        call_id="call-1",
        node_id="node-a",
        channel="sip",
        caller="1000",
        called="2000",
        started_at=10.0,
        answered_at=11.0,
        ended_at=20.0,
        flow="main",
        ivr_path=["menu"],
        ivr_outcome="queued",
        intent="billing",
        intent_score=0.5,
        sentiment=[0.25],
        queue="sales",
        priority=3,
        priority_reason="vip",
        wait_s=2.0,
        agent_id="alice",
        talk_s=5.0,
        disposition=Disposition.COMPLETED,
        end_reason="agent_hangup",
        recording_path="/rec/call-1.wav",
        recording_pauses=[{"offset_ms": 100}],
        callback_of="call-0",
        callback_attempt=2,
    )
    for item in dataclasses.fields(CallDetailRecord):
        assert getattr(record, item.name) == getattr(expected, item.name), item.name


def test_finish_copies_trace_lists() -> None:
    trace = _full_trace()
    record = trace.finish(20.0, "agent_hangup", None)
    trace.ivr_path.append("late")
    trace.sentiment.append(1.0)
    trace.recording_pauses.append({})
    assert record.ivr_path == ["menu"]
    assert record.sentiment == [0.25]
    assert record.recording_pauses == [{"offset_ms": 100}]
