"""The collection core of gather steps on a virtual clock with timed inputs."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from ivr.channel import CallerInput, DtmfInput, RecognizerConfig, SpeechInput, SpeechStarted
from ivr.gather import Capture, CaptureKind, CollectPlan, collect
from ivr.model import DtmfSpec
from media.audio import PcmAudio


@dataclass
class TimedChannel:
    """Delivers each input at its time (seconds); waits advance the clock exactly."""

    schedule: deque[tuple[float, CallerInput]]
    now: float = 0.0
    call_id: str = "timed-1"
    caller: str = "+15550100001"
    called: str = "1000"
    speech_available: bool = True
    waits: list[float] = field(default_factory=list)
    armed: list[RecognizerConfig | None] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    async def play(
        self, audio: PcmAudio, *, interrupt_on_dtmf: bool = False, interrupt_on_speech: bool = False
    ) -> CallerInput | None:
        return None

    def listen(self, config: RecognizerConfig | None) -> None:
        self.armed.append(config)

    async def next_input(self, timeout_s: float) -> CallerInput | None:
        self.waits.append(round(timeout_s, 3))
        if self.schedule and self.schedule[0][0] <= self.now + timeout_s:
            at, item = self.schedule.popleft()
            self.now = max(self.now, at)
            return item
        self.now += timeout_s
        return None

    def clear_inputs(self) -> None:
        self.schedule.clear()

    async def hangup(self) -> None:
        return None

    async def transfer(self, target: str) -> bool:
        return False


def _keys(*timed: tuple[float, str]) -> deque[tuple[float, CallerInput]]:
    return deque((at, DtmfInput(digit)) for at, digit in timed)


def _plan(**dtmf: object) -> CollectPlan:
    spec = DtmfSpec.model_validate({"max_digits": 6, "inter_digit_timeout_s": 3.0, **dtmf})
    return CollectPlan(spec, None, timeout_s=5.0, total_timeout_s=12.0, barge_in="any")


async def _collect(channel: TimedChannel, plan: CollectPlan) -> Capture:
    return await collect(channel, plan, None, channel.clock)


async def test_first_input_timeout_is_no_input() -> None:
    channel = TimedChannel(_keys((6.0, "1")))
    capture = await _collect(channel, _plan())
    assert capture.kind is CaptureKind.NO_INPUT
    assert channel.now == 5.0


async def test_inter_digit_timeout_ends_entry() -> None:
    channel = TimedChannel(_keys((1.0, "4"), (2.5, "2"), (6.0, "9")))
    capture = await _collect(channel, _plan())
    assert capture.value == "42"
    assert channel.now == 5.5
    assert channel.waits == [5.0, 3.0, 3.0]


async def test_total_timeout_cuts_slow_entry() -> None:
    timed = [(2.0 * n, str(n)) for n in range(1, 9)]
    channel = TimedChannel(_keys(*timed))
    capture = await _collect(channel, _plan(max_digits=10))
    assert capture.value == "123456"
    assert channel.now == 12.0


async def test_terminator_ends_entry_and_is_dropped() -> None:
    channel = TimedChannel(_keys((0.5, "7"), (1.0, "#"), (1.5, "8")))
    capture = await _collect(channel, _plan())
    assert capture.value == "7"
    assert capture.terminated


async def test_max_digits_ends_entry() -> None:
    channel = TimedChannel(_keys((0.1, "1"), (0.2, "2"), (0.3, "3")))
    capture = await _collect(channel, _plan(max_digits=2))
    assert capture.value == "12"


async def test_speech_after_start_waits_for_result() -> None:
    schedule: deque[tuple[float, CallerInput]] = deque(
        [(1.0, SpeechStarted()), (7.0, SpeechInput("billing please", 0.8))]
    )
    channel = TimedChannel(schedule)
    plan = CollectPlan(None, RecognizerConfig("en-US"), 5.0, 30.0, "any")
    capture = await _collect(channel, plan)
    assert capture.kind is CaptureKind.SPEECH
    assert capture.value == "billing please"
    assert capture.confidence == 0.8
    assert channel.armed == [RecognizerConfig("en-US"), None]


async def test_partial_results_ignored() -> None:
    schedule: deque[tuple[float, CallerInput]] = deque(
        [(1.0, SpeechInput("bill", 0.5, is_final=False)), (2.0, SpeechInput("billing", 0.9))]
    )
    channel = TimedChannel(schedule)
    plan = CollectPlan(None, RecognizerConfig("en-US"), 5.0, 30.0, "any")
    capture = await _collect(channel, plan)
    assert capture.value == "billing"


async def test_speech_not_armed_without_recognizer() -> None:
    schedule: deque[tuple[float, CallerInput]] = deque([(1.0, SpeechInput("hello", 0.9))])
    channel = TimedChannel(schedule, speech_available=False)
    plan = CollectPlan(None, RecognizerConfig("en-US"), 5.0, 5.0, "any")
    capture = await _collect(channel, plan)
    assert capture.kind is CaptureKind.NO_INPUT
    assert channel.armed == []
