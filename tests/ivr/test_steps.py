"""Each step kind run by the engine on the text channel."""

from __future__ import annotations

import datetime as dt
import logging
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ivr.channel import CallerInput, RecognizerConfig
from ivr.engine import IvrSession, Outcome
from ivr.events import EventKind, IvrEvent
from ivr.prompts import SilentSynthesizer
from ivr.services import QueueError, QueuePlacement, QueueRequest, Recording
from ivr.textchannel import TextChannel, parse_turn, scripted
from media.audio import PcmAudio
from tests.ivr.helpers import flow_from_text, run_flow

HANDLERS = "    on: {no_input: bye, no_match: bye}\n"
BYE = "  bye: {type: hangup}\n"


async def test_gather_collects_digits_until_terminator() -> None:
    flow = flow_from_text(
        "flow: t\nsteps:\n"
        "  ask:\n    type: gather\n    prompt: Enter your order number.\n"
        "    dtmf: {max_digits: 8, terminator: '#'}\n    into: order\n"
        "    on: {no_input: bye, no_match: bye}\n"
        "  done: {type: say, text: 'Order {{ order }}.', next: bye}\n" + BYE
    )
    run = await run_flow(flow, ["#1234#"])
    assert run.result.variables["order"] == "1234"
    assert run.result.path == ["ask", "done", "bye"]
    assert run.result.prompts[-1] == "Order 1234."


async def test_gather_inter_digit_timeout_ends_entry() -> None:
    flow = flow_from_text(
        "flow: t\nsteps:\n  ask:\n    type: gather\n    dtmf: {max_digits: 6}\n    into: n\n"
        + HANDLERS
        + "  done: {type: say, text: ok, next: bye}\n"
        + BYE
    )
    run = await run_flow(flow, ["#42", None])
    assert run.result.variables["n"] == "42"


async def test_gather_pattern_mismatch_reprompts() -> None:
    flow = flow_from_text(
        "flow: t\nsteps:\n  ask:\n    type: gather\n    prompt: Six digits please.\n"
        "    dtmf: {max_digits: 6, pattern: '[0-9]{6}'}\n    retries: 1\n"
        "    no_match_prompt: That was not six digits.\n    into: n\n"
        + HANDLERS
        + "  done: {type: say, text: ok, next: bye}\n"
        + BYE
    )
    run = await run_flow(flow, ["#12#", "#123456"])
    assert run.result.prompts[:2] == ["Six digits please.", "That was not six digits."]
    assert run.result.variables["n"] == "123456"
    results = [e.payload["result"] for e in run.of_kind(EventKind.GATHER_RESULT)]
    assert results == ["no_match", "match"]


async def test_gather_retries_exhausted_goes_to_no_match() -> None:
    flow = flow_from_text(
        "flow: t\nsteps:\n  ask:\n    type: gather\n    dtmf: {max_digits: 1}\n    retries: 2\n"
        "    on: {'1': bye, no_input: bye, no_match: sorry}\n"
        "  sorry: {type: say, text: sorry, next: bye}\n" + BYE
    )
    run = await run_flow(flow, ["#9", "#8", "#7"])
    assert run.result.path == ["ask", "sorry", "bye"]
    assert len(run.of_kind(EventKind.GATHER_RESULT)) == 3


async def test_gather_arms_phrase_list() -> None:
    flow = flow_from_text(
        "flow: t\nsteps:\n  ask:\n    type: gather\n    prompt: Say yes or no.\n"
        "    speech: {phrases: [yes, no], language: en-US}\n"
        "    on: {yes: y, no: n, no_input: bye, no_match: bye}\n"
        "  y: {type: say, text: agreed, next: bye}\n  n: {type: say, text: declined, next: bye}\n"
        + BYE
    )
    run = await run_flow(flow, ["No."])
    assert run.result.path == ["ask", "n", "bye"]
    assert run.channel is not None
    armed = [c for c in run.channel.recognizer_history if c is not None]
    assert armed[0].phrases == ("yes", "no")
    assert armed[0].language == "en-US"


async def test_gather_low_confidence_is_no_match() -> None:
    flow = flow_from_text(
        "flow: t\nsteps:\n  ask:\n    type: gather\n"
        "    speech: {phrases: [yes], min_confidence: 0.95}\n    retries: 0\n"
        "    on: {yes: bye, no_input: bye, no_match: low}\n"
        "  low: {type: say, text: low, next: bye}\n" + BYE
    )
    run = await run_flow(flow, ["yes"])
    assert run.result.path == ["ask", "low", "bye"]


async def test_dtmf_barge_in_interrupts_prompt() -> None:
    flow = flow_from_text(
        "flow: t\nsteps:\n  ask:\n    type: gather\n    prompt: A long menu prompt.\n"
        "    dtmf: {max_digits: 1}\n    barge_in: dtmf\n"
        "    on: {'3': three, no_input: bye, no_match: bye}\n"
        "  three: {type: say, text: three, next: bye}\n" + BYE
    )
    channel = TextChannel(scripted(["#3"]))
    channel.pending.extend(parse_turn("#3"))
    events: list[object] = []
    session = IvrSession(
        flow, channel, SilentSynthesizer(), events=events.append, clock=channel.clock
    )
    result = await session.run()
    assert result.path == ["ask", "three", "bye"]
    played = [e for e in events if getattr(e, "kind", None) is EventKind.PROMPT_PLAYED]
    assert played[0].payload["interrupted"] is True  # type: ignore[attr-defined]


async def test_menu_press_or_say() -> None:
    text = (
        "flow: t\nsteps:\n  main:\n    type: menu\n    prompt: Press 1 or say billing.\n"
        "    options:\n      - {key: 1, phrases: [billing, bill], goto: billing}\n"
        "      - {key: 2, phrases: [support], goto: support}\n"
        "    on: {no_input: bye, no_match: bye}\n"
        "  billing: {type: say, text: billing, next: bye}\n"
        "  support: {type: say, text: support, next: bye}\n" + BYE
    )
    flow = flow_from_text(text)
    by_key = await run_flow(flow, ["#2"])
    by_voice = await run_flow(flow, ["I have a question about my bill"])
    assert by_key.result.path == ["main", "support", "bye"]
    assert by_voice.result.path == ["main", "billing", "bye"]


async def test_set_and_branch_on_variables() -> None:
    flow = flow_from_text(
        "flow: t\nvariables: {tier: gold}\nsteps:\n"
        "  s:\n    type: set\n    values: {greeting: 'Hi {{ tier | upper }}', count: 3}\n"
        "  b:\n    type: branch\n    cases:\n"
        "      - {if: {var: count, gt: 5}, goto: many}\n"
        "      - {if: {all: [{var: tier, in: [gold, platinum]}, {var: count, ge: 3}]}, goto: vip}\n"
        "    otherwise: bye\n"
        "  many: {type: say, text: many, next: bye}\n"
        "  vip: {type: say, text: '{{ greeting }}', next: bye}\n" + BYE
    )
    run = await run_flow(flow, [])
    assert run.result.path == ["s", "b", "vip", "bye"]
    assert run.result.variables["count"] == 3
    assert run.result.prompts == ["Hi GOLD"]


async def test_branch_on_time_of_day_and_caller() -> None:
    text = (
        "flow: t\nsteps:\n  b:\n    type: branch\n    cases:\n"
        "      - if:\n          caller: {prefix: ['+1555']}\n"
        "          time: {between: '09:00-17:00', days: [mon, tue, wed, thu, fri],"
        " timezone: America/New_York}\n        goto: open\n"
        "    otherwise: closed\n"
        "  open: {type: say, text: open, next: bye}\n"
        "  closed: {type: say, text: closed, next: bye}\n" + BYE
    )
    flow = flow_from_text(text)
    monday_noon_ny = dt.datetime(2026, 12, 7, 17, 0, tzinfo=dt.UTC)
    sunday_noon_ny = dt.datetime(2026, 12, 6, 17, 0, tzinfo=dt.UTC)
    monday_night_ny = dt.datetime(2026, 12, 8, 3, 0, tzinfo=dt.UTC)
    open_run = await run_flow(flow, [], now=lambda: monday_noon_ny)
    assert open_run.result.path == ["b", "open", "bye"]
    for moment in (sunday_noon_ny, monday_night_ny):
        run = await run_flow(flow, [], now=lambda moment=moment: moment)
        assert run.result.path == ["b", "closed", "bye"]
    other_caller = await run_flow(
        flow, [], now=lambda: monday_noon_ny, channel_options={"caller": "+4420"}
    )
    assert other_caller.result.path == ["b", "closed", "bye"]


@dataclass
class RecordingQueue:
    placement: QueuePlacement = field(default_factory=lambda: QueuePlacement(3, 240.0))
    requests: list[QueueRequest] = field(default_factory=list)
    reject: bool = False

    async def enqueue(self, call_id: str, request: QueueRequest) -> QueuePlacement:
        if self.reject:
            raise QueueError("queue full")
        self.requests.append(request)
        return self.placement


QUEUE_FLOW = (
    "flow: t\nvariables: {dept: sales}\nsteps:\n"
    "  q:\n    type: queue\n    queue: '{{ dept }}'\n    priority: 1\n"
    "    skills: ['{{ language }}']\n"
    "    rules:\n"
    "      - {if: {caller: {in: ['+15550100099']}}, priority: 8, skills: [vip], reason: vip}\n"
    "      - {if: {var: intent, eq: payment}, priority: 5}\n"
    "    announcement: 'You are number {{ queue.position }}, about {{ queue.wait_minutes }}"
    " minutes.'\n"
    "    on_error: full\n"
    "  full: {type: hangup, prompt: All lines are busy.}\n"
)


async def test_queue_priority_from_vip_and_intent() -> None:
    flow = flow_from_text(QUEUE_FLOW)
    queue = RecordingQueue()
    run = await run_flow(
        flow,
        [],
        queue=queue,
        channel_options={"caller": "+15550100099"},
    )
    assert run.result.outcome is Outcome.QUEUED
    request = run.result.queue_request
    assert request is not None
    assert request.priority == 8
    assert request.skills == ("en-US", "vip")
    assert request.reason == "vip"
    assert request.attributes == {"caller": "+15550100099", "flow": "t", "language": "en-US"}
    assert queue.requests == [request]
    assert run.result.prompts == ["You are number 3, about 4 minutes."]


async def test_queue_without_service_returns_request() -> None:
    run = await run_flow(flow_from_text(QUEUE_FLOW), [])
    assert run.result.outcome is Outcome.QUEUED
    assert run.result.queue_request is not None
    assert run.result.queue_request.queue == "sales"
    assert run.result.queue_request.priority == 1
    assert run.result.queue_request.reason == "queue"
    assert run.result.prompts == []


async def test_queue_context_templates_for_agent() -> None:
    flow = flow_from_text(
        QUEUE_FLOW.replace(
            "    on_error: full\n",
            "    on_error: full\n    context: {reason: 'Order {{ order | default(\"none\") }}'}\n",
        )
    )
    run = await run_flow(flow, [])
    assert run.result.queue_request is not None
    assert run.result.queue_request.attributes == {"reason": "Order none"}


async def test_queue_rejection_goes_to_on_error() -> None:
    run = await run_flow(flow_from_text(QUEUE_FLOW), [], queue=RecordingQueue(reject=True))
    assert run.result.path == ["q", "full"]
    assert run.result.outcome is Outcome.HANGUP


async def test_transfer_respects_allow_list() -> None:
    text = (
        "flow: t\ntransfer_allow: ['sip:*@pbx.example.com']\nsteps:\n"
        "  t1:\n    type: transfer\n    target: '{{ target }}'\n    on_error: bye\n" + BYE
    )
    flow = flow_from_text(text)
    allowed = await run_flow(
        flow_from_text(
            text.replace("steps:", "variables: {target: 'sip:100@pbx.example.com'}\nsteps:")
        ),
        [],
    )
    assert allowed.result.outcome is Outcome.TRANSFERRED
    assert allowed.result.transfer_target == "sip:100@pbx.example.com"
    refused = await run_flow(
        flow_from_text(
            text.replace("steps:", "variables: {target: 'sip:1@evil.example.org'}\nsteps:")
        ),
        [],
    )
    assert refused.result.outcome is Outcome.HANGUP
    assert refused.result.path == ["t1", "bye"]
    assert refused.channel is not None and refused.channel.transferred_to is None
    del flow


@dataclass
class RecordingTextChannel(TextChannel):
    recorded: list[float] = field(default_factory=list)

    async def record(
        self,
        *,
        max_duration_s: float,
        silence_timeout_s: float,
        beep: bool,
        terminator: str | None,
    ) -> Recording:
        self.recorded.append(max_duration_s)
        return Recording(PcmAudio(b"\x01\x00" * 8000, 8000), "terminator")


async def test_record_voicemail_stores_result() -> None:
    flow = flow_from_text(
        "flow: t\nsteps:\n  r:\n    type: record\n    prompt: Leave a message.\n"
        "    max_duration_s: 60\n"
        "  thanks: {type: hangup, prompt: 'Got {{ recording.duration_ms }} ms.'}\n"
    )
    channel = RecordingTextChannel(scripted([]))
    session = IvrSession(flow, channel, SilentSynthesizer(), clock=channel.clock)
    result = await session.run()
    assert channel.recorded == [60.0]
    assert result.variables["recording"]["ended_by"] == "terminator"
    assert result.prompts == ["Leave a message.", "Got 1000 ms."]


async def test_subflow_returns_to_caller() -> None:
    main = flow_from_text(
        "flow: main\nsteps:\n  a: {type: say, text: before}\n  s: {type: subflow, flow: auth}\n"
        "  c: {type: say, text: 'after {{ pin }}', next: bye}\n" + BYE
    )
    auth = flow_from_text(
        "flow: auth\nsteps:\n  ask:\n    type: gather\n    dtmf: {max_digits: 4}\n    into: pin\n"
        "    on: {no_input: out, no_match: out}\n  out: {type: return}\n"
    )
    run = await run_flow(main, ["#4321"], flows={"auth": auth}.get)
    assert run.result.path == ["a", "s", "auth/ask", "auth/out", "c", "bye"]
    assert run.result.prompts == ["before", "after 4321"]


async def test_max_steps_stops_a_runaway_loop() -> None:
    flow = flow_from_text(
        "flow: t\nmax_steps: 10\nsteps:\n  a: {type: say, text: a, next: b}\n"
        "  b: {type: say, text: b, next: a}\n"
    )
    run = await run_flow(flow, [])
    assert run.result.outcome is Outcome.FAILED
    assert len(run.result.path) == 10
    assert any(
        e.payload.get("message") == "max_steps reached" for e in run.of_kind(EventKind.WARNING)
    )


async def test_say_plays_wav_file(tmp_path: Path) -> None:
    path = tmp_path / "hello.wav"
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(8000)
        writer.writeframes(b"\x00\x10" * 4000)
    flow = flow_from_text(
        "flow: t\nsteps:\n  a: {type: say, audio: hello.wav}\n" + BYE, base_dir=tmp_path
    )
    run = await run_flow(flow, [])
    played = run.of_kind(EventKind.PROMPT_PLAYED)
    assert played[0].payload["source"] == "audio"
    assert played[0].payload["duration_ms"] == 500


async def test_log_text_has_no_caller_digits(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    flow = flow_from_text(
        "flow: t\nsteps:\n  ask:\n    type: gather\n    dtmf: {max_digits: 9}\n    into: n\n"
        + HANDLERS
        + "  done: {type: say, text: ok, next: bye}\n"
        + BYE
    )
    await run_flow(flow, ["#987654321"], channel_options={"caller": "+15550100042"})
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "987654321" not in text
    assert "+15550100042" not in text
    assert "sim-1" in text


async def test_speech_barge_in_then_intent() -> None:
    flow = flow_from_text(
        "flow: t\nintents:\n  refund: {examples: {en: [I want a refund, money back]}}\n"
        "  billing: {examples: {en: [question about my bill, invoice]}}\n"
        "nlu: {engine: tfidf}\nsteps:\n"
        "  ask:\n    type: gather\n    prompt: How can I help?\n"
        "    speech: {intents: [refund, billing]}\n    barge_in: speech\n"
        "    on: {refund: r, billing: b, no_input: bye, no_match: bye}\n"
        "  r: {type: say, text: refund, next: bye}\n  b: {type: say, text: bill, next: bye}\n" + BYE
    )
    channel = TextChannel(scripted([]))
    channel.pending.extend(parse_turn("I want a refund please"))
    events: list[IvrEvent] = []
    result = await IvrSession(
        flow, channel, SilentSynthesizer(), events=events.append, clock=channel.clock
    ).run()
    assert result.path == ["ask", "r", "bye"]
    assert result.variables["intent"] == "refund"
    assert result.variables["transcript"] == "I want a refund please"
    played = [e for e in events if e.kind is EventKind.PROMPT_PLAYED]
    assert played[0].payload["interrupted"] is True
    scored = [e for e in events if e.kind is EventKind.INTENT_SCORED]
    assert scored[0].payload["engine"] == "tfidf"


async def test_menu_without_speech_uses_keys_only() -> None:
    flow = flow_from_text(
        "flow: t\nsteps:\n  main:\n    type: menu\n    prompt: Press 1.\n"
        "    options:\n      - {key: 1, phrases: [billing], goto: billing}\n"
        "    retries: 0\n    on: {no_input: bye, no_match: bye}\n"
        "  billing: {type: say, text: billing, next: bye}\n" + BYE
    )
    spoken = await run_flow(flow, ["billing"], channel_options={"speech_available": False})
    assert spoken.result.path == ["main", "bye"]
    assert spoken.channel is not None
    assert all(config is None for config in spoken.channel.recognizer_history)
    pressed = await run_flow(flow, ["#1"], channel_options={"speech_available": False})
    assert pressed.result.path == ["main", "billing", "bye"]


@pytest.mark.parametrize("callback", ["events", "event_fields"])
async def test_event_callback_error_does_not_stop_call(callback: str) -> None:
    flow = flow_from_text("flow: t\nsteps:\n  a: {type: say, text: hi}\n" + BYE)
    channel = TextChannel(scripted([]))

    def broken(*event: Any) -> None:
        raise RuntimeError("sink down")

    options: dict[str, Any] = {callback: broken}
    result = await IvrSession(
        flow, channel, SilentSynthesizer(), clock=channel.clock, **options
    ).run()
    assert result.outcome is Outcome.HANGUP
    assert result.path == ["a", "bye"]


async def test_event_fields_match_events() -> None:
    flow = flow_from_text(
        "flow: t\nsteps:\n  a: {type: say, text: hi}\n"
        "  ask:\n    type: gather\n    dtmf: {max_digits: 1}\n    into: key\n" + HANDLERS + BYE
    )
    run = await run_flow(flow, ["#5"])
    fields: list[IvrEvent] = []

    def collect(*event: Any) -> None:
        fields.append(IvrEvent(*event))

    channel = TextChannel(scripted(["#5"]))
    result = await IvrSession(
        flow, channel, SilentSynthesizer(), event_fields=collect, clock=channel.clock
    ).run()
    assert result.path == run.result.path
    assert len(run.events) > 4
    assert fields == run.events


async def test_session_logs_state_changes(caplog: pytest.LogCaptureFixture) -> None:
    flow = flow_from_text("flow: t\nsteps:\n" + BYE)
    channel = TextChannel(scripted([]), call_id="c7")
    session = IvrSession(flow, channel, SilentSynthesizer(), clock=channel.clock)
    with caplog.at_level(logging.DEBUG, logger="ivr"):
        await session.run()
    changes = [r.getMessage() for r in caplog.records if "session" in r.getMessage()]
    assert changes == ["call c7: session new -> running", "call c7: session running -> ended"]


def test_session_takes_one_event_callback() -> None:
    flow = flow_from_text("flow: t\nsteps:\n" + BYE)
    events: list[IvrEvent] = []
    with pytest.raises(ValueError, match="events and event_fields"):
        IvrSession(
            flow,
            TextChannel(scripted([])),
            SilentSynthesizer(),
            events=events.append,
            event_fields=lambda *event: None,
        )


async def test_session_runs_only_once() -> None:
    flow = flow_from_text("flow: t\nsteps:\n" + BYE)
    channel = TextChannel(scripted([]))
    session = IvrSession(flow, channel, SilentSynthesizer(), clock=channel.clock)
    await session.run()
    with pytest.raises(RuntimeError, match="cannot go from ended to running"):
        await session.run()


async def test_speech_gather_without_recognizer_warns() -> None:
    flow = flow_from_text(
        "flow: t\nsteps:\n  ask:\n    type: gather\n    speech: {}\n    retries: 0\n"
        "    on: {no_input: bye, no_match: bye}\n" + BYE
    )
    run = await run_flow(flow, ["hello"], channel_options={"speech_available": False})
    assert run.result.path == ["ask", "bye"]
    messages = [e.payload["message"] for e in run.of_kind(EventKind.WARNING)]
    assert "speech recognition unavailable" in messages


class KeysOnlyChannel:
    """A call leg without recording, wrapping a text channel."""

    def __init__(self, inner: TextChannel) -> None:
        self.inner = inner
        self.call_id = inner.call_id
        self.caller = inner.caller
        self.called = inner.called
        self.speech_available = False

    async def play(
        self, audio: PcmAudio, *, interrupt_on_dtmf: bool = False, interrupt_on_speech: bool = False
    ) -> CallerInput | None:
        return await self.inner.play(audio, interrupt_on_dtmf=interrupt_on_dtmf)

    def listen(self, config: RecognizerConfig | None) -> None:
        self.inner.listen(config)

    async def next_input(self, timeout_s: float) -> CallerInput | None:
        return await self.inner.next_input(timeout_s)

    def clear_inputs(self) -> None:
        self.inner.clear_inputs()

    async def hangup(self) -> None:
        await self.inner.hangup()

    async def transfer(self, target: str) -> bool:
        return await self.inner.transfer(target)


async def test_record_skipped_without_recording_channel() -> None:
    flow = flow_from_text(
        "flow: t\nsteps:\n  r: {type: record, prompt: Leave a message.}\n"
        "  thanks: {type: hangup, prompt: Thanks.}\n"
    )
    inner = TextChannel(scripted(["hello"]))
    events: list[IvrEvent] = []
    result = await IvrSession(
        flow, KeysOnlyChannel(inner), SilentSynthesizer(), events=events.append, clock=inner.clock
    ).run()
    assert result.path == ["r", "thanks"]
    assert result.variables["recording"] is None
    assert result.prompts == ["Thanks."]
    warnings = [e.payload["message"] for e in events if e.kind is EventKind.WARNING]
    assert warnings == ["channel cannot record"]


async def test_speech_phrase_found_inside_words() -> None:
    flow = flow_from_text(
        "flow: t\nsteps:\n  ask:\n    type: gather\n"
        "    speech: {phrases: [yes, no]}\n    retries: 0\n"
        "    on: {yes: y, no: n, no_input: bye, no_match: unclear}\n"
        "  y: {type: say, text: agreed, next: bye}\n  n: {type: say, text: declined, next: bye}\n"
        "  unclear: {type: say, text: unclear, next: bye}\n" + BYE
    )
    inside = await run_flow(flow, ["Yes, please."])
    assert inside.result.path == ["ask", "y", "bye"]
    both = await run_flow(flow, ["yes and no"])
    assert both.result.path == ["ask", "unclear", "bye"]


def test_queue_request_hides_reason_at_priority_zero() -> None:
    normal = QueueRequest(queue="sales", priority=0, reason="queue")
    raised = QueueRequest(queue="sales", priority=5, reason="payment")

    assert normal.shown_reason == ""
    assert raised.shown_reason == "payment"
