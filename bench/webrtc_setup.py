"""Call setup time: offer or INVITE sent -> first server audio received.

Compares three paths in the same run, interleaved call by call with the
order rotating:

- voxgate: an aiortc client logs in over the WebSocket signaling, sends a
  `call` with its offer and trickles nothing; the server answers through
  `signaling.webrtc` and sends a tone through `WebRtcTransport`.
- bare: the same client offer handed directly to a plain aiortc
  RTCPeerConnection that answers and sends aiortc's default silence track.
- sip: a minimal asyncio UDP SIP client (`SipCaller`) calls a real
  `voxgate serve` process running the default flow `config/flows/demo.yaml`,
  whose first step speaks. It sends an INVITE with a PCMU offer, ACKs the
  200, waits for the first PCMU packet with RMS >= 300 (16-bit scale) at its
  RTP socket, then sends BYE. The caller itself sends no RTP.

For WebRTC the clock starts when the client's offer is ready (after its own
ICE gathering) and stops at the first decoded audio frame the client
receives. For SIP it starts when the INVITE is sent and stops when the first
voiced RTP packet arrives; INVITE -> 200 and INVITE -> first RTP packet are
reported too. One SIP call before the loop fills the TTS prompt cache and is
reported apart (`sip_first_call_ms`).

Everything binds to 127.0.0.1; as root the script re-runs itself inside a
loopback-only network namespace (`unshare -n`). Bounded: `--calls` per path
(default 50) and 15 s per call (60 s for the first SIP call).

Usage: PYTHONPATH=. python bench/webrtc_setup.py [--calls N] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack

from ivr.channel import DtmfInput
from media import g711
from media.audio import PcmAudio
from media.rtp import RtpPacket
from signaling.webrtc.auth import TokenSigner
from signaling.webrtc.call import WebRtcCall
from signaling.webrtc.config import WebRtcConfig
from signaling.webrtc.peer import create_peer, install_host_addresses
from signaling.webrtc.protocol import Presence, Role, TransferKind
from signaling.webrtc.server import add_routes
from tests.support.node import voxgate_node

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


VOICED_RMS = 300.0
SIP_BYE_TIMEOUT_S = 2.0


class _Inbox(asyncio.DatagramProtocol):
    """Datagrams received on one UDP socket, with their arrival times, as a queue."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.queue.put_nowait((time.perf_counter(), data))


def _sip_headers(message: bytes) -> tuple[str, dict[str, str]]:
    """Split a SIP message into its first line and headers (lower-case names, first value)."""
    head = message.split(b"\r\n\r\n", 1)[0].decode("utf-8", errors="replace")
    first, *lines = head.split("\r\n")
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    return first, headers


def _pcmu_rms(datagram: bytes) -> float:
    """Return the RMS (16-bit scale) of a PCMU RTP packet, or 0.0 for anything else."""
    try:
        packet = RtpPacket.parse(datagram)
    except ValueError:
        return 0.0
    if packet.payload_type != 0 or not packet.payload:
        return 0.0
    samples = np.frombuffer(g711.ulaw_decode(packet.payload), dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(samples**2)))


class SipCaller:
    """A minimal UDP SIP user agent client that places one call at a time (INVITE, ACK, BYE).

    It sends no RTP and no retransmissions, so on loopback a lost datagram shows
    up as a call that times out, which the benchmark counts as a failure.
    """

    def __init__(self, server_port: int) -> None:
        self._server = ("127.0.0.1", server_port)

    async def call(self, index: int) -> dict[str, float]:
        """Place one call and return the seconds from INVITE sent to each step.

        Steps: `answer` (200 received), `first_rtp`, `first_audio` (first voiced packet).
        """
        loop = asyncio.get_running_loop()
        sip, sip_inbox = await loop.create_datagram_endpoint(_Inbox, local_addr=("127.0.0.1", 0))
        rtp, rtp_inbox = await loop.create_datagram_endpoint(_Inbox, local_addr=("127.0.0.1", 0))
        sip_port = sip.get_extra_info("sockname")[1]
        rtp_port = rtp.get_extra_info("sockname")[1]
        dialog = _Dialog(index, sip_port, self._server)
        try:
            started = time.perf_counter()
            sip.sendto(dialog.invite(rtp_port), self._server)
            answered, to_header, contact = await _wait_for_200(sip_inbox, started)
            sip.sendto(dialog.ack(to_header, contact), self._server)
            first_rtp, first_voiced = await _wait_for_voice(rtp_inbox)
            sip.sendto(dialog.bye(to_header, contact), self._server)
            await _wait_for_bye_response(sip_inbox)
            return {
                "answer": answered - started,
                "first_rtp": first_rtp - started,
                "first_audio": first_voiced - started,
            }
        finally:
            sip.close()
            rtp.close()


class _Dialog:
    """The headers of one outgoing call's requests."""

    def __init__(self, index: int, local_port: int, server: tuple[str, int]) -> None:
        tag = secrets.token_hex(4)
        self.call_id = f"bench-{index}-{secrets.token_hex(6)}@127.0.0.1"
        self.local = f"127.0.0.1:{local_port}"
        self.target = f"sip:1000@{server[0]}:{server[1]}"
        self.from_header = f'"bench" <sip:bench@{self.local}>;tag={tag}'

    def _request(self, method: str, uri: str, cseq: int, to_header: str, body: str = "") -> bytes:
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.local};rport;branch=z9hG4bK{secrets.token_hex(8)}",
            f"From: {self.from_header}",
            f"To: {to_header}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: <sip:bench@{self.local}>",
            "Max-Forwards: 70",
        ]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()

    def invite(self, rtp_port: int) -> bytes:
        sdp = "\r\n".join([
            "v=0",
            "o=bench 1 1 IN IP4 127.0.0.1",
            "s=-",
            "c=IN IP4 127.0.0.1",
            "t=0 0",
            f"m=audio {rtp_port} RTP/AVP 0 101",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:101 telephone-event/8000",
            "a=fmtp:101 0-15",
            "a=ptime:20",
            "a=sendrecv",
            "",
        ])  # fmt: skip
        return self._request("INVITE", self.target, 1, f"<{self.target}>", sdp)

    def ack(self, to_header: str, contact: str) -> bytes:
        return self._request("ACK", contact, 1, to_header)

    def bye(self, to_header: str, contact: str) -> bytes:
        return self._request("BYE", contact, 2, to_header)


async def _wait_for_200(inbox: _Inbox, started: float) -> tuple[float, str, str]:
    """Wait for the final response to the INVITE and return (arrival, To, Contact URI)."""
    while True:
        arrived, message = await inbox.queue.get()
        first, headers = _sip_headers(message)
        if not first.startswith("SIP/2.0 ") or "INVITE" not in headers.get("cseq", ""):
            continue
        status = int(first.split()[1])
        if status < 200:
            continue
        if status != 200:
            raise RuntimeError(f"INVITE rejected with {first!r}")
        contact = headers.get("contact", headers.get("m", ""))
        uri = contact[contact.find("<") + 1 : contact.find(">")] if "<" in contact else contact
        return arrived, headers.get("to", headers.get("t", "")), uri


async def _wait_for_voice(inbox: _Inbox) -> tuple[float, float]:
    """Wait for RTP and return the arrival of the first packet and of the first voiced one."""
    first_rtp: float | None = None
    while True:
        arrived, datagram = await inbox.queue.get()
        first_rtp = arrived if first_rtp is None else first_rtp
        if _pcmu_rms(datagram) >= VOICED_RMS:
            return first_rtp, arrived


async def _wait_for_bye_response(inbox: _Inbox) -> None:
    """Wait up to SIP_BYE_TIMEOUT_S for the 200 to the BYE so the server has ended the call."""
    try:
        async with asyncio.timeout(SIP_BYE_TIMEOUT_S):
            while True:
                _, message = await inbox.queue.get()
                first, headers = _sip_headers(message)
                if first.startswith("SIP/2.0 ") and "BYE" in headers.get("cseq", ""):
                    return
    except TimeoutError:
        raise RuntimeError(f"BYE timed out: no response within {SIP_BYE_TIMEOUT_S} s") from None


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


PATHS = ("voxgate", "bare", "sip")


async def run(calls: int, sip_port: int) -> dict[str, Any]:
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
    caller = SipCaller(sip_port)
    results: dict[str, list[float]] = {path: [] for path in PATHS}
    sip_steps: dict[str, list[float]] = {"answer": [], "first_rtp": []}
    failures = {path: 0 for path in PATHS}

    # The first SIP call renders the first prompt into the TTS cache, so it is reported apart.
    async with asyncio.timeout(CALL_TIMEOUT_S * 4):
        first_sip_call = await caller.call(-1)
    try:
        async with aiohttp.ClientSession() as http:
            for index in range(calls):
                token, _ = signer.issue(f"bench-{index}", Role.CALLER)
                shift = index % len(PATHS)
                for path in PATHS[shift:] + PATHS[:shift]:
                    try:
                        async with asyncio.timeout(CALL_TIMEOUT_S):
                            if path == "voxgate":
                                url = f"http://127.0.0.1:{port}/ws"
                                elapsed = await voxgate_call(config, http, url, token, index)
                            elif path == "bare":
                                elapsed = await bare_call(config)
                            else:
                                times = await caller.call(index)
                                elapsed = times["first_audio"]
                                sip_steps["answer"].append(times["answer"])
                                sip_steps["first_rtp"].append(times["first_rtp"])
                        results[path].append(elapsed)
                    except (TimeoutError, RuntimeError, aiohttp.ClientError, OSError):
                        failures[path] += 1
    finally:
        await runner.cleanup()
    return {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        **{path: _summary(values) if values else {} for path, values in results.items()},
        "sip_invite_to_200": _summary(sip_steps["answer"]) if sip_steps["answer"] else {},
        "sip_invite_to_first_rtp": (
            _summary(sip_steps["first_rtp"]) if sip_steps["first_rtp"] else {}
        ),
        "sip_first_call_ms": {step: 1000 * value for step, value in first_sip_call.items()},
        "failures": failures,
    }


def run_with_node(calls: int) -> dict[str, Any]:
    """Start `voxgate serve` with the demo flow, run the benchmark, and stop the server."""
    with tempfile.TemporaryDirectory(prefix="webrtc-setup-") as workdir:
        settings = {"log": {"level": "WARNING"}}
        with voxgate_node(Path(workdir), settings) as node:
            return asyncio.run(run(calls, node.sip_port))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
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
    result = run_with_node(max(1, args.calls))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
