"""Speech through the whole receive path: espeak-ng -> RTP (PCMU) -> MediaLeg -> VAD -> Vosk."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from ivr.channel import CallerInput, RecognizerConfig, SpeechInput, SpeechStarted
from media.asr import AsrConfig, ModelCatalog
from media.audio import PcmAudio
from media.leg import LegConfig, MediaLeg
from media.rtp_session import RtpPortPool, RtpSession, RtpSessionConfig
from media.tts import EspeakSynthesizer
from tests.media.conftest import LOOPBACK, tone_pcm
from tests.media.test_asr import KOREAN_MENU

pytestmark = pytest.mark.slow

KOREAN = RecognizerConfig("ko-KR", KOREAN_MENU)


@pytest.fixture(scope="module")
def catalog() -> ModelCatalog:
    return ModelCatalog(AsrConfig(models_dir=None))


@pytest.fixture(scope="module")
def synthesizer() -> EspeakSynthesizer:
    return EspeakSynthesizer()


async def open_pair(
    pool: RtpPortPool, catalog: ModelCatalog, config: LegConfig | None = None
) -> tuple[MediaLeg, MediaLeg]:
    """Return (caller, server): the caller leg speaks, the server leg recognizes."""
    # The caller's phone never skips audio after a stall of its event loop, so a loaded
    # machine delays the speech but does not cut it.
    phone = RtpSessionConfig(max_lag_ms=5000)
    a = await RtpSession.open_from_pool(pool, phone, local_host=LOOPBACK, call_id="caller")
    b = await RtpSession.open_from_pool(
        pool, RtpSessionConfig(), local_host=LOOPBACK, remote=a.local_address, call_id="server"
    )
    a.set_remote(b.local_address)
    caller = MediaLeg(a, call_id="caller")
    server = MediaLeg(b, call_id="server", config=config, models=catalog)
    return caller, server


@pytest.fixture
async def legs(
    port_pool: RtpPortPool, catalog: ModelCatalog
) -> AsyncIterator[tuple[MediaLeg, MediaLeg]]:
    caller, server = await open_pair(port_pool, catalog)
    yield caller, server
    await caller.close()
    await server.close()


async def next_final(leg: MediaLeg, timeout_s: float = 20.0) -> SpeechInput:
    """Return the next final speech result, skipping SpeechStarted."""
    async with asyncio.timeout(timeout_s):
        while True:
            item: CallerInput | None = await leg.next_input(timeout_s)
            if isinstance(item, SpeechInput) and item.is_final:
                return item
            assert item is None or isinstance(item, SpeechStarted)


async def say(
    caller: MediaLeg, server: MediaLeg, synthesizer: EspeakSynthesizer, word: str
) -> SpeechInput:
    """Speak `word` and return the result, saying it a second time after a miss.

    An IVR re-prompts after a no-match, and one repeat keeps the test stable
    when a loaded machine stalls the sender's event loop long enough to lose
    audio.
    """
    result = SpeechInput("", 0.0)
    for _ in range(2):
        await caller.play(await synthesizer.synthesize(word, voice="ko"))
        result = await next_final(server)
        if result.text == word:
            break
    return result


async def test_korean_menu_words_recognized_over_rtp(
    legs: tuple[MediaLeg, MediaLeg], synthesizer: EspeakSynthesizer
) -> None:
    caller, server = legs
    assert server.speech_available
    assert not caller.speech_available
    server.listen(KOREAN)
    heard_texts: list[str] = []
    for word in KOREAN_MENU:
        result = await say(caller, server, synthesizer, word)
        heard_texts.append(result.text)
        assert result.confidence > 0.0
        assert result.end_ms > result.start_ms
    assert heard_texts == KOREAN_MENU


async def test_speech_interrupts_prompt_then_is_recognized(
    legs: tuple[MediaLeg, MediaLeg], synthesizer: EspeakSynthesizer
) -> None:
    caller, server = legs
    server.listen(KOREAN)
    prompt = PcmAudio(tone_pcm(8000, 20.0, hz=300, amplitude=3000), 8000)
    playing = asyncio.create_task(server.play(prompt, interrupt_on_speech=True))
    await asyncio.sleep(0.2)
    await caller.play(await synthesizer.synthesize("상담원", voice="ko"))
    interrupted = await asyncio.wait_for(playing, 10)
    assert isinstance(interrupted, SpeechStarted)
    result = await next_final(server)
    if result.text != "상담원":
        result = await say(caller, server, synthesizer, "상담원")
    assert result.text == "상담원"


async def test_backchannel_does_not_interrupt_prompt(
    port_pool: RtpPortPool, catalog: ModelCatalog, synthesizer: EspeakSynthesizer
) -> None:
    caller, server = await open_pair(port_pool, catalog, LegConfig(barge_in_min_speech_ms=700))
    try:
        server.listen(KOREAN)
        prompt = PcmAudio(tone_pcm(8000, 2.5, hz=300, amplitude=3000), 8000)
        playing = asyncio.create_task(server.play(prompt, interrupt_on_speech=True))
        await asyncio.sleep(0.2)
        await caller.play(await synthesizer.synthesize("네", voice="ko"))
        assert await asyncio.wait_for(playing, 10) is None
        result = await say(caller, server, synthesizer, "아니요")
        assert result.text == "아니요"
    finally:
        await caller.close()
        await server.close()


async def test_speech_during_prompt_without_barge_in_ignored(
    legs: tuple[MediaLeg, MediaLeg], synthesizer: EspeakSynthesizer
) -> None:
    caller, server = legs
    server.listen(KOREAN)
    prompt = PcmAudio(tone_pcm(8000, 3.0, hz=300, amplitude=3000), 8000)
    playing = asyncio.create_task(server.play(prompt, interrupt_on_speech=False))
    await asyncio.sleep(0.2)
    await caller.play(await synthesizer.synthesize("상담원", voice="ko"))
    assert await asyncio.wait_for(playing, 10) is None
    result = await say(caller, server, synthesizer, "환불")
    assert result.text == "환불"


async def test_listen_during_utterance_recognizes_from_start(
    legs: tuple[MediaLeg, MediaLeg], synthesizer: EspeakSynthesizer
) -> None:
    caller, server = legs
    sentence = await synthesizer.synthesize("상담원 연결해 주세요", voice="ko")
    speaking = asyncio.create_task(caller.play(sentence))
    async with asyncio.timeout(10):
        while server._utterance is None:  # noqa: ASYNC110 - waits for the endpointer state
            await asyncio.sleep(0.001)
    server.listen(RecognizerConfig("ko-KR", ["상담원 연결해 주세요", "네", "아니요"]))
    await speaking
    result = await next_final(server)
    assert result.start_ms < result.end_ms
    assert result.text != ""


async def test_unknown_language_disables_speech_for_gather(
    legs: tuple[MediaLeg, MediaLeg], synthesizer: EspeakSynthesizer
) -> None:
    caller, server = legs
    server.listen(RecognizerConfig("sw-KE", ["ndiyo"]))
    await caller.play(await synthesizer.synthesize("상담원", voice="ko"))
    assert await server.next_input(1.5) is None


async def test_free_form_mode_delivers_partials_then_final(
    port_pool: RtpPortPool, catalog: ModelCatalog, synthesizer: EspeakSynthesizer
) -> None:
    config = LegConfig(deliver_partial_results=True, report_speech_started=False)
    caller, server = await open_pair(port_pool, catalog, config)
    try:
        server.listen(RecognizerConfig("ko-KR", None))
        sentence = "고객센터에 전화해 주셔서 감사합니다. 상담원을 연결해 드리겠습니다."
        await caller.play(await synthesizer.synthesize(sentence, voice="ko"))
        results: list[SpeechInput] = []
        async with asyncio.timeout(30):
            while not results or not results[-1].is_final:
                item = await server.next_input(30)
                assert isinstance(item, SpeechInput)
                results.append(item)
    finally:
        await caller.close()
        await server.close()
    partials = [r for r in results if not r.is_final]
    assert partials
    assert all(p.text for p in partials)
    assert results[-1].text
    assert results[-1].alternatives == ()
