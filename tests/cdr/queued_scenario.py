"""A queued SIP call bridged to an agent, then its CDR and events read over the node's API.

Run it inside a loopback-only network namespace (as `run_queued_call` in
tests/cdr/test_queued_calls.py does), because aiortc offers ICE candidates
on every interface. A `voxgate serve` node with the journey flow, a baresip
caller named "vip" (priority 7, reason `vip`) and an aiortc agent: the
caller is queued, offered, answered and bridged, then the agent or the
caller hangs up. Case `browser_caller` has the real caller page at / in
headless Chromium as the caller, which hangs up. The JSON report holds
the agent's `incoming` message, the call's events from `/api/events` and
its CDR from `/api/cdrs`.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from signaling.webrtc.peer import install_host_addresses
from tests.journey.agent import AgentClient
from tests.journey.scenario import (
    AGENT,
    AGENT_TONE_HZ,
    PASSWORD,
    browser_caller_case,
    caller_microphone,
    dial,
    node_settings,
    talk_and_hang_up,
    wait_counters,
)
from tests.support.baresip import BaresipClient
from tests.support.node import voxgate_node
from tests.support.scenario import run_scenario_main
from tests.voxgate.node_api import SseReader, wait_for_cdr

TOKEN = "queued-call-test-token-7d3e"
CALLER = "vip"
EVENT_TIMEOUT_S = 30.0
CDR_TIMEOUT_S = 15.0
CASES = ("agent_hangup", "caller_hangup", "browser_caller")

logger = logging.getLogger("queued_scenario")


async def run(case: str, work_dir: Path) -> dict[str, Any]:
    install_host_addresses(["127.0.0.1"])
    microphone = caller_microphone(work_dir)
    settings = node_settings()
    settings["api"] = {"token": TOKEN}
    report: dict[str, Any] = {"case": case}
    with voxgate_node(work_dir, settings) as node:
        if case == "browser_caller":
            with SseReader(node.http_port, TOKEN, "?kinds=call.*,acd.caller_answered") as sse:
                await browser_caller_case(report, node, work_dir)
                events = await asyncio.to_thread(sse.wait_for, "call.ended", EVENT_TIMEOUT_S)
            report["events"] = events
            report["cdr"] = await asyncio.to_thread(
                wait_for_cdr, node.http_port, events[-1]["call_id"], TOKEN, CDR_TIMEOUT_S
            )
            report["node_log_tracebacks"] = node.log().count("Traceback")
            return report
        agent = AgentClient(f"http://127.0.0.1:{node.http_port}", AGENT, PASSWORD, AGENT_TONE_HZ)
        phone: BaresipClient | None = None
        try:
            with SseReader(node.http_port, TOKEN, "?kinds=call.*,acd.caller_answered") as sse:
                await agent.login()
                phone = await asyncio.to_thread(dial, work_dir, CALLER, node, microphone)
                await wait_counters(node, lambda c: c.get("joined", 0) >= 1, 30)
                await agent.set_state("available")
                hangup_side = "agent" if case == "agent_hangup" else "caller"
                await talk_and_hang_up(report, agent, phone, hangup_side)
                events = await asyncio.to_thread(sse.wait_for, "call.ended", EVENT_TIMEOUT_S)
            report["events"] = events
            call_id = events[-1]["call_id"]
            report["cdr"] = await asyncio.to_thread(
                wait_for_cdr, node.http_port, call_id, TOKEN, CDR_TIMEOUT_S
            )
        finally:
            await agent.close()
            if phone is not None:
                await asyncio.to_thread(phone.stop)
        report["node_log_tracebacks"] = node.log().count("Traceback")
    return report


def main() -> int:
    return run_scenario_main(__doc__, CASES, run, logger=logger, label="queued call")


if __name__ == "__main__":
    raise SystemExit(main())
