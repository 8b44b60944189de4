"""Collect one caller answer (DTMF digits or an utterance) from a `CallChannel`.

One call of `collect` is one attempt: play the prompt with the barge-in
policy, then read inputs until the digits are complete, the terminator is
pressed, a final speech result arrives, or a timeout fires. Retries and the
meaning of the answer belong to the engine. Timeouts are measured on the
session clock, so a channel with a virtual clock runs them instantly.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ivr.channel import (
    CallChannel,
    CallerInput,
    DtmfInput,
    RecognizerConfig,
    SpeechInput,
    SpeechStarted,
)
from ivr.model import BargeIn, DtmfSpec

Clock = Callable[[], float]


class CaptureKind(enum.StrEnum):
    DTMF = "dtmf"
    SPEECH = "speech"
    NO_INPUT = "no_input"


@dataclass(frozen=True, slots=True)
class Capture:
    """The raw answer of one attempt; `value` is the digits or the transcript."""

    kind: CaptureKind
    value: str = ""
    confidence: float = 1.0
    terminated: bool = False


@dataclass(frozen=True, slots=True)
class CollectPlan:
    """What one attempt listens for."""

    dtmf: DtmfSpec | None
    recognizer: RecognizerConfig | None
    timeout_s: float
    total_timeout_s: float
    barge_in: BargeIn


PlayPrompt = Callable[[bool, bool], Awaitable[CallerInput | None]]


async def collect(
    channel: CallChannel,
    plan: CollectPlan,
    play_prompt: PlayPrompt | None,
    clock: Clock,
) -> Capture:
    """Run one attempt; `play_prompt(interrupt_on_dtmf, interrupt_on_speech)` plays the prompt.

    Raises CallEnded when the caller hangs up.
    """
    listening = plan.recognizer is not None and channel.speech_available
    if listening:
        channel.listen(plan.recognizer)
    try:
        return await _collect(channel, plan, play_prompt, clock, listening)
    finally:
        if listening:
            channel.listen(None)


async def _collect(
    channel: CallChannel,
    plan: CollectPlan,
    play_prompt: PlayPrompt | None,
    clock: Clock,
    listening: bool,
) -> Capture:
    digits: list[str] = []
    speaking = False
    first: CallerInput | None = None
    if play_prompt is not None:
        on_dtmf = plan.dtmf is not None and plan.barge_in in ("dtmf", "any")
        on_speech = listening and plan.barge_in in ("speech", "any")
        first = await play_prompt(on_dtmf, on_speech)
    deadline = clock() + plan.total_timeout_s
    pending = first
    while True:
        if pending is None:
            remaining = deadline - clock()
            if remaining <= 0:
                break
            if digits and plan.dtmf is not None:
                wait = plan.dtmf.inter_digit_timeout_s
            else:
                wait = plan.timeout_s
            pending = await channel.next_input(min(wait, remaining))
            if pending is None:
                if speaking and not digits and clock() < deadline:
                    speaking = False
                    continue
                break
        item, pending = pending, None
        if isinstance(item, DtmfInput):
            if plan.dtmf is None:
                continue
            if plan.dtmf.terminator is not None and item.digit == plan.dtmf.terminator:
                if not digits:
                    continue
                return Capture(CaptureKind.DTMF, "".join(digits), terminated=True)
            digits.append(item.digit)
            if len(digits) >= plan.dtmf.max_digits:
                return Capture(CaptureKind.DTMF, "".join(digits))
        elif isinstance(item, SpeechStarted):
            speaking = listening
        elif isinstance(item, SpeechInput):
            if not listening or not item.is_final or digits:
                continue
            if not item.text.strip():
                speaking = False
                continue
            return Capture(CaptureKind.SPEECH, item.text.strip(), confidence=item.confidence)
    if digits:
        return Capture(CaptureKind.DTMF, "".join(digits))
    return Capture(CaptureKind.NO_INPUT)
