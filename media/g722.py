"""G.722 (wideband ADPCM, 64 kbit/s) through the FFmpeg codec that PyAV ships.

20 ms of 16 kHz audio encodes to 160 bytes. The FFmpeg coder adds a delay of
about 6 samples. `G722` is None when the installed PyAV lacks the codec.
"""

from __future__ import annotations

import logging

import av
import numpy as np

from media.codecs import Codec, Coder

logger = logging.getLogger("media.codecs")

SAMPLE_RATE = 16000


def _new_encoder() -> Coder:
    context = av.CodecContext.create("g722", "w")
    context.sample_rate = SAMPLE_RATE
    context.layout = "mono"
    context.format = "s16"
    context.open()
    pts = 0

    def encode(pcm: bytes) -> bytes:
        nonlocal pts
        samples = np.frombuffer(pcm, dtype="<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = pts
        pts += samples.shape[1]
        return b"".join(bytes(packet) for packet in context.encode(frame))

    return encode


def _new_decoder() -> Coder:
    context = av.CodecContext.create("g722", "r")
    context.sample_rate = SAMPLE_RATE
    context.layout = "mono"

    def decode(payload: bytes) -> bytes:
        try:
            frames = context.decode(av.Packet(payload))
        except av.error.FFmpegError as exc:
            raise ValueError(f"G.722 payload could not be decoded: {exc}") from exc
        return b"".join(frame.to_ndarray().astype("<i2").reshape(-1).tobytes() for frame in frames)

    return decode


def _make_codec() -> Codec | None:
    if "g722" not in av.codecs_available:
        logger.warning("PyAV has no g722 codec; G.722 is not offered")
        return None
    return Codec("G722", 9, 8000, SAMPLE_RATE, _new_encoder, _new_decoder)


G722 = _make_codec()
