"""The endpoint's loop timer: past deadlines under uvloop, and early wakeups after a disarm."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import uvloop

from signaling.sip.endpoint import InboundCall, SipConfig, SipEndpoint


class RejectAll:
    async def on_invite(self, call: InboundCall) -> None:
        await call.reject(486)


def signal_wakeups(endpoint: SipEndpoint) -> Callable[[], asyncio.Event]:
    """Make the endpoint's loop timer set an event after each wakeup; return its getter."""
    woke = [asyncio.Event()]
    on_timer = endpoint._on_timer

    def on_timer_then_set() -> None:
        on_timer()
        woke[0].set()

    endpoint._on_timer = on_timer_then_set  # type: ignore[method-assign]

    def next_wakeup() -> asyncio.Event:
        woke[0] = asyncio.Event()
        return woke[0]

    return next_wakeup


def run_with_endpoint(scenario: Callable[[SipEndpoint], Awaitable[None]]) -> None:
    """Run `scenario` under uvloop on a started endpoint that rejects every call."""

    async def main() -> None:
        endpoint = SipEndpoint(SipConfig(host="127.0.0.1", port=0), RejectAll())
        await endpoint.start()
        try:
            await scenario(endpoint)
        finally:
            await endpoint.stop()

    uvloop.run(main())


def test_past_deadline_rearms_under_uvloop() -> None:
    async def scenario(endpoint: SipEndpoint) -> None:
        loop = asyncio.get_running_loop()
        core = endpoint.core
        next_wakeup = signal_wakeups(endpoint)
        past = loop.time() - 1.0
        # A timer kind the core does not know fires without any effect.
        core._arm("test", "owner", "first", past)
        endpoint._pump()
        endpoint._pump()
        assert endpoint._timer is not None
        assert endpoint._timer_deadline == past

        core._arm("test", "owner", "second", past - 0.5)
        endpoint._pump()
        assert endpoint._timer is not None
        assert endpoint._timer_deadline == past - 0.5

        async with asyncio.timeout(5.0):
            await next_wakeup().wait()
        assert endpoint._timer is None
        assert core.next_deadline() is None

    run_with_endpoint(scenario)


def test_disarmed_deadline_wakes_early_and_rearms() -> None:
    async def scenario(endpoint: SipEndpoint) -> None:
        loop = asyncio.get_running_loop()
        core = endpoint.core
        next_wakeup = signal_wakeups(endpoint)
        first = loop.time() + 0.05
        later = first + 60.0
        core._arm("test", "owner", "first", first)
        core._arm("test", "owner", "later", later)
        endpoint._pump()
        assert endpoint._timer_deadline == first

        core._disarm("test", "owner", "first")
        endpoint._pump()
        # The loop's timer stays at the disarmed deadline until it fires.
        assert endpoint._timer_deadline == first

        async with asyncio.timeout(5.0):
            await next_wakeup().wait()
        assert endpoint._timer_deadline == later
        assert endpoint._timer is not None
        assert core.next_deadline() == later

    run_with_endpoint(scenario)
