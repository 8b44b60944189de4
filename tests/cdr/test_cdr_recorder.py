"""CDRs built from real IVR and ACD events and written to a real SQLite file."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from acd.events import CallerLeft
from ivr.engine import Outcome
from tests.cdr.journey import CALLED, CALLER, NODE_ID, START_TIME, Node, make_node
from voxgate.callevents import CallEvent, CallLegEvents, Channel, EventHub, from_acd_event
from voxgate.cdr import CallDetailRecord, CallTrace, Disposition
from voxgate.cdrapi import add_cdr_routes
from voxgate.cdrstore import (
    SCHEMA_VERSION,
    CdrConfig,
    CdrRecorder,
    CdrSchemaError,
    CdrStore,
    _string_list_json,
)


@pytest.fixture
async def hub() -> EventHub:
    return EventHub()


@pytest.fixture
async def recorder(tmp_path: Path, hub: EventHub) -> AsyncIterator[CdrRecorder]:
    recorder = CdrRecorder(CdrConfig(path=tmp_path / "cdr.db", node_id=NODE_ID), hub)
    await recorder.start()
    yield recorder
    await recorder.close()


async def queue_through_ivr(node: Node, call_id: str) -> list[CallEvent]:
    """Start, answer and run the IVR until the caller is queued; return the ACD's events."""
    acd_events: list[CallEvent] = []
    node.hub.listen(lambda e: acd_events.append(e) if e.kind.startswith("acd.") else None)
    node.legs.started(call_id, channel=Channel.SIP, caller=CALLER, called=CALLED)
    node.clock.advance(2)
    node.legs.answered(call_id)
    result = await node.run_ivr(call_id, ["I want a refund"])
    assert result.outcome is Outcome.QUEUED
    node.legs.flow_result(call_id, result)
    return acd_events


async def test_full_journey_writes_expected_row(
    hub: EventHub, recorder: CdrRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    node = make_node(hub)
    ivr_events: list[CallEvent] = []
    hub.listen(lambda e: ivr_events.append(e) if e.kind.startswith("ivr.") else None)
    acd_events = await queue_through_ivr(node, "call-1")

    node.clock.advance(42)
    await node.acd.login("agent-7", ["care"])
    assert await node.acd.dispatch() == 1
    offered = [e for e in acd_events if e.kind == "acd.caller_offered"]
    assert len(offered) == 1
    assert await node.acd.answer_offer("agent-7", offered[0].payload["entry_id"])
    node.legs.recording("call-1", path="/var/lib/voxgate/recordings/call-1.wav")
    node.clock.advance(95)
    node.legs.ended("call-1", reason="agent_hangup")
    await recorder.flush()

    row = await recorder.get("call-1")
    assert row is not None
    assert row.node_id == NODE_ID
    assert row.channel == "sip"
    assert row.caller == CALLER
    assert row.called == CALLED
    assert row.started_at == START_TIME
    assert row.answered_at == START_TIME + 2
    assert row.ended_at == START_TIME + 2 + 42 + 95
    assert row.flow == "care"
    entered = [e.payload["step"] for e in ivr_events if e.kind == "ivr.step_entered"]
    assert row.ivr_path == entered
    assert row.ivr_path == ["ask", "to_queue"]
    assert row.ivr_outcome == "queued"
    assert row.intent == "refund"
    assert row.intent_score is not None
    sentiment = [e.payload["score"] for e in ivr_events if e.kind == "ivr.sentiment"]
    assert row.sentiment == sentiment
    assert row.queue == "care"
    assert row.priority == 6
    assert row.priority_reason == "refund"
    assert row.wait_s == 42
    assert row.agent_id == "agent-7"
    assert row.talk_s == 95
    assert row.disposition is Disposition.COMPLETED
    assert row.end_reason == "agent_hangup"
    assert row.recording_path == "/var/lib/voxgate/recordings/call-1.wav"
    assert recorder.open_calls == 0
    assert recorder.written == 1
    log_text = "\n".join(record.getMessage() for record in caplog.records)
    assert CALLER not in log_text
    assert "I want a refund" not in log_text


async def test_abandoned_in_queue(hub: EventHub, recorder: CdrRecorder) -> None:
    node = make_node(hub)
    await queue_through_ivr(node, "call-2")
    node.clock.advance(30)
    assert await node.acd.leave("call-2", "hangup")
    node.legs.ended("call-2", reason="caller_hangup")
    await recorder.flush()

    row = await recorder.get("call-2")
    assert row is not None
    assert row.disposition is Disposition.ABANDONED
    assert row.queue == "care"
    assert row.wait_s == 30
    assert row.agent_id is None
    assert row.talk_s is None
    assert row.end_reason == "caller_hangup"


async def test_hangup_in_queue_without_leave_event(hub: EventHub, recorder: CdrRecorder) -> None:
    node = make_node(hub)
    await queue_through_ivr(node, "call-3")
    node.clock.advance(12.5)
    node.legs.ended("call-3", reason="caller_hangup")
    await recorder.flush()

    row = await recorder.get("call-3")
    assert row is not None
    assert row.disposition is Disposition.ABANDONED
    assert row.wait_s == 12.5


async def test_late_event_does_not_reopen_call(hub: EventHub, recorder: CdrRecorder) -> None:
    node = make_node(hub)
    await queue_through_ivr(node, "call-l")
    node.clock.advance(8)
    node.legs.ended("call-l", reason="caller_hangup")
    assert await node.acd.leave("call-l", "hangup")
    await recorder.flush()

    assert recorder.open_calls == 0
    row = await recorder.get("call-l")
    assert row is not None
    assert row.disposition is Disposition.ABANDONED
    assert row.wait_s == 8
    assert row.end_reason == "caller_hangup"


async def test_caller_of_dead_node_gets_row(hub: EventHub, recorder: CdrRecorder) -> None:
    left = CallerLeft(START_TIME + 90, "call-z", "node-dead.1", "care", "node_lost", 60.0, True)
    hub.publish(from_acd_event(left, NODE_ID))
    await recorder.flush()

    assert recorder.open_calls == 0
    row = await recorder.get("call-z")
    assert row is not None
    assert row.disposition is Disposition.FAILED
    assert row.end_reason == "node_lost"
    assert row.queue == "care"
    assert row.wait_s == 60
    assert row.started_at == START_TIME + 30
    assert row.ended_at == START_TIME + 90
    assert row.caller is None


async def test_rejected_call_never_reached_ivr(hub: EventHub, recorder: CdrRecorder) -> None:
    node = make_node(hub)
    node.legs.started("call-4", channel=Channel.WEBRTC, caller=CALLER, called="9999")
    node.clock.advance(0.2)
    node.legs.ended("call-4", reason="rejected", status=404)
    node.legs.started("call-5", channel=Channel.SIP, caller=CALLER, called=CALLED)
    node.clock.advance(3)
    node.legs.ended("call-5", reason="caller_cancel", status=487)
    await recorder.flush()

    rejected = await recorder.get("call-4")
    assert rejected is not None
    assert rejected.channel == "webrtc"
    assert rejected.disposition is Disposition.FAILED
    assert rejected.answered_at is None
    assert rejected.ivr_path == []
    assert rejected.flow is None
    assert rejected.queue is None
    assert rejected.wait_s is None
    assert rejected.sentiment == []
    cancelled = await recorder.get("call-5")
    assert cancelled is not None
    assert cancelled.disposition is Disposition.NO_ANSWER
    assert cancelled.ended_at - cancelled.started_at == 3


async def test_ivr_self_service_and_caller_hangup(hub: EventHub, recorder: CdrRecorder) -> None:
    node = make_node(hub)
    for call_id, turns in (("call-6", [None, None, None, None]), ("call-7", [])):
        node.legs.started(call_id, channel=Channel.SIP, caller=CALLER, called=CALLED)
        node.legs.answered(call_id)
        await node.run_ivr(call_id, turns)
        node.legs.ended(call_id, reason="ivr_hangup")
    await recorder.flush()

    silent = await recorder.get("call-6")
    assert silent is not None
    assert silent.ivr_outcome == "hangup"
    assert silent.ivr_path == ["ask", "bye"]
    assert silent.disposition is Disposition.SELF_SERVICE
    gone = await recorder.get("call-7")
    assert gone is not None
    assert gone.ivr_outcome == "caller_hangup"
    assert gone.disposition is Disposition.ABANDONED


async def test_rows_survive_restart(tmp_path: Path, hub: EventHub) -> None:
    config = CdrConfig(path=tmp_path / "cdr.db", node_id=NODE_ID)
    first = CdrRecorder(config, hub)
    await first.start()
    node = make_node(hub)
    node.legs.started("call-8", channel=Channel.SIP, caller=CALLER, called=CALLED)
    node.legs.answered("call-8")
    node.clock.advance(5)
    node.legs.ended("call-8", reason="caller_hangup")
    node.legs.started("call-9", channel=Channel.SIP, caller=CALLER, called=CALLED)
    await first.close()

    second = CdrRecorder(config, EventHub())
    await second.start()
    try:
        kept = await second.get("call-8")
        assert kept is not None
        assert kept.caller == CALLER
        open_at_stop = await second.get("call-9")
        assert open_at_stop is not None
        assert open_at_stop.end_reason == "node_stopped"
        recent = await second.recent(10)
        assert {row.call_id for row in recent} == {"call-8", "call-9"}
        assert second.store is not None
        assert second.store.schema_version() == SCHEMA_VERSION
    finally:
        await second.close()
    with sqlite3.connect(config.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_store_rejects_unknown_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "cdr.db"
    CdrStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(CdrSchemaError, match="schema version"):
        CdrStore(path)


async def test_recent_orders_by_end_time(hub: EventHub, recorder: CdrRecorder) -> None:
    node = make_node(hub)
    for index in range(5):
        node.legs.started(f"call-r{index}", channel=Channel.SIP, caller=CALLER, called=CALLED)
        node.clock.advance(1)
        node.legs.ended(f"call-r{index}", reason="caller_hangup")
    await recorder.flush()
    recent = await recorder.recent(3)
    assert [row.call_id for row in recent] == ["call-r4", "call-r3", "call-r2"]


async def test_started_call_row_matches_trace(hub: EventHub, recorder: CdrRecorder) -> None:
    started = {
        "channel": "sip",
        "caller": CALLER,
        "called": CALLED,
        "callback_of": "call-r",
        "attempt": 2,
    }
    events = [
        CallEvent("call.started", "call-s", NODE_ID, START_TIME, started),
        CallEvent("call.answered", "call-s", NODE_ID, START_TIME + 2, {}),
    ]
    trace = CallTrace("call-s", NODE_ID, START_TIME)
    for event in events:
        trace.apply(event)
        hub.publish(event)
    hub.publish(CallEvent("call.ended", "call-s", NODE_ID, START_TIME + 9, {"reason": "busy"}))
    await recorder.flush()

    row = await recorder.get("call-s")
    assert row == trace.finish(START_TIME + 9, "busy", None)
    assert row is not None
    assert row.callback_of == "call-r"
    assert row.callback_attempt == 2


async def test_open_call_bound_evicts_oldest(tmp_path: Path, hub: EventHub) -> None:
    config = CdrConfig(path=tmp_path / "cdr.db", node_id=NODE_ID, max_open_calls=2)
    recorder = CdrRecorder(config, hub)
    await recorder.start()
    try:
        node = make_node(hub)
        for index in range(3):
            node.legs.started(f"call-e{index}", channel=Channel.SIP, caller=CALLER, called=CALLED)
        await recorder.flush()
        assert recorder.open_calls == 2
        evicted = await recorder.get("call-e0")
        assert evicted is not None
        assert evicted.end_reason == "evicted"
        assert await recorder.get("call-e1") is None
    finally:
        await recorder.close()


async def test_ended_call_bound_forgets_oldest(tmp_path: Path, hub: EventHub) -> None:
    config = CdrConfig(path=tmp_path / "cdr.db", node_id=NODE_ID, max_open_calls=2)
    recorder = CdrRecorder(config, hub)
    await recorder.start()
    try:
        node = make_node(hub)
        for index in range(3):
            call_id = f"call-f{index}"
            node.legs.started(call_id, channel=Channel.SIP, caller=CALLER, called=CALLED)
            node.legs.ended(call_id, reason="caller_hangup")
        assert recorder.open_calls == 0

        # The two latest ended calls are remembered, so their late events are ignored.
        node.legs.answered("call-f1")
        node.legs.answered("call-f2")
        assert recorder.open_calls == 0

        # The oldest one was forgotten, so its late event opens a new trace.
        node.legs.answered("call-f0")
        assert recorder.open_calls == 1
    finally:
        await recorder.close()


async def test_http_routes_serve_cdrs(hub: EventHub, recorder: CdrRecorder) -> None:
    node = make_node(hub)
    node.legs.started("call-h", channel=Channel.SIP, caller=CALLER, called=CALLED)
    node.clock.advance(4)
    node.legs.ended("call-h", reason="caller_cancel", status=487)
    await recorder.flush()
    app = web.Application()
    add_cdr_routes(app, recorder, token="t0ken")
    auth = {"Authorization": "Bearer t0ken"}
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        async with client.get("/api/cdrs/call-h") as response:
            assert response.status == 401
        async with client.get("/api/cdrs/call-h", headers=auth) as response:
            assert response.status == 200
            body = await response.json()
        assert body["call_id"] == "call-h"
        assert body["caller"] == CALLER
        assert body["disposition"] == "no_answer"
        assert body["ivr_path"] == []
        async with client.get("/api/cdrs?limit=5", headers=auth) as response:
            assert response.status == 200
            listed = await response.json()
        assert [row["call_id"] for row in listed["cdrs"]] == ["call-h"]
        async with client.get("/api/cdrs/unknown", headers=auth) as response:
            assert response.status == 404
        async with client.get("/api/cdrs?limit=0", headers=auth) as response:
            assert response.status == 400


async def test_records_of_wait_share_transaction(tmp_path: Path, hub: EventHub) -> None:
    recorder = CdrRecorder(CdrConfig(path=tmp_path / "cdr.db", node_id=NODE_ID), hub)
    await recorder.start()
    store = recorder.store
    assert store is not None
    batches: list[int] = []
    write = store.insert

    def counting_insert(records: Sequence[CallDetailRecord]) -> None:
        batches.append(len(records))
        write(records)

    store.insert = counting_insert  # type: ignore[method-assign]
    legs = CallLegEvents(hub, NODE_ID)
    try:
        legs.started("call-1", channel=Channel.SIP, caller=CALLER, called=CALLED)
        legs.ended("call-1", reason="caller_hangup", status=None)
        # The writer takes the first record now and waits for more.
        await asyncio.sleep(0)
        for number in range(2, 6):
            legs.started(f"call-{number}", channel=Channel.SIP, caller=CALLER, called=CALLED)
            legs.ended(f"call-{number}", reason="caller_hangup", status=None)
        await asyncio.wait_for(recorder.flush(), 5.0)
    finally:
        await recorder.close()

    assert batches == [5]
    assert recorder.written == 5


def test_store_writes_json_and_disposition_text(tmp_path: Path) -> None:
    path = tmp_path / "cdr.db"
    store = CdrStore(path)
    common: dict[str, Any] = {
        "node_id": NODE_ID, "channel": "sip", "caller": CALLER, "called": CALLED,
        "started_at": START_TIME, "answered_at": None, "ended_at": START_TIME + 3,
        "flow": "main", "ivr_outcome": None, "intent": None, "intent_score": None,
        "queue": None, "priority": None, "priority_reason": None, "wait_s": None,
        "agent_id": None, "talk_s": None, "end_reason": "bye", "recording_path": None,
    }  # fmt: skip
    empty = CallDetailRecord(
        call_id="empty", ivr_path=[], sentiment=[], recording_pauses=[],
        disposition=Disposition.SELF_SERVICE, **common,
    )  # fmt: skip
    full = CallDetailRecord(
        call_id="full", ivr_path=["menu", "bye"], sentiment=[0.5, -0.25],
        recording_pauses=[{"paused_at": 1.0, "resumed_at": None}],
        disposition=Disposition.ABANDONED, callback_of="other", callback_attempt=2, **common,
    )  # fmt: skip
    store.insert([empty, full])
    assert store.get("empty") == empty
    assert store.get("full") == full
    store.close()
    sql = "SELECT ivr_path, sentiment, recording_pauses, disposition FROM cdr WHERE call_id = ?"
    with sqlite3.connect(path) as db:
        assert db.execute(sql, ("empty",)).fetchone() == ("[]", "[]", "[]", "self_service")
        assert db.execute(sql, ("full",)).fetchone() == (
            '["menu", "bye"]',
            "[0.5, -0.25]",
            '[{"paused_at": 1.0, "resumed_at": null}]',
            "abandoned",
        )


async def test_full_write_queue_loses_records(
    tmp_path: Path, hub: EventHub, caplog: pytest.LogCaptureFixture
) -> None:
    config = CdrConfig(path=tmp_path / "cdr.db", node_id=NODE_ID, max_pending=2)
    recorder = CdrRecorder(config, hub)
    await recorder.start()
    legs = CallLegEvents(hub, NODE_ID)
    try:
        # The writer runs only when this test yields, so all three records queue at once.
        for number in range(3):
            legs.started(f"call-{number}", channel=Channel.SIP, caller=CALLER, called=CALLED)
            legs.ended(f"call-{number}", reason="caller_hangup")
        assert recorder.lost == 1
        assert "call call-2: CDR write queue full; record lost" in caplog.text

        await asyncio.wait_for(recorder.flush(), 5.0)
        assert recorder.written == 2
        assert await recorder.get("call-2") is None
    finally:
        await recorder.close()


async def test_flush_waits_for_later_records(hub: EventHub, recorder: CdrRecorder) -> None:
    legs = CallLegEvents(hub, NODE_ID)
    legs.started("call-1", channel=Channel.SIP, caller=CALLER, called=CALLED)
    legs.ended("call-1", reason="caller_hangup")

    flushed = asyncio.ensure_future(recorder.flush())
    await asyncio.sleep(0)
    legs.started("call-2", channel=Channel.SIP, caller=CALLER, called=CALLED)
    legs.ended("call-2", reason="caller_hangup")
    await asyncio.wait_for(flushed, 5.0)

    assert recorder.written == 2
    assert await recorder.get("call-2") is not None
    legs.started("call-3", channel=Channel.SIP, caller=CALLER, called=CALLED)
    legs.ended("call-3", reason="caller_hangup")
    await asyncio.wait_for(recorder.flush(), 5.0)
    assert recorder.written == 3


async def test_flush_cuts_batch_wait(tmp_path: Path, hub: EventHub) -> None:
    # The batch wait is an hour, so the bounded flush below passes only if flush ends it.
    config = CdrConfig(path=tmp_path / "cdr.db", node_id=NODE_ID, batch_wait_s=3600.0)
    recorder = CdrRecorder(config, hub)
    await recorder.start()
    legs = CallLegEvents(hub, NODE_ID)
    try:
        legs.started("call-1", channel=Channel.SIP, caller=CALLER, called=CALLED)
        legs.ended("call-1", reason="caller_hangup")
        # The writer wakes for the record and starts its batch wait.
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        await asyncio.wait_for(recorder.flush(), 5.0)
        assert recorder.written == 1
        assert await recorder.get("call-1") is not None

        legs.started("call-2", channel=Channel.SIP, caller=CALLER, called=CALLED)
        legs.ended("call-2", reason="caller_hangup")
        await asyncio.wait_for(recorder.flush(), 5.0)
        assert recorder.written == 2
    finally:
        await asyncio.wait_for(recorder.close(), 5.0)


async def test_unstarted_recorder_loses_record(tmp_path: Path, hub: EventHub) -> None:
    recorder = CdrRecorder(CdrConfig(path=tmp_path / "cdr.db", node_id=NODE_ID), hub)
    hub.listen(recorder.on_event)
    legs = CallLegEvents(hub, NODE_ID)

    legs.started("call-1", channel=Channel.SIP, caller=CALLER, called=CALLED)
    legs.ended("call-1", reason="caller_hangup")

    assert recorder.lost == 1
    await asyncio.wait_for(recorder.flush(), 5.0)


def make_record(call_id: str, **fields: Any) -> CallDetailRecord:
    """Return a self-service SIP record of `call_id`; `fields` overrides its columns."""
    values: dict[str, Any] = {
        "call_id": call_id, "node_id": NODE_ID, "channel": "sip", "caller": CALLER,
        "called": CALLED, "started_at": START_TIME, "answered_at": START_TIME + 0.5,
        "ended_at": START_TIME + 3, "flow": "main", "ivr_path": ["bye"],
        "ivr_outcome": "hangup", "intent": None, "intent_score": None, "sentiment": [],
        "queue": None, "priority": None, "priority_reason": None, "wait_s": None,
        "agent_id": None, "talk_s": None, "disposition": Disposition.SELF_SERVICE,
        "end_reason": "ivr_hangup", "recording_path": None, "recording_pauses": [],
    }  # fmt: skip
    values.update(fields)
    return CallDetailRecord(**values)


def test_store_writes_ivr_path_as_json_dumps(tmp_path: Path) -> None:
    path = tmp_path / "cdr.db"
    steps = ["menu", 'say "hi"', "back\\slash", "línea", "\u2028", "\U0001f600", ""]
    record = make_record("steps", ivr_path=steps)
    store = CdrStore(path)
    store.insert([record])
    assert store.get("steps") == record
    store.close()
    with sqlite3.connect(path) as db:
        row = db.execute("SELECT ivr_path FROM cdr WHERE call_id = 'steps'").fetchone()
    assert row == (json.dumps(steps),)


@pytest.mark.parametrize(
    "value", [[], ["bye"], ["a", "b"], ["\x00\x1f", "é"], [1, "a"], [None], [1.5]]
)
def test_string_list_json_matches_json_dumps(value: list[Any]) -> None:
    assert _string_list_json(value) == json.dumps(value)


def test_store_batch_keeps_last_record_per_call(tmp_path: Path) -> None:
    store = CdrStore(tmp_path / "cdr.db")
    store.insert([make_record("call-old", end_reason="first")])
    # 70 records: two multi-row statements of 32 rows and 6 rows after them.
    batch = [make_record(f"call-{index}", ended_at=START_TIME + index) for index in range(70)]
    repeats = {10: "call-3", 40: "call-5", 66: "call-7", 68: "call-old", 69: "call-67"}
    for index, call_id in repeats.items():
        batch[index] = make_record(call_id, ended_at=START_TIME + index, end_reason="repeat")
    store.insert(batch)

    latest = {record.call_id: record for record in batch}
    latest.setdefault("call-old", make_record("call-old", end_reason="first"))
    for call_id, record in latest.items():
        assert store.get(call_id) == record, call_id
    recent = store.recent(500)
    assert len(recent) == len(latest)
    assert [record.ended_at for record in recent] == sorted(
        (record.ended_at for record in latest.values()), reverse=True
    )
    store.close()


@pytest.mark.parametrize("count", [1, 31, 32, 33, 64, 65])
def test_store_writes_every_record_of_batch(tmp_path: Path, count: int) -> None:
    store = CdrStore(tmp_path / "cdr.db")
    batch = [make_record(f"call-{index}", ended_at=START_TIME + index) for index in range(count)]
    store.insert(batch)
    assert store.recent(500) == batch[::-1]
    store.close()


def test_store_failed_batch_writes_nothing(tmp_path: Path) -> None:
    store = CdrStore(tmp_path / "cdr.db")
    batch = [make_record(f"call-{index}") for index in range(40)]
    # node_id is NOT NULL, so the 36th record, in the rows after the first statement, fails.
    batch[35] = make_record("call-35", node_id=None)
    with pytest.raises(sqlite3.IntegrityError):
        store.insert(batch)
    assert store.recent(500) == []
    store.insert(batch[:35])
    assert len(store.recent(500)) == 35
    store.close()
