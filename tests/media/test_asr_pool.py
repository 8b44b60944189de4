"""Calls share one bounded recognition thread pool and keep their own results apart."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from ivr.channel import RecognizerConfig, SpeechInput
from media import g711
from media.asr import AsrConfig, CallRecognizer, ModelCatalog
from media.resample import resample
from media.tts import EspeakSynthesizer
from tests.media.test_asr import KOREAN_MENU


async def test_calls_interleave_on_one_thread() -> None:
    catalog = ModelCatalog(AsrConfig(models_dir=None, worker_threads=1))
    assert await catalog.preload(["ko-KR"]) == ["ko-KR"]
    synthesizer = EspeakSynthesizer()
    words = ["네", "상담원", "요금"]
    results: dict[int, list[SpeechInput]] = {index: [] for index in range(len(words))}

    def collector(index: int) -> Callable[[int, SpeechInput], None]:
        def collect(utterance_id: int, result: SpeechInput) -> None:
            results[index].append(result)

        return collect

    recognizers = [
        CallRecognizer(catalog, on_result=collector(index), call_id=str(index))
        for index in range(len(words))
    ]
    config = RecognizerConfig("ko-KR", KOREAN_MENU)
    audio = []
    for word in words:
        spoken = resample(await synthesizer.synthesize(word, voice="ko"), 8000)
        audio.append(g711.ulaw_decode(g711.ulaw_encode(bytes(4800) + spoken.pcm + bytes(9600))))
    try:
        for recognizer in recognizers:
            recognizer.begin(1, 0, config, input_rate=8000)
        # Feed the calls' 100 ms chunks alternately, as concurrent calls do.
        longest = max(len(pcm) for pcm in audio)
        for offset in range(0, longest, 1600):
            for recognizer, pcm in zip(recognizers, audio, strict=True):
                if offset < len(pcm):
                    recognizer.feed(pcm[offset : offset + 1600])
        for recognizer, pcm in zip(recognizers, audio, strict=True):
            recognizer.end(len(pcm) // 16)
        await asyncio.gather(*(recognizer.drain() for recognizer in recognizers))
        await asyncio.sleep(0)
        pool_threads = [t for t in threading.enumerate() if t.name.startswith("asr_")]
    finally:
        for recognizer in recognizers:
            await recognizer.close()

    for index, word in enumerate(words):
        assert len(results[index]) == 1, f"call {index}"
        assert results[index][0].text == word, f"call {index}"
    assert len(pool_threads) == 1
