"""Call setup time of a WebRTC leg: offer sent -> first server audio received.

Compares two paths in the same run, interleaved call by call:

- voxgate: an aiortc client logs in over the WebSocket signaling, sends a
  `call` with its offer and trickles nothing; the server answers through
  `signaling.webrtc` and sends a tone through `WebRtcTransport`.
- bare: the same client offer handed directly to a plain aiortc
  RTCPeerConnection that answers and sends aiortc's default silence track.

The clock starts when the client's offer is ready (after its own ICE
gathering) and stops at the first decoded audio frame the client receives.
Everything binds to 127.0.0.1; as root the script re-runs itself inside a
loopback-only network namespace (`unshare -n`). Bounded: `--calls` per path
(default 50) and 15 s per call.

Usage: PYTHONPATH=. python bench/webrtc_setup.py [--calls N] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack

from ivr.channel import DtmfInput
from media.audio import PcmAudio
from signaling.webrtc.auth import TokenSigner
from signaling.webrtc.call import WebRtcCall
from signaling.webrtc.config import WebRtcConfig
from signaling.webrtc.peer import create_peer, install_host_addresses
from signaling.webrtc.protocol import Presence, Role, TransferKind
from signaling.webrtc.server import add_routes

ORIGIN = "http://127.0.0.1"
SECRET = b"bench-secret-0123456789abcdef0123"
CALL_TIMEOUT_S = 15.0


class ToneSource:
    """A frame handler that sends a 440 Hz tone and ignores what it receives."""

    def __init__(self, rate: int) -> None:
        samples = np.arange(rate // 50)
        tone = 6000 * np.sin(2 * np.pi * 440 * samples / rate)
        self._frame = PcmAudio(tone.astype("<i2").tobytes(), rate)

    def on_audio_frame(self, frame: PcmAudio) -> None:
        pass

    def on_dtmf(self, digit: DtmfInput) -> None:
        pass

    def next_frame(self) -> PcmAudio | None:
        return self._frame

    def on_transport_closed(self) -> None:
        pass


class BenchHandler:
    async def on_call(self, call: WebRtcCall) -> None:
        call.transport.attach(ToneSource(call.transport.sample_rate))
        await call.ended.wait()

    async def on_transfer(self, call: WebRtcCall, kind: TransferKind, target: str) -> bool:
        return False

    def on_call_state(self, call: WebRtcCall) -> None:
        pass

    def on_agent_state(self, presence: Presence) -> None:
        pass


async def _client_offer(config: WebRtcConfig) -> tuple[RTCPeerConnection, str]:
    client = create_peer(config)
    client.addTrack(AudioStreamTrack())
    await client.setLocalDescription(await client.createOffer())
    return client, client.localDescription.sdp


async def _first_frame(client: RTCPeerConnection, track_ready: asyncio.Future[Any]) -> None:
    track = await track_ready
    await track.recv()


def _watch_track(client: RTCPeerConnection) -> asyncio.Future[Any]:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    @client.on("track")
    def on_track(track: Any) -> None:
        if not future.done():
            future.set_result(track)

    return future


async def voxgate_call(
    config: WebRtcConfig, http: aiohttp.ClientSession, url: str, token: str, index: int
) -> float:
    client, offer = await _client_offer(config)
    track_ready = _watch_track(client)
    try:
        async with http.ws_connect(url, headers={"Origin": ORIGIN}) as ws:
            await ws.send_json({"type": "login", "token": token})
            while (await ws.receive_json())["type"] != "session":
                pass
            started = time.perf_counter()
            call_id = f"bench-{index}"
            await ws.send_json({"type": "call", "call_id": call_id, "to": "bench", "sdp": offer})
            while True:
                message = await ws.receive_json()
                if message["type"] == "answer":
                    break
                if message["type"] == "error":
                    raise RuntimeError(message["message"])
            answer = RTCSessionDescription(sdp=message["sdp"], type="answer")
            await client.setRemoteDescription(answer)
            await _first_frame(client, track_ready)
            elapsed = time.perf_counter() - started
            await ws.send_json({"type": "hangup", "call_id": call_id})
            return elapsed
    finally:
        await client.close()


async def bare_call(config: WebRtcConfig) -> float:
    client, offer = await _client_offer(config)
    track_ready = _watch_track(client)
    server = create_peer(config)
    try:
        started = time.perf_counter()
        await server.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        server.addTrack(AudioStreamTrack())
        await server.setLocalDescription(await server.createAnswer())
        await client.setRemoteDescription(server.localDescription)
        await _first_frame(client, track_ready)
        return time.perf_counter() - started
    finally:
        await client.close()
        await server.close()


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "calls": len(values),
        "p50_ms": 1000 * _percentile(values, 0.50),
        "p95_ms": 1000 * _percentile(values, 0.95),
        "mean_ms": 1000 * statistics.fmean(values),
        "max_ms": 1000 * max(values),
    }


async def run(calls: int) -> dict[str, Any]:
    config = WebRtcConfig(
        allowed_origins=[ORIGIN],
        token_secret=SECRET,
        advertised_addresses=["127.0.0.1"],
        rate_per_s=1000,
        rate_burst=1000,
    )
    install_host_addresses(["127.0.0.1"])
    app = web.Application()
    add_routes(app, config, BenchHandler())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    await web.TCPSite(runner, "127.0.0.1", port).start()
    signer = TokenSigner(SECRET, 3600)
    results: dict[str, list[float]] = {"voxgate": [], "bare": []}
    failures = {"voxgate": 0, "bare": 0}
    try:
        async with aiohttp.ClientSession() as http:
            for index in range(calls):
                token, _ = signer.issue(f"bench-{index}", Role.CALLER)
                for path in ("voxgate", "bare") if index % 2 == 0 else ("bare", "voxgate"):
                    try:
                        async with asyncio.timeout(CALL_TIMEOUT_S):
                            if path == "voxgate":
                                url = f"http://127.0.0.1:{port}/ws"
                                elapsed = await voxgate_call(config, http, url, token, index)
                            else:
                                elapsed = await bare_call(config)
                        results[path].append(elapsed)
                    except (TimeoutError, RuntimeError, aiohttp.ClientError):
                        failures[path] += 1
    finally:
        await runner.cleanup()
    return {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "voxgate": _summary(results["voxgate"]) if results["voxgate"] else {},
        "bare": _summary(results["bare"]) if results["bare"] else {},
        "failures": failures,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50, help="calls per path (at least 1)")
    parser.add_argument("--json", type=Path, help="also write the result to this JSON file")
    args = parser.parse_args()
    if os.geteuid() == 0 and os.environ.get("VOXGATE_BENCH_NETNS") != "1":
        command = shlex.join([sys.executable, *sys.argv])
        env = {**os.environ, "VOXGATE_BENCH_NETNS": "1"}
        script = f"ip link set lo up && exec {command}"
        return subprocess.run(
            ["unshare", "-n", "sh", "-c", script], env=env, check=False
        ).returncode
    result = asyncio.run(run(max(1, args.calls)))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
