"""The C per-frame path of `MediaLeg` decides as the Python path does.

`media._rtpcore.InbandCore` must find the same DTMF keys as
`PythonInbandDtmfDetector`. A leg whose frames go through its C core
(`MediaLeg.frame_receiver`) is compared with a leg on the Python path
(`on_analyzed_frame`) with the Python detector and endpointer. Both must
queue the same inputs, track the same utterance and end their prompts
alike. The frames are silence,
noise, speech-like harmonics, DTMF keys, random bytes and mutated frames,
with prompts, barge-in and inbound taps in between.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.channel import CallerInput
from media import _rtpcore
from media.audio import PcmAudio
from media.dtmf_inband import (
    HIGH_FREQUENCIES,
    KEYPAD,
    LOW_FREQUENCIES,
    InbandConfig,
    InbandDtmfDetector,
    PythonInbandDtmfDetector,
)
from media.frame_batch import FrameBatch, FrameFeatures, analyze_frame
from media.leg import LegConfig, MediaLeg
from media.memory import MemoryTransport
from media.vad import PythonEndpointer, VadConfig
from tests.fuzz.mutate import INPUTS, SEED

RATE = 8000
FRAME = RATE // 50  # samples in 20 ms


def dtmf_frame(key: str, index: int, level: float, twist_db: float) -> np.ndarray:
    row = next(number for number, keys in enumerate(KEYPAD) if key in keys)
    column = KEYPAD[row].index(key)
    t = (np.arange(FRAME) + index * FRAME) / RATE
    low = np.sin(2 * np.pi * LOW_FREQUENCIES[row] * t)
    high = 10 ** (twist_db / 20) * np.sin(2 * np.pi * HIGH_FREQUENCIES[column] * t)
    return level * (low + high)


def speech_frame(index: int, level: float, pitch_hz: float) -> np.ndarray:
    t = (np.arange(FRAME) + index * FRAME) / RATE
    voice = sum(np.sin(2 * np.pi * pitch_hz * k * t) / k for k in range(1, 12))
    return level * voice * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))


@dataclass(frozen=True)
class Segment:
    kind: str
    frames: int
    level: float
    key: str = "5"
    twist_db: float = 0.0
    pitch_hz: float = 150.0


def render(segments: list[Segment], seed: int) -> list[bytes]:
    """Return the 20 ms s16le frames of `segments`."""
    rng = np.random.default_rng(seed)
    frames: list[bytes] = []
    for segment in segments:
        for index in range(segment.frames):
            if segment.kind == "silence":
                samples = np.zeros(FRAME)
            elif segment.kind == "noise":
                samples = rng.normal(0, segment.level, FRAME)
            elif segment.kind == "speech":
                samples = speech_frame(index, segment.level, segment.pitch_hz)
            elif segment.kind == "dtmf":
                samples = dtmf_frame(segment.key, index, segment.level, segment.twist_db)
                samples += rng.normal(0, segment.level / 50, FRAME)
            else:
                frames.append(rng.integers(0, 256, 2 * FRAME, dtype=np.uint8).tobytes())
                continue
            frames.append(np.clip(samples, -32768, 32767).astype("<i2").tobytes())
    return frames


_segments = st.lists(
    st.builds(
        Segment,
        kind=st.sampled_from(["silence", "noise", "speech", "speech", "dtmf", "dtmf", "random"]),
        frames=st.integers(1, 40),
        level=st.sampled_from([30.0, 300.0, 3000.0, 12000.0]),
        key=st.sampled_from(list("0123456789*#ABCD")),
        twist_db=st.sampled_from([-6.0, 0.0, 3.0, 10.0]),
        pitch_hz=st.sampled_from([110.0, 150.0, 220.0]),
    ),
    max_size=14,
)


# -- InbandCore against PythonInbandDtmfDetector --------------------------------


def compare_detectors(frames: list[bytes], config: InbandConfig, pass_features: bool) -> None:
    native = InbandDtmfDetector(RATE, config)
    reference = PythonInbandDtmfDetector(RATE, config)
    for index, pcm in enumerate(frames):
        energy, powers = None, None
        if pass_features:
            features = analyze_frame(pcm, RATE)
            energy, powers = features.energy, features.tone_powers
        assert native.classify(pcm, energy, powers) == reference.classify(pcm, energy, powers), (
            f"classify of frame {index}"
        )
        got = native.process(pcm, energy, powers)
        expected = reference.process(pcm, energy, powers)
        assert got == expected, f"process of frame {index}"
        assert native.tone_present == reference.tone_present, f"frame {index}"


@settings(max_examples=300, deadline=None)
@given(
    segments=_segments,
    seed=st.integers(0, 1000),
    pass_features=st.booleans(),
    min_duration_ms=st.sampled_from([20, 40, 100]),
    min_level_dbfs=st.sampled_from([-36.0, -20.0]),
)
def test_inband_detector_matches_python(
    segments: list[Segment],
    seed: int,
    pass_features: bool,
    min_duration_ms: int,
    min_level_dbfs: float,
) -> None:
    config = InbandConfig(min_duration_ms=min_duration_ms, min_level_dbfs=min_level_dbfs)
    compare_detectors(render(segments, seed), config, pass_features)


def test_inband_detector_matches_python_on_mutations() -> None:
    rng = random.Random(SEED)
    keys = render([Segment("dtmf", 6, 9000.0, key=key) for key in "0123456789*#ABCD"], 1)
    frames = []
    for _ in range(min(INPUTS, 20_000)):
        frame = bytearray(rng.choice(keys))
        for _ in range(rng.randint(0, 12)):
            frame[rng.randrange(len(frame))] = rng.randrange(256)
        frames.append(bytes(frame))
    compare_detectors(frames, InbandConfig(), pass_features=True)


def test_inband_detector_finds_every_key() -> None:
    segments = []
    for key in "0123456789*#ABCD":
        segments += [Segment("dtmf", 5, 8000.0, key=key), Segment("silence", 4, 0.0)]
    detector = InbandDtmfDetector(RATE)
    digits = [digit for pcm in render(segments, 0) for digit in detector.process(pcm)]
    assert "".join(digit.digit for digit in digits) == "0123456789*#ABCD"
    assert {digit.duration_ms for digit in digits} == {100}


def test_inband_detector_rejects_bad_input() -> None:
    detector = InbandDtmfDetector(RATE)
    with pytest.raises(ValueError):
        detector.process(bytes(2 * FRAME - 2))
    with pytest.raises(ValueError):
        detector.classify(bytes(2 * FRAME + 2))
    with pytest.raises(TypeError):
        detector.process(bytes(2 * FRAME), 1e12, np.zeros(7))
    with pytest.raises(TypeError):
        detector.process(bytes(2 * FRAME), 1e12, np.zeros(8, dtype=np.int64))
    with pytest.raises(ValueError):
        detector.process(bytes(2 * FRAME), -1.0)
    with pytest.raises(TypeError):
        detector.process(bytearray(2 * FRAME), 1e12)  # type: ignore[arg-type]
    assert not detector.tone_present


# -- LegCore against MediaLeg.on_analyzed_frame ----------------------------------


def python_leg(config: LegConfig) -> MediaLeg:
    """Return a leg on the Python path, with the Python detector and endpointer."""
    leg = MediaLeg(MemoryTransport(RATE), call_id="python", config=config)
    # The reference parts replace the C ones, and without the C core every frame
    # takes `on_analyzed_frame`.
    leg._core = None
    leg._endpointer = PythonEndpointer(config.vad, RATE, call_id="python")
    if config.inband_dtmf:
        leg._inband = PythonInbandDtmfDetector(RATE, config.inband)
    return leg


def leg_state(leg: MediaLeg) -> tuple[object, ...]:
    endpointer = leg._endpointer
    inband = leg._inband
    assert endpointer is not None  # built by the first frame
    return (
        list(leg._inputs or ()),
        leg._utterance,
        leg._last_utterance_id,
        endpointer.state,
        endpointer.now_ms,
        endpointer.voiced_ms,
        inband.tone_present if inband is not None else None,
        leg._bad_frames,
    )


@dataclass(frozen=True)
class Action:
    """What happens before a frame: a prompt starts, or an inbound tap comes or goes."""

    at_frame: int
    kind: str


_actions = st.lists(
    st.builds(
        Action,
        at_frame=st.integers(0, 300),
        kind=st.sampled_from(["prompt", "interruptible", "tap", "untap", "clear"]),
    ),
    max_size=6,
)


async def compare_legs(
    frames: list[bytes], actions: list[Action], config: LegConfig, features: str
) -> None:
    """Run both legs; `features` names the source of the C leg's: "core", "frame" or "batch"."""
    native = MediaLeg(MemoryTransport(RATE), call_id="native", config=config)
    reference = python_leg(config)
    receiver = native.frame_receiver
    assert receiver is not None
    prompt = PcmAudio(bytes(2 * FRAME * 30), RATE)
    plays: list[tuple[asyncio.Task[CallerInput | None], asyncio.Task[CallerInput | None]]] = []
    taps: list[list[PcmAudio]] = [[], []]
    by_frame = {action.at_frame: action for action in actions}

    for index, pcm in enumerate(frames):
        action = by_frame.get(index)
        if action is not None and action.kind in ("prompt", "interruptible"):
            interrupt = action.kind == "interruptible"
            plays.append(
                (
                    asyncio.create_task(native.play(prompt, interrupt_on_speech=interrupt)),
                    asyncio.create_task(reference.play(prompt, interrupt_on_speech=interrupt)),
                )
            )
            await asyncio.sleep(0)  # let both plays start
        elif action is not None and action.kind == "tap":
            native.add_inbound_tap(taps[0].append)
            reference.add_inbound_tap(taps[1].append)
        elif action is not None and action.kind == "untap":
            native.remove_inbound_tap(taps[0].append)
            reference.remove_inbound_tap(taps[1].append)
        elif action is not None:
            native.clear_inputs()
            reference.clear_inputs()

        if features == "batch":
            batch = FrameBatch()
            batch.add(pcm, RATE, receiver)
            batch.flush()
        elif features == "frame":
            receiver(pcm, analyze_frame(pcm, RATE))
        else:
            receiver(pcm, None)
        reference.on_analyzed_frame(PcmAudio(pcm, RATE), analyze_frame(pcm, RATE))
        assert leg_state(native) == leg_state(reference), f"frame {index}"
        native.next_frame()
        reference.next_frame()
        await asyncio.sleep(0)  # let a finished play return

    assert taps[0] == taps[1]
    for native_play, reference_play in plays:
        assert native_play.done() == reference_play.done()
        if native_play.done():
            assert native_play.result() == reference_play.result()
        native_play.cancel()
        reference_play.cancel()
    await native.close()
    await reference.close()


@settings(max_examples=150, deadline=None)
@given(
    segments=_segments,
    actions=_actions,
    seed=st.integers(0, 1000),
    inband_dtmf=st.booleans(),
    features=st.sampled_from(["core", "frame", "batch"]),
    barge_in_min_speech_ms=st.sampled_from([0, 100, 400]),
    stop_ms=st.sampled_from([100, 300]),
    max_buffered_utterance_ms=st.sampled_from([0, 200, 10_000]),
)
def test_leg_core_matches_python_path(
    segments: list[Segment],
    actions: list[Action],
    seed: int,
    inband_dtmf: bool,
    features: str,
    barge_in_min_speech_ms: int,
    stop_ms: int,
    max_buffered_utterance_ms: int,
) -> None:
    config = LegConfig(
        inband_dtmf=inband_dtmf,
        barge_in_min_speech_ms=barge_in_min_speech_ms,
        max_buffered_utterance_ms=max_buffered_utterance_ms,
        vad=replace(VadConfig(), stop_ms=stop_ms, start_ms=60),
    )
    asyncio.run(compare_legs(render(segments, seed), actions, config, features))


def test_leg_core_matches_python_on_mutated_frames() -> None:
    rng = random.Random(SEED)
    base = render(
        [
            Segment("speech", 30, 6000.0),
            Segment("dtmf", 6, 9000.0, key="7"),
            Segment("silence", 20, 0.0),
            Segment("noise", 10, 3000.0),
        ],
        2,
    )
    frames = []
    for _ in range(min(INPUTS // 10, 5_000)):
        frame = bytearray(rng.choice(base))
        for _ in range(rng.randint(0, 20)):
            frame[rng.randrange(len(frame))] = rng.randrange(256)
        frames.append(bytes(frame))
    actions = [Action(500, "interruptible"), Action(1500, "tap"), Action(2000, "untap")]
    asyncio.run(compare_legs(frames, actions, LegConfig(), features="core"))


def test_leg_core_sends_odd_frames_to_python() -> None:
    async def run() -> None:
        native = MediaLeg(MemoryTransport(RATE), call_id="native")
        receiver = native.frame_receiver
        assert receiver is not None
        receiver(bytes(2 * FRAME - 2), FrameFeatures(0.0, None))
        receiver(bytes(2 * FRAME), None)
        assert native._bad_frames == 1
        assert native.media_time_ms == 20
        await native.close()

    asyncio.run(run())


def test_cores_before_init_raise() -> None:
    pcm = bytes(2 * FRAME)
    detector = _rtpcore.InbandCore.__new__(_rtpcore.InbandCore)
    with pytest.raises(RuntimeError):
        detector.process(pcm)
    endpointer = _rtpcore.EndpointCore.__new__(_rtpcore.EndpointCore)
    core = _rtpcore.LegCore(object(), None, endpointer, 2 * FRAME, 10, 400)
    with pytest.raises(RuntimeError):
        core.frame(pcm, FrameFeatures(0.0, None))
    with pytest.raises(RuntimeError):
        _rtpcore.LegCore.__new__(_rtpcore.LegCore).frame(pcm, None)
    with pytest.raises(TypeError):
        core.sink = ()  # type: ignore[assignment]
