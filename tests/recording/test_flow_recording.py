"""The `recording` step option: validation, the engine's events, simulate and test output."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from ivr.channel import CallerInput, RecognizerConfig
from ivr.cli import main, validate_file
from ivr.engine import IvrSession
from ivr.events import EventKind, IvrEvent
from ivr.prompts import SilentSynthesizer
from ivr.recording import CallRecordingState, next_recording_state
from ivr.simulator import simulate
from ivr.textchannel import TextChannel, scripted
from media.audio import PcmAudio
from tests.ivr.helpers import flow_from_file, flow_from_text, run_flow

DATA = Path(__file__).resolve().parents[1] / "data" / "recording"
CARD_FLOW = DATA / "flows" / "card.yaml"

FLOW_WITH = """\
flow: option
steps:
  first:
    type: say
    text: Hello.
    recording: {value}
  bye:
    type: hangup
"""


@pytest.mark.parametrize("value", ["record", "Pause", "1", "[pause]", "true"])
def test_invalid_action_is_positioned_error(tmp_path: Path, value: str) -> None:
    path = tmp_path / "option.yaml"
    path.write_text(FLOW_WITH.format(value=value))
    found = validate_file(path)
    assert len(found) == 1
    diagnostic = found[0]
    assert diagnostic.severity == "error"
    assert diagnostic.file == str(path)
    assert diagnostic.line == 6
    assert diagnostic.key == "steps.first.recording"
    assert "'start', 'stop', 'pause' or 'resume'" in diagnostic.message
    assert main(["validate", str(path)]) == 1


@pytest.mark.parametrize("value", ["start", "stop", "pause", "resume"])
def test_every_action_is_valid(tmp_path: Path, value: str) -> None:
    path = tmp_path / "option.yaml"
    path.write_text(FLOW_WITH.format(value=value))
    assert validate_file(path) == []


def test_pause_into_queue_warns() -> None:
    path = DATA / "paused_into_queue.yaml"
    found = validate_file(path)
    assert [d.severity for d in found] == ["warning"]
    assert found[0].key == "steps.card.recording"
    assert found[0].line == 9
    assert "queue step agent" in found[0].message
    assert main(["validate", str(path)]) == 0
    assert main(["validate", "--strict", str(path)]) == 1


def test_resume_before_queue_is_quiet(tmp_path: Path) -> None:
    text = (DATA / "paused_into_queue.yaml").read_text()
    fixed = text.replace(
        "    text: Thank you. An agent", "    recording: resume\n    text: Thank you. An agent"
    )
    path = tmp_path / "resumed.yaml"
    path.write_text(fixed)
    assert validate_file(path) == []


def test_state_machine_transitions() -> None:
    off, on = CallRecordingState.OFF, CallRecordingState.RECORDING
    paused, stopped = CallRecordingState.PAUSED, CallRecordingState.STOPPED
    assert next_recording_state(off, "start") is on
    assert next_recording_state(off, "pause") is off
    assert next_recording_state(on, "pause") is paused
    assert next_recording_state(paused, "pause") is paused
    assert next_recording_state(paused, "resume") is on
    assert next_recording_state(paused, "stop") is stopped
    assert next_recording_state(stopped, "start") is stopped
    with pytest.raises(ValueError, match="invalid recording action 'record'"):
        next_recording_state(on, "record")


async def test_engine_applies_option_before_prompt() -> None:
    run = await run_flow(flow_from_file(CARD_FLOW), ["#1234#"])
    kinds = [e.kind for e in run.events if e.step in ("welcome", "card", "thanks")]
    welcome = kinds[: kinds.index(EventKind.PROMPT_PLAYED) + 1]
    assert welcome == [EventKind.STEP_ENTERED, EventKind.RECORDING, EventKind.PROMPT_PLAYED]
    recorded = run.of_kind(EventKind.RECORDING)
    assert [(e.step, e.payload["action"], e.payload["state"]) for e in recorded] == [
        ("welcome", "start", "recording"),
        ("card", "pause", "paused"),
        ("thanks", "resume", "recording"),
    ]
    assert all(e.payload["changed"] for e in recorded)
    assert run.result.recording == ["recording", "paused", "recording"]
    assert run.result.variables["card_code"] == "1234"


async def test_action_that_does_not_apply_is_unchanged() -> None:
    flow = flow_from_text(
        "flow: early\nsteps:\n"
        "  first: {type: say, text: Hi., recording: pause}\n"
        "  second: {type: say, text: Again., recording: start}\n"
        "  third: {type: hangup, recording: start}\n"
    )
    run = await run_flow(flow, [])
    recorded = run.of_kind(EventKind.RECORDING)
    assert [e.payload["changed"] for e in recorded] == [False, True, False]
    assert run.result.recording == ["off", "recording", "recording"]
    assert run.result.outcome.value == "hangup"


class PlainChannel:
    """A channel without call recording: the text channel's calls, minus the recording ones."""

    def __init__(self) -> None:
        self._inner = TextChannel(scripted([]))
        self.call_id = self._inner.call_id
        self.caller = self._inner.caller
        self.called = self._inner.called
        self.speech_available = False
        self.clock = self._inner.clock

    async def play(
        self, audio: PcmAudio, *, interrupt_on_dtmf: bool = False, interrupt_on_speech: bool = False
    ) -> CallerInput | None:
        return await self._inner.play(audio)

    def listen(self, config: RecognizerConfig | None) -> None:
        self._inner.listen(config)

    async def next_input(self, timeout_s: float) -> CallerInput | None:
        return await self._inner.next_input(timeout_s)

    def clear_inputs(self) -> None:
        self._inner.clear_inputs()

    async def hangup(self) -> None:
        await self._inner.hangup()

    async def transfer(self, target: str) -> bool:
        return False


async def test_channel_without_recording_warns() -> None:
    flow = flow_from_text(
        "flow: plain\nsteps:\n  first: {type: say, text: Hi., recording: start}\n"
        "  bye: {type: hangup}\n"
    )
    channel = PlainChannel()
    events: list[IvrEvent] = []
    session = IvrSession(
        flow, channel, SilentSynthesizer(), events=events.append, clock=channel.clock
    )
    result = await session.run()
    warnings = [e.payload["message"] for e in events if e.kind is EventKind.WARNING]
    assert warnings == ["channel cannot record calls"]
    assert result.recording == []
    assert result.outcome.value == "hangup"


async def test_simulator_prints_recording_lines() -> None:
    lines = iter(["#1234#"])
    out = io.StringIO()
    await simulate(flow_from_file(CARD_FLOW), lambda: next(lines, None), out)
    transcript = out.getvalue()
    assert "  recording: start -> recording\n" in transcript
    assert "  recording: pause -> paused\n" in transcript
    assert "  recording: resume -> recording\n" in transcript
    assert "1234" not in transcript.replace("#1234#", "")


def test_script_checks_recording_states(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = DATA / "card.script.yaml"
    assert main(["test", str(CARD_FLOW), "--script", str(script)]) == 0
    assert "2 passed, 0 failed" in capsys.readouterr().out

    wrong = tmp_path / "wrong.script.yaml"
    wrong.write_text(
        script.read_text().replace("[recording, paused, recording]", "[recording, recording]")
    )
    assert main(["test", str(CARD_FLOW), "--script", str(wrong)]) == 1
    output = capsys.readouterr().out
    assert "recording states" in output
    assert "['recording', 'paused', 'recording']" in output
