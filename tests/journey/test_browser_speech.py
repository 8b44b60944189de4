"""A browser caller replies to a Korean IVR gather by voice and by keypad.

The real caller page at / runs in headless Chromium, whose fake microphone
plays a WAV file, and dials the `browser_speech` flow on a `voxgate serve`
node. The node recognizes the caller's word with the Vosk Korean model
(grammar mode) or takes the page's keypad digit, and the flow hangs up from
a step that differs per answer. The test reads what the node did from its
event stream (`/api/events/ws` with the API token).

Run as a script, this module is the part that runs inside a loopback-only
network namespace; the tests start it there with `unshare -n`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from media.resample import resample
from media.tts import EspeakSynthesizer
from tests.journey.browser_agent import BrowserAgent
from tests.support.events import EventSocket
from tests.support.namespace import run_in_namespace
from tests.support.node import REPOSITORY, voxgate_node
from tests.support.wav import silence, write_wav

FLOWS = REPOSITORY / "tests" / "data" / "journey" / "browser_flows"
NUMBER = "2910"
API_TOKEN = "browser-speech-api-token"
SPOKEN_WORD = "환불"
KEYPAD_DIGIT = "2"
MICROPHONE_RATE = 48_000
SESSION_TIMEOUT_S = 120.0

pytestmark = [pytest.mark.peer, pytest.mark.slow, pytest.mark.timeout(300)]

logger = logging.getLogger("browser_speech")


def node_settings() -> dict[str, Any]:
    return {
        "ivr": {"flows_dir": str(FLOWS), "default_flow": "browser_speech"},
        "api": {"token": API_TOKEN},
        "webrtc": {"token_secret": "browser-speech-test-secret-browser-speech"},
    }


def word_microphone(work_dir: Path, word: str) -> Path:
    """Write a microphone WAV of 1.5 s of silence, the word, then 1.5 s of silence.

    Chromium plays the file in a loop, so the caller says the word again
    every few seconds: whenever the gather starts listening, and again after
    a re-prompt, a whole word follows within one loop.
    """
    spoken = EspeakSynthesizer().synthesize_blocking(word, voice="ko")
    samples = np.frombuffer(resample(spoken, MICROPHONE_RATE).pcm, dtype="<i2")
    parts = [silence(1.5, MICROPHONE_RATE), samples, silence(1.5, MICROPHONE_RATE)]
    return write_wav(work_dir / "caller-word.wav", np.concatenate(parts), MICROPHONE_RATE)


def ask_prompts(stream: EventSocket) -> int:
    return sum(
        1 for event in stream.of_kind("ivr.prompt_played") if event["payload"]["step"] == "ask"
    )


async def press_key_on_each_prompt(page: BrowserAgent, stream: EventSocket) -> int:
    """Press the keypad key after each prompt of the gather until the call ends.

    The gather listens once `ivr.prompt_played` arrives. Pressing again after
    a re-prompt covers a digit lost under load. Returns the number of presses.
    """
    presses = 0
    deadline = time.monotonic() + SESSION_TIMEOUT_S
    while not stream.of_kind("call.ended") and time.monotonic() < deadline:
        if ask_prompts(stream) > presses:
            button = f'#keypad button[data-key="{KEYPAD_DIGIT}"]'
            await page.evaluate(f"document.querySelector('{button}').click()", gesture=True)
            presses += 1
        await stream.wait_change(1.0)
    return presses


async def run_case(case: str, work_dir: Path, report: dict[str, Any]) -> None:
    """Run one call and fill `report` as it goes, so a failed wait still shows the events."""
    if case == "speech":
        microphone = word_microphone(work_dir, SPOKEN_WORD)
    else:
        microphone = write_wav(
            work_dir / "caller-silence.wav", silence(3.0, MICROPHONE_RATE), MICROPHONE_RATE
        )
    with voxgate_node(work_dir, node_settings()) as node:
        stream = EventSocket(node, "ivr.*,call.*", API_TOKEN)
        report["events"] = stream.events
        await stream.open()
        try:
            # A file microphone has no echo to cancel, and echo cancellation
            # would cut the word while a prompt plays.
            url = f"http://127.0.0.1:{node.http_port}/?to={NUMBER}&audio_processing=off"
            async with BrowserAgent(url, microphone, work_dir / "chromium.log") as page:
                await page.start_caller_call(30)
                if case == "keypad":
                    report["presses"] = await press_key_on_each_prompt(page, stream)
                # The hangup step ends the call from the node's side, so the
                # page receives a hangup message it did not ask for.
                await page.wait_for("window.voxgateEvents.includes('hangup')", SESSION_TIMEOUT_S)
                await stream.wait("call.ended", 30)
                report["page_status"] = await page.evaluate(
                    "document.getElementById('status').dataset.state"
                )
        finally:
            await stream.close()
            report["node_log_tracebacks"] = node.log().count("Traceback")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("case", choices=["speech", "keypad"])
    parser.add_argument("--out", type=Path, required=True, help="folder for the report and logs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    work_dir = args.out / args.case
    work_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"case": args.case}
    try:
        asyncio.run(asyncio.wait_for(run_case(args.case, work_dir, report), 240))
    except Exception as exc:
        logger.exception("browser speech case %s failed", args.case)
        report["error"] = f"{type(exc).__name__}: {exc}"
    (args.out / f"{args.case}-result.json").write_text(
        json.dumps(report, indent=2, ensure_ascii=False, default=str), encoding="utf-8"
    )
    return 0


def run_isolated(case: str, out: Path) -> dict[str, Any]:
    """Run this module's `main` for `case` in a loopback-only network namespace."""
    args = [case, "--out", str(out)]
    return run_in_namespace(
        "tests.journey.test_browser_speech",
        args,
        out / f"{case}-result.json",
        timeout_s=280,
        tools=["chromium"],
    )


def only(events: list[dict[str, Any]], kind: str, **payload: Any) -> list[dict[str, Any]]:
    return [
        event
        for event in events
        if event["kind"] == kind
        and all(event["payload"].get(key) == value for key, value in payload.items())
    ]


def steps_entered(events: list[dict[str, Any]]) -> list[str]:
    return [event["payload"]["step"] for event in only(events, "ivr.step_entered")]


@pytest.fixture(scope="module")
def speech_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run_isolated("speech", tmp_path_factory.mktemp("browser-speech"))


@pytest.fixture(scope="module")
def keypad_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run_isolated("keypad", tmp_path_factory.mktemp("browser-keypad"))


def check_hung_up_in_step(report: dict[str, Any], step: str, other_step: str) -> None:
    events = report["events"]
    steps = steps_entered(events)
    assert steps[0] == "ask"
    assert steps[-1] == step
    assert other_step not in steps
    goodbye = only(events, "ivr.prompt_played", step=step)
    assert len(goodbye) == 1
    assert goodbye[0]["payload"]["interrupted"] is False
    assert len(only(events, "call.ended")) == 1
    assert report["node_log_tracebacks"] == 0


def test_spoken_word_recognized_in_grammar(speech_report: dict[str, Any]) -> None:
    events = speech_report["events"]
    started = only(events, "call.started")
    assert len(started) == 1
    assert started[0]["payload"]["channel"] == "webrtc"
    assert started[0]["payload"]["called"] == NUMBER

    inputs = only(events, "ivr.input_received", step="ask")
    assert inputs, "the gather received no input"
    final = inputs[-1]["payload"]
    assert final["mode"] == "speech"
    assert final["value"] == SPOKEN_WORD
    assert final["confidence"] > 0


def test_spoken_word_takes_refund_branch(speech_report: dict[str, Any]) -> None:
    results = only(speech_report["events"], "ivr.gather_result", step="ask")
    assert results, "the gather produced no result"
    final = results[-1]["payload"]
    assert final["result"] == "match"
    assert final["value"] == SPOKEN_WORD
    assert final["target"] == "refund"
    check_hung_up_in_step(speech_report, "refund", "agent")


def test_keypad_digit_takes_agent_branch(keypad_report: dict[str, Any]) -> None:
    events = keypad_report["events"]
    assert keypad_report["presses"] >= 1

    inputs = only(events, "ivr.input_received", step="ask")
    assert inputs, "the gather received no input"
    assert inputs[-1]["payload"]["mode"] == "dtmf"
    assert inputs[-1]["payload"]["value"] == KEYPAD_DIGIT

    results = only(events, "ivr.gather_result", step="ask")
    assert results, "the gather produced no result"
    assert results[-1]["payload"]["result"] == "match"
    assert results[-1]["payload"]["target"] == "agent"
    check_hung_up_in_step(keypad_report, "agent", "refund")


def test_hangup_step_ends_browser_session(speech_report: dict[str, Any]) -> None:
    events = speech_report["events"]
    ended = only(events, "ivr.session_ended")
    assert len(ended) == 1
    assert ended[0]["payload"]["outcome"] == "hangup"
    assert ended[0]["payload"]["reason"] == "refund"
    assert only(events, "call.ended")[0]["payload"]["reason"] != "caller_hangup"


if __name__ == "__main__":
    raise SystemExit(main())
