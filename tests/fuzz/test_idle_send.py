"""The idle-tick shortcut of `RtpSession.clock_send` sends what the Python path sends.

While its `MediaLeg` sets `outbound_idle` and no RFC 4733 digit is pending,
a G.711 session's core sends its silence packet (`SessionCore.send_idle`)
instead of `_send_outbound` and `MediaLeg.next_frame`. Two sessions with the
same SSRC, first sequence number and first timestamp run the same random
program of ticks, late ticks, prompts, early first frames, digits, outbound
sources and outbound taps: one with the shortcut, one without it. Every
packet on the wire, every outbound tap call and the sender counters must be
equal, and the shortcut's ticks are those on which only the reference
called `next_frame`.
"""

from __future__ import annotations

import asyncio
import math
import random
from typing import Any

import pytest

from media.audio import PcmAudio
from media.leg import MediaLeg
from media.rtp_session import RtpSession, RtpSessionConfig
from tests.fuzz.mutate import SEED
from tests.fuzz.outbound import OutboundActions, core_arguments

TICKS = 400
RUNS = 12


class _CaptureTransport:
    """A datagram transport that stores what is sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def sendto(self, data: bytes, address: Any = None) -> None:
        self.sent.append((bytes(data), address))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "sockname" else default

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


class _Side:
    """One session and leg of the comparison, with its captured packets and tap calls."""

    def __init__(self, config: RtpSessionConfig, shortcut: bool) -> None:
        self.session = RtpSession(config, call_id="idle-fuzz", remote=("127.0.0.1", 40002))
        self.transport = _CaptureTransport()
        self.session.connection_made(self.transport)  # type: ignore[arg-type]
        self.leg = MediaLeg(self.session, call_id="idle-fuzz")
        clock = self.session._clock
        assert clock is not None and self.session._clock_key is not None
        # The test runs the ticks itself; the clock's timer would add ticks at wall-clock times.
        clock.remove(self.session._clock_key)
        # RTCP goes out on wall-clock time, so it stays off in both sides.
        self.session._core.next_rtcp_s = math.inf
        if not shortcut:
            self.session._core.idle_handler = None
        self.next_frame_calls = 0
        self.tapped: list[bytes | None] = []
        self.prompts: list[asyncio.Task[Any]] = []
        original = self.leg.next_frame

        def counting_next_frame() -> PcmAudio | None:
            self.next_frame_calls += 1
            return original()

        self.leg.next_frame = counting_next_frame  # type: ignore[method-assign]

    def tap(self, frame: PcmAudio | None) -> None:
        self.tapped.append(frame.pcm if frame is not None else None)


async def _compare(seed: int, codec: str, payload_type: int) -> tuple[int, int]:
    rng = random.Random(seed)
    config = RtpSessionConfig(codec_name=codec, payload_type=payload_type, max_lag_ms=100)
    subject = _Side(config, shortcut=True)
    reference = _Side(config, shortcut=False)
    # The SSRC is fixed at the core's creation, so the reference gets a new core.
    core = subject.session._core
    replaced = reference.session._core
    reference.session._ssrc = subject.session._ssrc
    reference.session._core = reference.session.clock_core = type(core)(
        *core_arguments(core, reference.session.stats)
    )
    for name in (
        "transport",
        "remote",
        "jitter",
        "next_rtcp_s",
        "reception",
        "g711_alaw",
        "loop_time",
        "session_ref",
    ):
        setattr(reference.session._core, name, getattr(replaced, name))
    reference.session.datagram_received = reference.session._core.datagram_received  # type: ignore[method-assign]

    sides = (subject, reference)
    outbound = OutboundActions(rng, sides)

    for tick in range(1, TICKS + 1):
        await outbound.apply(rng.random())

        lag_s = 0.0
        if rng.random() < 0.02:
            lag_s = rng.choice((0.05, 0.15, 0.25))
        for side in sides:
            side.session.clock_send(tick, lag_s)
            side.session.clock_receive(tick)
        # Let finished prompts return and clear the leg's playback.
        await asyncio.sleep(0)
        assert subject.transport.sent == reference.transport.sent, f"tick {tick}"

    assert subject.tapped == reference.tapped
    assert subject.session.stats.packets_sent == reference.session.stats.packets_sent
    assert subject.session._core.octets_sent == reference.session._core.octets_sent
    assert subject.session._core.timestamp == reference.session._core.timestamp
    assert subject.session._core.sequence == reference.session._core.sequence

    for side in sides:
        for prompt in side.prompts:
            prompt.cancel()
        await asyncio.gather(*side.prompts, return_exceptions=True)
    return reference.next_frame_calls - subject.next_frame_calls, len(subject.transport.sent)


@pytest.mark.parametrize(("codec", "payload_type"), [("PCMU", 0), ("PCMA", 8)])
def test_idle_shortcut_matches_python(codec: str, payload_type: int) -> None:
    for run in range(RUNS):
        shortcut_ticks, sent = asyncio.run(_compare(SEED + run, codec, payload_type))
        assert sent > 0
        assert shortcut_ticks > TICKS // 10, f"run {run}: the shortcut sent {shortcut_ticks}"


def test_idle_shortcut_off_for_g722() -> None:
    """G.722 keeps encoder state, so its idle ticks take the Python path."""
    shortcut_ticks, sent = asyncio.run(_compare(SEED, "G722", 9))
    assert sent > 0
    assert shortcut_ticks == 0
