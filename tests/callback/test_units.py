"""The pure parts of callbacks: outcome rules, settings, CDR rows and the offer message."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from signaling.webrtc.protocol import Incoming, ProtocolError, encode_message, parse_message
from voxgate.callbacks import (
    ATTEMPTS_KEY,
    RINGBACK_RATE,
    CallbackConfig,
    attempts_made,
    retry_allowed,
    ringback_tone,
)
from voxgate.callevents import CallEvent
from voxgate.cdr import CallTrace, Disposition
from voxgate.cdrstore import SCHEMA_VERSION, CdrStore
from voxgate.components import callback_config
from voxgate.outbound import DialStatus, classify
from voxgate.settings import Settings

TRUNK = "sip:{number}@127.0.0.1:5080"


@pytest.mark.parametrize(
    ("status", "reason", "expected"),
    [
        (486, "rejected", DialStatus.BUSY),
        (600, "rejected", DialStatus.BUSY),
        (408, "rejected", DialStatus.NO_ANSWER),
        (480, "rejected", DialStatus.NO_ANSWER),
        (487, "cancel", DialStatus.NO_ANSWER),
        (180, "timeout", DialStatus.NO_ANSWER),
        (None, "timeout", DialStatus.NO_ANSWER),
        (404, "rejected", DialStatus.FAILED),
        (503, "rejected", DialStatus.FAILED),
        (None, "shutdown", DialStatus.FAILED),
    ],
)
def test_classify_final_status(status: int | None, reason: str, expected: DialStatus) -> None:
    assert classify(status, reason) is expected


@pytest.mark.parametrize(
    ("outcome", "status", "expected"),
    [
        (DialStatus.BUSY, 486, True),
        (DialStatus.NO_ANSWER, 487, True),
        (DialStatus.FAILED, 503, True),
        (DialStatus.FAILED, None, True),
        (DialStatus.FAILED, 404, False),
        (DialStatus.FAILED, 403, False),
        (DialStatus.FAILED, 484, False),
    ],
)
def test_retry_allowed_by_outcome(outcome: DialStatus, status: int | None, expected: bool) -> None:
    assert retry_allowed(outcome, status) is expected


def test_attempts_made_reads_context() -> None:
    assert attempts_made({ATTEMPTS_KEY: "2"}) == 2
    assert attempts_made({}) == 0
    assert attempts_made({ATTEMPTS_KEY: "two"}) == 0
    assert attempts_made({ATTEMPTS_KEY: "-3"}) == 0


def test_ringback_tone_cadence() -> None:
    audio = ringback_tone()
    samples = np.frombuffer(audio.pcm, dtype="<i2")
    assert audio.sample_rate == RINGBACK_RATE
    assert samples.size == 6 * RINGBACK_RATE
    assert np.abs(samples[: 2 * RINGBACK_RATE]).max() > 1000
    assert np.abs(samples[2 * RINGBACK_RATE :]).max() == 0


def test_target_uri_fills_number() -> None:
    config = CallbackConfig(trunk_uri=TRUNK)
    assert config.target_uri("+15550100") == "sip:+15550100@127.0.0.1:5080"


def test_settings_map_callback_keys() -> None:
    settings = Settings.model_validate(
        {
            "acd": {"queues": {"sales": {"callback_key": "1"}, "support": {}}},
            "callbacks": {"trunk_uri": TRUNK, "username": "trunk", "password": "secret"},
        }
    )
    config = callback_config(settings)
    assert config is not None
    assert config.keys == {"sales": "1"}
    assert config.credentials == ("trunk", "secret")
    assert config.retries == 2


def test_settings_without_trunk_turn_callbacks_off() -> None:
    assert callback_config(Settings()) is None


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"acd": {"queues": {"sales": {"callback_key": "1"}}}}, "callbacks.trunk_uri is unset"),
        ({"acd": {"queues": {"sales": {"callback_key": "12"}}}}, "callback_key"),
        ({"callbacks": {"trunk_uri": "sip:100@127.0.0.1"}}, "one {number}"),
        ({"callbacks": {"trunk_uri": "tel:{number}"}}, "one {number}"),
        ({"callbacks": {"trunk_uri": "sip:{number}@trunk_ex!ample"}}, "DNS host name"),
        ({"callbacks": {"trunk_uri": TRUNK, "number_pattern": "(["}}, "regular expression"),
    ],
)
def test_settings_reject_bad_callbacks(section: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings.model_validate(section)


def test_settings_accept_trunk_name() -> None:
    settings = Settings.model_validate(
        {"callbacks": {"trunk_uri": "sip:{number}@trunk.example.com"}}
    )
    assert settings.callbacks.trunk_uri == "sip:{number}@trunk.example.com"


def test_settings_accept_ipv6_trunk() -> None:
    settings = Settings.model_validate({"callbacks": {"trunk_uri": "sip:{number}@[::1]:5080"}})
    assert settings.callbacks.trunk_uri == "sip:{number}@[::1]:5080"


def _trace(*events: tuple[str, dict[str, object]]) -> CallTrace:
    trace = CallTrace("a.cb1", "node", 100.0)
    for offset, (kind, payload) in enumerate(events):
        trace.apply(CallEvent(kind, "a.cb1", "node", 100.0 + offset, payload))
    return trace


def _started() -> tuple[str, dict[str, object]]:
    payload: dict[str, object] = {
        "channel": "sip",
        "caller": "4000",
        "called": "5551234",
        "callback_of": "a",
        "attempt": 2,
    }
    return ("call.started", payload)


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("busy", Disposition.BUSY),
        ("no_answer", Disposition.NO_ANSWER),
        ("failed", Disposition.FAILED),
        ("cancelled", Disposition.FAILED),
    ],
)
def test_callback_leg_disposition(reason: str, expected: Disposition) -> None:
    record = _trace(_started()).finish(110.0, reason, None)
    assert record.disposition is expected
    assert record.callback_of == "a"
    assert record.callback_attempt == 2


def test_bridged_callback_leg_completed() -> None:
    trace = _trace(_started(), ("call.answered", {}), ("call.bridged", {"agent_id": "alice"}))
    record = trace.finish(120.0, "agent_hangup", None)
    assert record.disposition is Disposition.COMPLETED
    assert record.agent_id == "alice"
    assert record.talk_s == 18.0


def test_caller_requesting_callback_disposition() -> None:
    trace = CallTrace("a", "node", 100.0)
    trace.apply(CallEvent("acd.caller_joined", "a", "node", 101.0, {"queue": "sales"}))
    record = trace.finish(130.0, "callback_requested", None)
    assert record.disposition is Disposition.CALLBACK
    assert record.callback_of is None


def test_cdr_store_migrates_version_one(tmp_path: Path) -> None:
    path = tmp_path / "cdr.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        db.execute("INSERT INTO schema_version VALUES (1)")
        db.execute(
            "CREATE TABLE cdr (call_id TEXT PRIMARY KEY, node_id TEXT NOT NULL, channel TEXT, "
            "caller TEXT, called TEXT, started_at REAL NOT NULL, answered_at REAL, "
            "ended_at REAL NOT NULL, flow TEXT, ivr_path TEXT NOT NULL, ivr_outcome TEXT, "
            "intent TEXT, intent_score REAL, sentiment TEXT NOT NULL, queue TEXT, "
            "priority INTEGER, priority_reason TEXT, wait_s REAL, agent_id TEXT, talk_s REAL, "
            "disposition TEXT NOT NULL, end_reason TEXT, recording_path TEXT)"
        )
        db.execute(
            "INSERT INTO cdr VALUES ('old', 'node', 'sip', NULL, NULL, 1.0, NULL, 2.0, NULL, "
            "'[]', NULL, NULL, NULL, '[]', NULL, NULL, NULL, NULL, NULL, NULL, 'failed', NULL, "
            "NULL)"
        )
    db.close()
    store = CdrStore(path)
    try:
        assert store.schema_version() == SCHEMA_VERSION
        old = store.get("old")
        assert old is not None
        assert old.callback_of is None
        store.insert([_trace(_started()).finish(110.0, "busy", None)])
        new = store.get("a.cb1")
        assert new is not None
        assert new.callback_of == "a"
        assert new.callback_attempt == 2
        assert new.disposition is Disposition.BUSY
    finally:
        store.close()


def test_incoming_kind_round_trips() -> None:
    message = Incoming(call_id="b1234", caller="5551234", waiting_s=3.0, kind="callback")
    parsed = parse_message(encode_message(message))
    assert isinstance(parsed, Incoming)
    assert parsed.kind == "callback"


def test_incoming_kind_defaults_to_call() -> None:
    parsed = parse_message('{"type":"incoming","call_id":"b1234","caller":"x","waiting_s":1}')
    assert isinstance(parsed, Incoming)
    assert parsed.kind == "call"


def test_incoming_unknown_kind_rejected() -> None:
    raw = '{"type":"incoming","call_id":"b1234","caller":"x","waiting_s":1,"kind":"fax"}'
    with pytest.raises(ProtocolError, match="kind"):
        parse_message(raw)
