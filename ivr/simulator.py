"""Interactive text simulation of a flow: the real engine, intents and sentiment.

The caller types one turn per line: words are speech, `#123` is DTMF, an
empty line is silence and `/hangup` hangs up. The simulator prints each
prompt, the step path and what the engine understood.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import TextIO

from ivr.engine import FlowResolver, IvrSession, SessionResult
from ivr.events import EventKind, IvrEvent
from ivr.model import Flow
from ivr.prompts import SilentSynthesizer
from ivr.textchannel import HANGUP, SILENCE, TextChannel

ReadLine = Callable[[], str | None]


def describe_event(event: IvrEvent) -> str | None:
    """Return one line for the transcript, or None for events not shown."""
    payload = event.payload
    match event.kind:
        case EventKind.STEP_ENTERED:
            return f"  [{event.step}] {payload['type']}"
        case EventKind.PROMPT_PLAYED:
            cut = " (interrupted)" if payload.get("interrupted") else ""
            return f"IVR: {payload['text']}{cut}"
        case EventKind.INTENT_SCORED:
            return (
                f"  intent: {payload['intent'] or 'none'} score={payload['score']:.3f} "
                f"runner-up={payload['runner_up']} {payload['runner_up_score']:.3f} "
                f"({payload['engine']}{', ' + payload['reason'] if payload['reason'] else ''})"
            )
        case EventKind.SENTIMENT:
            return (
                f"  sentiment: {payload['score']:+.2f} {payload['label']} "
                f"(turn {payload['turn']}, satisfaction {payload['satisfaction']:+.2f})"
            )
        case EventKind.GATHER_RESULT:
            return f"  result: {payload['result']} -> {payload['target'] or '-'}"
        case EventKind.HTTP_REQUEST:
            state = "ok" if payload.get("ok") else f"failed: {payload.get('error')}"
            return f"  http: {state} after {payload.get('attempts')} attempt(s)"
        case EventKind.RECORDING:
            unchanged = "" if payload.get("changed") else " (unchanged)"
            return f"  recording: {payload['action']} -> {payload['state']}{unchanged}"
        case EventKind.WARNING:
            return f"  warning: {payload.get('message')}"
    return None


async def simulate(
    flow: Flow,
    read_line: ReadLine,
    out: TextIO,
    *,
    caller: str = "+15550100001",
    called: str = "1000",
    flows: FlowResolver | None = None,
    echo: bool = False,
    now: dt.datetime | None = None,
) -> SessionResult:
    """Run `flow` with turns from `read_line` (None ends input) and print the transcript.

    `echo` repeats each turn after the prompt, for input that is not typed.
    `now` (timezone-aware) fixes the wall clock that time-of-day branches read.
    When `out` is closed (`voxgate simulate ... | head`), the caller hangs up at
    the next turn and `simulate` raises BrokenPipeError once the call has ended.
    """
    closed = False

    def write(text: str) -> None:
        nonlocal closed
        if closed:
            return
        try:
            out.write(text)
            out.flush()
        except BrokenPipeError:
            closed = True

    async def next_turn() -> str | None:
        write("you> ")
        if closed:
            return HANGUP
        line = await asyncio.to_thread(read_line)
        if echo:
            write(f"{line if line is not None else '/hangup'}\n")
        if line is None or line.strip() == "/hangup":
            return HANGUP
        return line if line.strip() else SILENCE

    channel = TextChannel(next_turn, call_id="simulator", caller=caller, called=called)

    def show(event: IvrEvent) -> None:
        line = describe_event(event)
        if line is not None:
            write(line + "\n")

    session = IvrSession(
        flow,
        channel,
        SilentSynthesizer(),
        events=show,
        flows=flows,
        clock=channel.clock,
        now=(lambda: now) if now is not None else None,
    )
    result = await session.run()
    write(f"call ended: {result.outcome.value} ({result.reason})\n")
    write("path: " + " -> ".join(result.path) + "\n")
    if result.queue_request is not None:
        request = result.queue_request
        write(
            f"queued: {request.queue} priority={request.priority} skills={list(request.skills)}\n"
        )
    if result.transfer_target is not None:
        write(f"transferred to: {result.transfer_target}\n")
    if closed:
        raise BrokenPipeError("the transcript's output was closed")
    return result
