"""Outbound calls from a SipEndpoint to a real SIPp UAS over UDP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from signaling.sip.endpoint import OutboundCall, SipConfig, SipEndpoint
from signaling.sip.errors import CallEnded
from tests.sip.support import ANSWER_SDP, SIPP, ScriptedHandler, SippServer, start_sipp_uas

pytestmark = [pytest.mark.peer, pytest.mark.skipif(SIPP is None, reason="sipp is not installed")]


@pytest.fixture
async def endpoint() -> AsyncIterator[SipEndpoint]:
    endpoint = SipEndpoint(SipConfig(port=0), ScriptedHandler())
    await endpoint.start()
    yield endpoint
    await endpoint.stop()


@asynccontextmanager
async def callee(scenario: str, workdir: Path) -> AsyncIterator[SippServer]:
    """Run SIPp with `scenario` for one call, and check that it passed when the block ends."""
    sipp = await start_sipp_uas(scenario, workdir)
    try:
        yield sipp
        code, log = await sipp.finish()
        assert code == 0, log
    finally:
        sipp.kill()


async def dial(
    endpoint: SipEndpoint, sipp: SippServer, credentials: tuple[str, str] | None = None
) -> OutboundCall:
    return await endpoint.place_call(
        f"sip:15550100000@127.0.0.1:{sipp.port}",
        sdp_offer=ANSWER_SDP,
        from_user="15550100001",
        credentials=credentials,
        timeout_s=20,
    )


async def test_answer_after_ringing_then_our_bye(endpoint: SipEndpoint, tmp_path: Path) -> None:
    async with callee("uas_answer.xml", tmp_path) as sipp:
        progress: list[int] = []
        call = await dial(endpoint, sipp)
        call.on_progress = progress.append

        answer = await asyncio.wait_for(call.wait_answered(), 20)
        await call.hangup()

        assert answer is not None
        assert b"m=audio" in answer
        assert progress == [180]
        assert call.status == 200
        assert await asyncio.wait_for(call.wait_ended(), 10) == "hangup"


async def test_bye_from_the_callee_ends_the_call(endpoint: SipEndpoint, tmp_path: Path) -> None:
    async with callee("uas_answer_bye.xml", tmp_path) as sipp:
        call = await dial(endpoint, sipp)

        assert await asyncio.wait_for(call.wait_answered(), 20) is not None
        assert await asyncio.wait_for(call.wait_ended(), 20) == "bye"


async def test_busy_is_acknowledged_and_reported(endpoint: SipEndpoint, tmp_path: Path) -> None:
    async with callee("uas_reject.xml", tmp_path) as sipp:
        call = await dial(endpoint, sipp)

        with pytest.raises(CallEnded) as ended:
            await asyncio.wait_for(call.wait_answered(), 20)

        assert ended.value.reason == "rejected"
        assert call.status == 486


async def test_digest_challenge_is_answered_once(endpoint: SipEndpoint, tmp_path: Path) -> None:
    async with callee("uas_auth.xml", tmp_path) as sipp:
        call = await dial(endpoint, sipp, ("agent7", "s3cret"))

        # SIPp answers 403 instead of 200 when the digest does not verify.
        assert await asyncio.wait_for(call.wait_answered(), 20) is not None
        await call.hangup()


async def test_wrong_password_ends_in_rejection(endpoint: SipEndpoint, tmp_path: Path) -> None:
    async with callee("uas_auth.xml", tmp_path) as sipp:
        call = await dial(endpoint, sipp, ("agent7", "wrong"))

        assert await asyncio.wait_for(call.wait_ended(), 20) == "rejected"
        assert call.status == 403


async def test_cancel_while_ringing(endpoint: SipEndpoint, tmp_path: Path) -> None:
    async with callee("uas_cancel.xml", tmp_path) as sipp:
        ringing = asyncio.Event()
        call = await dial(endpoint, sipp)
        call.on_progress = lambda status: ringing.set()

        await asyncio.wait_for(ringing.wait(), 20)
        await call.cancel()

        assert await asyncio.wait_for(call.wait_ended(), 20) == "cancel"
        assert call.status == 487
        assert not call.answered
