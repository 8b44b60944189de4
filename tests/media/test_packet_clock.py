"""The shared packet clock and a prompt's first frame sent without waiting for it."""

from __future__ import annotations

import asyncio
import itertools
import socket
from dataclasses import dataclass, field

import pytest

from media import packet_clock
from media.audio import PcmAudio
from media.leg import MediaLeg
from media.packet_clock import PacketClock
from media.rtp import RtpPacket
from media.rtp_session import RtpPortPool, RtpSession, RtpSessionConfig
from tests.media.conftest import LOOPBACK, tone_pcm, wait_for


@dataclass
class Member:
    name: str
    calls: list[tuple[str, str, int]] = field(default_factory=list)

    def clock_send(self, tick: int, lag_s: float) -> None:
        self.calls.append(("send", self.name, tick))

    def clock_receive(self, tick: int) -> None:
        self.calls.append(("receive", self.name, tick))


async def test_clock_sends_all_before_receiving() -> None:
    clock = PacketClock(asyncio.get_running_loop())
    log: list[tuple[str, str, int]] = []
    first, second = Member("first", log), Member("second", log)
    keys = [clock.add(first), clock.add(second)]
    await wait_for(lambda: clock.tick >= 3)
    for key in keys:
        clock.remove(key)

    first_tick = [call for call in log if call[2] == 1]
    assert first_tick == [
        ("send", "first", 1),
        ("send", "second", 1),
        ("receive", "first", 1),
        ("receive", "second", 1),
    ]
    sends = [tick for kind, name, tick in log if kind == "send" and name == "first"]
    assert sends == list(range(1, len(sends) + 1))


@dataclass
class FailingMember(Member):
    def clock_send(self, tick: int, lag_s: float) -> None:
        super().clock_send(tick, lag_s)
        raise RuntimeError("send failed on request")

    def clock_receive(self, tick: int) -> None:
        super().clock_receive(tick)
        raise RuntimeError("receive failed on request")


@pytest.mark.parametrize("c_loop", [True, False], ids=["c-loop", "python-loop"])
async def test_clock_logs_member_errors_and_goes_on(
    c_loop: bool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    if not c_loop:
        monkeypatch.setattr(packet_clock, "rtpcore", None)
    clock = PacketClock(asyncio.get_running_loop())
    log: list[tuple[str, str, int]] = []
    failing, healthy = FailingMember("failing", log), Member("healthy", log)
    keys = [clock.add(failing), clock.add(healthy)]
    await wait_for(lambda: clock.tick >= 2)
    for key in keys:
        clock.remove(key)

    assert [call for call in log if call[2] == 1] == [
        ("send", "failing", 1),
        ("send", "healthy", 1),
        ("receive", "failing", 1),
        ("receive", "healthy", 1),
    ]
    messages = [record.getMessage() for record in caplog.records]
    assert "packet clock member failed to send on tick 1" in messages
    assert "packet clock member failed to receive on tick 1" in messages
    errors = [record.exc_info[1] for record in caplog.records if record.exc_info]
    assert any(str(error) == "send failed on request" for error in errors)


async def test_clock_stops_without_members() -> None:
    clock = PacketClock(asyncio.get_running_loop())
    member = Member("only")
    key = clock.add(member)
    await wait_for(lambda: clock.tick >= 1)
    clock.remove(key)
    clock.remove(key)
    ticks = clock.tick
    await asyncio.sleep(0.1)
    assert clock.member_count == 0
    assert clock.tick == ticks


async def test_clock_is_shared_per_loop() -> None:
    loop = asyncio.get_running_loop()
    assert PacketClock.for_loop(loop) is PacketClock.for_loop(loop)


async def test_clock_differs_between_loops() -> None:
    running = asyncio.get_running_loop()
    other = asyncio.new_event_loop()
    try:
        running_clock = PacketClock.for_loop(running)
        other_clock = PacketClock.for_loop(other)

        assert other_clock is not running_clock
        assert PacketClock.for_loop(running) is running_clock
        assert PacketClock.for_loop(other) is other_clock
    finally:
        other.close()


async def test_prompt_first_frame_sent_at_once(port_pool: RtpPortPool) -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind((LOOPBACK, 0))
    receiver.setblocking(False)
    config = RtpSessionConfig(send_silence_when_idle=False)
    session = await RtpSession.open_from_pool(
        port_pool, config, local_host=LOOPBACK, remote=receiver.getsockname()
    )
    leg = MediaLeg(session, call_id="kick")
    loop = asyncio.get_running_loop()
    packets: list[RtpPacket] = []
    try:
        play = asyncio.ensure_future(leg.play(PcmAudio(tone_pcm(8000, 0.1), 8000)))
        await asyncio.sleep(0)  # play() runs up to its first await
        # A tick in between sends nothing either: before play() nothing was playing,
        # and after it the tick's frame has already left.
        assert session.stats.packets_sent == 1
        async with asyncio.timeout(10):
            while len(packets) < 5:
                packets.append(RtpPacket.parse(await loop.sock_recv(receiver, 2048)))
        assert await asyncio.wait_for(play, 10) is None
    finally:
        await leg.close()
        receiver.close()

    assert packets[0].marker
    for earlier, later in itertools.pairwise(packets):
        assert (later.sequence_number - earlier.sequence_number) % 65536 == 1
        assert (later.timestamp - earlier.timestamp) % 2**32 == 160
