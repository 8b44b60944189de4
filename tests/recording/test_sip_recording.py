"""A real SIPp caller through a flow that records, pauses around a card code and resumes.

The node is a real `voxgate serve` process. SIPp plays a 600 Hz tone as
the caller's microphone, keys the card code as RFC 4733 events (which
stops the tone), then plays the tone again until the flow hangs up. The
checks read the WAV file that the `call.recording` event names, the CDR,
and the file served over HTTP.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.recording.nodeapi import EventCollector, http_get, wait_for_cdr
from tests.recording.stereo import StereoWav, peak, read_stereo, tone_seconds
from tests.support.node import RunningNode, voxgate_node
from tests.support.sipp import (
    SIPP_BINARY,
    SippProcess,
    audio_actions,
    dtmf_actions,
    render_scenario,
)
from tests.support.wav import tone, write_wav

pytestmark = pytest.mark.timeout(180)

DATA = Path(__file__).resolve().parents[1] / "data" / "recording"
CALLER_HZ = 600.0
CARD_CODE = "7964"
# The flow's welcome prompt takes about 4 s and the card prompt about 4 s more.
DIGIT_DELAY_MS = 9000
VOICED_RMS = 300.0
# The caller's tone measures about 9,900 per 100 ms window; prompt speech stays under 2,500.
TONE_LEVEL = 5000.0


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    if not SIPP_BINARY.is_file():
        pytest.skip("sipp (sip-tester) is not installed")
    if os.geteuid() != 0:
        pytest.skip("SIPp's play_pcap_audio needs root for its raw socket")
    work = tmp_path_factory.mktemp("node")
    settings = {
        "ivr": {"flows_dir": str(DATA / "flows"), "default_flow": "card"},
        "cdr": {"path": str(work / "cdr.sqlite")},
        "recording": {"directory": str(work / "recordings")},
    }
    with voxgate_node(work, settings) as running:
        yield running


def caller_scenario(work: Path) -> Path:
    before = write_wav(work / "tone_before.wav", tone(CALLER_HZ, 20.0, 8000, amplitude=0.3), 8000)
    after = write_wav(work / "tone_after.wav", tone(CALLER_HZ, 20.0, 8000, amplitude=0.3), 8000)
    return render_scenario(
        DATA / "sipp_caller.xml",
        work / "caller.xml",
        {
            "AUDIO_ACTIONS": audio_actions(work, before),
            "DIGIT_DELAY_MS": DIGIT_DELAY_MS,
            "DTMF_ACTIONS": dtmf_actions(work, CARD_CODE + "#", gap_ms=300),
            "AFTER_DIGITS_ACTIONS": audio_actions(work, after),
            "BYE_TIMEOUT_MS": 40_000,
        },
    )


def voiced_seconds(samples: np.ndarray[Any, np.dtype[np.int16]], sample_rate: int) -> float:
    """Return the seconds of 20 ms frames whose RMS is above VOICED_RMS."""
    frame = sample_rate // 50
    count = 0
    for start in range(0, len(samples) - frame + 1, frame):
        values = samples[start : start + frame].astype(np.float64)
        if np.sqrt(np.mean(values**2)) > VOICED_RMS:
            count += 1
    return count / 50


def call_through_flow(node: RunningNode, work: Path) -> tuple[EventCollector, str]:
    """Place the call with SIPp while collecting events; return them and the call id."""
    kinds = "call.recording,ivr.recording,call.ended"
    with EventCollector(node, kinds) as events:
        caller = SippProcess(
            caller_scenario(work),
            work,
            remote=("127.0.0.1", node.sip_port),
            service="3100",
            global_timeout_s=90,
        )
        with caller:
            result = caller.wait(100)
        assert result.passed, result.describe()
        ended = events.wait_for("call.ended", 20)
    return events, str(ended["call_id"])


@pytest.fixture(scope="module")
def recorded_call(
    node: RunningNode, tmp_path_factory: pytest.TempPathFactory
) -> tuple[EventCollector, str]:
    return call_through_flow(node, tmp_path_factory.mktemp("caller"))


def recording_event(recorded_call: tuple[EventCollector, str]) -> dict[str, Any]:
    events, call_id = recorded_call
    recordings = events.of_kind("call.recording")
    assert len(recordings) == 1
    assert recordings[0]["call_id"] == call_id
    payload: dict[str, Any] = recordings[0]["payload"]
    return payload


def parts(payload: dict[str, Any]) -> tuple[StereoWav, StereoWav, StereoWav]:
    """Split the file into before, during and after its one pause (with 100 ms margins)."""
    wav = read_stereo(Path(payload["path"]))
    pause = payload["pauses"][0]
    start_s = pause["offset_ms"] / 1000
    end_s = start_s + pause["duration_ms"] / 1000
    return (
        wav.seconds(0.0, start_s - 0.1),
        wav.seconds(start_s, end_s),
        wav.seconds(end_s + 0.1, wav.duration_s),
    )


def test_flow_actions_are_events(recorded_call: tuple[EventCollector, str]) -> None:
    events, call_id = recorded_call
    actions = events.of_kind("ivr.recording")
    assert [(e["payload"]["step"], e["payload"]["action"]) for e in actions] == [
        ("welcome", "start"),
        ("card", "pause"),
        ("thanks", "resume"),
    ]
    assert [e["payload"]["state"] for e in actions] == ["recording", "paused", "recording"]
    assert all(e["payload"]["changed"] for e in actions)
    assert all(e["call_id"] == call_id for e in actions)


def test_recording_event_names_file_and_pause(
    node: RunningNode, recorded_call: tuple[EventCollector, str]
) -> None:
    payload = recording_event(recorded_call)
    path = Path(payload["path"])
    assert path.is_file()
    assert path.suffix == ".wav"
    assert payload["format"] == "wav"
    assert payload["channels"] == ["caller", "heard"]
    assert payload["error"] is None
    assert len(payload["pauses"]) == 1
    pause = payload["pauses"][0]
    assert pause["resumed_at"] > pause["paused_at"]
    assert pause["duration_ms"] >= 2000
    assert pause["offset_ms"] >= 2000
    assert payload["duration_ms"] > pause["offset_ms"] + pause["duration_ms"]


def test_wav_is_stereo_with_caller_left(recorded_call: tuple[EventCollector, str]) -> None:
    payload = recording_event(recorded_call)
    wav = read_stereo(Path(payload["path"]))
    assert wav.channels == 2
    assert wav.sample_rate == 8000
    assert abs(wav.duration_s * 1000 - payload["duration_ms"]) < 1
    before, _, after = parts(payload)
    for part in (before, after):
        assert tone_seconds(part.left, 8000, CALLER_HZ, min_level=TONE_LEVEL) >= 1.0
        assert tone_seconds(part.right, 8000, CALLER_HZ, min_level=TONE_LEVEL) == 0
        assert voiced_seconds(part.right, 8000) >= 1.0


def test_paused_span_is_silent(recorded_call: tuple[EventCollector, str]) -> None:
    payload = recording_event(recorded_call)
    _, during, _ = parts(payload)
    assert during.duration_s >= 2.0
    assert peak(during.left) == 0
    assert peak(during.right) == 0


def test_cdr_carries_path_and_pauses(
    node: RunningNode, recorded_call: tuple[EventCollector, str]
) -> None:
    payload = recording_event(recorded_call)
    _, call_id = recorded_call
    record = wait_for_cdr(node, call_id, 20)
    assert record["recording_path"] == payload["path"]
    assert record["recording_pauses"] == payload["pauses"]
    assert record["ivr_path"] == ["welcome", "card", "thanks", "goodbye"]


def test_recording_served_over_http(
    node: RunningNode, recorded_call: tuple[EventCollector, str]
) -> None:
    payload = recording_event(recorded_call)
    _, call_id = recorded_call
    wait_for_cdr(node, call_id, 20)
    reply = http_get(node, f"/api/cdrs/{call_id}/recording")
    assert reply.status == 200
    assert reply.content_type == "audio/wav"
    assert reply.body == Path(payload["path"]).read_bytes()

    unknown = http_get(node, "/api/cdrs/no-such-call/recording")
    assert unknown.status == 404
    assert b"no CDR for this call id" in unknown.body


def test_card_code_not_in_node_log(
    node: RunningNode, recorded_call: tuple[EventCollector, str]
) -> None:
    log = node.log()
    assert "recording started" in log
    assert re.search(rf"(?<!\d){CARD_CODE}(?!\d)", log) is None


def test_missing_file_is_404(
    node: RunningNode, recorded_call: tuple[EventCollector, str], tmp_path: Path
) -> None:
    payload = recording_event(recorded_call)
    _, call_id = recorded_call
    wait_for_cdr(node, call_id, 20)
    path = Path(payload["path"])
    kept = shutil.copy(path, tmp_path / "kept.wav")
    path.unlink()
    try:
        reply = http_get(node, f"/api/cdrs/{call_id}/recording")
    finally:
        shutil.copy(kept, path)
    assert reply.status == 404
    assert b"no longer exists" in reply.body
