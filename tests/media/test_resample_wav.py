from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from media.audio import PcmAudio
from media.resample import StreamResampler, resample
from media.wav import load_wav, parse_wav, save_wav, wav_bytes


def tone(rate: int, seconds: float, hz: float = 440.0, amplitude: float = 8000.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype("<i2")


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(float)))
    return float(np.fft.rfftfreq(samples.size, 1 / rate)[int(np.argmax(spectrum))])


@pytest.mark.parametrize(
    ("in_rate", "out_rate", "chunk"),
    [
        (8000, 16000, 160),
        (16000, 8000, 320),
        (22050, 8000, 441),
        (48000, 16000, 960),
        (8000, 8000, 160),
    ],
)
def test_stream_output_size_exact_per_chunk(in_rate: int, out_rate: int, chunk: int) -> None:
    resampler = StreamResampler(in_rate, out_rate)
    source = tone(in_rate, 2.0)
    outputs = [
        resampler.process(source[i : i + chunk].tobytes()) for i in range(0, source.size, chunk)
    ]
    expected = chunk * out_rate // in_rate
    assert {len(out) // 2 for out in outputs} == {expected}


def test_stream_keeps_tone_frequency() -> None:
    resampler = StreamResampler(8000, 16000)
    source = tone(8000, 1.0, hz=1000)
    out = b"".join(resampler.process(source[i : i + 160].tobytes()) for i in range(0, 8000, 160))
    samples = np.frombuffer(out, "<i2")[resampler.padding_samples :]
    assert abs(dominant_hz(samples, 16000) - 1000) < 5


def test_stream_rejects_wrong_input_rate() -> None:
    with pytest.raises(ValueError, match="expects 8000 Hz"):
        StreamResampler(8000, 16000).process_audio(PcmAudio(b"\0\0" * 320, 16000))


def test_whole_buffer_resample_duration() -> None:
    audio = PcmAudio(tone(22050, 1.0).tobytes(), 22050)
    converted = resample(audio, 8000)
    assert converted.sample_rate == 8000
    assert abs(converted.sample_count - 8000) <= 1


def _wav(
    format_tag: int, channels: int, rate: int, bits: int, data: bytes, extensible: bool = False
) -> bytes:
    block_align = channels * bits // 8
    if extensible:
        fmt = struct.pack(
            "<HHIIHHHHI", 0xFFFE, channels, rate, rate * block_align, block_align, bits, 22, bits, 0
        )
        fmt += (
            struct.pack("<H", format_tag)
            + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        )
    else:
        fmt = struct.pack(
            "<HHIIHH", format_tag, channels, rate, rate * block_align, block_align, bits
        )
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"LIST" + struct.pack("<I", 3) + b"abc\x00"  # odd-sized chunk with pad byte
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_wav_stereo_16bit_averaged_to_mono() -> None:
    left = np.full(100, 1000, "<i2")
    right = np.full(100, 3000, "<i2")
    data = np.column_stack([left, right]).astype("<i2").tobytes()
    audio = parse_wav(_wav(1, 2, 44100, 16, data))
    assert audio.sample_rate == 44100
    assert audio.sample_count == 100
    assert set(np.frombuffer(audio.pcm, "<i2").tolist()) == {2000}


@pytest.mark.parametrize(
    ("format_tag", "bits", "data", "expected"),
    [
        (1, 8, bytes([128 + 64]), 64 * 256),
        (1, 24, (1000 * 256).to_bytes(3, "little", signed=True), 1000),
        (1, 32, (-1000 * 65536).to_bytes(4, "little", signed=True), -1000),
        (3, 32, struct.pack("<f", 0.5), 16384),
        (3, 64, struct.pack("<d", -0.25), -8192),
        (7, 8, b"\x80", 32124),
        (6, 8, b"\xd5", 8),
    ],
)
def test_wav_sample_formats(format_tag: int, bits: int, data: bytes, expected: int) -> None:
    for extensible in (False, True):
        audio = parse_wav(_wav(format_tag, 1, 8000, bits, data * 4, extensible))
        assert np.frombuffer(audio.pcm, "<i2").tolist() == [expected] * 4


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"RIFX0000WAVE", "missing RIFF"),
        (b"RIFF\x04\x00\x00\x00WAVE", "no fmt chunk"),
        (_wav(1, 1, 8000, 16, b"")[:36], "no data chunk"),
        (_wav(2, 1, 8000, 16, b"\0\0"), "unsupported WAV sample format"),
    ],
)
def test_wav_rejects_bad_files(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_wav(data)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    audio = PcmAudio(tone(16000, 0.5).tobytes(), 16000)
    path = tmp_path / "prompt.wav"
    save_wav(path, audio)
    assert load_wav(path) == audio
    assert wav_bytes(audio.pcm, 16000)[:4] == b"RIFF"
