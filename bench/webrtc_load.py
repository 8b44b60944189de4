"""CPU per WebRTC audio call and calls per server process: VoxGate vs bare aiortc.

Two server kinds, each run as its own process:

- voxgate: the `signaling.webrtc` WebSocket edge answers each caller. Every
  call's `WebRtcTransport` feeds a `media.leg.MediaLeg`, which runs VAD
  endpointing and in-band DTMF detection on inbound audio (no speech
  recognition) and plays a 2 s 440 Hz prompt over and over.
- bare: a plain aiortc answerer (offer over HTTP POST) that sends a 440 Hz
  tone track and reads and drops the decoded inbound frames.

Callers are aiortc offerers in a separate process. They send pre-encoded Opus
packets (tone bursts of 600 ms on, 400 ms off) and count the RTP packets the
server sends without decoding them, so the caller process stays cheap. The
server counts the decoded inbound 20 ms frames of each call.

For each step (a number of concurrent calls) the driver starts a fresh server
and a caller process, waits until every call has media, lets it warm up,
then reads the server's utime + stime from /proc/PID/stat and the frame
counts before and after a fixed window. A step passes when every call got at
least `MIN_FPS` frames/s in both directions; a failed step is repeated
`--retries` times before it counts as failed, because the machine may be
shared. Kinds alternate within a round, the first kind alternates between
rounds, and a kind stops stepping up in a round at its first failed step
(the `--cpu-calls` step always runs, for the CPU comparison). With 2 or more
CPUs the server is pinned to CPU 0 and the callers to CPU 1, so "calls per
process" is calls per core.

Everything binds to 127.0.0.1; as root the script re-runs itself inside a
loopback-only network namespace (`unshare -n`). Bounded: at most
`MAX_CALLS` calls per step, `SETUP_TIMEOUT_S` to connect them and a time
limit on every child process.

`--role breakdown` times the per-frame stages of one call on one thread
instead (Opus decode and encode, our frame adapters and `MediaLeg`).

Usage: PYTHONPATH=. python bench/webrtc_load.py [--rounds 3] [--steps 10,20,30,40,50,60]
       [--window 10] [--loop asyncio|uvloop] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import json
import logging
import os
import platform
import shlex
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
import uvloop
from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.codecs.opus import OpusDecoder, OpusEncoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RtpPacket

from ivr.channel import CallEnded
from media.audio import PcmAudio
from media.leg import MediaLeg
from media.transport import FrameHandler
from signaling.webrtc.auth import TokenSigner
from signaling.webrtc.call import WebRtcCall
from signaling.webrtc.config import WebRtcConfig
from signaling.webrtc.peer import create_peer
from signaling.webrtc.protocol import Presence, Role, TransferKind
from signaling.webrtc.server import add_routes
from signaling.webrtc.tracks import FrameConverter, pcm_to_frame

ORIGIN = "http://127.0.0.1"
SECRET = b"bench-secret-0123456789abcdef0123"
KINDS = ("voxgate", "bare")
RATE = 16_000
FRAME_SAMPLES = RATE // 50
MIN_FPS = 48.0
MAX_CALLS = 100
SETUP_TIMEOUT_S = 90.0
SETUP_CONCURRENCY = 4
WARMUP_S = 3.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

logger = logging.getLogger("bench.webrtc_load")


def _config() -> WebRtcConfig:
    return WebRtcConfig(
        allowed_origins=[ORIGIN],
        token_secret=SECRET,
        advertised_addresses=["127.0.0.1"],
        rate_per_s=1000,
        rate_burst=1000,
        max_calls=MAX_CALLS,
    )


def _tone(seconds: float, on_ms: int = 1000, period_ms: int = 1000) -> np.ndarray:
    """Return s16 mono samples of a 440 Hz tone, switched on for `on_ms` of each period."""
    t = np.arange(int(seconds * RATE)) / RATE
    tone = 6000 * np.sin(2 * np.pi * 440 * t)
    tone[(t * 1000) % period_ms >= on_ms] = 0
    return tone.astype("<i2")


def _cpu_ticks(pid: int) -> int:
    """Return utime + stime of process `pid` (all its threads) in clock ticks."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


# -- server side -------------------------------------------------------


class ToneTrack(MediaStreamTrack):
    """An aiortc audio track that sends 20 ms frames of `samples`, looping, in real time."""

    kind = "audio"

    def __init__(self, samples: np.ndarray) -> None:
        super().__init__()
        self._frames = [
            samples[i : i + FRAME_SAMPLES] for i in range(0, len(samples), FRAME_SAMPLES)
        ]
        self._start: float | None = None
        self._index = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._index += 1
            wait = self._start + self._index * 0.02 - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        pcm = self._frames[self._index % len(self._frames)].tobytes()
        return pcm_to_frame(PcmAudio(pcm, RATE), self._index * FRAME_SAMPLES)


class LegHandler:
    """Runs a `MediaLeg` on each call that plays a tone prompt until the caller hangs up."""

    def __init__(self, counts: dict[str, Callable[[], int]]) -> None:
        self._counts = counts
        self._prompt = PcmAudio(_tone(2.0).tobytes(), RATE)

    async def on_call(self, call: WebRtcCall) -> None:
        leg = MediaLeg(call.transport, call_id=call.call_id)
        transport = call.transport
        self._counts[call.call_id] = lambda: transport.frames_received
        try:
            while True:
                await leg.play(self._prompt)
        except CallEnded:
            pass
        finally:
            await leg.close()

    async def on_transfer(self, call: WebRtcCall, kind: TransferKind, target: str) -> bool:
        return False

    def on_call_state(self, call: WebRtcCall) -> None:
        pass

    def on_agent_state(self, presence: Presence) -> None:
        pass


class BareServer:
    """A plain aiortc answerer: tone out, decoded inbound frames counted and dropped."""

    def __init__(self, counts: dict[str, Callable[[], int]]) -> None:
        self._counts = counts
        self._peers: list[RTCPeerConnection] = []
        self._readers: list[asyncio.Task[None]] = []
        self._tone = _tone(2.0)

    async def offer(self, request: web.Request) -> web.Response:
        body = await request.json()
        pc = create_peer(_config())
        self._peers.append(pc)
        frames = [0]
        self._counts[str(body["call_id"])] = lambda: frames[0]

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._readers.append(asyncio.create_task(self._read(track, frames)))

        await pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type="offer"))
        pc.addTrack(ToneTrack(self._tone))
        await pc.setLocalDescription(await pc.createAnswer())
        return web.json_response({"sdp": pc.localDescription.sdp})

    @staticmethod
    async def _read(track: MediaStreamTrack, frames: list[int]) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                frames[0] += 1

    async def close(self, app: web.Application) -> None:
        for task in self._readers:
            task.cancel()
        for pc in self._peers:
            await pc.close()


async def serve(kind: str) -> None:
    """Serve calls of `kind` on a free loopback port until stdin reaches EOF.

    Prints "port N" first, which the driver passes to the caller process.
    """
    counts: dict[str, Callable[[], int]] = {}
    app = web.Application()
    if kind == "voxgate":
        add_routes(app, _config(), LegHandler(counts))
    else:
        bare = BareServer(counts)
        app.router.add_post("/offer", bare.offer)
        app.on_shutdown.append(bare.close)

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({call_id: count() for call_id, count in counts.items()})

    app.router.add_get("/stats", stats)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"port {port}", flush=True)
    try:
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    finally:
        await runner.cleanup()


# -- caller side -------------------------------------------------------


def _opus_packets() -> list[bytes]:
    """Encode one second of tone bursts (600 ms on, 400 ms off) into 50 Opus payloads."""
    encoder = OpusEncoder()
    samples = _tone(2.0, on_ms=600)
    payloads: list[bytes] = []
    for index in range(0, len(samples), FRAME_SAMPLES):
        audio = PcmAudio(samples[index : index + FRAME_SAMPLES].tobytes(), RATE)
        encoded, _ = encoder.encode(pcm_to_frame(audio, index))
        payloads.extend(encoded)
    return payloads[-50:]


class OpusPacketTrack(MediaStreamTrack):
    """An aiortc audio track that hands pre-encoded Opus packets to the sender every 20 ms."""

    kind = "audio"

    def __init__(self, payloads: list[bytes]) -> None:
        super().__init__()
        self._payloads = payloads
        self._start: float | None = None
        self._index = 0

    async def recv(self) -> av.Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._index += 1
            wait = self._start + self._index * 0.02 - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        packet = av.Packet(self._payloads[self._index % len(self._payloads)])
        packet.pts = self._index * 960
        packet.time_base = fractions.Fraction(1, 48_000)
        return packet


class Caller:
    """One offerer that counts the server's RTP packets instead of decoding them."""

    def __init__(self, index: int, payloads: list[bytes]) -> None:
        self.call_id = f"load-{index}"
        self.user = f"load-caller-{index}"
        self.pc = create_peer(_config())
        self.pc.addTrack(OpusPacketTrack(payloads))
        self.packets = 0
        self.codec = ""
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    def count_packets(self) -> None:
        receiver = next(t for t in self.pc.getTransceivers() if t.kind == "audio").receiver

        async def count(packet: RtpPacket, arrival_time_ms: int) -> None:
            self.packets += 1

        setattr(receiver, "_handle_rtp_packet", count)  # noqa: B010

    async def connect(self, kind: str, http: aiohttp.ClientSession, base: str) -> None:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        offer = self.pc.localDescription.sdp
        if kind == "voxgate":
            answer = await self._call_over_websocket(http, base, offer)
        else:
            payload = {"call_id": self.call_id, "sdp": offer}
            async with http.post(f"{base}/offer", json=payload) as response:
                response.raise_for_status()
                answer = (await response.json())["sdp"]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        self.count_packets()
        for line in answer.splitlines():
            if line.startswith("a=rtpmap:"):
                self.codec = line.split(" ", 1)[1]
                break

    async def _call_over_websocket(self, http: aiohttp.ClientSession, base: str, sdp: str) -> str:
        token, _ = TokenSigner(SECRET, 3600).issue(self.user, Role.CALLER)
        self.ws = await http.ws_connect(f"{base}/ws", headers={"Origin": ORIGIN})
        await self.ws.send_json({"type": "login", "token": token})
        while (await self.ws.receive_json())["type"] != "session":
            pass
        await self.ws.send_json({"type": "call", "call_id": self.call_id, "to": "load", "sdp": sdp})
        while True:
            message = await self.ws.receive_json()
            if message["type"] == "answer":
                return str(message["sdp"])
            if message["type"] == "error":
                raise RuntimeError(f"call rejected: {message['message']}")

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.send_json({"type": "hangup", "call_id": self.call_id})
                await self.ws.close()
        await self.pc.close()


async def _wait_for_media(callers: list[Caller], deadline: float) -> None:
    while any(caller.packets == 0 for caller in callers):
        if time.monotonic() > deadline:
            missing = sum(1 for caller in callers if caller.packets == 0)
            raise TimeoutError(f"{missing} of {len(callers)} calls got no server audio")
        await asyncio.sleep(0.1)


async def run_callers(
    kind: str, base: str, server_pid: int, calls: int, window_s: float
) -> dict[str, Any]:
    """Connect `calls` callers to the server at `base` and measure one window."""
    payloads = _opus_packets()
    callers = [Caller(index, payloads) for index in range(calls)]
    limit = asyncio.Semaphore(SETUP_CONCURRENCY)
    deadline = time.monotonic() + SETUP_TIMEOUT_S

    async def connect(caller: Caller) -> None:
        async with limit:
            await caller.connect(kind, http, base)

    async with aiohttp.ClientSession() as http:
        try:
            async with asyncio.timeout(SETUP_TIMEOUT_S):
                await asyncio.gather(*(connect(caller) for caller in callers))
            await _wait_for_media(callers, deadline)
            await asyncio.sleep(WARMUP_S)
            before = await _snapshot(http, base, server_pid, callers)
            await asyncio.sleep(window_s)
            after = await _snapshot(http, base, server_pid, callers)
        finally:
            await asyncio.gather(*(caller.close() for caller in callers), return_exceptions=True)
    elapsed = after["time"] - before["time"]
    received = [(after["packets"][i] - before["packets"][i]) / elapsed for i in range(calls)]
    sent = [
        (after["server"].get(c.call_id, 0) - before["server"].get(c.call_id, 0)) / elapsed
        for c in callers
    ]
    server_cpu = 100 * (after["server_ticks"] - before["server_ticks"]) / CLOCK_TICKS / elapsed
    caller_cpu = 100 * (after["caller_ticks"] - before["caller_ticks"]) / CLOCK_TICKS / elapsed
    return {
        "kind": kind,
        "calls": calls,
        "window_s": round(elapsed, 2),
        "codec": sorted({caller.codec for caller in callers}),
        "server_cpu_pct": round(server_cpu, 1),
        "cpu_pct_per_call": round(server_cpu / calls, 2),
        "caller_cpu_pct": round(caller_cpu, 1),
        "min_fps_to_caller": round(min(received), 1),
        "min_fps_to_server": round(min(sent), 1),
        "max_fps_to_caller": round(max(received), 1),
        "max_fps_to_server": round(max(sent), 1),
        "passed": min(received) >= MIN_FPS and min(sent) >= MIN_FPS,
    }


async def _snapshot(
    http: aiohttp.ClientSession, base: str, server_pid: int, callers: list[Caller]
) -> dict[str, Any]:
    async with http.get(f"{base}/stats") as response:
        server = await response.json()
    return {
        "time": time.monotonic(),
        "server_ticks": _cpu_ticks(server_pid),
        "caller_ticks": _cpu_ticks(os.getpid()),
        "packets": [caller.packets for caller in callers],
        "server": server,
    }


# -- per-frame breakdown -----------------------------------------------


class NullTransport:
    """A `FrameTransport` that carries nothing, so a `MediaLeg` can be driven by hand."""

    sample_rate = RATE

    def attach(self, handler: FrameHandler) -> None:
        pass

    async def close(self) -> None:
        pass


def _time_per_call(step: Callable[[int], object], repeats: int) -> float:
    """Return the mean time of `step(i)` for i in range(repeats), in microseconds."""
    started = time.perf_counter()
    for index in range(repeats):
        step(index)
    return round(1e6 * (time.perf_counter() - started) / repeats, 1)


async def breakdown(repeats: int) -> dict[str, float]:
    """Time the per-frame stages of one call on one thread, in µs per 20 ms frame.

    Opus decode and encode are what aiortc does for any answerer (the encoder
    resamples 16 kHz mono to 48 kHz stereo first). The other stages are ours:
    `FrameConverter` turns a decoded 48 kHz stereo frame into 16 kHz mono,
    `MediaLeg` runs VAD and in-band DTMF detection on it and hands out the
    next prompt frame, and `pcm_to_frame` wraps that frame for aiortc.
    """
    payloads = _opus_packets()
    decoder = OpusDecoder()
    encoder = OpusEncoder()
    converter = FrameConverter(RATE)
    leg = MediaLeg(NullTransport(), call_id="breakdown")
    play = asyncio.create_task(leg.play(PcmAudio(_tone(repeats / 50 + 1).tobytes(), RATE)))
    await asyncio.sleep(0)

    def decode(index: int) -> list[av.AudioFrame]:
        frame = JitterFrame(data=payloads[index % 50], timestamp=index * 960)
        return decoder.decode(frame)  # type: ignore[return-value]

    decoded = [decode(index)[0] for index in range(50)]
    inbound = [audio for frame in decoded for audio in converter.push(frame)]
    outbound = [
        PcmAudio(samples.tobytes(), RATE) for samples in np.split(_tone(1.0, on_ms=600), 50)
    ]
    results = {
        "opus_decode_us": _time_per_call(decode, repeats),
        "opus_encode_us": _time_per_call(
            lambda i: encoder.encode(pcm_to_frame(outbound[i % 50], i * FRAME_SAMPLES)), repeats
        ),
        "frame_converter_push_us": _time_per_call(
            lambda i: converter.push(decoded[i % 50]), repeats
        ),
        "media_leg_on_audio_frame_us": _time_per_call(
            lambda i: leg.on_audio_frame(inbound[i % len(inbound)]), repeats
        ),
        "media_leg_next_frame_us": _time_per_call(lambda i: leg.next_frame(), repeats),
        "pcm_to_frame_us": _time_per_call(
            lambda i: pcm_to_frame(outbound[i % 50], i * FRAME_SAMPLES), repeats
        ),
    }
    play.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await play
    return results


# -- driver ------------------------------------------------------------


def _pinned(cpu: int | None) -> Callable[[], None] | None:
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def run_step(kind: str, calls: int, args: argparse.Namespace, pin: bool) -> dict[str, Any]:
    """Start a fresh server of `kind`, measure `calls` concurrent calls and stop it."""
    script = str(Path(__file__).resolve())
    window_s = args.window
    server = subprocess.Popen(
        [sys.executable, script, "--role", "server", "--kind", kind, "--loop", args.loop],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=_pinned(0 if pin else None),
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if not line.startswith("port "):
            return {"kind": kind, "calls": calls, "passed": False, "error": "server did not start"}
        port = int(line.split()[1])
        command = [sys.executable, script, "--role", "callers", "--kind", kind]
        command += ["--port", str(port), "--server-pid", str(server.pid)]
        command += ["--calls", str(calls), "--window", str(window_s)]
        try:
            finished = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=SETUP_TIMEOUT_S + WARMUP_S + window_s + 60,
                preexec_fn=_pinned(1 if pin else None),
                check=False,
            )
        except subprocess.TimeoutExpired:
            return {"kind": kind, "calls": calls, "passed": False, "error": "callers timed out"}
        lines = finished.stdout.strip().splitlines()
        if finished.returncode != 0 or not lines:
            error = (finished.stderr.strip().splitlines() or ["no output"])[-1]
            return {"kind": kind, "calls": calls, "passed": False, "error": error[:300]}
        result: dict[str, Any] = json.loads(lines[-1])
        return result
    finally:
        if server.stdin is not None:
            server.stdin.close()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def summarize(steps: list[dict[str, Any]], rounds: int, cpu_calls: int) -> dict[str, Any]:
    """Return, per kind, the median CPU per call at `cpu_calls` calls and the max calls.

    A round's max calls is the largest step that passed with every smaller step passed too.
    """
    summary: dict[str, Any] = {}
    for kind in KINDS:
        mine = [step for step in steps if step["kind"] == kind]
        cpu = [s["cpu_pct_per_call"] for s in mine if s["calls"] == cpu_calls and "error" not in s]
        best = []
        for index in range(rounds):
            passed = {s["calls"] for s in mine if s["round"] == index and s["passed"]}
            tried = sorted({s["calls"] for s in mine if s["round"] == index})
            reached = 0
            for calls in tried:
                if calls not in passed:
                    break
                reached = calls
            best.append(reached)
        summary[kind] = {
            f"cpu_pct_per_call_at_{cpu_calls}": _median(cpu),
            "max_calls_at_50fps_per_round": best,
            "max_calls_at_50fps_median": statistics.median(best) if best else 0,
        }
    ours = summary["voxgate"][f"cpu_pct_per_call_at_{cpu_calls}"]
    bare = summary["bare"][f"cpu_pct_per_call_at_{cpu_calls}"]
    summary["cpu_ratio_voxgate_to_bare"] = round(ours / bare, 2) if ours and bare else None
    return summary


def _machine() -> dict[str, Any]:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_kb = int(line.split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(memory_kb / 2**20, 1),
        "python": platform.python_version(),
        "aiortc": _version("aiortc"),
        "aioice": _version("aioice"),
        "av": _version("av"),
        "load_average_at_end": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def drive(args: argparse.Namespace) -> dict[str, Any]:
    pin = not args.no_pin and (os.cpu_count() or 1) >= 2
    steps: list[dict[str, Any]] = []
    for index in range(args.rounds):
        failed: set[str] = set()
        order = KINDS if index % 2 == 0 else tuple(reversed(KINDS))
        for calls in args.steps:
            for kind in order:
                if kind in failed and calls != args.cpu_calls:
                    continue
                for attempt in range(1 + args.retries):
                    load = os.getloadavg()[0]
                    result = run_step(kind, calls, args, pin)
                    result.update(round=index, attempt=attempt, load_average_1m=load)
                    steps.append(result)
                    print(json.dumps(result), file=sys.stderr, flush=True)
                    if result["passed"]:
                        break
                if not result["passed"]:
                    failed.add(kind)
    return {
        "machine": _machine(),
        "pinned": pin,
        "command": shlex.join(["python", *sys.argv]),
        "server_loop": args.loop,
        "summary": summarize(steps, args.rounds, args.cpu_calls),
        "steps": steps,
    }


def _in_namespace() -> int | None:
    """Re-run this command in a loopback-only network namespace when root.

    Returns its exit status, or None when the command should run here.
    """
    if os.geteuid() != 0 or os.environ.get("VOXGATE_BENCH_NETNS") == "1":
        return None
    command = shlex.join([sys.executable, *sys.argv])
    env = {**os.environ, "VOXGATE_BENCH_NETNS": "1"}
    script = f"ip link set lo up && exec {command}"
    return subprocess.run(["unshare", "-n", "sh", "-c", script], env=env, check=False).returncode


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every step (at least 1)")
    parser.add_argument(
        "--steps",
        default="10,20,30,40,50,60",
        help=f"comma-separated concurrent call counts, each at most {MAX_CALLS}",
    )
    parser.add_argument("--cpu-calls", type=int, default=30, help="step whose CPU is compared")
    parser.add_argument("--window", type=float, default=10.0, help="measuring window in seconds")
    parser.add_argument("--json", type=Path, help="also write the result to this JSON file")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument(
        "--retries", type=int, default=1, help="repeats of a failed step before it counts"
    )
    parser.add_argument(
        "--loop", choices=("asyncio", "uvloop"), default="asyncio", help="server event loop"
    )
    parser.add_argument(
        "--repeats", type=int, default=5000, help="frames timed per stage with --role breakdown"
    )
    parser.add_argument(
        "--role",
        choices=("driver", "server", "callers", "breakdown"),
        default="driver",
        help="driver runs the whole benchmark; breakdown times per-frame stages",
    )
    parser.add_argument("--kind", choices=KINDS, default="voxgate", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, default=10, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    if args.role == "server":
        if args.loop == "uvloop":
            uvloop.run(serve(args.kind))
        else:
            asyncio.run(serve(args.kind))
        return 0
    if args.role == "breakdown":
        print(json.dumps(asyncio.run(breakdown(max(100, args.repeats))), indent=2))
        return 0
    if args.role == "callers":
        base = f"http://127.0.0.1:{args.port}"
        calls = min(MAX_CALLS, max(1, args.calls))
        result = asyncio.run(run_callers(args.kind, base, args.server_pid, calls, args.window))
        print(json.dumps(result), flush=True)
        return 0

    code = _in_namespace()
    if code is not None:
        return code
    steps = sorted({min(MAX_CALLS, max(1, int(part))) for part in args.steps.split(",")})
    args.steps = sorted({*steps, args.cpu_calls})
    args.rounds = max(1, args.rounds)
    args.retries = max(0, args.retries)
    result = drive(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
