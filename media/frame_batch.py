"""Energy and DTMF tone powers of every call's inbound frame of one tick, in a few numpy calls.

The RTP session uses the batch for a leg without the C core (`media._rtpcore`
not built). A leg's C core computes the same features of its own frame in C.

Theory of operation. On each tick of the packet clock every RTP session pops
one 20 ms frame for its leg. The leg needs the frame's energy (the VAD's
energy gate and the in-band DTMF detector's pre-check) and, for a frame loud
enough to hold a DTMF key, the Goertzel powers at the eight DTMF frequencies.
Computed frame by frame, each of these is a few numpy calls of about 1 µs of
overhead each. `FrameBatch` collects the frames of one tick, stacks those of
one sample rate into one matrix, computes all energies in one operation and
the tone powers of all loud frames in one matrix product, and then hands each
frame with its `FrameFeatures` to its receiver, in the order they were added.

The energy is exact: the squares of 16-bit samples are integers below 2**30,
so their sum over a frame of up to 2**23 samples stays an integer below 2**53
and float64 adds it without rounding, in any order. The tone powers can differ
from the per-frame computation in the last bits, because a matrix product may
add in another order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from media.dtmf_inband import DTMF_FREQUENCIES, InbandConfig, goertzel_basis, min_tone_energy
from media.transport import frame_samples

logger = logging.getLogger("media.rtp")


@dataclass(frozen=True, slots=True)
class FrameFeatures:
    """The features of one s16 frame that the leg's detectors need, computed before they run."""

    energy: float
    """Sum of the squared samples (exact)."""
    tone_powers: npt.NDArray[np.float64] | None
    """Goertzel powers at `DTMF_FREQUENCIES`, or None for a frame quieter than
    `min_tone_energy` at the default `InbandConfig.min_level_dbfs`."""


def analyze_frame(pcm: bytes, sample_rate: int) -> FrameFeatures:
    """Return the features of one frame, computed alone (the path outside the packet clock)."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    energy = float(samples @ samples)
    tone_powers = None
    block = samples.size
    if block == frame_samples(sample_rate) and energy >= _tone_threshold(block):
        cos, sin = goertzel_basis(DTMF_FREQUENCIES, sample_rate, block)
        real, imag = cos @ samples, sin @ samples
        tone_powers = real * real + imag * imag
    return FrameFeatures(energy, tone_powers)


def _tone_threshold(block: int) -> float:
    return min_tone_energy(block, InbandConfig().min_level_dbfs)


FrameReceiver = Callable[[bytes, FrameFeatures], None]


class FrameBatch:
    """The inbound frames of one clock tick, analyzed together by `flush`."""

    def __init__(self) -> None:
        self._frames: list[bytes] = []
        self._rates: list[int] = []
        self._receivers: list[FrameReceiver] = []

    def __len__(self) -> int:
        return len(self._frames)

    def add(self, pcm: bytes, sample_rate: int, receiver: FrameReceiver) -> None:
        """Queue one s16le frame; `flush` calls `receiver(pcm, features)` for it."""
        self._frames.append(pcm)
        self._rates.append(sample_rate)
        self._receivers.append(receiver)

    def flush(self) -> None:
        """Analyze the queued frames and hand each to its receiver, in the order added.

        A receiver that raises is logged and does not stop the others.
        """
        frames, self._frames = self._frames, []
        rates, self._rates = self._rates, []
        receivers, self._receivers = self._receivers, []
        if not frames:
            return
        features = _analyze(frames, rates)
        for pcm, receiver, found in zip(frames, receivers, features, strict=True):
            try:
                receiver(pcm, found)
            except Exception:
                logger.exception("inbound frame handling failed")


def _analyze(frames: list[bytes], rates: list[int]) -> list[FrameFeatures]:
    first_rate = rates[0]
    size = 2 * frame_samples(first_rate)
    if any(rate != first_rate for rate in rates) or any(len(pcm) != size for pcm in frames):
        # Mixed rates or odd sizes are rare (no RTP session produces them today), so
        # they take the per-frame path instead of a grouping step on every tick.
        return [analyze_frame(pcm, rate) for pcm, rate in zip(frames, rates, strict=True)]
    block = size // 2
    samples = np.frombuffer(b"".join(frames), dtype="<i2").reshape(len(frames), block)
    values = samples.astype(np.float64)
    energies = np.einsum("ij,ij->i", values, values)
    loud = np.flatnonzero(energies >= _tone_threshold(block))
    powers: list[npt.NDArray[np.float64] | None] = [None] * len(frames)
    if loud.size:
        cos, sin = goertzel_basis(DTMF_FREQUENCIES, first_rate, block)
        loud_values = values[loud]
        real = loud_values @ cos.T
        imag = loud_values @ sin.T
        loud_powers = real * real + imag * imag
        for row, index in enumerate(loud.tolist()):
            powers[index] = loud_powers[row]
    return [
        FrameFeatures(energy, tone_powers)
        for energy, tone_powers in zip(energies.tolist(), powers, strict=True)
    ]
