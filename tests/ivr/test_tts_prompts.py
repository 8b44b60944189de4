"""The demo flow spoken by the real espeak-ng synthesizer of the media package."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from ivr.channel import CallerInput
from ivr.engine import IvrSession, Outcome
from ivr.textchannel import TextChannel, scripted
from media.audio import PcmAudio
from tests.ivr.helpers import flow_from_file

tts = pytest.importorskip("media.tts", reason="media.tts comes with the media package")


@dataclass
class AudioKeepingChannel(TextChannel):
    played: list[PcmAudio] = field(default_factory=list)

    async def play(
        self,
        audio: PcmAudio,
        *,
        interrupt_on_dtmf: bool = False,
        interrupt_on_speech: bool = False,
    ) -> CallerInput | None:
        self.played.append(audio)
        return await super().play(
            audio, interrupt_on_dtmf=interrupt_on_dtmf, interrupt_on_speech=interrupt_on_speech
        )


def _rms(audio: PcmAudio) -> float:
    samples = np.frombuffer(audio.pcm, dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0


async def test_demo_reply_audio_differs_by_digit(flows_dir: Path) -> None:
    flow = flow_from_file(flows_dir / "demo.yaml")
    synthesizer = tts.EspeakSynthesizer()
    durations = {}
    for digit in ("1", "2", "7"):
        channel = AudioKeepingChannel(scripted([f"#{digit}"]))
        result = await IvrSession(flow, channel, synthesizer, clock=channel.clock).run()
        assert result.outcome is Outcome.HANGUP
        assert len(channel.played) == 4
        reply = channel.played[2]
        assert _rms(reply) > 100.0
        durations[digit] = reply.duration_ms
    ordered = sorted(durations.values())
    assert ordered[0] * 1.5 < ordered[1]
    assert ordered[1] * 1.5 < ordered[2]


async def test_mandarin_prompt_synthesized(flows_dir: Path) -> None:
    flow = flow_from_file(flows_dir / "contact_center_zh.yaml")
    channel = AudioKeepingChannel(scripted(["#1"]), caller="+8613800000000")
    result = await IvrSession(flow, channel, tts.EspeakSynthesizer(), clock=channel.clock).run()
    assert result.outcome is Outcome.QUEUED
    assert result.prompts[0] == "欢迎致电北风公司。"
    assert _rms(channel.played[0]) > 100.0
    assert channel.played[0].duration_ms > 1000
