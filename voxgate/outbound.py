"""Outbound SIP calls with an RTP leg: an INVITE with our offer, then a media leg on the answer.

`OutboundDialer.dial` binds an RTP port from the node's pool, sends the
INVITE through `SipEndpoint.place_call` (which answers a 401 or 407 once with
the credentials), and waits for the answer, the final failure, or the
caller's `abort`. The result names the outcome in the words of Asterisk's
DIALSTATUS (answered, busy, no answer, failed) plus `cancelled` for an
abort, and for an answered call holds the `OutboundLeg` to bridge.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from media.leg import MediaLeg
from media.rtp_session import RtpPortPool, RtpSession
from signaling import sdp
from signaling.sip.endpoint import OutboundCall, SipEndpoint
from signaling.sip.errors import CallEnded, SipUsageError
from voxgate.rtp_setup import apply_answer, bind_offer

logger = logging.getLogger("voxgate.outbound")

# SIP final responses that mean the callee is busy: 486 Busy Here and 600 Busy Everywhere.
BUSY_STATUSES = frozenset({486, 600})
# Responses that mean the callee did not answer: Request Timeout, Temporarily Unavailable and our
# own CANCEL after the ring time (487 Request Terminated).
NO_ANSWER_STATUSES = frozenset({408, 480, 487})


class DialStatus(enum.StrEnum):
    """The outcome of an outbound call attempt before any talk, in Asterisk's DIALSTATUS words."""

    ANSWERED = "answered"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    FAILED = "failed"
    CANCELLED = "cancelled"


def classify(status: int | None, reason: str) -> DialStatus:
    """Map the SIP final status and end reason of an unanswered call onto a `DialStatus`."""
    if reason == "timeout" or status in NO_ANSWER_STATUSES:
        return DialStatus.NO_ANSWER
    if status in BUSY_STATUSES:
        return DialStatus.BUSY
    return DialStatus.FAILED


@dataclass(slots=True)
class OutboundLeg:
    """An answered outbound call and its media; `close` hangs up and frees the RTP port."""

    call: OutboundCall
    media: MediaLeg
    session: RtpSession
    port: int
    pool: RtpPortPool

    async def close(self) -> None:
        await self.call.hangup()
        await self.media.close()
        await self.session.close()
        self.pool.release(self.port)


@dataclass(frozen=True, slots=True)
class DialResult:
    """The outcome of one dial; `status` is the SIP final status when there was one."""

    outcome: DialStatus
    status: int | None
    leg: OutboundLeg | None = None


class OutboundDialer:
    """Places outbound calls from one node's SIP endpoint and RTP port pool."""

    def __init__(
        self,
        endpoint: SipEndpoint,
        port_pool: RtpPortPool,
        *,
        rtp_host: str,
        advertised_address: str,
    ) -> None:
        self._endpoint = endpoint
        self._pool = port_pool
        self._rtp_host = rtp_host
        self._advertised_address = advertised_address

    async def dial(
        self,
        target_uri: str,
        *,
        call_id: str,
        from_user: str,
        credentials: tuple[str, str] | None,
        timeout_s: float,
        abort: Awaitable[Any],
    ) -> DialResult:
        """Call `target_uri` and return once it is answered, fails, or `abort` completes.

        The returned leg (of an answered call) belongs to the caller, who must
        close it. `call_id` names the leg in logs and events.
        """
        bound = await bind_offer(
            self._pool,
            rtp_host=self._rtp_host,
            advertised_address=self._advertised_address,
            call_id=call_id,
        )
        if bound is None:
            return DialResult(DialStatus.FAILED, None)
        offer, session, port = bound
        try:
            call = await self._endpoint.place_call(
                target_uri,
                sdp_offer=offer,
                from_user=from_user,
                credentials=credentials,
                timeout_s=timeout_s,
            )
        except SipUsageError as exc:
            logger.warning("call %s: outbound INVITE not sent: %s", call_id, exc)
            await session.close()
            self._pool.release(port)
            return DialResult(DialStatus.FAILED, None)
        logger.info("call %s: outbound INVITE sent (SIP call %s)", call_id, call.call_id)
        answered = asyncio.ensure_future(call.wait_answered())
        aborted = asyncio.ensure_future(abort)
        keep = False
        try:
            await asyncio.wait({answered, aborted}, return_when=asyncio.FIRST_COMPLETED)
            if not answered.done():
                logger.info("call %s: outbound call withdrawn before the answer", call_id)
                await call.hangup()
                return DialResult(DialStatus.CANCELLED, None)
            try:
                answer = answered.result()
            except CallEnded as exc:
                outcome = classify(call.status, str(exc))
                logger.info(
                    "call %s: outbound call not answered: %s (status %s)",
                    call_id,
                    outcome.value,
                    call.status,
                )
                return DialResult(outcome, call.status)
            leg = await self._media_for_answer(call, call_id, offer, answer, session, port)
            if leg is None:
                await call.hangup()
                return DialResult(DialStatus.FAILED, call.status)
            keep = True
            logger.info("call %s: outbound call answered", call_id)
            return DialResult(DialStatus.ANSWERED, 200, leg)
        finally:
            for task in (answered, aborted):
                task.cancel()
            await asyncio.gather(answered, aborted, return_exceptions=True)
            if not keep:
                await session.close()
                self._pool.release(port)

    async def _media_for_answer(
        self,
        call: OutboundCall,
        call_id: str,
        offer: bytes,
        answer: bytes | None,
        session: RtpSession,
        port: int,
    ) -> OutboundLeg | None:
        """Point the RTP session at the answer's address and codec; None for a bad answer."""
        if answer is None:
            logger.info("call %s: the 2xx carried no SDP answer; ending the call", call_id)
            return None
        try:
            negotiated = sdp.accept_answer(offer, sdp.parse(answer))
        except sdp.SdpError as exc:
            logger.info("call %s: unusable SDP answer; ending the call: %s", call_id, exc)
            return None
        try:
            session = await apply_answer(
                session, negotiated, local_host=self._rtp_host, local_port=port, call_id=call_id
            )
        except OSError as exc:
            logger.warning("call %s: RTP port %d unusable after the answer: %s", call_id, port, exc)
            return None
        media = MediaLeg(session, call_id=call_id)
        return OutboundLeg(call, media, session, port, self._pool)
