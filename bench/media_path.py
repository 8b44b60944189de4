"""CPU per RTP packet of the media path's Python code alone, without sockets.

`bench/media_load.py` measures the whole server, kernel and event loop
included, and on a shared machine its numbers move by a third from run to
run. This script isolates the part that VoxGate's own code adds: N
`RtpSession` + `MediaLeg` pairs (the media server of `media_load.py`:
in-band DTMF, VAD endpointing at 300 ms end silence, recognizer disarmed)
on a transport that drops what is sent. Each tick it hands every session one
PCMU packet of the same speech pattern as `media_load.py` (stream i offset
by i x 7 frames) through `datagram_received`, and then runs one tick of the
shared packet clock by hand. It prints the process CPU time per packet,
counting one received and one sent packet per call and tick, as
`media_load.py` does.

The clock's private `_run` is called directly, a probe for this script
only, so that no timer or sleep enters the measurement.

In this tight loop the calls' objects and the interpreter's code stay in
the CPU caches. A server sleeps between ticks while other processes run,
so it meets them partly evicted. `--evict-mb N` writes one byte per
64-byte cache line of an N MiB buffer before each tick. Each repetition
also times the same writes alone and subtracts them. The result is the
path's cost with caches as cold as that buffer makes them, close to the
worst case for a server whose caches other processes share.

Usage:
    PYTHONPATH=. python bench/media_path.py --calls 50 --ticks 500 --repeat 5
    PYTHONPATH=. python bench/media_path.py --calls 50 --ticks 500 --repeat 5 --evict-mb 16
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from dataclasses import replace
from typing import Any

import uvloop

from bench.media_load import END_SILENCE_MS, STREAM_OFFSET_FRAMES, speech_payloads
from media.leg import LegConfig, MediaLeg
from media.packet_clock import PacketClock
from media.rtp import RtpPacket
from media.rtp_session import RtpSession, RtpSessionConfig

HOST = "127.0.0.1"
FIRST_PORT = 40_000


class _NullTransport:
    """A datagram transport that drops every packet sent to it."""

    def sendto(self, data: bytes, addr: Any = None) -> None:
        pass

    def close(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False


CACHE_LINE = 64


def evict_caches(buffer: bytearray) -> None:
    """Write one byte in each cache line of `buffer`."""
    buffer[::CACHE_LINE] = bytes(len(buffer) // CACHE_LINE)


async def measure(calls: int, ticks: int, evict: bytearray | None = None) -> float:
    """Return the CPU µs per packet of `ticks` ticks of `calls` calls.

    With `evict`, the caches are evicted before each tick (see `evict_caches`)
    and the time of the evictions alone is subtracted.
    """
    loop = asyncio.get_running_loop()
    payloads, _ = speech_payloads(1.0)
    leg_config = LegConfig()
    leg_config = replace(leg_config, vad=replace(leg_config.vad, stop_ms=END_SILENCE_MS))
    sessions = []
    legs = []
    addresses = [(HOST, FIRST_PORT + 2 * index) for index in range(calls)]
    for index, address in enumerate(addresses):
        session = RtpSession(RtpSessionConfig(), call_id=f"path-{index}", remote=address)
        session.connection_made(_NullTransport())  # type: ignore[arg-type]
        legs.append(MediaLeg(session, call_id=f"path-{index}", config=leg_config))
        sessions.append(session)
    clock = PacketClock.for_loop(loop)
    packets = [
        [
            RtpPacket(
                0,
                tick & 0xFFFF,
                (160 * tick) & 0xFFFFFFFF,
                index + 1,
                payloads[(tick + index * STREAM_OFFSET_FRAMES) % len(payloads)],
            ).serialize()
            for index in range(calls)
        ]
        for tick in range(ticks)
    ]
    evict_s = 0.0
    if evict is not None:
        start = time.process_time()
        for _ in range(ticks):
            evict_caches(evict)
        evict_s = time.process_time() - start
    try:
        start = time.process_time()
        for row in packets:
            if evict is not None:
                evict_caches(evict)
            for session, data, address in zip(sessions, row, addresses, strict=True):
                session.datagram_received(data, address)
            _stop_timer(clock)
            clock._run()
        elapsed = time.process_time() - start - evict_s
    finally:
        # The sessions are dropped with the loop: closing them would wait for socket
        # close events that the null transport never sends.
        _stop_timer(clock)
    return 1e6 * elapsed / (2 * calls * ticks)


def _stop_timer(clock: PacketClock) -> None:
    # The clock re-arms itself after each tick; this script runs the ticks itself.
    timer = clock._timer
    if timer is not None:
        timer.cancel()
        clock._timer = None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--calls", type=int, default=50, help="concurrent calls (1-400)")
    parser.add_argument("--ticks", type=int, default=500, help="20 ms ticks per repetition")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions; the median is printed")
    parser.add_argument(
        "--evict-mb",
        type=int,
        default=0,
        help="MiB written before each tick to evict the CPU caches (0-256; 0 runs warm)",
    )
    args = parser.parse_args()
    if not 1 <= args.calls <= 400 or not 1 <= args.ticks <= 10_000 or not 1 <= args.repeat <= 50:
        parser.error("--calls must be 1-400, --ticks 1-10000 and --repeat 1-50")
    if not 0 <= args.evict_mb <= 256:
        parser.error("--evict-mb must be 0-256")
    evict = bytearray(args.evict_mb << 20) if args.evict_mb else None
    results = [uvloop.run(measure(args.calls, args.ticks, evict)) for _ in range(args.repeat)]
    print("µs/packet per repetition: " + ", ".join(f"{value:.2f}" for value in results))
    print(f"median µs/packet: {statistics.median(results):.2f}")


if __name__ == "__main__":
    main()
