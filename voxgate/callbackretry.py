"""Schedules of pending callback retries, in the node's memory or in Redis.

After a failed attempt a callback goes back in its queue once `retry_interval_s`
has passed. Until then it is a `PendingRetry` in a `RetrySchedule`, which every
node's `CallbackService` polls. The Redis schedule keeps the retry in the shared
store (a sorted set `<prefix>cbretry` by due time and a hash of the retries), so
a retry survives the death of the node that scheduled it and any node places it.

A node takes a due retry with `claim`, which moves its due time `lease_s` ahead
in one atomic step, so no other node takes it meanwhile. The node then enqueues
the callback and calls `remove`. When the node dies between the two, the claim
expires and another node takes the retry. NOTE: a node that dies after the
enqueue but before `remove` leaves the retry to be placed again after the
lease. The second enqueue is rejected while the callback still waits in its
queue (duplicate call id), but after an agent has served it the retry is placed
a second time.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

logger = logging.getLogger("queues")

CLAIM_SCRIPT = r"""
-- KEYS: the sorted set of due times, the hash of retries. ARGV: now, lease expiry, limit.
-- Returns call id and JSON text of each claimed retry, after moving its due time to the lease
-- expiry.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
local out = {}
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], ARGV[2], id)
  local text = redis.call('HGET', KEYS[2], id)
  if text then
    table.insert(out, id)
    table.insert(out, text)
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
"""


@dataclass(frozen=True, slots=True)
class PendingRetry:
    """A callback between two attempts: what `Acd.enqueue` needs to put it back in line.

    `context` contains the number to call, which is caller data.
    """

    call_id: str
    queue: str
    priority: int
    joined_at: float
    skills: dict[str, int] = field(default_factory=dict)
    context: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> PendingRetry:
        """Decode `to_json` output; raises ValueError for anything else."""
        try:
            data = json.loads(text)
            return cls(
                call_id=str(data["call_id"]),
                queue=str(data["queue"]),
                priority=int(data["priority"]),
                joined_at=float(data["joined_at"]),
                skills={str(k): int(v) for k, v in dict(data["skills"]).items()},
                context={str(k): str(v) for k, v in dict(data["context"]).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"invalid pending callback retry: {exc}") from None


class RetrySchedule(Protocol):
    """Pending callback retries by due time, one per callback (its call id)."""

    # Seconds between two looks for retries that other nodes scheduled. None means never.
    poll_s: float | None

    async def add(self, retry: PendingRetry, due: float) -> None:
        """Schedule `retry` for `due`, replacing a pending retry of the same call id."""
        ...

    async def claim(self, now: float, lease_s: float, limit: int) -> list[PendingRetry]:
        """Return up to `limit` retries due by `now`, each moved `lease_s` ahead."""
        ...

    async def remove(self, call_id: str) -> None: ...

    async def next_due(self) -> float | None:
        """Return the earliest due time (claimed retries included), or None."""
        ...

    async def count(self) -> int: ...


class MemoryRetries:
    """A schedule in this node's memory: its retries end with the node."""

    poll_s: float | None = None

    def __init__(self) -> None:
        self._retries: dict[str, tuple[float, PendingRetry]] = {}

    async def add(self, retry: PendingRetry, due: float) -> None:
        self._retries[retry.call_id] = (due, retry)

    async def claim(self, now: float, lease_s: float, limit: int) -> list[PendingRetry]:
        due = sorted(
            (item for item in self._retries.values() if item[0] <= now), key=lambda item: item[0]
        )[:limit]
        for _, retry in due:
            self._retries[retry.call_id] = (now + lease_s, retry)
        return [retry for _, retry in due]

    async def remove(self, call_id: str) -> None:
        self._retries.pop(call_id, None)

    async def next_due(self) -> float | None:
        return min((due for due, _ in self._retries.values()), default=None)

    async def count(self) -> int:
        return len(self._retries)


class RedisRetries:
    """A schedule in Redis, shared by every node on the same key prefix."""

    poll_s: float | None = 1.0

    def __init__(self, client: Any, prefix: str) -> None:
        self._client = client
        self._due_key = f"{prefix}cbretry"
        self._data_key = f"{prefix}cbretry:data"
        self._claim = client.register_script(CLAIM_SCRIPT)

    async def add(self, retry: PendingRetry, due: float) -> None:
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hset(self._data_key, retry.call_id, retry.to_json())
            pipe.zadd(self._due_key, {retry.call_id: due})
            await pipe.execute()

    async def claim(self, now: float, lease_s: float, limit: int) -> list[PendingRetry]:
        flat = await self._claim(
            keys=[self._due_key, self._data_key], args=[repr(now), repr(now + lease_s), limit]
        )
        claimed = []
        for call_id, text in zip(flat[::2], flat[1::2], strict=True):
            try:
                claimed.append(PendingRetry.from_json(str(text)))
            except ValueError as exc:
                logger.warning("call %s: pending callback retry dropped: %s", call_id, exc)
                await self.remove(str(call_id))
        return claimed

    async def remove(self, call_id: str) -> None:
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.zrem(self._due_key, call_id)
            pipe.hdel(self._data_key, call_id)
            await pipe.execute()

    async def next_due(self) -> float | None:
        first = await self._client.zrange(self._due_key, 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    async def count(self) -> int:
        return int(await self._client.zcard(self._due_key))
