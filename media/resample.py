"""Sample-rate conversion with soxr, for whole buffers and for frame streams.

`StreamResampler` keeps the output length of a stream exact: after N input
samples it has returned exactly floor(N * out_rate / in_rate) samples. soxr
(1.1, quality "HQ") releases output in bursts of about 100 ms when fed 20 ms
chunks, so the first calls are padded with zeros and the stream carries that
padding as a constant delay. Every 20 ms input frame then yields one full
20 ms output frame, which is what VAD and ASR framing need.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import soxr

from media.audio import PcmAudio

_Int16Array = npt.NDArray[np.int16]


def resample(audio: PcmAudio, rate: int, *, quality: str = "HQ") -> PcmAudio:
    """Return `audio` at `rate` Hz (a whole buffer, no stream state)."""
    if audio.sample_rate == rate:
        return audio
    samples = np.frombuffer(audio.pcm, dtype="<i2")
    if samples.size == 0:
        return PcmAudio(b"", rate)
    converted = soxr.resample(samples, audio.sample_rate, rate, quality=quality)
    return PcmAudio(np.asarray(converted, dtype="<i2").tobytes(), rate)


class StreamResampler:
    """Convert a stream of s16 mono chunks from `in_rate` to `out_rate`.

    Not thread-safe, so use one per stream. When the rates are equal, chunks
    pass through unchanged.
    """

    def __init__(self, in_rate: int, out_rate: int, *, quality: str = "HQ") -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"invalid resampler rates {in_rate} -> {out_rate}")
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream = (
            None
            if in_rate == out_rate
            else soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality=quality)
        )
        self._pending: _Int16Array = np.zeros(0, dtype=np.int16)
        self._samples_in = 0
        self._samples_out = 0
        self.padding_samples = 0
        """Zero samples inserted at the start to keep output sizes exact (the added delay)."""

    def process(self, pcm: bytes) -> bytes:
        """Resample one chunk of s16le PCM and return exactly the due output samples."""
        if self._stream is None:
            return pcm
        samples = np.frombuffer(pcm, dtype="<i2")
        produced = self._stream.resample_chunk(samples)
        self._samples_in += samples.size
        due = self._samples_in * self.out_rate // self.in_rate - self._samples_out
        available = np.concatenate([self._pending, produced.astype(np.int16)])
        if available.size < due:
            shortfall = due - available.size
            self.padding_samples += shortfall
            available = np.concatenate([np.zeros(shortfall, dtype=np.int16), available])
        out, self._pending = available[:due], available[due:]
        self._samples_out += due
        return out.astype("<i2").tobytes()

    def process_audio(self, audio: PcmAudio) -> PcmAudio:
        """Resample one `PcmAudio` chunk, checking that its rate is this stream's input rate."""
        if audio.sample_rate != self.in_rate:
            raise ValueError(
                f"resampler expects {self.in_rate} Hz input, got {audio.sample_rate} Hz"
            )
        return PcmAudio(self.process(audio.pcm), self.out_rate)
