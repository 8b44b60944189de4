"""A gather's end silence replaces the leg's endpointer stop time while it listens."""

from __future__ import annotations

import asyncio

import pytest

from ivr.channel import RecognizerConfig, SpeechInput
from media.asr import AsrConfig, ModelCatalog
from media.leg import MediaLeg
from media.memory import MemoryTransport
from media.resample import resample
from media.tts import EspeakSynthesizer
from tests.media.test_asr import KOREAN_MENU

pytestmark = pytest.mark.slow

FRAME_BYTES = 320
PAUSE_MS = 360


def word_pcm(synthesizer: EspeakSynthesizer, word: str) -> bytes:
    pcm = resample(synthesizer.synthesize_blocking(word, "ko"), 8000).pcm
    return pcm + bytes(-len(pcm) % FRAME_BYTES)


@pytest.fixture(scope="module")
def catalog() -> ModelCatalog:
    catalog = ModelCatalog(AsrConfig(models_dir=None))
    assert catalog.load_blocking("ko-KR") is not None
    return catalog


async def finals_for_two_words(
    catalog: ModelCatalog, end_silence_ms: int | None, expected: int
) -> list[SpeechInput]:
    """Say two words 360 ms apart (the leg's stop time is 600 ms) and collect the finals.

    Waits for up to `expected` finals, and then 3 s more for an unexpected one.
    """
    synthesizer = EspeakSynthesizer()
    transport = MemoryTransport(8000)
    leg = MediaLeg(transport, call_id="end-silence", models=catalog)
    leg.listen(RecognizerConfig("ko-KR", KOREAN_MENU, end_silence_ms))
    pause = bytes(PAUSE_MS * 16)
    audio = bytes(8000) + word_pcm(synthesizer, "네") + pause + word_pcm(synthesizer, "아니요")
    transport.push(audio + bytes(32000))
    for _ in range(len(audio) // FRAME_BYTES + 100):
        transport.tick()
    finals: list[SpeechInput] = []
    try:
        async with asyncio.timeout(60):
            while True:
                item = await leg.next_input(30 if len(finals) < expected else 3)
                if item is None:
                    break
                if isinstance(item, SpeechInput) and item.is_final:
                    finals.append(item)
    finally:
        await leg.close()
    return finals


async def test_short_end_silence_splits_utterances(catalog: ModelCatalog) -> None:
    finals = await finals_for_two_words(catalog, 200, 2)
    assert len(finals) == 2
    assert finals[0].text == "네"
    assert finals[1].text == "아니요"


async def test_default_end_silence_joins_utterances(catalog: ModelCatalog) -> None:
    finals = await finals_for_two_words(catalog, None, 1)
    assert len(finals) == 1
