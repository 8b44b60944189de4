"""A browser agent played by aiortc, speaking the documented signaling protocol.

It logs in over HTTP, opens /ws, changes its state, answers `incoming`
calls with an SDP offer whose audio track is a steady tone, and keeps what
it receives so that a test can look for the caller's tone.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import time
from typing import Any

import aiohttp
import av
import numpy as np
import numpy.typing as npt
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

PEER_RATE = 48_000
FRAME_SAMPLES = 960
MAX_KEPT_S = 60.0


class ToneTrack(MediaStreamTrack):
    """An audio track that sends a sine tone in real time (20 ms frames at 48 kHz)."""

    kind = "audio"

    def __init__(self, frequency_hz: float, amplitude: float = 0.3) -> None:
        super().__init__()
        self._frequency_hz = frequency_hz
        self._amplitude = amplitude
        self._sent = 0
        self._started: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self._started is None:
            self._started = time.monotonic()
        delay = self._started + self._sent / PEER_RATE - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        t = (self._sent + np.arange(FRAME_SAMPLES)) / PEER_RATE
        wave = self._amplitude * 32767 * np.sin(2 * np.pi * self._frequency_hz * t)
        samples = np.round(wave).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = PEER_RATE
        frame.pts = self._sent
        frame.time_base = fractions.Fraction(1, PEER_RATE)
        self._sent += FRAME_SAMPLES
        return frame


def tone_seconds(samples: npt.NDArray[np.int16], rate: int, frequency_hz: float) -> float:
    """Return the time, in seconds, of 100 ms windows whose strongest frequency is the tone."""
    window = rate // 10
    count = 0
    for start in range(0, samples.size - window + 1, window):
        chunk = samples[start : start + window].astype(np.float64)
        if np.sqrt(np.mean(chunk**2)) < 100:
            continue
        spectrum = np.abs(np.fft.rfft(chunk * np.hanning(window)))
        peak = float(np.fft.rfftfreq(window, 1 / rate)[int(np.argmax(spectrum))])
        if abs(peak - frequency_hz) <= 30:
            count += 1
    return count / 10


class AgentClient:
    """One agent: its signaling WebSocket and at most one call's peer connection."""

    def __init__(self, base_url: str, user: str, password: str, tone_hz: float) -> None:
        self.base_url = base_url
        self.origin = base_url
        self.user = user
        self.password = password
        self.tone_hz = tone_hz
        self.messages: list[dict[str, Any]] = []
        self.received: list[npt.NDArray[np.int16]] = []
        self.pc: RTCPeerConnection | None = None
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    async def login(self) -> dict[str, Any]:
        """Log in over HTTP and on the WebSocket; return the `session` message."""
        self._http = aiohttp.ClientSession(headers={"Origin": self.origin})
        async with self._http.post(
            f"{self.base_url}/api/webrtc/login", json={"user": self.user, "password": self.password}
        ) as response:
            response.raise_for_status()
            token = (await response.json())["token"]
        self._ws = await self._http.ws_connect(f"{self.base_url}/ws")
        self._tasks.append(asyncio.create_task(self._read()))
        await self.send({"type": "login", "token": token})
        return await self.expect("session", 10)

    async def send(self, message: dict[str, Any]) -> None:
        assert self._ws is not None
        await self._ws.send_str(json.dumps(message))

    async def _read(self) -> None:
        assert self._ws is not None
        async for raw in self._ws:
            if raw.type is not aiohttp.WSMsgType.TEXT:
                break
            message = json.loads(raw.data)
            self.messages.append(message)
            await self._inbox.put(message)

    async def expect(self, kind: str, timeout_s: float, **fields: Any) -> dict[str, Any]:
        """Wait for the next message of type `kind` whose members match `fields`."""
        async with asyncio.timeout(timeout_s):
            while True:
                message = await self._inbox.get()
                if message["type"] == kind and all(message.get(k) == v for k, v in fields.items()):
                    return message

    async def set_state(self, state: str) -> None:
        await self.send({"type": "agent_state", "state": state})
        await self.expect("presence", 10, state=state)

    async def answer(self, call_id: str) -> None:
        """Answer the ringing call with an offer and apply the server's answer."""
        pc = RTCPeerConnection()
        self.pc = pc
        self.received = []
        pc.addTrack(ToneTrack(self.tone_hz))

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._tasks.append(asyncio.create_task(self._receive(track)))

        await pc.setLocalDescription(await pc.createOffer())
        await self.send({"type": "offer", "call_id": call_id, "sdp": pc.localDescription.sdp})
        answer = await self.expect("answer", 15, call_id=call_id)
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))

    async def _receive(self, track: MediaStreamTrack) -> None:
        kept = 0
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if not isinstance(frame, av.AudioFrame):
                continue
            channels = len(frame.layout.channels)
            samples = frame.to_ndarray().reshape(-1, channels)[:, 0].astype(np.int16)
            if kept < MAX_KEPT_S * PEER_RATE:
                self.received.append(samples)
                kept += samples.size

    def heard_tone_s(self, frequency_hz: float) -> float:
        """Return how long the caller's audio carried `frequency_hz` so far."""
        if not self.received:
            return 0.0
        return tone_seconds(np.concatenate(self.received), PEER_RATE, frequency_hz)

    async def wait_heard_tone(self, frequency_hz: float, seconds: float, timeout_s: float) -> float:
        """Wait until `seconds` of the tone were heard; return the time heard."""
        deadline = time.monotonic() + timeout_s
        heard = 0.0
        while time.monotonic() < deadline:
            heard = self.heard_tone_s(frequency_hz)
            if heard >= seconds:
                return heard
            await asyncio.sleep(0.25)
        return heard

    async def hangup(self, call_id: str) -> None:
        await self.send({"type": "hangup", "call_id": call_id, "reason": "agent hung up"})

    async def close_call(self) -> None:
        if self.pc is not None:
            await self.pc.close()
            self.pc = None

    async def close(self) -> None:
        await self.close_call()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._ws is not None:
            await self._ws.close()
        if self._http is not None:
            await self._http.close()
