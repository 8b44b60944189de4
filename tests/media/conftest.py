from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
import uvloop

from ivr.channel import DtmfInput
from media.audio import PcmAudio
from media.rtp_session import RtpPortPool, RtpSession, RtpSessionConfig

LOOPBACK = "127.0.0.1"
# Test modules that run on both event loops, because their transports differ.
BOTH_LOOPS_MODULES = ("test_rtp_sockets.py",)


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Run the tests of BOTH_LOOPS_MODULES on asyncio's loop and on uvloop, which the node uses.

    The other tests keep asyncio's loop. pytest-asyncio requires a mapping for every test.
    """
    if item.path.name in BOTH_LOOPS_MODULES:
        return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}


@dataclass
class RecordingHandler:
    """A FrameHandler that keeps what it receives and sends nothing."""

    frames: list[PcmAudio] = field(default_factory=list)
    digits: list[DtmfInput] = field(default_factory=list)
    closed: bool = False
    outbound: list[PcmAudio] = field(default_factory=list)

    def on_audio_frame(self, frame: PcmAudio) -> None:
        self.frames.append(frame)

    def on_dtmf(self, digit: DtmfInput) -> None:
        self.digits.append(digit)

    def next_frame(self) -> PcmAudio | None:
        return self.outbound.pop(0) if self.outbound else None

    def on_transport_closed(self) -> None:
        self.closed = True


def tone_pcm(rate: int, seconds: float, hz: float = 440.0, amplitude: float = 8000.0) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()


def rms(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, "<i2").astype(float)
    return float(np.sqrt((samples**2).mean())) if samples.size else 0.0


async def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll `condition` on the loop until it holds; fail after `timeout_s`."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - the condition has no event to wait on
            await asyncio.sleep(0.01)


@pytest.fixture
def port_pool() -> RtpPortPool:
    # A random range per test keeps parallel test runs on one machine from colliding, and
    # ending below 32768 keeps it out of Linux's default range of ephemeral ports.
    low = 20000 + 2 * secrets.randbelow(5800)
    return RtpPortPool(low, low + 999)


SessionPair = tuple[RtpSession, RtpSession]


@pytest.fixture
async def session_pair(port_pool: RtpPortPool) -> AsyncIterator[SessionPair]:
    config = RtpSessionConfig()
    a = await RtpSession.open_from_pool(port_pool, config, local_host=LOOPBACK, call_id="a")
    b = await RtpSession.open_from_pool(
        port_pool, config, local_host=LOOPBACK, remote=a.local_address, call_id="b"
    )
    a.set_remote(b.local_address)
    yield a, b
    await a.close()
    await b.close()
