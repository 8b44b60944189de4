"""`MediaLeg`: the media half of a `CallChannel`, over any `FrameTransport`.

Theory of operation. The leg is the `FrameHandler` of one transport. The
transport's 20 ms clock pulls outbound frames (`next_frame`) from the current
playback, and pushes inbound frames and DTMF digits. Caller inputs (digits,
speech events, recognizer results) go into one FIFO that `next_input` reads.
`play` resolves when its last frame has been pulled, or early when an input
that the call's policy allows interrupts it (barge-in). One playback runs at
a time: a new `play` ends the running one, whose `play` returns None. When
no prompt plays, an optional outbound source (a bridge, a mixer, hold music)
supplies the frames. Inbound taps see every caller frame, and outbound taps
see every frame the transport pulls (None when the leg sends nothing), so a
call recorder hears both directions on the transport's clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from ivr.channel import (
    CallEnded,
    CallerInput,
    DtmfInput,
    RecognizerConfig,
    SpeechInput,
    SpeechStarted,
)
from media import native
from media.asr import CallRecognizer, ModelCatalog
from media.audio import PcmAudio
from media.dtmf_inband import DtmfMerger, DtmfSource, InbandConfig, InbandDtmfDetector
from media.frame_batch import FrameFeatures, analyze_frame
from media.resample import resample
from media.transport import FRAME_MS, SUPPORTED_RATES, FrameTransport, frame_samples
from media.vad import (
    Endpointer,
    EndpointState,
    EndpointStep,
    UtteranceEnd,
    UtteranceStart,
    VadConfig,
)

if TYPE_CHECKING:
    from media import _rtpcore

logger = logging.getLogger("media.leg")


@dataclass(frozen=True, slots=True)
class LegConfig:
    """Behaviour of one leg.

    `barge_in_min_speech_ms`: voiced time an utterance needs before it counts
    as the caller speaking (it interrupts an interruptible prompt and yields
    `SpeechStarted`). Shorter utterances made during a prompt, such as "mhm",
    are backchannels: they interrupt nothing and their results are dropped.
    `asr_chunk_ms`: utterance audio handed to the recognizer's worker thread in
    chunks of this length, and the rest at the utterance's end. Each hand-over
    costs a thread wake-up, so 100 ms chunks cost a fifth of 20 ms ones.
    `report_speech_started`: also queue `SpeechStarted` for `next_input`
    while the recognizer is armed. `deliver_partial_results`: queue partial
    `SpeechInput`s (is_final False) as well as final ones.
    """

    max_queued_inputs: int = 64
    barge_in_min_speech_ms: int = 400
    report_speech_started: bool = True
    deliver_partial_results: bool = False
    max_buffered_utterance_ms: int = 10_000
    asr_chunk_ms: int = 100
    vad: VadConfig = field(default_factory=VadConfig)
    inband_dtmf: bool = True
    inband: InbandConfig = field(default_factory=InbandConfig)
    dtmf_merge_window_ms: int = 400


@dataclass(slots=True)
class _Utterance:
    """The utterance in progress, as the leg tracks it."""

    utterance_id: int
    start_ms: int
    during_prompt: bool
    ignored: bool
    buffered: list[bytes] = field(default_factory=list)
    pending_asr_audio: list[bytes] = field(default_factory=list)
    speech_reported: bool = False
    contains_tones: bool = False


class _Playback:
    def __init__(self, frames: deque[bytes], sample_rate: int, policy: tuple[bool, bool]) -> None:
        self.frames = frames
        self.sample_rate = sample_rate
        self.interrupt_on_dtmf, self.interrupt_on_speech = policy
        self.done: asyncio.Future[CallerInput | None] = asyncio.get_running_loop().create_future()

    def finish(self, result: CallerInput | None) -> None:
        if not self.done.done():
            self.done.set_result(result)


# Shared by the legs without a config of their own; LegConfig and its parts are frozen.
_DEFAULT_CONFIG = LegConfig()
# The bytes of one 20 ms frame of 16-bit PCM at each supported rate.
_FRAME_BYTES = {rate: 2 * frame_samples(rate) for rate in SUPPORTED_RATES}


class MediaLeg:
    """Plays audio to and collects input from one caller over a `FrameTransport`."""

    def __init__(
        self,
        transport: FrameTransport,
        *,
        call_id: str,
        config: LegConfig | None = None,
        models: ModelCatalog | None = None,
    ) -> None:
        sample_rate = transport.sample_rate
        frame_bytes = _FRAME_BYTES.get(sample_rate)
        if frame_bytes is None:
            raise ValueError(
                f"transport sample rate {sample_rate} Hz is not one of {SUPPORTED_RATES}"
            )
        self.call_id = call_id
        self.config = config or _DEFAULT_CONFIG
        self._transport = transport
        self.sample_rate = sample_rate
        self._frame_bytes = frame_bytes
        # The caller inputs that `next_input` returns, built by `_push_input` at the first one.
        self._inputs: deque[CallerInput] | None = None
        # The event that `next_input` waits on, built when it first has to wait, so a leg
        # that never waits for input does without it. Queuing an input and closing the
        # leg set it, and taking the last input and `clear_inputs` clear it.
        self._input_ready: asyncio.Event | None = None
        self._playback: _Playback | None = None
        self._closed = False
        self._recognizer_config: RecognizerConfig | None = None
        self._models = models
        # Looked up at the first read of `speech_available`, which only a gather with a
        # recognizer makes (`ModelCatalog.any_model` costs about ten Python calls).
        self._speech_available: bool | None = None
        self._recognizer: CallRecognizer | None = None
        # `_build_inbound` builds the endpointer, the in-band detector and the C
        # core at the first inbound frame or the first `listen` with a recognizer.
        # A leg whose caller sends no audio (SIPp's load scenario) never builds them.
        self._endpointer: Endpointer | None = None
        self._utterance: _Utterance | None = None
        self._last_utterance_id = 0
        self._cleared_through = 0
        # Built at the first result to drop.
        self._dropped_results: set[int] | None = None
        self._recognizing_id = 0
        self._bad_frames = 0
        self._outbound_source: Callable[[], PcmAudio | None] | None = None
        self._inbound_taps: list[Callable[[PcmAudio], None]] = []
        self._outbound_taps: list[Callable[[PcmAudio | None], None]] = []
        self.outbound_idle = True
        """True while `next_frame` returns None and calls nothing: no playback, outbound
        source or outbound tap. A transport may then send its idle packet without calling
        `next_frame` (see `RtpSession.clock_send`). False does not promise a frame."""
        # Built at the first digit.
        self._dtmf_merger: DtmfMerger | None = None
        self._inband: InbandDtmfDetector | None = None
        self._core: _rtpcore.LegCore | None = None
        transport.attach(self)

    # -- CallChannel media half -----------------------------------------

    @property
    def speech_available(self) -> bool:
        available = self._speech_available
        if available is None:
            models = self._models
            available = self._speech_available = models is not None and models.any_model()
        return available

    @property
    def media_time_ms(self) -> int:
        """Inbound media time: 20 ms per frame received."""
        return self._endpointer.now_ms if self._endpointer is not None else 0

    async def play(
        self,
        audio: PcmAudio,
        *,
        interrupt_on_dtmf: bool = False,
        interrupt_on_speech: bool = False,
    ) -> CallerInput | None:
        """Play `audio` and return None at its end, or the input that interrupted it."""
        self._raise_if_closed()
        if interrupt_on_dtmf:
            typed_ahead = self._take_first(DtmfInput)
            if typed_ahead is not None:
                return typed_ahead
        converted = resample(audio, self.sample_rate)
        pcm = converted.pcm
        if not pcm:
            return None
        remainder = len(pcm) % self._frame_bytes
        if remainder:
            pcm += bytes(self._frame_bytes - remainder)
        frames = deque(
            pcm[offset : offset + self._frame_bytes]
            for offset in range(0, len(pcm), self._frame_bytes)
        )
        if self._playback is not None:
            self._playback.finish(None)
        playback = _Playback(frames, self.sample_rate, (interrupt_on_dtmf, interrupt_on_speech))
        self._playback = playback
        self.outbound_idle = False
        send_now = getattr(self._transport, "send_next_frame_now", None)
        if send_now is not None:
            # The first frame leaves at once instead of waiting up to one ptime for the clock.
            send_now()
        try:
            return await playback.done
        finally:
            if self._playback is playback:
                self._playback = None
                self._update_outbound_idle()
            if self._closed:
                raise CallEnded(self.call_id)

    def listen(self, config: RecognizerConfig | None) -> None:
        """Arm the recognizer for the next gather, or disarm it with None.

        An utterance already in progress is recognized from its start when
        the recognizer is armed during it. The config's `end_silence_ms`
        replaces `LegConfig.vad.stop_ms` until the next `listen`. Without a
        model for the language, speech stays off for this gather (the model
        catalog warns once).
        """
        models = self._models
        if config is not None and (models is None or not models.has_model(config.language)):
            if models is not None:
                models.warn_missing(config.language)
            config = None
        self._recognizer_config = config
        endpointer = self._endpointer
        if endpointer is None:
            if config is None:
                # Nothing is armed yet, and a new endpointer starts at the default stop_ms.
                return
            endpointer = self._build_inbound()
        end_silence_ms = config.end_silence_ms if config is not None else None
        endpointer.set_stop_ms(end_silence_ms or self.config.vad.stop_ms)
        utterance = self._utterance
        if config is None:
            if self._recognizing_id and self._recognizer is not None:
                self._recognizer.abandon()
                self._recognizing_id = 0
                if utterance is not None:
                    utterance.pending_asr_audio = []
            self._sync_core()
            return
        if utterance is not None and not utterance.ignored and not self._recognizing_id:
            self._begin_recognition(utterance)
        self._sync_core()

    async def next_input(self, timeout_s: float) -> CallerInput | None:
        """Return the next caller input, or None after `timeout_s`. Raises CallEnded once closed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            self._raise_if_closed()
            inputs = self._inputs
            if inputs:
                item = inputs.popleft()
                if not inputs and self._input_ready is not None:
                    self._input_ready.clear()
                return item
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            # No input is queued and the leg is open here, so a new event starts clear.
            ready = self._input_ready
            if ready is None:
                ready = self._input_ready = asyncio.Event()
            try:
                async with asyncio.timeout(remaining):
                    await ready.wait()
            except TimeoutError:
                return None

    def clear_inputs(self) -> None:
        """Drop queued inputs and results of utterances that already ended."""
        if self._inputs is not None:
            self._inputs.clear()
        if self._input_ready is not None:
            self._input_ready.clear()
        in_progress = self._utterance is not None
        self._cleared_through = self._last_utterance_id - (1 if in_progress else 0)

    async def close(self) -> None:
        """Stop playback, wake waiters with CallEnded and close the transport."""
        if not self._closed:
            self._mark_closed()
        await self._transport.close()
        if self._recognizer is not None:
            if self._recognizing_id:
                # Flush the decoder (FinalResult) so Vosk releases the utterance cleanly.
                self._flush_recognizer_audio(self._utterance)
                self._recognizer.end(self.media_time_ms)
                self._recognizing_id = 0
                self._sync_core()
            await self._recognizer.close()
        # The C core refers back to this leg, so dropping it lets reference counting
        # free the leg instead of leaving a cycle per call to the garbage collector.
        self._core = None

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def asr_dropped_chunks(self) -> int:
        """Utterance audio chunks the recognizer dropped because its worker fell behind."""
        return self._recognizer.dropped_chunks if self._recognizer is not None else 0

    # -- bridging, mixing, hold music -----------------------------------

    def set_outbound_source(self, source: Callable[[], PcmAudio | None] | None) -> None:
        """Send frames from `source` whenever no prompt plays (a bridge, a mixer, hold music).

        `source` is called on the transport's clock and returns one 20 ms
        frame at this leg's rate, or None for silence. None removes it.
        """
        self._outbound_source = source
        self._update_outbound_idle()

    def add_inbound_tap(self, tap: Callable[[PcmAudio], None]) -> None:
        """Also hand every inbound 20 ms frame to `tap` (for bridging and recording)."""
        self._inbound_taps.append(tap)
        self._sync_core()

    def remove_inbound_tap(self, tap: Callable[[PcmAudio], None]) -> None:
        """Stop handing inbound frames to `tap`. Removing an unknown tap is harmless."""
        if tap in self._inbound_taps:
            self._inbound_taps.remove(tap)
            self._sync_core()

    def add_outbound_tap(self, tap: Callable[[PcmAudio | None], None]) -> None:
        """Also hand every outbound pull to `tap`: the frame sent, or None for nothing sent.

        The transport pulls once per 20 ms, so the tap runs on its clock.
        """
        self._outbound_taps.append(tap)
        self._update_outbound_idle()

    def remove_outbound_tap(self, tap: Callable[[PcmAudio | None], None]) -> None:
        """Stop handing outbound frames to `tap`. Removing an unknown tap is harmless."""
        if tap in self._outbound_taps:
            self._outbound_taps.remove(tap)
            self._update_outbound_idle()

    # -- FrameHandler ---------------------------------------------------

    @property
    def frame_receiver(self) -> Callable[[bytes, FrameFeatures | None], None] | None:
        """The C receiver of inbound s16le frames, or None without the extension.

        It takes the frame's `FrameFeatures`, or None to compute them in C,
        and decides as `on_analyzed_frame` does. `RtpSession` hands it each
        frame directly, without the packet clock's `FrameBatch`. Reading it
        builds the leg's inbound parts, so `RtpSession` reads it at the
        first inbound frame.
        """
        if self._endpointer is None:
            self._build_inbound()
        return self._core.frame if self._core is not None else None

    def on_audio_frame(self, frame: PcmAudio) -> None:
        if self._endpointer is None:
            self._build_inbound()
        core = self._core
        if core is not None and frame.sample_rate == self.sample_rate:
            core.frame(frame.pcm, None)
            return
        self.on_analyzed_frame(frame, None)

    def on_analyzed_frame(self, frame: PcmAudio, features: FrameFeatures | None) -> None:
        """Take one inbound frame whose energy and tone powers may come precomputed.

        The packet clock's `FrameBatch` computes them for all calls of a tick
        at once; without them (None) they are computed here, once for both
        the in-band DTMF detector and the VAD's energy gate. This is the
        Python path, which frames take without the C extension, with inbound
        taps attached or at a wrong size. It is the reference of the C path
        (`frame_receiver`).
        """
        if frame.sample_rate != self.sample_rate or len(frame.pcm) != self._frame_bytes:
            self._bad_frames += 1
            if self._bad_frames == 1 or self._bad_frames % 500 == 0:
                logger.warning(
                    "call %s: dropped %d inbound frames, last %d bytes at %d Hz",
                    self.call_id,
                    self._bad_frames,
                    len(frame.pcm),
                    frame.sample_rate,
                )
            return
        if self._endpointer is None:
            self._build_inbound()
        if self._inbound_taps:
            for tap in tuple(self._inbound_taps):
                tap(frame)
        if features is None:
            features = analyze_frame(frame.pcm, frame.sample_rate)
        digits: list[DtmfInput] = []
        if self._inband is not None:
            digits = self._inband.process(frame.pcm, features.energy, features.tone_powers)
        self._finish_frame(frame.pcm, features.energy, digits)

    def _finish_frame(self, pcm: bytes, energy: float, digits: Sequence[DtmfInput]) -> None:
        """Run the steps of a frame that follow in-band detection, which found `digits`."""
        for digit in digits:
            self._accept_dtmf(digit, DtmfSource.INBAND)
        if self._inband is not None and self._inband.tone_present and self._utterance is not None:
            self._utterance.contains_tones = True
        assert self._endpointer is not None  # built before the frame's in-band step
        for step in self._endpointer.feed(pcm, self.sample_rate, energy=energy):
            self._apply_step(step)
        self._check_barge_in()
        self._sync_core()

    def _apply_step(self, step: EndpointStep) -> None:
        for event in step.events:
            if isinstance(event, UtteranceStart):
                self._on_utterance_start(event)
            elif isinstance(event, UtteranceEnd):
                self._on_utterance_end(event)
        if step.utterance_audio is not None and self._utterance is not None:
            self._on_utterance_audio(self._utterance, step.utterance_audio)

    # -- the C core (`media._rtpcore.LegCore`) ------------------------------

    def _build_inbound(self) -> Endpointer:
        """Build the endpointer, the in-band DTMF detector and the C core, and return the first."""
        endpointer = Endpointer(self.config.vad, self.sample_rate, call_id=self.call_id)
        self._endpointer = endpointer
        if self.config.inband_dtmf:
            self._inband = InbandDtmfDetector(self.sample_rate, self.config.inband)
        self._core = self._new_core()
        self._sync_core()
        return endpointer

    def _new_core(self) -> _rtpcore.LegCore | None:
        """Return the C core of the per-frame work, or None when a part of it is Python."""
        if native.rtpcore is None or not isinstance(self._endpointer, native.rtpcore.EndpointCore):
            return None
        if self._inband is not None and not isinstance(self._inband, native.rtpcore.InbandCore):
            return None
        core = native.rtpcore.LegCore(
            self,
            self._inband,
            self._endpointer,
            self._frame_bytes,
            self.config.max_buffered_utterance_ms // FRAME_MS,
            self.config.barge_in_min_speech_ms,
        )
        return cast("_rtpcore.LegCore", core)

    def _sync_core(self) -> None:
        """Copy the state that the C core's decisions read; call after each change of it."""
        core = self._core
        if core is None:
            return
        utterance = self._utterance
        core.enabled = not self._inbound_taps
        core.in_utterance = utterance is not None
        if utterance is None or utterance.ignored:
            core.barge_in_armed = False
            core.audio_to_leg = False
            core.sink = None
            return
        core.barge_in_armed = not utterance.speech_reported
        recognizing = self._recognizing_id == utterance.utterance_id
        core.audio_to_leg = recognizing
        core.sink = None if recognizing else utterance.buffered

    def _on_core_fallback(self, pcm: bytes, features: FrameFeatures | None) -> None:
        """Take a frame that the C core leaves to the Python path (see `LegCore.frame`)."""
        self.on_analyzed_frame(PcmAudio(pcm, self.sample_rate), features)

    def _on_core_step(self, step: EndpointStep) -> None:
        """Finish a frame whose endpointer step the C core leaves to Python."""
        self._apply_step(step)
        self._check_barge_in()
        self._sync_core()

    def on_dtmf(self, digit: DtmfInput) -> None:
        """Take an RFC 4733 digit from the transport."""
        self._accept_dtmf(digit, DtmfSource.RFC4733)

    def on_sip_info_dtmf(self, digit: DtmfInput) -> None:
        """Take a digit from a SIP INFO request of this call (see `parse_info_dtmf`)."""
        self._accept_dtmf(digit, DtmfSource.SIP_INFO)

    def _accept_dtmf(self, digit: DtmfInput, source: DtmfSource) -> None:
        now_ms = int(asyncio.get_running_loop().time() * 1000)
        merger = self._dtmf_merger
        if merger is None:
            merger = self._dtmf_merger = DtmfMerger(self.config.dtmf_merge_window_ms)
        if not merger.accept(digit, source, now_ms):
            logger.debug("call %s: duplicate dtmf from %s dropped", self.call_id, source.value)
            return
        logger.debug("call %s: dtmf digit from %s", self.call_id, source.value)
        playback = self._playback
        if playback is not None and playback.interrupt_on_dtmf and not playback.done.done():
            logger.debug("call %s: playback interrupted by dtmf", self.call_id)
            playback.frames.clear()
            playback.finish(digit)
            return
        self._push_input(digit)

    def _update_outbound_idle(self) -> None:
        self.outbound_idle = (
            self._playback is None and self._outbound_source is None and not self._outbound_taps
        )

    def next_frame(self) -> PcmAudio | None:
        frame = self._pull_frame()
        if self._outbound_taps:
            for tap in tuple(self._outbound_taps):
                tap(frame)
        return frame

    def _pull_frame(self) -> PcmAudio | None:
        playback = self._playback
        if playback is None or playback.done.done():
            source = self._outbound_source
            return source() if source is not None else None
        pcm = playback.frames.popleft()
        if not playback.frames:
            playback.finish(None)
        return PcmAudio(pcm, playback.sample_rate)

    def on_transport_closed(self) -> None:
        if not self._closed:
            self._mark_closed()

    # -- speech ---------------------------------------------------------

    def _on_utterance_start(self, event: UtteranceStart) -> None:
        self._last_utterance_id += 1
        playback = self._playback
        prompt_playing = playback is not None and not playback.done.done()
        ignored = prompt_playing and playback is not None and not playback.interrupt_on_speech
        utterance = _Utterance(
            utterance_id=self._last_utterance_id,
            start_ms=event.at_ms,
            during_prompt=prompt_playing,
            ignored=ignored,
        )
        self._utterance = utterance
        if ignored:
            logger.debug("call %s: speech during a prompt without barge-in ignored", self.call_id)
            return
        for chunk in event.audio:
            self._on_utterance_audio(utterance, chunk)
        if self._recognizer_config is not None:
            self._begin_recognition(utterance)

    def _on_utterance_audio(self, utterance: _Utterance, chunk: bytes) -> None:
        if utterance.ignored:
            return
        if self._recognizing_id == utterance.utterance_id:
            self._feed_recognizer(utterance, chunk)
            return
        limit = self.config.max_buffered_utterance_ms // FRAME_MS
        if len(utterance.buffered) < limit:
            utterance.buffered.append(chunk)

    def _begin_recognition(self, utterance: _Utterance) -> None:
        config = self._recognizer_config
        assert config is not None and self._models is not None
        if self._recognizer is None:
            self._recognizer = CallRecognizer(
                self._models,
                on_result=self._on_result,
                call_id=self.call_id,
                partial_results=self.config.deliver_partial_results,
            )
        self._recognizer.begin(
            utterance.utterance_id, utterance.start_ms, config, input_rate=self.sample_rate
        )
        self._recognizing_id = utterance.utterance_id
        buffered, utterance.buffered = utterance.buffered, []
        for chunk in buffered:
            self._feed_recognizer(utterance, chunk)

    def _feed_recognizer(self, utterance: _Utterance, chunk: bytes) -> None:
        pending = utterance.pending_asr_audio
        pending.append(chunk)
        if len(pending) * FRAME_MS >= self.config.asr_chunk_ms:
            self._flush_recognizer_audio(utterance)

    def _flush_recognizer_audio(self, utterance: _Utterance | None) -> None:
        if utterance is None or not utterance.pending_asr_audio or self._recognizer is None:
            return
        self._recognizer.feed(b"".join(utterance.pending_asr_audio))
        utterance.pending_asr_audio = []

    def _on_utterance_end(self, event: UtteranceEnd) -> None:
        utterance = self._utterance
        self._utterance = None
        if utterance is None:
            return
        if self._recognizing_id != utterance.utterance_id or self._recognizer is None:
            return
        backchannel = event.voiced_ms < self.config.barge_in_min_speech_ms
        if (utterance.during_prompt and backchannel) or utterance.contains_tones:
            if self._dropped_results is None:
                self._dropped_results = set()
            self._dropped_results.add(utterance.utterance_id)
        self._flush_recognizer_audio(utterance)
        self._recognizer.end(event.end_ms)
        self._recognizing_id = 0

    def _check_barge_in(self) -> None:
        utterance = self._utterance
        endpointer = self._endpointer
        if (
            utterance is None
            or endpointer is None
            or utterance.ignored
            or utterance.speech_reported
            or endpointer.state not in (EndpointState.SPEAKING, EndpointState.STOPPING)
            or endpointer.voiced_ms < self.config.barge_in_min_speech_ms
        ):
            return
        utterance.speech_reported = True
        self._sync_core()
        event = SpeechStarted(at_ms=utterance.start_ms)
        if self._interrupt_for_speech(event):
            logger.debug("call %s: playback interrupted by speech", self.call_id)
            return
        if self._recognizer_config is not None and self.config.report_speech_started:
            self._push_input(event)

    def _on_result(self, utterance_id: int, result: SpeechInput) -> None:
        if self._closed or utterance_id <= self._cleared_through:
            return
        dropped = self._dropped_results
        if dropped is not None and utterance_id in dropped:
            if result.is_final:
                dropped.discard(utterance_id)
            return
        if not result.is_final and not self.config.deliver_partial_results:
            return
        logger.debug("call %s: speech result, final %s", self.call_id, result.is_final)
        self._push_input(result)

    # -- internals ------------------------------------------------------

    def _push_input(self, item: CallerInput) -> None:
        inputs = self._inputs
        if inputs is None:
            inputs = self._inputs = deque()
        if len(inputs) >= self.config.max_queued_inputs:
            inputs.popleft()
            logger.warning("call %s: input queue full, dropped the oldest input", self.call_id)
        inputs.append(item)
        if self._input_ready is not None:
            self._input_ready.set()

    def _take_first(self, kind: type[DtmfInput] | type[SpeechStarted]) -> CallerInput | None:
        inputs = self._inputs
        if inputs is None:
            return None
        for item in inputs:
            if isinstance(item, kind):
                inputs.remove(item)
                if not inputs and self._input_ready is not None:
                    self._input_ready.clear()
                return item
        return None

    def _interrupt_for_speech(self, event: SpeechStarted) -> bool:
        playback = self._playback
        if playback is not None and playback.interrupt_on_speech and not playback.done.done():
            playback.frames.clear()
            playback.finish(event)
            return True
        return False

    def _mark_closed(self) -> None:
        self._closed = True
        if self._playback is not None:
            self._playback.finish(None)
        if self._input_ready is not None:
            self._input_ready.set()
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("call %s: media leg closed", self.call_id)

    def _raise_if_closed(self) -> None:
        if self._closed:
            raise CallEnded(self.call_id)
