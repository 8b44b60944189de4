"""Outbound calls from a SipEndpoint to a real SIPp UAS over UDP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from signaling.sip.endpoint import SipConfig, SipEndpoint
from signaling.sip.errors import CallEnded
from tests.sip.support import ANSWER_SDP, SIPP, ScriptedHandler, start_sipp_uas

pytestmark = [pytest.mark.peer, pytest.mark.skipif(SIPP is None, reason="sipp is not installed")]


@pytest.fixture
async def endpoint() -> AsyncIterator[SipEndpoint]:
    endpoint = SipEndpoint(SipConfig(port=0), ScriptedHandler())
    await endpoint.start()
    yield endpoint
    await endpoint.stop()


async def test_answer_after_ringing_then_our_bye(endpoint: SipEndpoint, tmp_path: Path) -> None:
    sipp = await start_sipp_uas("uas_answer.xml", tmp_path)
    try:
        progress: list[int] = []
        call = await endpoint.place_call(
            f"sip:15550100000@127.0.0.1:{sipp.port}",
            sdp_offer=ANSWER_SDP,
            from_user="15550100001",
            timeout_s=20,
        )
        call.on_progress = progress.append

        answer = await asyncio.wait_for(call.wait_answered(), 20)
        await call.hangup()

        assert answer is not None
        assert b"m=audio" in answer
        assert progress == [180]
        assert call.status == 200
        assert await asyncio.wait_for(call.wait_ended(), 10) == "hangup"
        code, log = await sipp.finish()
        assert code == 0, log
    finally:
        sipp.kill()


async def test_bye_from_the_callee_ends_the_call(endpoint: SipEndpoint, tmp_path: Path) -> None:
    sipp = await start_sipp_uas("uas_answer_bye.xml", tmp_path)
    try:
        call = await endpoint.place_call(
            f"sip:15550100000@127.0.0.1:{sipp.port}",
            sdp_offer=ANSWER_SDP,
            from_user="15550100001",
            timeout_s=20,
        )

        assert await asyncio.wait_for(call.wait_answered(), 20) is not None
        assert await asyncio.wait_for(call.wait_ended(), 20) == "bye"
        code, log = await sipp.finish()
        assert code == 0, log
    finally:
        sipp.kill()


async def test_busy_is_acknowledged_and_reported(endpoint: SipEndpoint, tmp_path: Path) -> None:
    sipp = await start_sipp_uas("uas_reject.xml", tmp_path)
    try:
        call = await endpoint.place_call(
            f"sip:15550100000@127.0.0.1:{sipp.port}",
            sdp_offer=ANSWER_SDP,
            from_user="15550100001",
            timeout_s=20,
        )

        with pytest.raises(CallEnded) as ended:
            await asyncio.wait_for(call.wait_answered(), 20)

        assert ended.value.reason == "rejected"
        assert call.status == 486
        code, log = await sipp.finish()
        assert code == 0, log
    finally:
        sipp.kill()


async def test_digest_challenge_is_answered_once(endpoint: SipEndpoint, tmp_path: Path) -> None:
    sipp = await start_sipp_uas("uas_auth.xml", tmp_path)
    try:
        call = await endpoint.place_call(
            f"sip:15550100000@127.0.0.1:{sipp.port}",
            sdp_offer=ANSWER_SDP,
            from_user="15550100001",
            credentials=("agent7", "s3cret"),
            timeout_s=20,
        )

        # SIPp answers 403 instead of 200 when the digest does not verify.
        assert await asyncio.wait_for(call.wait_answered(), 20) is not None
        await call.hangup()
        code, log = await sipp.finish()
        assert code == 0, log
    finally:
        sipp.kill()


async def test_wrong_password_ends_in_rejection(endpoint: SipEndpoint, tmp_path: Path) -> None:
    sipp = await start_sipp_uas("uas_auth.xml", tmp_path)
    try:
        call = await endpoint.place_call(
            f"sip:15550100000@127.0.0.1:{sipp.port}",
            sdp_offer=ANSWER_SDP,
            from_user="15550100001",
            credentials=("agent7", "wrong"),
            timeout_s=20,
        )

        assert await asyncio.wait_for(call.wait_ended(), 20) == "rejected"
        assert call.status == 403
        code, log = await sipp.finish()
        assert code == 0, log
    finally:
        sipp.kill()


async def test_cancel_while_ringing(endpoint: SipEndpoint, tmp_path: Path) -> None:
    sipp = await start_sipp_uas("uas_cancel.xml", tmp_path)
    try:
        ringing = asyncio.Event()
        call = await endpoint.place_call(
            f"sip:15550100000@127.0.0.1:{sipp.port}",
            sdp_offer=ANSWER_SDP,
            from_user="15550100001",
            timeout_s=20,
        )
        call.on_progress = lambda status: ringing.set()

        await asyncio.wait_for(ringing.wait(), 20)
        await call.cancel()

        assert await asyncio.wait_for(call.wait_ended(), 20) == "cancel"
        assert call.status == 487
        assert not call.answered
        code, log = await sipp.finish()
        assert code == 0, log
    finally:
        sipp.kill()
