"""`run_ivr`: the flow against the end of its leg, with no task left behind."""

from __future__ import annotations

import asyncio

import pytest

from ivr.engine import IvrSession, Outcome, SessionResult
from ivr.prompts import SilentSynthesizer
from ivr.textchannel import TextChannel
from tests.ivr.helpers import flow_from_text
from voxgate import calls
from voxgate.calls import run_ivr

HANGUP_FLOW = """
flow: hangs_up
language: en-US
steps:
  bye:
    type: hangup
"""

GATHER_FLOW = """
flow: waits_for_a_digit
language: en-US
steps:
  ask:
    type: gather
    dtmf: {max_digits: 1}
    timeout_s: 30
    retries: 0
    next: bye
    on: {no_input: bye, no_match: bye}
  bye:
    type: hangup
"""


class WaitingCaller:
    """A turn source for a caller who stays on the line without a word until `release`."""

    def __init__(self) -> None:
        self.asked = asyncio.Event()
        self._release = asyncio.Event()
        self.turn: str | None = None

    async def __call__(self) -> str | None:
        self.asked.set()
        await self._release.wait()
        return self.turn

    def release(self, turn: str | None) -> None:
        self.turn = turn
        self._release.set()


def session_for(flow_text: str, channel: TextChannel) -> IvrSession:
    return IvrSession(flow_from_text(flow_text), channel, SilentSynthesizer(), clock=channel.clock)


def other_tasks() -> set[asyncio.Task[object]]:
    return asyncio.all_tasks() - {asyncio.current_task()}


async def start_gather_flow() -> tuple[
    WaitingCaller, asyncio.Future[str], asyncio.Future[SessionResult | None]
]:
    """Start `run_ivr` on the gather flow and return once the flow waits for the caller."""
    caller = WaitingCaller()
    ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    running = asyncio.ensure_future(run_ivr(session_for(GATHER_FLOW, TextChannel(caller)), ended))
    await asyncio.wait_for(caller.asked.wait(), 5.0)
    return caller, ended, running


async def test_flow_end_returns_result() -> None:
    channel = TextChannel(WaitingCaller())
    ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    result = await asyncio.wait_for(run_ivr(session_for(HANGUP_FLOW, channel), ended), 5.0)

    assert result is not None
    assert result.outcome is Outcome.HANGUP
    assert channel.hung_up_by_us
    assert not ended.done()
    assert other_tasks() == set()


async def test_leg_end_waits_grace_then_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(calls, "FLOW_END_GRACE_S", 0.05)
    _, ended, running = await start_gather_flow()

    ended.set_result("bye")

    assert await asyncio.wait_for(running, 5.0) is None
    assert other_tasks() == set()
    assert ended.result() == "bye"


async def test_leg_end_keeps_late_flow_result() -> None:
    caller, ended, running = await start_gather_flow()

    # The leg ends first, and the flow returns within the grace time.
    ended.set_result("bye")
    caller.release("1")

    result = await asyncio.wait_for(running, 5.0)
    assert result is not None
    assert result.outcome is Outcome.HANGUP
    assert other_tasks() == set()


async def test_cancel_stops_flow_not_leg() -> None:
    _, ended, running = await start_gather_flow()

    running.cancel()

    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(running, 5.0)
    assert other_tasks() == set()
    assert not ended.done()


async def test_cancel_during_grace_stops_flow() -> None:
    _, ended, running = await start_gather_flow()
    ended.set_result("bye")
    # One loop iteration runs the done callback that arms the grace timer.
    await asyncio.sleep(0)

    running.cancel()

    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(running, 5.0)
    assert other_tasks() == set()


async def test_grace_expiry_leaves_task_uncancelled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(calls, "FLOW_END_GRACE_S", 0.05)
    caller = WaitingCaller()
    channel = TextChannel(caller)
    ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def run_and_count() -> tuple[object, int]:
        result = await run_ivr(session_for(GATHER_FLOW, channel), ended)
        task = asyncio.current_task()
        assert task is not None
        return result, task.cancelling()

    running = asyncio.ensure_future(run_and_count())
    await asyncio.wait_for(caller.asked.wait(), 5.0)

    ended.set_result("bye")

    result, cancelling = await asyncio.wait_for(running, 5.0)
    assert result is None
    assert cancelling == 0
