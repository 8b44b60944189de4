"""ACD events for wallboards, CDRs and the call legs, and the bus that delivers them.

Events carry ids, queue names and reasons, never caller data: the IVR context of an entry is
only handed to the agent's node inside an `Offer`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from acd.model import AgentState, Offer

log = logging.getLogger("queues")


@dataclass(frozen=True, slots=True)
class CallerJoined:
    at: float
    call_id: str
    entry_id: str
    queue: str
    priority: int
    position: int


@dataclass(frozen=True, slots=True)
class PositionChanged:
    at: float
    call_id: str
    queue: str
    position: int
    eta_s: float | None
    jumped_ahead: int


@dataclass(frozen=True, slots=True)
class CallerJumped:
    """A caller was placed ahead of `passed` callers by its priority or a position request."""

    at: float
    call_id: str
    queue: str
    reason: str
    passed: int
    position: int


@dataclass(frozen=True, slots=True)
class CallerOffered:
    at: float
    offer: Offer


@dataclass(frozen=True, slots=True)
class CallerAnswered:
    """An agent answered; `within_service_level` is `waited_s <= service_level_s` of the queue."""

    at: float
    call_id: str
    entry_id: str
    queue: str
    agent_id: str
    waited_s: float
    within_service_level: bool


@dataclass(frozen=True, slots=True)
class CallerLeft:
    """A caller left the queue without an agent: `reason` is hangup, node_lost, max_wait..."""

    at: float
    call_id: str
    entry_id: str
    queue: str
    reason: str
    waited_s: float
    abandoned: bool
    overflow_target: str | None = None


@dataclass(frozen=True, slots=True)
class CallbackRequested:
    """An agent is reserved for a callback: place the outbound call, then answer the offer."""

    at: float
    offer: Offer


@dataclass(frozen=True, slots=True)
class OfferReturned:
    """An offer ended unanswered (declined, ring timeout, lost lease); the caller kept its place."""

    at: float
    call_id: str
    entry_id: str
    queue: str
    agent_id: str
    missed: bool


@dataclass(frozen=True, slots=True)
class AgentStateChanged:
    at: float
    agent_id: str
    old: AgentState
    new: AgentState
    reason: str = ""


AcdEvent = (
    CallerJoined
    | PositionChanged
    | CallerJumped
    | CallerOffered
    | CallerAnswered
    | CallerLeft
    | CallbackRequested
    | OfferReturned
    | AgentStateChanged
)


class EventBus:
    """Deliver events to listeners (called at once) and subscriptions (bounded queues).

    A subscription that falls behind by `maxsize` events loses the oldest ones; the loss is
    counted in `dropped` and logged once per subscription.
    """

    def __init__(self) -> None:
        self._listeners: list[Callable[[AcdEvent], None]] = []
        self._queues: list[asyncio.Queue[AcdEvent]] = []
        self.dropped = 0

    def listen(self, listener: Callable[[AcdEvent], None]) -> Callable[[], None]:
        """Call `listener` for every event; return a function that removes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    async def subscribe(self, maxsize: int = 1000) -> AsyncIterator[AcdEvent]:
        """Yield every event published after the first `__anext__` call."""
        queue: asyncio.Queue[AcdEvent] = asyncio.Queue(maxsize)
        self._queues.append(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._queues.remove(queue)

    def publish(self, event: AcdEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("event listener failed on %s", type(event).__name__)
        for queue in self._queues:
            if queue.full():
                queue.get_nowait()
                self.dropped += 1
                if self.dropped == 1:
                    log.warning("event subscriber is too slow, dropping oldest events")
            queue.put_nowait(event)
