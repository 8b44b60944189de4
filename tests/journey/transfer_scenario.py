"""Runs one blind-transfer journey from the agent page and writes what each side saw.

Run it inside a loopback-only network namespace, as `run_journey` in
tests/journey/test_journey.py does. Every case has a real `voxgate serve`
node with the queues `general` and `billing`. Cases:

- transfer_queue: a baresip caller talks to agent1 on the agent page in
  headless Chromium. The page first tries an unknown queue and an invalid
  number (both fail and the call stays up), then transfers the caller to
  `billing`. The caller hears billing's hold music, and agent2 (an aiortc
  agent serving billing) is offered the caller with its IVR context and
  talks to it.
- transfer_queue_redis: as transfer_queue, with the ACD on a real
  redis-server.
- transfer_number: as above, but the page transfers the caller to a SIP
  URI. A SIPp callee that answers 486 makes the first transfer fail (the
  call stays up); a SIPp callee that answers and echoes audio takes the
  second, which ends agent1's call.
- transfer_browser_caller: the caller page at / is the caller and agent1 is
  an aiortc agent. A transfer to a number is rejected, because a browser
  caller has no SIP side to send REFER to; the call stays up.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

from signaling.webrtc.peer import install_host_addresses
from tests.journey.agent import AgentClient, tone_seconds
from tests.journey.browser_agent import CALLER_METER, BrowserAgent
from tests.journey.scenario import (
    AGENT,
    AGENT_TONE_HZ,
    CALLER_TONE_HZ,
    NUMBER,
    OTHER_AGENT,
    PASSWORD,
    agent_page_microphone,
    caller_microphone,
    caller_page_microphone,
    node_settings,
)
from tests.support.baresip import BaresipClient
from tests.support.node import RunningNode, voxgate_node
from tests.support.scenario import run_scenario_main, start_fresh_redis
from tests.support.sipp import SCENARIO_DIR, SippProcess, render_scenario
from tests.support.wav import load_mono, tone, write_wav
from tests.voxgate.node_api import SseReader, get_json, wait_for_cdr

CASES = ("transfer_queue", "transfer_queue_redis", "transfer_number", "transfer_browser_caller")
TOKEN = "transfer-journey-token-5b1c"
OTHER_AGENT_TONE_HZ = 1400.0
BILLING_HOLD_HZ = 750.0
WRAP_UP_S = 4
EVENT_TIMEOUT_S = 30.0
CDR_TIMEOUT_S = 15.0
MESSAGE = "document.getElementById('message').textContent"

logger = logging.getLogger("transfer_journey")


def dial(work_dir: Path, node: RunningNode, microphone: Path) -> BaresipClient:
    """Call the journey flow from a baresip that can hold a second call (the transfer's)."""
    phone = BaresipClient(
        work_dir,
        user="caller",
        microphone=microphone,
        max_call_s=90,
        capture_rtp=False,
        max_calls=2,
    )
    phone.start()
    phone.dial(f"sip:{NUMBER}@127.0.0.1:{node.sip_port}")
    phone.wait_established(15)
    return phone


def transfer_settings(work_dir: Path, store: str = "memory") -> dict[str, Any]:
    """Return the journey node's settings with a `billing` queue that plays its own hold tone."""
    settings = node_settings(store)
    hold = write_wav(
        work_dir / "billing-hold.wav", tone(BILLING_HOLD_HZ, 3.0, 8000, amplitude=0.2), 8000
    )
    settings["acd"]["queues"]["billing"] = {
        "announce_first_s": 2,
        "announce_every_s": 30,
        "ring_timeout_s": 20,
        "wrap_up_s": 0,
        "hold_music": str(hold),
    }
    agents = settings["webrtc"]["agents"]
    agents[AGENT]["queues"] = ["general"]
    agents[OTHER_AGENT]["queues"] = ["billing"]
    settings["webrtc"]["wrap_up_s"] = WRAP_UP_S
    settings["api"] = {"token": TOKEN}
    settings["cdr"] = {"path": str(work_dir / "cdr.sqlite")}
    return settings


async def counters(node: RunningNode, queue: str) -> dict[str, int]:
    status, body = await asyncio.to_thread(get_json, node.http_port, "/api/queues", None)
    assert status == 200, f"/api/queues returned {status}"
    found: dict[str, int] = body["queues"].get(queue, {})
    return found


async def wait_queue(node: RunningNode, queue: str, name: str, at_least: int) -> dict[str, int]:
    """Poll the queue's counters until `name` reaches `at_least`, for at most 30 s."""
    async with asyncio.timeout(30):
        while True:
            found = await counters(node, queue)
            if found.get(name, 0) >= at_least:
                return found
            await asyncio.sleep(0.2)


async def page_transfer(page: BrowserAgent, kind: str, target: str) -> None:
    """Choose the transfer kind, type the target and click Transfer, as an agent would."""
    await page.evaluate(
        f"document.getElementById('transfer-kind').value = {json.dumps(kind)};"
        f"document.getElementById('transfer-target').value = {json.dumps(target)};"
    )
    await page.click("transfer")


async def page_transfer_fails(page: BrowserAgent, kind: str, target: str) -> dict[str, Any]:
    """Try a transfer that must fail; return the page's message and whether the call stayed up."""
    await page.evaluate(f"{MESSAGE} = ''")
    await page_transfer(page, kind, target)
    message = await page.wait_for(
        f"{MESSAGE}.startsWith('Transfer failed') && {MESSAGE}", EVENT_TIMEOUT_S
    )
    return {
        "message": message,
        "call_state": await page.evaluate("window.voxgate.state.callState"),
        "transfer_enabled": await page.evaluate("!document.getElementById('transfer').disabled"),
        "heard_caller_after_s": await page.heard_tone_s(CALLER_TONE_HZ, 1.0, 20),
    }


async def answer_on_page(page: BrowserAgent, report: dict[str, Any]) -> None:
    report["context"] = await page.answer_next_call()
    report["agent_heard_caller_s"] = await page.heard_tone_s(CALLER_TONE_HZ, 2.0, 30)


async def after_transfer(page: BrowserAgent, report: dict[str, Any]) -> None:
    """Record how the page ended its call and that the agent went to wrap-up."""
    await page.call_ended(EVENT_TIMEOUT_S)
    report["page_message"] = await page.evaluate(MESSAGE)
    await page.wait_presence("wrap_up", 15)
    report["presence_after_transfer"] = "wrap_up"


async def queue_case(report: dict[str, Any], node: RunningNode, work_dir: Path) -> None:
    microphone = caller_microphone(work_dir)
    base = f"http://127.0.0.1:{node.http_port}"
    page_microphone = agent_page_microphone(work_dir)
    other = AgentClient(base, OTHER_AGENT, PASSWORD, OTHER_AGENT_TONE_HZ)
    phone: BaresipClient | None = None
    try:
        await other.login()
        async with BrowserAgent(
            f"{base}/agent?audio_processing=off", page_microphone, work_dir / "chromium.log"
        ) as page:
            await page.login(AGENT, PASSWORD)
            with SseReader(node.http_port, TOKEN, "?kinds=call.*,acd.caller_joined") as sse:
                phone = await asyncio.to_thread(dial, work_dir, node, microphone)
                await wait_queue(node, "general", "announced", 1)
                await answer_on_page(page, report)
                report["unknown_queue"] = await page_transfer_fails(page, "queue", "nosuch")
                report["bad_number"] = await page_transfer_fails(page, "number", "12ab")
                await page_transfer(page, "queue", "billing")
                await after_transfer(page, report)
                report["billing_waiting"] = await wait_queue(node, "billing", "announced", 1)
                report["general_after"] = await counters(node, "general")
                await other.set_state("available")
                incoming = await other.expect("incoming", 30)
                report["incoming"] = incoming
                await other.answer(incoming["call_id"])
                report["other_heard_caller_s"] = await other.wait_heard_tone(
                    CALLER_TONE_HZ, 2.0, 30
                )
                await other.hangup(incoming["call_id"])
                end = await asyncio.to_thread(phone.wait_closed, 20)
                report["caller_end"] = end.ended_by.value
                events = await asyncio.to_thread(sse.wait_for, "call.ended", EVENT_TIMEOUT_S)
            report["events"] = events
            received = load_mono(phone.received_wav(), 8000)
            report["caller_heard"] = {
                "agent_s": tone_seconds(received, 8000, AGENT_TONE_HZ),
                "billing_hold_s": tone_seconds(received, 8000, BILLING_HOLD_HZ),
                "other_agent_s": tone_seconds(received, 8000, OTHER_AGENT_TONE_HZ),
            }
            report["cdr"] = await asyncio.to_thread(
                wait_for_cdr, node.http_port, events[-1]["call_id"], TOKEN, CDR_TIMEOUT_S
            )
    finally:
        await other.close()
        if phone is not None:
            await asyncio.to_thread(phone.stop)


async def number_case(report: dict[str, Any], node: RunningNode, work_dir: Path) -> None:
    microphone = caller_microphone(work_dir)
    base = f"http://127.0.0.1:{node.http_port}"
    busy = SippProcess(SCENARIO_DIR / "uas_reject.xml", work_dir, global_timeout_s=120)
    echo_scenario = render_scenario(
        SCENARIO_DIR / "uas_echo.xml",
        work_dir / "target.xml",
        {"AUDIO_ACTIONS": "", "BYE_TIMEOUT_MS": 60_000},
    )
    target = SippProcess(echo_scenario, work_dir, rtp_echo=True, global_timeout_s=120)
    phone: BaresipClient | None = None
    with busy, target:
        busy.wait_until_listening()
        target.wait_until_listening()
        page_microphone = agent_page_microphone(work_dir)
        async with BrowserAgent(
            f"{base}/agent?audio_processing=off", page_microphone, work_dir / "chromium.log"
        ) as page:
            try:
                await page.login(AGENT, PASSWORD)
                with SseReader(node.http_port, TOKEN, "?kinds=call.*") as sse:
                    phone = await asyncio.to_thread(dial, work_dir, node, microphone)
                    await wait_queue(node, "general", "announced", 1)
                    await answer_on_page(page, report)
                    report["rejected"] = await page_transfer_fails(
                        page, "number", f"sip:busy@127.0.0.1:{busy.sip_port}"
                    )
                    await page_transfer(page, "number", f"sip:target@127.0.0.1:{target.sip_port}")
                    await after_transfer(page, report)
                    events = await asyncio.to_thread(sse.wait_for, "call.ended", EVENT_TIMEOUT_S)
                report["events"] = events
                report["cdr"] = await asyncio.to_thread(
                    wait_for_cdr, node.http_port, events[-1]["call_id"], TOKEN, CDR_TIMEOUT_S
                )
                # The caller now talks to the target; hanging up there ends SIPp's call.
                await asyncio.to_thread(phone.hangup)
            finally:
                if phone is not None:
                    await asyncio.to_thread(phone.stop)
        target_result = await asyncio.to_thread(target.wait, 30)
        report["target_passed"] = target_result.passed
        report["target_log"] = target_result.describe()[-3000:]
        report["busy_invites"] = busy.stop().message_log.count("INVITE sip:busy@")


async def browser_caller_case(report: dict[str, Any], node: RunningNode, work_dir: Path) -> None:
    microphone = caller_page_microphone(work_dir)
    base = f"http://127.0.0.1:{node.http_port}"
    agent = AgentClient(base, AGENT, PASSWORD, AGENT_TONE_HZ)
    try:
        await agent.login()
        async with BrowserAgent(
            f"{base}/?audio_processing=off", microphone, work_dir / "chromium.log"
        ) as page:
            await page.start_caller_call()
            await wait_queue(node, "general", "joined", 1)
            await agent.set_state("available")
            incoming = await agent.expect("incoming", 30)
            call_id = incoming["call_id"]
            await agent.answer(call_id)
            report["agent_heard_caller_s"] = await agent.wait_heard_tone(CALLER_TONE_HZ, 2.0, 30)
            await agent.send(
                {"type": "transfer", "call_id": call_id, "target_kind": "number", "target": "2000"}
            )
            report["transfer_error"] = await agent.expect("error", EVENT_TIMEOUT_S, call_id=call_id)
            before = agent.heard_tone_s(CALLER_TONE_HZ)
            report["agent_heard_after_s"] = (
                await agent.wait_heard_tone(CALLER_TONE_HZ, before + 1.0, 20) - before
            )
            report["caller_heard_agent_s"] = await page.heard_tone_s(
                AGENT_TONE_HZ, 1.0, 20, CALLER_METER
            )
            await agent.hangup(call_id)
            hangup = await agent.expect("hangup", 20, call_id=call_id)
            report["agent_hangup_reason"] = hangup.get("reason", "")
    finally:
        await agent.close()


async def run(case: str, work_dir: Path) -> dict[str, Any]:
    install_host_addresses(["127.0.0.1"])
    report: dict[str, Any] = {"case": case}
    redis = start_fresh_redis(work_dir) if case.endswith("_redis") else None
    try:
        store = redis.url if redis is not None else "memory"
        with voxgate_node(work_dir, transfer_settings(work_dir, store)) as node:
            if case.startswith("transfer_queue"):
                await queue_case(report, node, work_dir)
            elif case == "transfer_number":
                await number_case(report, node, work_dir)
            else:
                await browser_caller_case(report, node, work_dir)
            report["health"] = node.health()[0]
            report["node_log_tracebacks"] = node.log().count("Traceback")
    finally:
        if redis is not None:
            redis.stop()
    return report


def main() -> int:
    return run_scenario_main(__doc__, CASES, run, logger=logger, label="journey")


if __name__ == "__main__":
    raise SystemExit(main())
