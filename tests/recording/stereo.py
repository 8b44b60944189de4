"""Reading the stereo WAV files of call recordings and measuring tones in them."""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

Samples = npt.NDArray[np.int16]


@dataclass(frozen=True, slots=True)
class StereoWav:
    """The two channels of a recording, as int16 arrays at `sample_rate`."""

    left: Samples
    right: Samples
    sample_rate: int
    channels: int

    def seconds(self, start_s: float, end_s: float) -> StereoWav:
        """Return the part from `start_s` to `end_s`."""
        first, last = round(start_s * self.sample_rate), round(end_s * self.sample_rate)
        return StereoWav(
            self.left[first:last], self.right[first:last], self.sample_rate, self.channels
        )

    @property
    def duration_s(self) -> float:
        return len(self.left) / self.sample_rate


def read_stereo(path: Path) -> StereoWav:
    """Read a 16-bit WAV file with two channels; raise ValueError for another layout."""
    with wave.open(str(path)) as wav:
        channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
        data = wav.readframes(wav.getnframes())
    if width != 2 or channels != 2:
        raise ValueError(
            f"{path}: expected 16-bit stereo, got {channels} channels of {width} bytes"
        )
    frames = np.frombuffer(data, dtype="<i2").reshape(-1, 2)
    return StereoWav(frames[:, 0].copy(), frames[:, 1].copy(), rate, channels)


def tone_level(samples: Samples, sample_rate: int, hz: float) -> float:
    """Return the amplitude of the `hz` component of `samples` (0 for silence)."""
    values = samples.astype(np.float64)
    if values.size == 0:
        return 0.0
    t = np.arange(values.size) / sample_rate
    component = values @ np.exp(-2j * np.pi * hz * t)
    return float(2 * abs(component) / values.size)


def tone_seconds(
    samples: Samples, sample_rate: int, hz: float, *, min_level: float = 500.0
) -> float:
    """Return how many seconds of `samples` carry the `hz` tone, counted in 100 ms windows."""
    window = sample_rate // 10
    count = 0
    for start in range(0, len(samples) - window + 1, window):
        if tone_level(samples[start : start + window], sample_rate, hz) >= min_level:
            count += 1
    return count / 10


def peak(samples: Samples) -> int:
    """Return the largest absolute sample value (0 for digital silence)."""
    return int(np.abs(samples.astype(np.int32)).max()) if samples.size else 0
