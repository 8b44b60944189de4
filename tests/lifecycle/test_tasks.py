"""Stopping background tasks that absorb a cancellation."""

from __future__ import annotations

import asyncio
import contextlib

from lifecycle.tasks import cancel_and_wait


async def absorbs_one_cancel(entered: asyncio.Event) -> None:
    """Swallow the first cancellation, then wait forever, as a mirror task did under redis-py."""
    entered.set()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.Event().wait()
    await asyncio.Event().wait()


async def absorbs_cancels_until(entered: asyncio.Event, released: asyncio.Event) -> None:
    entered.set()
    while not released.is_set():
        with contextlib.suppress(asyncio.CancelledError):
            await released.wait()


async def test_second_cancel_ends_absorbing_task() -> None:
    entered = asyncio.Event()
    task = asyncio.create_task(absorbs_one_cancel(entered))
    await entered.wait()
    left = await cancel_and_wait([task], 10.0)
    assert left == set()
    assert task.cancelled()


async def test_task_that_never_ends_is_returned() -> None:
    entered = asyncio.Event()
    released = asyncio.Event()
    stubborn = asyncio.create_task(absorbs_cancels_until(entered, released))
    await entered.wait()
    done = asyncio.create_task(asyncio.sleep(0))
    await done
    try:
        left = await cancel_and_wait([stubborn, done], 0.2)
        assert left == {stubborn}
        assert not stubborn.done()
    finally:
        released.set()
        await stubborn


async def test_failed_task_outcome_is_read() -> None:
    async def fail() -> None:
        raise ValueError("boom")

    task = asyncio.create_task(fail())
    with contextlib.suppress(ValueError):
        await asyncio.shield(task)
    assert await cancel_and_wait([task], 1.0) == set()
    assert isinstance(task.exception(), ValueError)
