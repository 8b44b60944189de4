"""Audio conversion between aiortc frames and 20 ms PcmAudio frames."""

from __future__ import annotations

import fractions

import av
import numpy as np
import pytest

from media.audio import PcmAudio
from signaling.webrtc.tracks import FrameConverter, OutboundAudioTrack


def _opus_like_frame(index: int, tone_hz: float = 440.0) -> av.AudioFrame:
    """One 20 ms frame as aiortc's Opus decoder hands it: 48 kHz s16 packed stereo."""
    t = (np.arange(960) + 960 * index) / 48_000
    mono = (8000 * np.sin(2 * np.pi * tone_hz * t)).astype(np.int16)
    stereo = np.repeat(mono, 2).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
    frame.sample_rate = 48_000
    frame.pts = 960 * index
    frame.time_base = fractions.Fraction(1, 48_000)
    return frame


def _pcmu_like_frame(index: int) -> av.AudioFrame:
    samples = np.full((1, 160), 1000, dtype=np.int16)
    frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
    frame.sample_rate = 8000
    frame.pts = 160 * index
    return frame


def _dominant_hz(pcm: bytes, rate: int) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


@pytest.mark.parametrize("rate", [16_000, 8000])
def test_opus_stereo_becomes_exact_20ms_mono_frames(rate: int) -> None:
    converter = FrameConverter(rate)
    frames: list[PcmAudio] = []
    for index in range(50):
        frames.extend(converter.push(_opus_like_frame(index)))
    assert {f.sample_count for f in frames} == {rate // 50}
    assert {f.sample_rate for f in frames} == {rate}
    assert 49 <= len(frames) <= 50
    pcm = b"".join(f.pcm for f in frames)
    assert abs(_dominant_hz(pcm, rate) - 440.0) < 5.0


def test_opus_duration_is_not_doubled() -> None:
    converter = FrameConverter(16_000)
    total_ms = sum(f.duration_ms for i in range(100) for f in converter.push(_opus_like_frame(i)))
    assert 1980 <= total_ms <= 2000


def test_pcmu_frames_are_resampled_to_16k() -> None:
    converter = FrameConverter(16_000)
    frames = [f for i in range(25) for f in converter.push(_pcmu_like_frame(i))]
    assert {f.sample_count for f in frames} == {320}
    assert 24 <= len(frames) <= 25


def test_format_change_midstream_keeps_frame_size() -> None:
    converter = FrameConverter(16_000)
    frames = [f for i in range(10) for f in converter.push(_opus_like_frame(i))]
    frames += [f for i in range(10) for f in converter.push(_pcmu_like_frame(i))]
    assert {f.sample_count for f in frames} == {320}


class SteppingClock:
    """A clock that is always at the next frame's due time, so recv never sleeps."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        value = self.now
        self.now += 0.020
        return value


async def test_outbound_track_stamps_pts_and_pulls_frames() -> None:
    tone = PcmAudio(np.full(320, 1234, dtype="<i2").tobytes(), 16_000)
    queue = [tone, None, PcmAudio(b"\x00\x00" * 100, 16_000)]
    track = OutboundAudioTrack(16_000, lambda: queue.pop(0), clock=SteppingClock())
    frames = [await track.recv() for _ in range(3)]
    assert [f.pts for f in frames] == [0, 320, 640]
    assert {f.sample_rate for f in frames} == {16_000}
    assert frames[0].to_ndarray().max() == 1234
    assert frames[1].to_ndarray().max() == 0
    assert frames[2].to_ndarray().max() == 0
    assert frames[2].samples == 320


async def test_outbound_track_sends_silence_when_muted() -> None:
    tone = PcmAudio(np.full(160, 999, dtype="<i2").tobytes(), 8000)
    track = OutboundAudioTrack(8000, lambda: tone, clock=SteppingClock())
    track.muted = True
    frame = await track.recv()
    assert frame.to_ndarray().max() == 0
