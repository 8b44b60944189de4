"""A real SIPp UAC against a running SipEndpoint over UDP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from signaling.sip.endpoint import SipConfig, SipEndpoint
from tests.sip.support import SIPP, ScriptedHandler, run_sipp

pytestmark = [pytest.mark.peer, pytest.mark.skipif(SIPP is None, reason="sipp is not installed")]


@pytest.fixture
async def handler() -> ScriptedHandler:
    return ScriptedHandler()


@pytest.fixture
async def endpoint(handler: ScriptedHandler) -> AsyncIterator[SipEndpoint]:
    endpoint = SipEndpoint(SipConfig(port=0), handler)
    await endpoint.start()
    yield endpoint
    await endpoint.stop()


async def test_basic_call_bye_from_sipp(
    endpoint: SipEndpoint, handler: ScriptedHandler, tmp_path: Path
) -> None:
    code, log = await run_sipp("uac_basic_call.xml", endpoint.port, tmp_path)

    assert code == 0, log
    call = await asyncio.wait_for(handler.calls.get(), 5)
    assert call.called == "15550100000"
    assert call.caller == "15550100001"
    assert call.remote_sdp is not None
    assert b"m=audio" in call.remote_sdp
    assert await asyncio.wait_for(handler.reasons.get(), 5) == "bye"
    assert call.ended


async def test_cancel_before_answer(
    endpoint: SipEndpoint, handler: ScriptedHandler, tmp_path: Path
) -> None:
    handler.mode = "ring"

    code, log = await run_sipp("uac_cancel.xml", endpoint.port, tmp_path)

    assert code == 0, log
    assert await asyncio.wait_for(handler.reasons.get(), 5) == "cancel"


async def test_options_lists_capabilities(endpoint: SipEndpoint, tmp_path: Path) -> None:
    code, log = await run_sipp("uac_options.xml", endpoint.port, tmp_path)

    assert code == 0, log


async def test_hold_and_unhold_reinvites(
    endpoint: SipEndpoint, handler: ScriptedHandler, tmp_path: Path
) -> None:
    code, log = await run_sipp("uac_hold_unhold.xml", endpoint.port, tmp_path)

    assert code == 0, log
    assert await asyncio.wait_for(handler.reasons.get(), 5) == "bye"
    assert len(handler.reoffers) == 2
    assert handler.reoffers[0] is not None
    assert b"a=sendonly" in handler.reoffers[0]
    assert handler.reoffers[1] is not None
    assert b"a=sendrecv" in handler.reoffers[1]


async def test_bye_from_our_side(
    endpoint: SipEndpoint, handler: ScriptedHandler, tmp_path: Path
) -> None:
    handler.mode = "hangup"

    code, log = await run_sipp("uac_receives_bye.xml", endpoint.port, tmp_path)

    assert code == 0, log
    assert await asyncio.wait_for(handler.reasons.get(), 5) == "hangup"


async def test_basic_call_over_tcp(
    endpoint: SipEndpoint, handler: ScriptedHandler, tmp_path: Path
) -> None:
    code, log = await run_sipp("uac_basic_call.xml", endpoint.port, tmp_path, transport="t1")

    assert code == 0, log
    call = await asyncio.wait_for(handler.calls.get(), 5)
    assert call.transport == "tcp"
    assert await asyncio.wait_for(handler.reasons.get(), 5) == "bye"


@pytest.mark.slow
async def test_two_hundred_calls_all_complete(
    endpoint: SipEndpoint, handler: ScriptedHandler, tmp_path: Path
) -> None:
    code, log = await run_sipp(
        "uac_basic_call.xml", endpoint.port, tmp_path, calls=200, rate=50, max_seconds=120
    )

    assert code == 0, log
    reasons = [await asyncio.wait_for(handler.reasons.get(), 10) for _ in range(200)]
    assert set(reasons) == {"bye"}
    assert handler.reasons.empty()
    assert endpoint.core.calls == {}
