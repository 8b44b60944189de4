from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from media.audio import PcmAudio
from media.tts import (
    EspeakSynthesizer,
    SynthesisError,
    TtsConfig,
    voice_exists,
    voice_languages,
)
from media.wav import load_wav


def rms(audio: PcmAudio) -> float:
    samples = np.frombuffer(audio.pcm, "<i2").astype(float)
    return float(np.sqrt((samples**2).mean()))


@pytest.mark.parametrize(
    ("voice", "text", "min_ms", "max_ms"),
    [
        ("en-us", "Thank you for calling. Press one for sales.", 1500, 6000),
        ("cmn", "欢迎致电客服中心，请说出您的问题。", 1500, 8000),
        ("ko", "고객센터에 전화해 주셔서 감사합니다.", 1000, 6000),
    ],
)
async def test_voices_produce_speech(voice: str, text: str, min_ms: int, max_ms: int) -> None:
    audio = await EspeakSynthesizer().synthesize(text, voice=voice)
    assert audio.sample_rate == 22050
    assert min_ms <= audio.duration_ms <= max_ms
    assert rms(audio) > 500


async def test_faster_rate_gives_shorter_audio() -> None:
    synthesizer = EspeakSynthesizer()
    text = "Your call is important to us. Please stay on the line."
    slow = await synthesizer.synthesize(text, rate_wpm=120)
    fast = await synthesizer.synthesize(text, rate_wpm=240)
    assert fast.duration_ms < 0.75 * slow.duration_ms


async def test_memory_cache_returns_same_object() -> None:
    synthesizer = EspeakSynthesizer()
    first = await synthesizer.synthesize("Goodbye.")
    second = await synthesizer.synthesize("Goodbye.")
    assert first is second


async def test_disk_cache_survives_new_instance(tmp_path: Path) -> None:
    config = TtsConfig(cache_dir=tmp_path / "tts")
    audio = await EspeakSynthesizer(config).synthesize("One moment please.", voice="en-us")
    files = list((tmp_path / "tts").glob("*.wav"))
    assert len(files) == 1
    assert load_wav(files[0]) == audio
    again = await EspeakSynthesizer(config).synthesize("One moment please.", voice="en-us")
    assert again == audio


async def test_unknown_voice_rejected() -> None:
    with pytest.raises(SynthesisError, match="no voice"):
        await EspeakSynthesizer().synthesize("hello", voice="xx-nonexistent")


@pytest.mark.parametrize(("text", "rate", "message"), [("  ", 160, "empty"), ("hi", 20, "rate")])
async def test_bad_arguments_rejected(text: str, rate: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        await EspeakSynthesizer().synthesize(text, rate_wpm=rate)


@pytest.mark.parametrize("voice", ["en-us", "de", "en-us+f3", "cmn"])
def test_voice_exists_accepts_installed(voice: str) -> None:
    assert voice_exists(voice)


@pytest.mark.parametrize("voice", ["zz-top", "en-uss", ""])
def test_voice_exists_rejects_unknown(voice: str) -> None:
    assert not voice_exists(voice)


def test_voice_languages_lists_installed() -> None:
    languages = voice_languages()
    assert "en-us" in languages
    assert "fr" in languages
    assert voice_exists("fr")
    # Listed as a language of the French voice, but not a name it can be set by.
    assert "fr-fr" in languages
    assert not voice_exists("fr-fr")
