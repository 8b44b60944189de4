"""One shared 20 ms timer per event loop for every RTP sender of the process.

Theory of operation. Each RTP session used to run its own task that slept
until its next 20 ms tick, so N calls woke the loop N times per 20 ms at N
different phases. The packet clock arms one loop timer per tick and calls
every member in turn, first to send and then to handle inbound audio, so the
packets of a tick leave in one burst. On a 2-core VM a lone loopback send
to another process cost 49-56 µs under cProfile against 5.8 µs per send in
a tight loop, most likely the kernel waking the receiver for each packet;
a burst wakes it about once per tick (docs/benchmarks.md).

Tick n is due at start + n x 20 ms on the loop's monotonic clock, so a late
wake-up never shifts later ticks. After a stall, the missed ticks run one
per loop iteration, so datagrams that queued during the stall are read
between them. Members receive the tick number and how late the tick runs,
and decide themselves whether to catch up or skip (`RtpSession` skips the
missed ticks after more than `max_lag_ms`).

Members may put their inbound frame of the tick into the clock's
`FrameBatch` instead of handling it at once. After the last member's
`clock_receive` the clock flushes the batch: the frames are analyzed in a few
numpy operations for all members together and then handed out in order.

A member may offer a `clock_core` (an `RtpSession`'s `SessionCore`). With
the C extension built, one C call (`_rtpcore.run_clock_tick`) runs the tick:
it calls each C core's send and receive halves directly, which is what the
member's `clock_send` and `clock_receive` would do, and calls the methods of
the other members.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Protocol

from media.frame_batch import FrameBatch
from media.native import rtpcore
from media.transport import FRAME_MS

logger = logging.getLogger("media.rtp")

LATE_TICK_S = 0.040


class ClockMember(Protocol):
    """A sender on the clock. Each tick calls `clock_send` of every member, then `clock_receive`."""

    def clock_send(self, tick: int, lag_s: float) -> None:
        """Send this tick's packet; `lag_s` is how late the tick runs, in seconds."""
        ...

    def clock_receive(self, tick: int) -> None:
        """Handle this tick's inbound frame, after every member has sent.

        A member may add the frame to the clock's `frames` batch, which the
        clock flushes after the last member's `clock_receive`.
        """
        ...


_clocks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, PacketClock] = (
    weakref.WeakKeyDictionary()
)
# The clock that `for_loop` returned last.
_last_clock: PacketClock | None = None


class PacketClock:
    """A 20 ms tick shared by the members of one event loop; it runs while it has members."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, interval_s: float = FRAME_MS / 1000
    ) -> None:
        self._loop = loop
        self.interval_s = interval_s
        # Each member with its `clock_core`, or None for a member without one.
        self._members: dict[int, tuple[ClockMember, object]] = {}
        self._next_key = 0
        self._start = 0.0
        self._tick = 0
        self._timer: asyncio.Handle | None = None
        self._running = False
        self.frames = FrameBatch()
        """Inbound frames that members add in `clock_receive`, analyzed and delivered after them."""
        self.late_ticks = 0
        """Ticks that ran more than `LATE_TICK_S` after they were due, since the clock began."""
        self.max_lag_s = 0.0

    @classmethod
    def for_loop(cls, loop: asyncio.AbstractEventLoop) -> PacketClock:
        """Return the clock of `loop`, creating it on first use."""
        global _last_clock
        clock = _last_clock
        if clock is not None and clock._loop is loop:
            # A process runs its calls on one loop, and this check spares the Python call
            # of `WeakKeyDictionary.get` per session.
            return clock
        clock = _clocks.get(loop)
        if clock is None:
            clock = _clocks[loop] = cls(loop)
        _last_clock = clock
        return clock

    @property
    def tick(self) -> int:
        """Number of the last tick that ran, counted from the start of the current run."""
        return self._tick

    @property
    def member_count(self) -> int:
        return len(self._members)

    def add(self, member: ClockMember) -> int:
        """Call `member` from the next tick on; returns the key that `remove` takes."""
        key = self._next_key
        self._next_key += 1
        self._members[key] = (member, getattr(member, "clock_core", None))
        if self._timer is None and not self._running:
            self._start = self._loop.time()
            self._tick = 0
            self._arm()
        return key

    def remove(self, key: int) -> None:
        """Stop calling the member added under `key`. Removing twice is harmless."""
        self._members.pop(key, None)
        if not self._members and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self) -> None:
        due = self._start + (self._tick + 1) * self.interval_s
        # A `when` in the past makes the timer run on the next loop iteration, after
        # pending I/O, which is what catching up after a stall needs.
        self._timer = self._loop.call_at(due, self._run)

    def _run(self) -> None:
        self._timer = None
        self._running = True
        self._tick += 1
        lag_s = self._loop.time() - (self._start + self._tick * self.interval_s)
        if lag_s > LATE_TICK_S:
            self.late_ticks += 1
        self.max_lag_s = max(self.max_lag_s, lag_s)
        tick = self._tick
        # Sending every packet first keeps the sends of a tick together, so a peer
        # process that sleeps between packets is woken about once per tick. A member
        # may remove itself or others while the tick runs.
        entries = tuple(self._members.values())
        if rtpcore is not None:
            rtpcore.run_clock_tick(entries, tick, lag_s, _log_member_error)
        else:
            for member, _ in entries:
                try:
                    member.clock_send(tick, lag_s)
                except Exception as exc:
                    _log_member_error(False, tick, exc)
            for member, _ in entries:
                try:
                    member.clock_receive(tick)
                except Exception as exc:
                    _log_member_error(True, tick, exc)
        self.frames.flush()
        self._running = False
        if self._members:
            self._arm()


def _log_member_error(receiving: bool, tick: int, error: Exception) -> None:
    if receiving:
        logger.error("packet clock member failed to receive on tick %d", tick, exc_info=error)
    else:
        logger.error("packet clock member failed to send on tick %d", tick, exc_info=error)
