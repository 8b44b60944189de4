"""Outbound frame sources for `MediaLeg.set_outbound_source`: hold music and friends."""

from __future__ import annotations

from media.audio import PcmAudio
from media.resample import resample
from media.transport import frame_samples


class LoopingSource:
    """Repeat `audio` forever in 20 ms frames at `sample_rate` (hold music)."""

    def __init__(self, audio: PcmAudio, sample_rate: int) -> None:
        converted = resample(audio, sample_rate)
        size = frame_samples(sample_rate) * 2
        pcm = converted.pcm
        if not pcm:
            raise ValueError("hold music is empty")
        pcm += bytes(-len(pcm) % size)
        self._frames = [pcm[i : i + size] for i in range(0, len(pcm), size)]
        self._sample_rate = sample_rate
        self._index = 0

    def __call__(self) -> PcmAudio:
        frame = self._frames[self._index]
        self._index = (self._index + 1) % len(self._frames)
        return PcmAudio(frame, self._sample_rate)
