"""Audio between aiortc tracks and 20 ms `PcmAudio` frames.

Inbound, aiortc hands decoded `av.AudioFrame`s: 48 kHz s16 stereo (packed,
960 samples per channel) for Opus and 8 kHz mono for G.711. `FrameConverter`
downmixes and resamples them with `av.AudioResampler` and re-chunks the
output into exact 20 ms frames, because the resampler returns a short first
frame (304 instead of 320 samples at 16 kHz). Samples are read with
`to_ndarray`, never `bytes(plane)`, which includes padding.

Outbound, `OutboundAudioTrack` is the 20 ms clock of the leg. aiortc's
sender calls `recv()`, which waits until the frame's due time
(start + pts / rate) and then pulls one frame from the frame handler. It
sends silence when the handler has none.

`WebRtcTransport` in call.py joins both around one peer connection as a
`media.transport.FrameTransport`.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
from collections.abc import Callable

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from media.audio import PcmAudio
from media.transport import FRAME_MS

logger = logging.getLogger("webrtc")


class FrameConverter:
    """Converts decoded aiortc audio frames into exact 20 ms mono s16 frames at one rate.

    It runs on the event loop: one 20 ms Opus frame to 16 kHz took about 13 µs
    (2-core VM, PyAV 18.1), less than a hop to an executor would cost.
    """

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._frame_bytes = sample_rate * FRAME_MS // 1000 * 2
        self._resampler: av.AudioResampler | None = None
        self._input_format: tuple[str, str, int] | None = None
        self._buffer = bytearray()

    def push(self, frame: av.AudioFrame) -> list[PcmAudio]:
        """Convert one decoded frame; return the whole 20 ms frames now available."""
        input_format = (frame.format.name, frame.layout.name, frame.sample_rate)
        if input_format != self._input_format:
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=self.sample_rate)
            self._input_format = input_format
        assert self._resampler is not None
        for converted in self._resampler.resample(frame):
            samples = converted.to_ndarray().reshape(-1)[: converted.samples]
            self._buffer += samples.astype("<i2").tobytes()
        frames = []
        while len(self._buffer) >= self._frame_bytes:
            frames.append(PcmAudio(bytes(self._buffer[: self._frame_bytes]), self.sample_rate))
            del self._buffer[: self._frame_bytes]
        return frames


def pcm_to_frame(audio: PcmAudio, pts: int) -> av.AudioFrame:
    """Wrap mono s16 PCM in an av.AudioFrame stamped `pts` in 1/rate units."""
    samples = np.frombuffer(audio.pcm, dtype="<i2").reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
    frame.sample_rate = audio.sample_rate
    frame.pts = pts
    frame.time_base = fractions.Fraction(1, audio.sample_rate)
    return frame


class OutboundAudioTrack(MediaStreamTrack):
    """An audio track that sends one 20 ms frame per tick from a frame source.

    `source` returns the next frame at the track's rate, or None for silence.
    Frames of another length or rate are replaced by silence and logged.
    """

    kind = "audio"

    def __init__(
        self,
        sample_rate: int,
        source: Callable[[], PcmAudio | None],
        *,
        call_id: str = "-",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self._source = source
        self._call_id = call_id
        self._clock = clock
        self._samples = sample_rate * FRAME_MS // 1000
        self._silence = PcmAudio(bytes(self._samples * 2), sample_rate)
        self._start: float | None = None
        self._pts = 0
        self.muted = False

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = self._clock()
        else:
            self._pts += self._samples
            due = self._start + self._pts / self.sample_rate
            wait = due - self._clock()
            if wait > 0:
                await asyncio.sleep(wait)
        audio = self._source()
        if audio is None or self.muted:
            audio = self._silence
        elif audio.sample_rate != self.sample_rate or audio.sample_count != self._samples:
            logger.warning(
                "outbound frame of %d samples at %d Hz replaced by silence call_id=%s",
                audio.sample_count,
                audio.sample_rate,
                self._call_id,
            )
            audio = self._silence
        return pcm_to_frame(audio, self._pts)
