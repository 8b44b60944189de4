"""CPU cost per RTP packet of VoxGate media legs against a bare UDP echo.

Two servers run in turn in this process on uvloop, each on N loopback UDP
ports, while a generator subprocess sends N concurrent PCMU streams (20 ms
packets of espeak-ng Korean words between pauses) and reads the replies:

- echo: a bare DatagramProtocol that sends every packet straight back;
- media_only: per call an RtpSession (parse, source and payload checks,
  G.711 decode, jitter buffer, 20 ms paced sender, RTCP) and a MediaLeg
  (in-band DTMF detection, VAD endpointing), with the recognizer disarmed;
- voxgate: the same plus grammar-mode Vosk recognition of each utterance on
  the call's worker thread.

For each server the script samples this process's CPU time (all threads,
user + system) over the measurement window and divides it by the packets
received and sent. It prints µs per packet and the voxgate/echo ratio.
Everything stays on 127.0.0.1. Bounded: `--calls` (max 200) and
`--seconds` (max 120) per server.

Usage: PYTHONPATH=. python bench/media_load.py [--calls N] [--seconds S] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import uvloop

from ivr.channel import RecognizerConfig
from media import g711
from media.asr import AsrConfig, ModelCatalog
from media.leg import MediaLeg
from media.resample import resample
from media.rtp import RtpPacket
from media.rtp_session import RtpPortPool, RtpSession, RtpSessionConfig
from media.tts import EspeakSynthesizer

HOST = "127.0.0.1"
MENU = ["네", "아니요", "상담원", "환불", "요금"]
MAX_CALLS = 200
MAX_SECONDS = 120


def speech_payloads() -> list[bytes]:
    """Return PCMU payloads of the menu words, each followed by 1 s of silence."""
    synthesizer = EspeakSynthesizer()
    pcm = b""
    for word in MENU:
        audio = resample(synthesizer.synthesize_blocking(word, "ko"), 8000)
        pcm += audio.pcm + bytes(16000)
    pcm += bytes(-len(pcm) % 320)
    encoded = g711.ulaw_encode(pcm)
    return [encoded[i : i + 160] for i in range(0, len(encoded), 160)]


# -- generator (subprocess) ---------------------------------------------------


class _Sink(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received = 0

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.received += 1


async def generate(ports: list[int], seconds: float) -> None:
    """Send one PCMU stream to each port for `seconds`, paced at 20 ms."""
    loop = asyncio.get_running_loop()
    payloads = speech_payloads()
    endpoints = []
    for port in ports:
        transport, sink = await loop.create_datagram_endpoint(
            _Sink, local_addr=(HOST, 0), remote_addr=(HOST, port)
        )
        endpoints.append((transport, sink))
    start = loop.time()
    tick = 0
    while loop.time() - start < seconds:
        payload = payloads[tick % len(payloads)]
        for ssrc, (transport, _) in enumerate(endpoints, start=1):
            packet = RtpPacket(0, tick & 0xFFFF, (160 * tick) & 0xFFFFFFFF, ssrc, payload)
            transport.sendto(packet.serialize())
        tick += 1
        delay = start + tick * 0.02 - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
    for transport, _ in endpoints:
        transport.close()


# -- servers --------------------------------------------------------------------


class _Echo(asyncio.DatagramProtocol):
    def __init__(self, counter: list[int]) -> None:
        self._counter = counter
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self._counter[0] += 2
        assert self._transport is not None
        self._transport.sendto(data, addr)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(ports: list[int], seconds: float, count_packets: Any) -> dict[str, float]:
    """Run the generator against `ports`; return CPU µs per packet in the middle window."""
    generator = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--generate", ",".join(map(str, ports)), str(seconds + 4)
    )
    try:
        await asyncio.sleep(2)  # generator start-up and warm-up
        cpu_start, packets_start, wall_start = cpu_seconds(), count_packets(), time.monotonic()
        await asyncio.sleep(seconds)
        cpu_end, packets_end, wall_end = cpu_seconds(), count_packets(), time.monotonic()
    finally:
        await asyncio.wait_for(generator.wait(), seconds + 30)
    packets = packets_end - packets_start
    cpu = cpu_end - cpu_start
    return {
        "packets": packets,
        "cpu_s": cpu,
        "cpu_percent": 100 * cpu / (wall_end - wall_start),
        "us_per_packet": 1e6 * cpu / max(packets, 1),
    }


async def run_echo(calls: int, seconds: float) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    counter = [0]
    transports = []
    ports = []
    for _ in range(calls):
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Echo(counter), local_addr=(HOST, 0)
        )
        transports.append(transport)
        ports.append(transport.get_extra_info("sockname")[1])
    try:
        return await measure(ports, seconds, lambda: counter[0])
    finally:
        for transport in transports:
            transport.close()


async def run_voxgate(calls: int, seconds: float, *, asr: bool) -> dict[str, float]:
    catalog = ModelCatalog(AsrConfig(models_dir=None))
    await catalog.preload(["ko"])
    pool = RtpPortPool(42000, 42000 + 4 * calls + 100)
    legs = []
    sessions = []
    for index in range(calls):
        session = await RtpSession.open_from_pool(
            pool, RtpSessionConfig(), local_host=HOST, call_id=f"load-{index}"
        )
        leg = MediaLeg(session, call_id=f"load-{index}", models=catalog)
        if asr:
            leg.listen(RecognizerConfig("ko-KR", MENU))
        sessions.append(session)
        legs.append(leg)

    def packets() -> int:
        return sum(s.stats.packets_received + s.stats.packets_sent for s in sessions)

    results: list[Any] = []

    async def drain_inputs() -> None:
        while True:
            for leg in legs:
                item = await leg.next_input(0)
                if item is not None:
                    results.append(item)
            await asyncio.sleep(0.1)

    drainer = asyncio.create_task(drain_inputs())
    try:
        measured = await measure([s.local_address[1] for s in sessions], seconds, packets)
    finally:
        drainer.cancel()
        for leg in legs:
            await leg.close()
    measured["speech_results"] = len(results)
    return measured


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    echo = await run_echo(args.calls, args.seconds)
    media_only = await run_voxgate(args.calls, args.seconds, asr=False)
    voxgate = await run_voxgate(args.calls, args.seconds, asr=True)
    return {
        "calls": args.calls,
        "seconds": args.seconds,
        "python": platform.python_version(),
        "echo": echo,
        "media_only": media_only,
        "voxgate": voxgate,
        "ratio_media_only": media_only["us_per_packet"] / max(echo["us_per_packet"], 1e-9),
        "ratio": voxgate["us_per_packet"] / max(echo["us_per_packet"], 1e-9),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20, help="concurrent calls (max 200)")
    parser.add_argument("--seconds", type=float, default=20, help="measured seconds per server")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--generate", nargs=2, metavar=("PORTS", "SECONDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        ports = [int(p) for p in args.generate[0].split(",")]
        uvloop.run(generate(ports, float(args.generate[1])))
        return
    if not 1 <= args.calls <= MAX_CALLS or not 1 <= args.seconds <= MAX_SECONDS:
        parser.error(f"--calls must be 1-{MAX_CALLS} and --seconds 1-{MAX_SECONDS}")
    result = uvloop.run(main_async(args))
    for name in ("echo", "media_only", "voxgate"):
        row = result[name]
        print(
            f"{name:10s} packets {row['packets']:8.0f}  CPU {row['cpu_percent']:5.1f} %"
            f"  {row['us_per_packet']:6.1f} µs/packet"
        )
    print(f"ratio media_only/echo: {result['ratio_media_only']:.1f}x")
    print(f"ratio voxgate/echo: {result['ratio']:.1f}x")
    print(f"speech results during the run: {result['voxgate']['speech_results']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
