"""The caller-to-agent journey of one node: queue, hold, offer, bridge, hangup.

Theory of operation. The IVR's queue step places a caller with
`AcdQueueService`. When the IVR session ends with outcome `queued`, the
call's handler calls `ContactCenter.serve_queued`, which owns the caller's
leg from then on. The caller hears hold music (the queue's WAV or a chime)
and, on the queue's schedule, its position and expected wait, which the ACD
announces with `PositionChanged` events.

The ACD makes offers to this node's agents (`Acd.offers`). For each, a task
rings the agent's browser with `WebRtcServer.offer_call`, carrying what the
IVR learned about the caller. A decline or a missed ring goes back with
`Acd.decline_offer`; an answer is claimed with `Acd.answer_offer` (which
succeeds once per caller, so a redelivered offer never connects twice) and
handed to the caller's task, which bridges both legs with the media
package's mixer. Whichever side hangs up, both legs end, `Acd.hangup` starts
the agent's wrap-up, and a caller who hangs up while waiting leaves the
queue as abandoned.

Agent presence has one source of truth, the WebRTC edge (the agent's page).
Every presence change is mirrored into the ACD by `_sync_agent` under a
per-agent lock, which the ringing task holds too, so the two never race:
available and away map to themselves, wrap-up maps to away with reason
`wrap_up`, offline logs the agent out, and ringing and busy leave the ACD
to the offer in progress.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from acd.agents import AgentStateError
from acd.events import (
    AcdEvent,
    CallerAnswered,
    CallerJoined,
    CallerLeft,
    OfferReturned,
    PositionChanged,
)
from acd.model import AgentState as AcdAgentState
from acd.model import Offer, OfferKind, PositionInfo, QueueTicket
from acd.service import Acd
from ivr.channel import CallEnded
from ivr.engine import Outcome, SessionResult
from media.audio import PcmAudio
from media.leg import MediaLeg
from media.mixer import bridge
from media.sources import LoopingSource
from media.tts import SynthesisError, Synthesizer
from signaling.webrtc.call import WebRtcCall
from signaling.webrtc.protocol import AgentState as WebAgentState
from signaling.webrtc.protocol import Incoming, Presence
from signaling.webrtc.server import WebRtcServer
from voxgate.callevents import CallLegEvents
from voxgate.logs import call_id_var
from voxgate.queueing import AcdQueueService, CallerLeg, announcement_text

logger = logging.getLogger("queues")

# How long an offer waits for the caller's IVR to finish its queue announcement.
REGISTER_TIMEOUT_S = 60.0
RING_MARGIN_S = 1.0
MAX_IVR_PATH = 32
MAX_WORDS = 2000


@dataclass(frozen=True, slots=True)
class AgentAccount:
    """The routing data of one agent for the ACD login: the queues served and the skill levels."""

    queues: tuple[str, ...]
    skills: Mapping[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Waiting:
    leg: CallerLeg
    ticket: QueueTicket
    result: SessionResult
    joined_at: float
    announcements: asyncio.Queue[PositionInfo] = field(default_factory=asyncio.Queue)
    answered: asyncio.Future[tuple[str, WebRtcCall]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    ringing: tuple[str, str] | None = None


class ContactCenter:
    """Queues callers, rings agents and bridges calls on one node."""

    def __init__(
        self,
        acd: Acd,
        synthesizer: Synthesizer,
        *,
        accounts: Mapping[str, AgentAccount],
        hold_music: Mapping[str, PcmAudio],
        default_hold: PcmAudio,
        route_within_node: bool = True,
    ) -> None:
        self.acd = acd
        # NOTE: the bridge joins only legs of this node, so by default callers
        # are routed only to agents logged in here (a per-node skill).
        self.node_skill = f"node:{acd.node_id}" if route_within_node else None
        self.queue_service = AcdQueueService(acd, self.node_skill)
        self.webrtc: WebRtcServer | None = None
        self.legs: CallLegEvents | None = None
        self._synthesizer = synthesizer
        self._accounts = accounts
        self._hold_music = hold_music
        self._default_hold = default_hold
        self._waiting: dict[str, _Waiting] = {}
        self._registered: dict[str, asyncio.Future[_Waiting | None]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._presence: asyncio.Queue[str] = asyncio.Queue()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop_listening = acd.events.listen(self._on_acd_event)
        self.counters: dict[str, dict[str, int]] = {}

    # -- lifetime -----------------------------------------------------------

    def start(self) -> None:
        """Start the ACD work loop, the offer dispatcher and the presence mirror."""
        self.acd.start()
        self._spawn(self._dispatch_offers(), "acd-offers")
        self._spawn(self._mirror_presence(), "acd-presence")

    async def close(self) -> None:
        """Stop dispatching and mirroring, stop the ACD and close its store connection."""
        self._stop_listening()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.acd.close()
        await self.acd.store.close()

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("task %s failed", task.get_name(), exc_info=task.exception())

    def _lock(self, agent_id: str) -> asyncio.Lock:
        return self._locks.setdefault(agent_id, asyncio.Lock())

    # -- callers --------------------------------------------------------------

    async def serve_queued(self, leg: CallerLeg, result: SessionResult | None) -> str | None:
        """Keep a queued caller's leg until it is bridged to an agent and the call ends.

        Call it once for every call whose IVR session ended, with the result
        (None when the caller hung up during the IVR). A caller that the IVR
        queued but that did not stay leaves the queue as abandoned. Returns
        the end reason of a call that waited in the queue (`caller_hangup` or
        `agent_hangup`), or None when the caller never waited.
        """
        placed = self.queue_service.take_ticket(leg.call_id)
        if placed is None:
            return None
        if result is None or result.outcome is not Outcome.QUEUED:
            await self._leave(leg.call_id, "hangup")
            return None
        ticket, joined_at = placed
        waiting = _Waiting(leg, ticket, result, joined_at)
        self._waiting[leg.call_id] = waiting
        self._registration(leg.call_id).set_result(waiting)
        hold = asyncio.create_task(self._hold(waiting), name=f"hold-{leg.call_id}")
        ended: asyncio.Future[Any] = asyncio.ensure_future(leg.wait_ended())
        try:
            watched: set[asyncio.Future[Any]] = {ended, waiting.answered}
            done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            if waiting.answered in done:
                hold.cancel()
                await asyncio.gather(hold, return_exceptions=True)
                agent_id, agent_call = waiting.answered.result()
                return await self._talk(waiting, agent_id, agent_call, ended)
            logger.info("call %s: caller hung up while waiting", leg.call_id)
            self._withdraw_ring(waiting)
            await self._leave(leg.call_id, "hangup")
            return "caller_hangup"
        finally:
            for task in (hold, ended):
                task.cancel()
            await asyncio.gather(hold, ended, return_exceptions=True)
            self._waiting.pop(leg.call_id, None)
            self._registered.pop(leg.call_id, None)
            if not waiting.answered.done():
                waiting.answered.cancel()

    async def _leave(self, call_id: str, reason: str) -> None:
        try:
            await self.acd.leave(call_id, reason)
        except Exception:
            logger.exception("call %s: leaving the queue failed", call_id)
        future = self._registered.pop(call_id, None)
        if future is not None and not future.done():
            future.set_result(None)

    def _registration(self, call_id: str) -> asyncio.Future[_Waiting | None]:
        future = self._registered.get(call_id)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._registered[call_id] = future
        return future

    async def _hold(self, waiting: _Waiting) -> None:
        """Play hold music, interrupted by each position announcement."""
        leg = waiting.leg.media
        music = self._hold_music.get(waiting.ticket.queue, self._default_hold)
        try:
            leg.set_outbound_source(LoopingSource(music, leg.sample_rate))
            while True:
                info = await waiting.announcements.get()
                text = announcement_text(info.position, info.eta_s)
                try:
                    audio = await self._synthesizer.synthesize(text, voice=waiting.leg.voice)
                except SynthesisError as exc:
                    logger.warning("call %s: announcement not synthesized: %s", leg.call_id, exc)
                    continue
                await leg.play(audio)
        except CallEnded:
            return
        finally:
            leg.set_outbound_source(None)

    def queue_counters(self) -> dict[str, dict[str, int]]:
        """Counts per queue since the node started: joined, announced, offers returned,
        answered, abandoned and left for other reasons (maximum wait, overflow)."""
        return {queue: dict(counts) for queue, counts in self.counters.items()}

    def _count(self, queue: str, name: str) -> None:
        counts = self.counters.setdefault(
            queue,
            dict.fromkeys(("joined", "announced", "returned", "answered", "abandoned", "left"), 0),
        )
        counts[name] += 1

    def _on_acd_event(self, event: AcdEvent) -> None:
        if isinstance(event, CallerJoined):
            self._count(event.queue, "joined")
        elif isinstance(event, CallerAnswered):
            self._count(event.queue, "answered")
        elif isinstance(event, OfferReturned):
            self._count(event.queue, "returned")
        elif isinstance(event, CallerLeft):
            self._count(event.queue, "abandoned" if event.abandoned else "left")
        if isinstance(event, PositionChanged):
            self._count(event.queue, "announced")
            waiting = self._waiting.get(event.call_id)
            if waiting is not None:
                info = PositionInfo(
                    event.call_id, event.queue, event.position, event.eta_s, event.jumped_ahead
                )
                waiting.announcements.put_nowait(info)

    async def _talk(
        self,
        waiting: _Waiting,
        agent_id: str,
        agent_call: WebRtcCall,
        caller_ended: asyncio.Future[Any],
    ) -> str:
        """Bridge the caller to the agent until one side hangs up; return the end reason."""
        caller = waiting.leg
        agent_leg = MediaLeg(agent_call.transport, call_id=agent_call.call_id)
        mixer = bridge(caller.media, agent_leg, call_id=caller.call_id)
        if self.legs is not None:
            self.legs.bridged(caller.call_id, agent_id=agent_id)
        agent_ended: asyncio.Future[Any] = asyncio.ensure_future(agent_call.ended.wait())
        try:
            watched: set[asyncio.Future[Any]] = {caller_ended, agent_ended}
            done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            side = "caller" if caller_ended in done else "agent"
            logger.info("call %s: %s hung up, ending both legs", caller.call_id, side)
            return f"{side}_hangup"
        finally:
            agent_ended.cancel()
            mixer.close()
            await agent_call.hangup("caller hung up")  # a no-op when the agent hung up
            await agent_leg.close()
            await caller.hangup()
            async with self._lock(agent_id):
                try:
                    await self.acd.hangup(agent_id)
                except Exception:
                    logger.exception("call %s: ACD hangup failed", caller.call_id)
                await self._sync_agent(agent_id)

    # -- offers ---------------------------------------------------------------

    async def _dispatch_offers(self) -> None:
        async for offer in self.acd.offers():
            if offer.kind is OfferKind.CALLBACK:
                # NOTE: callbacks need an outbound call, which this node cannot
                # place yet; the reservation expires and the reaper returns it.
                logger.warning("call %s: callback offers are not supported", offer.call_id)
                continue
            self._spawn(self._ring(offer), f"ring-{offer.call_id}")

    async def _ring(self, offer: Offer) -> None:
        call_id_var.set(offer.call_id)
        agent_id = offer.agent_id
        async with self._lock(agent_id):
            waiting = await self._wait_registered(offer.call_id)
            server = self.webrtc
            if waiting is None or server is None or waiting.answered.done():
                await self.acd.decline_offer(agent_id, offer.entry_id)
                await self._sync_agent(agent_id)
                return
            ring_id = f"q{secrets.token_hex(8)}"
            waiting.ringing = (agent_id, ring_id)
            # The page stops ringing a moment before the ACD's lease ends, so
            # the reaper never offers this caller elsewhere while it still rings.
            lease_s = offer.lease_until - self.acd.clock.now()
            ring_timeout = max(1.0, lease_s - RING_MARGIN_S)
            try:
                call = await server.offer_call(
                    agent_id, self._incoming(waiting, offer, ring_id), timeout_s=ring_timeout
                )
            finally:
                waiting.ringing = None
            if call is None:
                logger.info("call %s: agent %s did not take the call", offer.call_id, agent_id)
                await self.acd.decline_offer(agent_id, offer.entry_id)
                await self._sync_agent(agent_id)
                return
            if waiting.answered.done():
                # A redelivered offer that another agent answered first.
                logger.info("call %s: already connected to another agent", offer.call_id)
                await call.hangup("answered elsewhere")
                await self.acd.decline_offer(agent_id, offer.entry_id)
                await self._sync_agent(agent_id)
                return
            if not await self.acd.answer_offer(agent_id, offer.entry_id):
                # The lease ended first, and the reaper has already freed the agent.
                logger.info("call %s: the answer came after the offer expired", offer.call_id)
                await call.hangup("offer expired")
                await self._sync_agent(agent_id)
                return
            waiting.answered.set_result((agent_id, call))

    async def _wait_registered(self, call_id: str) -> _Waiting | None:
        future = self._registration(call_id)
        try:
            return await asyncio.wait_for(asyncio.shield(future), REGISTER_TIMEOUT_S)
        except TimeoutError:
            self._registered.pop(call_id, None)
            logger.warning("call %s: offered but its IVR did not hand it over", call_id)
            return None

    def _withdraw_ring(self, waiting: _Waiting) -> None:
        if waiting.ringing is None or self.webrtc is None:
            return
        _, ring_id = waiting.ringing
        self.webrtc.cancel_offer(ring_id, "caller hung up")

    def _incoming(self, waiting: _Waiting, offer: Offer, ring_id: str) -> Incoming:
        variables = waiting.result.variables
        words = ""
        if variables.get("last_input_mode") == "speech":
            words = str(variables.get("last_input") or "")[:MAX_WORDS]
        request = waiting.result.queue_request
        return Incoming(
            call_id=ring_id,
            caller=waiting.leg.caller,
            called=waiting.leg.called,
            queue=offer.queue,
            ivr_path=tuple(waiting.result.path[-MAX_IVR_PATH:]),
            words=words,
            intent=str(variables.get("intent") or ""),
            priority=request.priority if request is not None else 0,
            waiting_s=round(max(0.0, self.acd.clock.now() - waiting.joined_at), 1),
            priority_reason=request.reason if request is not None else "",
        )

    # -- agents -----------------------------------------------------------------

    def on_agent_state(self, presence: Presence) -> None:
        """Take an agent's new presence from the WebRTC edge (mirrored into the ACD)."""
        self._presence.put_nowait(presence.user)

    async def _mirror_presence(self) -> None:
        while True:
            user = await self._presence.get()
            async with self._lock(user):
                await self._sync_agent(user)

    async def _sync_agent(self, user: str) -> None:
        """Make the ACD's state of `user` follow the agent's presence on the WebRTC edge."""
        server = self.webrtc
        presence = server.agents.get(user) if server is not None else None
        state = presence.state if presence is not None else WebAgentState.OFFLINE
        if state in (WebAgentState.RINGING, WebAgentState.BUSY):
            return
        try:
            current = await self.acd.store.get_agent(user)
            if state is WebAgentState.OFFLINE:
                if current is not None:
                    await self.acd.logout(user)
                return
            target, reason = {
                WebAgentState.AVAILABLE: (AcdAgentState.AVAILABLE, ""),
                WebAgentState.AWAY: (AcdAgentState.AWAY, "away"),
                WebAgentState.WRAP_UP: (AcdAgentState.AWAY, "wrap_up"),
            }[state]
            if current is None:
                account = self._accounts.get(user)
                if account is None:
                    logger.warning("agent %s has no account settings, not routed to", user)
                    return
                skills = dict(account.skills)
                if self.node_skill is not None:
                    skills[self.node_skill] = 1
                await self.acd.login(user, account.queues, skills, target, reason)
            elif current.state in (AcdAgentState.OFFERED, AcdAgentState.ON_CALL):
                return
            elif current.state is not target or current.away_reason != reason:
                await self.acd.set_state(user, target, reason)
        except (AgentStateError, KeyError, ValueError) as exc:
            logger.info("agent %s: ACD state not updated: %s", user, exc)
