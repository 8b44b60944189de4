"""Audio values shared by every media stage.

All PCM inside VoxGate is signed 16-bit little-endian mono. Codecs convert at
the edges (G.711 and G.722 on RTP legs, Opus on WebRTC legs).
"""

from __future__ import annotations

from dataclasses import dataclass

SAMPLE_WIDTH = 2


@dataclass(frozen=True, slots=True)
class PcmAudio:
    """A block of signed 16-bit little-endian mono PCM at `sample_rate` Hz."""

    pcm: bytes
    sample_rate: int

    def __post_init__(self) -> None:
        if len(self.pcm) % SAMPLE_WIDTH:
            raise ValueError(f"PCM length {len(self.pcm)} is not a whole number of 16-bit samples")
        if self.sample_rate <= 0:
            raise ValueError(f"invalid sample rate {self.sample_rate}")

    @property
    def sample_count(self) -> int:
        return len(self.pcm) // SAMPLE_WIDTH

    @property
    def duration_ms(self) -> float:
        return 1000.0 * self.sample_count / self.sample_rate
