"""The transport-neutral seam between a media transport and a call leg.

A transport (an RTP session, a WebRTC track adapter) owns a 20 ms clock. On
each tick it pulls one outbound frame from its `FrameHandler` and sends it,
and it pushes each inbound 20 ms frame and each DTMF digit to the same
handler. Frames are s16 mono `PcmAudio` of exactly 20 ms at the transport's
`sample_rate` (8000 or 16000 Hz). All handler calls happen on the event loop
thread and must not block.
"""

from __future__ import annotations

from typing import Protocol

from ivr.channel import DtmfInput
from media.audio import PcmAudio

FRAME_MS = 20
SUPPORTED_RATES = (8000, 16000)


def frame_samples(sample_rate: int) -> int:
    """Return the number of samples in one 20 ms frame at `sample_rate`."""
    return sample_rate * FRAME_MS // 1000


class FrameHandler(Protocol):
    """What a transport serves: the receiving and sending side of one leg."""

    def on_audio_frame(self, frame: PcmAudio) -> None:
        """Take one inbound 20 ms frame (caller audio)."""
        ...

    def on_dtmf(self, digit: DtmfInput) -> None:
        """Take one DTMF key press decoded by the transport (RFC 4733 telephone-events)."""
        ...

    def next_frame(self) -> PcmAudio | None:
        """Return the next outbound 20 ms frame, or None when there is nothing to send."""
        ...

    def on_transport_closed(self) -> None:
        """Learn that the transport stopped. No further calls follow."""
        ...


class FrameTransport(Protocol):
    """A media transport that carries 20 ms frames for one leg."""

    @property
    def sample_rate(self) -> int:
        """Rate of the frames exchanged with the handler (8000 or 16000 Hz)."""
        ...

    def attach(self, handler: FrameHandler) -> None:
        """Start delivering frames to `handler` and pulling frames from it."""
        ...

    async def close(self) -> None:
        """Stop the transport and release its resources. Safe to call twice."""
        ...
