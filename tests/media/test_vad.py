from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import webrtcvad
import yaml

from media.resample import resample
from media.tts import EspeakSynthesizer
from media.vad import (
    Endpointer,
    EndpointState,
    UtteranceEnd,
    UtteranceStart,
    VadConfig,
    VadFormatError,
    VadFramer,
    level_dbfs,
)

DATA = Path(__file__).parent.parent / "data" / "media"

# Channel count of each case, read from its name (the case file states only the rate passed).
CASE_CHANNELS = {"48k-stereo-20ms": 2, "48k-stereo-10ms": 2, "48k-stereo-10ms-as-16k": 2}


def tone_bytes(size: int, rate: int) -> bytes:
    samples = size // 2
    t = np.arange(samples) / rate
    data = (8000 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()
    return data + b"\x00" * (size - len(data))


def vad_cases() -> list[dict[str, Any]]:
    case = yaml.safe_load((DATA / "30-webrtcvad-frame-size-and-rate.yaml").read_text())
    frames: list[dict[str, Any]] = case["frames"]
    return frames


@pytest.mark.parametrize("item", vad_cases(), ids=lambda item: item["name"])
@pytest.mark.parametrize("vad_rate", [8000, 16000, 48000])
def test_vad_stage_rechunks_or_raises_typed_error(item: dict[str, Any], vad_rate: int) -> None:
    framer = VadFramer(vad_rate)
    channels = CASE_CHANNELS.get(item["name"], 1)
    pcm = tone_bytes(item["bytes"], item["rate_passed"])
    try:
        frames = framer.frames(pcm, item["rate_passed"], channels)
    except VadFormatError:
        return
    assert item["rate_passed"] == vad_rate
    for frame in frames:
        assert len(frame) == framer.frame_bytes
        try:
            framer.is_speech(frame)
        except webrtcvad.Error:  # pragma: no cover - the failure this test guards against
            pytest.fail("webrtcvad.Error reached the caller")
    consumed = len(frames) * framer.frame_bytes + framer.pending_bytes
    assert consumed == len(pcm) // channels


def test_vad_stage_rejects_unsupported_rate() -> None:
    with pytest.raises(VadFormatError, match="44100"):
        VadFramer(44100)
    with pytest.raises(VadFormatError, match="resample first"):
        VadFramer(16000).frames(tone_bytes(1764, 44100), 44100)


def test_vad_stage_rejects_odd_byte_count() -> None:
    with pytest.raises(VadFormatError, match="961 bytes"):
        VadFramer(16000, frame_ms=30).frames(tone_bytes(961, 16000), 16000)


def test_vad_stage_keeps_partial_frame() -> None:
    framer = VadFramer(16000, frame_ms=30)
    assert framer.frames(tone_bytes(958, 16000), 16000) == []
    assert framer.pending_bytes == 958
    frames = framer.frames(tone_bytes(2, 16000), 16000)
    assert len(frames) == 1
    assert framer.pending_bytes == 0


def test_vad_stage_downmixes_stereo() -> None:
    framer = VadFramer(48000, frame_ms=10)
    left = np.full(480, 1000, "<i2")
    right = np.full(480, 3000, "<i2")
    stereo = np.column_stack([left, right]).tobytes()
    (frame,) = framer.frames(stereo, 48000, channels=2)
    assert set(np.frombuffer(frame, "<i2").tolist()) == {2000}


def config(**overrides: Any) -> VadConfig:
    values: dict[str, Any] = {
        "start_ms": 60,
        "start_gap_ms": 20,
        "stop_ms": 100,
        "preroll_ms": 40,
        "max_utterance_ms": 1000,
        "energy_gate_dbfs": None,
    }
    values.update(overrides)
    return VadConfig(**values)


def run(endpointer: Endpointer, pattern: str) -> list[UtteranceStart | UtteranceEnd]:
    """Feed one 20 ms frame per character: 's' speech, '.' silence."""
    events: list[UtteranceStart | UtteranceEnd] = []
    for index, mark in enumerate(pattern):
        frame = bytes([index % 256, 0]) * 160
        events += endpointer.step(frame, mark == "s").events
    return events


def test_endpointer_start_and_stop_times() -> None:
    endpointer = Endpointer(config(), 8000)
    events = run(endpointer, "....sssss......")
    start, end = events
    assert isinstance(start, UtteranceStart)
    assert start.at_ms == 80
    assert len(start.audio) == 2 + 3  # 40 ms pre-roll + three starting frames
    assert isinstance(end, UtteranceEnd)
    assert (end.start_ms, end.end_ms, end.voiced_ms) == (80, 180, 100)
    assert endpointer.state is EndpointState.QUIET


def test_endpointer_ignores_short_blip() -> None:
    endpointer = Endpointer(config(), 8000)
    assert run(endpointer, "..ss....s.....") == []
    assert endpointer.state is EndpointState.QUIET


def test_endpointer_bridges_pause_shorter_than_stop() -> None:
    endpointer = Endpointer(config(), 8000)
    events = run(endpointer, "sssss....sssss......")
    assert [type(e) for e in events] == [UtteranceStart, UtteranceEnd]
    end = events[1]
    assert isinstance(end, UtteranceEnd)
    assert end.end_ms == 280


def test_endpointer_forces_end_of_long_utterance() -> None:
    endpointer = Endpointer(config(max_utterance_ms=200), 8000)
    events = run(endpointer, "s" * 20)
    ends = [e for e in events if isinstance(e, UtteranceEnd)]
    assert ends[0].forced
    assert ends[0].end_ms - ends[0].start_ms <= 200


def test_endpointer_marks_utterance_audio() -> None:
    endpointer = Endpointer(config(), 8000)
    marked = []
    for index, mark in enumerate("..sssss.......s"):
        step = endpointer.step(bytes([index, 0]) * 160, mark == "s")
        marked.append(step.utterance_audio is not None)
    # Frames after the start is confirmed, through the stop hangover, belong to the utterance.
    assert marked == [False] * 5 + [True] * 7 + [False] * 3


def test_energy_gate_rejects_quiet_frames() -> None:
    quiet = (np.random.default_rng(1).normal(0, 20, 160)).astype("<i2").tobytes()
    assert level_dbfs(quiet) < -55
    endpointer = Endpointer(config(energy_gate_dbfs=-55.0, mode=0), 8000)
    steps = [endpointer.feed(quiet, 8000) for _ in range(50)]
    assert not any(step.events for batch in steps for step in batch)


def test_vad_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="mode"):
        VadConfig(mode=4)
    with pytest.raises(ValueError, match="25 ms"):
        VadConfig(frame_ms=25)


@pytest.mark.parametrize("rate", [8000, 16000])
def test_endpointer_finds_one_spoken_utterance(rate: int) -> None:
    speech = resample(EspeakSynthesizer().synthesize_blocking("상담원 연결해 주세요", "ko"), rate)
    pcm = bytes(rate) + speech.pcm + bytes(2 * rate)
    endpointer = Endpointer(VadConfig(), rate)
    events = []
    step_bytes = rate // 50 * 2
    for offset in range(0, len(pcm), step_bytes):
        for step in endpointer.feed(pcm[offset : offset + step_bytes], rate):
            events += step.events
    start, end = events
    assert isinstance(start, UtteranceStart)
    assert isinstance(end, UtteranceEnd)
    assert 400 <= start.at_ms <= 600
    assert abs((end.end_ms - start.at_ms) - speech.duration_ms) < 300
