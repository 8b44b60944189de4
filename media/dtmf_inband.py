"""In-band DTMF detection (Goertzel) and merging of the three DTMF sources.

`InbandDtmfDetector` looks at 20 ms blocks of decoded audio and measures the
eight DTMF frequencies (ITU-T Q.23). A block holds a key when four checks
pass. The strongest low and the strongest high tone each stand clearly above
the other tones of their group. Their twist (level difference) is within
limits. The two tones carry most of the block's energy. Their second
harmonics are weak, because speech has strong harmonics and DTMF tones do not.
A key is reported once, when its tone stops, if it lasted at least
`min_duration_ms` (40 ms by default, the usual minimum tone length).

`DtmfMerger` turns RFC 4733 events, SIP INFO and in-band detection into one
digit stream. Peers that send RFC 4733 or INFO often leave the tones in the
audio too, so once an out-of-band digit has arrived, in-band detection is
ignored for the rest of the call, and a digit equal to one reported from
another source within `window_ms` is dropped as a duplicate.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ivr.channel import DtmfInput

LOW_FREQUENCIES = (697.0, 770.0, 852.0, 941.0)
HIGH_FREQUENCIES = (1209.0, 1336.0, 1477.0, 1633.0)
KEYPAD = ("123A", "456B", "789C", "*0#D")
_HARMONIC_GUARD_HZ = 150.0


@dataclass(frozen=True, slots=True)
class InbandConfig:
    """Detection thresholds. Levels are in dB, and `min_level_dbfs` applies to each tone."""

    min_level_dbfs: float = -36.0
    max_forward_twist_db: float = 8.0
    max_reverse_twist_db: float = 4.0
    min_group_margin_db: float = 8.0
    min_tone_energy_fraction: float = 0.7
    max_harmonic_ratio_db: float = -15.0
    min_duration_ms: int = 40
    block_ms: int = 20


class _Goertzel:
    """Goertzel power at fixed frequencies for blocks of one length, vectorized with numpy."""

    def __init__(self, frequencies: tuple[float, ...], sample_rate: int, block: int) -> None:
        n = np.arange(block)
        # One row of cos and sin per frequency gives power = |sum x[n] e^{-jwn}|^2, exact even
        # at frequencies between DFT bins.
        omega = 2 * np.pi * np.asarray(frequencies)[:, None] / sample_rate
        self._cos = np.cos(omega * n)
        self._sin = np.sin(omega * n)

    def powers(self, samples: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        real = self._cos @ samples
        imag = self._sin @ samples
        result: npt.NDArray[np.float64] = real * real + imag * imag
        return result


def _db(ratio: float) -> float:
    return 10 * math.log10(ratio) if ratio > 0 else -math.inf


class InbandDtmfDetector:
    """Detect DTMF keys in a stream of s16le blocks of `block_ms` at `sample_rate`."""

    def __init__(self, sample_rate: int, config: InbandConfig | None = None) -> None:
        self.config = config or InbandConfig()
        self.sample_rate = sample_rate
        self.block = sample_rate * self.config.block_ms // 1000
        frequencies = LOW_FREQUENCIES + HIGH_FREQUENCIES
        harmonics = tuple(2 * f for f in frequencies)
        self._tones = _Goertzel(frequencies, sample_rate, self.block)
        self._harmonics = _Goertzel(harmonics, sample_rate, self.block)
        self._current: str | None = None
        self._current_blocks = 0
        self._silent_blocks = 0

    def classify(self, pcm: bytes) -> str | None:
        """Return the key present in one block, or None."""
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
        if samples.size != self.block:
            raise ValueError(f"in-band DTMF block of {samples.size} samples, expected {self.block}")
        energy = float(samples @ samples)
        if energy <= 0:
            return None
        config = self.config
        powers = self._tones.powers(samples)
        # A full-scale sine gives power (32768 * N / 2) ** 2.
        full_scale = (32768.0 * self.block / 2) ** 2
        low, high = powers[:4], powers[4:]
        low_index, high_index = int(np.argmax(low)), int(np.argmax(high))
        low_power, high_power = float(low[low_index]), float(high[high_index])
        if min(_db(low_power / full_scale), _db(high_power / full_scale)) < config.min_level_dbfs:
            return None
        twist = _db(low_power / high_power)
        if twist > config.max_forward_twist_db or -twist > config.max_reverse_twist_db:
            return None
        others_low = float(np.max(np.delete(low, low_index)))
        others_high = float(np.max(np.delete(high, high_index)))
        margin = config.min_group_margin_db
        if _db(low_power / max(others_low, 1e-9)) < margin:
            return None
        if _db(high_power / max(others_high, 1e-9)) < margin:
            return None
        # For a sinusoid, 2 * power / N equals its energy in the block.
        tone_energy = 2 * (low_power + high_power) / self.block
        if tone_energy / energy < config.min_tone_energy_fraction:
            return None
        harmonics = self._harmonics.powers(samples)
        # The low tone's harmonic can sit within one bin of the high tone (2 x 852 Hz = 1704 Hz
        # next to 1633 Hz), where the high tone itself would fail the check.
        harmonic_near_high = abs(2 * LOW_FREQUENCIES[low_index] - HIGH_FREQUENCIES[high_index])
        if (
            harmonic_near_high > _HARMONIC_GUARD_HZ
            and _db(float(harmonics[low_index]) / low_power) > config.max_harmonic_ratio_db
        ):
            return None
        if _db(float(harmonics[4 + high_index]) / high_power) > config.max_harmonic_ratio_db:
            return None
        return KEYPAD[low_index][high_index]

    @property
    def tone_present(self) -> bool:
        """Whether the last block held a DTMF key."""
        return self._current is not None

    def process(self, pcm: bytes) -> list[DtmfInput]:
        """Feed one block and return the key whose tone just ended, with its duration."""
        key = self.classify(pcm)
        block_ms = self.config.block_ms
        reported: list[DtmfInput] = []
        if key is not None and key == self._current:
            self._current_blocks += 1
            self._silent_blocks = 0
            return reported
        if self._current is not None:
            # One odd block inside a tone (a G.711 or jitter glitch) does not end it.
            if key is None and self._silent_blocks == 0:
                self._silent_blocks = 1
                return reported
            duration_ms = self._current_blocks * block_ms
            if duration_ms >= self.config.min_duration_ms:
                reported.append(DtmfInput(self._current, duration_ms))
        self._current = key
        self._current_blocks = 1 if key is not None else 0
        self._silent_blocks = 0
        return reported


class DtmfSource(enum.Enum):
    RFC4733 = "rfc4733"
    SIP_INFO = "sip-info"
    INBAND = "inband"


class DtmfMerger:
    """Merge digits from RFC 4733, SIP INFO and in-band detection into one stream."""

    def __init__(self, window_ms: int = 400) -> None:
        self.window_ms = window_ms
        self._out_of_band_seen = False
        self._last: tuple[str, int, DtmfSource] | None = None

    def accept(self, digit: DtmfInput, source: DtmfSource, at_ms: int) -> bool:
        """Return whether `digit`, reported by `source` at `at_ms`, is new."""
        if source is DtmfSource.INBAND and self._out_of_band_seen:
            return False
        if source is not DtmfSource.INBAND:
            self._out_of_band_seen = True
        last = self._last
        if (
            last is not None
            and last[0] == digit.digit
            and last[2] is not source
            and at_ms - last[1] <= self.window_ms
        ):
            return False
        self._last = (digit.digit, at_ms, source)
        return True
