"""The per-tick frame batch gives the detectors the same inputs and decisions as per-frame work."""

from __future__ import annotations

import numpy as np
import pytest

from media import g711
from media.dtmf_inband import InbandConfig, InbandDtmfDetector
from media.frame_batch import FrameBatch, FrameFeatures, analyze_frame
from media.resample import resample
from media.tts import EspeakSynthesizer
from media.vad import Endpointer, EndpointStep, VadConfig
from tests.media.test_dtmf_inband import ALL_KEYS, key_sequence

CALLS_PER_TICK = 50


def mixed_frames(rate: int) -> list[bytes]:
    """Return 20 ms frames of DTMF keys at several levels, speech and low noise, through G.711."""
    synthesizer = EspeakSynthesizer()
    speech = b"".join(
        resample(synthesizer.synthesize_blocking(text, voice), rate).pcm
        for voice, text in (("en-us", "one two three four five"), ("ko", "상담원 환불 요금"))
    )
    # Per-tone levels from well above to just around the -36 dBFS threshold.
    keys = b"".join(key_sequence(ALL_KEYS, rate, level=level) for level in (0.3, 0.05, 0.032))
    noise = np.random.default_rng(7).normal(0, 60, rate).astype("<i2").tobytes()
    pcm = keys + speech + noise
    if rate == 8000:
        pcm = g711.ulaw_decode(g711.ulaw_encode(pcm))
    size = rate // 50 * 2
    pcm += bytes(-len(pcm) % size)
    return [pcm[offset : offset + size] for offset in range(0, len(pcm), size)]


def batch_features(frames: list[bytes], rate: int) -> list[FrameFeatures]:
    """Analyze `frames` in batches of CALLS_PER_TICK, as one tick of that many calls would."""
    found: list[FrameFeatures] = []
    for start in range(0, len(frames), CALLS_PER_TICK):
        batch = FrameBatch()
        for pcm in frames[start : start + CALLS_PER_TICK]:
            batch.add(pcm, rate, lambda _pcm, features: found.append(features))
        batch.flush()
    return found


@pytest.mark.parametrize("rate", [8000, 16000])
def test_batch_energy_exact(rate: int) -> None:
    frames = mixed_frames(rate)
    features = batch_features(frames, rate)
    assert len(features) == len(frames)
    for pcm, found in zip(frames, features, strict=True):
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.int64)
        assert found.energy == float(samples @ samples)
        assert found.energy == analyze_frame(pcm, rate).energy


@pytest.mark.parametrize("rate", [8000, 16000])
@pytest.mark.parametrize("min_level_dbfs", [-36.0, -45.0, -30.0])
def test_batch_dtmf_decisions_match_per_frame(rate: int, min_level_dbfs: float) -> None:
    frames = mixed_frames(rate)
    features = batch_features(frames, rate)
    config = InbandConfig(min_level_dbfs=min_level_dbfs)
    alone, batched = InbandDtmfDetector(rate, config), InbandDtmfDetector(rate, config)
    keys_alone = [alone.classify(pcm) for pcm in frames]
    keys_batched = [
        batched.classify(pcm, found.energy, found.tone_powers)
        for pcm, found in zip(frames, features, strict=True)
    ]
    assert keys_batched == keys_alone
    # The stream contains every key at three levels, so the comparison covers detections.
    assert {key for key in keys_alone if key is not None} == set(ALL_KEYS)


@pytest.mark.parametrize("rate", [8000, 16000])
def test_batch_vad_decisions_match_per_frame(rate: int) -> None:
    frames = mixed_frames(rate)
    features = batch_features(frames, rate)
    config = VadConfig(stop_ms=300)
    alone, batched = Endpointer(config, rate), Endpointer(config, rate)
    steps_alone: list[EndpointStep] = []
    steps_batched: list[EndpointStep] = []
    for pcm, found in zip(frames, features, strict=True):
        steps_alone += alone.feed(pcm, rate)
        steps_batched += batched.feed(pcm, rate, energy=found.energy)
        assert batched.state is alone.state
    assert steps_batched == steps_alone
    assert any(step.events for step in steps_alone)


def test_batch_delivers_in_order_past_failing_receiver() -> None:
    batch = FrameBatch()
    delivered: list[int] = []

    def receiver(index: int) -> object:
        def receive(_pcm: bytes, _features: FrameFeatures) -> None:
            if index == 1:
                raise RuntimeError("receiver failure for the test")
            delivered.append(index)

        return receive

    for index in range(4):
        batch.add(bytes(320), 8000, receiver(index))  # type: ignore[arg-type]
    assert len(batch) == 4
    batch.flush()
    assert delivered == [0, 2, 3]
    assert len(batch) == 0


def test_batch_mixed_rates_fall_back_per_frame() -> None:
    frames = [(mixed_frames(8000)[3], 8000), (mixed_frames(16000)[3], 16000)]
    batch = FrameBatch()
    found: list[FrameFeatures] = []
    for pcm, rate in frames:
        batch.add(pcm, rate, lambda _pcm, features: found.append(features))
    batch.flush()
    for (pcm, rate), features in zip(frames, found, strict=True):
        assert features.energy == analyze_frame(pcm, rate).energy
        assert features.tone_powers is not None
