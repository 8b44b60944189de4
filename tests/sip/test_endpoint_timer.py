"""The endpoint's timer survives uvloop handing back a plain Handle for a past deadline."""

from __future__ import annotations

import asyncio

import uvloop

from signaling.sip.endpoint import InboundCall, SipConfig, SipEndpoint


class RejectAll:
    async def on_invite(self, call: InboundCall) -> None:
        await call.reject(486)


def test_past_deadline_rearms_under_uvloop() -> None:
    async def scenario() -> None:
        endpoint = SipEndpoint(SipConfig(host="127.0.0.1", port=0), RejectAll())
        await endpoint.start()
        try:
            loop = asyncio.get_running_loop()
            past = loop.time() - 1.0
            deadline: list[float | None] = [past]
            endpoint.core.next_deadline = lambda: deadline[0]  # type: ignore[method-assign]
            endpoint._pump()
            endpoint._pump()
            assert endpoint._timer is not None
            deadline[0] = past - 0.5
            endpoint._pump()
            assert endpoint._timer is not None
            deadline[0] = None
            endpoint._pump()
            assert endpoint._timer is None
        finally:
            await endpoint.stop()

    uvloop.run(scenario())
