"""Outbound calls between two SipEndpoints on loopback, and the UAC core on a virtual clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from signaling.sip.auth import AuthConfig
from signaling.sip.endpoint import SipConfig, SipEndpoint
from signaling.sip.errors import CallEnded, SipUsageError
from signaling.sip.transaction import TimerConfig
from tests.sip.support import (
    ANSWER_SDP,
    OFFER_SDP,
    ScriptedHandler,
    UdpPeer,
    open_udp_peer,
)


async def started(handler: ScriptedHandler, **settings: object) -> SipEndpoint:
    endpoint = SipEndpoint(SipConfig(port=0, **settings), handler)  # type: ignore[arg-type]
    await endpoint.start()
    return endpoint


@pytest.fixture
async def callee() -> AsyncIterator[tuple[SipEndpoint, ScriptedHandler]]:
    handler = ScriptedHandler()
    endpoint = await started(handler)
    yield endpoint, handler
    await endpoint.stop()


@pytest.fixture
async def caller() -> AsyncIterator[SipEndpoint]:
    endpoint = await started(ScriptedHandler())
    yield endpoint
    await endpoint.stop()


async def test_call_answered_and_hung_up_by_caller(
    caller: SipEndpoint, callee: tuple[SipEndpoint, ScriptedHandler]
) -> None:
    endpoint, handler = callee
    call = await caller.place_call(
        f"sip:15550100000@127.0.0.1:{endpoint.port}",
        sdp_offer=OFFER_SDP,
        from_user="15550100001",
        headers={"X-Queue": "sales"},
        timeout_s=10,
    )

    answer = await asyncio.wait_for(call.wait_answered(), 10)
    inbound = await asyncio.wait_for(handler.calls.get(), 5)
    await call.hangup()

    assert answer == ANSWER_SDP
    assert inbound.remote_sdp == OFFER_SDP
    assert inbound.caller == "15550100001"
    assert inbound.called == "15550100000"
    assert await asyncio.wait_for(handler.reasons.get(), 5) == "bye"
    assert await call.wait_ended() == "hangup"
    assert caller.core.calls == {}


async def test_callee_hangup_ends_outbound_call(
    caller: SipEndpoint, callee: tuple[SipEndpoint, ScriptedHandler]
) -> None:
    endpoint, handler = callee
    handler.mode = "hangup"
    call = await caller.place_call(
        f"sip:100@127.0.0.1:{endpoint.port}", sdp_offer=OFFER_SDP, from_user="200", timeout_s=10
    )

    assert await asyncio.wait_for(call.wait_ended(), 10) == "bye"
    assert call.answered


async def test_info_and_reinvite_reach_the_outbound_call(
    caller: SipEndpoint, callee: tuple[SipEndpoint, ScriptedHandler]
) -> None:
    endpoint, handler = callee
    call = await caller.place_call(
        f"sip:100@127.0.0.1:{endpoint.port}", sdp_offer=OFFER_SDP, from_user="200", timeout_s=10
    )
    infos: asyncio.Queue[bytes] = asyncio.Queue()
    reoffers: asyncio.Queue[bytes | None] = asyncio.Queue()
    call.on_info = lambda content_type, body: infos.put_nowait(body)

    async def reoffer(sdp: bytes | None) -> bytes:
        reoffers.put_nowait(sdp)
        return OFFER_SDP

    call.on_reoffer = reoffer
    await asyncio.wait_for(call.wait_answered(), 10)
    inbound = await asyncio.wait_for(handler.calls.get(), 5)
    session = endpoint.core.calls[inbound.call_id]
    assert session.dialog is not None
    # The callee sends INFO in its dialog with the stack's own request builder.
    endpoint._command(
        lambda core, now: core.send_in_dialog(
            session.handle, "INFO", now, b"Signal=5\r\n", "application/dtmf-relay"
        )
    )

    assert await asyncio.wait_for(infos.get(), 5) == b"Signal=5\r\n"
    await call.hangup()


async def test_busy_callee(
    caller: SipEndpoint, callee: tuple[SipEndpoint, ScriptedHandler]
) -> None:
    endpoint, handler = callee
    handler.mode = "reject"
    call = await caller.place_call(
        f"sip:100@127.0.0.1:{endpoint.port}", sdp_offer=OFFER_SDP, from_user="200", timeout_s=10
    )

    with pytest.raises(CallEnded) as ended:
        await asyncio.wait_for(call.wait_answered(), 10)

    assert ended.value.reason == "rejected"
    assert call.status == 486


async def test_sha256_digest_from_a_voxgate_callee(caller: SipEndpoint) -> None:
    handler = ScriptedHandler()
    auth = AuthConfig(realm="voxgate.test", users={"agent7": "s3cret"}, algorithms=("SHA-256",))
    endpoint = await started(handler, auth=auth)
    try:
        call = await caller.place_call(
            f"sip:100@127.0.0.1:{endpoint.port}",
            sdp_offer=OFFER_SDP,
            from_user="200",
            credentials=("agent7", "s3cret"),
            timeout_s=10,
        )

        assert await asyncio.wait_for(call.wait_answered(), 10) == ANSWER_SDP
        await call.hangup()
        assert await asyncio.wait_for(handler.reasons.get(), 5) == "bye"
    finally:
        await endpoint.stop()


async def test_wrong_credentials_are_tried_once(caller: SipEndpoint) -> None:
    handler = ScriptedHandler()
    endpoint = await started(handler, auth=AuthConfig(users={"agent7": "s3cret"}))
    try:
        call = await caller.place_call(
            f"sip:100@127.0.0.1:{endpoint.port}",
            sdp_offer=OFFER_SDP,
            from_user="200",
            credentials=("agent7", "wrong"),
            timeout_s=10,
        )

        assert await asyncio.wait_for(call.wait_ended(), 10) == "rejected"
        assert call.status == 401
        assert handler.calls.empty()
    finally:
        await endpoint.stop()


async def test_cancel_while_ringing_and_timeout(
    caller: SipEndpoint, callee: tuple[SipEndpoint, ScriptedHandler]
) -> None:
    endpoint, handler = callee
    handler.mode = "ring"
    ringing = asyncio.Event()
    call = await caller.place_call(
        f"sip:100@127.0.0.1:{endpoint.port}", sdp_offer=OFFER_SDP, from_user="200", timeout_s=10
    )
    call.on_progress = lambda status: ringing.set()
    await asyncio.wait_for(ringing.wait(), 10)

    await call.cancel()

    assert await asyncio.wait_for(call.wait_ended(), 10) == "cancel"
    assert await asyncio.wait_for(handler.reasons.get(), 5) == "cancel"
    assert call.status == 487

    late = await caller.place_call(
        f"sip:100@127.0.0.1:{endpoint.port}", sdp_offer=OFFER_SDP, from_user="200", timeout_s=0.5
    )
    assert await asyncio.wait_for(late.wait_ended(), 10) == "timeout"
    assert await asyncio.wait_for(handler.reasons.get(), 5) == "cancel"


async def test_stop_cancels_an_unanswered_call(
    callee: tuple[SipEndpoint, ScriptedHandler],
) -> None:
    endpoint, handler = callee
    handler.mode = "ring"
    caller = await started(ScriptedHandler())
    ringing = asyncio.Event()
    call = await caller.place_call(
        f"sip:100@127.0.0.1:{endpoint.port}", sdp_offer=OFFER_SDP, from_user="200", timeout_s=10
    )
    call.on_progress = lambda status: ringing.set()
    await asyncio.wait_for(ringing.wait(), 10)

    await caller.stop()

    assert call.ended
    assert await call.wait_ended() == "shutdown"
    assert await asyncio.wait_for(handler.reasons.get(), 5) == "cancel"


async def test_bad_targets_are_refused(caller: SipEndpoint) -> None:
    for target in (
        "sip:100@pbx.example.com",
        "tel:+15550100",
        "sip:100@127.0.0.1;transport=tls",
        "sips:100@127.0.0.1",
    ):
        with pytest.raises(SipUsageError):
            await caller.place_call(target, sdp_offer=OFFER_SDP, from_user="200", timeout_s=1)
    with pytest.raises(SipUsageError):
        await caller.place_call(
            "sip:100@127.0.0.1", sdp_offer=OFFER_SDP, from_user="a b", timeout_s=1
        )
    with pytest.raises(SipUsageError):
        await caller.place_call(
            "sip:100@127.0.0.1",
            sdp_offer=OFFER_SDP,
            from_user="200",
            headers={"X-Bad": "a\r\nBYE"},
            timeout_s=1,
        )
    with pytest.raises(SipUsageError):
        await caller.place_call(
            "sip:100@127.0.0.1",
            sdp_offer=OFFER_SDP,
            from_user="200",
            headers={"i": "another-call-id"},
            timeout_s=1,
        )


async def test_invite_is_retransmitted_then_times_out() -> None:
    peer: UdpPeer = await open_udp_peer()
    endpoint = await started(ScriptedHandler(), timers=TimerConfig(t1=0.05, t2=0.4))
    try:
        call = await endpoint.place_call(
            f"sip:100@127.0.0.1:{peer.port}", sdp_offer=OFFER_SDP, from_user="200", timeout_s=30
        )
        first = await peer.next_matching(b"INVITE ", 5)
        again = await peer.next_matching(b"INVITE ", 5)

        assert first == again
        # Timer B is 64*T1 = 3.2 s here; the INVITE is never answered.
        assert await asyncio.wait_for(call.wait_ended(), 15) == "timeout"
        assert call.status == 408
    finally:
        peer.close()
        await endpoint.stop()


class RefreshCounter(ScriptedHandler):
    """Answers every call and sets `refreshed` at the second re-offer."""

    def __init__(self) -> None:
        super().__init__()
        self.refreshed = asyncio.Event()

    async def _answer_reoffer(self, sdp: bytes | None) -> bytes:
        answer = await super()._answer_reoffer(sdp)
        if len(self.reoffers) >= 2:
            self.refreshed.set()
        return answer


async def test_session_refreshes_reach_a_voxgate_callee(caller: SipEndpoint) -> None:
    handler = RefreshCounter()
    callee = await started(handler, min_session_expires=6)
    try:
        call = await caller.place_call(
            f"sip:100@127.0.0.1:{callee.port}",
            sdp_offer=OFFER_SDP,
            from_user="200",
            timeout_s=10,
            session_expires=6,
        )
        await asyncio.wait_for(call.wait_answered(), 10)

        # Refreshes come every 3 s; without them the callee would end the call after 4 s.
        await asyncio.wait_for(handler.refreshed.wait(), 20)

        assert handler.reoffers == [None, None]
        assert not call.ended
        await call.hangup()
        assert await asyncio.wait_for(handler.reasons.get(), 5) == "bye"
    finally:
        await callee.stop()


async def test_call_over_tcp(
    caller: SipEndpoint, callee: tuple[SipEndpoint, ScriptedHandler]
) -> None:
    endpoint, handler = callee
    call = await caller.place_call(
        f"sip:100@127.0.0.1:{endpoint.port};transport=tcp",
        sdp_offer=OFFER_SDP,
        from_user="200",
        timeout_s=10,
    )

    assert await asyncio.wait_for(call.wait_answered(), 10) == ANSWER_SDP
    inbound = await asyncio.wait_for(handler.calls.get(), 5)
    assert inbound.transport == "tcp"
    await call.hangup()
    assert await asyncio.wait_for(handler.reasons.get(), 5) == "bye"
