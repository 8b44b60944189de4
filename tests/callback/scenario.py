"""Runs one callback journey and writes what every side saw to a JSON report.

Run it inside a loopback-only network namespace, as `run_callback` in
tests/callback/test_callback.py does. A `voxgate serve` node has queue
`general` with callback key 1 and a callback trunk that points at a SIPp
UAS playing the customer's phone. A baresip caller (number 5551234) goes
through the test flow, waits in the queue, presses 1 and is hung up by the
node. Cases:

- answered: the real agent page in headless Chromium answers the callback
  offer; the customer (SIPp) answers the node's INVITE; a tone goes each
  way; the agent hangs up.
- no_answer: an aiortc agent answers every callback offer, the customer's
  phone rings until the node gives up; after one retry the callback is
  closed out as no_answer.
- agent_misses: the aiortc agent lets the first callback ring time out;
  the callback returns to its queue, is offered again, and the second ring
  is answered and talked through.
- node_dies: two nodes share a redis-server. The caller requests the
  callback on node A, whose agent takes the first attempt, which the
  customer does not answer. Node A is killed (SIGKILL) while the retry
  waits in Redis, and node B places the retry for its own agent.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp

from acd.store.redis import RedisStore
from signaling.webrtc.auth import hash_password
from signaling.webrtc.peer import install_host_addresses
from tests.journey.agent import AgentClient, tone_seconds
from tests.journey.browser_agent import BrowserAgent
from tests.journey.scenario import agent_page_microphone, wait_counters
from tests.support.baresip import BaresipClient
from tests.support.events import EventSocket
from tests.support.node import REPOSITORY, RunningNode, voxgate_node
from tests.support.scenario import run_scenario_main, start_fresh_redis
from tests.support.sipp import SippProcess, audio_actions, render_scenario
from tests.support.wav import silence, tone, write_wav

CUSTOMER_TONE_HZ = 600.0
AGENT_TONE_HZ = 1000.0
CALLER_NUMBER = "5551234"
AGENT = "agent1"
PASSWORD = "callback-agent-password"
DATA = REPOSITORY / "tests" / "data" / "callback"
NUMBER = "2950"
EVENT_KINDS = "callback.*,call.started,call.ended,acd.offer_returned"
CASES = ("answered", "no_answer", "agent_misses", "node_dies")
OTHER_AGENT = "agent2"
# The retry interval of the node_dies case: long enough to kill node A before the retry is due.
NODE_DIES_RETRY_S = 6

logger = logging.getLogger("callback-journey")


def node_settings(sipp_port: int, callback_timeout_s: float) -> dict[str, Any]:
    return {
        "ivr": {"flows_dir": str(DATA / "flows"), "default_flow": "callback"},
        "acd": {
            "queues": {
                "general": {
                    "announce_first_s": 1,
                    "announce_every_s": 30,
                    "ring_timeout_s": 20,
                    "wrap_up_s": 0,
                    "callback_key": "1",
                    "callback_timeout_s": callback_timeout_s,
                }
            },
        },
        "callbacks": {
            "trunk_uri": f"sip:{{number}}@127.0.0.1:{sipp_port}",
            "caller_id": "4000",
            "ring_timeout_s": 3,
            "retries": 1,
            "retry_interval_s": 2,
        },
        "webrtc": {
            "token_secret": "callback-test-secret-callback-test-secret",
            "agents": {AGENT: {"password_hash": hash_password(PASSWORD), "queues": ["general"]}},
            "wrap_up_s": 0,
            "ring_timeout_s": 20,
        },
    }


async def cdrs(node: RunningNode, legs: int, timeout_s: float = 15.0) -> list[dict[str, Any]]:
    """Return the node's CDRs once the caller's row and `legs` callback rows are written."""
    records: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as http, asyncio.timeout(timeout_s):
        while True:
            url = f"http://127.0.0.1:{node.http_port}/api/cdrs?limit=20"
            async with http.get(url) as response:
                records = (await response.json())["cdrs"]
            written = sum(1 for record in records if record["callback_of"] is not None)
            if written >= legs and len(records) > written:
                return records
            await asyncio.sleep(0.2)


def request_callback(work_dir: Path, node: RunningNode, microphone: Path) -> BaresipClient:
    """Dial the test flow as the caller, press 1 while waiting and wait for the node's BYE."""
    phone = BaresipClient(
        work_dir, user=CALLER_NUMBER, microphone=microphone, max_call_s=60, capture_rtp=False
    )
    phone.start()
    phone.dial(f"sip:{NUMBER}@127.0.0.1:{node.sip_port}")
    phone.wait_established(15)
    # The queue step's announcement is about 3 s long; the key comes after it.
    phone.send_digits("1", after_answer_s=5.0)
    return phone


def start_customer(work_dir: Path, template: str, calls: int) -> SippProcess:
    customer_tone = write_wav(
        work_dir / "customer-tone.wav", tone(CUSTOMER_TONE_HZ, 40.0, 8000, amplitude=0.3), 8000
    )
    values: dict[str, object] = {}
    if template == "customer_answers.xml":
        values = {
            "AUDIO_ACTIONS": audio_actions(work_dir, customer_tone),
            "BYE_TIMEOUT_MS": 60_000,
            "AUDIO_PT": 0,
            "AUDIO_CODEC": "PCMU",
        }
    else:
        values = {"CANCEL_TIMEOUT_MS": 30_000}
    scenario = render_scenario(DATA / template, work_dir / template, values)
    customer = SippProcess(
        scenario, work_dir, calls=calls, global_timeout_s=150, capture_rtp=True
    ).start()
    customer.wait_until_listening()
    return customer


async def run(case: str, work_dir: Path) -> dict[str, Any]:
    install_host_addresses(["127.0.0.1"])
    microphone = write_wav(work_dir / "caller-silence.wav", silence(60.0, 8000), 8000)
    report: dict[str, Any] = {"case": case}
    if case == "node_dies":
        await node_dies_case(report, work_dir, microphone)
        return report
    template = "customer_no_answer.xml" if case == "no_answer" else "customer_answers.xml"
    customer = start_customer(work_dir, template, 2 if case == "no_answer" else 1)
    callback_timeout_s = 6.0 if case == "agent_misses" else 20.0
    try:
        with voxgate_node(work_dir, node_settings(customer.sip_port, callback_timeout_s)) as node:
            async with EventSocket(node, EVENT_KINDS) as events:
                if case == "answered":
                    await answered_case(report, node, events, work_dir, microphone, customer)
                else:
                    await aiortc_case(case, report, node, events, work_dir, microphone, customer)
                report["events"] = events.events
            report["cdrs"] = await cdrs(node, 2 if case == "no_answer" else 1)
            report["health"] = node.health()[0]
            report["node_log_tracebacks"] = node.log().count("Traceback")
    finally:
        result = await asyncio.to_thread(customer.stop)
        report["customer_sipp"] = {
            "returncode": result.returncode,
            "log": result.describe()[-3000:],
        }
    return report


async def caller_requests(
    report: dict[str, Any], node: RunningNode, events: EventSocket, work_dir: Path, microphone: Path
) -> None:
    phone = await asyncio.to_thread(request_callback, work_dir, node, microphone)
    try:
        end = await asyncio.to_thread(phone.wait_closed, 30)
        report["caller_end"] = end.ended_by.value
    finally:
        await asyncio.to_thread(phone.stop)
    requested = await events.wait("callback.requested", 10)
    report["requested"] = requested[0]


async def answered_case(
    report: dict[str, Any],
    node: RunningNode,
    events: EventSocket,
    work_dir: Path,
    microphone: Path,
    customer: SippProcess,
) -> None:
    page_microphone = agent_page_microphone(work_dir)
    url = f"http://127.0.0.1:{node.http_port}/agent"
    async with BrowserAgent(url, page_microphone, work_dir / "chromium.log") as agent:
        await agent.login(AGENT, PASSWORD)
        await caller_requests(report, node, events, work_dir, microphone)
        await agent.click("set-available")
        report["context"] = await agent.wait_incoming(30)
        report["kind"] = await agent.evaluate("document.getElementById('ctx-kind').textContent")
        await agent.click("answer")
        await agent.wait_connected(20)
        report["agent_heard_customer_s"] = await agent.heard_tone_s(CUSTOMER_TONE_HZ, 2.0, 30)
        await wait_customer_heard(report, customer)
        await agent.click("hangup")
        await agent.call_ended(15)
        report["closed"] = await events.wait("callback.closed", 20)
        await agent.wait_presence("available", 20)
        report["presence_after_call"] = await agent.presence()
    await asyncio.to_thread(customer.wait, 20)


async def wait_customer_heard(report: dict[str, Any], customer: SippProcess) -> None:
    """Wait until the customer's phone has received 1 s of the agent's tone."""
    tone_s = 0.0
    async with asyncio.timeout(30):
        while tone_s < 1.0:
            timeline = await asyncio.to_thread(customer.received_audio)
            tone_s = tone_seconds(timeline.samples, 8000, AGENT_TONE_HZ)
            if tone_s < 1.0:
                await asyncio.sleep(0.5)
    report["customer_heard_agent_s"] = tone_s


async def aiortc_case(
    case: str,
    report: dict[str, Any],
    node: RunningNode,
    events: EventSocket,
    work_dir: Path,
    microphone: Path,
    customer: SippProcess,
) -> None:
    base = f"http://127.0.0.1:{node.http_port}"
    agent = AgentClient(base, AGENT, PASSWORD, AGENT_TONE_HZ)
    try:
        await agent.login()
        await caller_requests(report, node, events, work_dir, microphone)
        await agent.set_state("available")
        offers: list[dict[str, Any]] = []
        hangups: list[dict[str, Any]] = []
        if case == "agent_misses":
            missed = await agent.expect("incoming", 30)
            offers.append(missed)
            withdrawn = await agent.expect("hangup", 30, call_id=missed["call_id"])
            hangups.append(withdrawn)
            report["returned"] = await events.wait("acd.offer_returned", 20)
            await agent.set_state("available")
            incoming = await agent.expect("incoming", 30)
            offers.append(incoming)
            await agent.answer(incoming["call_id"])
            report["agent_heard_customer_s"] = await agent.wait_heard_tone(
                CUSTOMER_TONE_HZ, 2.0, 30
            )
            await wait_customer_heard(report, customer)
            await agent.hangup(incoming["call_id"])
            await agent.close_call()
            await agent.expect("presence", 10, state="available")
        else:
            for _ in range(2):
                incoming = await agent.expect("incoming", 30)
                offers.append(incoming)
                await agent.answer(incoming["call_id"])
                hangups.append(await agent.expect("hangup", 30, call_id=incoming["call_id"]))
                await agent.close_call()
                await agent.expect("presence", 10, state="available")
        report["offers"] = offers
        report["agent_hangups"] = hangups
        report["closed"] = await events.wait("callback.closed", 30)
        report["attempts"] = await events.wait("callback.attempt", 10)
        report["counters"] = await wait_counters(node, lambda c: True, 1)
    finally:
        await agent.close()
    await asyncio.to_thread(customer.wait, 30)


def cluster_node_settings(
    sipp_port: int, store_url: str, name: str, work_dir: Path
) -> dict[str, Any]:
    """Return the callback node settings on a shared Redis store, with both agents."""
    settings = node_settings(sipp_port, 20.0)
    settings["node"] = {"id": name}
    settings["acd"]["store"] = store_url
    settings["cdr"] = {"path": str(work_dir / "cdr.sqlite")}
    settings["callbacks"]["retry_interval_s"] = NODE_DIES_RETRY_S
    agents = settings["webrtc"]["agents"]
    agents[OTHER_AGENT] = dict(agents[AGENT])
    return settings


async def wait_retry_in_redis(store_url: str, call_id: str, timeout_s: float) -> float | None:
    """Poll Redis until the callback's retry is scheduled; return its due time or None."""
    store = await RedisStore.connect(store_url)
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                due = await store.client.zscore(f"{store.prefix}cbretry", call_id)
                if due is not None:
                    return float(due)
                await asyncio.sleep(0.1)
    except TimeoutError:
        return None
    finally:
        await store.close()


async def node_dies_case(report: dict[str, Any], work_dir: Path, microphone: Path) -> None:
    customer = start_customer(work_dir, "customer_no_answer.xml", 2)
    redis = start_fresh_redis(work_dir)
    (work_dir / "a").mkdir(exist_ok=True)
    (work_dir / "b").mkdir(exist_ok=True)
    settings_a = cluster_node_settings(customer.sip_port, redis.url, "node-a", work_dir / "a")
    settings_b = cluster_node_settings(customer.sip_port, redis.url, "node-b", work_dir / "b")
    try:
        with (
            voxgate_node(work_dir / "a", settings_a) as node_a,
            voxgate_node(work_dir / "b", settings_b) as node_b,
        ):
            agent_a = AgentClient(f"http://127.0.0.1:{node_a.http_port}", AGENT, PASSWORD, 1000.0)
            agent_b = AgentClient(
                f"http://127.0.0.1:{node_b.http_port}", OTHER_AGENT, PASSWORD, 1000.0
            )
            try:
                async with (
                    EventSocket(node_a, EVENT_KINDS) as events_a,
                    EventSocket(node_b, EVENT_KINDS) as events_b,
                ):
                    await agent_b.login()
                    await agent_b.set_state("available")
                    await agent_a.login()
                    await caller_requests(report, node_a, events_a, work_dir, microphone)
                    await agent_a.set_state("available")
                    first = await agent_a.expect("incoming", 30)
                    report["first_offer"] = first
                    await agent_a.answer(first["call_id"])
                    await agent_a.expect("hangup", 30, call_id=first["call_id"])
                    report["first_attempt"] = (await events_a.wait("callback.attempt", 20))[0]
                    call_id = report["requested"]["call_id"]
                    report["retry_due"] = await wait_retry_in_redis(redis.url, call_id, 10)
                    report["killed_before_due"] = (
                        report["retry_due"] is not None and time.time() < report["retry_due"]
                    )
                    node_a.process.send_signal(signal.SIGKILL)
                    await asyncio.to_thread(node_a.process.wait, 10)

                    second = await agent_b.expect("incoming", 40)
                    report["second_offer"] = second
                    await agent_b.answer(second["call_id"])
                    report["second_hangup"] = await agent_b.expect(
                        "hangup", 30, call_id=second["call_id"]
                    )
                    report["b_attempts"] = await events_b.wait("callback.attempt", 20)
                    report["b_closed"] = await events_b.wait("callback.closed", 20)
                    report["a_closed"] = events_a.of_kind("callback.closed")
            finally:
                await agent_a.close()
                await agent_b.close()
            report["retry_left_in_redis"] = await wait_retry_in_redis(
                redis.url, report["requested"]["call_id"], 0.5
            )
            report["node_b_log_tracebacks"] = node_b.log().count("Traceback")
    finally:
        redis.stop()
        result = await asyncio.to_thread(customer.stop)
        report["customer_sipp"] = {
            "returncode": result.returncode,
            "log": result.describe()[-3000:],
        }


def main() -> int:
    return run_scenario_main(
        __doc__, CASES, run, logger=logger, label="callback journey", timeout_s=220
    )


if __name__ == "__main__":
    raise SystemExit(main())
