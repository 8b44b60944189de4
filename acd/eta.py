"""Expected wait of a queued caller, without I/O.

The estimate treats the staffed agents as servers with the queue's recent mean handle time:
callers ahead of this one (plus the jumpers expected to still pass it) are served at
`staffed / handle_time` callers per second, free agents take callers at once, and the caller
at the head waits on average half a handle time per agent for the next agent to finish. It is
an estimate for announcements, not a promise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Staffing:
    """Agents serving a queue: logged in and not away (`staffed`) and free right now."""

    staffed: int
    free: int


def mean_handle_time(recent: Sequence[float], default_s: float) -> float:
    """Return the mean of the recent handle times, or `default_s` when there are none."""
    return sum(recent) / len(recent) if recent else default_s


def expected_jumpers(ahead: int, jumper_share: float, passes_left: int) -> float:
    """Return how many more callers are expected to pass this one.

    `jumper_share` is the recent share of joining callers that jumped ahead of someone; the
    pass limit caps the number at `passes_left`.
    """
    return min(float(max(passes_left, 0)), jumper_share * ahead)


def estimate_wait(
    position: int, staffing: Staffing, handle_time_s: float, jumpers: float
) -> float | None:
    """Return the expected wait in seconds of the caller at `position` (1-based), or None
    when no agent is staffed and no estimate is possible."""
    to_serve_first = position - 1 + jumpers
    if staffing.free > to_serve_first:
        return 0.0
    if staffing.staffed <= 0:
        return None
    queued_work = to_serve_first - staffing.free + 0.5
    return max(0.0, queued_work * handle_time_s / staffing.staffed)
