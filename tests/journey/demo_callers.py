"""The callers of `make demo` and the node's event stream they are driven by.

Each caller is a real client: baresip for SIP callers, who press keys or
speak a Korean word that the node recognizes with the Vosk Korean model,
and the caller page at / in headless Chromium for the browser caller. A
caller that presses keys waits for the node's `ivr.step_entered` event of
the menu step before it presses, and presses again after each re-prompt, so
no fixed delay decides whether a key arrives in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from media.resample import resample
from media.tts import EspeakSynthesizer
from tests.journey.browser_agent import BrowserAgent
from tests.support.baresip import BaresipClient
from tests.support.node import RunningNode
from tests.support.wav import silence, tone, write_wav

KEYS_NUMBER = "2001"  # contact_center_demo: the contact center, open at any hour
KOREAN_NUMBER = "2082"  # contact_center_ko
MENU_STEP = "main"
CALLER_TONE_HZ = 600.0
SIP_RATE = 8000
BROWSER_RATE = 48_000
MAX_CALL_S = 150.0
MAX_MENU_PRESSES = 3


@dataclass(frozen=True, slots=True)
class CallerSpec:
    """One demo caller: how it calls (`kind`), where, from which number and its menu choice.

    `kind` is `sip_keys` (baresip pressing `digits`), `sip_speech` (baresip
    saying `word`) or `browser_speech` (the caller page saying `word`). A
    browser caller has no number of its own: the node gives it a guest id.
    """

    name: str
    kind: str
    number: str
    caller_id: str = ""
    digits: str = ""
    word: str = ""


# Dialed together first; none of them has a priority above 1.
NORMAL_CALLERS = (
    CallerSpec("keys-billing", "sip_keys", KEYS_NUMBER, "+15550100001", digits="1"),
    CallerSpec("speech-billing", "sip_speech", KOREAN_NUMBER, "+821055500002", word="요금"),
    CallerSpec("browser-agent", "browser_speech", KOREAN_NUMBER, word="상담원"),
)
# Dialed together once every normal caller waits: the flow gives the payment
# menu choice priority 5 and a caller on its VIP number list priority 7.
PRIORITY_CALLERS = (
    CallerSpec("keys-payment", "sip_keys", KEYS_NUMBER, "+15550100002", digits="5"),
    CallerSpec("vip-billing", "sip_keys", KEYS_NUMBER, "+15550100099", digits="1"),
)


class EventLog:
    """The node's live events from `GET /api/events` (SSE), read by a background task."""

    def __init__(self, base: str, token: str) -> None:
        self.url = f"{base}/api/events?kinds=acd.*,call.*,ivr.*"
        self.token = token
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Condition()
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> EventLog:
        self._task = asyncio.create_task(self._read())
        await asyncio.wait_for(self._connected.wait(), 10)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _read(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        timeout = aiohttp.ClientTimeout(total=None)
        async with (
            aiohttp.ClientSession() as http,
            http.get(self.url, headers=headers, timeout=timeout) as response,
        ):
            response.raise_for_status()
            self._connected.set()
            async for raw in response.content:
                line = raw.decode().strip()
                if not line.startswith("data:"):
                    continue
                async with self._changed:
                    self.events.append(json.loads(line.removeprefix("data:")))
                    self._changed.notify_all()

    def of_call(self, call_id: str, kind: str, **payload: Any) -> list[dict[str, Any]]:
        """Return the events of `kind` for `call_id` whose payload has the given values."""
        return [
            event
            for event in self.events
            if event["kind"] == kind
            and event["call_id"] == call_id
            and all(event["payload"].get(key) == value for key, value in payload.items())
        ]

    async def wait_for(self, probe: Callable[[], Any], timeout_s: float, what: str) -> Any:
        """Wait until `probe()` returns something truthy, then return it.

        Raises TimeoutError that names `what` after `timeout_s`.
        """
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(probe), timeout_s)
            except TimeoutError:
                raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}") from None
        return probe()

    async def wait_call_id(self, timeout_s: float, **payload: str) -> str:
        """Wait for the `call.started` event whose payload has the given values and return its id.

        A browser caller's guest id is not known before it calls, so the demo
        finds its call by `channel` and `called` number.
        """

        def find() -> str | None:
            for event in self.events:
                values = event["payload"]
                if event["kind"] == "call.started" and all(
                    values.get(key) == value for key, value in payload.items()
                ):
                    return str(event["call_id"])
            return None

        found: str = await self.wait_for(find, timeout_s, f"call.started with {payload}")
        return found

    def joined(self, call_id: str) -> dict[str, Any] | None:
        found = self.of_call(call_id, "acd.caller_joined")
        return found[0] if found else None

    def first_time(self, kind: str, call_id: str) -> float | None:
        found = self.of_call(call_id, kind)
        return float(found[0]["time"]) if found else None


@dataclass
class CallerRun:
    """What the demo measured and kept about one caller while it ran."""

    spec: CallerSpec
    call_id: str = ""
    caller: str = ""
    setup_s: float | None = None
    presses: int = 0
    phone: BaresipClient | None = None
    page: BrowserAgent | None = None
    latency: dict[str, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def spoken_word(word: str, rate: int) -> np.ndarray[Any, np.dtype[np.int16]]:
    """Return `word` spoken by espeak-ng's Korean voice at `rate`."""
    spoken = EspeakSynthesizer().synthesize_blocking(word, voice="ko")
    return np.frombuffer(resample(spoken, rate).pcm, dtype="<i2")


def sip_microphone(work_dir: Path, spec: CallerSpec) -> Path:
    """Write the WAV a SIP caller sends: a 600 Hz tone, or its word every 3 s.

    The word repeats, so the menu hears it whenever it listens (also after a
    re-prompt), and the agent hears it later as the caller's voice.
    """
    path = work_dir / f"microphone-{spec.name}.wav"
    if spec.kind == "sip_keys":
        return write_wav(path, tone(CALLER_TONE_HZ, MAX_CALL_S, SIP_RATE, amplitude=0.2), SIP_RATE)
    word = spoken_word(spec.word, SIP_RATE)
    gap = silence(max(0.5, 3.0 - len(word) / SIP_RATE), SIP_RATE)
    parts = [silence(2.0, SIP_RATE)]
    while sum(len(part) for part in parts) < MAX_CALL_S * SIP_RATE:
        parts += [word, gap]
    return write_wav(path, np.concatenate(parts), SIP_RATE)


def browser_microphone(work_dir: Path, spec: CallerSpec) -> Path:
    """Write the WAV Chromium plays in a loop as the browser caller's microphone."""
    word = spoken_word(spec.word, BROWSER_RATE)
    parts = [silence(1.5, BROWSER_RATE), word, silence(1.5, BROWSER_RATE)]
    path = work_dir / f"microphone-{spec.name}.wav"
    return write_wav(path, np.concatenate(parts), BROWSER_RATE)


def start_sip_call(
    work_dir: Path, spec: CallerSpec, node: RunningNode, runs: list[CallerRun]
) -> CallerRun:
    """Start baresip, dial and wait until the node answers. It blocks, so run it in a thread."""
    phone = BaresipClient(
        work_dir,
        user=spec.caller_id,
        microphone=sip_microphone(work_dir, spec),
        max_call_s=MAX_CALL_S,
        capture_rtp=True,
    )
    run = CallerRun(spec, caller=spec.caller_id, phone=phone)
    runs.append(run)
    phone.start()
    started = time.monotonic()
    phone.dial(f"sip:{spec.number}@127.0.0.1:{node.sip_port}")
    run.setup_s = round(phone.wait_established(15) - started, 3)
    return run


async def press_at_menu(run: CallerRun, events: EventLog, timeout_s: float) -> None:
    """Press the caller's digits once the menu starts, and again after each re-prompt."""
    assert run.phone is not None
    phone = run.phone
    deadline = time.monotonic() + timeout_s

    def menu_turns() -> int:
        # `ivr.step_entered` names a subflow's step with the subflow's name in
        # front ("contact_center/main"); the other events name the step alone.
        entered = [
            event
            for event in events.of_call(run.call_id, "ivr.step_entered")
            if event["payload"].get("step", "").split("/")[-1] == MENU_STEP
        ]
        retried = [
            result
            for result in events.of_call(run.call_id, "ivr.gather_result", step=MENU_STEP)
            if result["payload"].get("result") != "match"
        ]
        return len(entered) + len(retried)

    def menu_changed() -> bool:
        return left_menu() or menu_turns() > run.presses

    def left_menu() -> bool:
        return bool(
            events.of_call(run.call_id, "call.queued")
            or events.of_call(run.call_id, "ivr.session_ended")
        )

    while not left_menu():
        if run.presses >= MAX_MENU_PRESSES:
            raise RuntimeError(f"{run.spec.name}: the menu took none of {run.presses} key presses")
        remaining = deadline - time.monotonic()
        await events.wait_for(menu_changed, remaining, f"{run.spec.name}'s menu")
        if left_menu():
            return
        await asyncio.to_thread(phone.send_digits, run.spec.digits)
        run.presses += 1


async def start_browser_call(
    work_dir: Path, spec: CallerSpec, node: RunningNode, events: EventLog, runs: list[CallerRun]
) -> CallerRun:
    """Open the caller page in Chromium, click Call and wait until the call connects."""
    # The microphone is a file and the page has no speaker, so there is no
    # echo to cancel; Chromium's echo cancellation would cut the word while
    # the menu prompt plays (see microphoneConstraints in softphone.js).
    url = f"http://127.0.0.1:{node.http_port}/?to={spec.number}&audio_processing=off"
    log_path = work_dir / f"chromium-{spec.name}.log"
    page = BrowserAgent(url, browser_microphone(work_dir, spec), log_path)
    run = CallerRun(spec, page=page)
    runs.append(run)
    await page.__aenter__()
    await page.wait_for("window.voxgateEvents.includes('session')", 15)
    started = time.monotonic()
    await page.click("call")
    await page.wait_for("window.voxgateEvents.includes('call_state:connected')", 30)
    run.setup_s = round(time.monotonic() - started, 3)
    run.call_id = await events.wait_call_id(10, channel="webrtc", called=spec.number)
    started_event = events.of_call(run.call_id, "call.started")[0]
    run.caller = str(started_event["payload"]["caller"])
    return run


async def call_into_queue(
    work_dir: Path, spec: CallerSpec, node: RunningNode, events: EventLog, runs: list[CallerRun]
) -> None:
    """Place one caller's call and return once the node has put it in a queue.

    The run is appended to `runs` before its client starts, so the demo
    stops the client even when a later wait fails.
    """
    if spec.kind == "browser_speech":
        run = await start_browser_call(work_dir, spec, node, events, runs)
    else:
        run = await asyncio.to_thread(start_sip_call, work_dir, spec, node, runs)
        run.call_id = await events.wait_call_id(10, channel="sip", caller=spec.caller_id)
        if spec.kind == "sip_keys":
            await press_at_menu(run, events, 60)
    await events.wait_for(lambda: events.joined(run.call_id), 60, f"{spec.name} in a queue")


async def stop_callers(runs: list[CallerRun]) -> None:
    for run in runs:
        if run.phone is not None:
            await asyncio.to_thread(run.phone.stop)
        if run.page is not None:
            await run.page.__aexit__(None, None, None)
