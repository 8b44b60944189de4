"""The receive fast path of a latched G.711 stream keeps every decision of the full path."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from media import g711
from media.rtp import RtpPacket
from media.rtp_session import LatchState, RtpSession, RtpSessionConfig
from tests.media.conftest import tone_pcm

CALLER = ("127.0.0.1", 40_000)
INTRUDER = ("127.0.0.1", 40_002)


class _ManualClockSession(RtpSession):
    """An `RtpSession` with an instance dict, so that a test can replace `_now_ms`."""


class _NullTransport:
    """A datagram transport that drops what is sent, so the test drives the session alone."""

    def sendto(self, data: bytes, addr: Any = None) -> None:
        pass

    def close(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False


def datagrams(codec_name: str) -> list[tuple[bytes, tuple[str, int]]]:
    """Return a caller's stream with the cases each path must decide the same way."""
    encode = g711.ulaw_encode if codec_name == "PCMU" else g711.alaw_encode
    payload_type = 0 if codec_name == "PCMU" else 8
    pcm = tone_pcm(8000, 1.0, hz=700.0)
    payloads = [encode(pcm[offset : offset + 320]) for offset in range(0, len(pcm), 320)]
    stream: list[tuple[bytes, tuple[str, int]]] = []
    for index, payload in enumerate(payloads):
        ssrc = 7 if index < 10 else 8  # a new SSRC restarts the jitter buffer
        packet = RtpPacket(payload_type, index, 160 * index, ssrc, payload, marker=index == 0)
        stream.append((packet.serialize(), CALLER))
        if index == 15:
            stream.append((packet.serialize(), INTRUDER))  # dropped: not the latched source
        if index == 16:
            stream.append((packet.serialize(), CALLER))  # a duplicate, already played
        if index == 18:
            wrong_type = RtpPacket(18, index, 160 * index, ssrc, payload)
            stream.append((wrong_type.serialize(), CALLER))
        if index == 19:
            # A marker bit on payload type 72 reads as RTCP (second byte 200).
            stream.append((RtpPacket(72, index, 0, ssrc, payload, marker=True).serialize(), CALLER))
        if index == 20:
            stream.append((b"\x80\x00", CALLER))  # header only, malformed
        if index == 22:
            padded = RtpPacket(payload_type, 200, 160 * 22, ssrc, payload, padding_size=4)
            stream.append((padded.serialize(), CALLER))  # not a plain header: full parser
        if index == 30:
            late = RtpPacket(payload_type, index - 10, 160 * (index - 10), ssrc, payload)
            stream.append((late.serialize(), CALLER))
    return stream


async def receive_all(codec_name: str, *, fast_path: bool) -> tuple[RtpSession, list[bytes]]:
    config = RtpSessionConfig(codec_name=codec_name, payload_type=0 if codec_name == "PCMU" else 8)
    session = _ManualClockSession(config, call_id="receive-path", remote=("127.0.0.1", 39_998))
    session.connection_made(_NullTransport())  # type: ignore[arg-type]
    if not fast_path:
        session._core.g711_alaw = None  # every packet takes the full path
    # Arrival times 20 ms apart, the same in both runs, so the jitter estimates match.
    # Like the loop's clock, the time stays the same within one datagram's handling.
    # The core reads the loop's clock in seconds and truncates it to whole milliseconds.
    arrival_ms = 1000
    session._now_ms = lambda: arrival_ms  # type: ignore[method-assign]
    session._core.loop_time = lambda: (arrival_ms + 0.5) / 1000
    frames: list[bytes] = []
    for data, source in datagrams(codec_name):
        arrival_ms += 20
        session.datagram_received(data, source)
        popped = session.jitter.pop()
        if popped is not None:
            frames.append(popped[0])
    return session, frames


@pytest.mark.parametrize("codec_name", ["PCMU", "PCMA"])
async def test_fast_path_matches_full_path(codec_name: str) -> None:
    fast, fast_frames = await receive_all(codec_name, fast_path=True)
    full, full_frames = await receive_all(codec_name, fast_path=False)
    await asyncio.sleep(0)

    assert fast.latch_state is LatchState.LATCHED
    assert fast.remote == CALLER
    assert fast.stats == full.stats
    assert fast.stats.wrong_source == 1
    assert fast.stats.wrong_payload_type == 1
    assert fast.stats.rtcp_ignored == 1
    assert fast.stats.malformed == 1
    assert fast.jitter.stats == full.jitter.stats
    assert fast.jitter.stats.late == 3  # the duplicate, the padded copy and the late packet
    assert fast.reception.received == full.reception.received
    assert fast.reception.ssrc == full.reception.ssrc == 8
    assert fast_frames == full_frames
    assert len(fast_frames) > 20


async def test_empty_jitter_buffer_shared_until_audio() -> None:
    config = RtpSessionConfig()
    first = RtpSession(config, call_id="first", remote=CALLER)
    second = RtpSession(config, call_id="second", remote=CALLER)
    first.connection_made(_NullTransport())  # type: ignore[arg-type]
    shared = first.jitter
    assert second.jitter is shared

    payload = g711.ulaw_encode(tone_pcm(8000, 0.02, hz=700.0))
    for index in range(5):
        packet = RtpPacket(0, index, 160 * index, 7, payload)
        first.datagram_received(packet.serialize(), CALLER)

    assert first.jitter is not shared
    assert first.jitter.stats.received == 5
    assert first.jitter.pop() is not None
    assert second.jitter is shared
    assert shared.stats.received == 0
    assert shared.pop() is None
