"""One browser call leg: its peer connection, media transport and call state.

`WebRtcTransport` moves audio and DTMF between an aiortc peer connection
and a frame handler (the media package's `MediaLeg`, or a bridge). It owns
the inbound reader task and closes the peer connection.

`WebRtcCall` is what the server hands to the application: identity, the
transport, the call state machine (connecting -> connected <-> held ->
ended, changed only by `_set_state`, which logs old -> new) and the
hold/mute flags that the browser controls. Held: both directions carry
silence. Muted: the browser's audio is replaced by silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any

import av
from aiortc import RTCPeerConnection, RTCRtpTransceiver
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RtpPacket

from ivr.channel import DtmfInput
from media.audio import PcmAudio
from media.rfc4733 import DtmfReceiver
from media.transport import FrameHandler
from signaling.webrtc.protocol import Role
from signaling.webrtc.tracks import FrameConverter, OutboundAudioTrack

logger = logging.getLogger("webrtc")


def _now_ms() -> int:
    return int(time.monotonic() * 1000)


class LegState(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    HELD = "held"
    ENDED = "ended"


class WebRtcTransport:
    """Carries 20 ms frames and DTMF between one peer connection and a `FrameHandler`.

    A `media.transport.FrameTransport`, so a `media.leg.MediaLeg` can run on
    it. Until a handler is attached, inbound audio is dropped and silence is
    sent.
    """

    def __init__(self, pc: RTCPeerConnection, sample_rate: int, *, call_id: str) -> None:
        self.pc = pc
        self.call_id = call_id
        self._sample_rate = sample_rate
        self._handler: FrameHandler | None = None
        self._converter = FrameConverter(sample_rate)
        self._silence = PcmAudio(bytes(sample_rate * 2 // 50), sample_rate)
        self._dtmf: dict[int, DtmfReceiver] = {}
        self._reader: asyncio.Task[None] | None = None
        self._closed = False
        self.inbound_muted = False
        self.outbound = OutboundAudioTrack(sample_rate, self._next_frame, call_id=call_id)
        self.frames_received = 0
        self.rtp_digits_received = 0
        self.handler_errors = 0

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    def attach(self, handler: FrameHandler) -> None:
        self._handler = handler

    def start_receiving(self, track: MediaStreamTrack) -> None:
        """Read the browser's audio track until it ends (called on aiortc's track event)."""
        if self._reader is None and track.kind == "audio":
            self._reader = asyncio.create_task(
                self._read(track), name=f"webrtc-read-{self.call_id}"
            )

    def intercept_telephone_events(
        self, transceiver: RTCRtpTransceiver, payload_types: dict[int, int]
    ) -> None:
        """Take RFC 4733 packets out of the receiver before its jitter buffer and decoder.

        aiortc has no telephone-event support: it would hand these packets to
        the audio decoder. The receiver's `_handle_rtp_packet` is wrapped on
        this one instance (aiortc 1.16 calls it for every routed RTP packet).
        NOTE: the jitter buffer then has a gap in sequence numbers for each
        event packet, which can delay inbound audio right after a key press.
        """
        if not payload_types:
            return
        for payload_type, clock_rate in payload_types.items():
            self._dtmf[payload_type] = DtmfReceiver(clock_rate, call_id=self.call_id)
        receiver = transceiver.receiver
        original: Callable[..., Awaitable[None]] = receiver._handle_rtp_packet

        async def handle(packet: RtpPacket, arrival_time_ms: int) -> None:
            dtmf = self._dtmf.get(packet.payload_type)
            if dtmf is None:
                await original(packet, arrival_time_ms=arrival_time_ms)
                return
            self._on_telephone_event(dtmf, packet)

        setattr(receiver, "_handle_rtp_packet", handle)  # noqa: B010

    def _on_telephone_event(self, dtmf: DtmfReceiver, packet: RtpPacket) -> None:
        try:
            digits = dtmf.receive(packet.ssrc, packet.timestamp, packet.payload, _now_ms())
        except ValueError as exc:
            logger.debug("invalid telephone-event packet call_id=%s: %s", self.call_id, exc)
            return
        for digit in digits:
            self.rtp_digits_received += 1
            self.deliver_dtmf(digit)

    def _poll_telephone_events(self) -> None:
        """Report a key press whose end packets were all lost (called every frame)."""
        now_ms = _now_ms()
        for dtmf in self._dtmf.values():
            for digit in dtmf.poll(now_ms):
                self.rtp_digits_received += 1
                self.deliver_dtmf(digit)

    def deliver_dtmf(self, digit: DtmfInput) -> None:
        """Pass one key press (from RTP or from signaling) to the frame handler."""
        logger.debug("dtmf received call_id=%s", self.call_id)
        if self._handler is None:
            return
        try:
            self._handler.on_dtmf(digit)
        except Exception:
            self._handler_failed("on_dtmf")

    def _next_frame(self) -> PcmAudio | None:
        if self._handler is None:
            return None
        try:
            return self._handler.next_frame()
        except Exception:
            self._handler_failed("next_frame")
            return None

    def _handler_failed(self, method: str) -> None:
        """Log a frame handler bug without stopping the media loop.

        The first failure and every 500th after it are logged with the traceback.
        """
        self.handler_errors += 1
        if self.handler_errors % 500 == 1:
            logger.exception(
                "frame handler %s failed (%d so far) call_id=%s",
                method,
                self.handler_errors,
                self.call_id,
            )

    async def _read(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                logger.debug("inbound track ended call_id=%s", self.call_id)
                return
            if not isinstance(frame, av.AudioFrame):
                continue
            try:
                converted = self._converter.push(frame)
            except (ValueError, av.FFmpegError):
                logger.warning("undecodable inbound audio frame dropped call_id=%s", self.call_id)
                continue
            self._poll_telephone_events()
            for audio in converted:
                self.frames_received += 1
                if self._handler is None:
                    continue
                try:
                    self._handler.on_audio_frame(self._silence if self.inbound_muted else audio)
                except Exception:
                    self._handler_failed("on_audio_frame")

    async def close(self) -> None:
        """Stop reading and sending and close the peer connection. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self.outbound.stop()
        await self.pc.close()
        if self._handler is not None:
            self._handler.on_transport_closed()


class WebRtcCall:
    """A browser's call leg, as handed to the application."""

    def __init__(
        self,
        *,
        call_id: str,
        role: Role,
        user: str,
        to: str,
        transport: WebRtcTransport,
        notify: Callable[[WebRtcCall], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.call_id = call_id
        self.role = role
        self.user = user
        self.to = to
        self.transport = transport
        self.state = LegState.CONNECTING
        self.reason = ""
        self.muted = False
        self.started_at = clock()
        self.ended = asyncio.Event()
        self.context: dict[str, Any] = {}
        self._notify = notify

    @property
    def held(self) -> bool:
        return self.state is LegState.HELD

    def _set_state(self, new: LegState, reason: str = "") -> None:
        if new is self.state:
            return
        if self.state is LegState.ENDED:
            raise RuntimeError(f"call {self.call_id} has ended and cannot become {new.value}")
        logger.info("call state %s -> %s call_id=%s", self.state.value, new.value, self.call_id)
        self.state = new
        self.reason = reason
        self._apply_media_flags()
        self._notify(self)

    def _apply_media_flags(self) -> None:
        self.transport.outbound.muted = self.held
        self.transport.inbound_muted = self.held or self.muted

    def connected(self) -> None:
        if self.state is LegState.CONNECTING:
            self._set_state(LegState.CONNECTED)

    def hold(self) -> None:
        if self.state is LegState.CONNECTED:
            self._set_state(LegState.HELD)

    def unhold(self) -> None:
        if self.state is LegState.HELD:
            self._set_state(LegState.CONNECTED)

    def set_muted(self, muted: bool) -> None:
        self.muted = muted
        self._apply_media_flags()

    async def hangup(self, reason: str = "") -> None:
        """End the call and release its media. Safe to call twice."""
        if self.state is LegState.ENDED:
            return
        self._set_state(LegState.ENDED, reason)
        self.ended.set()
        await self.transport.close()
