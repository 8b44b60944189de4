"""Runs one caller-to-agent journey and writes what every side saw to a JSON report.

Run it inside a loopback-only network namespace, as `run_journey` in
tests/journey/namespace.py does: a `voxgate serve` node, baresip callers
dialing the test flow, and an aiortc agent that logs in on the node's
signaling WebSocket. Cases:

- agent_hangup, caller_hangup: one caller is queued, offered to the agent,
  answered and bridged; tones go both ways; one side hangs up.
- abandon: the caller hangs up while waiting.
- priority: a normal caller, then a priority caller; the agent becomes
  available after both are queued and takes both calls in turn.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from signaling.webrtc.auth import hash_password
from signaling.webrtc.peer import install_host_addresses
from tests.journey.agent import AgentClient, tone_seconds
from tests.support.baresip import BaresipClient
from tests.support.node import REPOSITORY, RunningNode, voxgate_node
from tests.support.wav import load_mono, tone, write_wav

CALLER_TONE_HZ = 600.0
AGENT_TONE_HZ = 1000.0
AGENT = "agent1"
PASSWORD = "journey-agent-password"
FLOWS = REPOSITORY / "tests" / "data" / "journey" / "flows"
NUMBER = "2900"

logger = logging.getLogger("journey")


def node_settings() -> dict[str, Any]:
    return {
        "ivr": {"flows_dir": str(FLOWS), "default_flow": "journey"},
        "acd": {
            "queues": {
                "general": {
                    "announce_first_s": 1,
                    "announce_every_s": 4,
                    "ring_timeout_s": 20,
                    "wrap_up_s": 0,
                }
            }
        },
        "webrtc": {
            "token_secret": "journey-test-secret-journey-test-secret",
            "agents": {AGENT: {"password_hash": hash_password(PASSWORD), "queues": ["general"]}},
            "wrap_up_s": 0,
            "ring_timeout_s": 20,
        },
    }


async def queue_counters(node: RunningNode) -> dict[str, int]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{node.http_port}/api/queues") as response,
    ):
        body = await response.json()
    counters: dict[str, int] = body["queues"].get("general", {})
    return counters


async def wait_counters(
    node: RunningNode, ready: Callable[[dict[str, int]], bool], timeout_s: float
) -> dict[str, int]:
    """Poll the node's queue counters until `ready` holds or the time is up."""
    deadline = time.monotonic() + timeout_s
    counters: dict[str, int] = {}
    while time.monotonic() < deadline:
        counters = await queue_counters(node)
        if ready(counters):
            return counters
        await asyncio.sleep(0.2)
    return counters


def dial(work_dir: Path, user: str, node: RunningNode, microphone: Path) -> BaresipClient:
    phone = BaresipClient(
        work_dir, user=user, microphone=microphone, max_call_s=90, capture_rtp=False
    )
    phone.start()
    phone.dial(f"sip:{NUMBER}@127.0.0.1:{node.sip_port}")
    phone.wait_established(15)
    return phone


async def talk_and_hang_up(
    report: dict[str, Any], agent: AgentClient, phone: BaresipClient, who: str
) -> None:
    incoming = await agent.expect("incoming", 30)
    report["incoming"] = incoming
    await agent.answer(incoming["call_id"])
    report["agent_heard_caller_s"] = await agent.wait_heard_tone(CALLER_TONE_HZ, 2.0, 30)
    if who == "agent":
        await agent.hangup(incoming["call_id"])
    else:
        await asyncio.to_thread(phone.hangup)
    end = await asyncio.to_thread(phone.wait_closed, 20)
    report["caller_end"] = end.ended_by.value
    hangup = await agent.expect("hangup", 20, call_id=incoming["call_id"])
    report["agent_hangup_reason"] = hangup.get("reason", "")
    await agent.close_call()
    received = load_mono(phone.received_wav(), 8000)
    report["caller_heard_agent_s"] = tone_seconds(received, 8000, AGENT_TONE_HZ)


async def run(case: str, work_dir: Path) -> dict[str, Any]:
    install_host_addresses(["127.0.0.1"])
    microphone = write_wav(
        work_dir / "caller-tone.wav", tone(CALLER_TONE_HZ, 80.0, 8000, amplitude=0.2), 8000
    )
    report: dict[str, Any] = {"case": case}
    with voxgate_node(work_dir, node_settings()) as node:
        base = f"http://127.0.0.1:{node.http_port}"
        agent = AgentClient(base, AGENT, PASSWORD, AGENT_TONE_HZ)
        phones: list[BaresipClient] = []
        try:
            await agent.login()
            report["presence_after_login"] = (await agent.expect("presence", 10))["state"]
            if case == "priority":
                await priority_case(report, node, agent, phones, work_dir, microphone)
            else:
                phone = await asyncio.to_thread(dial, work_dir, "caller", node, microphone)
                phones.append(phone)
                announcements = 2 if case == "abandon" else 1
                report["waiting"] = await wait_counters(
                    node,
                    lambda c: c.get("joined", 0) >= 1 and c.get("announced", 0) >= announcements,
                    30,
                )
                if case == "abandon":
                    await asyncio.to_thread(phone.hangup)
                    await asyncio.to_thread(phone.wait_closed, 20)
                    report["after"] = await wait_counters(
                        node, lambda c: c.get("abandoned", 0) >= 1, 20
                    )
                    received = load_mono(phone.received_wav(), 8000)
                    report["caller_heard_hold_s"] = hold_seconds(received)
                else:
                    await agent.set_state("available")
                    who = "agent" if case == "agent_hangup" else "caller"
                    await talk_and_hang_up(report, agent, phone, who)
                    report["after"] = await wait_counters(
                        node, lambda c: c.get("answered", 0) >= 1, 10
                    )
                    report["presence_after_call"] = (
                        await agent.expect("presence", 10, state="available")
                    )["state"]
            report["health"] = node.health()[0]
        finally:
            await agent.close()
            for phone in phones:
                await asyncio.to_thread(phone.stop)
        report["node_log_tracebacks"] = node.log().count("Traceback")
    return report


def hold_seconds(samples: np.ndarray[Any, np.dtype[np.int16]]) -> float:
    """Return the time of the hold chime's notes in what the caller heard."""
    return sum(tone_seconds(samples, 8000, hz) for hz in (440.0, 554.37, 659.26))


async def priority_case(
    report: dict[str, Any],
    node: RunningNode,
    agent: AgentClient,
    phones: list[BaresipClient],
    work_dir: Path,
    microphone: Path,
) -> None:
    normal = await asyncio.to_thread(dial, work_dir, "normal", node, microphone)
    phones.append(normal)
    await wait_counters(node, lambda c: c.get("joined", 0) >= 1, 30)
    vip = await asyncio.to_thread(dial, work_dir, "vip", node, microphone)
    phones.append(vip)
    report["waiting"] = await wait_counters(node, lambda c: c.get("joined", 0) >= 2, 30)
    await agent.set_state("available")
    served = []
    for phone in (vip, normal):
        part: dict[str, Any] = {}
        await talk_and_hang_up(part, agent, phone, "agent")
        served.append(part)
    report["served"] = served
    report["after"] = await wait_counters(node, lambda c: c.get("answered", 0) >= 2, 10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("case", choices=["agent_hangup", "caller_hangup", "abandon", "priority"])
    parser.add_argument("--out", type=Path, required=True, help="folder for the report and logs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    work_dir = args.out / args.case
    work_dir.mkdir(parents=True, exist_ok=True)
    try:
        report = asyncio.run(asyncio.wait_for(run(args.case, work_dir), 200))
    except Exception as exc:
        logger.exception("journey %s failed", args.case)
        report = {"case": args.case, "error": f"{type(exc).__name__}: {exc}"}
    (args.out / f"{args.case}-result.json").write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
