"""Runs one caller-to-agent journey and writes what every side saw to a JSON report.

Run it inside a loopback-only network namespace, as `run_journey` in
tests/journey/test_journey.py does: a `voxgate serve` node, baresip callers
dialing the test flow, and an aiortc agent that logs in on the node's
signaling WebSocket. Cases:

- agent_hangup, caller_hangup: one caller is queued, offered to the agent,
  answered and bridged; tones go both ways; one side hangs up.
- abandon: the caller hangs up while waiting.
- abandon_ringing: the caller hangs up while the agent's page rings.
- decline: the agent rejects the first ring; the caller keeps its place
  and is offered again, and the second ring is answered.
- priority: a normal caller, then a priority caller; the agent becomes
  available after both are queued and takes both calls in turn.
- browser_agent: as agent_hangup, with the real agent page in headless
  Chromium as the agent.
- browser_caller: the real caller page at / calls the default flow, is
  queued and talks to the aiortc agent until the page hangs up.
- priority_redis: as priority, with the ACD on a real redis-server.
- two_nodes_redis: two nodes on one redis-server with a cluster secret. The
  caller on node A is offered to the only available agent, on node B, who
  talks to it through both nodes. The away agent on node A gets no offer.
- speech: as agent_hangup, but the caller answers a Korean speech gather
  first (espeak-ng Korean, recognized by the Vosk Korean model), and the
  agent sees the recognized words.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from media.resample import resample
from media.tts import EspeakSynthesizer
from signaling.webrtc.auth import hash_password
from signaling.webrtc.peer import install_host_addresses
from tests.journey.agent import AgentClient, tone_seconds
from tests.journey.browser_agent import CALLER_METER, BrowserAgent
from tests.support.baresip import BaresipClient
from tests.support.node import REPOSITORY, RunningNode, voxgate_node
from tests.support.scenario import run_scenario_main, start_fresh_redis
from tests.support.wav import load_mono, silence, tone, write_wav

CALLER_TONE_HZ = 600.0
AGENT_TONE_HZ = 1000.0
AGENT = "agent1"
OTHER_AGENT = "agent2"
PASSWORD = "journey-agent-password"
CLUSTER_SECRET = "journey-test-cluster-secret-journey-test"
FLOWS = REPOSITORY / "tests" / "data" / "journey" / "flows"
NUMBER = "2900"
SPEECH_NUMBER = "2901"
SPEECH_WORD = "환불"
SPEECH_REPEATS = 6
CASES = (
    "agent_hangup",
    "caller_hangup",
    "abandon",
    "abandon_ringing",
    "decline",
    "priority",
    "priority_redis",
    "two_nodes_redis",
    "browser_agent",
    "browser_caller",
    "speech",
)

logger = logging.getLogger("journey")


def node_settings(store: str = "memory") -> dict[str, Any]:
    return {
        "ivr": {"flows_dir": str(FLOWS), "default_flow": "journey"},
        "acd": {
            "store": store,
            "queues": {
                "general": {
                    "announce_first_s": 1,
                    "announce_every_s": 4,
                    "ring_timeout_s": 20,
                    "wrap_up_s": 0,
                }
            },
        },
        "webrtc": {
            "token_secret": "journey-test-secret-journey-test-secret",
            "agents": {
                name: {"password_hash": hash_password(PASSWORD), "queues": ["general"]}
                for name in (AGENT, OTHER_AGENT)
            },
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


def caller_microphone(work_dir: Path) -> Path:
    """Write the SIP caller's microphone: 80 s of the caller tone at 8 kHz."""
    return write_wav(
        work_dir / "caller-tone.wav", tone(CALLER_TONE_HZ, 80.0, 8000, amplitude=0.2), 8000
    )


def agent_page_microphone(work_dir: Path) -> Path:
    """Write the agent page's microphone for Chromium: 120 s of the agent tone at 48 kHz."""
    return write_wav(
        work_dir / "agent-tone.wav", tone(AGENT_TONE_HZ, 120.0, 48_000, amplitude=0.3), 48_000
    )


def caller_page_microphone(work_dir: Path) -> Path:
    """Write the caller page's microphone for Chromium: 120 s of the caller tone at 48 kHz."""
    return write_wav(
        work_dir / "caller-tone-48k.wav", tone(CALLER_TONE_HZ, 120.0, 48_000, 0.3), 48_000
    )


def dial(
    work_dir: Path, user: str, node: RunningNode, microphone: Path, number: str = NUMBER
) -> BaresipClient:
    phone = BaresipClient(
        work_dir, user=user, microphone=microphone, max_call_s=90, capture_rtp=False
    )
    phone.start()
    phone.dial(f"sip:{number}@127.0.0.1:{node.sip_port}")
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
    microphone = caller_microphone(work_dir)
    report: dict[str, Any] = {"case": case}
    if case in ("browser_agent", "browser_caller"):
        with voxgate_node(work_dir, node_settings()) as node:
            if case == "browser_agent":
                await browser_case(report, node, work_dir, microphone)
            else:
                await browser_caller_case(report, node, work_dir)
            report["health"] = node.health()[0]
            report["node_log_tracebacks"] = node.log().count("Traceback")
        return report
    redis = start_fresh_redis(work_dir) if case.endswith("_redis") else None
    try:
        store = redis.url if redis is not None else "memory"
        if case == "two_nodes_redis":
            await two_nodes_case(report, work_dir, microphone, store)
        else:
            await run_with_agent(case.removesuffix("_redis"), report, work_dir, microphone, store)
    finally:
        if redis is not None:
            redis.stop()
    return report


async def run_with_agent(
    case: str, report: dict[str, Any], work_dir: Path, microphone: Path, store: str
) -> None:
    with voxgate_node(work_dir, node_settings(store)) as node:
        base = f"http://127.0.0.1:{node.http_port}"
        agent = AgentClient(base, AGENT, PASSWORD, AGENT_TONE_HZ)
        phones: list[BaresipClient] = []
        try:
            await agent.login()
            report["presence_after_login"] = (await agent.expect("presence", 10))["state"]
            if case == "priority":
                await priority_case(report, node, agent, phones, work_dir, microphone)
            else:
                number = NUMBER
                if case == "speech":
                    number = SPEECH_NUMBER
                    microphone = speech_microphone(work_dir)
                phone = await asyncio.to_thread(dial, work_dir, "caller", node, microphone, number)
                phones.append(phone)
                announcements = 2 if case == "abandon" else 1
                report["waiting"] = await wait_counters(
                    node,
                    lambda c: c.get("joined", 0) >= 1 and c.get("announced", 0) >= announcements,
                    30,
                )
                if case == "decline":
                    await agent.set_state("available")
                    first = await agent.expect("incoming", 30)
                    await agent.hangup(first["call_id"])
                    report["declined"] = first
                    await talk_and_hang_up(report, agent, phone, "agent")
                    report["after"] = await wait_counters(
                        node, lambda c: c.get("answered", 0) >= 1, 10
                    )
                elif case == "abandon_ringing":
                    await agent.set_state("available")
                    incoming = await agent.expect("incoming", 30)
                    await asyncio.to_thread(phone.hangup)
                    await asyncio.to_thread(phone.wait_closed, 20)
                    withdrawn = await agent.expect("hangup", 20, call_id=incoming["call_id"])
                    report["withdrawn_reason"] = withdrawn.get("reason", "")
                    report["after"] = await wait_counters(
                        node, lambda c: c.get("abandoned", 0) >= 1, 20
                    )
                    report["presence_after_call"] = (
                        await agent.expect("presence", 10, state="available")
                    )["state"]
                elif case == "abandon":
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


def speech_microphone(work_dir: Path) -> Path:
    """Write a caller microphone that says the word again every few seconds, then the tone.

    The word repeats so that one of them falls into the gather's listening
    window whatever the prompt's length; the tone after it lets the agent
    hear the caller.
    """
    word = EspeakSynthesizer().synthesize_blocking(SPEECH_WORD, voice="ko")
    spoken = np.frombuffer(resample(word, 8000).pcm, dtype="<i2")
    parts = [silence(3.0, 8000)]
    for _ in range(SPEECH_REPEATS):
        parts += [spoken, silence(2.0, 8000)]
    parts.append(tone(CALLER_TONE_HZ, 60.0, 8000, amplitude=0.2))
    return write_wav(work_dir / "caller-speech.wav", np.concatenate(parts), 8000)


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


async def browser_case(
    report: dict[str, Any], node: RunningNode, work_dir: Path, microphone: Path
) -> None:
    page_microphone = agent_page_microphone(work_dir)
    url = f"http://127.0.0.1:{node.http_port}/agent?audio_processing=off"
    async with BrowserAgent(url, page_microphone, work_dir / "chromium.log") as agent:
        await agent.login(AGENT, PASSWORD)
        report["presence_after_login"] = await agent.presence()
        phone = await asyncio.to_thread(dial, work_dir, "caller", node, microphone)
        try:
            report["waiting"] = await wait_counters(
                node, lambda c: c.get("joined", 0) >= 1 and c.get("announced", 0) >= 1, 30
            )
            # The caller is waiting, so the page may go from available to
            # ringing faster than it is polled.
            report["context"] = await agent.answer_next_call()
            report["agent_heard_caller_s"] = await agent.heard_tone_s(CALLER_TONE_HZ, 2.0, 30)
            await agent.click("hangup")
            end = await asyncio.to_thread(phone.wait_closed, 20)
            report["caller_end"] = end.ended_by.value
            await agent.call_ended(15)
            await agent.wait_presence("available", 20)
            report["presence_after_call"] = await agent.presence()
            received = load_mono(phone.received_wav(), 8000)
            report["caller_heard_agent_s"] = tone_seconds(received, 8000, AGENT_TONE_HZ)
            report["after"] = await wait_counters(node, lambda c: c.get("answered", 0) >= 1, 10)
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
            report["waiting"] = await wait_counters(node, lambda c: c.get("joined", 0) >= 1, 30)
            await agent.set_state("available")
            incoming = await agent.expect("incoming", 30)
            report["incoming"] = incoming
            await agent.answer(incoming["call_id"])
            report["agent_heard_caller_s"] = await agent.wait_heard_tone(CALLER_TONE_HZ, 2.0, 30)
            report["caller_heard_agent_s"] = await page.heard_tone_s(
                AGENT_TONE_HZ, 1.0, 30, CALLER_METER
            )
            await page.click("hangup")
            hangup = await agent.expect("hangup", 20, call_id=incoming["call_id"])
            report["agent_hangup_reason"] = hangup.get("reason", "")
            report["after"] = await wait_counters(node, lambda c: c.get("answered", 0) >= 1, 10)
    finally:
        await agent.close()


async def two_nodes_case(
    report: dict[str, Any], work_dir: Path, microphone: Path, store: str
) -> None:
    """A caller on node A, an available agent on node B and an away agent on node A."""
    (work_dir / "a").mkdir(exist_ok=True)
    (work_dir / "b").mkdir(exist_ok=True)
    settings = node_settings(store)
    settings["cluster"] = {"secret": CLUSTER_SECRET}
    with (
        voxgate_node(work_dir / "a", settings) as node_a,
        voxgate_node(work_dir / "b", settings) as node_b,
    ):
        remote = AgentClient(
            f"http://127.0.0.1:{node_b.http_port}", OTHER_AGENT, PASSWORD, AGENT_TONE_HZ
        )
        local = AgentClient(f"http://127.0.0.1:{node_a.http_port}", AGENT, PASSWORD, 0)
        phone: BaresipClient | None = None
        try:
            await remote.login()
            await remote.set_state("available")
            await local.login()
            phone = await asyncio.to_thread(dial, work_dir, "caller", node_a, microphone)
            report["waiting"] = await wait_counters(node_a, lambda c: c.get("joined", 0) >= 1, 30)
            incoming = await remote.expect("incoming", 30)
            report["incoming"] = incoming
            await remote.answer(incoming["call_id"])
            report["agent_heard_caller_s"] = await remote.wait_heard_tone(CALLER_TONE_HZ, 2.0, 30)
            await remote.hangup(incoming["call_id"])
            end = await asyncio.to_thread(phone.wait_closed, 20)
            report["caller_end"] = end.ended_by.value
            received = load_mono(phone.received_wav(), 8000)
            report["caller_heard_agent_s"] = tone_seconds(received, 8000, AGENT_TONE_HZ)
            report["after"] = await wait_counters(node_b, lambda c: c.get("answered", 0) >= 1, 10)
            report["local_agent_offers"] = sum(
                1 for message in local.messages if message["type"] == "incoming"
            )
            report["node_a_counters"] = await queue_counters(node_a)
        finally:
            await remote.close()
            await local.close()
            if phone is not None:
                await asyncio.to_thread(phone.stop)
        report["node_log_tracebacks"] = node_a.log().count("Traceback") + node_b.log().count(
            "Traceback"
        )


def main() -> int:
    return run_scenario_main(__doc__, CASES, run, logger=logger, label="journey")


if __name__ == "__main__":
    raise SystemExit(main())
