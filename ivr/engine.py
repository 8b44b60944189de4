"""The IVR engine: one `IvrSession` runs one call through a flow.

Theory of operation. A session owns a stack of frames (the main flow and any
subflows) and a variable map shared by all frames. `run` walks steps: each
step handler does its I/O through the `CallChannel` and returns the id of the
next step, or ends the session by setting the result. A step without `next`
continues with the following step in the file. The session has one state
machine (NEW -> RUNNING -> ENDED); a hangup by the caller (`CallEnded`) ends
it from any step. `max_steps` bounds the walk so a loop in a flow cannot hold
a call forever.

Every step entered, prompt played and input received is emitted as an
`IvrEvent`; payloads may carry caller data, log lines never do. A step's
`recording` option (start, stop, pause, resume) goes to the channel right
after the step is entered, before its prompt, and is emitted as a
`recording` event.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import fnmatch
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ivr.channel import CallChannel, CallEnded, CallerInput
from ivr.conditions import ConditionContext, evaluate
from ivr.events import EventCallback, EventFieldsCallback, EventKind, IvrEvent
from ivr.gather import Capture, CaptureKind, CollectPlan, collect
from ivr.http_step import run_http_step
from ivr.model import (
    BranchStep,
    Flow,
    GatherStep,
    HangupStep,
    HttpStep,
    MenuStep,
    PromptSpec,
    QueueStep,
    RecordStep,
    ReturnStep,
    SayStep,
    SetStep,
    Step,
    SubflowStep,
    TransferStep,
)
from ivr.prompts import PromptRenderer, Synthesizer
from ivr.recording import CallRecordingControl, RecordingAction
from ivr.services import QueueError, QueueRequest, QueueService, RecordingChannel, RecordingStore
from ivr.templates import Template, TemplateError
from ivr.turns import TurnInterpreter, TurnOutcome
from ivr.understanding import IntentMatcher, SentimentAnalyzer

log = logging.getLogger("ivr")

FlowResolver = Callable[[str], Flow | None]


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class SessionState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    ENDED = "ended"

    # Members are compared by identity, so the identity hash agrees with ==, and
    # unlike Enum.__hash__ it runs no Python code in the dict and set lookups.
    __hash__ = object.__hash__


_TRANSITIONS = {
    SessionState.NEW: {SessionState.RUNNING},
    SessionState.RUNNING: {SessionState.ENDED},
    SessionState.ENDED: set(),
}


class Outcome(enum.StrEnum):
    HANGUP = "hangup"
    CALLER_HANGUP = "caller_hangup"
    QUEUED = "queued"
    TRANSFERRED = "transferred"
    FAILED = "failed"


# Members that every session reads, bound to globals. EnumType defines `__getattr__`, so
# reading a member as `SessionState.NEW` took 49 ns against 5 ns for a global (timeit,
# CPython 3.11, 2-vCPU VM).
_NEW = SessionState.NEW
_RUNNING = SessionState.RUNNING
_ENDED = SessionState.ENDED
_HANGUP = Outcome.HANGUP
_STEP_ENTERED = EventKind.STEP_ENTERED
_SESSION_ENDED = EventKind.SESSION_ENDED


@dataclass
class SessionResult:
    """The way the call left the IVR, the steps it took and its final variables."""

    outcome: Outcome
    reason: str
    path: list[str]
    variables: dict[str, Any]
    queue_request: QueueRequest | None = None
    transfer_target: str | None = None
    sentiment: list[float] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)
    recording: list[str] = field(default_factory=list)
    """The call recording's state after each `recording` step option, in order."""


@dataclass
class _Frame:
    flow: Flow
    return_to: str | None
    renderer: PromptRenderer | None = None
    """Built at the frame's first prompt (`IvrSession._renderer_of`)."""


class _SessionEnd(Exception):
    def __init__(self, outcome: Outcome, reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason


class IvrSession:
    """Run one call through `flow`.

    `events` receives every `IvrEvent`, or `event_fields` receives the fields of
    each one without the instance; give at most one of them. `queue` is the ACD
    (without it a queue step only records the request in the result). `flows` resolves subflow
    names. `intents` and `sentiment` default to the bundled classifiers when
    the flow uses them. `clock` is the session clock in seconds (the loop's by
    default) and `now` returns the aware current time for time-of-day branches.
    """

    def __init__(
        self,
        flow: Flow,
        channel: CallChannel,
        synthesizer: Synthesizer,
        *,
        events: EventCallback | None = None,
        event_fields: EventFieldsCallback | None = None,
        queue: QueueService | None = None,
        flows: FlowResolver | None = None,
        intents: IntentMatcher | None = None,
        sentiment: SentimentAnalyzer | None = None,
        http: aiohttp.ClientSession | None = None,
        recordings: RecordingStore | None = None,
        clock: Callable[[], float] | None = None,
        now: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self._flow = flow
        self._channel = channel
        self._synthesizer = synthesizer
        if events is not None and event_fields is not None:
            raise ValueError("events and event_fields were both given; pass only one of them")
        self._events = events
        self._event_fields = event_fields
        self._queue = queue
        self._flows = flows
        self._http = http
        self._recordings = recordings
        self._clock = clock
        self._now = now or _utc_now
        self._intents = intents
        self._sentiment = sentiment
        # Read once: a call keeps its Call-ID, and the property runs Python code on each read.
        self._call_id = channel.call_id
        self._state = _NEW
        self._frames = [_Frame(flow, None)]
        self._path: list[str] = []
        self._prompts: list[str] = []
        self._recording_states: list[str] = []
        self._queue_request: QueueRequest | None = None
        self._transfer_target: str | None = None
        self.variables: dict[str, Any] = {
            **flow.variables,
            "caller": channel.caller,
            "called": channel.called,
            "call_id": self._call_id,
            "flow": flow.flow,
            "language": flow.language,
        }
        # Built by `_interpreter` at the first gather or subflow.
        self._turns: TurnInterpreter | None = None
        # Whether the "ivr" logger takes debug records. `run` reads it once at its start,
        # so a guarded debug line costs no Python call while debug is off.
        self._debug = False

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def call_id(self) -> str:
        return self._call_id

    @property
    def _interpreter(self) -> TurnInterpreter:
        turns = self._turns
        if turns is None:
            turns = TurnInterpreter(self._flow, intents=self._intents, sentiment=self._sentiment)
            self._turns = turns
        return turns

    def _set_state(self, new: SessionState) -> None:
        if new not in _TRANSITIONS[self._state]:
            raise RuntimeError(f"IVR session cannot go from {self._state.value} to {new.value}")
        if self._debug:
            log.debug("call %s: session %s -> %s", self._call_id, self._state.value, new.value)
        self._state = new

    def _renderer_of(self, frame: _Frame) -> PromptRenderer:
        renderer = frame.renderer
        if renderer is None:
            flow = frame.flow
            renderer = PromptRenderer(
                self._synthesizer, base_dir=flow.base_dir, voice=flow.voice, rate_wpm=flow.rate_wpm
            )
            frame.renderer = renderer
        return renderer

    @property
    def _frame(self) -> _Frame:
        return self._frames[-1]

    def _time(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def emit(self, kind: EventKind, step: str | None, **payload: Any) -> None:
        fields_callback = self._event_fields
        callback = self._events
        if fields_callback is None and callback is None:
            return
        now = self._clock() if self._clock is not None else asyncio.get_running_loop().time()
        flow = self._frames[-1].flow.flow
        try:
            if fields_callback is not None:
                fields_callback(kind, self._call_id, flow, step, now, payload)
            elif callback is not None:
                callback(IvrEvent(kind, self._call_id, flow, step, now, payload))
        except Exception:
            log.exception("call %s: event callback failed", self._call_id)

    # -- the walk ---------------------------------------------------------

    async def run(self) -> SessionResult:
        """Run the flow until the call is queued, transferred or ended.

        The debug lines of the run follow the level that the "ivr" logger had
        when the run started.
        """
        debug = self._debug = log.isEnabledFor(logging.DEBUG)
        if self._state is not _NEW:
            self._set_state(_RUNNING)  # Raises RuntimeError, because a session runs once.
        # The body of `_set_state` for NEW -> RUNNING and, below, RUNNING -> ENDED, the two
        # moves of every session, without its Python call.
        if debug:
            log.debug("call %s: session %s -> %s", self._call_id, "new", "running")
        self._state = _RUNNING
        if debug:
            log.debug("call %s: flow %s started", self._call_id, self._flow.flow)
        try:
            outcome, reason = await self._walk()
        except _SessionEnd as end:
            outcome, reason = end.outcome, end.reason
        except CallEnded:
            outcome, reason = Outcome.CALLER_HANGUP, "caller hung up"
        except Exception as exc:
            log.exception("call %s: IVR step failed", self._call_id)
            outcome, reason = Outcome.FAILED, f"internal error: {type(exc).__name__}"
            await self._safe_hangup()
        # Every way out of the walk leaves the state RUNNING, because only `run` changes it.
        if debug:
            log.debug("call %s: session %s -> %s", self._call_id, "running", "ended")
        self._state = _ENDED
        if debug:
            # str() of a StrEnum member is its value, without the Python code that `.value` runs.
            log.debug("call %s: flow %s ended: %s", self._call_id, self._flow.flow, outcome)
        self.emit(_SESSION_ENDED, None, outcome=str(outcome), reason=reason)
        # A session runs once, so the result takes over the lists that only the run
        # appends to. `variables` is public and is copied. The arguments are positional,
        # in field order, because matching nine keywords made this call take 480 ns in
        # place of 250 (timeit, CPython 3.11, 2-vCPU VM).
        return SessionResult(
            outcome,
            reason,
            self._path,
            dict(self.variables),
            self._queue_request,
            self._transfer_target,
            list(self._turns.sentiment_scores) if self._turns is not None else [],
            self._prompts,
            self._recording_states,
        )

    async def _safe_hangup(self) -> None:
        try:
            await self._channel.hangup()
        except CallEnded:
            pass
        except Exception:
            log.exception("call %s: hangup failed", self._call_id)

    async def _walk(self) -> tuple[Outcome, str]:
        """Walk the steps and return the outcome of a hangup step or of the flow's last step.

        Every other end of the session raises `_SessionEnd` or `CallEnded`.
        """
        step_id: str | None = self._flow.start_step
        count = 0
        while step_id is not None:
            count += 1
            if count > self._flow.max_steps:
                self.emit(EventKind.WARNING, step_id, message="max_steps reached")
                log.warning("call %s: max_steps reached in flow %s", self._call_id, self._flow.flow)
                await self._safe_hangup()
                raise _SessionEnd(Outcome.FAILED, "max_steps reached")
            flow = self._frames[-1].flow
            step = flow.steps.get(step_id)
            if step is None:
                log.error("call %s: flow %s has no step %s", self._call_id, flow.flow, step_id)
                await self._safe_hangup()
                raise _SessionEnd(Outcome.FAILED, f"unknown step {step_id}")
            label = step_id if len(self._frames) == 1 else f"{flow.flow}/{step_id}"
            self._path.append(label)
            if self._debug:
                log.debug("call %s: step %s (%s)", self._call_id, label, step.type)
            self.emit(_STEP_ENTERED, label, type=step.type)
            if step.recording is not None:
                self._control_recording(label, step.recording)
            if isinstance(step, HangupStep):
                # Most calls end here, and raising `_SessionEnd` through this coroutine and
                # `_run_step` cost about 0.6 µs more than a return (timeit of a similar chain
                # of coroutines, CPython 3.11, 2-vCPU VM).
                if step.prompt is not None:
                    await self._play(step_id, step.prompt)
                # The body of `_safe_hangup`, without its coroutine.
                try:
                    await self._channel.hangup()
                except CallEnded:
                    pass
                except Exception:
                    log.exception("call %s: hangup failed", self._call_id)
                return _HANGUP, step.reason
            step_id = await self._run_step(step_id, step)
        self.emit(EventKind.WARNING, None, message="flow ended without a hangup step")
        await self._safe_hangup()
        return Outcome.HANGUP, "flow ended"

    def _after(self, step_id: str, step: Step) -> str | None:
        target = getattr(step, "next", None)
        return target if target is not None else self._frame.flow.following(step_id)

    async def _run_step(self, step_id: str, step: Step) -> str | None:
        """Run one step, other than a hangup step (`_walk` runs those), and return the next id."""
        match step:
            case SayStep():
                await self._play(step_id, step.prompt(), barge_in=step.barge_in)
                return self._after(step_id, step)
            case GatherStep() | MenuStep():
                return await self._gather(step_id, step)
            case SetStep():
                self._set(step_id, step)
                return self._after(step_id, step)
            case BranchStep():
                return self._branch(step_id, step)
            case HttpStep():
                ok = await run_http_step(self, step_id, step, self._http)
                if not ok and step.on_error is not None:
                    return step.on_error
                return self._after(step_id, step)
            case QueueStep():
                return await self._enqueue(step_id, step)
            case TransferStep():
                return await self._transfer(step_id, step)
            case RecordStep():
                await self._record(step_id, step)
                return self._after(step_id, step)
            case SubflowStep():
                return self._enter_subflow(step_id, step)
            case ReturnStep():
                return self._return()
        raise AssertionError(f"unhandled step type {step.type}")

    # -- call recording ---------------------------------------------------

    def _control_recording(self, step_id: str, action: RecordingAction) -> None:
        """Apply a step's recording action; a failure is a warning event, never the call's end."""
        channel = self._channel
        if not isinstance(channel, CallRecordingControl):
            log.warning(
                "call %s: channel cannot record; step %s option ignored", self._call_id, step_id
            )
            self.emit(EventKind.WARNING, step_id, message="channel cannot record calls")
            return
        before = channel.recording_state
        try:
            after = channel.control_recording(action)
        except Exception:
            log.exception("call %s: recording %s at step %s failed", self._call_id, action, step_id)
            self.emit(EventKind.WARNING, step_id, message=f"recording {action} failed")
            return
        self._recording_states.append(after.value)
        self.emit(
            EventKind.RECORDING, step_id, action=action, state=after.value, changed=after != before
        )

    # -- prompts ----------------------------------------------------------

    async def _play(
        self, step_id: str, spec: PromptSpec, *, barge_in: str = "none"
    ) -> CallerInput | None:
        return await self._play_with(
            step_id, spec, barge_in in ("dtmf", "any"), barge_in in ("speech", "any")
        )

    async def _play_with(
        self, step_id: str, spec: PromptSpec, on_dtmf: bool, on_speech: bool
    ) -> CallerInput | None:
        try:
            prompt = await self._renderer_of(self._frame).render(spec, self.variables)
        except (TemplateError, ValueError, OSError, RuntimeError) as exc:
            # A broken prompt should not drop the call: the flow goes on without it.
            log.warning("call %s: prompt of step %s skipped: %s", self._call_id, step_id, exc)
            self.emit(EventKind.WARNING, step_id, message=f"prompt skipped: {exc}")
            return None
        self._prompts.append(prompt.text)
        interrupted = await self._channel.play(
            prompt.audio, interrupt_on_dtmf=on_dtmf, interrupt_on_speech=on_speech
        )
        self.emit(
            EventKind.PROMPT_PLAYED,
            step_id,
            text=prompt.text,
            source=prompt.source,
            duration_ms=round(prompt.audio.duration_ms),
            interrupted=interrupted is not None,
        )
        return interrupted

    # -- gather and menu --------------------------------------------------

    async def _gather(self, step_id: str, step: GatherStep | MenuStep) -> str | None:
        plan = self._interpreter.plan(step, self._frame.flow)
        if plan.recognizer is not None and not self._channel.speech_available:
            plan = CollectPlan(plan.dtmf, None, plan.timeout_s, plan.total_timeout_s, step.barge_in)
            if plan.dtmf is None:
                log.warning(
                    "call %s: step %s needs speech, which this call lacks", self._call_id, step_id
                )
                self.emit(EventKind.WARNING, step_id, message="speech recognition unavailable")
        no_input = no_match = 0
        reprompt: PromptSpec | None = step.prompt
        while True:
            spec = reprompt

            async def play_prompt(
                on_dtmf: bool, on_speech: bool, spec: PromptSpec | None = spec
            ) -> CallerInput | None:
                assert spec is not None
                return await self._play_with(step_id, spec, on_dtmf, on_speech)

            capture = await collect(
                self._channel, plan, play_prompt if spec is not None else None, self._time
            )
            self._record_input(step_id, capture)
            outcome = await self._interpret(step_id, step, capture)
            self.emit(
                EventKind.GATHER_RESULT,
                step_id,
                result=outcome.result,
                value=outcome.value,
                target=outcome.target,
                attempt=no_input + no_match + 1,
            )
            if outcome.escalate_to is not None:
                # Satisfaction rules belong to the main flow, so leave any subflow.
                del self._frames[1:]
                return outcome.escalate_to
            if outcome.result == "match":
                if isinstance(step, GatherStep) and step.into is not None:
                    self.variables[step.into] = outcome.value
                return outcome.target
            if outcome.result == "no_input":
                no_input += 1
                failures, retry_prompt = no_input, step.no_input_prompt
            else:
                no_match += 1
                failures, retry_prompt = no_match, step.no_match_prompt
            if failures > step.retries:
                target = step.on.get(outcome.result)
                if target is None:
                    self.emit(EventKind.WARNING, step_id, message=f"{outcome.result} not handled")
                    await self._safe_hangup()
                    raise _SessionEnd(Outcome.HANGUP, f"{outcome.result} at {step_id}")
                return target
            self._channel.clear_inputs()
            reprompt = retry_prompt if retry_prompt is not None else step.prompt

    def _record_input(self, step_id: str, capture: Capture) -> None:
        if capture.kind is CaptureKind.NO_INPUT:
            return
        self.variables["last_input"] = capture.value
        self.variables["last_input_mode"] = capture.kind.value
        self.emit(
            EventKind.INPUT_RECEIVED,
            step_id,
            mode=capture.kind.value,
            value=capture.value,
            confidence=capture.confidence,
            terminated=capture.terminated,
        )

    async def _interpret(
        self, step_id: str, step: GatherStep | MenuStep, capture: Capture
    ) -> TurnOutcome:
        outcome = await self._interpreter.interpret(
            step_id, step, capture, self._following(step_id), self._frame.flow
        )
        for name, value in outcome.variables.items():
            self.variables[name] = value
        for kind, payload in outcome.events:
            self.emit(kind, step_id, **payload)
        return outcome

    def _following(self, step_id: str) -> str | None:
        step = self._frame.flow.steps[step_id]
        return self._after(step_id, step)

    # -- variables and branches -------------------------------------------

    def _set(self, step_id: str, step: SetStep) -> None:
        changed: dict[str, Any] = {}
        for name, value in step.values.items():
            if isinstance(value, str):
                try:
                    value = Template(value).evaluate(self.variables)
                except TemplateError as exc:
                    log.warning("call %s: variable %s not set: %s", self._call_id, name, exc)
                    self.emit(EventKind.WARNING, step_id, message=f"{name}: {exc}")
                    continue
            self.variables[name] = value
            changed[name] = value
        self.emit(EventKind.VARIABLES_SET, step_id, values=changed)

    def condition_context(self) -> ConditionContext:
        return ConditionContext(self.variables, self._channel.caller, self._now())

    def _branch(self, step_id: str, step: BranchStep) -> str | None:
        context = self.condition_context()
        for index, case in enumerate(step.cases):
            if evaluate(case.if_, context):
                self.emit(EventKind.VARIABLES_SET, step_id, branch=index, goto=case.goto)
                return case.goto
        if step.otherwise is not None:
            return step.otherwise
        return self._after(step_id, step)

    def render(self, source: str, *, url_quote: bool = False) -> str:
        return Template(source).render(self.variables, url_quote=url_quote)

    # -- leaving the IVR ----------------------------------------------------

    def _render_list(self, step_id: str, sources: list[str]) -> list[str]:
        rendered = []
        for source in sources:
            try:
                rendered.append(self.render(source))
            except TemplateError as exc:
                self.emit(EventKind.WARNING, step_id, message=f"skipped: {exc}")
        return rendered

    async def _enqueue(self, step_id: str, step: QueueStep) -> str | None:
        context = self.condition_context()
        priority, reason = step.priority, step.reason
        skills = self._render_list(step_id, step.skills)
        for rule in step.rules:
            if evaluate(rule.if_, context):
                if rule.priority > priority:
                    priority, reason = rule.priority, rule.reason
                skills.extend(self._render_list(step_id, rule.skills))
        try:
            name = self.render(step.queue)
        except TemplateError as exc:
            return await self._queue_failed(step_id, step, f"queue name: {exc}")
        request = QueueRequest(
            queue=name,
            priority=priority,
            skills=tuple(dict.fromkeys(s for s in skills if s)),
            language=self._frame.flow.language,
            attributes=self._agent_context(step_id, step),
            reason=reason,
        )
        self.variables["queue"] = {"name": request.queue, "priority": request.priority}
        if self._queue is not None:
            try:
                placement = await self._queue.enqueue(self._call_id, request)
            except QueueError as exc:
                return await self._queue_failed(step_id, step, f"queue rejected the call: {exc}")
            self.variables["queue"] = {
                "name": request.queue,
                "priority": request.priority,
                "position": placement.position,
                "wait_minutes": (
                    max(1, round(placement.expected_wait_s / 60))
                    if placement.expected_wait_s is not None
                    else None
                ),
            }
        if step.announcement is not None:
            await self._play(step_id, step.announcement)
        self._queue_request = request
        raise _SessionEnd(Outcome.QUEUED, f"queued to {request.queue}")

    def _agent_context(self, step_id: str, step: QueueStep) -> dict[str, str]:
        if step.context is None:
            names = ("caller", "flow", "language", "intent")
            return {n: str(self.variables[n]) for n in names if self.variables.get(n) is not None}
        facts = {}
        for name, source in step.context.items():
            try:
                facts[name] = self.render(source)
            except TemplateError as exc:
                self.emit(EventKind.WARNING, step_id, message=f"context {name}: {exc}")
        return facts

    async def _queue_failed(self, step_id: str, step: QueueStep, message: str) -> str | None:
        log.warning("call %s: queue step %s failed: %s", self._call_id, step_id, message)
        self.emit(EventKind.WARNING, step_id, message=message)
        if step.on_error is not None:
            return step.on_error
        await self._safe_hangup()
        raise _SessionEnd(Outcome.FAILED, message)

    def transfer_allowed(self, target: str) -> bool:
        return any(fnmatch.fnmatchcase(target, p) for p in self._frame.flow.transfer_allow)

    async def _transfer(self, step_id: str, step: TransferStep) -> str | None:
        try:
            target = self.render(step.target)
        except TemplateError as exc:
            self.emit(EventKind.WARNING, step_id, message=f"transfer target: {exc}")
            target = ""
        if not target or not self.transfer_allowed(target):
            log.warning("call %s: transfer target of step %s not allowed", self._call_id, step_id)
            self.emit(
                EventKind.WARNING, step_id, message="transfer target not allowed", target=target
            )
        else:
            if step.announcement is not None:
                await self._play(step_id, step.announcement)
            if await self._channel.transfer(target):
                self._transfer_target = target
                raise _SessionEnd(Outcome.TRANSFERRED, "transferred")
            self.emit(EventKind.WARNING, step_id, message="transfer failed", target=target)
        if step.on_error is not None:
            return step.on_error
        await self._safe_hangup()
        raise _SessionEnd(Outcome.FAILED, "transfer failed")

    async def _record(self, step_id: str, step: RecordStep) -> None:
        if not isinstance(self._channel, RecordingChannel):
            log.warning("call %s: channel cannot record; step %s skipped", self._call_id, step_id)
            self.emit(EventKind.WARNING, step_id, message="channel cannot record")
            self.variables[step.into] = None
            return
        if step.prompt is not None:
            await self._play(step_id, step.prompt)
        recording = await self._channel.record(
            max_duration_s=step.max_duration_s,
            silence_timeout_s=step.silence_timeout_s,
            beep=step.beep,
            terminator=step.terminator,
        )
        reference = None
        if self._recordings is not None:
            reference = await self._recordings.save(self._call_id, self._flow.flow, recording)
        self.variables[step.into] = {
            "duration_ms": round(recording.audio.duration_ms),
            "ended_by": recording.ended_by,
            "reference": reference,
        }
        self.emit(EventKind.INPUT_RECEIVED, step_id, mode="recording", **self.variables[step.into])
        if recording.ended_by == "hangup":
            raise CallEnded()

    def _enter_subflow(self, step_id: str, step: SubflowStep) -> str | None:
        flow = self._flows(step.flow) if self._flows is not None else None
        if flow is None:
            log.error("call %s: subflow %s not found", self._call_id, step.flow)
            raise _SessionEnd(Outcome.FAILED, f"subflow {step.flow} not found")
        self._frames.append(_Frame(flow, self._after(step_id, step)))
        for name, value in flow.variables.items():
            self.variables.setdefault(name, value)
        self._interpreter.add_flow(flow)
        return flow.start_step

    def _return(self) -> str | None:
        if len(self._frames) == 1:
            self.emit(EventKind.WARNING, None, message="return outside a subflow")
            raise _SessionEnd(Outcome.HANGUP, "return outside a subflow")
        frame = self._frames.pop()
        return frame.return_to
