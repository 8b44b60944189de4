"""The hot path of one RTP session: G.711 receive, sender state, idle send, frame hand-off.

Theory of operation. Every 20 ms tick the packet clock calls each session's
send half and then its receive half. Most ticks of a call are alike. No
digit is sent or received, and no RTCP report or activity check is due.
The leg is idle, so the tick sends the cached G.711 silence packet, and one
inbound frame goes to the leg's C receiver. A session core contains the state that such
ticks read and write: the RTP sequence number, timestamp and marker bit,
the octets sent, the tick up to which late ticks are skipped, and the
deadlines of the next RTCP report and activity check. The core runs such a
tick alone. For any other tick it calls the session's Python methods
`_python_send_tick` and `_python_receive_tick`, which read and write the
same state through the core. The session sets the flags that route a tick
to Python (`python_due`, `watching`) whenever the state behind them changes.

The core also receives the session's datagrams (`datagram_received`). A
plain G.711 packet of the latched stream, from the latched source with the
audio payload type and the current SSRC, goes into the jitter buffer and
the RTCP reception statistics in one call. The core hands any other
datagram to the session's `_receive_datagram`, through a weak reference so
that session and core form no reference cycle.

`PythonSessionCore` below is the reference. `media/_rtpcore.c` implements
the same contract in C, and `SessionCore` is that version when the extension
is built. The packet clock then runs the C cores of a tick in one C loop
(`_rtpcore.run_clock_tick`) without a Python frame per session.
`tests/fuzz/test_session_core.py` drives a session on each core through the
same random ticks and compares packets, sequence numbers, timestamps,
markers and counters.
"""

from __future__ import annotations

import time
import weakref
from typing import TYPE_CHECKING, Any, Protocol

from media import native
from media.rtp import build_plain_packet

MAX_DATAGRAM = 2048
"""The largest datagram an RTP session takes; larger ones count as malformed."""


class TickSession(Protocol):
    """The session methods that a core calls for the ticks it does not finish alone."""

    def _python_send_tick(self, tick: int) -> None:
        """Run the send half of a tick after the lag check, in Python."""
        ...

    def _python_receive_tick(self) -> None:
        """Pop the tick's inbound frame and hand it to the handler, in Python."""
        ...

    def _log_tick_error(self, receiving: bool, error: Exception) -> None:
        """Log an exception raised by the core's own send or frame hand-off."""
        ...

    def _receive_datagram(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        """Take a datagram that the core's G.711 shortcut does not take."""
        ...


class StatsCounters(Protocol):
    """The counters of `media.rtp_session.RtpStats` that a core updates."""

    packets_received: int
    packets_sent: int
    ticks_skipped: int


class PythonSessionCore:
    """The per-tick state and work of one RTP session, in Python (the reference)."""

    __slots__ = (
        "audio_ssrc",
        "closed",
        "frame_ms",
        "frame_receiver",
        "g711_alaw",
        "idle_handler",
        "jitter",
        "latched",
        "loop_time",
        "marker_next",
        "max_lag_ms",
        "next_activity_tick",
        "next_rtcp_s",
        "octets_sent",
        "payload_type",
        "python_due",
        "receive_due",
        "reception",
        "remote",
        "sequence",
        "session_ref",
        "silence",
        "skip_through_tick",
        "ssrc",
        "stats",
        "timestamp",
        "timestamp_step",
        "transport",
        "watching",
    )

    def __init__(
        self,
        ssrc: int,
        sequence: int,
        timestamp: int,
        timestamp_step: int,
        payload_type: int,
        max_lag_ms: int,
        frame_ms: int,
        stats: StatsCounters,
        silence: bytes | None,
    ) -> None:
        self.ssrc = ssrc
        self.sequence = sequence
        self.timestamp = timestamp
        self.timestamp_step = timestamp_step
        self.payload_type = payload_type
        self.max_lag_ms = max_lag_ms
        self.frame_ms = frame_ms
        self.stats = stats
        self.silence = silence
        """The encoded silence payload that `send_idle` sends, or None."""

        self.marker_next = True
        self.octets_sent = 0
        self.skip_through_tick = -1
        self.next_rtcp_s = 0.0
        """When the next RTCP report is due, on the `time.monotonic` clock."""
        self.next_activity_tick = 0
        self.watching = False
        """Whether the session watches the peer's media timeout."""
        self.python_due = False
        """Whether the send half needs Python: a digit queued, being sent or received, its
        gap, or a frame sent early."""
        self.receive_due = False
        self.closed = False

        self.transport: Any = None
        self.remote: Any = None
        self.idle_handler: Any = None
        """The handler whose `outbound_idle` lets an idle tick send silence, or None."""
        self.jitter: Any = None
        self.frame_receiver: Any = None
        """The handler's C frame receiver once the session has read it, else None."""

        self.g711_alaw: bool | None = None
        """True for A-law, False for u-law, None for a codec without the receive shortcut."""
        self.audio_ssrc: int | None = None
        """SSRC of the audio stream that the jitter buffer holds, or None."""
        self.latched = False
        self.reception: Any = None
        self.loop_time: Any = None
        """The event loop's `time`, or None before the session has a loop."""
        self.session_ref: weakref.ref[Any] | None = None

    def send(self, payload_type: int, payload: bytes, timestamp: int, marker: bool) -> None:
        """Send one packet on the session's stream; nothing while closed or without a peer."""
        transport = self.transport
        remote = self.remote
        if transport is None or remote is None or self.closed or not payload:
            return
        second = payload_type | 0x80 if marker or self.marker_next else payload_type
        packet = build_plain_packet(second, self.sequence, timestamp, self.ssrc, payload)
        self.marker_next = False
        self.sequence = (self.sequence + 1) & 0xFFFF
        transport.sendto(packet, remote)
        self.stats.packets_sent += 1
        self.octets_sent += len(payload)

    def send_idle(self) -> None:
        """Send the silence packet of an idle tick and advance the timestamp by one frame."""
        silence = self.silence
        if silence:
            self.send(self.payload_type, silence, self.timestamp, False)
        self.timestamp = (self.timestamp + self.timestamp_step) & 0xFFFFFFFF

    def clock_send(self, session: TickSession, tick: int, lag_s: float) -> None:
        """Run the send half of one tick, or hand it to `session._python_send_tick`.

        After a tick more than `max_lag_ms` late, the missed ticks are
        skipped and the timestamp advances over them.
        """
        if tick <= self.skip_through_tick:
            return
        if lag_s * 1000 > self.max_lag_ms:
            missed = int(lag_s * 1000) // self.frame_ms
            self.skip_through_tick = tick + missed
            self.timestamp = (self.timestamp + missed * self.timestamp_step) & 0xFFFFFFFF
            self.stats.ticks_skipped += missed
            self.marker_next = True
        self.receive_due = True
        idle_handler = self.idle_handler
        if (
            self.python_due
            or (self.watching and tick >= self.next_activity_tick)
            or time.monotonic() >= self.next_rtcp_s
            or idle_handler is None
        ):
            session._python_send_tick(tick)
            return
        try:
            idle = idle_handler.outbound_idle
            if idle:
                self.send_idle()
        except Exception as exc:
            session._log_tick_error(False, exc)
            return
        if not idle:
            session._python_send_tick(tick)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        """Take a plain G.711 packet of the latched stream, or hand the datagram to the session."""
        g711_alaw = self.g711_alaw
        audio_ssrc = self.audio_ssrc
        loop_time = self.loop_time
        if (
            addr == self.remote
            and g711_alaw is not None
            and audio_ssrc is not None
            and len(data) <= MAX_DATAGRAM
            and self.latched
            and loop_time is not None
            and self.jitter.receive_rtp_g711(
                data,
                self.payload_type,
                audio_ssrc,
                g711_alaw,
                int(loop_time() * 1000),
                self.reception,
            )
        ):
            self.stats.packets_received += 1
            return
        session = self.session_ref() if self.session_ref is not None else None
        if session is not None:
            session._receive_datagram(data, addr)

    def clock_receive(self, session: TickSession) -> None:
        """Hand the tick's inbound frame to `frame_receiver`, or leave it to the session."""
        if not self.receive_due:
            return
        self.receive_due = False
        receiver = self.frame_receiver
        if receiver is None:
            session._python_receive_tick()
            return
        inbound = self.jitter.pop()
        if inbound is None:
            return
        try:
            receiver(inbound[0], None)
        except Exception as exc:
            session._log_tick_error(True, exc)


NATIVE = False
"""Whether `SessionCore` is the C implementation."""

if TYPE_CHECKING or native.rtpcore is None:
    SessionCore = PythonSessionCore
else:
    SessionCore = native.rtpcore.SessionCore
    NATIVE = True
