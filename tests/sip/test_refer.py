"""Blind transfer with REFER: between two endpoints and with real SIPp peers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from signaling.sip.endpoint import InboundCall, OutboundCall, SipConfig, SipEndpoint
from signaling.sip.errors import SipUsageError
from signaling.sip.refer import sipfrag_status
from tests.sip.support import (
    ANSWER_SDP,
    OFFER_SDP,
    SIPP,
    ScriptedHandler,
    run_sipp,
    start_sipp_uas,
)

TARGET = "sip:agent42@127.0.0.1:5099"
needs_sipp = pytest.mark.skipif(SIPP is None, reason="sipp is not installed")


class TransferHandler(ScriptedHandler):
    """Call handler that accepts every call and performs each REFER with the outcome `succeed`.

    With `succeed` None it sets no `on_refer`, so the stack rejects REFER with 603.
    """

    def __init__(self, succeed: bool | None = True) -> None:
        super().__init__()
        self.succeed = succeed
        self.targets: asyncio.Queue[str] = asyncio.Queue()

    async def on_invite(self, call: InboundCall) -> None:
        if self.succeed is not None:
            call.on_refer = self._transfer
        await super().on_invite(call)

    async def _transfer(self, target: str) -> bool:
        self.targets.put_nowait(target)
        return bool(self.succeed)


async def started(handler: ScriptedHandler) -> SipEndpoint:
    endpoint = SipEndpoint(SipConfig(port=0), handler)
    await endpoint.start()
    return endpoint


@pytest.fixture
async def caller() -> AsyncIterator[SipEndpoint]:
    endpoint = await started(ScriptedHandler())
    yield endpoint
    await endpoint.stop()


async def answered_call(caller: SipEndpoint, callee: SipEndpoint) -> OutboundCall:
    call = await caller.place_call(
        f"sip:100@127.0.0.1:{callee.port}", sdp_offer=OFFER_SDP, from_user="200", timeout_s=10
    )
    await asyncio.wait_for(call.wait_answered(), 10)
    return call


@pytest.mark.parametrize(("succeed", "expected"), [(True, True), (False, False), (None, False)])
async def test_refer_outcome_reaches_the_referrer(
    caller: SipEndpoint, succeed: bool | None, expected: bool
) -> None:
    handler = TransferHandler(succeed)
    callee = await started(handler)
    try:
        call = await answered_call(caller, callee)

        assert await asyncio.wait_for(call.refer(TARGET), 10) is expected
        if succeed is not None:
            assert await asyncio.wait_for(handler.targets.get(), 5) == TARGET
        assert not call.ended
        await call.hangup()
        assert await asyncio.wait_for(handler.reasons.get(), 5) == "bye"
    finally:
        await callee.stop()


async def test_inbound_call_refers_the_caller(caller: SipEndpoint) -> None:
    handler = ScriptedHandler()
    callee = await started(handler)
    try:
        call = await answered_call(caller, callee)
        targets: list[str] = []

        async def transfer(target: str) -> bool:
            targets.append(target)
            return True

        call.on_refer = transfer
        inbound = await asyncio.wait_for(handler.calls.get(), 5)

        assert await asyncio.wait_for(inbound.refer(TARGET), 10) is True
        assert targets == [TARGET]
        await inbound.hangup()
        assert await asyncio.wait_for(call.wait_ended(), 5) == "bye"
    finally:
        await callee.stop()


async def test_refer_needs_a_valid_target(caller: SipEndpoint) -> None:
    callee = await started(TransferHandler())
    try:
        call = await answered_call(caller, callee)

        with pytest.raises(SipUsageError):
            await call.refer("sip:agent@127.0.0.1>\r\nBYE")
        assert await asyncio.wait_for(call.refer(TARGET), 10) is True
    finally:
        await callee.stop()


def test_sipfrag_status_lines() -> None:
    assert sipfrag_status(b"SIP/2.0 200 OK\r\n") == 200
    assert sipfrag_status(b"SIP/2.0 180 Ringing") == 180
    assert sipfrag_status(b"SIP/2.0 503\r\n") == 503
    assert sipfrag_status(b"INVITE sip:a@b SIP/2.0\r\n") is None
    assert sipfrag_status(b"SIP/2.0 2000 OK") is None
    assert sipfrag_status(b"\xff\xfe") is None


@pytest.mark.peer
@needs_sipp
async def test_refer_to_sipp_callee(caller: SipEndpoint, tmp_path: Path) -> None:
    sipp = await start_sipp_uas("uas_refer.xml", tmp_path)
    try:
        call = await caller.place_call(
            f"sip:15550100000@127.0.0.1:{sipp.port}",
            sdp_offer=ANSWER_SDP,
            from_user="15550100001",
            timeout_s=20,
        )
        await asyncio.wait_for(call.wait_answered(), 20)

        assert await asyncio.wait_for(call.refer(TARGET), 20) is True
        await call.hangup()
        code, log = await sipp.finish()
        assert code == 0, log
    finally:
        sipp.kill()


@pytest.mark.peer
@needs_sipp
async def test_refer_from_sipp_caller(tmp_path: Path) -> None:
    handler = TransferHandler()
    endpoint = await started(handler)
    try:
        code, log = await run_sipp("uac_refer.xml", endpoint.port, tmp_path)

        assert code == 0, log
        assert await asyncio.wait_for(handler.targets.get(), 5) == TARGET
        assert await asyncio.wait_for(handler.reasons.get(), 5) == "bye"
    finally:
        await endpoint.stop()
