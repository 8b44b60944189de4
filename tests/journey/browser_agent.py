"""The real browser pages (/agent and /) in headless Chromium, driven over DevTools.

The pages are used as a person would. The test fills the agent's sign-in
form, clicks the state and call buttons and reads the caller context of the
ringing call. It reads the page's remote audio meter (a WebAudio
AnalyserNode) to hear the other side. Chromium's fake microphone plays a
WAV file, which is how the other side hears the page. Run it only inside a
loopback-only network namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.webrtc.browser_harness import CHROMIUM_FLAGS, DevTools, read_devtools_port

# Element ids after "ctx-" on the agent page; the context keys use "_" for "-".
CONTEXT_FIELDS = (
    "caller",
    "queue",
    "path",
    "words",
    "intent",
    "sentiment",
    "priority",
    "priority-reason",
    "waiting",
)


class BrowserAgentError(RuntimeError):
    """The page did not reach the expected state in time, or Chromium failed to start."""


AGENT_METER = "window.voxgate.state.call?.remoteMeter"
CALLER_METER = "window.voxgate.call?.remoteMeter"


class BrowserAgent:
    """One Chromium with a VoxGate page open (agent or caller); an async context manager."""

    def __init__(self, url: str, microphone: Path, log_path: Path) -> None:
        self.url = url
        self.microphone = microphone
        self.log_path = log_path
        self._profile = tempfile.TemporaryDirectory(
            prefix="voxgate-agent-", ignore_cleanup_errors=True
        )
        self._browser: asyncio.subprocess.Process | None = None
        self._devtools: DevTools | None = None

    async def __aenter__(self) -> BrowserAgent:
        profile = Path(self._profile.name)
        command = [
            "chromium",
            *CHROMIUM_FLAGS,
            f"--use-file-for-fake-audio-capture={self.microphone}",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            self.url,
        ]
        with self.log_path.open("wb") as log:
            self._browser = await asyncio.create_subprocess_exec(
                *command, stdout=log, stderr=subprocess.STDOUT
            )
        port = await read_devtools_port(profile, 30)
        if port is None:
            raise BrowserAgentError("Chromium did not open its DevTools port within 30 s")
        self._devtools = await DevTools.connect(port)
        await self.wait_for("document.readyState === 'complete' && !!window.voxgate", 30)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._devtools is not None:
            await self._devtools.close()
        if self._browser is not None and self._browser.returncode is None:
            self._browser.terminate()
            try:
                await asyncio.wait_for(self._browser.wait(), 15)
            except TimeoutError:
                self._browser.kill()
                await self._browser.wait()
        self._profile.cleanup()

    async def evaluate(self, expression: str, *, gesture: bool = False) -> Any:
        """Evaluate `expression` in the page and return its JSON value."""
        assert self._devtools is not None
        reply = await self._devtools.call(
            "Runtime.evaluate",
            {
                "expression": expression,
                "returnByValue": True,
                "awaitPromise": True,
                "userGesture": gesture,
            },
        )
        if "exceptionDetails" in reply:
            raise BrowserAgentError(f"page script failed: {reply['exceptionDetails']}")
        return reply.get("result", {}).get("value")

    async def wait_for(self, expression: str, timeout_s: float) -> Any:
        """Poll `expression` until it is truthy; raise BrowserAgentError after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(BrowserAgentError):
                value = await self.evaluate(expression)
                if value:
                    return value
            await asyncio.sleep(0.1)
        raise BrowserAgentError(f"timed out after {timeout_s} s waiting for {expression}")

    async def click(self, element_id: str) -> None:
        """Click a page element as a user would (a user gesture, so audio may play)."""
        await self.evaluate(
            f"document.getElementById({json.dumps(element_id)}).click()", gesture=True
        )

    async def presence(self) -> str:
        value = await self.evaluate("window.voxgate.state.presence?.state || ''")
        return str(value)

    async def wait_presence(self, state: str, timeout_s: float = 15) -> None:
        await self.wait_for(
            f"window.voxgate.state.presence?.state === {json.dumps(state)}", timeout_s
        )

    async def login(self, user: str, password: str) -> None:
        await self.evaluate(
            f"document.getElementById('user').value = {json.dumps(user)};"
            f"document.getElementById('password').value = {json.dumps(password)};"
        )
        await self.click("login")
        await self.wait_presence("away")

    async def wait_incoming(self, timeout_s: float) -> dict[str, str]:
        """Wait for the ringing call and return the caller context the page shows."""
        await self.wait_for(
            "!document.getElementById('incoming').classList.contains('hidden')", timeout_s
        )
        fields = ", ".join(
            f"{json.dumps(name.replace('-', '_'))}: "
            f"document.getElementById('ctx-{name}').textContent"
            for name in CONTEXT_FIELDS
        )
        context: dict[str, str] = await self.evaluate(f"({{{fields}}})")
        return context

    async def wait_connected(self, timeout_s: float) -> None:
        await self.wait_for("window.voxgate.state.callState === 'connected'", timeout_s)

    async def answer_next_call(self, incoming_timeout_s: float = 30) -> dict[str, str]:
        """Set the agent page available, answer its next ring and wait until it connects.

        Returns the caller context the page showed while ringing.
        """
        await self.click("set-available")
        context = await self.wait_incoming(incoming_timeout_s)
        await self.click("answer")
        await self.wait_connected(20)
        return context

    async def start_caller_call(self, connect_timeout_s: float = 20) -> None:
        """Click Call on the caller page once its session is open, then wait until it connects."""
        await self.wait_for("window.voxgateEvents.includes('session')", 15)
        await self.click("call")
        await self.wait_for(
            "window.voxgateEvents.includes('call_state:connected')", connect_timeout_s
        )

    async def heard_tone_s(
        self, frequency_hz: float, seconds: float, timeout_s: float, meter: str = AGENT_METER
    ) -> float:
        """Sample the remote meter every 100 ms until the tone was heard for `seconds`."""
        expression = f"(() => {{ const m = {meter}; return m ? [m.rms(), m.peakHz()] : null; }})()"
        heard = 0.0
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and heard < seconds:
            sample = await self.evaluate(expression)
            if sample is not None and sample[0] > 0.01 and abs(sample[1] - frequency_hz) <= 60:
                heard += 0.1
            await asyncio.sleep(0.1)
        return round(heard, 1)

    async def heard_sound_s(
        self, seconds: float, timeout_s: float, meter: str = AGENT_METER
    ) -> float:
        """Sample the remote meter every 100 ms until it was above 1 % RMS for `seconds`."""
        expression = f"(() => {{ const m = {meter}; return m ? m.rms() : null; }})()"
        heard = 0.0
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and heard < seconds:
            level = await self.evaluate(expression)
            if level is not None and level > 0.01:
                heard += 0.1
            await asyncio.sleep(0.1)
        return round(heard, 1)

    async def call_ended(self, timeout_s: float) -> None:
        await self.wait_for("window.voxgate.state.call === null", timeout_s)
