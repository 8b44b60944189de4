"""The contract every ACD store keeps (in-memory for one node, Redis for many).

Each method is atomic: no other node sees a half-done change. Methods that need a state take
it as an argument and return None when the entry or agent is not in that state, so a stale or
redelivered request is refused without side effects. Times are seconds on the caller's clock.

Entry life: WAITING -> OFFERED (`try_offer`, with a lease) -> BRIDGED (`claim_bridge`, once)
or back to WAITING with the same key (`release_offer`, `reap` of an expired lease). Any WAITING
or OFFERED entry can be removed (`remove_entry`, `reap` of a dead owner node).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from acd.model import Agent, AgentState, Entry, JumpSettings, Strategy


class QueueFull(Exception):
    """The queue already holds its maximum number of callers."""


class DuplicateCall(Exception):
    """The call is already waiting in a queue."""


@dataclass(frozen=True, slots=True)
class Inserted:
    """A caller placed in its queue: its stored entry and position, the ids of earlier callers
    it passed and the ids of every caller it went ahead of."""

    entry: Entry
    position: int
    passed: tuple[str, ...]
    overtaken: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Removed:
    """A caller taken out of its queue; `freed_agent` had an offer for it that was cancelled."""

    entry: Entry
    freed_agent: Agent | None


@dataclass(frozen=True, slots=True)
class Released:
    """An offer that ended unanswered: the caller back in place and the agent's new record."""

    entry: Entry
    agent: Agent | None
    old_agent_state: AgentState


@dataclass(frozen=True, slots=True)
class OfferRequest:
    """One planned offer for `try_offers`: reserve `entry_id` for `agent_id` until `lease_until`.

    With `node_id` the offer also needs the agent to be logged in on that node, so an agent that
    another node took over since the dispatch view was read is not offered.
    """

    entry_id: str
    agent_id: str
    lease_until: float
    node_id: str | None = None


@dataclass(frozen=True, slots=True)
class OfferRule:
    """How `add_entry_and_offer` may offer the new caller: the caller's queue's strategy and
    the lease expiry of the offer."""

    strategy: Strategy
    lease_until: float


@dataclass(frozen=True, slots=True)
class Offered:
    """An offer that the insert committed: the entry as offered, and the agent's record from
    just before the offer (so its state is AVAILABLE or WRAP_UP)."""

    entry: Entry
    agent: Agent


@dataclass(slots=True)
class DispatchView:
    """The input of one dispatch round: a node's free agents that serve a queue with waiting
    callers, the first waiting callers of each such queue (in queue order), and the
    round-robin cursors of those queues.

    Its records may be the same objects as in earlier views of the same store, so callers
    must not change them.
    """

    agents: list[Agent] = field(default_factory=list)
    waiting: dict[str, list[Entry]] = field(default_factory=dict)
    cursors: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class ReapResult:
    returned: list[Released] = field(default_factory=list)
    abandoned: list[Removed] = field(default_factory=list)
    logged_out: list[Agent] = field(default_factory=list)


class AcdStore(Protocol):
    # --- callers ---
    async def add_entry(
        self,
        entry: Entry,
        jump: JumpSettings,
        position: int | None = None,
        max_length: int | None = None,
    ) -> Inserted:
        """Insert a WAITING entry, computing its key from its priority, `joined_at` and
        `position` with the jump bounds of `acd.ordering`.

        Raises QueueFull when the queue holds `max_length` callers (waiting or offered) and
        DuplicateCall when the call id already has a waiting or offered entry.
        """
        ...

    async def add_entry_and_view(
        self,
        entry: Entry,
        jump: JumpSettings,
        position: int | None,
        max_length: int | None,
        node_id: str,
        now: float,
        extra: int,
    ) -> tuple[Inserted, DispatchView]:
        """Insert as `add_entry` does, then read `dispatch_view(node_id, now, extra)` in the
        same atomic step, so a node can offer the new caller without another round trip."""
        ...

    async def add_entry_and_offer(
        self,
        entry: Entry,
        jump: JumpSettings,
        position: int | None,
        max_length: int | None,
        node_id: str,
        now: float,
        extra: int,
        rule: OfferRule,
    ) -> tuple[Inserted, DispatchView, Offered | None]:
        """Insert as `add_entry_and_view` does, and offer the new caller in the same atomic
        step when the plan of its view is that one offer alone.

        That is the case when the new caller is the only waiting caller of every queue in
        `dispatch_view(node_id, now, extra)`. `acd.routing.plan_offers` would then offer it to
        the agent that `choose_agent(rule.strategy, ...)` picks among `eligible_agents` of
        the view, or to nobody when that list is empty. The store commits that offer as
        `try_offer` would, with `rule.lease_until`, moves the queue's round-robin cursor to
        the agent for `Strategy.ROUND_ROBIN`, and returns the offer with an empty view. When
        nobody can serve the caller it returns an empty view and no offer. In every other
        case it returns the view and no offer, and the caller plans from the view.
        """
        ...

    async def reprioritize(
        self, entry_id: str, priority: int, jump: JumpSettings
    ) -> Inserted | None:
        """Set a WAITING or OFFERED entry's priority and re-sort it at once."""
        ...

    async def remove_entry(self, entry_id: str) -> Removed | None:
        """Remove a WAITING or OFFERED entry; an offered one frees its agent (AVAILABLE)."""
        ...

    async def get_entry(self, entry_id: str) -> Entry | None: ...

    async def entry_id_for_call(self, call_id: str) -> str | None:
        """Return the id of the call's WAITING or OFFERED entry."""
        ...

    async def position(self, entry_id: str) -> int | None:
        """Return the 1-based position among WAITING and OFFERED entries of the queue."""
        ...

    async def queue_entries(self, queue: str, limit: int | None = None) -> list[Entry]:
        """Return WAITING and OFFERED entries in queue order."""
        ...

    async def waiting(self, queue: str, limit: int) -> list[Entry]:
        """Return the first `limit` WAITING entries in queue order."""
        ...

    async def queue_length(self, queue: str) -> int: ...

    async def mark_announced(self, entry_id: str, position: int, overtaken: int) -> None: ...

    async def set_callback(self, entry_id: str, context: Mapping[str, str]) -> Entry | None:
        """Turn a WAITING entry into a callback: it keeps its key and loses its owner node."""
        ...

    # --- agents ---
    async def put_agent(
        self, agent: Agent, keep: frozenset[AgentState] = frozenset()
    ) -> Agent | None:
        """Store a logged-in agent, replacing any record of the same id (on any node).

        A record whose state is in `keep` stays and is returned. None means `agent` was stored.
        """
        ...

    async def get_agent(self, agent_id: str) -> Agent | None: ...

    async def agents(self, node_id: str | None = None) -> list[Agent]:
        """Return the agents logged in on `node_id`, or on every node."""
        ...

    async def free_agents(self, node_id: str, now: float) -> list[Agent]:
        """Return the agents on `node_id` that may get an offer at `now` (`Agent.is_free`)."""
        ...

    async def dispatch_view(self, node_id: str, now: float, extra: int) -> DispatchView:
        """Read, as one consistent view, the free agents of `node_id` at `now` that serve a
        queue with waiting callers, the first `len(agents) + extra` WAITING entries of each
        such queue, and those queues' cursors.

        The view is empty (no agents, no queues) when nothing can be offered.
        """
        ...

    async def remove_agent(self, agent_id: str, now: float) -> tuple[Agent, Released | None] | None:
        """Log an agent out and return its last record (state before logout); an offer it
        held goes back to the queue."""
        ...

    async def update_agent(
        self, agent_id: str, expected: frozenset[AgentState], changes: Mapping[str, object]
    ) -> Agent | None:
        """Apply `changes` (Agent field names) if the agent's state is in `expected`."""
        ...

    # --- offers ---
    async def try_offer(
        self, entry_id: str, agent_id: str, now: float, lease_until: float
    ) -> Entry | None:
        """Reserve a WAITING entry for a free agent until `lease_until`."""
        ...

    async def try_offers(self, offers: Sequence[OfferRequest], now: float) -> list[Entry | None]:
        """Apply `try_offer` to each request in order; return one result per request.

        Each request succeeds or fails on its own, as separate `try_offer` calls would.
        """
        ...

    async def claim_bridge(self, entry_id: str, agent_id: str, now: float) -> Entry | None:
        """Mark an entry offered to `agent_id` as BRIDGED; succeeds once per entry."""
        ...

    async def release_offer(
        self, entry_id: str, agent_id: str, missed: bool, away_after: int
    ) -> Released | None:
        """Put an offered entry back with its key; the agent becomes AVAILABLE, or AWAY with
        reason `missed_offers` after `away_after` missed offers in a row (0: never)."""
        ...

    async def finish_call(self, agent_id: str, now: float, wrap_up_s: float) -> Agent | None:
        """End an agent's call: WRAP_UP until `now + wrap_up_s`, or AVAILABLE when 0."""
        ...

    async def end_call(
        self, agent_id: str, now: float, wrap_up_s: Mapping[str, float]
    ) -> Agent | None:
        """End an ON_CALL agent's call in one atomic step: `finish_call` with the wrap-up time
        of the call's queue in `wrap_up_s` (0 for a queue not in it), and `record_handle_time`
        of `now` minus the call's start for that queue."""
        ...

    async def reap(self, now: float, node_ttl_s: float, away_after: int) -> ReapResult:
        """Return expired leases to their queues and close out dead nodes: their callers are
        removed (abandoned) and their agents logged out."""
        ...

    async def next_lease_expiry(self) -> float | None: ...

    # --- nodes, statistics, wake-ups ---
    async def heartbeat(self, node_id: str, now: float) -> None: ...

    async def forget_node(self, node_id: str) -> bool:
        """Drop the heartbeat and keys of a cleanly stopped node that left no entry or agent."""
        ...

    async def claim_name(
        self, name: str, node_id: str, now: float, node_ttl_s: float
    ) -> tuple[str, float] | None:
        """Make `node_id` the holder of the node name `name` and record its first heartbeat.

        The check and the claim are one atomic step. A holder whose heartbeat is older than
        `node_ttl_s` is dead, so the name passes to `node_id`. Returns None when claimed,
        else the live holder's node id and the time of its last heartbeat.
        """
        ...

    async def release_name(self, name: str, node_id: str) -> None:
        """Free the node name `name` if `node_id` holds it (a clean stop)."""
        ...

    async def record_handle_time(self, queue: str, seconds: float) -> None: ...

    async def handle_times(self, queue: str) -> list[float]: ...

    async def cursors(self, queues: Sequence[str]) -> dict[str, str]: ...

    async def set_cursors(self, cursors: Mapping[str, str]) -> None: ...

    async def wait_changed(self, max_wait_s: float) -> None:
        """Return when callers or agents changed anywhere, or after `max_wait_s` wall seconds."""
        ...

    async def close(self) -> None: ...


HANDLE_TIMES_KEPT = 50
