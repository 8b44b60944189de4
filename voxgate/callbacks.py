"""Callbacks: a waiting caller hangs up and keeps its place, and an agent calls it back.

Theory of operation. A queue with a `callback_key` lets a waiting caller
press that DTMF key. `CallbackService.wait_for_key` watches the caller's leg
while `ContactCenter.serve_queued` keeps the caller on hold. `accept_request` checks
the caller's number against `number_pattern`, turns the queue entry into a
callback with `Acd.request_callback` (same entry, same sort key, so the
place is kept) and plays a confirmation. The caller's call then ends with
reason `callback_requested`.

When the entry reaches the head, the ACD reserves an agent and yields an
offer of kind CALLBACK, which `serve` takes:

1. Ring the agent's page with an `Incoming` of kind "callback" that names
   the number. A decline or a missed ring returns the entry with
   `Acd.decline_offer`, so it keeps its place.
2. On the agent's answer, claim the entry with `Acd.answer_offer`, which
   succeeds once per entry, so a redelivered offer never dials twice. The
   agent hears a ringback tone while the node dials the number through the
   trunk (`OutboundDialer`).
3. When the customer answers, both legs are bridged until one side hangs up.
4. Busy, no answer or a failed call ends the agent's leg, and the agent
   goes to wrap-up as after any call. After `retry_interval_s` the callback
   goes back in its queue as a callback with its original join time, until
   `retries` further attempts are used. Then it is closed out with the last
   outcome. The wait is a `PendingRetry` in a `RetrySchedule`
   (voxgate/callbackretry.py), which every node polls. With Redis any node
   places a due retry, so it survives the node that scheduled it. A 4xx
   final response other than 408, 480 and 486 means the number cannot be
   reached and closes the callback out at once. An agent
   who hangs up while the number rings puts it back at once, and that dial
   does not count as an attempt.

The attempt count travels in the entry's context (`callback_attempts`), so
a retry offered on another node continues the count. Events on the hub:
`callback.requested`, `callback.attempt` (one per dial) and
`callback.closed`, with the caller's original call id, plus the `call.*`
events of each outbound leg under its own call id with `callback_of`, so
each dial gets its own CDR.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from acd.model import Entry, Offer, QueueTicket
from acd.service import Acd
from ivr.channel import CallEnded, DtmfInput
from media.audio import PcmAudio
from media.leg import MediaLeg
from media.mixer import bridge
from media.sources import LoopingSource
from media.tts import SynthesisError, Synthesizer
from signaling.webrtc.call import WebRtcCall
from signaling.webrtc.protocol import Incoming
from signaling.webrtc.server import WebRtcServer
from voxgate.callbackretry import MemoryRetries, PendingRetry, RetrySchedule
from voxgate.callevents import CallEvent, CallLegEvents, Channel, EventHub
from voxgate.logs import call_id_var
from voxgate.outbound import DialStatus, OutboundDialer, OutboundLeg
from voxgate.queueing import CallerLeg

logger = logging.getLogger("queues")

NUMBER_KEY = "callback_number"
ATTEMPTS_KEY = "callback_attempts"
RING_MARGIN_S = 1.0
KEY_POLL_S = 60.0
# 4xx final statuses after which another attempt may still reach the customer.
RETRYABLE_CLIENT_STATUSES = frozenset({408, 480, 486})
# The North American ringback cadence: 440 Hz + 480 Hz, 2 s on, 4 s off.
RINGBACK_HZ = (440.0, 480.0)
RINGBACK_ON_S = 2.0
RINGBACK_CYCLE_S = 6.0
RINGBACK_RATE = 8000
RINGBACK_AMPLITUDE = 0.05
# How long a node that took a due retry from the schedule has to queue it before others may.
RETRY_CLAIM_S = 30.0
RETRY_CLAIM_BATCH = 20
# The skill prefix of a node's own agents and callers when callers stay on their node.
NODE_SKILL_PREFIX = "node:"


@dataclass(frozen=True, slots=True)
class CallbackConfig:
    """Settings of the callback service (the lead maps the `callbacks` section onto it).

    `trunk_uri` is a sip: URI with one `{number}`. `keys` maps a queue name to
    the DTMF key that requests a callback there. `retries` counts attempts
    after the first one.
    """

    trunk_uri: str
    caller_id: str = "voxgate"
    credentials: tuple[str, str] | None = None
    ring_timeout_s: float = 30.0
    retries: int = 2
    retry_interval_s: float = 300.0
    number_pattern: str = r"^\+?[0-9]{3,15}$"
    keys: Mapping[str, str] = field(default_factory=dict)
    confirmation: str = "Thank you. We will call you back when an agent is free. Goodbye."
    unavailable: str = "Sorry, we cannot call you back on this line. Please stay on the line."

    def target_uri(self, number: str) -> str:
        return self.trunk_uri.replace("{number}", number)


def ringback_tone() -> PcmAudio:
    """Return one cycle of the ringback tone the agent hears while the customer's phone rings."""
    t = np.arange(round(RINGBACK_ON_S * RINGBACK_RATE)) / RINGBACK_RATE
    on = np.zeros(t.size)
    for hz in RINGBACK_HZ:
        on += np.sin(2 * math.pi * hz * t) * RINGBACK_AMPLITUDE
    cycle = np.zeros(round(RINGBACK_CYCLE_S * RINGBACK_RATE))
    cycle[: on.size] = on
    return PcmAudio(np.round(cycle * 32767).astype("<i2").tobytes(), RINGBACK_RATE)


def retry_allowed(outcome: DialStatus, status: int | None) -> bool:
    """Return False when another attempt cannot help, as after a 4xx such as 404 Not Found."""
    if outcome is DialStatus.BUSY or outcome is DialStatus.NO_ANSWER:
        return True
    if status is not None and 400 <= status < 500:
        return status in RETRYABLE_CLIENT_STATUSES
    return True


def attempts_made(context: Mapping[str, str]) -> int:
    """Return the attempts recorded in an entry's context (0 when missing or invalid)."""
    try:
        return max(0, int(context.get(ATTEMPTS_KEY, "0")))
    except ValueError:
        return 0


class CallbackService:
    """Takes callback requests from waiting callers and serves the ACD's callback offers."""

    def __init__(
        self,
        config: CallbackConfig,
        acd: Acd,
        synthesizer: Synthesizer,
        dialer: OutboundDialer,
        hub: EventHub,
        node_id: str,
        schedule: RetrySchedule | None = None,
    ) -> None:
        self.config = config
        self._acd = acd
        self._synthesizer = synthesizer
        self._dialer = dialer
        self._hub = hub
        self._node_id = node_id
        self._legs = CallLegEvents(hub, node_id)
        self._number = re.compile(config.number_pattern)
        self._ringback = ringback_tone()
        self._schedule: RetrySchedule = schedule if schedule is not None else MemoryRetries()
        self._scheduled = asyncio.Event()
        self._retry_loop: asyncio.Task[None] | None = None
        self._agent_lock: Callable[[str], asyncio.Lock] = lambda _: asyncio.Lock()
        self._sync_agent: Callable[[str], Awaitable[None]] = _no_sync
        self._webrtc: Callable[[], WebRtcServer | None] = lambda: None
        self._node_skill: str | None = None

    def bind_agents(
        self,
        lock: Callable[[str], asyncio.Lock],
        sync: Callable[[str], Awaitable[None]],
        webrtc: Callable[[], WebRtcServer | None],
        node_skill: str | None = None,
    ) -> None:
        """Share the contact center's per-agent locks, presence mirror and WebRTC edge.

        With `node_skill` (callers stay with their node's agents), a retry that this node
        places gets this node's skill in place of the scheduling node's.
        """
        self._agent_lock = lock
        self._sync_agent = sync
        self._webrtc = webrtc
        self._node_skill = node_skill

    def start(self) -> None:
        """Start placing the due retries of the schedule."""
        if self._retry_loop is None:
            self._retry_loop = asyncio.create_task(self._run_retries(), name="callback-retries")

    async def close(self) -> None:
        """Stop placing retries. A retry in memory is lost, one in Redis waits for other nodes."""
        if self._retry_loop is not None:
            self._retry_loop.cancel()
            await asyncio.gather(self._retry_loop, return_exceptions=True)
            self._retry_loop = None
        if isinstance(self._schedule, MemoryRetries):
            pending = await self._schedule.count()
            if pending:
                logger.warning("%d callback retries lost by the node stopping", pending)

    # -- requests from waiting callers ---------------------------------------

    def key_for(self, queue: str) -> str | None:
        return self.config.keys.get(queue)

    async def wait_for_key(self, leg: CallerLeg, queue: str) -> bool:
        """Return True once the caller presses the queue's callback key, False if the leg ends.

        Waits forever for a queue without a key; the caller cancels the wait.
        """
        key = self.key_for(queue)
        if key is None:
            await asyncio.Event().wait()
        try:
            while True:
                item = await leg.media.next_input(KEY_POLL_S)
                if isinstance(item, DtmfInput) and item.digit == key:
                    return True
        except CallEnded:
            return False

    async def accept_request(self, leg: CallerLeg, ticket: QueueTicket) -> bool:
        """Turn the waiting caller into a callback and confirm it; False when refused.

        Refused when the caller's number does not match `number_pattern` (the
        caller hears why and keeps waiting) or when the caller is being
        offered to an agent at this moment (the key press is ignored).
        """
        call_id = leg.call_id
        number = leg.caller
        if not self._number.search(number):
            logger.info(
                "call %s: callback rejected, the caller's number does not match number_pattern",
                call_id,
            )
            await self._say(leg, self.config.unavailable)
            return False
        try:
            info = await self._acd.request_callback(
                call_id, {NUMBER_KEY: number, ATTEMPTS_KEY: "0"}
            )
        except KeyError:
            logger.info(
                "call %s: callback key ignored, an agent is being offered the call", call_id
            )
            return False
        self._publish("callback.requested", call_id, queue=ticket.queue, position=info.position)
        await self._say(leg, self.config.confirmation)
        return True

    async def _say(self, leg: CallerLeg, text: str) -> None:
        try:
            audio = await self._synthesizer.synthesize(text, voice=leg.voice)
            await leg.media.play(audio)
        except SynthesisError as exc:
            logger.warning("call %s: callback prompt not synthesized: %s", leg.call_id, exc)
        except CallEnded:
            return

    # -- offers ----------------------------------------------------------------

    async def serve(self, offer: Offer) -> None:
        """Ring the reserved agent, dial the customer on the answer, bridge, then retry or close."""
        call_id_var.set(offer.call_id)
        agent_id = offer.agent_id
        number = offer.context.get(NUMBER_KEY, "")
        async with self._agent_lock(agent_id):
            entry = await self._acd.store.get_entry(offer.entry_id)
            server = self._webrtc()
            if entry is None or server is None:
                await self._acd.decline_offer(agent_id, offer.entry_id)
                await self._sync_agent(agent_id)
                return
            if not self._number.search(number):
                logger.warning(
                    "call %s: callback has no callable number, closing it", offer.call_id
                )
                await self._acd.leave(offer.call_id, "callback_failed")
                await self._sync_agent(agent_id)
                self._closed(
                    entry.call_id, entry.queue, DialStatus.FAILED, attempts_made(entry.context)
                )
                return
            ring_id = f"b{secrets.token_hex(8)}"
            # The page stops ringing a moment before the reservation ends, so
            # the reaper never offers this callback elsewhere while it rings.
            lease_s = offer.lease_until - self._acd.clock.now()
            ring_timeout = max(1.0, lease_s - RING_MARGIN_S)
            call = await server.offer_call(
                agent_id, self._incoming(offer, entry, ring_id, number), timeout_s=ring_timeout
            )
            if call is None:
                logger.info("call %s: agent %s did not take the callback", offer.call_id, agent_id)
                await self._acd.decline_offer(agent_id, offer.entry_id)
                await self._sync_agent(agent_id)
                return
            if not await self._acd.answer_offer(agent_id, offer.entry_id):
                logger.info("call %s: the callback was answered after it expired", offer.call_id)
                await call.hangup("offer expired")
                await self._sync_agent(agent_id)
                return
        attempt = attempts_made(entry.context) + 1
        outcome, status = await self._call_back(entry, agent_id, call, number, attempt)
        await self._after_attempt(entry, outcome, status, attempt)

    def _incoming(self, offer: Offer, entry: Entry, ring_id: str, number: str) -> Incoming:
        return Incoming(
            call_id=ring_id,
            caller=number,
            queue=offer.queue,
            intent=offer.context.get("intent", ""),
            priority=entry.priority,
            waiting_s=round(max(0.0, self._acd.clock.now() - entry.joined_at), 1),
            kind="callback",
        )

    async def _call_back(
        self, entry: Entry, agent_id: str, agent_call: WebRtcCall, number: str, attempt: int
    ) -> tuple[DialStatus, int | None]:
        """Dial the customer for the agent who answered; return the outcome and SIP status."""
        leg_id = f"{entry.call_id}.cb{attempt}"
        logger.info("call %s: callback attempt %d by agent %s", entry.call_id, attempt, agent_id)
        self._legs.started(
            leg_id,
            channel=Channel.SIP,
            caller=self.config.caller_id,
            called=number,
            callback_of=entry.call_id,
            attempt=attempt,
        )
        agent_leg = MediaLeg(agent_call.transport, call_id=agent_call.call_id)
        agent_leg.set_outbound_source(LoopingSource(self._ringback, agent_leg.sample_rate))
        outcome, status, end_reason = DialStatus.FAILED, None, "failed"
        customer: OutboundLeg | None = None
        try:
            result = await self._dialer.dial(
                self.config.target_uri(number),
                call_id=leg_id,
                from_user=self.config.caller_id,
                credentials=self.config.credentials,
                timeout_s=self.config.ring_timeout_s,
                abort=agent_call.ended.wait(),
            )
            outcome, status, customer = result.outcome, result.status, result.leg
            end_reason = outcome.value
            if customer is not None:
                self._legs.answered(leg_id)
                end_reason = await self._talk(leg_id, customer, agent_leg, agent_call, agent_id)
        finally:
            agent_leg.set_outbound_source(None)
            await agent_call.hangup(_agent_reason(outcome))
            await agent_leg.close()
            if customer is not None:
                await customer.close()
            shown_status = None if outcome is DialStatus.ANSWERED else status
            self._legs.ended(leg_id, reason=end_reason, status=shown_status)
            async with self._agent_lock(agent_id):
                try:
                    await self._acd.hangup(agent_id)
                except Exception:
                    logger.exception("call %s: ACD hangup failed", entry.call_id)
                await self._sync_agent(agent_id)
        self._publish(
            "callback.attempt",
            entry.call_id,
            queue=entry.queue,
            attempt=attempt,
            agent_id=agent_id,
            outcome=outcome.value,
            status=status,
            leg_call_id=leg_id,
        )
        return outcome, status

    async def _talk(
        self,
        leg_id: str,
        customer: OutboundLeg,
        agent_leg: MediaLeg,
        agent_call: WebRtcCall,
        agent_id: str,
    ) -> str:
        """Bridge the customer to the agent until one side hangs up; return the end reason."""
        agent_leg.set_outbound_source(None)
        mixer = bridge(customer.media, agent_leg, call_id=leg_id)
        self._legs.bridged(leg_id, agent_id=agent_id)
        customer_ended: asyncio.Future[Any] = asyncio.ensure_future(customer.call.wait_ended())
        agent_ended: asyncio.Future[Any] = asyncio.ensure_future(agent_call.ended.wait())
        try:
            watched: set[asyncio.Future[Any]] = {customer_ended, agent_ended}
            done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            side = "customer" if customer_ended in done else "agent"
            logger.info("call %s: %s hung up, ending both legs", leg_id, side)
            return f"{side}_hangup"
        finally:
            for task in (customer_ended, agent_ended):
                task.cancel()
            mixer.close()

    # -- retries and close-out ---------------------------------------------------

    async def _after_attempt(
        self, entry: Entry, outcome: DialStatus, status: int | None, attempt: int
    ) -> None:
        if outcome is DialStatus.ANSWERED:
            self._closed(entry.call_id, entry.queue, outcome, attempt)
        elif outcome is DialStatus.CANCELLED:
            logger.info("call %s: agent left before the answer, callback requeued", entry.call_id)
            await self._schedule_retry(entry, attempt - 1, 0.0)
        elif attempt > self.config.retries or not retry_allowed(outcome, status):
            self._closed(entry.call_id, entry.queue, outcome, attempt)
        else:
            logger.info(
                "call %s: callback %s, retry in %.0f s",
                entry.call_id,
                outcome.value,
                self.config.retry_interval_s,
            )
            await self._schedule_retry(entry, attempt, self.config.retry_interval_s)

    async def _schedule_retry(self, entry: Entry, attempts: int, delay_s: float) -> None:
        """Schedule the callback to go back in its queue, with its join time, after `delay_s`."""
        context = dict(entry.context)
        context[ATTEMPTS_KEY] = str(attempts)
        retry = PendingRetry(
            entry.call_id, entry.queue, entry.priority, entry.joined_at, dict(entry.skills), context
        )
        try:
            await self._schedule.add(retry, self._acd.clock.now() + delay_s)
        except Exception:
            logger.exception("call %s: scheduling the callback retry failed", entry.call_id)
            self._closed(entry.call_id, entry.queue, DialStatus.FAILED, attempts)
            return
        self._scheduled.set()

    async def _run_retries(self) -> None:
        """Place each due retry of the schedule, whichever node scheduled it."""
        while True:
            clock = self._acd.clock
            wait_s = self._schedule.poll_s
            try:
                for retry in await self._schedule.claim(
                    clock.now(), RETRY_CLAIM_S, RETRY_CLAIM_BATCH
                ):
                    await self._place(retry)
                next_due = await self._schedule.next_due()
            except Exception:
                logger.exception("placing the due callback retries failed")
                next_due = None
                wait_s = RETRY_CLAIM_S if wait_s is None else wait_s
            if next_due is not None:
                until_due = max(0.0, next_due - clock.now())
                wait_s = until_due if wait_s is None else min(wait_s, until_due)
            await self._wait_scheduled(wait_s)

    async def _wait_scheduled(self, timeout_s: float | None) -> None:
        """Wait until this node schedules a retry, or `timeout_s` (None: no limit) passes."""
        self._scheduled.clear()
        waits: set[asyncio.Future[Any]] = {asyncio.ensure_future(self._scheduled.wait())}
        if timeout_s is not None:
            waits.add(asyncio.ensure_future(self._acd.clock.sleep(timeout_s)))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    async def _place(self, retry: PendingRetry) -> None:
        """Put a due retry back in its queue as a callback, then take it off the schedule."""
        call_id_var.set(retry.call_id)
        attempts = attempts_made(retry.context)
        skills = dict(retry.skills)
        if self._node_skill is not None:
            skills = {k: v for k, v in skills.items() if not k.startswith(NODE_SKILL_PREFIX)}
            skills[self._node_skill] = 1
        try:
            ticket = await self._acd.enqueue(
                retry.call_id,
                retry.queue,
                retry.priority,
                skills,
                retry.context,
                reason="callback",
                joined_at=retry.joined_at,
                callback=True,
            )
        except KeyError as exc:
            logger.warning("call %s: callback not requeued: %s", retry.call_id, exc)
            self._closed(retry.call_id, retry.queue, DialStatus.FAILED, attempts)
        except ValueError as exc:
            # The reason is valid, so ValueError means that the call id is queued already.
            # Another node queued this retry and died before removing it.
            logger.info("call %s: callback already requeued: %s", retry.call_id, exc)
        else:
            if ticket.queued:
                logger.info("call %s: callback back in queue %s", retry.call_id, retry.queue)
            else:
                logger.warning(
                    "call %s: callback not requeued, queue %s is full", retry.call_id, retry.queue
                )
                self._closed(retry.call_id, retry.queue, DialStatus.FAILED, attempts)
        await self._schedule.remove(retry.call_id)

    def _closed(self, call_id: str, queue: str, outcome: DialStatus, attempts: int) -> None:
        logger.info(
            "call %s: callback closed: %s after %d attempts", call_id, outcome.value, attempts
        )
        self._publish(
            "callback.closed",
            call_id,
            queue=queue,
            outcome=outcome.value,
            attempts=attempts,
        )

    def _publish(self, kind: str, call_id: str, **payload: Any) -> None:
        self._hub.publish(CallEvent(kind, call_id, self._node_id, time.time(), payload))


def _agent_reason(outcome: DialStatus) -> str:
    return {
        DialStatus.ANSWERED: "call ended",
        DialStatus.BUSY: "customer busy",
        DialStatus.NO_ANSWER: "customer did not answer",
        DialStatus.FAILED: "callback failed",
        DialStatus.CANCELLED: "callback cancelled",
    }[outcome]


async def _no_sync(agent_id: str) -> None:
    return None
