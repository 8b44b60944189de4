"""Browser calls: callers from the page at / through the IVR, agents into the ACD.

`BrowserCallHandler` is the `WebRtcCallHandler` that the node mounts with
the signaling edge. A browser caller's call runs through the same flows as
a SIP call, chosen by the `to` of its `call` message or else the default
flow. A caller whom the flow queues is handed to the `ContactCenter`. Agent
presence changes go to the contact center, which mirrors them into the ACD,
and so does an agent's blind transfer of the caller it talks to.
"""

from __future__ import annotations

import asyncio
import logging

from ivr.engine import IvrSession
from ivr.model import Flow
from ivr.registry import FlowRegistry
from media.asr import ModelCatalog
from media.leg import MediaLeg
from media.tts import Synthesizer
from signaling.webrtc.call import WebRtcCall
from signaling.webrtc.channel import WebRtcChannel
from signaling.webrtc.protocol import ErrorCode, Presence, ProtocolError, TransferKind
from voxgate.callevents import CallLegEvents, Channel, EventHub, ivr_event_fields_callback
from voxgate.calls import end_reason, run_ivr
from voxgate.contact import ContactCenter
from voxgate.logs import call_id_var
from voxgate.queueing import CallerLeg
from voxgate.recordings import CallRecordings, RecordingConfig
from voxgate.transfer import TransferError

logger = logging.getLogger("voxgate.calls")


class BrowserCallHandler:
    """Runs browser callers through the IVR and reports agents to the contact center."""

    def __init__(
        self,
        *,
        flows: FlowRegistry,
        default_flow: str,
        synthesizer: Synthesizer,
        contact: ContactCenter | None,
        models: ModelCatalog | None = None,
        hub: EventHub | None = None,
        node_id: str = "",
        recordings: RecordingConfig | None = None,
    ) -> None:
        self._flows = flows
        self._default_flow = default_flow
        self._synthesizer = synthesizer
        self._contact = contact
        self._models = models
        hub = hub if hub is not None else EventHub()
        self._legs = CallLegEvents(hub, node_id)
        self._ivr_event_fields = ivr_event_fields_callback(hub, node_id)
        self._recordings = (
            CallRecordings(recordings, self._legs) if recordings is not None else None
        )
        self.active_calls = 0

    async def on_call(self, call: WebRtcCall) -> None:
        """Run one browser call and publish its `call.ended` exactly once."""
        call_id_var.set(call.call_id)
        self._legs.started(call.call_id, channel=Channel.WEBRTC, caller=call.user, called=call.to)
        flow = self._flows.for_call(call.to, self._default_flow)
        if flow is None:
            logger.warning("no flow for the called number and no default flow")
            self._legs.ended(call.call_id, reason="rejected")
            return
        self._legs.answered(call.call_id)
        reason = "failed"
        try:
            reason = await self._run_flow(call, flow)
        finally:
            self._legs.ended(call.call_id, reason=reason)

    async def _run_flow(self, call: WebRtcCall, flow: Flow) -> str:
        """Run the flow and any queue wait; return the `call.ended` reason."""
        self.active_calls += 1
        channel = WebRtcChannel(
            call, MediaLeg(call.transport, call_id=call.call_id, models=self._models)
        )
        contact = self._contact
        if self._recordings is not None:
            self._recordings.attach_to(channel, call.call_id)
        session = IvrSession(
            flow,
            channel,
            self._synthesizer,
            flows=self._flows.get,
            queue=contact.queue_service if contact is not None else None,
            event_fields=self._ivr_event_fields,
        )

        async def wait_ended() -> None:
            await call.ended.wait()

        async def hangup() -> None:
            await call.hangup("ended by server")

        try:
            logger.info("browser call running flow %s", flow.flow)
            ended = asyncio.ensure_future(call.ended.wait())
            try:
                result = await run_ivr(session, ended)
            finally:
                ended.cancel()
            self._legs.flow_result(call.call_id, result)
            queue_end: str | None = None
            if contact is not None:
                leg = CallerLeg(
                    call_id=call.call_id,
                    caller=call.user,
                    called=call.to,
                    media=channel.leg,
                    wait_ended=wait_ended,
                    hangup=hangup,
                    voice=flow.voice,
                )
                queue_end = await contact.serve_queued(leg, result)
            return queue_end if queue_end is not None else end_reason(result)
        finally:
            self.active_calls -= 1
            if channel.recording is not None:
                channel.recording.close()
            await channel.leg.close()

    async def on_transfer(self, call: WebRtcCall, kind: TransferKind, target: str) -> bool:
        """Blind-transfer the caller bridged to the agent's `call` (see `ContactCenter.transfer`).

        Return True once done, so that the server ends the agent's leg.
        Raise `ProtocolError` naming the field at fault when the transfer is
        not done; the agent's page shows its message and the call stays up.
        """
        if self._contact is None:
            raise ProtocolError(
                ErrorCode.BAD_STATE,
                "transfers need queues, and this node has none",
                field="type",
                call_id=call.call_id,
            )
        try:
            await self._contact.transfer(call.call_id, kind, target)
        except TransferError as exc:
            logger.info("call %s: transfer to a %s not done: %s", call.call_id, kind.value, exc)
            raise ProtocolError(
                exc.code, exc.message, field=exc.field, call_id=call.call_id
            ) from None
        return True

    def on_call_state(self, call: WebRtcCall) -> None:
        return

    def on_agent_state(self, presence: Presence) -> None:
        if self._contact is not None:
            self._contact.on_agent_state(presence)
