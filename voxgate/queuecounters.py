"""Counts per queue of what happened to its callers, as `GET /api/queues` reports them."""

from __future__ import annotations

from collections.abc import Iterable

from acd.events import (
    AcdEvent,
    CallerAnswered,
    CallerJoined,
    CallerLeft,
    OfferReturned,
    PositionChanged,
)

# The counts of ACD events, and a node's counts, which add transfers (no ACD event).
ACD_COUNTS = ("joined", "announced", "returned", "answered", "abandoned", "left")
NODE_COUNTS = (*ACD_COUNTS, "transferred")


class QueueCounters:
    """Counts per queue, each queue starting with every name of `names` at 0.

    The configured `queues` are listed from the start, so a fresh node reports them at 0.
    A queue that only a flow names appears with its first count.
    """

    def __init__(self, names: tuple[str, ...], queues: Iterable[str] = ()) -> None:
        self.names = names
        self._counts: dict[str, dict[str, int]] = {
            queue: dict.fromkeys(names, 0) for queue in queues
        }

    def count(self, queue: str, name: str) -> None:
        counts = self._counts.setdefault(queue, dict.fromkeys(self.names, 0))
        counts[name] += 1

    def count_event(self, event: AcdEvent) -> None:
        """Count one ACD event: joined, answered, returned offer, abandoned or left, announced."""
        if isinstance(event, CallerJoined):
            self.count(event.queue, "joined")
        elif isinstance(event, CallerAnswered):
            self.count(event.queue, "answered")
        elif isinstance(event, OfferReturned):
            self.count(event.queue, "returned")
        elif isinstance(event, CallerLeft):
            self.count(event.queue, "abandoned" if event.abandoned else "left")
        elif isinstance(event, PositionChanged):
            self.count(event.queue, "announced")

    def snapshot(self) -> dict[str, dict[str, int]]:
        """Return a copy of the counts (queue -> name -> number)."""
        return {queue: dict(counts) for queue, counts in self._counts.items()}
