"""A token bucket for signaling messages; pure, the caller passes the time."""

from __future__ import annotations


class TokenBucket:
    """Allows `burst` messages at once and `rate_per_s` on average."""

    def __init__(self, rate_per_s: float, burst: int, now: float) -> None:
        self._rate = rate_per_s
        self._burst = float(burst)
        self._tokens = float(burst)
        self._updated = now

    def allow(self, now: float) -> bool:
        """Take one token if there is one; False means the message is over the rate."""
        elapsed = max(0.0, now - self._updated)
        self._updated = now
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
