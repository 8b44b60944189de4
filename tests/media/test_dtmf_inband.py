from __future__ import annotations

import numpy as np
import pytest

from ivr.channel import DtmfInput
from media import g711
from media.audio import PcmAudio
from media.dtmf_inband import (
    HIGH_FREQUENCIES,
    KEYPAD,
    LOW_FREQUENCIES,
    DtmfMerger,
    DtmfSource,
    InbandDtmfDetector,
)
from media.leg import MediaLeg
from media.resample import resample
from media.tts import EspeakSynthesizer
from tests.media.conftest import RecordingHandler, SessionPair

ALL_KEYS = "0123456789*#ABCD"


def key_tone(key: str, ms: int, rate: int, level: float = 0.3, twist_db: float = 0.0) -> bytes:
    """Return a DTMF key as s16le; `twist_db` is the high tone's level relative to the low."""
    row = next(index for index, keys in enumerate(KEYPAD) if key in keys)
    column = KEYPAD[row].index(key)
    t = np.arange(rate * ms // 1000) / rate
    low = level * np.sin(2 * np.pi * LOW_FREQUENCIES[row] * t)
    high = level * 10 ** (twist_db / 20) * np.sin(2 * np.pi * HIGH_FREQUENCIES[column] * t)
    return ((low + high) * 16000).astype("<i2").tobytes()


def detect(detector: InbandDtmfDetector, pcm: bytes) -> list[DtmfInput]:
    block_bytes = detector.block * 2
    pcm += bytes(block_bytes * 3)
    digits: list[DtmfInput] = []
    for offset in range(0, len(pcm) - block_bytes + 1, block_bytes):
        digits += detector.process(pcm[offset : offset + block_bytes])
    return digits


def key_sequence(keys: str, rate: int, on_ms: int = 90, off_ms: int = 70, **kwargs: float) -> bytes:
    gap = bytes(rate * off_ms // 1000 * 2)
    return b"".join(key_tone(key, on_ms, rate, **kwargs) + gap for key in keys)


@pytest.mark.parametrize("codec", ["pcmu", "pcma"])
def test_all_keys_detected_through_g711(codec: str) -> None:
    encode, decode = {
        "pcmu": (g711.ulaw_encode, g711.ulaw_decode),
        "pcma": (g711.alaw_encode, g711.alaw_decode),
    }[codec]
    pcm = decode(encode(key_sequence(ALL_KEYS, 8000)))
    digits = detect(InbandDtmfDetector(8000), pcm)
    assert "".join(d.digit for d in digits) == ALL_KEYS
    assert {d.duration_ms for d in digits} <= {80, 100}


def test_all_keys_detected_at_16k() -> None:
    digits = detect(InbandDtmfDetector(16000), key_sequence(ALL_KEYS, 16000))
    assert "".join(d.digit for d in digits) == ALL_KEYS


def test_quiet_keys_detected() -> None:
    digits = detect(InbandDtmfDetector(8000), key_sequence("159", 8000, level=0.05))
    assert "".join(d.digit for d in digits) == "159"


@pytest.mark.parametrize("twist_db", [-10.0, 6.0])
def test_excess_twist_rejected(twist_db: float) -> None:
    assert detect(InbandDtmfDetector(8000), key_sequence("5", 8000, twist_db=twist_db)) == []


def test_tone_shorter_than_minimum_ignored() -> None:
    assert detect(InbandDtmfDetector(8000), key_sequence("5", 8000, on_ms=25)) == []


def test_held_key_reported_once_with_duration() -> None:
    digits = detect(InbandDtmfDetector(8000), key_sequence("8", 8000, on_ms=1000))
    assert len(digits) == 1
    assert digits[0].digit == "8"
    assert 960 <= digits[0].duration_ms <= 1000


@pytest.mark.parametrize(
    ("voice", "text"),
    [
        (
            "en-us",
            "Thank you for calling. Press one for sales, two for support, or stay on the line.",
        ),
        ("ko", "고객센터에 전화해 주셔서 감사합니다. 상담원 연결을 원하시면 일 번을 눌러주세요."),
        ("cmn", "欢迎致电客服中心，请说出您的问题，或者按一号键转人工服务。"),
    ],
)
@pytest.mark.parametrize("rate", [8000, 16000])
def test_speech_gives_no_false_digits(voice: str, text: str, rate: int) -> None:
    speech = resample(EspeakSynthesizer().synthesize_blocking(text, voice), rate)
    pcm = speech.pcm
    if rate == 8000:
        pcm = g711.ulaw_decode(g711.ulaw_encode(pcm))
    assert detect(InbandDtmfDetector(rate), pcm) == []


def test_merger_drops_same_digit_from_other_source() -> None:
    merger = DtmfMerger(window_ms=400)
    assert merger.accept(DtmfInput("5"), DtmfSource.INBAND, 1000)
    assert not merger.accept(DtmfInput("5"), DtmfSource.RFC4733, 1100)
    assert merger.accept(DtmfInput("5"), DtmfSource.RFC4733, 2000)


def test_merger_ignores_inband_after_out_of_band() -> None:
    merger = DtmfMerger()
    assert merger.accept(DtmfInput("1"), DtmfSource.SIP_INFO, 0)
    assert not merger.accept(DtmfInput("2"), DtmfSource.INBAND, 5000)
    assert merger.accept(DtmfInput("2"), DtmfSource.RFC4733, 5000)


def test_merger_keeps_repeated_digit_from_one_source() -> None:
    merger = DtmfMerger()
    assert merger.accept(DtmfInput("3"), DtmfSource.RFC4733, 0)
    assert merger.accept(DtmfInput("3"), DtmfSource.RFC4733, 150)


async def test_inband_digits_reach_leg_over_rtp(session_pair: SessionPair) -> None:
    a, b = session_pair
    sender = RecordingHandler()
    pcm = key_sequence("42#", 8000, on_ms=100, off_ms=100)
    frames = [pcm[i : i + 320].ljust(320, b"\0") for i in range(0, len(pcm), 320)]
    sender.outbound = [PcmAudio(frame, 8000) for frame in frames]
    leg = MediaLeg(b, call_id="b")
    a.attach(sender)
    digits = []
    for _ in range(3):
        item = await leg.next_input(10)
        assert isinstance(item, DtmfInput)
        digits.append(item.digit)
    assert "".join(digits) == "42#"
    assert await leg.next_input(0.3) is None


async def test_leg_builds_detector_at_first_frame(session_pair: SessionPair) -> None:
    a, b = session_pair
    leg = MediaLeg(b, call_id="b")
    leg.listen(None)
    assert leg._inband is None
    assert leg._endpointer is None
    assert leg.media_time_ms == 0

    sender = RecordingHandler()
    pcm = key_sequence("5", 8000, on_ms=100, off_ms=100)
    sender.outbound = [
        PcmAudio(pcm[i : i + 320].ljust(320, b"\0"), 8000) for i in range(0, len(pcm), 320)
    ]
    a.attach(sender)
    item = await leg.next_input(10)
    assert item == DtmfInput("5", 100)
    assert leg._inband is not None
    assert leg.media_time_ms > 0


async def test_sip_info_digit_deduplicated_with_rfc4733(session_pair: SessionPair) -> None:
    a, b = session_pair
    a.attach(RecordingHandler())
    leg = MediaLeg(b, call_id="b")
    a.send_dtmf("6")
    assert await leg.next_input(10) == DtmfInput("6", 100)
    leg.on_sip_info_dtmf(DtmfInput("6", 100))
    assert await leg.next_input(0.2) is None
