"""Recording of a whole call from the caller's leg, with pause and resume.

Theory of operation. A `CallRecording` belongs to one caller `MediaLeg`
and taps both of its directions. The left channel is what the caller
says (the leg's inbound frames). The right channel is everything the caller
hears (the leg's outbound frames): IVR prompts, queue announcements and
hold music, and then the agent, because the bridge's mixer is the leg's
outbound source. The taps sit on the leg, not on the signaling, so SIP
and WebRTC callers record alike. The transport pulls one outbound frame
every 20 ms, and each pull writes one stereo frame, so the file runs on
the transport's clock. Inbound frames wait in the `StereoRecorder`'s
bounded queue until that pull. An RTP leg delivers its inbound frame in
the same tick as the pull, so both channels line up.

NOTE: a WebRTC leg receives and sends on separate clocks, so inbound
frames that arrive before the first pulls stay queued, and the caller's
channel can lag the other one by up to the queue's 10 frames (200 ms).

States follow `ivr.recording`: OFF -> RECORDING <-> PAUSED -> STOPPED,
changed only by `control`. The WAV file is created by `start`. While
paused, silence is written on both channels, so offsets in the file stay
true to the call's time, and each pause is kept as a `PauseSpan`. `stop`
closes the file and calls `on_stopped` once with the `RecordingSummary`. A
write error (a full disk) stops the recording with the error in the
summary, and the call goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ivr.recording import CallRecordingState, RecordingAction, next_recording_state
from media.audio import PcmAudio
from media.leg import MediaLeg
from media.recorder import StereoRecorder
from media.transport import FRAME_MS

logger = logging.getLogger("media.recording")


@dataclass(frozen=True, slots=True)
class PauseSpan:
    """One pause: Unix times, and where the silence sits in the file in milliseconds.

    `resumed_at` is None for a pause that lasted until the recording stopped.
    """

    paused_at: float
    resumed_at: float | None
    offset_ms: int
    duration_ms: int


@dataclass(frozen=True, slots=True)
class RecordingSummary:
    """A finished recording: its file, Unix start and stop times, length and pauses.

    `error` is the message of the write error that stopped it early, else None.
    """

    path: Path
    started_at: float
    stopped_at: float
    duration_ms: int
    sample_rate: int
    pauses: tuple[PauseSpan, ...] = ()
    error: str | None = None


@dataclass(slots=True)
class _OpenPause:
    paused_at: float
    offset_frames: int


class CallRecording:
    """Record `leg` to the stereo WAV file `path` (created by `start`).

    `path` may be a function that returns the path, called once when the path
    is first needed.

    `clock` returns Unix time in seconds. `on_stopped` runs once, inside the
    call to `control` or `close` that stopped the recording.
    """

    def __init__(
        self,
        leg: MediaLeg,
        path: Path | Callable[[], Path],
        *,
        call_id: str,
        sample_rate: int = 8000,
        clock: Callable[[], float] = time.time,
        on_stopped: Callable[[RecordingSummary], None] | None = None,
    ) -> None:
        self.leg = leg
        self._path = path
        self.call_id = call_id
        self.sample_rate = sample_rate
        self._clock = clock
        self._on_stopped = on_stopped
        self._state = CallRecordingState.OFF
        self._recorder: StereoRecorder | None = None
        self._started_at = 0.0
        self._open_pause: _OpenPause | None = None
        self._pauses: list[PauseSpan] = []
        self._error: str | None = None
        self.summary: RecordingSummary | None = None

    @property
    def path(self) -> Path:
        """The WAV file's path, built on first use when `path` was given as a function."""
        if not isinstance(self._path, Path):
            self._path = self._path()
        return self._path

    @property
    def state(self) -> CallRecordingState:
        return self._state

    def control(self, action: RecordingAction) -> CallRecordingState:
        """Apply `action` and return the state after it; an action that does not apply is ignored.

        A `start` whose file cannot be created leaves the recording STOPPED,
        with the error in `summary`.
        """
        new = next_recording_state(self._state, action)
        if new is self._state:
            logger.info(
                "call %s: recording %s ignored in state %s", self.call_id, action, new.value
            )
            return new
        match action:
            case "start":
                self._open()
            case "pause":
                self._pause()
            case "resume":
                self._resume()
            case "stop":
                self._finish()
        return self._state

    def close(self) -> RecordingSummary | None:
        """Stop a running or paused recording (at hangup); return the summary, if it ever ran."""
        if self._state in (CallRecordingState.RECORDING, CallRecordingState.PAUSED):
            self.control("stop")
        return self.summary

    # -- transitions --------------------------------------------------------

    def _set_state(self, new: CallRecordingState) -> None:
        logger.info("call %s: recording %s -> %s", self.call_id, self._state.value, new.value)
        self._state = new

    def _open(self) -> None:
        self._started_at = self._clock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._recorder = StereoRecorder(self.path, self.sample_rate, call_id=self.call_id)
        except OSError as exc:
            logger.error("call %s: recording file not created: %s", self.call_id, exc)
            self._error = f"file not created: {exc.strerror or exc}"
            self._set_state(CallRecordingState.STOPPED)
            self._report(frames=0)
            return
        self.leg.add_inbound_tap(self._on_inbound)
        self.leg.add_outbound_tap(self._on_outbound)
        self._set_state(CallRecordingState.RECORDING)

    def _pause(self) -> None:
        recorder = self._recorder
        assert recorder is not None
        recorder.paused = True
        self._open_pause = _OpenPause(self._clock(), recorder.frames_written)
        self._set_state(CallRecordingState.PAUSED)

    def _resume(self) -> None:
        recorder = self._recorder
        assert recorder is not None
        self._close_pause(recorder, self._clock())
        recorder.paused = False
        self._set_state(CallRecordingState.RECORDING)

    def _close_pause(self, recorder: StereoRecorder, resumed_at: float | None) -> None:
        pause, self._open_pause = self._open_pause, None
        if pause is None:
            return
        frames = recorder.frames_written - pause.offset_frames
        self._pauses.append(
            PauseSpan(
                paused_at=pause.paused_at,
                resumed_at=resumed_at,
                offset_ms=pause.offset_frames * FRAME_MS,
                duration_ms=frames * FRAME_MS,
            )
        )

    def _finish(self) -> None:
        recorder, self._recorder = self._recorder, None
        self.leg.remove_inbound_tap(self._on_inbound)
        self.leg.remove_outbound_tap(self._on_outbound)
        frames = 0
        if recorder is not None:
            self._close_pause(recorder, None)
            frames = recorder.frames_written
            try:
                recorder.close()
            except OSError as exc:
                logger.error("call %s: recording file not finished: %s", self.call_id, exc)
                self._error = self._error or f"file not finished: {exc.strerror or exc}"
        self._set_state(CallRecordingState.STOPPED)
        self._report(frames)

    def _report(self, frames: int) -> None:
        self.summary = RecordingSummary(
            path=self.path,
            started_at=self._started_at,
            stopped_at=self._clock(),
            duration_ms=frames * FRAME_MS,
            sample_rate=self.sample_rate,
            pauses=tuple(self._pauses),
            error=self._error,
        )
        if self._on_stopped is not None:
            try:
                self._on_stopped(self.summary)
            except Exception:
                logger.exception("call %s: recording stop callback failed", self.call_id)

    # -- taps -----------------------------------------------------------------

    def _on_inbound(self, frame: PcmAudio) -> None:
        recorder = self._recorder
        if recorder is not None:
            recorder.add_left(frame)

    def _on_outbound(self, frame: PcmAudio | None) -> None:
        recorder = self._recorder
        if recorder is None:
            return
        if frame is not None:
            recorder.add_right(frame)
        try:
            recorder.tick()
        except OSError as exc:
            logger.error("call %s: recording write failed, stopping it: %s", self.call_id, exc)
            self._error = f"write failed: {exc.strerror or exc}"
            self.control("stop")
