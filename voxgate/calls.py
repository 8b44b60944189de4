"""Inbound SIP calls: offer/answer, an RTP leg, and the IVR session that runs the call.

Theory of operation. The SIP endpoint calls `SipCallHandler.on_invite` once
per new INVITE, in a task the endpoint owns. The handler negotiates audio
from the SDP offer, binds an RTP session from the node's port pool, answers,
and runs the flow chosen by the called number until the flow or the caller
ends the call. An INVITE without SDP (delayed offer) is answered with our
offer, and the ACK's answer sets the codec and the remote address. A caller
that the flow queued stays on its leg, handed to the `ContactCenter`, until
an agent's call with it ends. Whatever happens, the RTP port returns to the
pool, the dialog ends with a BYE or a final error response, and
`call.ended` is published once on the node's event hub.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from dataclasses import dataclass
from typing import Any

from ivr.engine import IvrSession, Outcome, SessionResult
from ivr.model import Flow
from ivr.registry import FlowRegistry
from media.asr import ModelCatalog
from media.channel import MediaLegChannel
from media.leg import MediaLeg
from media.rtp_session import RtpPortPool, RtpSession
from media.rtp_sockets import RtpSocketPool
from media.tts import Synthesizer
from signaling import sdp
from signaling.sip.endpoint import InboundCall
from signaling.sip.errors import CallEnded, SipUsageError
from signaling.sip.errors import CallEnded as SipCallEnded
from voxgate.bridgetoken import BRIDGE_HEADER, BridgeTokenError
from voxgate.callevents import CallLegEvents, Channel, EventHub, ivr_event_fields_callback
from voxgate.cdr import SIP_REQUEST_TERMINATED
from voxgate.contact import ContactCenter
from voxgate.crossnode import SipAgentSide, remote_transfer_handler
from voxgate.logs import call_id_var
from voxgate.queueing import CallerLeg
from voxgate.recordings import CallRecordings, RecordingConfig
from voxgate.rtp_setup import (
    PORT_ATTEMPTS,
    SUPPORTED_CODECS,
    apply_answer,
    bind_offer,
    next_session_id,
    rtp_config,
)

logger = logging.getLogger("voxgate.calls")

FLOW_END_GRACE_S = 1.0

# Read once: EnumType defines `__getattr__`, so reading `Channel.SIP` on each call took
# 49 ns against 5 ns for a global (timeit, CPython 3.11, 2-vCPU VM).
_SIP = Channel.SIP


class SipCallChannel(MediaLegChannel):
    """A `CallChannel` made of a SIP dialog (hangup, transfer) and a media leg (audio, input)."""

    def __init__(self, call: InboundCall, leg: MediaLeg) -> None:
        super().__init__(leg)
        self._call = call
        # Copied as plain attributes: an inbound call never changes them, and a property
        # costs a Python call per read.
        self.call_id: str = call.call_id
        self.caller: str = call.caller
        self.called: str = call.called

    async def hangup(self) -> None:
        await self._call.hangup()

    async def transfer(self, target: str) -> bool:
        """Blind-transfer the caller with REFER (RFC 3515); True once the target answered.

        A plain number becomes `sip:NUMBER@HOST:PORT` of the peer that sent
        the call, so a trunk places the new call itself.
        """
        uri = target if target.startswith(("sip:", "sips:")) else _number_uri(target, self._call)
        try:
            accepted = await self._call.refer(uri)
        except SipUsageError as exc:
            logger.warning("transfer not sent: %s", exc)
            return False
        except SipCallEnded:
            return False
        if not accepted:
            logger.info("transfer failed or was rejected by the peer")
        return accepted


def _number_uri(number: str, call: InboundCall) -> str:
    host, port = call.source
    host_part = f"[{host}]" if ":" in host else host
    return f"sip:{number}@{host_part}:{port}"


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
        hub: EventHub | None = None,
        node_id: str = "",
        recordings: RecordingConfig | None = None,
        rtp_timeout_s: float = 0.0,
        rtp_hold_timeout_s: float = 0.0,
        socket_pool: RtpSocketPool | None = None,
    ) -> None:
        self._flows = flows
        self._socket_pool = socket_pool
        self._rtp_timeout_s = rtp_timeout_s
        self._rtp_hold_timeout_s = rtp_hold_timeout_s
        self._models = models
        self._default_flow = default_flow
        self._synthesizer = synthesizer
        self._port_pool = port_pool
        self._rtp_host = rtp_host
        self._advertised_address = advertised_address
        self._ring_s = ring_ms / 1000
        self._contact = contact
        hub = hub if hub is not None else EventHub()
        self._legs = CallLegEvents(hub, node_id)
        self._ivr_event_fields = ivr_event_fields_callback(hub, node_id)
        self._recordings = (
            CallRecordings(recordings, self._legs) if recordings is not None else None
        )
        self.active_calls = 0

    async def on_invite(self, call: InboundCall) -> None:
        """Run one call and publish its `call.ended` exactly once, however it ends.

        An INVITE with the bridge header comes from another node for one of
        our waiting callers; it is no call of its own and publishes nothing.
        """
        call_id_var.set(call.call_id)
        bridge_header = call.header(BRIDGE_HEADER)
        if bridge_header is not None:
            await self._bridge_in(call, bridge_header)
            return
        self.active_calls += 1
        end = _FAILED
        self._legs.started(call.call_id, channel=_SIP, caller=call.caller, called=call.called)
        try:
            end = await self._handle(call)
        except CallEnded as exc:
            end = _ended_by_peer(str(exc), answered=False)
        finally:
            self.active_calls -= 1
            self._legs.ended(call.call_id, reason=end.reason, status=end.status)

    async def _bridge_in(self, call: InboundCall, header: str) -> None:
        """Connect a waiting caller to an agent of another node over this INVITE's leg.

        403 for a header that does not verify (`voxgate.bridgetoken`), 404
        when the caller no longer waits here. Returns when the leg ends.
        """
        contact = self._contact
        crossnode = contact.crossnode if contact is not None else None
        if contact is None or crossnode is None:
            logger.warning("bridge INVITE rejected: cross-node bridging is off on this node")
            await _reject(call, 403, "Forbidden")
            return
        try:
            claim = crossnode.check_bridge(header)
        except BridgeTokenError as exc:
            logger.warning("bridge INVITE rejected: %s", exc)
            await _reject(call, 403, "Forbidden")
            return
        call_id_var.set(claim.call_id)
        if not contact.is_waiting(claim.call_id):
            logger.info("bridge INVITE for a caller that no longer waits here")
            await _reject(call, 404, "Caller not waiting")
            return
        try:
            offer = sdp.parse(call.remote_sdp or b"")
        except sdp.SdpError as exc:
            logger.info("bridge INVITE rejected: invalid SDP offer: %s", exc)
            await _reject(call, 400, "Invalid SDP offer")
            return
        media = await self._open_media(call, offer)
        if isinstance(media, CallEnd):
            return
        answer, session = media
        try:
            await call.answer(answer.sdp)
            if not await crossnode.wait_claimed(claim.call_id, claim.agent_id, lambda: call.ended):
                logger.info("bridge answered but the agent's node did not claim the caller")
                return
            side = SipAgentSide(call, session)
            call.on_refer = remote_transfer_handler(contact, call.call_id)
            if not contact.connect_remote(claim.call_id, claim.agent_id, side):
                logger.info("bridge answered but the caller stopped waiting; hanging up")
                return
            logger.info("bridged to agent %s of node %s", claim.agent_id, claim.node_id)
            await call.wait_ended()
            side.ended.set()
        except CallEnded:
            logger.info("bridge leg ended before it was confirmed")
        finally:
            await call.hangup()
            await session.close()

    async def _handle(self, call: InboundCall) -> CallEnd:
        flow = self._flows.for_call(call.called, self._default_flow)
        if flow is None:
            logger.warning("no flow for the called number and no default flow")
            return await _reject(call, 404, "No flow for this number")
        if call.remote_sdp is None:
            return await self._handle_delayed_offer(call, flow)
        try:
            offer = sdp.parse(call.remote_sdp)
        except sdp.SdpError as exc:
            logger.info("rejecting call: invalid SDP offer: %s", exc)
            return await _reject(call, 400, "Invalid SDP offer")
        media = await self._open_media(call, offer)
        if isinstance(media, CallEnd):
            return media
        answer, session = media
        leg = MediaLeg(session, call_id=call.call_id, models=self._models)
        try:
            if self._ring_s > 0 and not await self._ring(call):
                return _ended_by_peer(await call.wait_ended(), answered=False)
            try:
                await call.answer(answer.sdp)
            except CallEnded as exc:
                return _ended_by_peer(str(exc), answered=False)
            self._legs.answered(call.call_id)
            self._watch_media(call, session, _answer_holds(answer, offer))
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("call answered with %s; running flow %s", answer.codec.name, flow.flow)
            return await self._run_flow(call, flow, SipCallChannel(call, leg), leg)
        finally:
            # The leg's transport is `session`, so this closes the session too.
            await leg.close()

    async def _open_media(
        self, call: InboundCall, offer: sdp.SessionDescription
    ) -> tuple[sdp.AudioAnswer, RtpSession] | CallEnd:
        """Answer the offer and bind its RTP session, or reject the call and return its end.

        The session's port goes back when the session closes. With a socket
        pool the session runs on a pooled socket pair; without one, a port
        from the range is bound (`_open_range_media`).
        """
        pool = self._socket_pool
        if pool is None:
            return await self._open_range_media(call, offer)
        try:
            # A released pair is usually ready, and taking it without `acquire` spares a coroutine.
            pair = pool.reuse()
            if pair is None:
                pair = await pool.acquire()
        except RuntimeError:
            logger.warning("rejecting call: the RTP port pool is exhausted")
            return await _reject(call, 503, "No media port available")
        except OSError as exc:
            logger.warning("rejecting call: no usable RTP port: %s", exc)
            return await _reject(call, 503, "No media port available")
        answer = self._write_answer(offer, pair.port)
        if not isinstance(answer, sdp.AudioAnswer):
            end = await _reject(call, *answer)
            pool.give_back(pair)
            return end
        session = RtpSession.open_on_pair(
            pool,
            pair,
            rtp_config(answer),
            remote=(answer.remote_host, answer.remote_port),
            call_id=call.call_id,
        )
        return answer, session

    async def _open_range_media(
        self, call: InboundCall, offer: sdp.SessionDescription
    ) -> tuple[sdp.AudioAnswer, RtpSession] | CallEnd:
        """Bind a port from the range for `_open_media`, skipping up to PORT_ATTEMPTS busy ones."""
        for _ in range(PORT_ATTEMPTS):
            try:
                port = self._port_pool.acquire()
            except RuntimeError:
                logger.warning("rejecting call: the RTP port pool is exhausted")
                return await _reject(call, 503, "No media port available")
            answer = self._write_answer(offer, port)
            if not isinstance(answer, sdp.AudioAnswer):
                end = await _reject(call, *answer)
                self._port_pool.release(port)
                return end
            try:
                session = await RtpSession.open(
                    rtp_config(answer),
                    local_host=self._rtp_host,
                    local_port=port,
                    remote=(answer.remote_host, answer.remote_port),
                    call_id=call.call_id,
                )
            except OSError as exc:
                self._port_pool.release(port)
                logger.warning("RTP port %d unusable, trying another: %s", port, exc)
                continue
            session.on_close_release(functools.partial(self._port_pool.release, port))
            return answer, session
        logger.warning("rejecting call: no usable RTP port after %d tries", PORT_ATTEMPTS)
        return await _reject(call, 503, "No media port available")

    def _write_answer(
        self, offer: sdp.SessionDescription, port: int
    ) -> sdp.AudioAnswer | tuple[int, str]:
        """Write our SDP answer for RTP on `port`, or return the status and reason to reject with.

        A plain function and not a coroutine, because the answer is written
        in nearly every call and only a rejection has to wait.
        """
        try:
            return sdp.answer_audio(
                offer,
                SUPPORTED_CODECS,
                local_host=self._advertised_address,
                local_port=port,
                session_id=next_session_id(),
                session_version=1,
            )
        except sdp.NoCommonCodec as exc:
            logger.info("rejecting call: %s", exc)
            return 488, "No common codec"
        except sdp.SdpError as exc:
            logger.info("rejecting call: unusable SDP offer: %s", exc)
            return 400, "Invalid SDP offer"

    async def _handle_delayed_offer(self, call: InboundCall, flow: Flow) -> CallEnd:
        """Answer an INVITE without SDP with our offer and take the answer from the ACK.

        RFC 3261 section 13.2.1 and RFC 3264: the 200 OK carries the offer,
        the ACK the answer. An ACK without a usable answer gets a BYE.
        """
        bound = await self._bind_for_offer(call)
        if isinstance(bound, CallEnd):
            return bound
        offer, session, port = bound
        leg: MediaLeg | None = None
        try:
            if self._ring_s > 0 and not await self._ring(call):
                return _ended_by_peer(await call.wait_ended(), answered=False)
            try:
                await call.answer(offer)
            except CallEnded as exc:
                return _ended_by_peer(str(exc), answered=False)
            self._legs.answered(call.call_id)
            negotiated = _negotiate_ack_answer(offer, await call.ack_sdp)
            if negotiated is None:
                await call.hangup()
                return CallEnd("invalid_answer")
            # The session was bound with our first codec, so that the port in
            # the offer was ours; the answer may choose another one.
            session = await apply_answer(
                session,
                negotiated,
                local_host=self._rtp_host,
                local_port=port,
                call_id=call.call_id,
            )
            leg = MediaLeg(session, call_id=call.call_id, models=self._models)
            self._watch_media(call, session, sdp_holds(call.remote_sdp))
            logger.debug(
                "call answered with %s (delayed offer); running flow %s",
                negotiated.codec.name,
                flow.flow,
            )
            return await self._run_flow(call, flow, SipCallChannel(call, leg), leg)
        except OSError as exc:
            logger.warning("RTP port %d unusable after the answer: %s", port, exc)
            await call.hangup()
            return CallEnd("failed")
        finally:
            if leg is not None:
                await leg.close()
            await session.close()
            self._port_pool.release(port)

    async def _bind_for_offer(self, call: InboundCall) -> tuple[bytes, RtpSession, int] | CallEnd:
        """Bind an RTP port and write our offer on it, or reject the call and return its end."""
        bound = await bind_offer(
            self._port_pool,
            rtp_host=self._rtp_host,
            advertised_address=self._advertised_address,
            call_id=call.call_id,
        )
        if bound is None:
            return await _reject(call, 503, "No media port available")
        return bound

    async def _ring(self, call: InboundCall) -> bool:
        """Send 180 and wait the ring time; False when the caller gave up meanwhile."""
        await call.ring()
        ended = asyncio.ensure_future(call.wait_ended())
        try:
            await asyncio.wait({ended}, timeout=self._ring_s)
        finally:
            ended.cancel()
        return not call.ended

    def _watch_media(self, call: InboundCall, session: RtpSession, on_hold: bool) -> None:
        """End the call with BYE and reason `rtp_timeout` when the caller's media stops.

        `on_hold` is what the caller's current SDP says (`sdp_holds`); each
        re-INVITE or UPDATE then sets it again. A call on hold has its own limit.
        """
        if self._rtp_timeout_s <= 0 and self._rtp_hold_timeout_s <= 0:
            return
        session.on_hold = on_hold

        def reoffered(offer: bytes | None) -> None:
            if offer is not None:
                session.on_hold = sdp_holds(offer)

        def timed_out() -> None:
            logger.info(
                "no RTP or RTCP from the caller for %.0f s%s; sending BYE",
                self._rtp_hold_timeout_s if session.on_hold else self._rtp_timeout_s,
                " (on hold)" if session.on_hold else "",
            )
            call.hangup_for("rtp_timeout")

        call.on_remote_sdp = reoffered
        # The packet clock runs the callback in its own context: log with this call's id.
        context = contextvars.copy_context()
        session.watch_inactivity(
            self._rtp_timeout_s,
            self._rtp_hold_timeout_s,
            lambda: context.run(timed_out),
        )

    async def _run_flow(
        self, call: InboundCall, flow: Flow, channel: SipCallChannel, leg: MediaLeg
    ) -> CallEnd:
        contact = self._contact
        if self._recordings is not None:
            self._recordings.attach_to(channel, call.call_id)
        ended = call.end_future
        session = IvrSession(
            flow,
            channel,
            self._synthesizer,
            flows=self._flows.get,
            queue=contact.queue_service if contact is not None else None,
            event_fields=self._ivr_event_fields,
            # The loop's clock, which the session reads without `asyncio.get_running_loop`
            # and its getpid system call (CPython 3.11) on each event.
            clock=ended.get_loop().time,
        )
        result: SessionResult | None = None
        queue_end: str | None = None
        try:
            result = await run_ivr(session, ended)
            # `flow_result` publishes only a queue request or a transfer target, so most
            # calls skip its Python call.
            if result is not None and (
                result.queue_request is not None or result.transfer_target is not None
            ):
                self._legs.flow_result(call.call_id, result)
            # Only a call that the IVR queued has a ticket, and serve_queued skips any other.
            if contact is not None and contact.queue_service.has_ticket(call.call_id):
                caller_leg = CallerLeg(
                    call_id=call.call_id,
                    caller=call.caller,
                    called=call.called,
                    media=leg,
                    wait_ended=call.wait_ended,
                    hangup=call.hangup,
                    voice=flow.voice,
                    transfer=channel.transfer,
                )
                queue_end = await contact.serve_queued(caller_leg, result)
        finally:
            if channel.recording is not None:
                channel.recording.close()
            # The end reason of a call that ended before we hung up, else None. An ended
            # call is read from its future, because `wait_ended` and `hangup` would only
            # return at once, each through a coroutine.
            peer_reason: str | None = None
            if not ended.done():
                await call.hangup()
            elif ended.result() != "hangup":
                peer_reason = ended.result()
        if queue_end is not None:
            return CallEnd(queue_end)
        if peer_reason is not None:
            return _ended_by_peer(peer_reason, answered=True)
        if result is not None:
            # The end that `end_reason` names, read from a table without its Python call.
            return _IVR_OUTCOME_ENDS[result.outcome]
        return _IVR_ENDS[end_reason(None)]


async def run_ivr(session: IvrSession, ended: asyncio.Future[Any]) -> SessionResult | None:
    """Run `session` until its flow ends or the leg ends (then None).

    `ended` resolves when the leg ends: when the caller hangs up, when the
    node stops, or when the flow's own hangup step ended it. It is only
    watched here, never cancelled. The flow gets FLOW_END_GRACE_S to return
    its result after the leg ends, so a hangup step is not taken for the
    caller's hangup.
    """
    # The loop of `ended` is the running loop, and asking the future for it spares the
    # getpid system call of `asyncio.get_running_loop` on CPython 3.11.
    loop = ended.get_loop()
    # The flow runs in this task, so a call costs no second task. When the leg ends
    # during the flow, `start_grace` arms a timer that cancels the task after
    # FLOW_END_GRACE_S, as `asyncio.timeout` does. The except clause then uses the
    # count of `uncancel` to separate that cancellation from one by our caller. A call
    # whose leg ends after its flow arms no timer and enters no Timeout, which costs
    # five Python calls on CPython 3.11.
    task = asyncio.current_task(loop)
    assert task is not None, "run_ivr must run in a task"
    cancelling = task.cancelling()
    expiry: asyncio.TimerHandle | None = None
    expired = False
    flow_running = True

    def expire() -> None:
        nonlocal expired
        expired = True
        task.cancel()

    def start_grace(_: object) -> None:
        nonlocal expiry
        # A callback scheduled before the flow returned may run after it returned.
        if flow_running:
            expiry = loop.call_later(FLOW_END_GRACE_S, expire)

    ended.add_done_callback(start_grace)
    try:
        result = await session.run()
    except asyncio.CancelledError:
        if not expired or task.uncancel() > cancelling:
            raise
        logger.debug("call ended during the flow: %s", ended.result())
        return None
    finally:
        flow_running = False
        ended.remove_done_callback(start_grace)
        if expiry is not None:
            expiry.cancel()
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("flow ended: %s (%s)", result.outcome, result.reason)
    return result


@dataclass(frozen=True, slots=True)
class CallEnd:
    """The `reason` and SIP `status` (of a call rejected before answer) of `call.ended`."""

    reason: str
    status: int | None = None


# The end of a call that raised before `_handle` returned one. CallEnd is frozen, so one
# instance serves every call.
_FAILED = CallEnd("failed")
# The ends that `end_reason` returns are shared in the same way, because building a CallEnd
# took 200 ns against 20 ns for the lookup (timeit, CPython 3.11, 2-vCPU VM).
_IVR_ENDS = {
    reason: CallEnd(reason)
    for reason in ("caller_hangup", "ivr_failed", "transferred", "ivr_hangup")
}


async def _reject(call: InboundCall, status: int, text: str) -> CallEnd:
    await call.reject(status, text)
    return CallEnd("rejected", status)


def sdp_holds(body: bytes | None) -> bool:
    """Return True when the peer's SDP puts the call on hold or sends no audio.

    That is audio marked sendonly or inactive (hold, RFC 3264), recvonly (the
    peer only listens) or a connection address of 0.0.0.0 or :: (the older
    RFC 2543 hold). The media-level direction and address win over the session
    level ones. An SDP that does not parse puts nothing on hold.
    """
    if body is None:
        return False
    try:
        parsed = sdp.parse(body)
    except sdp.SdpError:
        return False
    return description_holds(parsed)


def _answer_holds(answer: sdp.AudioAnswer, offer: sdp.SessionDescription) -> bool:
    """Return what `description_holds(offer)` returns, from our answer where it can.

    Our direction mirrors the offered one and drops send when the offer's
    address is a hold address (RFC 3264 section 8.4), so it differs from
    sendrecv exactly when the answered stream is on hold. `description_holds`
    reads the first non-rejected audio stream, which is the answered one
    whenever we answered the first stream. An answer to a later stream goes
    through `description_holds`.
    """
    if answer.media_index == 0:
        return answer.direction != "sendrecv"
    return description_holds(offer)


def description_holds(parsed: sdp.SessionDescription) -> bool:
    """Return True when the parsed SDP puts the call on hold or sends no audio (`sdp_holds`)."""
    for media in parsed.media:
        if media.media == "audio" and not media.is_rejected:
            direction = media.direction or parsed.direction
            connection = parsed.media_connection(media)
            if connection is not None and connection.host in ("0.0.0.0", "::"):
                return True
            return direction in ("sendonly", "recvonly", "inactive")
    return False


def _ended_by_peer(reason: str, *, answered: bool) -> CallEnd:
    """Map the SIP layer's end reason (bye, cancel, timeout, shutdown) onto `call.ended`."""
    if reason == "shutdown":
        return CallEnd("node_stopped")
    if reason == "rtp_timeout":
        return CallEnd("rtp_timeout")
    if reason == "timeout":
        return CallEnd("timeout")
    if not answered:
        return CallEnd("caller_cancel", SIP_REQUEST_TERMINATED)
    return CallEnd("caller_hangup")


def end_reason(result: SessionResult | None) -> str:
    """Return the `call.ended` reason of a call that ended in or right after its IVR."""
    if result is None:
        return "caller_hangup"
    match result.outcome:
        case Outcome.CALLER_HANGUP:
            return "caller_hangup"
        case Outcome.FAILED:
            return "ivr_failed"
        case Outcome.TRANSFERRED:
            return "transferred"
    return "ivr_hangup"


# The shared end of each IVR outcome: `end_reason` of a result with that outcome.
_IVR_OUTCOME_ENDS = {
    outcome: _IVR_ENDS[end_reason(SessionResult(outcome, "", [], {}))] for outcome in Outcome
}


def _negotiate_ack_answer(offer: bytes, answer: bytes | None) -> sdp.NegotiatedAudio | None:
    """Check the SDP answer that the ACK of a delayed offer carries; None when unusable."""
    if answer is None:
        logger.info("delayed offer: the ACK carried no SDP answer; ending the call")
        return None
    try:
        return sdp.accept_answer(offer, sdp.parse(answer))
    except sdp.SdpError as exc:
        logger.info("delayed offer: unusable SDP answer in the ACK; ending the call: %s", exc)
        return None
