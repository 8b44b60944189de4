"""Read, write and make 16-bit PCM WAV audio for the SIP test peers."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import soxr

from tests.support.audio_analysis import Samples


def read_wav(path: Path) -> tuple[Samples, int]:
    """Return the samples (mixed down to mono) and sample rate of a 16-bit PCM WAV file."""
    with wave.open(str(path), "rb") as reader:
        if reader.getsampwidth() != 2:
            raise ValueError(f"{path}: sample width {reader.getsampwidth()} bytes, expected 2")
        channels = reader.getnchannels()
        rate = reader.getframerate()
        frames = np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2")
    if channels > 1:
        mixed = frames.reshape(-1, channels).astype(np.int32).mean(axis=1)
        return mixed.astype(np.int16), rate
    return frames.astype(np.int16), rate


def write_wav(path: Path, samples: Samples, sample_rate: int) -> Path:
    """Write mono 16-bit samples to `path` and return the path."""
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(sample_rate)
        writer.writeframes(samples.astype("<i2").tobytes())
    return path


def resample(samples: Samples, from_rate: int, to_rate: int) -> Samples:
    """Resample 16-bit mono samples with soxr (returns the input when the rates match)."""
    if from_rate == to_rate:
        return samples
    converted = np.asarray(soxr.resample(samples.astype(np.float32), from_rate, to_rate))
    clipped: Samples = np.clip(np.round(converted), -32768, 32767).astype(np.int16)
    return clipped


def load_mono(path: Path, sample_rate: int) -> Samples:
    """Read a 16-bit WAV file as mono samples at `sample_rate`."""
    samples, rate = read_wav(path)
    return resample(samples, rate, sample_rate)


def tone(
    frequency_hz: float, duration_s: float, sample_rate: int, amplitude: float = 0.3
) -> Samples:
    """Make a sine tone; `amplitude` is a fraction of full scale."""
    t = np.arange(round(duration_s * sample_rate)) / sample_rate
    return np.round(amplitude * 32767 * np.sin(2 * np.pi * frequency_hz * t)).astype(np.int16)


def silence(duration_s: float, sample_rate: int) -> Samples:
    return np.zeros(round(duration_s * sample_rate), dtype=np.int16)
