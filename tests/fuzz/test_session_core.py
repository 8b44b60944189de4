"""The C `SessionCore` runs an RTP session's ticks as `PythonSessionCore` does.

Two sessions with the same SSRC, first sequence number and first timestamp
run the same random program of ticks. The subject runs on the C core, and
its ticks go through the packet clock's C loop (`run_clock_tick`). The
reference runs on the Python core, and its ticks go through the session's
own `clock_send` and `clock_receive`.

The program's outbound side has idle ticks, late ticks that skip, prompts
with their early first frames, outbound sources (one of them raising),
outbound taps, RFC 4733 digits, RTCP reports that fall due and inactivity
checks. Its inbound side has G.711 audio with losses, SSRC changes,
duplicates, stray and malformed datagrams, RFC 4733 digits (some without
their end packets), new latches and a frame receiver that raises.
After every tick the RTP packets on the wire, the RTCP sender counters, the
frames and digits handed to the leg, and the tick errors logged must be
equal. At the end, so must the session counters and the cores' state.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import random
import weakref
from collections.abc import Callable
from typing import Any

import pytest

from ivr.channel import DtmfInput
from media import _rtpcore, rtcp
from media.audio import PcmAudio
from media.frame_batch import FrameFeatures
from media.leg import MediaLeg
from media.rfc4733 import TelephoneEvent
from media.rtp import RtpPacket
from media.rtp_session import RtpSession, RtpSessionConfig
from media.session_core import PythonSessionCore
from media.transport import FRAME_MS
from tests.fuzz.mutate import SEED
from tests.fuzz.outbound import OutboundActions, core_arguments

TICKS = 500
RUNS = 8
REMOTE = ("127.0.0.1", 40002)
INTRUDER = ("127.0.0.1", 40004)
EVENT_PAYLOAD_TYPE = 101


class _PatchableSession(RtpSession):
    """An `RtpSession` with an instance dict, so that a test can replace its methods."""


class _CaptureTransport:
    """A datagram transport that stores what is sent."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def sendto(self, data: bytes, address: Any = None) -> None:
        self.sent.append(bytes(data))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "sockname" else default

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


class _RecordingLeg(MediaLeg):
    """A leg that records the frames its C receiver gets and the digits it gets."""

    frames: list[bytes]
    digits: list[str]
    fail_next_frame: bool

    @property
    def frame_receiver(self) -> Callable[[bytes, FrameFeatures | None], None] | None:
        receiver = super().frame_receiver
        if receiver is None:
            return None

        def record(pcm: bytes, features: FrameFeatures | None) -> None:
            self.frames.append(pcm)
            if self.fail_next_frame:
                self.fail_next_frame = False
                raise RuntimeError("frame receiver failed on request")
            receiver(pcm, features)

        return record

    def on_dtmf(self, digit: DtmfInput) -> None:
        self.digits.append(digit.digit)
        super().on_dtmf(digit)


class _Side:
    """One session and leg of the comparison, with what they sent, received and logged."""

    def __init__(self, config: RtpSessionConfig, template: RtpSession | None) -> None:
        self.call_id = "subject" if template is None else "reference"
        self.session = _PatchableSession(config, call_id=self.call_id, remote=REMOTE)
        if template is not None:
            # The reference: a Python core with the subject's SSRC, sequence and timestamp.
            core = template._core
            self.session._ssrc = core.ssrc
            self.session._cname = template._cname
            python_core = PythonSessionCore(*core_arguments(core, self.session.stats))
            python_core.remote = REMOTE
            python_core.jitter = self.session.jitter
            python_core.reception = self.session.reception
            python_core.g711_alaw = core.g711_alaw
            python_core.session_ref = weakref.ref(self.session)
            self.session._core = self.session.clock_core = python_core
            self.session.datagram_received = python_core.datagram_received  # type: ignore[method-assign]
        self.native = template is None
        self.transport = _CaptureTransport()
        self.session.connection_made(self.transport)  # type: ignore[arg-type]
        self.media_ms = 0
        # Arrival times in media time, so that both jitter buffers see the same ones. The
        # core truncates the loop's time to whole milliseconds.
        self.session._now_ms = lambda: self.media_ms  # type: ignore[method-assign]
        self.session._core.loop_time = lambda: (self.media_ms + 0.5) / 1000
        self.leg = _RecordingLeg(self.session, call_id=self.call_id)
        self.leg.frames = []
        self.leg.digits = []
        self.leg.fail_next_frame = False
        clock = self.session._clock
        assert clock is not None and self.session._clock_key is not None
        # The test runs the ticks itself; the clock's timer would add ticks at wall-clock times.
        clock.remove(self.session._clock_key)
        # RTCP falls due only on the ticks the program picks, because its schedule runs on
        # wall-clock time.
        self.session._core.next_rtcp_s = math.inf
        self.python_ticks = 0
        self.next_frame_calls = 0
        self.errors: list[str] = []
        self.tapped: list[bytes | None] = []
        self.prompts: list[asyncio.Task[Any]] = []
        python_send_tick = self.session._python_send_tick
        next_frame = self.leg.next_frame

        def counting_python_send_tick(tick: int) -> None:
            self.python_ticks += 1
            python_send_tick(tick)

        def counting_next_frame() -> PcmAudio | None:
            self.next_frame_calls += 1
            return next_frame()

        self.session._python_send_tick = counting_python_send_tick  # type: ignore[method-assign]
        self.leg.next_frame = counting_next_frame  # type: ignore[method-assign]

    def run_tick(self, tick: int, lag_s: float) -> None:
        self.media_ms = tick * FRAME_MS
        if self.native:
            entry = (self.session, self.session.clock_core)
            _rtpcore.run_clock_tick((entry,), tick, lag_s, self.report)
        else:
            self.session.clock_send(tick, lag_s)
            self.session.clock_receive(tick)

    def report(self, receiving: bool, tick: int, error: Exception) -> None:
        self.errors.append(f"clock {receiving} {tick}: {error}")

    def note_log(self, record: logging.LogRecord) -> None:
        arguments = record.args
        if isinstance(arguments, tuple) and arguments and arguments[0] == self.call_id:
            assert record.exc_info is not None
            self.errors.append(f"{record.msg}: {record.exc_info[1]}")

    def tap(self, frame: PcmAudio | None) -> None:
        self.tapped.append(frame.pcm if frame is not None else None)

    def wire(self) -> list[tuple[Any, ...]]:
        """Return the packets sent, each RTCP packet reduced to its fields that wall time leaves."""
        packets: list[tuple[Any, ...]] = []
        for data in self.transport.sent:
            if 200 <= data[1] <= 204:
                packets.append(("rtcp", *_rtcp_fields(data)))
            else:
                packets.append(("rtp", data))
        return packets


def _rtcp_fields(data: bytes) -> list[tuple[Any, ...]]:
    fields: list[tuple[Any, ...]] = []
    for packet in rtcp.parse_compound(data):
        if isinstance(packet, rtcp.SenderReport):
            fields.append(
                (
                    "SR",
                    packet.ssrc,
                    packet.rtp_timestamp,
                    packet.packet_count,
                    packet.octet_count,
                    tuple((block.ssrc, block.highest_sequence) for block in packet.reports),
                )
            )
        elif isinstance(packet, rtcp.ReceiverReport):
            reports = tuple((block.ssrc, block.highest_sequence) for block in packet.reports)
            fields.append(("RR", packet.ssrc, reports))
        else:
            fields.append((type(packet).__name__, packet))
    return fields


class _ErrorLog(logging.Handler):
    """Hands each error record of the session logger to both sides."""

    def __init__(self, sides: tuple[_Side, ...]) -> None:
        super().__init__(logging.ERROR)
        self.sides = sides

    def emit(self, record: logging.LogRecord) -> None:
        for side in self.sides:
            side.note_log(record)


class _Peer:
    """The caller's stream: G.711 packets, RFC 4733 events, losses, SSRC changes and strays."""

    def __init__(self, rng: random.Random, payload_type: int, payload_bytes: int) -> None:
        self.rng = rng
        self.payload_type = payload_type
        self.payload_bytes = payload_bytes
        self.sequence = rng.getrandbits(16)
        self.timestamp = rng.getrandbits(32)
        self.ssrc = rng.getrandbits(32)
        self.event_packets: list[bytes] = []

    def start_event(self, timestamp_step: int) -> None:
        code = self.rng.randrange(16)
        steps = self.rng.randint(2, 8)
        payloads = [
            TelephoneEvent(code, False, 10, step * timestamp_step).serialize()
            for step in range(1, steps)
        ]
        if self.rng.random() < 0.8:
            end = TelephoneEvent(code, True, 10, steps * timestamp_step).serialize()
            payloads.extend([end] * 3)
        self.event_packets = [self._packet(EVENT_PAYLOAD_TYPE, payload) for payload in payloads]

    def next_packets(self, timestamp_step: int) -> list[tuple[bytes, tuple[str, int]]]:
        """Return this tick's datagrams and their sources, advancing the stream by one frame."""
        rng = self.rng
        packets: list[tuple[bytes, tuple[str, int]]] = []
        if rng.random() < 0.01:
            self.ssrc = rng.getrandbits(32)  # a new stream restarts the jitter buffer
        if self.event_packets:
            packets.append((self.event_packets.pop(0), REMOTE))
        elif rng.random() < 0.9:
            audio = self._packet(self.payload_type, rng.randbytes(self.payload_bytes))
            packets.append((audio, REMOTE))
            stray = rng.random()
            if stray < 0.02:
                packets.append((audio, INTRUDER))
            elif stray < 0.04:
                packets.append((audio, REMOTE))  # a duplicate
            elif stray < 0.05:
                packets.append((audio[:2], REMOTE))  # malformed
            elif stray < 0.06:
                packets.append((audio + bytes(2048), REMOTE))  # over the size limit
            elif stray < 0.07:
                packets.append((self._packet(18, audio[12:]), REMOTE))  # unnegotiated type
        self.sequence = (self.sequence + 1) & 0xFFFF
        if not self.event_packets:
            self.timestamp = (self.timestamp + timestamp_step) & 0xFFFFFFFF
        return packets

    def _packet(self, payload_type: int, payload: bytes) -> bytes:
        packet = RtpPacket(payload_type, self.sequence, self.timestamp, self.ssrc, payload)
        return packet.serialize()


async def _compare(seed: int, config: RtpSessionConfig) -> tuple[int, int]:
    """Run one program; return the subject's ticks not run in C (skipped or in Python) and its
    error count."""
    rng = random.Random(seed)
    subject = _Side(config, None)
    reference = _Side(config, subject.session)
    sides = (subject, reference)
    error_log = _ErrorLog(sides)
    logger = logging.getLogger("media.rtp")
    logger.addHandler(error_log)
    try:
        return await _run_program(rng, config, subject, reference)
    finally:
        logger.removeHandler(error_log)


async def _run_program(
    rng: random.Random, config: RtpSessionConfig, subject: _Side, reference: _Side
) -> tuple[int, int]:
    sides = (subject, reference)
    assert isinstance(subject.session._core, _rtpcore.SessionCore)
    assert isinstance(reference.session._core, PythonSessionCore)
    if rng.random() < 0.5:
        for side in sides:
            side.session.watch_inactivity(3600.0, 3600.0, lambda: None)

    step = subject.session._timestamp_step
    peer = _Peer(random.Random(rng.getrandbits(32)), config.payload_type, step)
    outbound = OutboundActions(rng, sides, failure_share=0.1, gap_share=0.25)

    for tick in range(1, TICKS + 1):
        action = rng.random()
        if not await outbound.apply(action):
            if action < 0.16 and not peer.event_packets:
                peer.start_event(step)
            elif action < 0.18:
                for side in sides:
                    side.leg.fail_next_frame = True
            elif action < 0.20:
                for side in sides:
                    side.session._core.next_rtcp_s = 0.0
            elif action < 0.21:
                # A re-INVITE: latch again, onto the same address or another one.
                remote = rng.choice((REMOTE, INTRUDER))
                for side in sides:
                    side.session.set_remote(remote)

        for data, source in peer.next_packets(step):
            for side in sides:
                side.session.datagram_received(data, source)

        lag_s = 0.0
        if rng.random() < 0.02:
            lag_s = rng.choice((0.05, 0.15, 0.25))
        for side in sides:
            side.run_tick(tick, lag_s)
            if side.session._core.next_rtcp_s < math.inf:
                # The report went out and the next one was scheduled on wall-clock time.
                side.session._core.next_rtcp_s = math.inf
        # Let finished prompts return and clear the leg's playback.
        await asyncio.sleep(0)
        assert subject.wire() == reference.wire(), f"tick {tick}"
        assert subject.leg.frames == reference.leg.frames, f"tick {tick}"
        assert subject.leg.digits == reference.leg.digits, f"tick {tick}"
        assert subject.errors == reference.errors, f"tick {tick}"
        assert subject.python_ticks == reference.python_ticks, f"tick {tick}"
        assert subject.session.latch_state is reference.session.latch_state, f"tick {tick}"
        assert subject.session.remote == reference.session.remote, f"tick {tick}"
        subject_stats = dataclasses.asdict(subject.session.stats)
        assert subject_stats == dataclasses.asdict(reference.session.stats), f"tick {tick}"

    assert subject.tapped == reference.tapped
    assert subject.next_frame_calls == reference.next_frame_calls
    assert dataclasses.asdict(subject.session.stats) == dataclasses.asdict(reference.session.stats)
    assert subject.session.jitter.stats == reference.session.jitter.stats
    assert subject.session.reception.received == reference.session.reception.received
    for name in (
        "audio_ssrc",
        "latched",
        "sequence",
        "timestamp",
        "marker_next",
        "octets_sent",
        "skip_through_tick",
        "next_activity_tick",
        "watching",
        "python_due",
        "receive_due",
    ):
        assert getattr(subject.session._core, name) == getattr(reference.session._core, name), name

    for side in sides:
        for prompt in side.prompts:
            prompt.cancel()
        await asyncio.gather(*side.prompts, return_exceptions=True)
    return subject.python_ticks + subject.session.stats.ticks_skipped, len(subject.errors)


CONFIGS = {
    "PCMU": RtpSessionConfig(codec_name="PCMU", payload_type=0, max_lag_ms=100, rtcp_mux=True),
    "PCMA": RtpSessionConfig(codec_name="PCMA", payload_type=8, max_lag_ms=100, rtcp_mux=True),
    "PCMU without idle silence": RtpSessionConfig(
        codec_name="PCMU",
        payload_type=0,
        max_lag_ms=100,
        rtcp_mux=True,
        send_silence_when_idle=False,
    ),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_session_core_matches_python(name: str) -> None:
    errors = 0
    for run in range(RUNS):
        not_in_c, run_errors = asyncio.run(_compare(SEED + run, CONFIGS[name]))
        errors += run_errors
        if CONFIGS[name].send_silence_when_idle:
            assert not_in_c < TICKS * 9 // 10, f"run {run}: {not_in_c} ticks not in C"
    assert errors > 0


def test_session_core_g722_ticks_in_python() -> None:
    """G.722 keeps encoder state, so the core hands every tick it does not skip to Python."""
    config = RtpSessionConfig(codec_name="G722", payload_type=9, max_lag_ms=100, rtcp_mux=True)
    not_in_c, _ = asyncio.run(_compare(SEED, config))
    assert not_in_c >= TICKS
