"""A helper that ends a component's background tasks when the node stops."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

# How long a stopping component waits for its tasks.
STOP_TIMEOUT_S = 5.0
# How long one cancellation may go unanswered before the task is cancelled again.
RECANCEL_EVERY_S = 0.5


async def cancel_and_wait(
    tasks: Iterable[asyncio.Task[Any]], timeout_s: float
) -> set[asyncio.Task[Any]]:
    """Cancel `tasks`, wait up to `timeout_s` for them to end, and return those still running.

    A task that absorbed its cancellation is cancelled again every `RECANCEL_EVERY_S`.
    With redis-py 8.2, a task cancelled while a command completed went on to its next
    `await` and waited there, so one `cancel()` and an unbounded `gather` hung a stop.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    started = list(tasks)
    pending = {task for task in started if not task.done()}
    finished = {task for task in started if task.done()}
    while pending:
        for task in pending:
            task.cancel()
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        done, pending = await asyncio.wait(pending, timeout=min(RECANCEL_EVERY_S, remaining))
        finished |= done
    for task in finished:
        if not task.cancelled():
            # Mark the outcome as read: the task's own done callback reports failures.
            task.exception()
    return pending
