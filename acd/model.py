"""Plain data of the ACD: settings, queue entries, agents, offers and answers to callers.

Times are seconds on the ACD clock (`acd.clock`). Queue order uses an integer sort key in
microseconds (`Entry.key`): lower keys are served first, ties go to the lower entry id. Both
stores keep exactly this order, so the in-memory and the Redis store agree position by position.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

MICROS = 1_000_000
REASON_PATTERN = re.compile(r"^[a-z0-9_.-]{1,32}$")


def time_key(seconds: float) -> int:
    """Convert a time in seconds to a sort key in microseconds."""
    return round(seconds * MICROS)


def check_reason(reason: str) -> str:
    """Return `reason` if it is a short token safe to log, else raise ValueError.

    Reasons (jump reasons, away reasons, leave reasons) appear in logs and events, so they must
    never carry caller data: only lowercase letters, digits, `_`, `.` and `-`, at most 32.
    """
    if not REASON_PATTERN.match(reason):
        raise ValueError(
            f"invalid reason {reason!r}: use 1-32 characters of a-z, 0-9, '_', '.', '-'"
        )
    return reason


class Strategy(enum.Enum):
    """Rule a queue uses to choose among the free agents that can take its next caller."""

    LONGEST_IDLE = "longest_idle"
    ROUND_ROBIN = "round_robin"
    FEWEST_CALLS = "fewest_calls"
    SKILLS_WEIGHTED = "skills_weighted"

    @classmethod
    def parse(cls, text: str) -> Strategy:
        aliases = {"rrmemory": "round_robin", "leastrecent": "longest_idle"}
        name = aliases.get(text, text)
        try:
            return cls(name)
        except ValueError:
            known = ", ".join(s.value for s in cls)
            raise ValueError(f"unknown strategy {text!r}: expected one of {known}") from None


class CrossQueueRule(enum.Enum):
    """Rule an agent serving several queues uses to pick the queue to serve next.

    Both rules compare only the first servable caller of each queue, so a caller inserted at
    position 1 can never make every queue look empty.
    """

    PRIORITY_FIRST = "priority_first"
    LONGEST_WAITING_HEAD = "longest_waiting_head_caller"

    @classmethod
    def parse(cls, text: str) -> CrossQueueRule:
        try:
            return cls(text)
        except ValueError:
            known = ", ".join(r.value for r in cls)
            raise ValueError(
                f"unknown cross-queue rule {text!r}: expected one of {known}"
            ) from None


@dataclass(frozen=True, slots=True)
class JumpSettings:
    """Bounds on priority queue-jumping.

    A caller with priority p is sorted as if it had joined `min(p * credit_per_priority_s,
    max_jump_s)` seconds earlier. So a caller is never passed by anyone who joined more than
    `max_jump_s` after it, and once it has been passed `max_passes` times nobody can pass it.
    """

    credit_per_priority_s: float = 120.0
    max_jump_s: float = 1800.0
    max_passes: int = 10

    def credit_s(self, priority: int) -> float:
        """Return the time credit of `priority` in seconds (0 for priority <= 0)."""
        return min(max(priority, 0) * self.credit_per_priority_s, self.max_jump_s)


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """One queue's routing and caller-experience settings (times in seconds)."""

    name: str
    strategy: Strategy = Strategy.LONGEST_IDLE
    weight: int = 0
    ring_timeout_s: float = 15.0
    callback_timeout_s: float = 60.0
    max_wait_s: float | None = None
    max_length: int | None = None
    overflow_target: str | None = None
    wrap_up_s: float = 0.0
    announce_first_s: float | None = 30.0
    announce_every_s: float | None = 60.0
    service_level_s: float = 20.0
    default_handle_time_s: float = 180.0
    abandoned_resume_window_s: float = 0.0


@dataclass(frozen=True, slots=True)
class AcdSettings:
    """Settings shared by every queue of one ACD (the lead maps server settings onto these)."""

    queues: Mapping[str, QueueSettings] = field(default_factory=dict)
    jump: JumpSettings = field(default_factory=JumpSettings)
    cross_queue_rule: CrossQueueRule = CrossQueueRule.PRIORITY_FIRST
    away_after_missed: int = 2
    node_ttl_s: float = 10.0
    heartbeat_every_s: float = 2.0
    poll_every_s: float = 0.5

    def queue(self, name: str) -> QueueSettings:
        """Return the settings of queue `name`, or raise KeyError naming the queue."""
        try:
            return self.queues[name]
        except KeyError:
            raise KeyError(f"unknown queue {name!r}") from None


class EntryStatus(enum.Enum):
    """Life-cycle state of a queue entry."""

    WAITING = "waiting"
    OFFERED = "offered"
    BRIDGED = "bridged"
    LEFT = "left"


class OfferKind(enum.Enum):
    CALL = "call"
    CALLBACK = "callback"


@dataclass(slots=True)
class Entry:
    """One caller in one queue.

    `key` is the sort key (see the module docstring). `passes` counts the callers that were
    placed ahead of this one although they joined later (the jump bound); `overtaken` counts
    every caller placed ahead of it by a jump or priority change (for announcements).
    `owner_node` is the node holding the caller's leg; None for a callback, which has no leg
    while it waits.
    """

    entry_id: str
    call_id: str
    queue: str
    priority: int
    joined_at: float
    key: int
    skills: dict[str, int] = field(default_factory=dict)
    context: dict[str, str] = field(default_factory=dict)
    status: EntryStatus = EntryStatus.WAITING
    passes: int = 0
    owner_node: str | None = None
    callback: bool = False
    agent_id: str | None = None
    lease_until: float | None = None
    missed_by: list[str] = field(default_factory=list)
    overtaken: int = 0
    announced_position: int = 0
    announced_overtaken: int = 0

    def sort_key(self) -> tuple[int, str]:
        return (self.key, self.entry_id)


class AgentState(enum.Enum):
    LOGGED_OUT = "logged_out"
    AVAILABLE = "available"
    OFFERED = "offered"
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"
    AWAY = "away"


@dataclass(slots=True)
class Agent:
    """One logged-in agent as the stores keep it.

    `idle_since` is when the agent last became free (login, end of wrap-up); `missed_in_row`
    counts consecutive missed offers and resets on an answer.
    """

    agent_id: str
    node_id: str
    queues: tuple[str, ...]
    skills: dict[str, int] = field(default_factory=dict)
    state: AgentState = AgentState.AVAILABLE
    away_reason: str = ""
    idle_since: float = 0.0
    wrap_until: float = 0.0
    calls: int = 0
    missed_offers: int = 0
    missed_in_row: int = 0
    entry_id: str | None = None
    call_queue: str | None = None
    call_started: float = 0.0

    def is_free(self, now: float) -> bool:
        """Return True when the agent may get an offer now (available, or wrap-up is over)."""
        if self.state is AgentState.AVAILABLE:
            return True
        return self.state is AgentState.WRAP_UP and self.wrap_until <= now

    def can_serve(self, entry: Entry) -> bool:
        """Return True when the agent serves the entry's queue with every skill it requires."""
        if entry.queue not in self.queues:
            return False
        return all(self.skills.get(name, 0) >= level for name, level in entry.skills.items())


@dataclass(frozen=True, slots=True)
class Offer:
    """A caller reserved for one agent until `lease_until`.

    For `OfferKind.CALLBACK` the caller is not on the line: the lead places the outbound call
    and then calls `Acd.answer_offer` as for a normal offer.
    """

    entry_id: str
    call_id: str
    queue: str
    agent_id: str
    node_id: str
    kind: OfferKind
    offered_at: float
    lease_until: float
    context: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class PositionInfo:
    """What a waiting caller can be told.

    `jumped_ahead` is the number of callers placed ahead since the last announcement: the only
    reason `position` may be larger than the position announced before.
    """

    call_id: str
    queue: str
    position: int
    eta_s: float | None
    jumped_ahead: int = 0


@dataclass(frozen=True, slots=True)
class QueueTicket:
    """The result of `Acd.enqueue`: the new entry, or the overflow target when it was not queued."""

    call_id: str
    queue: str
    entry_id: str | None
    position: int | None
    eta_s: float | None
    overflow_target: str | None = None

    @property
    def queued(self) -> bool:
        return self.entry_id is not None
