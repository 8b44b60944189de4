"""Per-source token buckets for requests outside dialogs (overload protection).

Each source IP address gets a bucket of `burst` tokens refilled at `rate`
per second. The table holds at most `max_sources` addresses and forgets the
least recently seen one beyond that, so a flood from many addresses costs
bounded memory.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RateLimit:
    """`rate` requests per second per source, with bursts up to `burst`."""

    rate: float = 20.0
    burst: float = 40.0
    max_sources: int = 10_000


class SourceRateLimiter:
    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._last_refusal: dict[str, float] = {}

    def allow(self, source: str, now: float) -> bool:
        """Take one token for `source`; False when its bucket is empty."""
        tokens, updated = self._buckets.get(source, (self.limit.burst, now))
        tokens = min(self.limit.burst, tokens + (now - updated) * self.limit.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[source] = (tokens, now)
        self._buckets.move_to_end(source)
        while len(self._buckets) > self.limit.max_sources:
            evicted, _ = self._buckets.popitem(last=False)
            self._last_refusal.pop(evicted, None)
        return allowed

    def should_answer_refusal(self, source: str, now: float) -> bool:
        """Allow one 503 per source per second, so that a flood is not reflected."""
        last = self._last_refusal.get(source)
        if last is not None and now - last < 1.0:
            return False
        self._last_refusal[source] = now
        return True


class OverloadReport:
    """A rejection counter that reports the first rejection, then one per `interval_s`.

    Under overload a node may reject thousands of requests a second, and a
    log line for each would add to the load. After `count` returns True,
    `reported` is the number of rejections that the log line covers.
    """

    def __init__(self, interval_s: float = 10.0) -> None:
        self.interval_s = interval_s
        self.reported = 0
        self._pending = 0
        self._last_report: float | None = None

    def count(self, now: float) -> bool:
        """Count one rejection; True when the caller should log a report now."""
        self._pending += 1
        if self._last_report is not None and now - self._last_report < self.interval_s:
            return False
        self._last_report = now
        self.reported, self._pending = self._pending, 0
        return True
