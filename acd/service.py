"""The ACD facade that the IVR, the agent softphones and the wallboards call.

Theory of operation. One `Acd` runs per node. Callers are entries in a store shared by all
nodes (`acd.store`); the node that enqueued a caller owns it and runs its timers
(announcements, maximum wait). Each node dispatches only to the agents logged in on it: its
dispatcher plans matches with `acd.routing` and commits each with the store's atomic
`try_offer`, which puts a lease on the caller. The agent's answer is `claim_bridge`, which
succeeds once per entry, so a redelivered offer never connects a caller twice. Any node's
reaper returns expired leases (ring timeout, or the agent's node died) with the caller's
original position, and closes out callers and agents of nodes whose heartbeat stopped.

All timing comes from the injected clock. `step()` does one round of work (heartbeat, reaper,
due timers, dispatch), and tests and the simulator call it themselves on a virtual clock.
`start()` runs the same work in background tasks on the wall clock: a heartbeat task, and a
work loop that dispatches whenever the store reports a change and reaps and runs timers only
when one is due. While those run, `enqueue()` plans in the insert's own store call: when the
new caller is the only one waiting in the queues that this node's free agents serve, the
store makes the offer that `plan_offers` would make, in the same atomic step, so the offer
costs one round trip. Otherwise the insert returns the dispatch view and `enqueue()` plans
from it at once, without waiting for the wake-up. Dispatch rounds hold a lock, so no two of
them plan at once: an insert that may offer holds it, and an insert made while a round runs
only reads the view and plans after that round.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from acd import eta
from acd.agents import (
    BUSY,
    CHOOSABLE,
    CHOOSABLE_FROM,
    AgentBusyError,
    AgentStateError,
    check_transition,
    log_transition,
)
from acd.clock import Clock
from acd.events import (
    AgentStateChanged,
    CallbackRequested,
    CallerAnswered,
    CallerJoined,
    CallerJumped,
    CallerLeft,
    CallerOffered,
    EventBus,
    OfferReturned,
    PositionChanged,
)
from acd.model import (
    AcdSettings,
    Agent,
    AgentState,
    Entry,
    Offer,
    OfferKind,
    PositionInfo,
    QueueTicket,
    check_reason,
)
from acd.routing import Match, plan_offers
from acd.store.base import (
    AcdStore,
    DispatchView,
    DuplicateCall,
    Inserted,
    Offered,
    OfferRequest,
    OfferRule,
    QueueFull,
    ReapResult,
    Released,
)
from lifecycle.tasks import cancel_and_wait

log = logging.getLogger("queues")

ABANDON_REASONS = frozenset({"hangup", "node_lost"})
JOINS_FOR_MIX = 100
STAFFING_CACHE_S = 1.0
WAITING_WINDOW = 10
CLOSE_TIMEOUT_S = 5.0
ABANDONED_KEPT = 10_000


class NodeNameTaken(RuntimeError):
    """Another live node of the same store holds the node name this node claimed."""

    def __init__(self, name: str, holder: str, heartbeat_age_s: float) -> None:
        super().__init__(
            f"node name {name!r} is held by live node {holder} "
            f"(last heartbeat {heartbeat_age_s:.1f} s ago)"
        )
        self.name = name
        self.holder = holder
        self.heartbeat_age_s = heartbeat_age_s


@dataclass(order=True, slots=True)
class _Timer:
    due: float
    order: int
    kind: str
    target: str


class Acd:
    """Queues, agents and dispatch for one node.

    `node_id` must be unique per process start: a restarted node is a new node, and the
    reaper closes out the callers of the old one.
    """

    def __init__(
        self,
        store: AcdStore,
        clock: Clock,
        settings: AcdSettings,
        node_id: str | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.settings = settings
        self.node_id = node_id or f"node-{uuid.uuid4().hex[:12]}"
        self.events = EventBus()
        self._entry_numbers = itertools.count(1)
        self._timer_order = itertools.count()
        self._timers: list[_Timer] = []
        self._local: dict[str, str] = {}
        self._offers: asyncio.Queue[Offer] = asyncio.Queue()
        self._joins: dict[str, deque[bool]] = {}
        self._staffing: dict[str, tuple[float, eta.Staffing]] = {}
        self._handle_time: dict[str, tuple[float, float]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._abandoned: OrderedDict[str, tuple[str, float, float]] = OrderedDict()
        self._resume_keys: dict[str, str] = {}
        self._closing = False
        self._upkeep_at = -math.inf
        self._name: str | None = None
        self._dispatching = asyncio.Lock()

    # --- callers ---

    async def enqueue(
        self,
        call_id: str,
        queue: str,
        priority: int = 0,
        skills: Mapping[str, int] | None = None,
        context: Mapping[str, str] | None = None,
        *,
        reason: str = "priority",
        position: int | None = None,
        joined_at: float | None = None,
        resume_key: str | None = None,
        callback: bool = False,
    ) -> QueueTicket:
        """Queue a caller; `reason` (a short token such as `vip`) is logged with any jump.

        `position` asks for a 1-based place (still bounded by the jump settings). A caller who
        hung up in this queue less than `abandoned_resume_window_s` ago with the same
        `resume_key` (default: the call id; pass an opaque token such as a hash of the caller's
        number, never the number) gets its old join time back. With `callback` the entry is a
        callback from the start (no leg, no owner node, no announcements or maximum wait), as
        `request_callback` would make it, so no agent is ever offered it as a call. Returns a
        ticket without entry id and with the overflow target when the queue is full. Raises
        KeyError for an unknown queue and ValueError for a bad reason or duplicate call.
        """
        settings = self.settings.queue(queue)
        check_reason(reason)
        now = self.clock.now()
        resumed = self._abandoned.pop(resume_key or call_id, None)
        if resumed is not None and joined_at is None:
            old_queue, old_joined_at, left_at = resumed
            if old_queue == queue and now - left_at <= settings.abandoned_resume_window_s:
                joined_at = old_joined_at
                reason = "resumed"
                log.info("call %s: resumes its place in queue %s", call_id, queue)
        entry = Entry(
            entry_id=f"{self.node_id}.{next(self._entry_numbers):010d}",
            call_id=call_id,
            queue=queue,
            priority=priority,
            joined_at=now if joined_at is None else joined_at,
            key=0,
            skills=dict(skills or {}),
            context=dict(context or {}),
            owner_node=None if callback else self.node_id,
            callback=callback,
        )
        rule = OfferRule(settings.strategy, now + settings.ring_timeout_s)
        async with self._dispatch_lock_if_free(bool(self._tasks) and not callback) as holding:
            try:
                inserted, view, offered = await self._insert(
                    entry, position, now, rule if holding else None
                )
            except QueueFull:
                log.info(
                    "call %s: queue %s is full, overflow to %s",
                    call_id,
                    queue,
                    settings.overflow_target or "-",
                )
                return QueueTicket(call_id, queue, None, None, None, settings.overflow_target)
            except DuplicateCall as exc:
                raise ValueError(str(exc)) from None
            entry = inserted.entry
            self._report_join(inserted, reason, now, resume_key or call_id)
            if callback:
                return QueueTicket(call_id, queue, entry.entry_id, inserted.position, None)
            if settings.announce_first_s is not None:
                self._arm(entry.joined_at + settings.announce_first_s, "announce", entry.entry_id)
            if settings.max_wait_s is not None:
                self._arm(entry.joined_at + settings.max_wait_s, "max_wait", entry.entry_id)
            if offered is not None:
                self._deliver(offered.entry, offered.agent, now, rule.lease_until)
            elif holding and view.agents:
                await self._offer_view(view, now)
        if not holding and view.agents:
            # The insert's wake-up also runs the work loop's dispatch, which waits for this
            # round and then reads a fresh view, so an offer refused here is not lost.
            async with self._dispatching:
                await self._offer_view(view, now)
        info = await self._position_info(entry, inserted.position)
        return QueueTicket(call_id, queue, entry.entry_id, inserted.position, info.eta_s)

    @contextlib.asynccontextmanager
    async def _dispatch_lock_if_free(self, may_offer: bool) -> AsyncIterator[bool]:
        """Yield True with the dispatch lock held when `may_offer` is set and the lock is free,
        else yield False at once, without waiting for the lock."""
        if not may_offer or self._dispatching.locked():
            yield False
            return
        async with self._dispatching:
            yield True

    async def _insert(
        self, entry: Entry, position: int | None, now: float, rule: OfferRule | None
    ) -> tuple[Inserted, DispatchView, Offered | None]:
        """Store a new entry. With `rule`, which requires the dispatch lock, the store also
        offers the entry when that offer is the whole plan of the view. A started node gets
        the dispatch view of a non-callback entry with the insert."""
        jump = self.settings.jump
        max_length = self.settings.queue(entry.queue).max_length
        if rule is not None:
            return await self.store.add_entry_and_offer(
                entry, jump, position, max_length, self.node_id, now, WAITING_WINDOW, rule
            )
        if self._tasks and not entry.callback:
            inserted, view = await self.store.add_entry_and_view(
                entry, jump, position, max_length, self.node_id, now, WAITING_WINDOW
            )
            return inserted, view, None
        return await self.store.add_entry(entry, jump, position, max_length), DispatchView(), None

    def _report_join(self, inserted: Inserted, reason: str, now: float, resume_key: str) -> None:
        """Track, log and publish a new entry, and any jump it made."""
        entry = inserted.entry
        if not entry.callback:
            self._local[entry.entry_id] = entry.call_id
            self._resume_keys[entry.entry_id] = resume_key
        self._note_join(entry.queue, bool(inserted.overtaken))
        log.info(
            "call %s: joined queue %s at position %d (priority %d)",
            entry.call_id,
            entry.queue,
            inserted.position,
            entry.priority,
        )
        self.events.publish(
            CallerJoined(
                now, entry.call_id, entry.entry_id, entry.queue, entry.priority, inserted.position
            )
        )
        self._report_jump(inserted, reason, now)

    async def update_priority(self, call_id: str, priority: int, reason: str) -> PositionInfo:
        """Change a waiting caller's priority and re-sort it at once.

        Raises KeyError when the call is not queued.
        """
        check_reason(reason)
        entry_id = await self._entry_id(call_id)
        inserted = await self.store.reprioritize(entry_id, priority, self.settings.jump)
        if inserted is None:
            raise KeyError(f"call {call_id} is not queued")
        log.info(
            "call %s: priority %d (%s), position %d", call_id, priority, reason, inserted.position
        )
        self._report_jump(inserted, reason, self.clock.now())
        return await self._position_info(inserted.entry, inserted.position)

    async def leave(self, call_id: str, reason: str = "hangup") -> bool:
        """Take a caller out of its queue (`hangup` counts as abandoned). Returns False when
        the call was not waiting or offered."""
        check_reason(reason)
        entry_id = await self.store.entry_id_for_call(call_id)
        if entry_id is None:
            return False
        return await self._remove(entry_id, reason, None)

    async def position(self, call_id: str) -> PositionInfo:
        """Return the caller's position and expected wait. Raises KeyError when not queued."""
        entry, position = await self._entry_and_position(call_id)
        return await self._position_info(entry, position)

    async def announce(self, call_id: str) -> PositionInfo:
        """Compute the position to announce now, record it, and publish PositionChanged."""
        entry, position = await self._entry_and_position(call_id)
        info = await self._position_info(entry, position)
        await self.store.mark_announced(entry.entry_id, position, entry.overtaken)
        if position > entry.announced_position > 0 and info.jumped_ahead == 0:
            log.warning(
                "call %s: position went from %d to %d without a jump",
                call_id,
                entry.announced_position,
                position,
            )
        self.events.publish(
            PositionChanged(
                self.clock.now(), call_id, entry.queue, position, info.eta_s, info.jumped_ahead
            )
        )
        return info

    async def request_callback(self, call_id: str, context: Mapping[str, str]) -> PositionInfo:
        """Keep the caller's place while it hangs up; at the head an agent is reserved and
        CallbackRequested is published. `context` (such as the number to call) goes only to
        the agent's node. Raises KeyError when the call is not waiting."""
        entry_id = await self._entry_id(call_id)
        entry = await self.store.set_callback(entry_id, context)
        if entry is None:
            raise KeyError(f"call {call_id} is not waiting")
        self._forget(entry_id)
        log.info("call %s: callback requested in queue %s", call_id, entry.queue)
        position = await self.store.position(entry_id) or 1
        return await self._position_info(entry, position)

    # --- agents ---

    async def login(
        self,
        agent_id: str,
        queues: tuple[str, ...] | list[str],
        skills: Mapping[str, int] | None = None,
        state: AgentState = AgentState.AVAILABLE,
        reason: str = "",
    ) -> Agent:
        """Log an agent in on this node, serving `queues` with `skills` (name -> level).

        A record of the same agent on any node is replaced, so the agent moves here, unless
        that record has an offer or a call. Then nothing changes and AgentBusyError is raised.
        """
        for queue in queues:
            self.settings.queue(queue)
        if state not in CHOOSABLE:
            raise AgentStateError(f"agent {agent_id}: cannot log in as {state.value}")
        if reason:
            check_reason(reason)
        now = self.clock.now()
        agent = Agent(
            agent_id=agent_id,
            node_id=self.node_id,
            queues=tuple(queues),
            skills=dict(skills or {}),
            state=state,
            away_reason=reason if state is AgentState.AWAY else "",
            idle_since=now,
        )
        busy_record = await self.store.put_agent(agent, BUSY)
        if busy_record is not None:
            raise AgentBusyError(agent_id, busy_record.node_id, busy_record.state)
        self._agent_changed(agent_id, AgentState.LOGGED_OUT, state, reason or "login")
        return agent

    async def logout(self, agent_id: str) -> bool:
        outcome = await self.store.remove_agent(agent_id, self.clock.now())
        if outcome is None:
            return False
        agent, released = outcome
        if released is not None:
            self._report_release(released, "logout")
        self._agent_changed(agent_id, agent.state, AgentState.LOGGED_OUT, "logout")
        return True

    async def set_state(self, agent_id: str, state: AgentState, reason: str = "") -> Agent:
        """Set an agent AVAILABLE or AWAY (with a reason token) by the agent's own choice."""
        if reason:
            check_reason(reason)
        current = await self.store.get_agent(agent_id)
        if current is None:
            raise KeyError(f"agent {agent_id} is not logged in")
        if state not in CHOOSABLE or current.state not in CHOOSABLE_FROM:
            raise AgentStateError(
                f"agent {agent_id}: cannot choose {state.value} while {current.state.value}"
            )
        changes: dict[str, object] = {"state": state, "away_reason": reason}
        if state is AgentState.AVAILABLE and current.state is not AgentState.AVAILABLE:
            changes["idle_since"] = self.clock.now()
        if state is AgentState.AVAILABLE:
            changes["missed_in_row"] = 0
        updated = await self.store.update_agent(agent_id, CHOOSABLE_FROM, changes)
        if updated is None:
            raise AgentStateError(f"agent {agent_id}: state changed, try again")
        self._agent_changed(agent_id, current.state, state, reason)
        return updated

    async def answer_offer(self, agent_id: str, entry_id: str) -> bool:
        """Connect the offered caller to the agent; True only for the first successful claim."""
        now = self.clock.now()
        entry = await self.store.claim_bridge(entry_id, agent_id, now)
        if entry is None:
            log.info(
                "agent %s: answer for entry %s rejected (not offered to this agent)",
                agent_id,
                entry_id,
            )
            return False
        self._forget(entry_id)
        waited = now - entry.joined_at
        log.info("call %s: answered by agent %s after %.1f s", entry.call_id, agent_id, waited)
        within = waited <= self.settings.queue(entry.queue).service_level_s
        self.events.publish(
            CallerAnswered(now, entry.call_id, entry_id, entry.queue, agent_id, waited, within)
        )
        self._agent_changed(agent_id, AgentState.OFFERED, AgentState.ON_CALL, "answer")
        return True

    async def decline_offer(self, agent_id: str, entry_id: str) -> bool:
        """Return an offered caller to its place; the decline counts as a missed offer."""
        released = await self.store.release_offer(
            entry_id, agent_id, True, self.settings.away_after_missed
        )
        if released is None:
            return False
        self._report_release(released, "declined")
        return True

    async def hangup(self, agent_id: str, min_wrap_up_s: float = 0.0) -> Agent | None:
        """End the agent's call and start its queue's wrap-up time, at least `min_wrap_up_s`.

        A node whose agent page starts its own wrap-up passes that time, so the record never
        shows available between the hangup and the page's wrap-up reaching the ACD.
        """
        wrap_up_s = {
            name: max(queue.wrap_up_s, min_wrap_up_s)
            for name, queue in self.settings.queues.items()
        }
        agent = await self.store.end_call(agent_id, self.clock.now(), wrap_up_s)
        if agent is None:
            return None
        self._agent_changed(agent_id, AgentState.ON_CALL, agent.state, "hangup")
        if agent.state is AgentState.WRAP_UP:
            self._arm(agent.wrap_until, "wrap_up", agent_id)
        return agent

    # --- offers and events ---

    async def offers(self, node_id: str | None = None) -> AsyncIterator[Offer]:
        """Yield the offers (and callback reservations) made to this node's agents."""
        if node_id is not None and node_id != self.node_id:
            raise ValueError(f"this ACD runs node {self.node_id}, not {node_id}")
        while True:
            yield await self._offers.get()

    async def next_offer(self) -> Offer:
        """Wait for the next offer to this node's agents.

        Unlike leaving an `offers()` loop, cancelling this (say, in `asyncio.wait_for`) loses
        no offer.
        """
        return await self._offers.get()

    # --- the work loop ---

    async def step(self) -> None:
        """Do one round: heartbeat, reaper, due timers, dispatch."""
        now = self.clock.now()
        await self.store.heartbeat(self.node_id, now)
        await self._upkeep(now)
        await self.dispatch()

    async def _upkeep(self, now: float) -> None:
        """Reap expired leases and dead nodes, run due timers, and plan the next upkeep."""
        reaped = await self.store.reap(
            now, self.settings.node_ttl_s, self.settings.away_after_missed
        )
        self._report_reap(reaped)
        await self._run_timers(now)
        due = await self.next_due()
        self._upkeep_at = now + self.settings.poll_every_s
        if due is not None:
            self._upkeep_at = min(self._upkeep_at, due)

    async def next_due(self) -> float | None:
        """Return the clock time of the next timer or lease expiry, if any."""
        lease = await self.store.next_lease_expiry()
        timer = self._timers[0].due if self._timers else None
        dues = [due for due in (lease, timer) if due is not None]
        return min(dues) if dues else None

    def start(self) -> None:
        """Run `step()` and a heartbeat in background tasks until `close()`.

        The heartbeat has its own task so that a slow step never makes other nodes' reapers
        take this node for dead.
        """
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._run(), name=f"acd-{self.node_id}"),
                asyncio.create_task(self._beat(), name=f"acd-heartbeat-{self.node_id}"),
            ]

    async def claim_name(self, name: str) -> None:
        """Claim the node name `name` in the store and record this node's first heartbeat.

        Call it before `start()`. Raises NodeNameTaken while another node with a heartbeat
        younger than `node_ttl_s` holds the name. A holder that stopped cleanly released
        it, and one that crashed loses it once its heartbeat is that old.
        """
        now = self.clock.now()
        holder = await self.store.claim_name(name, self.node_id, now, self.settings.node_ttl_s)
        if holder is not None:
            holder_id, seen = holder
            raise NodeNameTaken(name, holder_id, max(now - seen, 0.0))
        self._name = name

    async def release_name(self) -> None:
        """Free the node name claimed by `claim_name`, so that a restart may claim it at once."""
        if self._name is not None:
            await self.store.release_name(self._name, self.node_id)
            self._name = None

    async def close(self) -> None:
        """Stop the background tasks (waiting at most `CLOSE_TIMEOUT_S` for them)."""
        self._closing = True
        # NOTE: with redis-py 8.2 on Python 3.11 a cancelled task was seen to keep running
        # after a pub/sub read, so the loops also check `_closing`, and `cancel_and_wait`
        # cancels again and stops waiting after CLOSE_TIMEOUT_S.
        pending = await cancel_and_wait(self._tasks, CLOSE_TIMEOUT_S)
        if pending:
            log.warning("node %s: %d ACD tasks did not stop", self.node_id, len(pending))
        self._tasks = []
        self._closing = False

    async def _beat(self) -> None:
        while not self._closing:
            try:
                await self.store.heartbeat(self.node_id, self.clock.now())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("node %s: heartbeat failed", self.node_id)
            await self.clock.sleep(self.settings.heartbeat_every_s)

    async def _run(self) -> None:
        """Dispatch on every store change, and reap and run timers only when one is due.

        The upkeep runs every `poll_every_s` and at the next known timer or lease expiry, so a
        wake-up costs one dispatch round (at most two store calls) and nothing else.
        """
        log.info("node %s: ACD started", self.node_id)
        while not self._closing:
            try:
                if self.clock.now() >= self._upkeep_at:
                    await self._upkeep(self.clock.now())
                await self.dispatch()
                await self.store.wait_changed(max(self._upkeep_at - self.clock.now(), 0.0))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("node %s: ACD step failed", self.node_id)
                await self.clock.sleep(self.settings.poll_every_s)

    async def dispatch(self) -> int:
        """Offer waiting callers to this node's free agents; return the number of offers.

        Each round is two store calls: one view of free agents and waiting callers, and one
        batch of atomic offers. A round with a refused offer (the caller or agent changed in
        between) is planned again, at most three rounds per call.
        """
        made = 0
        for _ in range(3):
            async with self._dispatching:
                now = self.clock.now()
                # NOTE: only the first `free + WAITING_WINDOW` waiting callers per queue are
                # considered, so a caller behind more skill mismatches than that waits a round.
                view = await self.store.dispatch_view(self.node_id, now, WAITING_WINDOW)
                offered, refused = await self._offer_view(view, now)
            made += offered
            if refused == 0:
                return made
        return made

    async def _offer_view(self, view: DispatchView, now: float) -> tuple[int, int]:
        """Plan offers from `view` and commit them; return (offers made, offers refused)."""
        if not view.agents:
            return 0, 0
        plan = plan_offers(view.agents, view.waiting, self.settings, view.cursors)
        if not plan.matches:
            return 0, 0
        requests = [
            OfferRequest(
                match.entry.entry_id, match.agent.agent_id, now + self._ring(match), self.node_id
            )
            for match in plan.matches
        ]
        results = await self.store.try_offers(requests, now)
        made = 0
        for match, request, offered in zip(plan.matches, requests, results, strict=True):
            if offered is not None:
                self._deliver(offered, match.agent, now, request.lease_until)
                made += 1
        if plan.round_robin_cursors:
            await self.store.set_cursors(plan.round_robin_cursors)
        return made, len(requests) - made

    def _ring(self, match: Match) -> float:
        """Return how long an offer of `match.entry` may ring before its lease expires."""
        settings = self.settings.queue(match.entry.queue)
        return settings.callback_timeout_s if match.entry.callback else settings.ring_timeout_s

    def _deliver(self, offered: Entry, agent: Agent, now: float, lease_until: float) -> None:
        """Publish a committed offer and hand it to `next_offer()`."""
        kind = OfferKind.CALLBACK if offered.callback else OfferKind.CALL
        offer = Offer(
            entry_id=offered.entry_id,
            call_id=offered.call_id,
            queue=offered.queue,
            agent_id=agent.agent_id,
            node_id=self.node_id,
            kind=kind,
            offered_at=now,
            lease_until=lease_until,
            context=dict(offered.context),
        )
        self._upkeep_at = min(self._upkeep_at, lease_until)
        self._agent_changed(agent.agent_id, agent.state, AgentState.OFFERED, kind.value)
        log.info("call %s: offered to agent %s (%s)", offered.call_id, agent.agent_id, kind.value)
        if kind is OfferKind.CALLBACK:
            self.events.publish(CallbackRequested(now, offer))
        else:
            self.events.publish(CallerOffered(now, offer))
        self._offers.put_nowait(offer)

    # --- timers ---

    def _arm(self, due: float, kind: str, target: str) -> None:
        heapq.heappush(self._timers, _Timer(due, next(self._timer_order), kind, target))
        self._upkeep_at = min(self._upkeep_at, due)

    async def _run_timers(self, now: float) -> None:
        while self._timers and self._timers[0].due <= now:
            timer = heapq.heappop(self._timers)
            if timer.kind == "wrap_up":
                await self._end_wrap_up(timer.target, now)
            elif timer.target not in self._local:
                continue
            elif timer.kind == "announce":
                await self._announce_timer(timer.target, timer.due)
            elif timer.kind == "max_wait":
                entry = await self.store.get_entry(timer.target)
                target = None
                if entry is not None:
                    target = self.settings.queue(entry.queue).overflow_target
                await self._remove(timer.target, "max_wait", target)

    async def _announce_timer(self, entry_id: str, due: float) -> None:
        entry = await self.store.get_entry(entry_id)
        if entry is None or entry.callback:
            return
        with contextlib.suppress(KeyError):
            await self.announce(entry.call_id)
        every = self.settings.queue(entry.queue).announce_every_s
        if every is not None:
            self._arm(due + every, "announce", entry_id)

    async def _end_wrap_up(self, agent_id: str, now: float) -> None:
        agent = await self.store.update_agent(
            agent_id,
            frozenset({AgentState.WRAP_UP}),
            {"state": AgentState.AVAILABLE, "idle_since": now},
        )
        if agent is not None:
            self._agent_changed(agent_id, AgentState.WRAP_UP, AgentState.AVAILABLE, "wrap_up_end")

    # --- helpers ---

    def _forget(self, entry_id: str) -> None:
        self._local.pop(entry_id, None)
        self._resume_keys.pop(entry_id, None)

    async def _entry_id(self, call_id: str) -> str:
        entry_id = await self.store.entry_id_for_call(call_id)
        if entry_id is None:
            raise KeyError(f"call {call_id} is not queued")
        return entry_id

    async def _entry_and_position(self, call_id: str) -> tuple[Entry, int]:
        entry_id = await self._entry_id(call_id)
        entry = await self.store.get_entry(entry_id)
        position = await self.store.position(entry_id)
        if entry is None or position is None:
            raise KeyError(f"call {call_id} is not queued")
        return entry, position

    async def _remove(self, entry_id: str, reason: str, overflow_target: str | None) -> bool:
        removed = await self.store.remove_entry(entry_id)
        if removed is None:
            return False
        self._local.pop(entry_id, None)
        resume_key = self._resume_keys.pop(entry_id, removed.entry.call_id)
        window = self.settings.queue(removed.entry.queue).abandoned_resume_window_s
        if reason == "hangup" and window > 0:
            entry = removed.entry
            self._abandoned[resume_key] = (entry.queue, entry.joined_at, self.clock.now())
            while len(self._abandoned) > ABANDONED_KEPT:
                self._abandoned.popitem(last=False)
        self._report_removed(removed.entry, reason, overflow_target)
        if removed.freed_agent is not None:
            agent_id = removed.freed_agent.agent_id
            self.events.publish(
                OfferReturned(
                    self.clock.now(),
                    removed.entry.call_id,
                    entry_id,
                    removed.entry.queue,
                    agent_id,
                    False,
                )
            )
            self._agent_changed(agent_id, AgentState.OFFERED, AgentState.AVAILABLE, "caller_left")
        return True

    def _report_removed(self, entry: Entry, reason: str, overflow_target: str | None) -> None:
        now = self.clock.now()
        waited = now - entry.joined_at
        abandoned = reason in ABANDON_REASONS
        log.info(
            "call %s: left queue %s after %.1f s (%s)", entry.call_id, entry.queue, waited, reason
        )
        self.events.publish(
            CallerLeft(
                now,
                entry.call_id,
                entry.entry_id,
                entry.queue,
                reason,
                waited,
                abandoned,
                overflow_target,
            )
        )

    def _report_release(self, released: Released, reason: str) -> None:
        entry = released.entry
        agent_id = entry.missed_by[-1] if entry.missed_by else ""
        if released.agent is not None:
            agent_id = released.agent.agent_id
        log.info("call %s: offer to agent %s returned (%s)", entry.call_id, agent_id, reason)
        self.events.publish(
            OfferReturned(
                self.clock.now(),
                entry.call_id,
                entry.entry_id,
                entry.queue,
                agent_id,
                reason != "logout",
            )
        )
        if released.agent is not None:
            self._agent_changed(agent_id, released.old_agent_state, released.agent.state, reason)

    def _report_reap(self, reaped: ReapResult) -> None:
        for released in reaped.returned:
            self._report_release(released, "ring_timeout")
        for removed in reaped.abandoned:
            self._forget(removed.entry.entry_id)
            self._report_removed(removed.entry, "node_lost", None)
        for agent in reaped.logged_out:
            self._agent_changed(agent.agent_id, agent.state, AgentState.LOGGED_OUT, "node_lost")

    def _report_jump(self, inserted: Inserted, reason: str, now: float) -> None:
        if not inserted.overtaken:
            return
        entry = inserted.entry
        log.info(
            "call %s: jumped %d callers in queue %s (%s)",
            entry.call_id,
            len(inserted.overtaken),
            entry.queue,
            reason,
        )
        self.events.publish(
            CallerJumped(
                now,
                entry.call_id,
                entry.queue,
                reason,
                len(inserted.overtaken),
                inserted.position,
            )
        )

    def _agent_changed(self, agent_id: str, old: AgentState, new: AgentState, reason: str) -> None:
        try:
            check_transition(agent_id, old, new, reason or "change")
        except AgentStateError:
            log.warning("agent %s: unexpected %s -> %s", agent_id, old.value, new.value)
        log_transition(agent_id, old, new, reason)
        self.events.publish(AgentStateChanged(self.clock.now(), agent_id, old, new, reason))

    def _note_join(self, queue: str, jumped: bool) -> None:
        self._joins.setdefault(queue, deque(maxlen=JOINS_FOR_MIX)).append(jumped)

    async def _staffing_for(self, queue: str) -> eta.Staffing:
        now = self.clock.now()
        cached = self._staffing.get(queue)
        if cached is not None and now - cached[0] < STAFFING_CACHE_S:
            return cached[1]
        serving = [agent for agent in await self.store.agents() if queue in agent.queues]
        staffing = eta.Staffing(
            staffed=sum(agent.state is not AgentState.AWAY for agent in serving),
            free=sum(agent.is_free(now) for agent in serving),
        )
        self._staffing[queue] = (now, staffing)
        return staffing

    async def _handle_time_for(self, queue: str, default_s: float) -> float:
        """Return the queue's mean handle time, read at most once per `STAFFING_CACHE_S`."""
        now = self.clock.now()
        cached = self._handle_time.get(queue)
        if cached is not None and now - cached[0] < STAFFING_CACHE_S:
            return cached[1]
        mean = eta.mean_handle_time(await self.store.handle_times(queue), default_s)
        self._handle_time[queue] = (now, mean)
        return mean

    async def _position_info(self, entry: Entry, position: int) -> PositionInfo:
        settings = self.settings.queue(entry.queue)
        staffing = await self._staffing_for(entry.queue)
        handle_time = await self._handle_time_for(entry.queue, settings.default_handle_time_s)
        joins = self._joins.get(entry.queue)
        share = sum(joins) / len(joins) if joins else 0.0
        jumpers = eta.expected_jumpers(
            position - 1, share, self.settings.jump.max_passes - entry.passes
        )
        wait = eta.estimate_wait(position, staffing, handle_time, jumpers)
        return PositionInfo(
            call_id=entry.call_id,
            queue=entry.queue,
            position=position,
            eta_s=None if wait is None else round(wait, 1),
            jumped_ahead=max(entry.overtaken - entry.announced_overtaken, 0),
        )
