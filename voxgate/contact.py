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

An agent's blind transfer (`transfer`, from the agent's page) ends the
bridge the same way, except for the caller's leg: after a transfer to a
queue the caller joins that queue again and its task waits there as
before; after a transfer to a number (REFER, SIP callers only) the caller's
side has left for the target and the leg is hung up.

Agent presence has one source of truth, the WebRTC edge (the agent's page).
Every presence change is mirrored into the ACD by `AgentMirror`
(voxgate/agentmirror.py) under a per-agent lock, which the ringing task
takes too, so the two never race.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from acd.events import (
    AcdEvent,
    AgentStateChanged,
    PositionChanged,
)
from acd.model import AgentState as AcdAgentState
from acd.model import Offer, OfferKind, PositionInfo, QueueTicket
from acd.service import Acd
from ivr.channel import CallEnded
from ivr.engine import Outcome, SessionResult
from lifecycle.tasks import STOP_TIMEOUT_S, cancel_and_wait
from media.audio import PcmAudio
from media.leg import MediaLeg
from media.mixer import bridge
from media.sources import LoopingSource
from media.transport import FrameTransport
from media.tts import SynthesisError, Synthesizer
from signaling.webrtc.protocol import (
    MAX_SENTIMENT_TURNS,
    ErrorCode,
    Incoming,
    Presence,
    TransferKind,
)
from signaling.webrtc.protocol import (
    AgentState as WebAgentState,
)
from signaling.webrtc.server import WebRtcServer
from voxgate.agentmirror import AgentAccount, AgentMirror
from voxgate.callevents import CallLegEvents
from voxgate.logs import call_id_var
from voxgate.queuecounters import ACD_COUNTS, NODE_COUNTS, QueueCounters
from voxgate.queueing import AcdQueueService, CallerLeg, announcement_text
from voxgate.transfer import TransferError, check_number_target

if TYPE_CHECKING:
    from voxgate.callbacks import CallbackService
    from voxgate.crossnode import CrossNode

logger = logging.getLogger("queues")

# How long an offer waits for the caller's IVR to finish its queue announcement.
REGISTER_TIMEOUT_S = 60.0
RING_MARGIN_S = 1.0
MAX_IVR_PATH = 32
MAX_WORDS = 2000
# How long a bridge that the caller ended waits for a transfer in flight to report:
# a transferee sends BYE right after the NOTIFY that reports the transfer's success.
TRANSFER_SETTLE_S = 5.0


class AgentCall(Protocol):
    """The agent's side of a bridge: a `WebRtcCall`, or a SIP leg from the agent's node."""

    call_id: str
    ended: asyncio.Event

    @property
    def transport(self) -> FrameTransport: ...

    async def hangup(self, reason: str = "") -> None: ...


@dataclass(slots=True)
class _Waiting:
    leg: CallerLeg
    ticket: QueueTicket
    result: SessionResult
    joined_at: float
    announcements: asyncio.Queue[PositionInfo] = field(default_factory=asyncio.Queue)
    answered: asyncio.Future[tuple[str, AgentCall]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    ringing: tuple[str, str] | None = None
    # The agent is logged in on another node, which ends the agent's call in the ACD.
    remote_agent: bool = False


@dataclass(slots=True)
class _Talk:
    """A caller bridged to an agent, as a transfer from the agent's page finds it.

    `outcome` is set once a transfer is done: the caller's new `_Waiting`
    after a transfer to a queue, None after a transfer to a number.
    """

    waiting: _Waiting
    agent_id: str
    outcome: asyncio.Future[_Waiting | None]
    transferring: bool = False
    ended: bool = False


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
        transfer_allow: Sequence[str] = ("*",),
    ) -> None:
        self.acd = acd
        # Glob patterns of the numbers and SIP URIs that agents may transfer callers to.
        self.transfer_allow = tuple(transfer_allow)
        # With routing within the node, a per-node skill keeps callers to
        # agents logged in here; otherwise `crossnode` bridges across nodes.
        self.node_skill = f"node:{acd.node_id}" if route_within_node else None
        self.queue_service = AcdQueueService(acd, self.node_skill)
        self.webrtc: WebRtcServer | None = None
        self.legs: CallLegEvents | None = None
        self.crossnode: CrossNode | None = None
        self.callbacks: CallbackService | None = None
        self._synthesizer = synthesizer
        self._agent_mirror = AgentMirror(acd, accounts, self.node_skill, lambda: self.webrtc)
        self._hold_music = hold_music
        self._default_hold = default_hold
        self._waiting: dict[str, _Waiting] = {}
        self._registered: dict[str, asyncio.Future[_Waiting | None]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._presence: asyncio.Queue[str] = asyncio.Queue()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._talks: dict[str, _Talk] = {}
        self._stop_listening = acd.events.listen(self._on_acd_event)
        # Set by `begin_stop` before the node ends its calls: a waiting caller's
        # end is then the node's stop, not the caller's hangup.
        self.stopping = False
        self.counters = QueueCounters(NODE_COUNTS, acd.settings.queues)
        self.cluster_counters = QueueCounters(ACD_COUNTS, acd.settings.queues)

    # -- lifetime -----------------------------------------------------------

    def start(self) -> None:
        """Start the ACD work loop, the offer dispatcher and the presence mirror."""
        self.acd.start()
        self._spawn(self._dispatch_offers(), "acd-offers")
        self._spawn(self._mirror_presence(), "acd-presence")

    def begin_stop(self) -> None:
        """Mark the node as stopping before its calls end: waiting callers end as `node_stopped`."""
        self.stopping = True

    async def close(self) -> None:
        """Stop dispatching and mirroring, stop the ACD and close its store connection."""
        self._stop_listening()
        if self.callbacks is not None:
            await self.callbacks.close()
        left = await cancel_and_wait(self._tasks, STOP_TIMEOUT_S)
        if left:
            logger.warning("node %s: %d queue tasks did not stop", self.acd.node_id, len(left))
        await self.acd.close()
        try:
            await self.acd.release_name()
            await self._log_out_idle_agents()
            if not await self.acd.store.forget_node(self.acd.node_id):
                logger.info(
                    "node %s: agents or callers remain; the reaper closes them out",
                    self.acd.node_id,
                )
        except Exception:
            logger.exception("node %s: dropping the node's heartbeat failed", self.acd.node_id)
        await self.acd.store.close()

    async def _log_out_idle_agents(self) -> None:
        """Log out this node's agents that hold no caller, as their pages lose this node.

        An agent who is offered a caller or on a call is left to the reaper of the other
        nodes, which returns the caller with its position.
        """
        for agent in await self.acd.store.agents(self.acd.node_id):
            if agent.state not in (AcdAgentState.OFFERED, AcdAgentState.ON_CALL):
                await self.acd.logout(agent.agent_id)

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

    def attach_callbacks(self, service: CallbackService) -> None:
        """Serve callback offers and callback keys with `service`, sharing the agent locks."""
        service.bind_agents(self._lock, self._sync_agent, lambda: self.webrtc, self.node_skill)
        self.callbacks = service

    # -- callers --------------------------------------------------------------

    async def serve_queued(self, leg: CallerLeg, result: SessionResult | None) -> str | None:
        """Keep a queued caller's leg until it is bridged to an agent and the call ends.

        Call it once for every call whose IVR session ended, with the result
        (None when the caller hung up during the IVR). A caller that the IVR
        queued but that did not stay leaves the queue as abandoned. Returns
        the end reason of a call that waited in the queue (`caller_hangup`,
        `agent_hangup`, `callback_requested`, `transferred` to a number,
        `node_stopped` or `rtp_timeout`), or None when the caller never waited.
        For a call without a ticket (`queue_service.has_ticket` returns False),
        this returns None at once and changes nothing, so a handler may skip the
        call and the `CallerLeg` it would build.
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
        ended: asyncio.Future[Any] = asyncio.ensure_future(leg.wait_ended())
        try:
            # Each turn is one wait in a queue; an agent's transfer to a queue starts another.
            while True:
                if self.crossnode is not None:
                    await self.crossnode.caller_waiting(waiting)
                hold = asyncio.create_task(self._hold(waiting), name=f"hold-{leg.call_id}")
                try:
                    watched: set[asyncio.Future[Any]] = {ended, waiting.answered}
                    done = await self._wait_or_callback(waiting, watched)
                finally:
                    hold.cancel()
                    await asyncio.gather(hold, return_exceptions=True)
                if not done:
                    return "callback_requested"
                if waiting.answered not in done:
                    reason = self._waiting_end(leg.call_id, ended)
                    self._withdraw_ring(waiting)
                    leave = "hangup" if reason == "caller_hangup" else reason
                    await self._leave(leg.call_id, leave)
                    return reason
                agent_id, agent_call = waiting.answered.result()
                end = await self._talk(waiting, agent_id, agent_call, ended)
                if isinstance(end, str):
                    return end
                waiting = end
        finally:
            ended.cancel()
            await asyncio.gather(ended, return_exceptions=True)
            self._waiting.pop(leg.call_id, None)
            self._registered.pop(leg.call_id, None)
            if not waiting.answered.done():
                waiting.answered.cancel()
            if self.crossnode is not None:
                await self.crossnode.caller_gone(leg.call_id)

    def _waiting_end(self, call_id: str, ended: asyncio.Future[Any]) -> str:
        """Return the end reason of a caller whose leg ended while waiting, and log it.

        The leg's end is the SIP layer's reason (`shutdown` when the node
        stopped, `rtp_timeout` when no media came) or a browser call's. Only
        the caller's own hangup leaves the queue as abandoned.
        """
        finished = ended.done() and not ended.cancelled() and ended.exception() is None
        reason = ended.result() if finished else None
        if self.stopping or reason == "shutdown":
            logger.info("call %s: node stopping, caller leaves the queue", call_id)
            return "node_stopped"
        if reason == "rtp_timeout":
            logger.info("call %s: no media from the caller, ended while waiting", call_id)
            return "rtp_timeout"
        logger.info("call %s: caller hung up while waiting", call_id)
        return "caller_hangup"

    def is_waiting(self, call_id: str) -> bool:
        """Return True while the caller waits in this node's queue, not yet connected."""
        waiting = self._waiting.get(call_id)
        return waiting is not None and not waiting.answered.done()

    def waiting_entry_id(self, call_id: str) -> str | None:
        """Return the queue entry id of a caller waiting here and not yet connected, else None."""
        waiting = self._waiting.get(call_id)
        if waiting is None or waiting.answered.done():
            return None
        return waiting.ticket.entry_id

    def connect_remote(self, call_id: str, agent_id: str, agent_call: AgentCall) -> bool:
        """Bridge a waiting caller to an agent of another node, reached over `agent_call`.

        The agent's node has claimed the caller with `Acd.answer_offer`.
        Returns False when the caller is not waiting here or is already
        connected; the caller's task bridges it otherwise.
        """
        waiting = self._waiting.get(call_id)
        if waiting is None or waiting.answered.done():
            return False
        waiting.remote_agent = True
        waiting.answered.set_result((agent_id, agent_call))
        return True

    async def _wait_or_callback(
        self, waiting: _Waiting, watched: set[asyncio.Future[Any]]
    ) -> set[asyncio.Future[Any]]:
        """Wait for the first of `watched` while serving the queue's callback key.

        Returns the futures done, or an empty set once the caller became a callback.
        """
        callbacks = self.callbacks
        if callbacks is None or callbacks.key_for(waiting.ticket.queue) is None:
            done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            return done
        while True:
            pressed = asyncio.ensure_future(
                callbacks.wait_for_key(waiting.leg, waiting.ticket.queue)
            )
            try:
                done, _ = await asyncio.wait(
                    watched | {pressed}, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                pressed.cancel()
                await asyncio.gather(pressed, return_exceptions=True)
            done.discard(pressed)
            if done:
                return done
            if not pressed.result():
                # The leg ended, and `watched` contains its end.
                done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
                return done
            if await callbacks.accept_request(waiting.leg, waiting.ticket):
                return set()

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
        answered, abandoned, left for other reasons (maximum wait, overflow) and
        transferred by an agent (counted on the queue the caller was answered from)."""
        return self.counters.snapshot()

    def cluster_queue_counters(self) -> dict[str, dict[str, int]]:
        """Return the counts of `queue_counters` except transferred, over the ACD events of
        this node and of the other nodes (relayed) since this node started."""
        return self.cluster_counters.snapshot()

    def on_relayed(self, event: AcdEvent) -> None:
        """Count an ACD event of another node, and notice an agent logging in there."""
        self.cluster_counters.count_event(event)
        if (
            isinstance(event, AgentStateChanged)
            and event.old is AcdAgentState.LOGGED_OUT
            and self.webrtc is not None
            and event.agent_id in self.webrtc.agents
        ):
            self._spawn(self._agent_moved(event.agent_id), f"agent-moved-{event.agent_id}")

    def _on_acd_event(self, event: AcdEvent) -> None:
        self.counters.count_event(event)
        self.cluster_counters.count_event(event)
        if isinstance(event, PositionChanged):
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
        agent_call: AgentCall,
        caller_ended: asyncio.Future[Any],
    ) -> str | _Waiting:
        """Bridge the caller to the agent until one side hangs up or the agent transfers.

        Return the end reason, or the caller's new `_Waiting` after a
        transfer to a queue (the caller's leg then stays up).
        """
        caller = waiting.leg
        agent_leg = MediaLeg(agent_call.transport, call_id=agent_call.call_id)
        mixer = bridge(caller.media, agent_leg, call_id=caller.call_id)
        if self.legs is not None:
            self.legs.bridged(caller.call_id, agent_id=agent_id)
        talk = _Talk(waiting, agent_id, asyncio.get_running_loop().create_future())
        self._talks[agent_call.call_id] = talk
        agent_ended: asyncio.Future[Any] = asyncio.ensure_future(agent_call.ended.wait())
        requeued: _Waiting | None = None
        try:
            watched: set[asyncio.Future[Any]] = {caller_ended, agent_ended, talk.outcome}
            done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            if caller_ended in done and talk.transferring and not talk.outcome.done():
                await asyncio.wait({talk.outcome}, timeout=TRANSFER_SETTLE_S)
            if talk.outcome.done():
                requeued = talk.outcome.result()
                logger.info("call %s: agent %s transferred the caller", caller.call_id, agent_id)
                return requeued if requeued is not None else "transferred"
            side = "caller" if caller_ended in done else "agent"
            cause = None
            if caller_ended in done and caller_ended.exception() is None:
                cause = caller_ended.result()
            if self.stopping or cause in ("shutdown", "rtp_timeout"):
                end = "rtp_timeout" if cause == "rtp_timeout" else "node_stopped"
                logger.info("call %s: %s, ending both legs", caller.call_id, end)
                return end
            logger.info("call %s: %s hung up, ending both legs", caller.call_id, side)
            return f"{side}_hangup"
        finally:
            talk.ended = True
            self._talks.pop(agent_call.call_id, None)
            agent_ended.cancel()
            mixer.close()
            # A no-op when the agent hung up or the page already ended the transferred leg.
            await agent_call.hangup("transferred" if talk.outcome.done() else "caller hung up")
            await agent_leg.close()
            if requeued is None:
                await caller.hangup()
            if not waiting.remote_agent:
                await self._end_agent_call(agent_id, caller.call_id)

    async def _end_agent_call(self, agent_id: str, call_id: str) -> None:
        presence = self.webrtc.agents.get(agent_id) if self.webrtc is not None else None
        # The page went to wrap-up as its call ended. An ACD record left available until the
        # mirror sets it away would take the next offer in between.
        page_wrap_up_s = 0.0
        if presence is not None and presence.state is WebAgentState.WRAP_UP:
            page_wrap_up_s = float(presence.wrap_up_s)
        async with self._lock(agent_id):
            try:
                await self.acd.hangup(agent_id, page_wrap_up_s)
            except Exception:
                logger.exception("call %s: ACD hangup failed", call_id)
            await self._sync_agent(agent_id)

    # -- transfers ------------------------------------------------------------

    async def transfer(self, agent_call_id: str, kind: TransferKind, target: str) -> None:
        """Blind-transfer the caller bridged to the agent's call `agent_call_id`.

        To a queue: the caller joins queue `target` again with its priority,
        priority reason and IVR result, and waits there as a new arrival
        (its wait restarts), hearing that queue's hold music. To a number
        (a dialable number or a SIP URI): a SIP caller gets REFER, and this
        returns once its side reports that the target answered. Either way
        the agent's bridge then ends, and the agent goes to wrap-up as after
        a hangup. Raise `TransferError` when the transfer is not done (no
        such bridge, unknown or full queue, invalid target, a browser caller
        to a number, REFER rejected or failed); the call then stays bridged
        unless it ended meanwhile.
        """
        talk = self._talks.get(agent_call_id)
        if talk is None and self.crossnode is not None and self.crossnode.bridges(agent_call_id):
            # The caller's leg is on another node, which does the transfer.
            await self.crossnode.transfer(agent_call_id, kind, target)
            return
        if talk is None or talk.ended:
            raise TransferError(
                ErrorCode.BAD_STATE, "the call is not bridged to a caller", field="call_id"
            )
        if talk.transferring:
            raise TransferError(
                ErrorCode.BAD_STATE,
                "a transfer of this call is already in progress",
                field="call_id",
            )
        call_id = talk.waiting.leg.call_id
        talk.transferring = True
        try:
            if kind is TransferKind.QUEUE:
                outcome: _Waiting | None = await self._requeue(talk, target)
            else:
                await self._refer(talk, target)
                outcome = None
        finally:
            talk.transferring = False
        self.counters.count(talk.waiting.ticket.queue, "transferred")
        if self.legs is not None:
            self.legs.transferred(
                call_id, target=target, target_kind=kind.value, agent_id=talk.agent_id
            )
        if talk.ended:
            # The caller hung up after the target answered but before this
            # coroutine resumed; the bridge has already ended.
            logger.info("call %s: transfer done after the bridge ended", call_id)
            return
        talk.outcome.set_result(outcome)

    async def _requeue(self, talk: _Talk, queue: str) -> _Waiting:
        """Put the bridged caller into `queue` and return its new `_Waiting`."""
        if queue not in self.acd.settings.queues:
            raise TransferError(ErrorCode.NOT_FOUND, f"queue '{queue}' not found", field="target")

        waiting = talk.waiting
        call_id = waiting.leg.call_id
        request = waiting.result.queue_request
        priority = request.priority if request is not None else 0
        reason = request.reason if request is not None else "priority"
        context = dict(request.attributes) if request is not None else {}
        if request is not None:
            context["language"] = request.language
        # The flow's required skills were chosen for the first queue, so they
        # stay behind; only the node skill keeps the caller on this node.
        skills = {self.node_skill: 1} if self.node_skill is not None else {}

        # An offer for the new entry must wait for the new `_Waiting` instead
        # of finding the answered old one, so its registration starts over.
        previous = self._registered.pop(call_id, None)
        registration = self._registration(call_id)
        try:
            ticket = await self.acd.enqueue(
                call_id, queue, priority, skills, context, reason=reason
            )
        except (KeyError, ValueError) as exc:
            logger.warning("call %s: transfer to queue %s failed: %s", call_id, queue, exc)
            self._restore_registration(call_id, registration, previous)
            raise TransferError(
                ErrorCode.BAD_STATE, f"queue '{queue}' did not take the caller", field="target"
            ) from None
        if not ticket.queued:
            self._restore_registration(call_id, registration, previous)
            raise TransferError(ErrorCode.OVERLOADED, f"queue '{queue}' is full", field="target")

        if talk.ended:
            await self._leave(call_id, "hangup")
            if not registration.done():
                registration.set_result(None)
            raise TransferError(
                ErrorCode.BAD_STATE, "the call ended before the transfer", field="call_id"
            )
        logger.info(
            "call %s: agent %s transferred the caller to queue %s", call_id, talk.agent_id, queue
        )
        requeued = _Waiting(waiting.leg, ticket, waiting.result, self.acd.clock.now())
        self._waiting[call_id] = requeued
        if not registration.done():
            registration.set_result(requeued)
        return requeued

    def _restore_registration(
        self,
        call_id: str,
        registration: asyncio.Future[_Waiting | None],
        previous: asyncio.Future[_Waiting | None] | None,
    ) -> None:
        if self._registered.get(call_id) is registration:
            del self._registered[call_id]
            if previous is not None:
                self._registered[call_id] = previous
        if not registration.done():
            registration.set_result(None)

    async def _refer(self, talk: _Talk, target: str) -> None:
        """Transfer the bridged caller to a number with the caller leg's own transfer (REFER)."""
        check_number_target(target, self.transfer_allow)
        leg = talk.waiting.leg
        if leg.transfer is None:
            raise TransferError(
                ErrorCode.BAD_STATE,
                "a browser caller cannot be transferred to a number; transfer it to a queue",
                field="target_kind",
            )
        logger.info(
            "call %s: agent %s transfers the caller to a number", leg.call_id, talk.agent_id
        )
        if await leg.transfer(target):
            return
        if talk.ended:
            raise TransferError(
                ErrorCode.BAD_STATE, "the call ended before the transfer", field="call_id"
            )
        raise TransferError(
            ErrorCode.BAD_STATE,
            "the transfer failed: the caller's phone rejected the REFER or could not "
            "reach the target",
            field="target",
        )

    # -- offers ---------------------------------------------------------------

    async def _dispatch_offers(self) -> None:
        async for offer in self.acd.offers():
            if offer.kind is OfferKind.CALLBACK:
                if self.callbacks is None:
                    # The reservation expires and the reaper returns the callback.
                    logger.warning("call %s: callbacks are off on this node", offer.call_id)
                    continue
                self._spawn(self.callbacks.serve(offer), f"callback-{offer.call_id}")
                continue
            self._spawn(self._ring(offer), f"ring-{offer.call_id}")

    async def _ring(self, offer: Offer) -> None:
        call_id_var.set(offer.call_id)
        if self.crossnode is not None and await self.crossnode.is_remote(offer):
            await self.crossnode.ring(offer)
            return
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
            priority_reason=request.shown_reason if request is not None else "",
            sentiment=tuple(
                min(1.0, max(-1.0, round(score, 2)))
                for score in waiting.result.sentiment[-MAX_SENTIMENT_TURNS:]
            ),
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
        """Mirror the agent's presence into the ACD; the caller holds the agent's lock."""
        await self._agent_mirror.sync(user)

    async def _agent_moved(self, user: str) -> None:
        async with self._lock(user):
            await self._agent_mirror.page_lost_agent(user)
