"""Inbound SIP calls: offer/answer, an RTP leg, and the IVR session that runs the call.

Theory of operation. The SIP endpoint calls `SipCallHandler.on_invite` once
per new INVITE, in a task the endpoint owns. The handler negotiates audio
from the SDP offer, binds an RTP session from the node's port pool, answers,
and runs the flow chosen by the called number until the flow or the caller
ends the call. A caller that the flow queued stays on its leg, handed to the
`ContactCenter`, until an agent's call with it ends. Whatever happens, the
RTP port returns to the pool and the dialog ends with a BYE or a final
error response.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from collections.abc import Awaitable, Callable

from ivr.channel import CallerInput, RecognizerConfig
from ivr.engine import IvrSession, SessionResult
from ivr.model import Flow
from ivr.registry import FlowRegistry
from media.asr import ModelCatalog
from media.audio import PcmAudio
from media.leg import MediaLeg
from media.rtp_session import RtpPortPool, RtpSession, RtpSessionConfig
from media.tts import Synthesizer
from signaling import sdp
from signaling.sip.endpoint import InboundCall
from voxgate.contact import ContactCenter
from voxgate.logs import call_id_var
from voxgate.queueing import CallerLeg

logger = logging.getLogger("voxgate.calls")

SUPPORTED_CODECS = (sdp.PCMU, sdp.PCMA)
PORT_ATTEMPTS = 8
_session_ids = itertools.count(secrets.randbelow(1 << 30))


class SipCallChannel:
    """A `CallChannel` made of a SIP dialog (hangup, transfer) and a media leg (audio, input)."""

    def __init__(self, call: InboundCall, leg: MediaLeg) -> None:
        self._call = call
        self._leg = leg

    @property
    def call_id(self) -> str:
        return self._call.call_id

    @property
    def caller(self) -> str:
        return self._call.caller

    @property
    def called(self) -> str:
        return self._call.called

    @property
    def speech_available(self) -> bool:
        return self._leg.speech_available

    async def play(
        self,
        audio: PcmAudio,
        *,
        interrupt_on_dtmf: bool = False,
        interrupt_on_speech: bool = False,
    ) -> CallerInput | None:
        return await self._leg.play(
            audio, interrupt_on_dtmf=interrupt_on_dtmf, interrupt_on_speech=interrupt_on_speech
        )

    def listen(self, config: RecognizerConfig | None) -> None:
        self._leg.listen(config)

    async def next_input(self, timeout_s: float) -> CallerInput | None:
        return await self._leg.next_input(timeout_s)

    def clear_inputs(self) -> None:
        self._leg.clear_inputs()

    async def hangup(self) -> None:
        await self._call.hangup()

    async def transfer(self, target: str) -> bool:
        # NOTE: blind transfer (REFER) is not wired yet, so the flow's
        # transfer step takes its failure branch.
        logger.warning("transfer requested but not supported on SIP legs yet")
        return False


class SipCallHandler:
    """Runs every inbound SIP call of one node through the IVR."""

    def __init__(
        self,
        *,
        flows: FlowRegistry,
        default_flow: str,
        synthesizer: Synthesizer,
        port_pool: RtpPortPool,
        rtp_host: str,
        advertised_address: str,
        ring_ms: int,
        contact: ContactCenter | None = None,
        models: ModelCatalog | None = None,
    ) -> None:
        self._flows = flows
        self._models = models
        self._default_flow = default_flow
        self._synthesizer = synthesizer
        self._port_pool = port_pool
        self._rtp_host = rtp_host
        self._advertised_address = advertised_address
        self._ring_s = ring_ms / 1000
        self._contact = contact
        self.active_calls = 0

    def _choose_flow(self, called: str) -> Flow | None:
        flow = self._flows.for_number(called)
        if flow is not None and called in flow.numbers:
            return flow
        return self._flows.get(self._default_flow) or flow

    async def on_invite(self, call: InboundCall) -> None:
        call_id_var.set(call.call_id)
        self.active_calls += 1
        try:
            await self._handle(call)
        finally:
            self.active_calls -= 1

    async def _handle(self, call: InboundCall) -> None:
        flow = self._choose_flow(call.called)
        if flow is None:
            logger.warning("no flow for the called number and no default flow")
            await call.reject(404, "No flow for this number")
            return
        if call.remote_sdp is None:
            # NOTE: delayed offer (INVITE without SDP) needs an offer in the
            # 200 and the answer from the ACK; until the SIP layer carries
            # that, such calls are declined with 488.
            await call.reject(488, "INVITE without SDP offer is not supported")
            return
        try:
            offer = sdp.parse(call.remote_sdp)
        except sdp.SdpError as exc:
            logger.info("rejecting call: invalid SDP offer: %s", exc)
            await call.reject(400, "Invalid SDP offer")
            return
        media = await self._open_media(call, offer)
        if media is None:
            return
        answer, session, port = media
        leg = MediaLeg(session, call_id=call.call_id, models=self._models)
        try:
            if self._ring_s > 0 and not await self._ring(call):
                return
            await call.answer(answer.sdp)
            logger.info("call answered with %s; running flow %s", answer.codec.name, flow.flow)
            await self._run_flow(call, flow, SipCallChannel(call, leg), leg)
        finally:
            await leg.close()
            await session.close()
            self._port_pool.release(port)

    async def _open_media(
        self, call: InboundCall, offer: sdp.SessionDescription
    ) -> tuple[sdp.AudioAnswer, RtpSession, int] | None:
        """Answer the offer and bind its RTP session, or reject the call and return None.

        A port from the pool may be held by another process; the next one is
        tried, up to PORT_ATTEMPTS times.
        """
        for _ in range(PORT_ATTEMPTS):
            try:
                port = self._port_pool.acquire()
            except RuntimeError:
                logger.warning("rejecting call: the RTP port pool is exhausted")
                await call.reject(503, "No media port available")
                return None
            try:
                answer = sdp.answer_audio(
                    offer,
                    SUPPORTED_CODECS,
                    local_host=self._advertised_address,
                    local_port=port,
                    session_id=next(_session_ids),
                    session_version=1,
                )
            except sdp.NoCommonCodec as exc:
                self._port_pool.release(port)
                logger.info("rejecting call: %s", exc)
                await call.reject(488, "No common codec")
                return None
            except sdp.SdpError as exc:
                self._port_pool.release(port)
                logger.info("rejecting call: unusable SDP offer: %s", exc)
                await call.reject(400, "Invalid SDP offer")
                return None
            config = RtpSessionConfig(
                codec_name=answer.codec.name,
                payload_type=_payload_type(answer.codec),
                telephone_event_payload_type=(
                    _payload_type(answer.dtmf) if answer.dtmf is not None else None
                ),
            )
            try:
                session = await RtpSession.open(
                    config,
                    local_host=self._rtp_host,
                    local_port=port,
                    remote=(answer.remote_host, answer.remote_port),
                    call_id=call.call_id,
                )
            except OSError as exc:
                self._port_pool.release(port)
                logger.warning("RTP port %d unusable, trying another: %s", port, exc)
                continue
            return answer, session, port
        logger.warning("rejecting call: no usable RTP port after %d tries", PORT_ATTEMPTS)
        await call.reject(503, "No media port available")
        return None

    async def _ring(self, call: InboundCall) -> bool:
        """Send 180 and wait the ring time; False when the caller gave up meanwhile."""
        await call.ring()
        ended = asyncio.ensure_future(call.wait_ended())
        try:
            await asyncio.wait({ended}, timeout=self._ring_s)
        finally:
            ended.cancel()
        return not call.ended

    async def _run_flow(
        self, call: InboundCall, flow: Flow, channel: SipCallChannel, leg: MediaLeg
    ) -> None:
        contact = self._contact
        session = IvrSession(
            flow,
            channel,
            self._synthesizer,
            flows=self._flows.get,
            queue=contact.queue_service if contact is not None else None,
        )
        try:
            result = await run_ivr(session, call.wait_ended)
            if contact is not None:
                caller_leg = CallerLeg(
                    call_id=call.call_id,
                    caller=call.caller,
                    called=call.called,
                    media=leg,
                    wait_ended=call.wait_ended,
                    hangup=call.hangup,
                    voice=flow.voice,
                )
                await contact.serve_queued(caller_leg, result)
        finally:
            await call.hangup()


async def run_ivr(
    session: IvrSession, wait_ended: Callable[[], Awaitable[object]]
) -> SessionResult | None:
    """Run `session` until its flow ends or the caller hangs up (then None)."""
    flow_task = asyncio.ensure_future(session.run())
    ended_task = asyncio.ensure_future(wait_ended())
    try:
        done, _ = await asyncio.wait({flow_task, ended_task}, return_when=asyncio.FIRST_COMPLETED)
        if flow_task in done:
            result = flow_task.result()
            logger.info("flow ended: %s (%s)", result.outcome.value, result.reason)
            return result
        logger.info("caller ended the call during the flow")
        return None
    finally:
        for task in (flow_task, ended_task):
            task.cancel()
        await asyncio.gather(flow_task, ended_task, return_exceptions=True)


def _payload_type(codec: sdp.Codec) -> int:
    if codec.payload_type is None:
        raise ValueError(f"negotiated codec {codec.name} has no payload type")
    return codec.payload_type
