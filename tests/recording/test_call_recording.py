"""`CallRecording` on a `MediaLeg` over the in-memory transport: channels, pauses, errors."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from ivr.recording import CallRecordingState
from media.audio import PcmAudio
from media.call_recording import CallRecording, RecordingSummary
from media.leg import MediaLeg
from media.memory import MemoryTransport
from tests.recording.stereo import peak, read_stereo, tone_level, tone_seconds

CALLER_HZ = 600.0
HEARD_HZ = 1000.0


def tone_pcm(rate: int, seconds: float, hz: float, amplitude: float = 8000.0) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()


class FakeClock:
    """Unix time that the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def heard_source(rate: int) -> PcmAudio:
    return PcmAudio(tone_pcm(rate, 0.02, HEARD_HZ), rate)


def run_frames(transport: MemoryTransport, rate: int, frames: int) -> None:
    """Push `frames` of caller tone and tick the transport once per frame."""
    transport.push(tone_pcm(rate, frames * 0.02, CALLER_HZ))
    for _ in range(frames):
        transport.tick()


def test_recording_channels_and_pause(tmp_path: Path) -> None:
    transport = MemoryTransport(8000)
    leg = MediaLeg(transport, call_id="rec-1")
    leg.set_outbound_source(lambda: heard_source(8000))
    clock = FakeClock()
    stopped: list[RecordingSummary] = []
    path = tmp_path / "day" / "rec-1.wav"
    recording = CallRecording(leg, path, call_id="rec-1", clock=clock, on_stopped=stopped.append)

    assert recording.control("start") is CallRecordingState.RECORDING
    run_frames(transport, 8000, 50)
    clock.now += 1.0
    assert recording.control("pause") is CallRecordingState.PAUSED
    run_frames(transport, 8000, 25)
    clock.now += 0.5
    assert recording.control("resume") is CallRecordingState.RECORDING
    run_frames(transport, 8000, 25)
    assert recording.control("stop") is CallRecordingState.STOPPED
    run_frames(transport, 8000, 10)

    assert len(stopped) == 1
    summary = stopped[0]
    assert summary.path == path
    assert summary.duration_ms == 2000
    assert summary.error is None
    assert len(summary.pauses) == 1
    pause = summary.pauses[0]
    assert pause.offset_ms == 1000
    assert pause.duration_ms == 500
    assert pause.resumed_at is not None
    assert pause.resumed_at - pause.paused_at == 0.5

    wav = read_stereo(path)
    assert wav.channels == 2
    assert wav.sample_rate == 8000
    assert wav.duration_s == 2.0
    before, during, after = wav.seconds(0.1, 1.0), wav.seconds(1.0, 1.5), wav.seconds(1.6, 2.0)
    assert peak(during.left) == 0
    assert peak(during.right) == 0
    for part in (before, after):
        assert tone_level(part.left, 8000, CALLER_HZ) > 4000
        assert tone_level(part.left, 8000, HEARD_HZ) < 100
        assert tone_level(part.right, 8000, HEARD_HZ) > 4000
        assert tone_level(part.right, 8000, CALLER_HZ) < 100


async def test_prompt_lands_on_heard_channel(tmp_path: Path) -> None:
    transport = MemoryTransport(16000)
    leg = MediaLeg(transport, call_id="rec-2")
    path = tmp_path / "rec-2.wav"
    recording = CallRecording(leg, path, call_id="rec-2")
    recording.control("start")
    prompt = PcmAudio(tone_pcm(16000, 0.6, HEARD_HZ), 16000)
    playing = asyncio.create_task(leg.play(prompt))
    await asyncio.sleep(0)
    for _ in range(40):
        transport.tick()
    assert await playing is None
    summary = recording.close()

    assert summary is not None
    assert summary.sample_rate == 8000
    wav = read_stereo(path)
    assert wav.sample_rate == 8000
    # The 16 to 8 kHz resampler delays the stream by its start-up padding (under 150 ms).
    assert tone_seconds(wav.right, 8000, HEARD_HZ) >= 0.5
    assert peak(wav.left) == 0
    assert peak(wav.seconds(0.75, 0.8).right) == 0


def test_actions_that_do_not_apply_change_nothing(tmp_path: Path) -> None:
    transport = MemoryTransport(8000)
    leg = MediaLeg(transport, call_id="rec-3")
    path = tmp_path / "rec-3.wav"
    recording = CallRecording(leg, path, call_id="rec-3")

    assert recording.control("pause") is CallRecordingState.OFF
    assert recording.control("resume") is CallRecordingState.OFF
    assert recording.control("stop") is CallRecordingState.OFF
    assert not path.exists()
    assert recording.close() is None

    recording.control("start")
    assert recording.control("resume") is CallRecordingState.RECORDING
    assert recording.control("start") is CallRecordingState.RECORDING
    recording.control("stop")
    assert recording.control("start") is CallRecordingState.STOPPED


def test_close_while_paused_ends_open_pause(tmp_path: Path) -> None:
    transport = MemoryTransport(8000)
    leg = MediaLeg(transport, call_id="rec-4")
    recording = CallRecording(leg, tmp_path / "rec-4.wav", call_id="rec-4")
    recording.control("start")
    run_frames(transport, 8000, 5)
    recording.control("pause")
    run_frames(transport, 8000, 5)
    summary = recording.close()

    assert summary is not None
    assert recording.state is CallRecordingState.STOPPED
    assert summary.duration_ms == 200
    assert len(summary.pauses) == 1
    assert summary.pauses[0].resumed_at is None
    assert summary.pauses[0].offset_ms == 100
    assert summary.pauses[0].duration_ms == 100


def test_uncreatable_file_stops_with_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")
    transport = MemoryTransport(8000)
    leg = MediaLeg(transport, call_id="rec-5")
    stopped: list[RecordingSummary] = []
    recording = CallRecording(
        leg, blocker / "rec-5.wav", call_id="rec-5", on_stopped=stopped.append
    )

    assert recording.control("start") is CallRecordingState.STOPPED
    assert len(stopped) == 1
    assert stopped[0].error is not None
    assert stopped[0].error.startswith("file not created")
    assert stopped[0].duration_ms == 0
    run_frames(transport, 8000, 3)
    assert len(transport.sent) == 3


def test_write_error_stops_recording(tmp_path: Path) -> None:
    full = Path("/dev/full")
    if not full.exists():
        pytest.skip("/dev/full is not available")
    transport = MemoryTransport(8000)
    leg = MediaLeg(transport, call_id="rec-6")
    leg.set_outbound_source(lambda: heard_source(8000))
    stopped: list[RecordingSummary] = []
    recording = CallRecording(leg, full, call_id="rec-6", on_stopped=stopped.append)
    recording.control("start")
    # The recorder's 64 KiB buffer reaches the device after about 4 s of 8 kHz stereo audio.
    run_frames(transport, 8000, 300)

    assert recording.state is CallRecordingState.STOPPED
    assert len(stopped) == 1
    assert stopped[0].error is not None
    assert stopped[0].error.startswith("write failed")
    assert all(frame is not None for frame in transport.sent)
    assert len(transport.sent) == 300


def test_16k_file_from_8k_leg(tmp_path: Path) -> None:
    transport = MemoryTransport(8000)
    leg = MediaLeg(transport, call_id="rec-7")
    leg.set_outbound_source(lambda: heard_source(8000))
    path = tmp_path / "rec-7.wav"
    recording = CallRecording(leg, path, call_id="rec-7", sample_rate=16000)
    recording.control("start")
    run_frames(transport, 8000, 50)
    summary = recording.close()

    assert summary is not None
    assert summary.sample_rate == 16000
    assert summary.duration_ms == 1000
    wav = read_stereo(path)
    assert wav.sample_rate == 16000
    assert wav.duration_s == 1.0
    assert tone_seconds(wav.left, 16000, CALLER_HZ, min_level=4000) >= 0.7
    assert tone_seconds(wav.right, 16000, HEARD_HZ, min_level=4000) >= 0.7
