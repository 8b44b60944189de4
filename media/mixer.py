"""Bridging and conferencing of call legs, with supervisor modes and recording.

Theory of operation. A `Mixer` joins legs. Each leg's inbound frames are
copied, through a tap, into one bounded queue per listener that may hear
that leg (resampled to the listener's rate when the rates differ). When a
leg's transport pulls its next outbound frame, the mixer pops one frame
from each of the leg's queues and sums them with clipping. The queues hold
at most `max_queue_frames`, so a stalled listener never builds up delay.

Who hears whom depends on roles and the supervisor mode:

    CALLER     hears AGENT, and SUPERVISOR in BARGE mode
    AGENT      hears CALLER, and SUPERVISOR in WHISPER or BARGE mode
    SUPERVISOR hears CALLER and AGENT (all modes)

A bridge of two legs is a mixer with a CALLER and an AGENT. The optional
recorder writes a stereo WAV file, caller on the left and agent (plus a
barging supervisor) on the right, one frame per inbound caller frame (the
caller's transport delivers one every 20 ms, concealing lost packets).
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from media.audio import PcmAudio
from media.leg import MediaLeg
from media.recorder import StereoRecorder
from media.resample import StreamResampler
from media.transport import frame_samples

logger = logging.getLogger("media.mixer")


class Role(enum.Enum):
    CALLER = "caller"
    AGENT = "agent"
    SUPERVISOR = "supervisor"


class SupervisorMode(enum.Enum):
    LISTEN = "listen"
    WHISPER = "whisper"
    BARGE = "barge"


@dataclass(slots=True)
class _Participant:
    leg: MediaLeg
    role: Role
    queues: dict[int, deque[bytes]] = field(default_factory=dict)
    resamplers: dict[int, StreamResampler] = field(default_factory=dict)


class Mixer:
    """Audio mixing among legs by role (the module docstring lists who hears whom)."""

    def __init__(self, *, call_id: str = "-", max_queue_frames: int = 5) -> None:
        self.call_id = call_id
        self.max_queue_frames = max_queue_frames
        self.supervisor_mode = SupervisorMode.LISTEN
        self._participants: dict[int, _Participant] = {}
        self._taps: dict[int, Callable[[PcmAudio], None]] = {}
        self._recorder: StereoRecorder | None = None

    def add(self, leg: MediaLeg, role: Role) -> None:
        """Join `leg` in `role`. Its outbound audio comes from the mixer from now on."""
        key = id(leg)
        if key in self._participants:
            raise ValueError("leg is already in this mixer")
        participant = _Participant(leg, role)
        self._participants[key] = participant

        def tap(frame: PcmAudio) -> None:
            self._on_inbound(key, frame)

        self._taps[key] = tap
        leg.add_inbound_tap(tap)
        leg.set_outbound_source(lambda: self._next_frame(key))
        logger.info("call %s: %s joined the mixer", self.call_id, role.value)

    def remove(self, leg: MediaLeg) -> None:
        """Take `leg` out. It sends silence until it gets another source."""
        key = id(leg)
        participant = self._participants.pop(key, None)
        if participant is None:
            return
        tap = self._taps.pop(key)
        leg.remove_inbound_tap(tap)
        leg.set_outbound_source(None)
        for other in self._participants.values():
            other.queues.pop(key, None)
            other.resamplers.pop(key, None)
        logger.info("call %s: %s left the mixer", self.call_id, participant.role.value)

    def close(self) -> None:
        """Remove every leg and stop recording."""
        for participant in list(self._participants.values()):
            self.remove(participant.leg)
        self.stop_recording()

    def set_supervisor_mode(self, mode: SupervisorMode) -> None:
        """Switch the supervisor between listen, whisper (to the agent) and barge (to both)."""
        logger.info(
            "call %s: supervisor mode %s -> %s",
            self.call_id,
            self.supervisor_mode.value,
            mode.value,
        )
        self.supervisor_mode = mode

    def hears(self, listener: Role, speaker: Role) -> bool:
        """Return whether a leg in `listener` role hears one in `speaker` role right now."""
        if listener is speaker:
            return False
        if listener is Role.SUPERVISOR:
            return True
        if speaker is Role.SUPERVISOR:
            if listener is Role.AGENT:
                return self.supervisor_mode in (SupervisorMode.WHISPER, SupervisorMode.BARGE)
            return self.supervisor_mode is SupervisorMode.BARGE
        return True

    # -- recording -------------------------------------------------------

    def start_recording(self, path: Path, *, sample_rate: int = 8000) -> None:
        """Record the call to a stereo WAV file (caller left, agent right)."""
        if self._recorder is not None:
            raise RuntimeError("this mixer is already recording")
        self._recorder = StereoRecorder(path, sample_rate, call_id=self.call_id)

    def pause_recording(self) -> None:
        """Write silence in place of the call's audio (for a card number) until resumed."""
        if self._recorder is not None:
            self._recorder.paused = True

    def resume_recording(self) -> None:
        if self._recorder is not None:
            self._recorder.paused = False

    def stop_recording(self) -> Path | None:
        """Finish the WAV file and return its path (None when not recording)."""
        recorder, self._recorder = self._recorder, None
        if recorder is None:
            return None
        recorder.close()
        return recorder.path

    # -- audio paths -------------------------------------------------------

    def _on_inbound(self, speaker_key: int, frame: PcmAudio) -> None:
        speaker = self._participants.get(speaker_key)
        if speaker is None:
            return
        for listener_key, listener in self._participants.items():
            if listener_key == speaker_key or not self.hears(listener.role, speaker.role):
                continue
            pcm = frame.pcm
            if frame.sample_rate != listener.leg.sample_rate:
                resampler = listener.resamplers.get(speaker_key)
                if resampler is None:
                    resampler = StreamResampler(frame.sample_rate, listener.leg.sample_rate)
                    listener.resamplers[speaker_key] = resampler
                pcm = resampler.process(pcm)
            queue = listener.queues.setdefault(speaker_key, deque())
            queue.append(pcm)
            while len(queue) > self.max_queue_frames:
                queue.popleft()
        recorder = self._recorder
        if recorder is not None:
            if speaker.role is Role.CALLER:
                recorder.add_left(frame)
                recorder.tick()
            elif speaker.role is Role.AGENT or (
                speaker.role is Role.SUPERVISOR and self.supervisor_mode is SupervisorMode.BARGE
            ):
                recorder.add_right(frame)

    def _next_frame(self, listener_key: int) -> PcmAudio | None:
        listener = self._participants.get(listener_key)
        if listener is None:
            return None
        frames = [queue.popleft() for queue in listener.queues.values() if queue]
        if not frames:
            return None
        rate = listener.leg.sample_rate
        if len(frames) == 1:
            return PcmAudio(frames[0], rate)
        size = frame_samples(rate)
        mixed = np.zeros(size, dtype=np.int32)
        for pcm in frames:
            samples = np.frombuffer(pcm, dtype="<i2")
            mixed[: samples.size] += samples[:size]
        return PcmAudio(np.clip(mixed, -32768, 32767).astype("<i2").tobytes(), rate)


def bridge(caller: MediaLeg, agent: MediaLeg, *, call_id: str = "-") -> Mixer:
    """Connect two legs so each hears the other. Close the returned mixer to unbridge."""
    mixer = Mixer(call_id=call_id)
    mixer.add(caller, Role.CALLER)
    mixer.add(agent, Role.AGENT)
    return mixer
