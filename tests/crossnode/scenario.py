"""Runs one cross-node case and writes what every side saw to a JSON report.

Run it inside a loopback-only network namespace, as `run_case` in
tests/crossnode/test_cross_node.py does. Two `voxgate serve` nodes share one
redis-server and a cluster secret. A baresip caller dials node A and waits
in the queue; the only agent is logged in on node B. Cases:

- agent_hangup, caller_hangup: an aiortc agent on node B is offered the
  caller with its IVR context, answers, and tones go both ways through
  both nodes; one side hangs up and every leg ends.
- browser_agent: as agent_hangup, with the real agent page in headless
  Chromium on node B.
- transfer_to_queue: the agent on node B transfers the caller to queue
  general; node A requeues it, and the agent, free again, is offered the
  caller a second time, answers and hangs up.
- wrong_secret: node B signs with another secret, so node A rejects its
  bridge INVITE with 403; the agent's call ends, the caller is not claimed
  and is offered to the agent again.
- caller_leaves_ringing: the caller hangs up while node B's agent rings;
  the ring is withdrawn and the agent is available again.
- node_a_dies: node A is killed (SIGKILL) while node B's agent rings; the
  ring is withdrawn and the agent is available again.
- agent_moves: the agent's page on node A is available, then the agent
  opens a page on node B, which takes the agent's ACD record over. The page
  on node A is set offline, closing it afterwards leaves the record on node
  B, and a caller on node A is offered to the agent on node B.
- busy_agent_stays: the agent talks to a caller on node A and opens a page
  on node B. Node B does not take the agent over: its page gets an error
  and is set away, the call goes on, and closing node B's page leaves the
  record on node A.
- relayed_events: a caller waits on node B, and node A's event stream and
  cluster queue counters show it, each event once, with node B's id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp

from acd.store.redis import RedisStore
from signaling.webrtc.peer import install_host_addresses
from tests.journey.agent import AgentClient, tone_seconds
from tests.journey.browser_agent import BrowserAgent
from tests.journey.scenario import (
    AGENT_TONE_HZ,
    CALLER_TONE_HZ,
    OTHER_AGENT,
    PASSWORD,
    agent_page_microphone,
    caller_microphone,
    dial,
    node_settings,
    queue_counters,
    wait_counters,
)
from tests.support.baresip import BaresipClient
from tests.support.events import EventSocket
from tests.support.node import RunningNode, voxgate_node
from tests.support.scenario import run_scenario_main, start_fresh_redis
from tests.support.wav import load_mono

CLUSTER_SECRET = "cross-node-test-cluster-secret-0123456789"
NODE_TTL_S = 6
CASES = (
    "agent_hangup",
    "caller_hangup",
    "transfer_to_queue",
    "browser_agent",
    "caller_leaves_ringing",
    "node_a_dies",
    "wrong_secret",
    "agent_moves",
    "busy_agent_stays",
    "relayed_events",
)
# How long a node waits for a closed agent page to come back before it takes the agent offline.
RECONNECT_GRACE_S = 1

logger = logging.getLogger("crossnode")


def cluster_settings(store: str, name: str) -> dict[str, Any]:
    """Return the journey node settings with a Redis store and cross-node bridging on."""
    settings = node_settings(store)
    settings["node"] = {"id": name}
    settings["acd"]["node_ttl_s"] = NODE_TTL_S
    settings["cluster"] = {"secret": CLUSTER_SECRET, "address_ttl_s": NODE_TTL_S}
    settings["webrtc"]["reconnect_grace_s"] = RECONNECT_GRACE_S
    return settings


def tracebacks(*nodes: RunningNode) -> int:
    return sum(node.log().count("Traceback") for node in nodes)


async def run(case: str, work_dir: Path) -> dict[str, Any]:
    install_host_addresses(["127.0.0.1"])
    microphone = caller_microphone(work_dir)
    report: dict[str, Any] = {"case": case}
    redis = start_fresh_redis(work_dir)
    settings = cluster_settings(redis.url, "node-a")
    settings_b = cluster_settings(redis.url, "node-b")
    if case == "wrong_secret":
        settings_b["cluster"]["secret"] = "another-cluster-secret-for-node-b-0123456789"
    (work_dir / "a").mkdir(exist_ok=True)
    (work_dir / "b").mkdir(exist_ok=True)
    try:
        with (
            voxgate_node(work_dir / "a", settings) as node_a,
            voxgate_node(work_dir / "b", settings_b) as node_b,
        ):
            if case == "browser_agent":
                await browser_case(report, node_a, node_b, work_dir, microphone)
            elif case == "wrong_secret":
                await wrong_secret_case(report, node_a, node_b, work_dir, microphone)
            elif case == "transfer_to_queue":
                await transfer_case(report, node_a, node_b, work_dir, microphone)
            elif case in ("node_a_dies", "caller_leaves_ringing"):
                await withdrawn_case(case, report, node_a, node_b, work_dir, microphone)
            elif case == "agent_moves":
                await agent_moves_case(report, node_a, node_b, work_dir, microphone, redis.url)
            elif case == "busy_agent_stays":
                await busy_agent_case(report, node_a, node_b, work_dir, microphone, redis.url)
            elif case == "relayed_events":
                await relayed_events_case(report, node_a, node_b, work_dir, microphone)
            else:
                await talk_case(case, report, node_a, node_b, work_dir, microphone)
            report["node_log_tracebacks"] = tracebacks(node_a, node_b)
            report["node_b_bridged_log"] = "bridged through node" in node_b.log()
    finally:
        redis.stop()
    return report


@contextlib.asynccontextmanager
async def caller_for_remote_agent(
    node_a: RunningNode, node_b: RunningNode, work_dir: Path, microphone: Path
) -> AsyncIterator[tuple[AgentClient, BaresipClient]]:
    """Log an aiortc agent in on node B as available, then dial node A as the caller.

    Yields the agent and the caller's phone, and closes both on exit.
    """
    agent = AgentClient(
        f"http://127.0.0.1:{node_b.http_port}", OTHER_AGENT, PASSWORD, AGENT_TONE_HZ
    )
    phone: BaresipClient | None = None
    try:
        await agent.login()
        await agent.set_state("available")
        phone = await asyncio.to_thread(dial, work_dir, "caller", node_a, microphone)
        yield agent, phone
    finally:
        await agent.close()
        if phone is not None:
            await asyncio.to_thread(phone.stop)


async def talk_case(
    case: str,
    report: dict[str, Any],
    node_a: RunningNode,
    node_b: RunningNode,
    work_dir: Path,
    microphone: Path,
) -> None:
    async with caller_for_remote_agent(node_a, node_b, work_dir, microphone) as (agent, phone):
        incoming = await agent.expect("incoming", 40)
        report["incoming"] = incoming
        await agent.answer(incoming["call_id"])
        report["agent_heard_caller_s"] = await agent.wait_heard_tone(CALLER_TONE_HZ, 2.0, 30)
        if case == "agent_hangup":
            await agent.hangup(incoming["call_id"])
        else:
            await asyncio.to_thread(phone.hangup)
        end = await asyncio.to_thread(phone.wait_closed, 20)
        report["caller_end"] = end.ended_by.value
        hangup = await agent.expect("hangup", 20, call_id=incoming["call_id"])
        report["agent_hangup_reason"] = hangup.get("reason", "")
        await agent.close_call()
        report["presence_after_call"] = (await agent.expect("presence", 15, state="available"))[
            "state"
        ]
        received = load_mono(phone.received_wav(), 8000)
        report["caller_heard_agent_s"] = tone_seconds(received, 8000, AGENT_TONE_HZ)
        report["node_a"] = await wait_counters(node_a, lambda c: c.get("joined", 0) >= 1, 10)
        report["node_b"] = await wait_counters(node_b, lambda c: c.get("answered", 0) >= 1, 10)


async def transfer_case(
    report: dict[str, Any],
    node_a: RunningNode,
    node_b: RunningNode,
    work_dir: Path,
    microphone: Path,
) -> None:
    async with caller_for_remote_agent(node_a, node_b, work_dir, microphone) as (agent, phone):
        first = await agent.expect("incoming", 40)
        report["first"] = first
        await agent.answer(first["call_id"])
        report["heard_before_transfer_s"] = await agent.wait_heard_tone(CALLER_TONE_HZ, 1.0, 30)
        await agent.send(
            {
                "type": "transfer",
                "call_id": first["call_id"],
                "target_kind": "queue",
                "target": "general",
            }
        )
        transferred = await agent.expect("hangup", 20, call_id=first["call_id"])
        report["transfer_reason"] = transferred.get("reason", "")
        await agent.close_call()
        second = await agent.expect("incoming", 40)
        report["second"] = second
        await agent.answer(second["call_id"])
        report["heard_after_transfer_s"] = await agent.wait_heard_tone(CALLER_TONE_HZ, 2.0, 30)
        await agent.hangup(second["call_id"])
        end = await asyncio.to_thread(phone.wait_closed, 20)
        report["caller_end"] = end.ended_by.value
        report["node_a"] = await wait_counters(node_a, lambda c: c.get("transferred", 0) >= 1, 10)
        report["node_b"] = await wait_counters(node_b, lambda c: c.get("answered", 0) >= 2, 10)


async def wrong_secret_case(
    report: dict[str, Any],
    node_a: RunningNode,
    node_b: RunningNode,
    work_dir: Path,
    microphone: Path,
) -> None:
    async with caller_for_remote_agent(node_a, node_b, work_dir, microphone) as (agent, _phone):
        first = await agent.expect("incoming", 40)
        report["first"] = first
        await agent.answer(first["call_id"])
        ended = await agent.expect("hangup", 20, call_id=first["call_id"])
        report["first_end_reason"] = ended.get("reason", "")
        await agent.close_call()
        second = await agent.expect("incoming", 40)
        report["second"] = second
        await agent.hangup(second["call_id"])
        report["node_a"] = await queue_counters(node_a)
        report["node_a_rejected_log"] = "bridge INVITE rejected: bridge header signature" in (
            node_a.log()
        )


async def browser_case(
    report: dict[str, Any],
    node_a: RunningNode,
    node_b: RunningNode,
    work_dir: Path,
    microphone: Path,
) -> None:
    page_microphone = agent_page_microphone(work_dir)
    url = f"http://127.0.0.1:{node_b.http_port}/agent?audio_processing=off"
    async with BrowserAgent(url, page_microphone, work_dir / "chromium.log") as agent:
        await agent.login(OTHER_AGENT, PASSWORD)
        phone = await asyncio.to_thread(dial, work_dir, "caller", node_a, microphone)
        try:
            report["waiting"] = await wait_counters(node_a, lambda c: c.get("joined", 0) >= 1, 30)
            report["context"] = await agent.answer_next_call(40)
            report["agent_heard_caller_s"] = await agent.heard_tone_s(CALLER_TONE_HZ, 2.0, 30)
            await agent.click("hangup")
            end = await asyncio.to_thread(phone.wait_closed, 20)
            report["caller_end"] = end.ended_by.value
            await agent.call_ended(15)
            await agent.wait_presence("available", 20)
            report["presence_after_call"] = await agent.presence()
            received = load_mono(phone.received_wav(), 8000)
            report["caller_heard_agent_s"] = tone_seconds(received, 8000, AGENT_TONE_HZ)
            report["node_b"] = await wait_counters(node_b, lambda c: c.get("answered", 0) >= 1, 10)
        finally:
            await asyncio.to_thread(phone.stop)


async def withdrawn_case(
    case: str,
    report: dict[str, Any],
    node_a: RunningNode,
    node_b: RunningNode,
    work_dir: Path,
    microphone: Path,
) -> None:
    async with caller_for_remote_agent(node_a, node_b, work_dir, microphone) as (agent, phone):
        incoming = await agent.expect("incoming", 40)
        report["incoming"] = incoming
        if case == "node_a_dies":
            node_a.process.send_signal(signal.SIGKILL)
            await asyncio.to_thread(node_a.process.wait, 10)
        else:
            await asyncio.to_thread(phone.hangup)
            await asyncio.to_thread(phone.wait_closed, 20)
        withdrawn = await agent.expect("hangup", 30, call_id=incoming["call_id"])
        report["withdrawn_reason"] = withdrawn.get("reason", "")
        report["presence_after_withdraw"] = (await agent.expect("presence", 15, state="available"))[
            "state"
        ]
        report["node_b"] = await queue_counters(node_b)
        if case == "caller_leaves_ringing":
            report["node_a"] = await wait_counters(node_a, lambda c: c.get("abandoned", 0) >= 1, 10)
        report["later_offers"] = sum(1 for m in agent.messages if m["type"] == "incoming")


async def agent_record(store_url: str, agent_id: str) -> dict[str, str] | None:
    """Return the node and state of the agent's ACD record in Redis, or None."""
    store = await RedisStore.connect(store_url)
    try:
        agent = await store.get_agent(agent_id)
    finally:
        await store.close()
    if agent is None:
        return None
    return {"node": agent.node_id, "state": agent.state.value}


async def wait_record(
    store_url: str, agent_id: str, node: str, state: str, timeout_s: float
) -> dict[str, str] | None:
    """Poll the agent's record until it is on node `node` (its `node.id`) in `state`."""
    deadline = time.monotonic() + timeout_s
    record = None
    while time.monotonic() < deadline:
        record = await agent_record(store_url, agent_id)
        if (
            record is not None
            and record["node"].startswith(f"{node}.")
            and (record["state"] == state)
        ):
            return record
        await asyncio.sleep(0.1)
    return record


async def wait_log(node: RunningNode, text: str, timeout_s: float) -> bool:
    """Poll the node's log until it contains `text`; return whether it did in time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text in node.log():
            return True
        await asyncio.sleep(0.1)
    return False


def agent_page(node: RunningNode) -> AgentClient:
    return AgentClient(f"http://127.0.0.1:{node.http_port}", OTHER_AGENT, PASSWORD, AGENT_TONE_HZ)


async def agent_moves_case(
    report: dict[str, Any],
    node_a: RunningNode,
    node_b: RunningNode,
    work_dir: Path,
    microphone: Path,
    store_url: str,
) -> None:
    page_a, page_b = agent_page(node_a), agent_page(node_b)
    phone: BaresipClient | None = None
    try:
        await page_a.login()
        await page_a.set_state("available")
        report["record_on_a"] = await wait_record(store_url, OTHER_AGENT, "node-a", "available", 15)

        await page_b.login()
        report["record_after_b_login"] = await wait_record(
            store_url, OTHER_AGENT, "node-b", "away", 15
        )
        await page_b.set_state("available")
        report["record_on_b"] = await wait_record(store_url, OTHER_AGENT, "node-b", "available", 15)
        report["presence_a_after_move"] = await page_a.expect("presence", 15, state="offline")

        await page_a.close()
        report["node_a_kept_log"] = await wait_log(
            node_a, "page offline here, still logged in on node node-b.", 20
        )
        report["record_after_a_closed"] = await agent_record(store_url, OTHER_AGENT)

        phone = await asyncio.to_thread(dial, work_dir, "caller", node_a, microphone)
        incoming = await page_b.expect("incoming", 40)
        report["incoming_on_b"] = incoming
        await page_b.hangup(incoming["call_id"])
        report["errors_on_b"] = [m for m in page_b.messages if m["type"] == "error"]
    finally:
        await page_a.close()
        await page_b.close()
        if phone is not None:
            await asyncio.to_thread(phone.stop)


async def busy_agent_case(
    report: dict[str, Any],
    node_a: RunningNode,
    node_b: RunningNode,
    work_dir: Path,
    microphone: Path,
    store_url: str,
) -> None:
    page_a, page_b = agent_page(node_a), agent_page(node_b)
    phone: BaresipClient | None = None
    try:
        await page_a.login()
        await page_a.set_state("available")
        await wait_record(store_url, OTHER_AGENT, "node-a", "available", 15)
        phone = await asyncio.to_thread(dial, work_dir, "caller", node_a, microphone)
        incoming = await page_a.expect("incoming", 40)
        report["incoming_on_a"] = incoming
        await page_a.answer(incoming["call_id"])
        report["heard_before_s"] = await page_a.wait_heard_tone(CALLER_TONE_HZ, 1.0, 30)
        report["record_on_call"] = await wait_record(
            store_url, OTHER_AGENT, "node-a", "on_call", 15
        )

        await page_b.login()
        report["first_error"] = await page_b.expect("error", 15)
        await page_b.send({"type": "agent_state", "state": "available"})
        report["presence_b"] = await page_b.expect("presence", 15, state="away")
        report["second_error"] = await page_b.expect("error", 15)
        report["record_after_b"] = await agent_record(store_url, OTHER_AGENT)

        heard_before_s = page_a.heard_tone_s(CALLER_TONE_HZ)
        heard_total_s = await page_a.wait_heard_tone(CALLER_TONE_HZ, heard_before_s + 1.0, 20)
        report["heard_after_refusal_s"] = heard_total_s - heard_before_s

        await page_b.close()
        report["node_b_kept_log"] = await wait_log(
            node_b, "page offline here, still logged in on node node-a.", 20
        )
        report["record_after_b_closed"] = await agent_record(store_url, OTHER_AGENT)

        await page_a.hangup(incoming["call_id"])
        end = await asyncio.to_thread(phone.wait_closed, 20)
        report["caller_end"] = end.ended_by.value
        report["record_after_call"] = await wait_record(
            store_url, OTHER_AGENT, "node-a", "available", 15
        )
    finally:
        await page_a.close()
        await page_b.close()
        if phone is not None:
            await asyncio.to_thread(phone.stop)


async def relayed_events_case(
    report: dict[str, Any],
    node_a: RunningNode,
    node_b: RunningNode,
    work_dir: Path,
    microphone: Path,
) -> None:
    async with EventSocket(node_a, "acd.*") as stream_a, EventSocket(node_b, "acd.*") as stream_b:
        phone = await asyncio.to_thread(dial, work_dir, "caller", node_b, microphone)
        try:
            joined = await stream_a.wait("acd.caller_joined", 20)
            report["a_joined"] = joined
            await stream_a.wait("acd.position_changed", 20)
            report["a_cluster"] = await wait_cluster_counters(
                node_a, lambda c: c.get("joined", 0) >= 1, 10
            )
            report["a_own"] = await queue_counters(node_a)
            await asyncio.to_thread(phone.hangup)
            await asyncio.to_thread(phone.wait_closed, 20)
            await stream_a.wait("acd.caller_left", 20)
            await stream_b.wait("acd.caller_left", 20)
        finally:
            await asyncio.to_thread(phone.stop)
        report["a_events"] = stream_a.events
        report["b_events"] = stream_b.events
        report["a_cluster_after"] = await wait_cluster_counters(
            node_a, lambda c: c.get("abandoned", 0) >= 1, 10
        )


async def wait_cluster_counters(
    node: RunningNode, ready: Callable[[dict[str, int]], bool], timeout_s: float
) -> dict[str, int]:
    """Poll the node's cluster counters of queue general until `ready` is true or time is up."""
    deadline = time.monotonic() + timeout_s
    counters: dict[str, int] = {}
    while time.monotonic() < deadline:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{node.http_port}/api/queues") as response,
        ):
            body = await response.json()
        counters = body.get("cluster", {}).get("general", {})
        if ready(counters):
            return counters
        await asyncio.sleep(0.2)
    return counters


def main() -> int:
    return run_scenario_main(__doc__, CASES, run, logger=logger, label="cross-node case")


if __name__ == "__main__":
    raise SystemExit(main())
