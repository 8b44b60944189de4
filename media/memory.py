"""An in-memory `FrameTransport` driven by hand: a test harness and simulator edge.

`MemoryTransport` has no clock of its own. Each `tick` does what a real
transport does every 20 ms: it pulls one outbound frame from the handler and
delivers the inbound frames queued with `push`. Tests and the IVR simulator
use it to run a `MediaLeg` deterministically, without sockets.
"""

from __future__ import annotations

from collections import deque

from ivr.channel import DtmfInput
from media.audio import PcmAudio
from media.transport import SUPPORTED_RATES, FrameHandler, frame_samples


class MemoryTransport:
    """A hand-driven transport at `sample_rate` (8000 or 16000 Hz)."""

    def __init__(self, sample_rate: int = 8000) -> None:
        if sample_rate not in SUPPORTED_RATES:
            raise ValueError(f"sample rate {sample_rate} Hz is not one of {SUPPORTED_RATES}")
        self._sample_rate = sample_rate
        self._handler: FrameHandler | None = None
        self._inbound: deque[PcmAudio | DtmfInput] = deque()
        self.sent: list[PcmAudio | None] = []
        self.closed = False

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    def attach(self, handler: FrameHandler) -> None:
        self._handler = handler

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        handler, self._handler = self._handler, None
        if handler is not None:
            handler.on_transport_closed()

    def push(self, pcm: bytes) -> None:
        """Queue caller audio of any whole number of 20 ms frames."""
        size = frame_samples(self._sample_rate) * 2
        if len(pcm) % size:
            raise ValueError(f"{len(pcm)} bytes is not a whole number of {size}-byte frames")
        for offset in range(0, len(pcm), size):
            self._inbound.append(PcmAudio(pcm[offset : offset + size], self._sample_rate))

    def push_dtmf(self, digit: DtmfInput) -> None:
        """Queue a digit as if the transport had decoded it."""
        self._inbound.append(digit)

    def tick(self) -> PcmAudio | None:
        """Run one 20 ms step: deliver one queued inbound item, pull one outbound frame."""
        handler = self._handler
        if handler is None:
            return None
        if self._inbound:
            item = self._inbound.popleft()
            if isinstance(item, DtmfInput):
                handler.on_dtmf(item)
            else:
                handler.on_audio_frame(item)
        frame = handler.next_frame()
        self.sent.append(frame)
        return frame
