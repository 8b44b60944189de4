"""Fixtures for end-to-end calls: one `voxgate serve` node per test module."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest

from ivr.loader import load_flow
from ivr.model import Flow, HangupStep, SayStep
from media.resample import resample
from media.tts import EspeakSynthesizer
from tests.support.audio_analysis import Timeline, frame_rms
from tests.support.calls import CallEnd, CallEndedBy
from tests.support.node import REPOSITORY, RunningNode, voxgate_node

# RMS on the 16-bit scale above which a 20 ms frame counts as voiced.
VOICED_RMS = 300.0


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    with voxgate_node(tmp_path_factory.mktemp("node")) as running:
        yield running


@pytest.fixture(scope="session")
def demo_flow() -> Flow:
    return load_flow(REPOSITORY / "config" / "flows" / "demo.yaml")


def prompt_text(flow: Flow, step_id: str) -> str:
    """The spoken text of a say step or of a hangup step's prompt."""
    step = flow.steps[step_id]
    if isinstance(step, SayStep) and step.text is not None:
        return step.text
    if isinstance(step, HangupStep) and isinstance(step.prompt, str):
        return step.prompt
    raise AssertionError(f"step {step_id} has no plain text prompt")


def expected_voiced_seconds(texts: list[str], voice: str) -> float:
    """Voiced seconds (20 ms frames above VOICED_RMS at 8 kHz) of the texts spoken by espeak-ng."""
    synthesizer = EspeakSynthesizer()
    total = 0.0
    for text in texts:
        audio = resample(synthesizer.synthesize_blocking(text, voice), 8000)
        samples = np.frombuffer(audio.pcm, dtype="<i2").astype(np.float64)
        for start in range(0, samples.size - 159, 160):
            frame = samples[start : start + 160]
            if math.sqrt(float(np.mean(frame**2))) > VOICED_RMS:
                total += 0.02
    return total


def assert_clean_log(node: RunningNode) -> None:
    log = node.log()
    assert "Traceback" not in log
    assert " ERROR " not in log


def voiced_seconds_between(timeline: Timeline, start: float, end: float) -> float:
    """Voiced seconds of 20 ms frames whose arrival time lies in [start, end)."""
    levels = frame_rms(timeline.samples, timeline.sample_rate)
    times = timeline.start_arrival + 0.02 * np.arange(levels.size)
    chosen = (times >= start) & (times < end) & (levels > VOICED_RMS)
    return 0.02 * int(np.count_nonzero(chosen))


def assert_demo_call(
    flow: Flow,
    timeline: Timeline,
    end: CallEnd,
    *,
    answered_at: float,
    pressed_at: float,
    reply_step: str,
) -> None:
    """Check a demo call heard by a client: welcome before the digit, the chosen reply after it.

    The reply is recognized by its voiced duration, which differs clearly
    between the demo flow's replies; the server must have ended the call.
    """
    assert end.ended_by is CallEndedBy.REMOTE, f"call ended by {end.ended_by}: {end.reason}"
    welcome = voiced_seconds_between(timeline, answered_at, pressed_at)
    assert welcome > 1.0, f"only {welcome:.2f} s of welcome audio before the digit"

    expected = expected_voiced_seconds(
        [prompt_text(flow, reply_step), prompt_text(flow, "goodbye")], flow.voice
    )
    reply = voiced_seconds_between(timeline, pressed_at, end.at + 1.0)
    assert abs(reply - expected) <= 0.25 * expected + 0.3, (
        f"heard {reply:.2f} s after the digit, expected about {expected:.2f} s "
        f"for the {reply_step} reply"
    )
