"""The node's side of recordings: settings, file names, the event, the CDR and the HTTP route."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from media.channel import MediaLegChannel
from media.leg import MediaLeg
from media.memory import MemoryTransport
from voxgate.callevents import CallEvent, CallLegEvents, Channel, EventHub
from voxgate.cdrstore import SCHEMA_VERSION, CdrConfig, CdrRecorder, CdrStore
from voxgate.components import recording_config
from voxgate.recordingapi import add_recording_route
from voxgate.recordings import CallRecordings, RecordingConfig
from voxgate.settings import SettingsError, load_settings

TOKEN = "recording-token-0123456789"
NOON = dt.datetime(2026, 12, 4, 12, 30, 5, tzinfo=dt.UTC).timestamp()


def write_settings(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "voxgate.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_settings_default_off_under_var(tmp_path: Path) -> None:
    settings = load_settings(write_settings(tmp_path, ""))
    assert settings.recording.enabled is False
    assert settings.recording.directory == tmp_path / "var" / "recordings"
    assert settings.recording.format == "wav"
    assert settings.recording.sample_rate == 8000
    config = recording_config(settings.recording)
    assert config == RecordingConfig(tmp_path / "var" / "recordings", False, 8000)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("recording:\n  sample_rate: 44100\n", "recording.sample_rate"),
        ("recording:\n  format: mp3\n", "recording.format"),
        ("recording:\n  enabled: sometimes\n", "recording.enabled"),
        ("recording:\n  directroy: /srv\n", "recording.directroy"),
    ],
)
def test_settings_errors_name_line_and_key(tmp_path: Path, text: str, key: str) -> None:
    path = write_settings(tmp_path, text)
    with pytest.raises(SettingsError) as caught:
        load_settings(path)
    assert f"{path}:2:" in str(caught.value)
    assert key in str(caught.value)


def test_file_names_are_safe_and_distinct(tmp_path: Path) -> None:
    events = CallLegEvents(EventHub(), "node-a")
    recordings = CallRecordings(RecordingConfig(tmp_path), events, clock=lambda: NOON)
    first = recordings.path_for("a/b@10.0.0.5")
    second = recordings.path_for("a:b@10.0.0.5")
    assert first.parent == tmp_path / "2026-12-04"
    assert first.name.startswith("20261204T123005Z-a_b_10.0.0.5-")
    assert first.suffix == ".wav"
    assert first != second
    assert recordings.path_for("../..").parent == tmp_path / "2026-12-04"
    long_name = recordings.path_for("x" * 300).name
    assert len(long_name) < 100


def test_stop_publishes_event_with_pauses(tmp_path: Path) -> None:
    hub = EventHub()
    published: list[CallEvent] = []
    hub.listen(published.append)
    now = [NOON]
    recordings = CallRecordings(
        RecordingConfig(tmp_path, enabled=True), CallLegEvents(hub, "node-a"), clock=lambda: now[0]
    )
    transport = MemoryTransport(8000)
    leg = MediaLeg(transport, call_id="call-7")
    recording = recordings.attach(leg, "call-7")
    for _ in range(10):
        transport.tick()
    recording.control("pause")
    now[0] += 2.5
    for _ in range(5):
        transport.tick()
    recording.control("resume")
    recording.close()

    assert [e.kind for e in published] == ["call.recording"]
    event = published[0]
    assert event.call_id == "call-7"
    payload = event.payload
    assert Path(payload["path"]).is_file()
    assert payload["format"] == "wav"
    assert payload["sample_rate"] == 8000
    assert payload["duration_ms"] == 300
    assert payload["error"] is None
    assert payload["pauses"] == [
        {"paused_at": NOON, "resumed_at": NOON + 2.5, "offset_ms": 200, "duration_ms": 100}
    ]


def test_disabled_recording_waits_for_flow(tmp_path: Path) -> None:
    recordings = CallRecordings(RecordingConfig(tmp_path), CallLegEvents(EventHub(), "n"))
    leg = MediaLeg(MemoryTransport(8000), call_id="call-8")
    recording = recordings.attach(leg, "call-8")
    assert recording.state.value == "off"
    assert recording.close() is None
    assert list(tmp_path.iterdir()) == []


def test_flow_started_file_named_at_answer(tmp_path: Path) -> None:
    now = [NOON]
    recordings = CallRecordings(
        RecordingConfig(tmp_path), CallLegEvents(EventHub(), "n"), clock=lambda: now[0]
    )
    transport = MemoryTransport(8000)
    recording = recordings.attach(MediaLeg(transport, call_id="call-10"), "call-10")
    now[0] += 13 * 3600  # the flow starts recording on the next UTC day
    recording.control("start")
    transport.tick()
    summary = recording.close()

    assert summary is not None
    assert summary.path.parent == tmp_path / "2026-12-04"
    assert summary.path.name.startswith("20261204T123005Z-call-10-")
    assert summary.path.is_file()


def test_attach_to_builds_recording_at_first_action(tmp_path: Path) -> None:
    now = [NOON]
    recordings = CallRecordings(
        RecordingConfig(tmp_path), CallLegEvents(EventHub(), "n"), clock=lambda: now[0]
    )
    transport = MemoryTransport(8000)
    channel = MediaLegChannel(MediaLeg(transport, call_id="call-12"))
    recordings.attach_to(channel, "call-12")
    assert channel.recording is None
    assert channel.recording_state.value == "off"

    now[0] += 13 * 3600  # the flow starts recording on the next UTC day
    assert channel.control_recording("start").value == "recording"
    transport.tick()
    assert channel.recording is not None
    summary = channel.recording.close()

    assert summary is not None
    assert summary.path.parent == tmp_path / "2026-12-04"
    assert summary.path.name.startswith("20261204T123005Z-call-12-")


def test_attach_to_starts_enabled_recording(tmp_path: Path) -> None:
    recordings = CallRecordings(
        RecordingConfig(tmp_path, enabled=True), CallLegEvents(EventHub(), "n")
    )
    channel = MediaLegChannel(MediaLeg(MemoryTransport(8000), call_id="call-13"))
    recordings.attach_to(channel, "call-13")
    assert channel.recording is not None
    assert channel.recording_state.value == "recording"
    assert channel.recording.close() is not None


def test_unstarted_recording_builds_no_path(tmp_path: Path) -> None:
    built: list[str] = []

    class CountingRecordings(CallRecordings):
        def path_for(self, call_id: str, at: float | None = None) -> Path:
            built.append(call_id)
            return super().path_for(call_id, at)

    recordings = CountingRecordings(RecordingConfig(tmp_path), CallLegEvents(EventHub(), "n"))
    recording = recordings.attach(MediaLeg(MemoryTransport(8000), call_id="call-11"), "call-11")
    assert recording.close() is None
    assert built == []
    assert recording.path.parent.parent == tmp_path
    assert built == ["call-11"]


async def test_cdr_keeps_path_and_pauses(tmp_path: Path) -> None:
    hub = EventHub()
    recorder = CdrRecorder(CdrConfig(path=tmp_path / "cdr.db", node_id="node-a"), hub)
    await recorder.start()
    try:
        legs = CallLegEvents(hub, "node-a")
        legs.started("call-9", channel=Channel.SIP, caller="+15550100001", called="3100")
        pauses = [{"paused_at": 1.0, "resumed_at": 3.0, "offset_ms": 400, "duration_ms": 2000}]
        legs.recording("call-9", path="/srv/rec/call-9.wav", pauses=pauses, duration_ms=9000)
        legs.ended("call-9", reason="caller_hangup")
        await recorder.flush()
        row = await recorder.get("call-9")
    finally:
        await recorder.close()
    assert row is not None
    assert row.recording_path == "/srv/rec/call-9.wav"
    assert row.recording_pauses == pauses


def test_version_1_store_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "cdr.db"
    CdrStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE cdr")
        db.execute(
            "CREATE TABLE cdr (call_id TEXT PRIMARY KEY, node_id TEXT NOT NULL, channel TEXT, "
            "caller TEXT, called TEXT, started_at REAL NOT NULL, answered_at REAL, "
            "ended_at REAL NOT NULL, flow TEXT, ivr_path TEXT NOT NULL, ivr_outcome TEXT, "
            "intent TEXT, intent_score REAL, sentiment TEXT NOT NULL, queue TEXT, "
            "priority INTEGER, priority_reason TEXT, wait_s REAL, agent_id TEXT, talk_s REAL, "
            "disposition TEXT NOT NULL, end_reason TEXT, recording_path TEXT)"
        )
        db.execute(
            "INSERT INTO cdr (call_id, node_id, started_at, ended_at, ivr_path, sentiment, "
            "disposition, recording_path) VALUES ('old', 'n', 1, 2, '[]', '[]', 'completed', "
            "'/srv/old.wav')"
        )
        db.execute("UPDATE schema_version SET version = 1")

    store = CdrStore(path)
    try:
        assert store.schema_version() == SCHEMA_VERSION == 2
        old = store.get("old")
    finally:
        store.close()
    assert old is not None
    assert old.recording_path == "/srv/old.wav"
    assert old.recording_pauses == []


@pytest.fixture
async def api(
    tmp_path: Path,
) -> AsyncIterator[tuple[TestClient[web.Request, web.Application], Path]]:
    directory = tmp_path / "recordings"
    directory.mkdir()
    hub = EventHub()
    recorder = CdrRecorder(CdrConfig(path=tmp_path / "cdr.db", node_id="node-a"), hub)
    await recorder.start()
    legs = CallLegEvents(hub, "node-a")
    inside = directory / "2026-12-04" / "call-in.wav"
    inside.parent.mkdir()
    inside.write_bytes(b"RIFF-test-recording")
    outside = tmp_path / "voicemail.wav"
    outside.write_bytes(b"RIFF-voicemail")
    calls = {"call-in": inside, "call-out": outside, "call-gone": directory / "gone.wav"}
    for call_id, path in calls.items():
        legs.started(call_id, channel=Channel.SIP, caller="+15550100001", called="3100")
        legs.recording(call_id, path=str(path))
        legs.ended(call_id, reason="caller_hangup")
    legs.started("call-none", channel=Channel.SIP, caller="+15550100001", called="3100")
    legs.ended("call-none", reason="caller_hangup")
    await recorder.flush()
    app = web.Application()
    add_recording_route(app, recorder, directory, token=TOKEN)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield client, inside
    finally:
        await client.close()
        await recorder.close()


async def test_http_serves_file_with_token(
    api: tuple[TestClient[web.Request, web.Application], Path],
) -> None:
    client, inside = api
    headers = {"Authorization": f"Bearer {TOKEN}"}
    response = await client.get("/api/cdrs/call-in/recording", headers=headers)
    assert response.status == 200
    assert response.headers["Content-Type"] == "audio/wav"
    assert "call-in.wav" in response.headers["Content-Disposition"]
    assert await response.read() == inside.read_bytes()


@pytest.mark.parametrize(
    ("call_id", "message"),
    [
        ("call-none", "this call has no recording"),
        ("call-out", "not in the recordings directory"),
        ("call-gone", "no longer exists"),
        ("no-such-call", "no CDR for this call id"),
    ],
)
async def test_http_404_says_why(
    api: tuple[TestClient[web.Request, web.Application], Path], call_id: str, message: str
) -> None:
    client, _ = api
    headers = {"Authorization": f"Bearer {TOKEN}"}
    response = await client.get(f"/api/cdrs/{call_id}/recording", headers=headers)
    assert response.status == 404
    assert message in await response.text()


async def test_http_needs_token(
    api: tuple[TestClient[web.Request, web.Application], Path],
) -> None:
    client, _ = api
    response = await client.get("/api/cdrs/call-in/recording")
    assert response.status == 401
    wrong = await client.get(
        "/api/cdrs/call-in/recording", headers={"Authorization": "Bearer wrong"}
    )
    assert wrong.status == 401
