"""Adaptive jitter buffer with packet loss concealment (pure, driven by a 20 ms clock).

Theory of operation. Packets go in with their RTP timestamp and arrival
time; once every 20 ms the owner pops exactly one frame. Positions are in
samples on an unwrapped timestamp axis, so any packet size (10, 20, 30 ms)
and reordering work. The buffer holds back playout until it contains
`target_ms` of audio. The target follows the interarrival jitter estimate of
RFC 3550 section 6.4.1: target = frame + `jitter_factor` x jitter, within
[min_delay_ms, max_delay_ms].

Each pop falls in one of these cases:
- the audio at the playout position is there: play it;
- it is missing but later audio is there: the packet is lost, so conceal it
  (repeat the last frame, halving its level each time; silence after
  `max_conceal_frames`) and move on;
- nothing at or after the position has arrived yet: the buffer has run dry
  (late packets, or a sender whose clock runs slow), so conceal but hold the
  position, which adds 20 ms of delay;
- the depth is more than a frame below target (the jitter estimate grew):
  hold the position the same way, at most once every 5 frames, and only
  after a quiet frame, so speech is not stretched;
- the depth stayed above target + one frame for a whole second (a sender
  whose clock runs fast, or a jitter spike that has passed): drop quiet
  frames, at most one in 5, until the depth is back at target + one frame.
  Each drop removes 20 ms of delay. Above `max_delay_ms` a frame is dropped
  even in speech.
A jump of more than `resync_ms` (a sender that paused, or a new timestamp
base) restarts playout at the new position.

Two implementations share this contract. `PythonJitterBuffer` below is the
reference. `media/_rtpcore.c` implements the same steps in C, and
`JitterBuffer` is that C version when the extension is built (`make
install` builds it), else the Python one. `tests/fuzz/test_rtpcore.py`
drives both with the same random streams and compares every frame and
counter. The C version does not log resynchronizations, which
`stats.resyncs` counts.
"""

from __future__ import annotations

import enum
import logging
import struct
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from media import g711, native
from media.rtp import timestamp_delta

logger = logging.getLogger("media.jitter")

_Samples = npt.NDArray[np.int16]
_STRETCH_SPACING_FRAMES = 5
_QUIET_LEVEL = 330.0  # RMS of about -40 dBFS: below this a frame counts as a pause
_PLAIN_FIRST_BYTE = 0x80  # RTP version 2, no padding, no extension, no CSRC
_PLAIN_HEADER = struct.Struct("!BHII")  # the RTP header after its first byte
_RTCP_PACKET_TYPES = range(200, 205)


class ReceptionUpdater(Protocol):
    """The per-packet half of the RTCP reception statistics (`media.rtcp.ReceptionStatistics`)."""

    def update(self, ssrc: int, sequence: int, timestamp: int, arrival_s: float) -> None: ...


def _is_quiet(samples: _Samples) -> bool:
    if samples.size == 0:
        return True
    values = samples.astype(np.float64)
    return float(np.sqrt(np.mean(values * values))) < _QUIET_LEVEL


@dataclass(frozen=True, slots=True)
class JitterConfig:
    """Delay bounds and adaptation settings, in milliseconds where named so.

    `min_delay_ms` 20 starts playout with one packet buffered, so on a clean
    path the buffer adds only the wait for the next 20 ms tick. Every 20 ms
    of minimum delay also delays the detected end of each caller utterance
    by 20 ms. The target grows with the measured jitter, and an underrun
    adds one frame of delay. Packets longer than a frame raise the minimum
    to their length rounded up to whole frames (40 ms for 30 ms packets).
    """

    min_delay_ms: int = 20
    max_delay_ms: int = 300
    jitter_factor: float = 3.0
    max_conceal_frames: int = 5
    resync_ms: int = 1000
    drop_window_frames: int = 50
    max_packets: int = 200


class FrameKind(enum.Enum):
    AUDIO = "audio"
    CONCEALED = "concealed"
    UNDERRUN = "underrun"


@dataclass(slots=True)
class JitterStats:
    """Counters since the stream began."""

    received: int = 0
    late: int = 0
    duplicates: int = 0
    played: int = 0
    concealed: int = 0
    underruns: int = 0
    dropped_for_delay: int = 0
    stretched: int = 0
    resyncs: int = 0
    overflow: int = 0
    jitter_ms: float = 0.0


class PythonJitterBuffer:
    """Reorder and pace decoded audio of one RTP stream.

    `clock_rate` is the RTP timestamp rate and `sample_rate` the rate of the
    decoded samples (they differ for G.722). Times are milliseconds.
    """

    def __init__(
        self,
        sample_rate: int,
        clock_rate: int,
        *,
        frame_ms: int = 20,
        config: JitterConfig | None = None,
    ) -> None:
        self.config = config or JitterConfig()
        self.sample_rate = sample_rate
        self.clock_rate = clock_rate
        self.frame_ms = frame_ms
        self.frame_samples = sample_rate * frame_ms // 1000
        self.stats = JitterStats()
        self._packets: dict[int, _Samples] = {}
        self._base_timestamp: int | None = None
        self._last_extended = 0
        self._last_timestamp = 0
        self._play_position: int | None = None
        self._playing = False
        self._last_frame: _Samples | None = None
        self._conceal_run = 0
        # The least depth over the current window of `drop_window_frames` pops.
        self._window_min_depth = 0
        self._window_frames = 0
        self._last_transit: float | None = None
        self._jitter_units = 0.0
        self._since_stretch = 0
        self._since_drop = 0
        self._draining = False
        self._end = 0
        self._packet_ms = 0

    # -- input -------------------------------------------------------------

    def push(self, timestamp: int, pcm: bytes, arrival_ms: float) -> None:
        """Add one packet's decoded s16le samples."""
        # A read-only view, never written.
        self.push_samples(timestamp, np.frombuffer(pcm, dtype="<i2"), arrival_ms)

    def push_rtp_g711(
        self, data: bytes, payload_type: int, ssrc: int | None, alaw: bool, arrival_ms: float
    ) -> tuple[int, int] | None:
        """Add a plain G.711 RTP packet with `payload_type` and `ssrc`.

        Returns (sequence number, timestamp) when the packet went in, or
        None, without any change, when the packet is not a plain RTP packet
        (version 2, no padding, extension or CSRC, non-empty payload) with
        that payload type and SSRC, so that the caller takes its full path.
        """
        if ssrc is None or len(data) <= 12 or data[0] != _PLAIN_FIRST_BYTE:
            return None
        second, sequence, timestamp, packet_ssrc = _PLAIN_HEADER.unpack_from(data, 1)
        if second & 0x7F != payload_type or second in _RTCP_PACKET_TYPES or packet_ssrc != ssrc:
            return None
        decode = g711.alaw_decode_samples if alaw else g711.ulaw_decode_samples
        self.push_samples(timestamp, decode(data[12:]), arrival_ms)
        return sequence, timestamp

    def receive_rtp_g711(
        self,
        data: bytes,
        payload_type: int,
        ssrc: int | None,
        alaw: bool,
        arrival_ms: float,
        reception: ReceptionUpdater,
        arrival_s: float | None = None,
    ) -> bool:
        """Run `push_rtp_g711` and, for a packet that went in, `reception.update`.

        The update gets `arrival_s`, or the wall clock (`time.time()`) after the
        push when it is None. Returns whether the packet went in.
        """
        pushed = self.push_rtp_g711(data, payload_type, ssrc, alaw, arrival_ms)
        if pushed is None or ssrc is None:
            return False
        if arrival_s is None:
            arrival_s = time.time()
        reception.update(ssrc, pushed[0], pushed[1], arrival_s)
        return True

    def push_samples(self, timestamp: int, samples: _Samples, arrival_ms: float) -> None:
        """Add one packet's decoded samples as an s16le array, which the buffer keeps unchanged."""
        size = samples.size
        if size == 0:
            return
        stats = self.stats
        stats.received += 1
        self._packet_ms = size * 1000 // self.sample_rate
        extended = self._extend(timestamp)
        position = extended * self.sample_rate // self.clock_rate
        resyncs = stats.resyncs
        self._check_resync(position, size)
        if stats.resyncs == resyncs:
            self._update_jitter(extended, arrival_ms)
        play_position = self._play_position
        if play_position is not None and position + size <= play_position:
            stats.late += 1
            return
        packets = self._packets
        if position in packets:
            stats.duplicates += 1
            return
        if len(packets) >= self.config.max_packets:
            stats.overflow += 1
            packets.pop(min(packets))
        packets[position] = samples
        # The packet that ends last is played last, so this stays the end of the
        # buffered audio for as long as any packet is buffered.
        if position + size > self._end:
            self._end = position + size
        if play_position is None:
            self._play_position = position

    def _check_resync(self, position: int, size: int) -> None:
        if self._play_position is not None:
            if position + size <= self._play_position:
                if self._play_position - position > self._ms_to_samples(self.config.resync_ms):
                    self._resync(position)
            elif position - self._play_position > self._ms_to_samples(
                self.config.resync_ms + self.config.max_delay_ms
            ):
                self._resync(position)

    def _extend(self, timestamp: int) -> int:
        """Return `timestamp` on the unwrapped axis that starts at the stream's first timestamp."""
        if self._base_timestamp is None:
            self._base_timestamp = timestamp
            self._last_timestamp = timestamp
            self._last_extended = 0
        extended = self._last_extended + timestamp_delta(timestamp, self._last_timestamp)
        if extended > self._last_extended:
            self._last_extended = extended
            self._last_timestamp = timestamp
        return extended

    def _update_jitter(self, extended: int, arrival_ms: float) -> None:
        # RFC 3550 section 6.4.1, with arrival converted to timestamp units.
        transit = arrival_ms * self.clock_rate / 1000 - extended
        if self._last_transit is not None:
            difference = abs(transit - self._last_transit)
            self._jitter_units += (difference - self._jitter_units) / 16
        self._last_transit = transit
        self.stats.jitter_ms = 1000 * self._jitter_units / self.clock_rate

    def _resync(self, position: int) -> None:
        self.stats.resyncs += 1
        logger.debug("jitter buffer resynchronized")
        self._packets.clear()
        self._end = 0
        self._play_position = position
        self._playing = False
        self._window_frames = 0
        self._last_transit = None

    # -- output ------------------------------------------------------------

    @property
    def played(self) -> int:
        """Frames played from received audio (`stats.played`)."""
        return self.stats.played

    @property
    def target_ms(self) -> int:
        config = self.config
        wanted = self.frame_ms + config.jitter_factor * self.stats.jitter_ms
        # Packets longer than a frame (30 ms ones, say) must be buffered whole frames
        # deep, else a pop between two arrivals finds only part of a frame.
        packet_floor = -(-self._packet_ms // self.frame_ms) * self.frame_ms
        floor = max(config.min_delay_ms, packet_floor)
        return int(min(config.max_delay_ms, max(floor, wanted)))

    @property
    def depth_ms(self) -> int:
        """Buffered audio from the playout position to the end of the newest packet."""
        if self._play_position is None or not self._packets:
            return 0
        return max(0, (self._end - self._play_position) * 1000 // self.sample_rate)

    def pop(self) -> tuple[bytes, FrameKind] | None:
        """Return the next 20 ms frame and how it was made, or None before playout starts."""
        if self._play_position is None:
            return None
        depth = self.depth_ms
        target = self.target_ms
        if not self._playing:
            if depth < target:
                return None
            self._playing = True

        self._since_stretch += 1
        if (
            depth < target - self.frame_ms
            and self._since_stretch >= _STRETCH_SPACING_FRAMES
            and self._last_frame_quiet()
        ):
            # Jitter grew: hold the position for one frame, during a pause, to deepen the buffer.
            self._since_stretch = 0
            self.stats.stretched += 1
            return self._conceal(), FrameKind.UNDERRUN
        if self._window_frames == 0 or depth < self._window_min_depth:
            self._window_min_depth = depth
        self._window_frames += 1
        if self._window_frames >= self.config.drop_window_frames:
            self._draining = self._window_min_depth > target + self.frame_ms
            self._window_frames = 0
        if self._draining and depth <= target + self.frame_ms:
            self._draining = False
        self._since_drop += 1
        drain_now = (
            self._draining
            and self._since_drop >= _STRETCH_SPACING_FRAMES
            and self._next_frame_quiet()
        )
        if drain_now or depth > self.config.max_delay_ms:
            dropped = self._packets.get(self._play_position)
            if dropped is not None and dropped.size <= self.frame_samples:
                del self._packets[self._play_position]
            self._play_position += self.frame_samples
            self.stats.dropped_for_delay += 1
            self._since_drop = 0

        start = self._play_position
        exact = self._packets.get(start)
        if exact is not None and exact.size == self.frame_samples:
            # The usual case: one whole packet per frame, in order.
            del self._packets[start]
            self._play_position = start + self.frame_samples
            self._last_frame = exact
            self._conceal_run = 0
            self.stats.played += 1
            return exact.tobytes(), FrameKind.AUDIO
        end = start + self.frame_samples
        frame = np.zeros(self.frame_samples, dtype=np.int16)
        filled = 0
        later_audio = False
        for position in sorted(self._packets):
            samples = self._packets[position]
            packet_end = position + samples.size
            if packet_end <= start:
                del self._packets[position]
                continue
            if position >= end:
                later_audio = True
                break
            overlap_start = max(start, position)
            overlap_end = min(end, packet_end)
            frame[overlap_start - start : overlap_end - start] = samples[
                overlap_start - position : overlap_end - position
            ]
            filled += overlap_end - overlap_start
            if packet_end <= end:
                del self._packets[position]

        if filled:
            self._play_position = end
            self._last_frame = frame
            self._conceal_run = 0
            self.stats.played += 1
            return frame.astype("<i2").tobytes(), FrameKind.AUDIO
        concealed = self._conceal()
        if later_audio:
            self._play_position = end
            self.stats.concealed += 1
            return concealed, FrameKind.CONCEALED
        self.stats.underruns += 1
        return concealed, FrameKind.UNDERRUN

    def _last_frame_quiet(self) -> bool:
        return self._last_frame is None or _is_quiet(self._last_frame)

    def _next_frame_quiet(self) -> bool:
        start = self._play_position
        assert start is not None
        for position in sorted(self._packets):
            samples = self._packets[position]
            if position <= start < position + samples.size:
                offset = start - position
                return _is_quiet(samples[offset : offset + self.frame_samples])
        return True

    def _conceal(self) -> bytes:
        self._conceal_run += 1
        last = self._last_frame
        if last is None or self._conceal_run > self.config.max_conceal_frames:
            return bytes(self.frame_samples * 2)
        faded = (last.astype(np.int32) >> self._conceal_run).astype("<i2")
        return faded.tobytes()

    def _ms_to_samples(self, ms: int) -> int:
        return self.sample_rate * ms // 1000


NATIVE = False
"""Whether `JitterBuffer` is the C implementation."""

if TYPE_CHECKING or native.rtpcore is None:
    JitterBuffer = PythonJitterBuffer
else:
    _rtpcore = native.rtpcore
    _rtpcore.configure(FrameKind.AUDIO, FrameKind.CONCEALED, FrameKind.UNDERRUN, JitterStats)
    NATIVE = True

    class JitterBuffer(_rtpcore.JitterCore):
        """The jitter buffer of `PythonJitterBuffer`, in C (`media/_rtpcore.c`)."""

        __slots__ = ()

        def __init__(
            self,
            sample_rate: int,
            clock_rate: int,
            *,
            frame_ms: int = 20,
            config: JitterConfig | None = None,
        ) -> None:
            super().__init__(sample_rate, clock_rate, frame_ms, config or JitterConfig())
