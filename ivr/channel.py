"""The contract between the IVR engine and one call leg.

The engine never touches SIP, RTP or WebRTC. A call leg of any kind (a SIP
call, a browser call, or the text simulator) implements `CallChannel`, and the
engine drives it: play audio, arm the recognizer, wait for caller input, and
end or move the call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from media.audio import PcmAudio


class CallEnded(Exception):
    """Raised by channel operations once the caller has hung up or the leg is gone."""


@dataclass(frozen=True, slots=True)
class DtmfInput:
    """One DTMF digit (0-9, *, #, A-D) with how long it was pressed."""

    digit: str
    duration_ms: int = 0


@dataclass(frozen=True, slots=True)
class SpeechInput:
    """One recognizer result for a caller utterance.

    `is_final` is False for partial results. `confidence` is in [0, 1].
    """

    text: str
    confidence: float
    is_final: bool = True
    start_ms: int = 0
    end_ms: int = 0
    alternatives: Sequence[str] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """The endpointer heard the caller start to speak (used for barge-in)."""

    at_ms: int = 0


CallerInput = DtmfInput | SpeechInput | SpeechStarted


@dataclass(frozen=True, slots=True)
class RecognizerConfig:
    """What the speech recognizer listens for during one gather step.

    `phrases` set grammar mode (the recognizer can only return these phrases);
    None means free-form recognition. `language` is a BCP 47 tag such as
    "en-US", "zh-CN" or "ko-KR" that selects the model. `end_silence_ms` is the
    silence that ends an utterance during this gather (None: the channel's default).
    """

    language: str
    phrases: Sequence[str] | None = None
    end_silence_ms: int | None = None


class CallChannel(Protocol):
    """One caller's leg as the IVR engine sees it."""

    @property
    def call_id(self) -> str: ...

    @property
    def caller(self) -> str:
        """The caller's number or user part, as presented by the network."""
        ...

    @property
    def called(self) -> str:
        """The dialled number or user part."""
        ...

    @property
    def speech_available(self) -> bool:
        """Whether this leg can recognize speech (a model is loaded for some language)."""
        ...

    async def play(
        self,
        audio: PcmAudio,
        *,
        interrupt_on_dtmf: bool = False,
        interrupt_on_speech: bool = False,
    ) -> CallerInput | None:
        """Play `audio` to the caller and return when it ends.

        Returns None when playback finished, or the input that interrupted it
        (a `DtmfInput`, or `SpeechStarted` when barge-in by speech is allowed).
        An interrupting input is consumed and not returned again by `next_input`.
        Raises CallEnded if the caller hangs up.
        """
        ...

    def listen(self, config: RecognizerConfig | None) -> None:
        """Arm the recognizer for the next gather, or disarm it with None."""
        ...

    async def next_input(self, timeout_s: float) -> CallerInput | None:
        """Wait up to `timeout_s` for the next caller input; None on timeout.

        Raises CallEnded if the caller hangs up.
        """
        ...

    def clear_inputs(self) -> None:
        """Drop inputs that arrived before this point (digits typed ahead, stale results)."""
        ...

    async def hangup(self) -> None:
        """End the call from our side. Safe to call twice."""
        ...

    async def transfer(self, target: str) -> bool:
        """Move the call to `target` (a SIP URI or number); True once accepted."""
        ...
