"""The media half of a `CallChannel`, shared by SIP and browser call channels."""

from __future__ import annotations

import logging
from collections.abc import Callable

from ivr.channel import CallerInput, RecognizerConfig
from ivr.recording import CallRecordingState, RecordingAction
from media.audio import PcmAudio
from media.call_recording import CallRecording
from media.leg import MediaLeg

logger = logging.getLogger("media.recording")


class MediaLegChannel:
    """Passes play, listen and input calls of a `CallChannel` to a `MediaLeg`.

    A channel class for one kind of call leg subclasses it and adds the
    signaling half: `call_id`, `caller`, `called`, `hangup` and `transfer`.
    The node sets `recording` to the call's `CallRecording`, or sets
    `recording_factory` to build it at the first recording action. The
    flow's `recording` step options control it; without either they do nothing.
    """

    def __init__(self, leg: MediaLeg) -> None:
        self.leg = leg
        self.recording: CallRecording | None = None
        self.recording_factory: Callable[[], CallRecording] | None = None

    @property
    def speech_available(self) -> bool:
        return self.leg.speech_available

    async def play(
        self,
        audio: PcmAudio,
        *,
        interrupt_on_dtmf: bool = False,
        interrupt_on_speech: bool = False,
    ) -> CallerInput | None:
        return await self.leg.play(
            audio, interrupt_on_dtmf=interrupt_on_dtmf, interrupt_on_speech=interrupt_on_speech
        )

    def listen(self, config: RecognizerConfig | None) -> None:
        self.leg.listen(config)

    async def next_input(self, timeout_s: float) -> CallerInput | None:
        return await self.leg.next_input(timeout_s)

    def clear_inputs(self) -> None:
        self.leg.clear_inputs()

    @property
    def recording_state(self) -> CallRecordingState:
        recording = self.recording
        return recording.state if recording is not None else CallRecordingState.OFF

    def control_recording(self, action: RecordingAction) -> CallRecordingState:
        recording = self.recording
        if recording is None:
            if self.recording_factory is None:
                logger.info(
                    "call %s: recording %s ignored: recording is off", self.leg.call_id, action
                )
                return CallRecordingState.OFF
            recording = self.recording = self.recording_factory()
        return recording.control(action)
