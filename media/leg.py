"""`MediaLeg`: the media half of a `CallChannel`, over any `FrameTransport`.

Theory of operation. The leg is the `FrameHandler` of one transport. The
transport's 20 ms clock pulls outbound frames (`next_frame`) from the current
playback, and pushes inbound frames and DTMF digits. Caller inputs (digits,
speech events, recognizer results) go into one FIFO that `next_input` reads.
`play` resolves when its last frame has been pulled, or early when an input
that the call's policy allows interrupts it (barge-in). One playback runs at
a time: a new `play` ends the running one, whose `play` returns None.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

from ivr.channel import (
    CallEnded,
    CallerInput,
    DtmfInput,
    RecognizerConfig,
    SpeechInput,
    SpeechStarted,
)
from media.audio import PcmAudio
from media.resample import resample
from media.transport import FRAME_MS, SUPPORTED_RATES, FrameTransport, frame_samples

logger = logging.getLogger("media.leg")


@dataclass(frozen=True, slots=True)
class LegConfig:
    """Behaviour of one leg. `max_queued_inputs` bounds typed-ahead input."""

    max_queued_inputs: int = 64


class _Playback:
    def __init__(self, frames: deque[bytes], sample_rate: int, policy: tuple[bool, bool]) -> None:
        self.frames = frames
        self.sample_rate = sample_rate
        self.interrupt_on_dtmf, self.interrupt_on_speech = policy
        self.done: asyncio.Future[CallerInput | None] = asyncio.get_running_loop().create_future()

    def finish(self, result: CallerInput | None) -> None:
        if not self.done.done():
            self.done.set_result(result)


class MediaLeg:
    """Plays audio to and collects input from one caller over a `FrameTransport`."""

    def __init__(
        self, transport: FrameTransport, *, call_id: str, config: LegConfig | None = None
    ) -> None:
        if transport.sample_rate not in SUPPORTED_RATES:
            raise ValueError(
                f"transport sample rate {transport.sample_rate} Hz is not one of {SUPPORTED_RATES}"
            )
        self.call_id = call_id
        self.config = config or LegConfig()
        self._transport = transport
        self.sample_rate = transport.sample_rate
        self._frame_bytes = frame_samples(self.sample_rate) * 2
        self._inputs: deque[CallerInput] = deque()
        self._input_ready = asyncio.Event()
        self._playback: _Playback | None = None
        self._closed = False
        self._recognizer_config: RecognizerConfig | None = None
        self.media_time_ms = 0
        transport.attach(self)

    # -- CallChannel media half -----------------------------------------

    @property
    def speech_available(self) -> bool:
        return False

    async def play(
        self,
        audio: PcmAudio,
        *,
        interrupt_on_dtmf: bool = False,
        interrupt_on_speech: bool = False,
    ) -> CallerInput | None:
        """Play `audio` and return None at its end, or the input that interrupted it."""
        self._raise_if_closed()
        if interrupt_on_dtmf:
            typed_ahead = self._take_first(DtmfInput)
            if typed_ahead is not None:
                return typed_ahead
        converted = resample(audio, self.sample_rate)
        pcm = converted.pcm
        remainder = len(pcm) % self._frame_bytes
        if remainder:
            pcm += bytes(self._frame_bytes - remainder)
        frames = deque(
            pcm[offset : offset + self._frame_bytes]
            for offset in range(0, len(pcm), self._frame_bytes)
        )
        if self._playback is not None:
            self._playback.finish(None)
        playback = _Playback(frames, self.sample_rate, (interrupt_on_dtmf, interrupt_on_speech))
        self._playback = playback
        try:
            return await playback.done
        finally:
            if self._playback is playback:
                self._playback = None
            if self._closed:
                raise CallEnded(self.call_id)

    def listen(self, config: RecognizerConfig | None) -> None:
        """Arm the recognizer for the next gather, or disarm it with None."""
        self._recognizer_config = config

    async def next_input(self, timeout_s: float) -> CallerInput | None:
        """Return the next caller input, None after `timeout_s`; CallEnded once closed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            self._raise_if_closed()
            if self._inputs:
                item = self._inputs.popleft()
                if not self._inputs:
                    self._input_ready.clear()
                return item
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            try:
                async with asyncio.timeout(remaining):
                    await self._input_ready.wait()
            except TimeoutError:
                return None

    def clear_inputs(self) -> None:
        """Drop all queued inputs."""
        self._inputs.clear()
        self._input_ready.clear()

    async def close(self) -> None:
        """Stop playback, wake waiters with CallEnded and close the transport."""
        if not self._closed:
            self._mark_closed()
        await self._transport.close()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- FrameHandler ---------------------------------------------------

    def on_audio_frame(self, frame: PcmAudio) -> None:
        if frame.sample_rate != self.sample_rate or len(frame.pcm) != self._frame_bytes:
            logger.warning(
                "call %s: dropped inbound frame of %d bytes at %d Hz",
                self.call_id,
                len(frame.pcm),
                frame.sample_rate,
            )
            return
        self.media_time_ms += FRAME_MS

    def on_dtmf(self, digit: DtmfInput) -> None:
        playback = self._playback
        if playback is not None and playback.interrupt_on_dtmf and not playback.done.done():
            logger.debug("call %s: playback interrupted by dtmf", self.call_id)
            playback.frames.clear()
            playback.finish(digit)
            return
        self._push_input(digit)

    def next_frame(self) -> PcmAudio | None:
        playback = self._playback
        if playback is None or playback.done.done():
            return None
        pcm = playback.frames.popleft()
        if not playback.frames:
            playback.finish(None)
        return PcmAudio(pcm, playback.sample_rate)

    def on_transport_closed(self) -> None:
        if not self._closed:
            self._mark_closed()

    # -- internals ------------------------------------------------------

    def _push_input(self, item: CallerInput) -> None:
        if len(self._inputs) >= self.config.max_queued_inputs:
            self._inputs.popleft()
            logger.warning("call %s: input queue full, dropped the oldest input", self.call_id)
        self._inputs.append(item)
        self._input_ready.set()

    def _take_first(self, kind: type[DtmfInput] | type[SpeechStarted]) -> CallerInput | None:
        for item in self._inputs:
            if isinstance(item, kind):
                self._inputs.remove(item)
                if not self._inputs:
                    self._input_ready.clear()
                return item
        return None

    def _interrupt_for_speech(self, event: SpeechStarted) -> bool:
        playback = self._playback
        if playback is not None and playback.interrupt_on_speech and not playback.done.done():
            playback.frames.clear()
            playback.finish(event)
            return True
        return False

    def _mark_closed(self) -> None:
        self._closed = True
        if self._playback is not None:
            self._playback.finish(None)
        self._input_ready.set()
        logger.debug("call %s: media leg closed", self.call_id)

    def _raise_if_closed(self) -> None:
        if self._closed:
            raise CallEnded(self.call_id)


__all__ = ["LegConfig", "MediaLeg", "SpeechInput"]
