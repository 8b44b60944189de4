"""Runs the VoxGate signaling server and headless Chromium for one browser test.

Run it inside a loopback-only network namespace, as `run_scenario` in
tests/webrtc/browser.py does. It writes <scenario>-result.json, logs and
screenshots into the output folder. The page drives
itself (static/autotest.js) and reports to /test/checkpoint and
/test/results; this script answers checkpoints, takes screenshots through
the DevTools protocol and checks the server side of each step.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from aiohttp import web

from ivr.channel import CallChannel, CallEnded, DtmfInput
from media.audio import PcmAudio
from signaling.webrtc.auth import hash_password
from signaling.webrtc.call import WebRtcCall
from signaling.webrtc.channel import WebRtcChannel
from signaling.webrtc.config import WebRtcConfig
from signaling.webrtc.protocol import Incoming, Presence, TransferKind
from signaling.webrtc.server import WebRtcServer, add_routes
from tests.support.ports import free_tcp_port

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--allow-loopback-in-peer-connection",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]
SERVER_TONE_HZ = 440.0
AGENT_PASSWORD = "agent-test-password"
RATE = 16_000

logger = logging.getLogger("harness")


def dominant_hz(pcm: bytes, rate: int) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    if samples.size == 0:
        return 0.0
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.fft.rfftfreq(samples.size, 1 / rate)[int(np.argmax(spectrum))])


class ToneLeg:
    """A frame handler that sends a tone and records what the browser sends."""

    def __init__(self, rate: int, tone_hz: float) -> None:
        self.rate = rate
        samples = rate // 50
        self._tone = [
            PcmAudio(
                (6000 * np.sin(2 * np.pi * tone_hz * (np.arange(samples) + i * samples) / rate))
                .astype("<i2")
                .tobytes(),
                rate,
            )
            for i in range(50)
        ]
        self._index = 0
        self.phase = "start"
        self.rms: dict[str, list[float]] = {}
        self.audio: dict[str, bytearray] = {}
        self.digits: list[DtmfInput] = []
        self.digit_received = asyncio.Event()
        self.closed = False

    def on_audio_frame(self, frame: PcmAudio) -> None:
        samples = np.frombuffer(frame.pcm, dtype="<i2").astype(np.float64)
        self.rms.setdefault(self.phase, []).append(float(np.sqrt(np.mean(samples**2))) / 32768)
        buffer = self.audio.setdefault(self.phase, bytearray())
        if len(buffer) < self.rate * 2 * 2:
            buffer += frame.pcm

    def on_dtmf(self, digit: DtmfInput) -> None:
        self.digits.append(digit)
        self.digit_received.set()

    def next_frame(self) -> PcmAudio | None:
        frame = self._tone[self._index % len(self._tone)]
        self._index += 1
        return frame

    def on_transport_closed(self) -> None:
        self.closed = True

    def summary(self) -> dict[str, Any]:
        return {
            phase: {
                "frames": len(values),
                "max_rms": max(values, default=0.0),
                "median_rms": float(np.median(values)) if values else 0.0,
                "peak_hz": dominant_hz(bytes(self.audio.get(phase, b"")), self.rate),
            }
            for phase, values in self.rms.items()
        }


class MediaLegProbe:
    """Drives the call through `WebRtcChannel` as the IVR would, and records its inputs.

    The channel plays a long 440 Hz prompt and collects DTMF with
    `next_input` until the call ends.
    """

    def __init__(self, call: WebRtcCall) -> None:
        self.channel: CallChannel = WebRtcChannel(call)
        self.phase = "start"
        self.digits: list[DtmfInput] = []
        self.digit_received = asyncio.Event()
        self.closed = False

    async def run(self) -> None:
        rate = 16_000
        samples = np.arange(60 * rate)
        prompt = PcmAudio(
            (6000 * np.sin(2 * np.pi * SERVER_TONE_HZ * samples / rate)).astype("<i2").tobytes(),
            rate,
        )
        player = asyncio.create_task(self.channel.play(prompt))
        try:
            while True:
                item = await self.channel.next_input(120)
                if isinstance(item, DtmfInput):
                    self.digits.append(item)
                    self.digit_received.set()
        except CallEnded:
            self.closed = True
        finally:
            player.cancel()
            with contextlib.suppress(CallEnded, asyncio.CancelledError):
                await player

    def summary(self) -> dict[str, Any]:
        return {}


class Harness:
    """The test's call handler, checkpoint endpoints and Chromium control."""

    def __init__(self, scenario: str, out: Path) -> None:
        self.scenario = scenario
        self.out = out
        self.legs: dict[str, ToneLeg | MediaLegProbe] = {}
        self.calls: dict[str, WebRtcCall] = {}
        self.call_states: list[str] = []
        self.presence: list[dict[str, Any]] = []
        self.checkpoints: list[str] = []
        self.server_checks: dict[str, Any] = {}
        self.results: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.server: WebRtcServer | None = None
        self.devtools: DevTools | None = None
        self.click_task: asyncio.Task[None] | None = None
        self.hangup_task: asyncio.Task[None] | None = None
        self.offer_task: asyncio.Task[WebRtcCall | None] | None = None

    # -- WebRtcCallHandler --------------------------------------------------

    async def on_call(self, call: WebRtcCall) -> None:
        if self.scenario == "caller-medialeg":
            probe = MediaLegProbe(call)
            self.legs[call.call_id] = probe
            self.calls[call.call_id] = call
            await probe.run()
        else:
            self._attach(call)
        await call.ended.wait()

    async def on_transfer(self, call: WebRtcCall, kind: TransferKind, target: str) -> bool:
        self.server_checks["transfer"] = {"kind": kind.value, "target": target}
        return True

    def on_call_state(self, call: WebRtcCall) -> None:
        self.call_states.append(call.state.value)

    def on_agent_state(self, presence: Presence) -> None:
        self.presence.append({"state": presence.state.value, "reason": presence.reason})

    def _attach(self, call: WebRtcCall) -> ToneLeg:
        leg = ToneLeg(call.transport.sample_rate, SERVER_TONE_HZ)
        call.transport.attach(leg)
        self.legs[call.call_id] = leg
        self.calls[call.call_id] = call
        return leg

    # -- page endpoints -----------------------------------------------------

    async def checkpoint(self, request: web.Request) -> web.Response:
        body = await request.json()
        name = str(body.get("name"))
        self.checkpoints.append(name)
        reply: dict[str, Any] = {}
        for leg in self.legs.values():
            leg.phase = name
        if "expected" in body:
            await self._wait_for_digits(len(str(body["expected"])))
        if body.get("hangup_by_server"):
            for leg in self.legs.values():
                if isinstance(leg, MediaLegProbe):
                    self.hangup_task = asyncio.create_task(leg.channel.hangup())
        if name in ("agent-available", "agent-second-call"):
            self.offer_task = asyncio.create_task(self._offer(len(self.legs) + 1))
        elif name in ("agent-connected", "agent-connected-2"):
            assert self.offer_task is not None
            call = await asyncio.wait_for(self.offer_task, 30)
            reply["attached"] = call is not None
            if call is not None:
                self._attach(call).phase = name
        if body.get("permission") == "denied":
            await self._deny_microphone()
        await self._screenshot(name)
        if isinstance(body.get("click"), str):
            self.click_task = asyncio.create_task(self._click(body["click"]))
        return web.json_response(reply)

    async def _offer(self, number: int) -> WebRtcCall | None:
        assert self.server is not None
        incoming = Incoming(
            call_id=f"acd-call-{number}",
            caller="+15550100",
            called="100",
            queue="billing",
            ivr_path=("main menu", "billing", "speak to agent"),
            words="my invoice is wrong",
            intent="billing",
            priority=2,
            waiting_s=42.0,
        )
        return await self.server.offer_call("alice", incoming, timeout_s=60)

    async def results_endpoint(self, request: web.Request) -> web.Response:
        body = await request.json()
        if not self.results.done():
            self.results.set_result(body)
        return web.json_response({})

    async def _wait_for_digits(self, count: int) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(15):
                for leg in self.legs.values():
                    while len(leg.digits) < count:
                        leg.digit_received.clear()
                        await leg.digit_received.wait()

    async def _screenshot(self, name: str) -> None:
        if self.devtools is None:
            return
        try:
            result = await self.devtools.call(
                "Page.captureScreenshot", {"captureBeyondViewport": True}
            )
            data = base64.b64decode(result["data"])
            (self.out / f"{self.scenario}-{name}.png").write_bytes(data)
        except Exception as exc:
            logger.warning("screenshot %s failed: %r", name, exc)

    async def _deny_microphone(self) -> None:
        """Make getUserMedia fail as it does when the user blocks the microphone.

        Fault injection: --use-fake-ui-for-media-stream grants every request,
        even after Browser.setPermission denies it, so the page's
        getUserMedia is replaced with one that rejects with NotAllowedError.
        """
        assert self.devtools is not None
        expression = (
            "navigator.mediaDevices.getUserMedia = () => Promise.reject("
            "new DOMException('Permission denied', 'NotAllowedError'))"
        )
        await self.devtools.call("Runtime.evaluate", {"expression": expression})

    async def _click(self, selector: str) -> None:
        """Click an element as a user would, so that audio playback is allowed."""
        assert self.devtools is not None
        await asyncio.sleep(0.1)
        expression = f"document.querySelector({json.dumps(selector)}).click()"
        await self.devtools.call(
            "Runtime.evaluate", {"expression": expression, "userGesture": True}
        )

    def final_report(self, page: dict[str, Any]) -> dict[str, Any]:
        return {
            "page": page,
            "checkpoints": self.checkpoints,
            "call_states": self.call_states,
            "presence": self.presence,
            "server_checks": self.server_checks,
            "legs": {
                call_id: {
                    "phases": leg.summary(),
                    "digits": "".join(d.digit for d in leg.digits),
                    "digit_durations_ms": [d.duration_ms for d in leg.digits],
                    "closed": leg.closed,
                    "rtp_digits": self.calls[call_id].transport.rtp_digits_received,
                }
                for call_id, leg in self.legs.items()
            },
        }


class DevTools:
    """A minimal Chrome DevTools protocol client for one page target."""

    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._http = http
        self._ws = ws
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, port: int) -> DevTools:
        http = aiohttp.ClientSession()
        async with asyncio.timeout(30):
            while True:
                async with http.get(f"http://127.0.0.1:{port}/json/list") as response:
                    targets = await response.json()
                pages = [t for t in targets if t.get("type") == "page"]
                if pages:
                    break
                await asyncio.sleep(0.1)
        ws = await http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)
        return cls(http, ws)

    async def _read(self) -> None:
        async for message in self._ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                continue
            body = json.loads(message.data)
            future = self._pending.pop(body.get("id", -1), None)
            if future is not None and not future.done():
                future.set_result(body)

    async def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self._next_id += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[self._next_id] = future
        await self._ws.send_json({"id": self._next_id, "method": method, "params": params})
        reply = await asyncio.wait_for(future, 30)
        if "error" in reply:
            raise RuntimeError(f"DevTools {method} failed: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def close(self) -> None:
        self._reader.cancel()
        await self._ws.close()
        await self._http.close()


async def read_devtools_port(profile: Path, timeout_s: float) -> int | None:
    marker = profile / "DevToolsActivePort"
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            # Chromium writes this file once; there is nothing to wait on but the file.
            while not marker.exists() or not marker.read_text().strip():  # noqa: ASYNC110
                await asyncio.sleep(0.1)
            return int(marker.read_text().split()[0])
    return None


async def main(scenario: str, out: Path, wav: Path, url_query: str, timeout_s: float) -> int:
    logging.basicConfig(level=logging.INFO, filename=out / f"{scenario}-server.log")
    port = free_tcp_port()
    origin = f"http://127.0.0.1:{port}"
    config = WebRtcConfig(
        allowed_origins=[origin],
        token_secret=b"browser-test-secret-0123456789abcdef",
        users={"alice": hash_password(AGENT_PASSWORD)},
        advertised_addresses=["127.0.0.1"],
        audio_rate=RATE,
        wrap_up_s=3,
    )
    harness = Harness(scenario, out)
    app = web.Application()
    harness.server = add_routes(app, config, harness)
    app.router.add_post("/test/checkpoint", harness.checkpoint)
    app.router.add_post("/test/results", harness.results_endpoint)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()

    page = "/agent" if scenario == "agent" else "/"
    with tempfile.TemporaryDirectory(
        prefix="voxgate-chromium-", ignore_cleanup_errors=True
    ) as profile:
        command = [
            "chromium",
            *CHROMIUM_FLAGS,
            f"--use-file-for-fake-audio-capture={wav}",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            f"{origin}{page}?{url_query}",
        ]
        log = (out / f"{scenario}-chromium.log").open("wb")
        browser = await asyncio.create_subprocess_exec(
            *command, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            devtools_port = await read_devtools_port(Path(profile), 30)
            if devtools_port is not None:
                harness.devtools = await DevTools.connect(devtools_port)
            try:
                page_report = await asyncio.wait_for(harness.results, timeout_s)
            except TimeoutError:
                page_report = {"ok": False, "error": f"no results from the page in {timeout_s} s"}
            await asyncio.sleep(0)
            report = harness.final_report(page_report)
            (out / f"{scenario}-result.json").write_text(json.dumps(report, indent=2, default=str))
        finally:
            if harness.devtools is not None:
                await harness.devtools.close()
            browser.terminate()
            try:
                await asyncio.wait_for(browser.wait(), 15)
            except TimeoutError:
                browser.kill()
                await browser.wait()
            log.close()
            await runner.cleanup()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("scenario", choices=["caller", "caller-medialeg", "caller-denied", "agent"])
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for results and screenshots"
    )
    parser.add_argument("--wav", type=Path, required=True, help="WAV file used as the microphone")
    parser.add_argument("--query", default="", help="extra URL query for the page's test steps")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the page")
    args = parser.parse_args()
    raise SystemExit(asyncio.run(main(args.scenario, args.out, args.wav, args.query, args.timeout)))
