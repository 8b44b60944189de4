"""`OutboundDialer` against SIPp callees on loopback: busy, answered with media, withdrawn."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from media.audio import PcmAudio
from media.rtp_session import RtpPortPool
from signaling.sip.endpoint import SipConfig, SipEndpoint
from tests.sip.support import ScriptedHandler
from tests.support.node import free_port_range
from tests.support.sipp import SCENARIO_DIR, SippProcess, render_scenario
from tests.support.wav import tone
from voxgate.outbound import DialStatus, OutboundDialer

DATA = Path(__file__).resolve().parents[1] / "data" / "callback"
SIPP_WAIT_S = 20.0

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(autouse=True)
def needs_sipp() -> None:
    if shutil.which("sipp") is None:
        pytest.skip("sipp is not installed")


@pytest.fixture
async def dialer() -> AsyncIterator[tuple[OutboundDialer, RtpPortPool]]:
    endpoint = SipEndpoint(SipConfig(port=0), ScriptedHandler())
    await endpoint.start()
    low, high = free_port_range(20)
    pool = RtpPortPool(low, high)
    yield (
        OutboundDialer(endpoint, pool, rtp_host="127.0.0.1", advertised_address="127.0.0.1"),
        pool,
    )
    await endpoint.stop()


def callee_process(template: Path, work_dir: Path, **values: object) -> SippProcess:
    """Return an unstarted SIPp callee; `with` starts it and stops it by PID."""
    scenario = render_scenario(template, work_dir / template.name, values)
    return SippProcess(scenario, work_dir, calls=1, rtp_echo=True, global_timeout_s=60)


async def test_busy_callee_returns_busy(
    dialer: tuple[OutboundDialer, RtpPortPool], tmp_path: Path
) -> None:
    outbound, pool = dialer
    free_before = pool.free_count
    with callee_process(SCENARIO_DIR / "uas_reject.xml", tmp_path) as callee:
        callee.wait_until_listening()
        result = await outbound.dial(
            f"sip:5551234@127.0.0.1:{callee.sip_port}",
            call_id="c.cb1",
            from_user="4000",
            credentials=None,
            timeout_s=10,
            abort=asyncio.Event().wait(),
        )
        sipp = await asyncio.to_thread(callee.wait, SIPP_WAIT_S)

    assert result.outcome is DialStatus.BUSY
    assert result.status == 486
    assert result.leg is None
    assert pool.free_count == free_before
    assert sipp.passed, sipp.describe()


async def test_answered_callee_gets_media_leg(
    dialer: tuple[OutboundDialer, RtpPortPool], tmp_path: Path
) -> None:
    outbound, pool = dialer
    free_before = pool.free_count
    callee = callee_process(
        SCENARIO_DIR / "uas_echo.xml", tmp_path, BYE_TIMEOUT_MS=30_000, AUDIO_ACTIONS=""
    )
    with callee:
        callee.wait_until_listening()
        result = await outbound.dial(
            f"sip:5551234@127.0.0.1:{callee.sip_port}",
            call_id="c.cb1",
            from_user="4000",
            credentials=None,
            timeout_s=10,
            abort=asyncio.Event().wait(),
        )
        assert result.outcome is DialStatus.ANSWERED
        assert result.leg is not None
        echoed = asyncio.Event()
        result.leg.media.add_inbound_tap(lambda frame: echoed.set() if _loud(frame) else None)
        samples = tone(700.0, 2.0, 8000, amplitude=0.3)
        playing = asyncio.ensure_future(
            result.leg.media.play(PcmAudio(samples.astype("<i2").tobytes(), 8000))
        )
        await asyncio.wait_for(echoed.wait(), 10)
        playing.cancel()
        await asyncio.gather(playing, return_exceptions=True)
        await result.leg.close()
        sipp = await asyncio.to_thread(callee.wait, SIPP_WAIT_S)

    assert pool.free_count == free_before
    assert sipp.passed, sipp.describe()


async def test_abort_cancels_ringing_call(
    dialer: tuple[OutboundDialer, RtpPortPool], tmp_path: Path
) -> None:
    outbound, pool = dialer
    free_before = pool.free_count
    agent_left = asyncio.Event()
    callee = callee_process(DATA / "customer_no_answer.xml", tmp_path, CANCEL_TIMEOUT_MS=20_000)
    with callee:
        callee.wait_until_listening()
        dialing = asyncio.ensure_future(
            outbound.dial(
                f"sip:5551234@127.0.0.1:{callee.sip_port}",
                call_id="c.cb1",
                from_user="4000",
                credentials=None,
                timeout_s=30,
                abort=agent_left.wait(),
            )
        )
        async with asyncio.timeout(10):
            # SIPp's message log is the only place that shows its 180 went out.
            while "180 Ringing" not in callee.result(False).message_log:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        agent_left.set()
        result = await asyncio.wait_for(dialing, 10)
        sipp = await asyncio.to_thread(callee.wait, SIPP_WAIT_S)

    assert result.outcome is DialStatus.CANCELLED
    assert result.leg is None
    assert pool.free_count == free_before
    assert sipp.passed, sipp.describe()


def _loud(frame: PcmAudio) -> bool:
    samples = np.frombuffer(frame.pcm, dtype="<i2").astype(np.float64)
    return bool(samples.size) and float(np.sqrt(np.mean(samples**2))) > 500


async def test_answer_with_second_codec_rebinds_port(
    dialer: tuple[OutboundDialer, RtpPortPool], tmp_path: Path
) -> None:
    outbound, pool = dialer
    free_before = pool.free_count
    callee = callee_process(
        DATA / "customer_answers.xml",
        tmp_path,
        AUDIO_ACTIONS="",
        BYE_TIMEOUT_MS=30_000,
        AUDIO_PT=8,
        AUDIO_CODEC="PCMA",
    )
    with callee:
        callee.wait_until_listening()
        result = await outbound.dial(
            f"sip:5551234@127.0.0.1:{callee.sip_port}",
            call_id="c.cb1",
            from_user="4000",
            credentials=None,
            timeout_s=10,
            abort=asyncio.Event().wait(),
        )
        assert result.outcome is DialStatus.ANSWERED
        assert result.leg is not None
        assert result.leg.session.config.codec_name == "PCMA"
        echoed = asyncio.Event()
        result.leg.media.add_inbound_tap(lambda frame: echoed.set() if _loud(frame) else None)
        samples = tone(700.0, 2.0, 8000, amplitude=0.3)
        playing = asyncio.ensure_future(
            result.leg.media.play(PcmAudio(samples.astype("<i2").tobytes(), 8000))
        )
        await asyncio.wait_for(echoed.wait(), 10)
        playing.cancel()
        await asyncio.gather(playing, return_exceptions=True)
        await result.leg.close()
        sipp = await asyncio.to_thread(callee.wait, SIPP_WAIT_S)

    assert pool.free_count == free_before
    assert sipp.passed, sipp.describe()
