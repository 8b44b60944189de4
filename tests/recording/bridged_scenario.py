"""One recorded call bridged to an agent; writes a JSON report of what happened.

Run it inside a loopback-only network namespace (`unshare -n`), as
tests/recording/test_bridged_recording.py does. A `voxgate serve` node
records every call from its answer. The caller's microphone is a 600 Hz
tone and the agent's a 1000 Hz tone. The caller dials the journey flow,
waits in the queue and is answered. Cases:

- agent_page: a baresip (SIP) caller, answered by the agent page in
  headless Chromium, which hangs up after hearing the caller.
- browser_caller: the caller page at / in headless Chromium (a WebRTC
  leg), answered by an aiortc agent; the page hangs up.

The report names the call's CDR, including its recording path, for the
test to read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import aiohttp

from signaling.webrtc.peer import install_host_addresses
from tests.journey.agent import AgentClient
from tests.journey.browser_agent import BrowserAgent
from tests.journey.scenario import (
    AGENT,
    AGENT_TONE_HZ,
    CALLER_TONE_HZ,
    PASSWORD,
    agent_page_microphone,
    caller_page_microphone,
    dial,
    node_settings,
    wait_counters,
)
from tests.support.node import RunningNode, voxgate_node
from tests.support.wav import tone, write_wav

SCENARIO_TIMEOUT_S = 200.0

logger = logging.getLogger("recording-scenario")


async def caller_cdr(node: RunningNode, timeout_s: float) -> dict[str, Any]:
    """Poll the node's recent CDRs until the agent's call is written; return its CDR."""
    url = f"http://127.0.0.1:{node.http_port}/api/cdrs?limit=10"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with aiohttp.ClientSession() as http:
        while loop.time() < deadline:
            async with http.get(url) as response:
                body = await response.json()
            for record in body["cdrs"]:
                if record.get("agent_id") == AGENT:
                    found: dict[str, Any] = record
                    return found
            await asyncio.sleep(0.2)
    raise TimeoutError(f"no CDR of the agent's call after {timeout_s} s")


async def agent_page_case(report: dict[str, Any], node: RunningNode, work_dir: Path) -> None:
    caller_microphone = write_wav(
        work_dir / "caller-tone.wav", tone(CALLER_TONE_HZ, 80.0, 8000, amplitude=0.3), 8000
    )
    page_microphone = agent_page_microphone(work_dir)
    url = f"http://127.0.0.1:{node.http_port}/agent?audio_processing=off"
    async with BrowserAgent(url, page_microphone, work_dir / "chromium.log") as agent:
        await agent.login(AGENT, PASSWORD)
        phone = await asyncio.to_thread(dial, work_dir, "caller", node, caller_microphone)
        try:
            await wait_counters(node, lambda c: c.get("joined", 0) >= 1, 30)
            await agent.answer_next_call()
            report["agent_heard_caller_s"] = await agent.heard_tone_s(CALLER_TONE_HZ, 3.0, 30)
            await agent.click("hangup")
            end = await asyncio.to_thread(phone.wait_closed, 20)
            report["caller_end"] = end.ended_by.value
            await agent.call_ended(15)
        finally:
            await asyncio.to_thread(phone.stop)


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
            await wait_counters(node, lambda c: c.get("joined", 0) >= 1, 30)
            await agent.set_state("available")
            incoming = await agent.expect("incoming", 30)
            await agent.answer(incoming["call_id"])
            report["agent_heard_caller_s"] = await agent.wait_heard_tone(CALLER_TONE_HZ, 3.0, 30)
            await page.click("hangup")
            hangup = await agent.expect("hangup", 20, call_id=incoming["call_id"])
            report["agent_hangup_reason"] = hangup.get("reason", "")
    finally:
        await agent.close()


async def run(case: str, work_dir: Path) -> dict[str, Any]:
    install_host_addresses(["127.0.0.1"])
    settings = node_settings()
    settings["cdr"] = {"path": str(work_dir / "cdr.sqlite")}
    settings["recording"] = {"enabled": True, "directory": str(work_dir / "recordings")}
    report: dict[str, Any] = {"case": case}
    with voxgate_node(work_dir, settings) as node:
        if case == "agent_page":
            await agent_page_case(report, node, work_dir)
        else:
            await browser_caller_case(report, node, work_dir)
        report["cdr"] = await caller_cdr(node, 20)
        report["node_log_tracebacks"] = node.log().count("Traceback")
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("case", choices=["agent_page", "browser_caller"])
    parser.add_argument("--out", type=Path, required=True, help="folder for the report and logs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        report = asyncio.run(asyncio.wait_for(run(args.case, args.out), SCENARIO_TIMEOUT_S))
    except Exception as exc:
        logger.exception("recorded bridge scenario %s failed", args.case)
        report = {"case": args.case, "error": f"{type(exc).__name__}: {exc}"}
    (args.out / "result.json").write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
