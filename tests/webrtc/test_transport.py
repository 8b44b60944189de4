"""WebRtcTransport keeps its media loops running whatever the frame handler does."""

from __future__ import annotations

import asyncio
import fractions
from collections.abc import AsyncIterator

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ivr.channel import DtmfInput
from media.audio import PcmAudio
from signaling.webrtc.call import WebRtcTransport
from signaling.webrtc.config import WebRtcConfig
from signaling.webrtc.peer import create_peer

CONFIG = WebRtcConfig(
    allowed_origins=["http://127.0.0.1"], token_secret=b"k" * 32, advertised_addresses=["127.0.0.1"]
)


class BrokenHandler:
    """A frame handler whose every method raises, as a buggy leg would."""

    def __init__(self) -> None:
        self.closed = False

    def on_audio_frame(self, frame: PcmAudio) -> None:
        raise RuntimeError("bug in on_audio_frame")

    def on_dtmf(self, digit: DtmfInput) -> None:
        raise RuntimeError("bug in on_dtmf")

    def next_frame(self) -> PcmAudio | None:
        raise RuntimeError("bug in next_frame")

    def on_transport_closed(self) -> None:
        self.closed = True


class RecordingHandler(BrokenHandler):
    def __init__(self) -> None:
        super().__init__()
        self.frames: list[PcmAudio] = []

    def on_audio_frame(self, frame: PcmAudio) -> None:
        self.frames.append(frame)


class OpusLikeTrack(MediaStreamTrack):
    """A remote track that yields `count` decoded 48 kHz stereo frames, then ends."""

    kind = "audio"

    def __init__(self, count: int) -> None:
        super().__init__()
        self._left = count

    async def recv(self) -> av.AudioFrame:
        if self._left == 0:
            raise MediaStreamError
        self._left -= 1
        samples = np.full((1, 1920), 3000, dtype=np.int16)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="stereo")
        frame.sample_rate = 48_000
        frame.time_base = fractions.Fraction(1, 48_000)
        return frame


@pytest.fixture
async def transport() -> AsyncIterator[WebRtcTransport]:
    transport = WebRtcTransport(create_peer(CONFIG), 16_000, call_id="t-1")
    yield transport
    await transport.close()


async def test_broken_handler_never_stops_media(transport: WebRtcTransport) -> None:
    handler = BrokenHandler()
    transport.attach(handler)
    assert transport._next_frame() is None
    transport.deliver_dtmf(DtmfInput("5", 100))
    transport.start_receiving(OpusLikeTrack(10))
    assert transport._reader is not None
    await asyncio.wait_for(transport._reader, 10)
    assert transport.frames_received >= 9
    assert transport.handler_errors == 2 + transport.frames_received


async def test_muted_inbound_replaced_by_silence(transport: WebRtcTransport) -> None:
    handler = RecordingHandler()
    transport.attach(handler)
    transport.inbound_muted = True
    transport.start_receiving(OpusLikeTrack(5))
    assert transport._reader is not None
    await asyncio.wait_for(transport._reader, 10)
    assert len(handler.frames) >= 4
    assert {frame.pcm for frame in handler.frames} == {bytes(640)}


async def test_close_tells_handler(transport: WebRtcTransport) -> None:
    handler = RecordingHandler()
    transport.attach(handler)
    await transport.close()
    await transport.close()
    assert handler.closed is True
