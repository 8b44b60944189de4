"""A `CallChannel` driven by text: for the simulator, scripted flow tests and unit tests.

Time is virtual. When the engine waits for input and no input is ready, the
channel calls its turn source for the next turn. A source that returns None
means the caller stays silent, so the virtual clock jumps by the timeout.
Prompts are tracked by the engine's events, so the channel never needs audio.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from ivr.channel import (
    CallEnded,
    CallerInput,
    DtmfInput,
    RecognizerConfig,
    SpeechInput,
    SpeechStarted,
)
from ivr.recording import CallRecordingState, RecordingAction, next_recording_state
from ivr.services import Recording
from media.audio import PcmAudio

HANGUP = "(hangup)"
SILENCE = "(silence)"

TurnSource = Callable[[], Awaitable[str | None]]


def parse_turn(text: str, *, confidence: float = 0.9) -> list[CallerInput]:
    """Turn one line of caller text into inputs: `#123` is DTMF, anything else is speech.

    `#123#` sends 1, 2, 3 and # (the terminator). A lone `#` sends the pound key.
    """
    text = text.strip()
    if text.startswith("#") and len(text) > 1:
        return [DtmfInput(d) for d in text[1:] if not d.isspace()]
    if text == "#":
        return [DtmfInput("#")]
    return [SpeechStarted(), SpeechInput(text, confidence)]


@dataclass
class VirtualClock:
    """Seconds that advance only when a wait times out or a prompt plays."""

    now: float = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class TextChannel:
    """A simulated call leg whose caller types turns."""

    source: TurnSource
    call_id: str = "sim-1"
    caller: str = "+15550100001"
    called: str = "1000"
    speech_available: bool = True
    clock: VirtualClock = field(default_factory=VirtualClock)
    transfer_accepts: bool = True
    pending: deque[CallerInput] = field(default_factory=deque)
    recognizer: RecognizerConfig | None = None
    recognizer_history: list[RecognizerConfig | None] = field(default_factory=list)
    ended: bool = False
    hung_up_by_us: bool = False
    transferred_to: str | None = None
    recordings: list[str] = field(default_factory=list)
    recording_state: CallRecordingState = CallRecordingState.OFF

    async def _fill(self) -> bool:
        if self.pending:
            return True
        if self.ended:
            raise CallEnded()
        turn = await self.source()
        if turn is None or turn.strip() == SILENCE:
            return False
        if turn.strip() == HANGUP:
            self.ended = True
            raise CallEnded()
        self.pending.extend(parse_turn(turn))
        return bool(self.pending)

    async def play(
        self,
        audio: PcmAudio,
        *,
        interrupt_on_dtmf: bool = False,
        interrupt_on_speech: bool = False,
    ) -> CallerInput | None:
        if self.ended:
            raise CallEnded()
        self.clock.now += audio.duration_ms / 1000.0
        if self.pending:
            head = self.pending[0]
            if isinstance(head, DtmfInput) and interrupt_on_dtmf:
                return self.pending.popleft()
            if isinstance(head, SpeechStarted) and interrupt_on_speech:
                return self.pending.popleft()
        return None

    def listen(self, config: RecognizerConfig | None) -> None:
        self.recognizer = config
        self.recognizer_history.append(config)

    async def next_input(self, timeout_s: float) -> CallerInput | None:
        if not await self._fill():
            self.clock.now += timeout_s
            return None
        item = self.pending.popleft()
        if isinstance(item, SpeechInput | SpeechStarted) and (
            self.recognizer is None or not self.speech_available
        ):
            # No recognizer is armed, so the caller's words are lost as on a real leg.
            self.pending.clear()
            self.clock.now += timeout_s
            return None
        return item

    def clear_inputs(self) -> None:
        self.pending.clear()

    async def hangup(self) -> None:
        self.ended = True
        self.hung_up_by_us = True

    async def record(
        self,
        *,
        max_duration_s: float,
        silence_timeout_s: float,
        beep: bool,
        terminator: str | None,
    ) -> Recording:
        """Take the next turn as the message: silent audio of 400 ms per word, at most max.

        A hangup during recording returns what was said so far, as a real leg does.
        """
        self.pending.clear()
        turn = await self.source()
        if turn is None or turn.strip() in (SILENCE, HANGUP):
            ended_by = "hangup" if turn is not None and turn.strip() == HANGUP else "silence"
            self.clock.now += silence_timeout_s
            self.recordings.append("")
            return Recording(PcmAudio(b"", 8000), ended_by)
        self.recordings.append(turn)
        seconds = min(max_duration_s, 0.4 * len(turn.split()))
        self.clock.now += seconds
        audio = PcmAudio(b"\x00\x00" * int(8000 * seconds), 8000)
        return Recording(audio, "terminator" if terminator is not None else "silence")

    def control_recording(self, action: RecordingAction) -> CallRecordingState:
        """Follow the call recording's states as a real leg would, without audio."""
        self.recording_state = next_recording_state(self.recording_state, action)
        return self.recording_state

    async def transfer(self, target: str) -> bool:
        if self.ended:
            raise CallEnded()
        if self.transfer_accepts:
            self.transferred_to = target
            self.ended = True
        return self.transfer_accepts


def scripted(turns: Iterable[str | None]) -> TurnSource:
    """Return a turn source that replays `turns`, then hangs up."""
    queue: deque[str | None] = deque(turns)

    async def source() -> str | None:
        return queue.popleft() if queue else HANGUP

    return source
