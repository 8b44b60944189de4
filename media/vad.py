"""Voice activity detection and endpointing.

`VadFramer` is the only path to webrtcvad. webrtcvad 2.0.14 rejects wrong
frame sizes with an opaque `webrtcvad.Error`. Worse, it silently misreads
some wrong inputs. It drops an odd trailing byte, reads 20 ms at 8 kHz
labelled 16 kHz as 10 ms, and reads 10 ms of 48 kHz stereo as 20 ms of mono. The framer
therefore checks rate and channel count itself, downmixes, and re-chunks any
input into exact 10, 20 or 30 ms frames, keeping a partial frame until more
audio arrives. Bad input raises `VadFormatError` before webrtcvad sees it.

`Endpointer` is a pure state machine over per-frame speech decisions:

    QUIET --speech--> STARTING --voiced >= start_ms--> SPEAKING
    STARTING --silence > start_gap_ms--> QUIET
    SPEAKING --silence--> STOPPING --silence >= stop_ms--> QUIET (utterance ends)
    STOPPING --speech--> SPEAKING
    SPEAKING/STOPPING --utterance >= max_utterance_ms--> QUIET (forced end)

Times are media time in milliseconds, counted from the first frame fed.
"""

from __future__ import annotations

import enum
import functools
import importlib
import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import TYPE_CHECKING, Protocol

import numpy as np
import webrtcvad

from media import native

_webrtcvad: ModuleType | None
try:
    _webrtcvad = importlib.import_module("_webrtcvad")  # the C module under webrtcvad-wheels 2.0
except ImportError:
    _webrtcvad = None

logger = logging.getLogger("media.vad")

VAD_RATES = (8000, 16000, 32000, 48000)
VAD_FRAME_MS = (10, 20, 30)


class VadFormatError(ValueError):
    """Audio handed to the VAD has a rate, channel count or size it cannot take."""


@dataclass(frozen=True, slots=True)
class VadConfig:
    """Endpointing settings. Times are in milliseconds.

    `mode` is the webrtcvad aggressiveness (0-3). With webrtcvad 2.0.14,
    modes 0-2 classify low white noise as speech and mode 3 does not.
    `energy_gate_dbfs` marks frames quieter than this level as non-speech
    whatever webrtcvad says (None disables the gate).
    """

    mode: int = 3
    frame_ms: int = 20
    start_ms: int = 120
    start_gap_ms: int = 60
    stop_ms: int = 600
    preroll_ms: int = 300
    max_utterance_ms: int = 20_000
    energy_gate_dbfs: float | None = -55.0

    def __post_init__(self) -> None:
        if self.mode not in range(4):
            raise ValueError(f"VAD mode {self.mode} outside 0-3")
        if self.frame_ms not in VAD_FRAME_MS:
            raise ValueError(f"VAD frame of {self.frame_ms} ms; webrtcvad takes 10, 20 or 30 ms")
        for name in ("start_ms", "stop_ms", "preroll_ms", "max_utterance_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"VAD {name} must not be negative")


class VadFramer:
    """Re-chunk s16 PCM into exact webrtcvad frames and classify each one."""

    def __init__(self, sample_rate: int, *, mode: int = 3, frame_ms: int = 20) -> None:
        if sample_rate not in VAD_RATES:
            raise VadFormatError(f"VAD rate {sample_rate} Hz is not one of {VAD_RATES}")
        if frame_ms not in VAD_FRAME_MS:
            raise VadFormatError(f"VAD frame of {frame_ms} ms; webrtcvad takes 10, 20 or 30 ms")
        self.sample_rate = sample_rate
        self.frame_ms = frame_ms
        self.frame_bytes = sample_rate * frame_ms // 1000 * 2
        self._vad = webrtcvad.Vad(mode)
        self._pending = b""

    def frames(self, pcm: bytes, sample_rate: int, channels: int = 1) -> list[bytes]:
        """Append interleaved s16le `pcm` and return the complete mono frames now available."""
        if sample_rate != self.sample_rate:
            raise VadFormatError(
                f"VAD expects {self.sample_rate} Hz audio, got {sample_rate} Hz; resample first"
            )
        if channels == 1 and not self._pending and len(pcm) == self.frame_bytes:
            return [pcm]  # the usual case: one exact mono frame
        if channels < 1:
            raise VadFormatError(f"invalid channel count {channels}")
        if len(pcm) % (2 * channels):
            raise VadFormatError(
                f"{len(pcm)} bytes is not a whole number of {channels}-channel 16-bit samples"
            )
        if channels > 1:
            samples = np.frombuffer(pcm, dtype="<i2").reshape(-1, channels)
            pcm = samples.mean(axis=1).round().astype("<i2").tobytes()
        data = self._pending + pcm
        whole = len(data) // self.frame_bytes * self.frame_bytes
        self._pending = data[whole:]
        return [data[i : i + self.frame_bytes] for i in range(0, whole, self.frame_bytes)]

    def is_speech(self, frame: bytes) -> bool:
        """Classify one exact frame from `frames`."""
        if len(frame) != self.frame_bytes:
            raise VadFormatError(f"VAD frame of {len(frame)} bytes, expected {self.frame_bytes}")
        return bool(self._vad.is_speech(frame, self.sample_rate))

    def classifier(self) -> Callable[[bytes, int], object]:
        """Return `classify(frame, sample_count)`, webrtcvad's decision on one exact frame.

        The caller must pass exact frames, as `is_speech` checks. With
        webrtcvad-wheels 2.0 this is its C function `_webrtcvad.process`
        bound to this VAD, which skips the Python wrapper `Vad.is_speech`.
        With another webrtcvad it is that wrapper.
        """
        handle = getattr(self._vad, "_vad", None)
        process = getattr(_webrtcvad, "process", None) if _webrtcvad is not None else None
        if handle is None or process is None:
            is_speech = self._vad.is_speech
            rate = self.sample_rate
            return lambda frame, sample_count: is_speech(frame, rate, sample_count)
        return functools.partial(process, handle, self.sample_rate)

    @property
    def pending_bytes(self) -> int:
        """Bytes of a partial frame kept for the next call."""
        return len(self._pending)


def level_dbfs(frame: bytes) -> float:
    """Return the RMS level of s16le `frame` in dBFS (-inf for digital silence)."""
    samples = np.frombuffer(frame, dtype="<i2").astype(np.float64)
    return energy_level_dbfs(float(samples @ samples), samples.size)


def energy_level_dbfs(energy: float, sample_count: int) -> float:
    """Return the RMS level in dBFS of `sample_count` s16 samples whose squares sum to `energy`."""
    if sample_count == 0:
        return -math.inf
    power = energy / sample_count
    return 10 * math.log10(power / (32768.0 * 32768.0)) if power > 0 else -math.inf


class EndpointState(enum.Enum):
    QUIET = "quiet"
    STARTING = "starting"
    SPEAKING = "speaking"
    STOPPING = "stopping"


@dataclass(frozen=True, slots=True)
class UtteranceStart:
    """Start of an utterance at `at_ms`, with `audio` holding the pre-roll and the frames so far."""

    at_ms: int
    audio: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class UtteranceEnd:
    """The utterance that began at `start_ms` ended at `end_ms` (its last voiced frame)."""

    start_ms: int
    end_ms: int
    voiced_ms: int
    forced: bool = False


EndpointEvent = UtteranceStart | UtteranceEnd


@dataclass(slots=True)
class EndpointStep:
    """The result of one frame: events, and the frame itself when it belongs to an utterance."""

    events: list[EndpointEvent] = field(default_factory=list)
    utterance_audio: bytes | None = None


class _FrameStepper(Protocol):
    config: VadConfig
    framer: VadFramer

    def step(self, frame: bytes, speech: bool) -> EndpointStep: ...


def _feed_chunked(
    endpointer: _FrameStepper, pcm: bytes, sample_rate: int, channels: int, energy: float | None
) -> list[EndpointStep]:
    """Re-chunk `pcm` into VAD frames and step `endpointer` once per frame."""
    steps = []
    gate = endpointer.config.energy_gate_dbfs
    framer = endpointer.framer
    for frame in framer.frames(pcm, sample_rate, channels):
        speech = framer.is_speech(frame)
        if speech and gate is not None:
            if energy is not None and frame is pcm:
                level = energy_level_dbfs(energy, len(frame) // 2)
            else:
                level = level_dbfs(frame)
            if level < gate:
                speech = False
        steps.append(endpointer.step(frame, speech))
    return steps


class PythonEndpointer:
    """Find utterance starts and ends in a stream of frames (pure, no clock of its own).

    This is the reference implementation. `Endpointer` is the same machine
    with its per-frame steps in C (`media/_rtpcore.c`) when the extension
    is built; `tests/fuzz/test_rtpcore.py` compares the two.
    """

    def __init__(self, config: VadConfig, sample_rate: int, *, call_id: str = "-") -> None:
        self.config = config
        self.call_id = call_id
        self.framer = VadFramer(sample_rate, mode=config.mode, frame_ms=config.frame_ms)
        self.state = EndpointState.QUIET
        self.now_ms = 0
        preroll_frames = max(1, config.preroll_ms // config.frame_ms)
        self._preroll: deque[bytes] = deque(maxlen=preroll_frames)
        self._starting: list[bytes] = []
        self._start_ms = 0
        self._voiced_ms = 0
        self._silence_ms = 0
        self._last_voiced_end_ms = 0

    @property
    def voiced_ms(self) -> int:
        """Voiced time in the current utterance (0 when quiet)."""
        return self._voiced_ms if self.state is not EndpointState.QUIET else 0

    @property
    def utterance_start_ms(self) -> int:
        return self._start_ms

    def set_stop_ms(self, stop_ms: int) -> None:
        """End utterances after `stop_ms` of silence from now on, the current one included."""
        if stop_ms != self.config.stop_ms:
            self.config = replace(self.config, stop_ms=stop_ms)

    def _set_state(self, new: EndpointState) -> None:
        if new is not self.state:
            logger.debug("call %s: endpoint %s -> %s", self.call_id, self.state.value, new.value)
            self.state = new

    def feed(
        self, pcm: bytes, sample_rate: int, channels: int = 1, *, energy: float | None = None
    ) -> list[EndpointStep]:
        """Feed audio of any length and return one step per complete VAD frame.

        `energy`, the sum of the squared samples of `pcm`, saves computing the
        level for the energy gate when `pcm` is exactly one mono VAD frame.
        """
        gate = self.config.energy_gate_dbfs
        framer = self.framer
        if (
            channels == 1
            and sample_rate == framer.sample_rate
            and len(pcm) == framer.frame_bytes
            and not framer._pending
        ):
            # The usual call: one exact mono frame, classified without the framer's list.
            speech = bool(framer._vad.is_speech(pcm, sample_rate))
            if speech and gate is not None:
                if energy is None:
                    level = level_dbfs(pcm)
                else:
                    level = energy_level_dbfs(energy, len(pcm) // 2)
                if level < gate:
                    speech = False
            return [self.step(pcm, speech)]
        return _feed_chunked(self, pcm, sample_rate, channels, energy)

    def step(self, frame: bytes, speech: bool) -> EndpointStep:
        """Advance by one frame with a known speech decision."""
        config = self.config
        frame_ms = config.frame_ms
        frame_start = self.now_ms
        self.now_ms += frame_ms
        result = EndpointStep()
        state = self.state

        if state is EndpointState.QUIET:
            if speech:
                self._start_ms = frame_start
                self._voiced_ms = frame_ms
                self._silence_ms = 0
                self._starting = [frame]
                self._set_state(EndpointState.STARTING)
                self._maybe_confirm_start(result)
            else:
                self._preroll.append(frame)
        elif state is EndpointState.STARTING:
            self._starting.append(frame)
            if speech:
                self._voiced_ms += frame_ms
                self._silence_ms = 0
                self._maybe_confirm_start(result)
            else:
                self._silence_ms += frame_ms
                if self._silence_ms > config.start_gap_ms:
                    self._preroll.extend(self._starting)
                    self._starting = []
                    self._voiced_ms = 0
                    self._set_state(EndpointState.QUIET)
        else:
            result.utterance_audio = frame
            if speech:
                self._voiced_ms += frame_ms
                self._silence_ms = 0
                self._last_voiced_end_ms = self.now_ms
                self._set_state(EndpointState.SPEAKING)
            else:
                self._silence_ms += frame_ms
                self._set_state(EndpointState.STOPPING)
                if self._silence_ms >= config.stop_ms:
                    self._end(result, forced=False)
                    return result
            if self.now_ms - self._start_ms >= config.max_utterance_ms:
                self._end(result, forced=True)
        return result

    def _maybe_confirm_start(self, result: EndpointStep) -> None:
        if self._voiced_ms < self.config.start_ms:
            return
        audio = (*self._preroll, *self._starting)
        preroll_ms = len(self._preroll) * self.config.frame_ms
        self._preroll.clear()
        self._starting = []
        self._last_voiced_end_ms = self.now_ms
        self._set_state(EndpointState.SPEAKING)
        result.events.append(UtteranceStart(at_ms=self._start_ms, audio=audio))
        logger.debug("call %s: utterance start, %d ms pre-roll", self.call_id, preroll_ms)

    def _end(self, result: EndpointStep, *, forced: bool) -> None:
        result.events.append(
            UtteranceEnd(
                start_ms=self._start_ms,
                end_ms=self._last_voiced_end_ms,
                voiced_ms=self._voiced_ms,
                forced=forced,
            )
        )
        self._voiced_ms = 0
        self._silence_ms = 0
        self._set_state(EndpointState.QUIET)


if TYPE_CHECKING or native.rtpcore is None:
    Endpointer = PythonEndpointer
else:
    native.rtpcore.configure_endpointer(
        EndpointState.QUIET,
        EndpointState.STARTING,
        EndpointState.SPEAKING,
        EndpointState.STOPPING,
        UtteranceStart,
        UtteranceEnd,
        EndpointStep,
    )

    class Endpointer(native.rtpcore.EndpointCore):
        """The machine of `PythonEndpointer` with `feed` and `step` in C.

        The C part classifies an exact mono frame and steps the state
        machine. Other input comes back to `_feed_frames` here for the
        framer, and this class logs the transitions. The framer must be fed
        only through `feed`, because the C part tracks whether it contains
        a partial frame.
        """

        __slots__ = ("call_id", "config", "framer")

        def __init__(self, config: VadConfig, sample_rate: int, *, call_id: str = "-") -> None:
            self.config = config
            self.call_id = call_id
            self.framer = VadFramer(sample_rate, mode=config.mode, frame_ms=config.frame_ms)
            super().__init__(
                self.framer.classifier(),
                sample_rate,
                self.framer.frame_bytes,
                config.frame_ms,
                config.start_ms,
                config.start_gap_ms,
                config.stop_ms,
                max(1, config.preroll_ms // config.frame_ms),
                config.max_utterance_ms,
                config.energy_gate_dbfs,
            )

        def set_stop_ms(self, stop_ms: int) -> None:
            """End utterances after `stop_ms` of silence from now on, the current one included."""
            if stop_ms != self.config.stop_ms:
                self.config = replace(self.config, stop_ms=stop_ms)
                self._stop_ms = stop_ms

        def _feed_frames(
            self, pcm: bytes, sample_rate: int, channels: int, energy: float | None
        ) -> list[EndpointStep]:
            steps = _feed_chunked(self, pcm, sample_rate, channels, energy)
            self._framer_pending = 1 if self.framer.pending_bytes else 0
            return steps

        def _log_state(self, old: EndpointState, new: EndpointState) -> None:
            logger.debug("call %s: endpoint %s -> %s", self.call_id, old.value, new.value)

        def _log_start(self, preroll_ms: int) -> None:
            logger.debug("call %s: utterance start, %d ms pre-roll", self.call_id, preroll_ms)

        def _level_dbfs(self, pcm: bytes) -> float:
            return level_dbfs(pcm)
